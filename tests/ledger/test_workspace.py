"""The workspace: made once, found from below, settings resolved flag > environment > file; its
files are replaced whole or not at all, even when the writer is killed mid-write."""

import os
import subprocess
import sys

import pytest

from ledger.errors import ConfigError, WorkspaceNotFoundError
from ledger.failpoints import FAILPOINT_ENV, FAILPOINT_EXIT
from ledger.workspace import CONFIG_NAME, Workspace, atomic_file, atomic_write_bytes


def test_init_makes_the_layout_and_refuses_a_second_time(tmp_path):
    workspace = Workspace.init(tmp_path / "fed", rpc="memory")
    for folder in ("store", "keys", "chain", "journal"):
        assert (workspace.root / folder).is_dir()
    assert Workspace.load(workspace.root).get("chain", "rpc") == "memory"
    before = workspace.config_path.read_bytes()
    with pytest.raises(ConfigError, match="already holds a fedledger workspace"):
        Workspace.init(tmp_path / "fed")
    assert workspace.config_path.read_bytes() == before


def test_find_walks_up_from_a_subfolder_and_names_the_fix_when_absent(tmp_path, monkeypatch):
    monkeypatch.delenv("FEDLEDGER_WORKDIR", raising=False)
    workspace = Workspace.init(tmp_path / "fed")
    deep = workspace.root / "journal" / "a" / "b"
    deep.mkdir(parents=True)
    assert Workspace.find(start=deep).root == workspace.root
    with pytest.raises(WorkspaceNotFoundError, match="fedledger init"):
        Workspace.find(start=tmp_path)


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    workspace = Workspace.init(tmp_path / "fed")
    monkeypatch.setenv("FEDLEDGER_RPC", "http://127.0.0.1:9999")
    assert workspace.get("chain", "rpc") == "http://127.0.0.1:9999"
    monkeypatch.delenv("FEDLEDGER_RPC")
    assert workspace.get("chain", "rpc") == "http://127.0.0.1:8545"


def test_malformed_toml_is_one_clear_error(tmp_path):
    (tmp_path / CONFIG_NAME).write_text("[chain\nrpc = ", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Workspace.load(tmp_path)


def test_save_round_trips_and_atomic_write_leaves_no_temporary_file(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    workspace.set("deployment", "address", "0x" + "ab" * 20)
    workspace.save()
    assert Workspace.load(workspace.root).config["deployment"]["address"] == "0x" + "ab" * 20
    atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fed", "x.bin"]


# A writer run in a child process that dies (exit 99, no cleanup) between writing the new bytes and
# renaming them into place: what a power cut or a kill -9 mid-write does.
CRASHING_WRITERS = {
    "atomic_write_bytes": "atomic_write_bytes(target, NEW)",
    "atomic_file": (
        "with atomic_file(target) as handle:\n"
        "    for start in range(0, len(NEW), 4096):\n"
        "        handle.write(NEW[start:start + 4096])"
    ),
    "Workspace.save": (
        "workspace = Workspace.load(target.parent)\n"
        "workspace.set('deployment', 'address', '0x' + 'cd' * 20)\n"
        "workspace.save()"
    ),
}


def crash_while_writing(target, writer: str) -> subprocess.CompletedProcess:
    script = (
        "import sys\nfrom pathlib import Path\n"
        "from ledger.workspace import Workspace, atomic_file, atomic_write_bytes\n"
        "target = Path(sys.argv[1])\nNEW = b'new bytes, longer than the old ones ' * 10000\n" + CRASHING_WRITERS[writer]
    )
    env = {**os.environ, FAILPOINT_ENV: "atomic-file:before-rename"}
    return subprocess.run([sys.executable, "-c", script, str(target)], env=env, capture_output=True, check=False)


@pytest.mark.parametrize("writer", sorted(CRASHING_WRITERS))
def test_a_crash_before_the_rename_leaves_the_old_file_whole(tmp_path, writer):
    workspace = Workspace.init(tmp_path / "fed")
    target = workspace.config_path
    old = target.read_bytes()
    done = crash_while_writing(target, writer)
    assert done.returncode == FAILPOINT_EXIT, done.stderr.decode()  # it died mid-write, at the failpoint
    assert target.read_bytes() == old
    assert Workspace.load(workspace.root).config == workspace.config


def test_an_error_inside_atomic_file_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "x.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="half way"):
        with atomic_file(target) as handle:
            handle.write(b"new, half written")
            raise RuntimeError("half way")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]
