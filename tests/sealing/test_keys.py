"""Encryption keys: kept encrypted in their own folder, opened only with the right password, never mixed up."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.errors import InvalidInputError, KeyLoadError
from ledger.chain.keys import PASSWORD_ENV, load_account, load_keystore, new_key
from ledger.sealing import SealContext, seal, unseal
from ledger.sealing.keys import (
    create_encryption_keyfile,
    encryption_key_path,
    load_encryption_key,
    load_encryption_keyfile,
    new_encryption_key,
    public_key_bytes,
    read_encryption_public_key,
)
from ledger.workspace import Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def test_a_new_key_is_recorded_in_its_own_folder_and_opens_with_its_password(workspace: Workspace) -> None:
    public = new_encryption_key(workspace, "alice", password="pw", iterations=2)
    reloaded = Workspace.load(workspace.root)
    assert reloaded.config["encryption_keys"] == {"alice": "keys/encryption/alice.json"}
    assert len(public) == 32
    assert read_encryption_public_key(encryption_key_path(reloaded, "alice")) == public
    assert public_key_bytes(load_encryption_key(reloaded, "alice", password="pw")) == public


def test_the_file_holds_no_private_key_in_the_clear_and_only_its_owner_reads_it(tmp_path: Path) -> None:
    key = X25519PrivateKey.generate()
    path = tmp_path / "k.json"
    create_encryption_keyfile(path, "pw", key, iterations=2)
    assert key.private_bytes_raw().hex() not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    assert load_encryption_keyfile(path, password="pw").private_bytes_raw() == key.private_bytes_raw()


def test_a_wrong_password_names_the_file_and_the_variable(tmp_path: Path) -> None:
    create_encryption_keyfile(tmp_path / "k.json", "pw", iterations=2)
    with pytest.raises(KeyLoadError, match=f"wrong password for encryption key .*k.json .*set {PASSWORD_ENV}"):
        load_encryption_keyfile(tmp_path / "k.json", password="other")


def test_the_password_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    public = create_encryption_keyfile(tmp_path / "k.json", "pw", iterations=2)
    with pytest.raises(KeyLoadError, match=f"no password for encryption key .*: set {PASSWORD_ENV}"):
        load_encryption_keyfile(tmp_path / "k.json")
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert public_key_bytes(load_encryption_keyfile(tmp_path / "k.json")) == public


def test_a_swapped_public_key_in_the_file_is_caught(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_encryption_keyfile(path, "pw", iterations=2)
    document = json.loads(path.read_text())
    document["public_key"] = "0x" + public_key_bytes(X25519PrivateKey.generate()).hex()
    path.write_text(json.dumps(document))
    with pytest.raises(KeyLoadError, match=r"\(or the file was altered\)"):
        load_encryption_keyfile(path, password="pw")


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_encryption_keyfile(path, "pw", iterations=2)
    before = path.read_bytes()
    with pytest.raises(KeyLoadError, match="already exists"):
        create_encryption_keyfile(path, "pw", iterations=2)
    assert path.read_bytes() == before


def test_bad_names_duplicates_and_empty_passwords_are_refused(workspace: Workspace) -> None:
    with pytest.raises(InvalidInputError, match="not a usable key name"):
        new_encryption_key(workspace, "../evil", password="pw", iterations=2)
    new_encryption_key(workspace, "alice", password="pw", iterations=2)
    with pytest.raises(KeyLoadError, match="an encryption key named 'alice' is already recorded"):
        new_encryption_key(workspace, "alice", password="pw", iterations=2)
    with pytest.raises(KeyLoadError, match="an empty password cannot protect"):
        new_encryption_key(workspace, "bob", password="", iterations=2)
    assert set(Workspace.load(workspace.root).config["encryption_keys"]) == {"alice"}
    assert not (workspace.keys_dir / "encryption" / "bob.json").exists()


def test_a_signing_key_and_an_encryption_key_of_one_name_live_apart(workspace: Workspace) -> None:
    address = new_key(workspace, "alice", password="pw", iterations=2)
    public = new_encryption_key(workspace, "alice", password="pw", iterations=2)
    assert load_account(workspace, "alice", password="pw").address == address
    assert public_key_bytes(load_encryption_key(workspace, "alice", password="pw")) == public


def test_each_loader_refuses_the_other_kind_of_key_file(workspace: Workspace) -> None:
    new_key(workspace, "signer", password="pw", iterations=2)
    new_encryption_key(workspace, "sealer", password="pw", iterations=2)
    with pytest.raises(KeyLoadError, match="is a signing keystore, not an encryption key"):
        load_encryption_keyfile(workspace.keys_dir / "signer.json", password="pw")
    with pytest.raises(KeyLoadError, match="is not an eth-account keystore"):
        load_keystore(workspace.keys_dir / "encryption" / "sealer.json", password="pw")


def test_an_unknown_name_says_how_to_make_one(workspace: Workspace) -> None:
    with pytest.raises(KeyLoadError, match=r"no encryption key named 'carol' .*`fedledger key new-encryption NAME`"):
        load_encryption_key(workspace, "carol", password="pw")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json", "it is not JSON"),
        ('{"kind": "something-else"}', 'its "kind" is not "fedledger-encryption-key"'),
        ('{"kind": "fedledger-encryption-key", "version": 1, "algorithm": "X25519"}', "it holds no X25519 public key"),
    ],
)
def test_a_malformed_key_file_is_refused_with_the_reason(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "k.json"
    path.write_text(content)
    with pytest.raises(KeyLoadError, match=f"is not a usable encryption key file \\({why}"):
        load_encryption_keyfile(path, password="pw")


def test_a_key_file_asking_for_a_huge_scrypt_cost_is_refused_before_deriving(tmp_path: Path) -> None:
    path = tmp_path / "k.json"
    create_encryption_keyfile(path, "pw", iterations=2)
    document = json.loads(path.read_text())
    document["sealed_private_key"]["kdfparams"]["n"] = 1 << 30
    path.write_text(json.dumps(document))
    with pytest.raises(KeyLoadError, match="its sealed_private_key section is malformed"):
        load_encryption_keyfile(path, password="pw")


def test_a_key_from_the_workspace_opens_what_was_sealed_to_its_public_key(workspace: Workspace) -> None:
    public = new_encryption_key(workspace, "aggregator", password="pw", iterations=2)
    address = "0x90F79bf6EB2c4f870365E785982E1f101E93b906"
    context = SealContext(chain_id=1, contract=address, round_id=1, sender=address)
    sealed = seal(b"update", {address: public}, context=context)
    key = load_encryption_key(Workspace.load(workspace.root), "aggregator", password="pw")
    assert unseal(sealed, address, key, context=context) == b"update"
