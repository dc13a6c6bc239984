"""Keystores: written whole and never over another, loaded only with the right password, never echoed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from eth_account import Account

from ledger.errors import InvalidInputError, KeyLoadError
from ledger.chain.keys import (
    PRIVATE_KEY_ENV,
    account_from_env,
    create_keystore,
    load_account,
    load_keystore,
    new_key,
)
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome


def test_keystore_round_trip_keeps_the_key(tmp_path: Path) -> None:
    account = Account.create()
    address = create_keystore(tmp_path / "k.json", "pw", account.key, iterations=2)
    assert address == account.address
    assert load_keystore(tmp_path / "k.json", password="pw").key == account.key


def test_create_keystore_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_keystore(path, "pw", iterations=2)
    before = path.read_bytes()
    with pytest.raises(KeyLoadError, match="already exists"):
        create_keystore(path, "pw", iterations=2)
    assert path.read_bytes() == before


def test_missing_keystore_names_file_and_fix(tmp_path: Path) -> None:
    with pytest.raises(KeyLoadError, match=r"no keystore file at .*gone\.json; create one with `fedledger key new"):
        load_keystore(tmp_path / "gone.json", password="pw")


def test_unknown_key_name_says_how_to_create_one(workspace: Workspace) -> None:
    with pytest.raises(KeyLoadError, match=r"no key named 'carol' in \[keys\]"):
        load_account(workspace, "carol", password="pw")


def test_malformed_private_key_variable_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_ENV, "0xdeadbeefsecret")
    with pytest.raises(KeyLoadError) as caught:
        account_from_env()
    assert PRIVATE_KEY_ENV in str(caught.value) and "deadbeefsecret" not in str(caught.value)


def test_new_key_records_its_path_and_refuses_a_bad_name(workspace: Workspace) -> None:
    address = new_key(workspace, "alice", password="pw", iterations=2)
    assert Workspace.load(workspace.root).config["keys"] == {"alice": "keys/alice.json"}
    assert load_account(Workspace.load(workspace.root), "alice", password="pw").address == address
    with pytest.raises(InvalidInputError, match="not a usable key name"):
        new_key(workspace, "../evil", password="pw", iterations=2)


def test_key_show_prints_the_address_only(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    account = Account.create()
    create_keystore(workspace.keys_dir / "bob.json", "pw", account.key, iterations=2)
    shown = cli("key", "show", "bob", "--json", "--workdir", str(workspace.root))
    assert shown.exit_code == 0 and shown.json() == {"name": "bob", "address": account.address}
    assert account.key.hex().removeprefix("0x") not in shown.stdout + shown.stderr


def test_key_new_without_a_password_source_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    outcome = cli("key", "new", "dave", "--workdir", str(workspace.root))
    assert outcome.exit_code != 0 and "set FEDLEDGER_KEY_PASSWORD" in outcome.error_line()
    assert not (workspace.keys_dir / "dave.json").exists()
    assert "dave" not in Workspace.load(workspace.root).config["keys"]
