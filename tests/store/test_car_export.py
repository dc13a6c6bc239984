"""`fedledger ipfs export` writes each block once, in `ipfs dag export`'s order, and takes the output
file as a positional argument or `-o`; the embedded store, a Kubo API and `dag/export` agree byte for byte.

The issue's file (the positional form) is exported by the installed console script
(``run_fedledger``, a subprocess), so the script's own path stays covered; the other exports run
in-process through typer's runner (``cli``): what they check is the CAR file the command writes and
its exit code and stderr, which the runner gives exactly as the console script does, without an
interpreter and torch start-up per command.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import requests

from ledger.ipfs.car import read_car
from ledger.ipfs.store import EmbeddedStore
from ledger.ipfs.unixfs import CHUNK_SIZE, MAX_LINKS, cid_of_bytes, decode_node
from tests.fixtures_cli import run_in_process as cli
from tests.fixtures_store import IpfsServer, run_fedledger

ZEROS = bytes(MAX_LINKS * CHUNK_SIZE + 1)  # the file: 174 references to one zero leaf, then one byte


def test_export_writes_each_distinct_block_once_in_dag_order(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    cid = EmbeddedStore(repo).add_bytes(ZEROS)
    out = tmp_path / "zeros.car"
    result = run_fedledger("ipfs", "export", cid, str(out), "--repo", str(repo))  # the positional form
    assert result.returncode == 0, result.stderr
    car = read_car(out)
    names = [name for name, _ in car.blocks]
    blocks = dict(car.blocks)
    first, second = (link.cid for link in decode_node(cid, blocks[cid]).links)
    assert names == [cid, first, cid_of_bytes(bytes(CHUNK_SIZE)), second, cid_of_bytes(b"\0")]
    assert out.stat().st_size < 300_000  # ~271 KB as `ipfs dag export` writes it; once per reference was 45.6 MB


def test_export_order_is_depth_first_for_distinct_leaves(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "repo")
    data = np.random.default_rng(2).bytes(3 * CHUNK_SIZE)
    cid = store.add_bytes(data)
    out = tmp_path / "o.car"
    assert cli("ipfs", "export", cid, "-o", str(out), "--repo", str(store.root)).exit_code == 0
    leaves = [cid_of_bytes(data[i : i + CHUNK_SIZE]) for i in range(0, len(data), CHUNK_SIZE)]
    assert [name for name, _ in read_car(out).blocks] == [cid, *leaves]


def test_export_needs_the_output_once(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    cid = EmbeddedStore(repo).add_bytes(b"x")
    both = cli("ipfs", "export", cid, str(tmp_path / "a.car"), "-o", str(tmp_path / "b.car"), "--repo", str(repo))
    neither = cli("ipfs", "export", cid, "--repo", str(repo))
    for result in (both, neither):
        assert result.exit_code != 0
        assert "give the CAR file to write once" in result.stderr
    assert not (tmp_path / "a.car").exists() and not (tmp_path / "b.car").exists()


def test_export_through_a_kubo_api_equals_the_servers_dag_export(tmp_path: Path, ipfs_server: IpfsServer) -> None:
    cid = EmbeddedStore(ipfs_server.repo).add_bytes(ZEROS)
    out = tmp_path / "via-api.car"
    result = cli("ipfs", "export", cid, str(out), "--ipfs-api", ipfs_server.api)
    assert result.exit_code == 0, result.stderr
    served = requests.post(f"{ipfs_server.url}/api/v0/dag/export?arg={cid}", timeout=60)
    assert served.status_code == 200
    local = tmp_path / "local.car"
    assert cli("ipfs", "export", cid, str(local), "--repo", str(ipfs_server.repo)).exit_code == 0
    assert out.read_bytes() == served.content == local.read_bytes()
