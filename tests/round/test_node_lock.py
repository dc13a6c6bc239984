"""`node train` and `node run` with one key on one workspace exclude each other: they share the
service lock of role ``node``, and the one that comes second is refused with the lock's sentence,
which names the command that holds it, before it trains or sends anything.

The holder here is this test process (the lock is an flock, so it excludes the in-process command
exactly as another process would); the commands run in-process through typer's runner.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import AnvilProcess
from node.services.lock import service_lock
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, make_federation

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def federation(anvil: AnvilProcess, anvil_keys: list[LocalAccount], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A fresh deployment on the session anvil with one admitted party and round 1 open, no submissions."""
    built = make_federation(tmp_path_factory.mktemp("node-lock"), rpc=anvil.rpc_url)
    built.admit("alice", Web3.to_hex(anvil_keys[6].key))
    built.open_round(base_cid=built.genesis_cid, min_updates=1)
    yield built


def nothing_sent(federation: Federation, before: int) -> bool:
    alice = federation.parties["alice"]["address"]
    client = federation.client()
    return client.w3.eth.get_transaction_count(alice, "pending") == before and not client.has_submitted(1, alice)


def test_node_train_is_refused_while_node_run_holds_the_key(federation: Federation) -> None:
    alice = federation.parties["alice"]["address"]
    before = federation.client().w3.eth.get_transaction_count(alice, "pending")
    with service_lock(federation.workspace.journal_dir, role="node", address=alice, command="fedledger node run"):
        outcome = cli("node", "train", "--round", "1", "--shard", "0", "--of", "2", *federation.w,
                      env=federation.parties["alice"]["env"])
    assert outcome.exit_code == 1 and outcome.stdout == ""
    line = outcome.error_line()
    assert f"another `fedledger node run` with key {alice} already runs on this workspace" in line
    assert "stop that one first" in line
    assert nothing_sent(federation, before)
    assert not list((federation.workspace.journal_dir).glob("*.json"))  # no journal entry: nothing trained or pinned


def test_node_run_is_refused_while_node_train_holds_the_key(federation: Federation) -> None:
    alice = federation.parties["alice"]["address"]
    before = federation.client().w3.eth.get_transaction_count(alice, "pending")
    with service_lock(federation.workspace.journal_dir, role="node", address=alice, command="fedledger node train"):
        outcome = cli("node", "run", "--once", "--shard", "0", "--of", "2", *federation.w,
                      env=federation.parties["alice"]["env"])
    assert outcome.exit_code == 1
    assert f"another `fedledger node train` with key {alice} already runs on this workspace" in outcome.error_line()
    assert nothing_sent(federation, before)
