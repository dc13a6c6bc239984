"""`aggregator run`, `coordinator run` and `relay serve` run once per key and workspace: a second
instance is refused with the lock's sentence, naming the command that holds it, before it sends
anything (`node run`'s lock: tests/round/test_node_lock.py).

The holder is this test process (an flock excludes the in-process command exactly as another
process would). The key holds no ether and no role, so a command that skipped its lock would stop
at once on those instead of running on.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.anvil import AnvilProcess
from ledger.chain.keys import create_keystore
from node.services.lock import service_lock
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, make_federation

pytestmark = pytest.mark.anvil

COMMANDS = {
    "aggregator": ("aggregator", "run", "--once"),
    "coordinator": ("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1"),
    "relay": ("relay", "serve", "--port", "0"),
}


@pytest.fixture(scope="module")
def federation(anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Federation, Path, str]]:
    """A deployment on the session anvil, and a keystore (password "pw") for a key with no ether and no role."""
    root = tmp_path_factory.mktemp("service-locks")
    built = make_federation(root, rpc=anvil.rpc_url)
    keystore = root / "service.json"
    address = create_keystore(keystore, "pw", iterations=2)
    yield built, keystore, address


@pytest.mark.parametrize("role", list(COMMANDS))
def test_a_second_service_with_one_key_is_refused_with_the_locks_sentence(
    federation: tuple[Federation, Path, str], role: str
) -> None:
    built, keystore, address = federation
    command = "fedledger relay serve" if role == "relay" else f"fedledger {role} run"
    w3 = built.client().w3
    with service_lock(built.workspace.journal_dir, role=role, address=address, command=command):
        outcome = cli(*COMMANDS[role], "--key", str(keystore), *built.w, env={"FEDLEDGER_KEY_PASSWORD": "pw"})
    assert outcome.exit_code == 1, outcome.stderr
    line = outcome.error_line()
    assert f"another `{command}` with key {address} already runs on this workspace" in line, line
    assert "stop that one first" in line
    assert w3.eth.get_transaction_count(address, "pending") == 0
