"""Who signs a governance transaction: ``--key``, else ``$FEDLEDGER_PRIVATE_KEY``, else ``[keys] admin``.

The more explicit setting wins. A script that sets ``FEDLEDGER_PRIVATE_KEY`` in a workspace that
records ``[keys] admin`` signs with the variable's key and is not asked for the admin keystore's
password (which, without a terminal, it could not give).
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from ledger.chain.connection import signing_account
from ledger.chain.keys import PASSWORD_ENV, PRIVATE_KEY_ENV, keystore_address, new_key
from ledger.errors import KeyLoadError
from ledger.workspace import Workspace

RPC = "http://127.0.0.1:9"  # never reached: a key is always found before the dev account is asked for
NO_CHAIN: Any = None


@pytest.fixture
def with_admin(workspace: Workspace) -> tuple[Workspace, str]:
    """The workspace with ``[keys] admin`` and ``[keys] ops`` recorded (password "pw"); the admin's address."""
    admin = new_key(workspace, "admin", password="pw", iterations=2)
    new_key(workspace, "ops", password="pw", iterations=2)
    return Workspace.load(workspace.root), admin


def test_private_key_variable_wins_over_the_workspace_admin_key(
    with_admin: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, _ = with_admin
    explicit = Account.create()
    monkeypatch.setenv(PRIVATE_KEY_ENV, Web3.to_hex(explicit.key))
    monkeypatch.delenv(PASSWORD_ENV, raising=False)  # asking for the admin keystore's password would fail
    assert signing_account(workspace, None, w3=NO_CHAIN, rpc=RPC).address == explicit.address


def test_key_option_wins_over_the_private_key_variable(
    with_admin: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, _ = with_admin
    monkeypatch.setenv(PRIVATE_KEY_ENV, Web3.to_hex(Account.create().key))
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    ops = keystore_address(workspace.keys_dir / "ops.json")
    assert signing_account(workspace, "ops", w3=NO_CHAIN, rpc=RPC).address == ops


def test_workspace_admin_key_signs_when_nothing_more_explicit_is_given(
    with_admin: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace, admin = with_admin
    monkeypatch.delenv(PRIVATE_KEY_ENV, raising=False)
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    assert signing_account(workspace, None, w3=NO_CHAIN, rpc=RPC).address == admin
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(KeyLoadError, match=rf"no password for keystore .*admin\.json: set {PASSWORD_ENV}"):
        signing_account(workspace, None, w3=NO_CHAIN, rpc=RPC)
