"""The `fedledger ipfs` commands.

Most commands here run in-process through typer's runner (``cli``): adding, pinning, exporting and
the refusals are the commands' own work and checks, and the runner gives the same exit code and the
same stdout and stderr as the console script, so they are checked as fully without an interpreter
and torch start-up per command. Two stay on the installed console script (``run_fedledger``, a
subprocess): ``ipfs cat`` of 600 kB of random bytes in the bare-repo test, which compares the raw
bytes the whole process writes to its stdout (the runner hands stdout back as decoded text), and
keeps the script's own path covered; and ``ipfs serve`` on a bad host, whose refusal is checked in
its own process so that a regression that let it start serving would not block the test process.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.ipfs.car import read_car
from ledger.errors import InvalidInputError, LedgerError
from ledger.ipfs.store import EmbeddedStore, KuboStore
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import to_safetensors
from ledger.workspace import Workspace
from node.cli.ipfs_cmd import add_file_checked
from node.models import build_model, model_layout, state_arrays
from tests.fixtures_cli import run_in_process as cli
from tests.fixtures_store import IpfsServer, run_fedledger


def one_error_line(stderr: str | bytes) -> str:
    text = stderr.decode() if isinstance(stderr, bytes) else stderr  # the runner's str, or a subprocess's bytes
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def test_add_cat_pin_export_with_a_bare_repo(tmp_path: Path) -> None:
    data = np.random.default_rng(1).bytes(600_000)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    repo = str(tmp_path / "repo")
    added = cli("ipfs", "add", str(path), "--repo", repo)
    assert added.exit_code == 0, added.stderr
    cid = added.stdout.strip()
    assert cid == cid_of_bytes(data)
    cat = run_fedledger("ipfs", "cat", cid, "--repo", repo)  # the console script: its stdout, as raw bytes
    assert cat.returncode == 0 and cat.stdout == data
    assert cli("ipfs", "pin", "ls", "--repo", repo).stdout.split() == [cid]
    assert cli("ipfs", "pin", "rm", cid, "--repo", repo).exit_code == 0
    assert EmbeddedStore(repo).pins() == []
    assert cli("ipfs", "pin", "add", cid, "--repo", repo).exit_code == 0
    assert EmbeddedStore(repo).pins() == [cid]
    car = tmp_path / "blob.car"
    exported = cli("ipfs", "export", cid, "-o", str(car), "--repo", repo)
    assert exported.exit_code == 0, exported.stderr
    assert read_car(car).roots == [cid]


def test_add_and_cat_through_the_served_api(tmp_path: Path, ipfs_server: IpfsServer) -> None:
    path = tmp_path / "doc.txt"
    path.write_bytes(b"agreement v1")
    cid = cli("ipfs", "add", str(path), "--ipfs-api", ipfs_server.api).stdout.strip()
    assert cid == cid_of_bytes(b"agreement v1")
    assert cli("ipfs", "cat", cid, "--ipfs-api", ipfs_server.url).stdout == "agreement v1"  # those bytes, decoded


def test_malformed_cid_is_one_sentence_and_a_failure(tmp_path: Path) -> None:
    result = cli("ipfs", "cat", "bafy-nope", "--repo", str(tmp_path / "repo"))
    assert result.exit_code != 0
    assert "is not a CID fedledger can use" in one_error_line(result.stderr)


def test_unreachable_kubo_is_one_sentence_and_a_failure() -> None:
    result = cli("ipfs", "cat", cid_of_bytes(b"x"), "--ipfs-api", "/ip4/127.0.0.1/tcp/9")
    assert result.exit_code != 0
    line = one_error_line(result.stderr)
    assert "no IPFS API answers at /ip4/127.0.0.1/tcp/9" in line and "fedledger ipfs serve" in line


def test_serve_on_a_host_that_is_not_an_ipv4_address_is_refused(tmp_path: Path) -> None:
    result = run_fedledger("ipfs", "serve", "--host", "localhost:5001", "--port", "0", "--repo", str(tmp_path / "repo"))
    assert result.returncode != 0
    assert "--host must be an IPv4 address such as 127.0.0.1 or 0.0.0.0, not 'localhost:5001'" in one_error_line(result.stderr)
    assert not (tmp_path / "repo").exists()  # refused before the store was made


def stored_files(repo: Path) -> set[str]:
    """Every block, pack and pin file of an embedded store (what a refused add must leave as it was)."""
    folders = ("blocks", "packs", "pins")
    return {str(path.relative_to(repo)) for folder in folders for path in (repo / folder).rglob("*")}


def test_file_that_is_not_safetensors_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"definitely not weights")
    result = cli("ipfs", "add", str(path), "--weights", "--repo", str(tmp_path / "repo"))
    assert result.exit_code != 0
    assert "is not a safetensors file" in one_error_line(result.stderr)
    assert not (tmp_path / "repo").exists()  # refused before the store was opened


def test_tensor_of_the_wrong_shape_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    EmbeddedStore(repo).add_bytes(np.random.default_rng(2).bytes(600_000))
    before = stored_files(repo)
    arrays = state_arrays(build_model("mlp"))
    name = sorted(model_layout("mlp"))[0]
    arrays[name] = np.zeros((*arrays[name].shape[:-1], arrays[name].shape[-1] + 1), dtype=np.float32)
    path = tmp_path / "update.safetensors"
    path.write_bytes(to_safetensors(arrays))
    result = cli("ipfs", "add", str(path), "--model", "mlp", "--repo", str(repo))
    assert result.exit_code != 0
    line = one_error_line(result.stderr)
    assert f"tensor '{name}'" in line and "has shape" in line
    assert stored_files(repo) == before
    assert not EmbeddedStore(repo).has(cid_of_bytes(path.read_bytes()))


def bad_file(kind: str, tmp_path: Path) -> Path:
    """A file that ``ipfs add --weights --model mlp`` must refuse, of the given kind."""
    arrays = state_arrays(build_model("mlp"))
    name = sorted(arrays)[0]
    if kind == "a folder":
        (tmp_path / "folder").mkdir()
        return tmp_path / "folder"
    if kind == "a pickle":
        data = b"\x80\x04\x95" + bytes(64)
    elif kind == "not safetensors":
        data = b"definitely not weights"
    elif kind == "a tensor missing":
        del arrays[name]
    elif kind == "an unexpected tensor":
        arrays["extra.weight"] = np.zeros(3, dtype=np.float32)
    elif kind == "the wrong shape":
        arrays[name] = np.zeros((*arrays[name].shape, 1), dtype=np.float32)
    elif kind == "the wrong dtype":
        arrays[name] = arrays[name].astype(np.float64)
    elif kind == "a NaN":
        arrays[name][(0,) * arrays[name].ndim] = np.nan
    if kind not in ("a pickle", "not safetensors"):
        data = to_safetensors(arrays)
    path = tmp_path / "update.safetensors"
    path.write_bytes(data)
    return path


REFUSALS = {
    "a folder": "is not a file",
    "a pickle": "looks like a pickle",
    "not safetensors": "is not a safetensors file",
    "a tensor missing": "does not match the model: it lacks",
    "an unexpected tensor": "does not match the model: it has unexpected extra.weight",
    "the wrong shape": "has shape",
    "the wrong dtype": "is float64 but the model expects float32",
    "a NaN": "holds NaN or infinite values",
}


@pytest.mark.parametrize("kind", REFUSALS)
def test_every_refused_add_leaves_the_embedded_store_as_it_was(tmp_path: Path, kind: str) -> None:
    repo = tmp_path / "repo"
    EmbeddedStore(repo).add_bytes(b"added before")
    before = stored_files(repo)
    path = bad_file(kind, tmp_path)
    with pytest.raises(LedgerError, match=REFUSALS[kind]):
        add_file_checked(path, lambda: EmbeddedStore(repo), model="mlp")
    assert stored_files(repo) == before
    with pytest.raises(LedgerError, match=REFUSALS[kind]):
        add_file_checked(path, lambda: EmbeddedStore(tmp_path / "fresh"), weights=True, model="mlp")
    assert not (tmp_path / "fresh").exists()


@pytest.mark.parametrize("kind", ["not safetensors", "the wrong shape", "a NaN"])
def test_a_refused_add_sends_nothing_to_the_served_api(tmp_path: Path, ipfs_server: IpfsServer, kind: str) -> None:
    before = stored_files(ipfs_server.repo)
    with pytest.raises(LedgerError, match=REFUSALS[kind]):
        add_file_checked(bad_file(kind, tmp_path), lambda: KuboStore(ipfs_server.api), model="mlp")
    assert stored_files(ipfs_server.repo) == before


def test_an_unknown_model_is_refused_before_the_store_is_opened(tmp_path: Path) -> None:
    path = tmp_path / "update.safetensors"
    path.write_bytes(to_safetensors(state_arrays(build_model("mlp"))))
    with pytest.raises(InvalidInputError, match="unknown model 'resnet9000'"):
        add_file_checked(path, lambda: EmbeddedStore(tmp_path / "repo"), model="resnet9000")
    assert not (tmp_path / "repo").exists()


def test_checked_weights_are_stored_from_the_bytes_that_were_checked(tmp_path: Path) -> None:
    good = to_safetensors(state_arrays(build_model("mlp")))
    path = tmp_path / "update.safetensors"
    path.write_bytes(good)
    store = EmbeddedStore(tmp_path / "repo")

    def open_after_the_file_changed() -> EmbeddedStore:  # someone rewrites the file between check and store
        path.write_bytes(b"not weights at all")
        return store

    assert add_file_checked(path, open_after_the_file_changed, model="mlp") == (cid_of_bytes(good), len(good))
    assert store.get(cid_of_bytes(good)) == good
    assert not store.has(cid_of_bytes(b"not weights at all"))


def test_add_uses_the_workspace_store(tmp_path: Path) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    path = tmp_path / "terms.md"
    path.write_bytes(b"# terms\n")
    result = cli("ipfs", "add", str(path), "--workdir", str(workspace.root))
    assert result.exit_code == 0, result.stderr
    assert EmbeddedStore(workspace.store_dir).get(result.stdout.strip()) == b"# terms\n"
