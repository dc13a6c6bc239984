"""`fedledger key show NAME` prints the address alone on stdout, so that a shell can pass it on:
`fedledger participant approve $(fedledger key show alice)` (the README's walk-through does)."""

from __future__ import annotations

from collections.abc import Callable

from eth_account import Account

from ledger.chain.keys import create_keystore
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome


def test_key_show_prints_the_address_alone_on_stdout_and_the_sentence_on_stderr(
    cli: Callable[..., Outcome], workspace: Workspace
) -> None:
    account = Account.create()
    create_keystore(workspace.keys_dir / "alice.json", "pw", account.key, iterations=2)
    shown = cli("key", "show", "alice", "--workdir", str(workspace.root))
    assert shown.exit_code == 0 and shown.stdout == f"{account.address}\n"
    assert shown.stderr.strip() == f"Key alice is {account.address}."
    assert account.key.hex().removeprefix("0x") not in shown.stdout + shown.stderr
    as_json = cli("key", "show", "alice", "--json", "--workdir", str(workspace.root))
    assert as_json.json() == {"name": "alice", "address": account.address}  # --json: the document alone
