"""The workspace: made once, found from below, settings resolved flag > environment > file."""

import pytest

from ledger.errors import ConfigError, WorkspaceNotFoundError
from ledger.workspace import CONFIG_NAME, Workspace, atomic_write_bytes


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
