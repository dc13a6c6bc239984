"""A round that spans a restart of the workspace's anvil: a restarted anvil keeps the latest state
only, so nothing may need the state of an earlier block (the aggregator used to read membership
at each submission's block and failed), and deadlines must count from the wall clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import free_port, stop_pidfile
from ledger.workspace import Workspace
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation

pytestmark = pytest.mark.anvil


@pytest.mark.slow
def test_a_round_opened_before_a_chain_restart_is_aggregated_after_it(tmp_path: Path, anvil_keys: list[LocalAccount]) -> None:
    root = tmp_path / "ws"
    w = ("--workdir", str(root))
    ok(cli("init", str(root)))
    port = str(free_port())
    try:
        ok(fedledger("chain", "up", "--port", port, "--detach", *w))
        ok(cli("deploy", *w))
        terms = tmp_path / "terms.md"
        terms.write_text("# Terms\nEach party trains on its own data only.\n")
        ok(cli("agreement", "publish", str(terms), *w))
        genesis = ok(cli("model", "init", "--model", "mlp", "--seed", "0", "--json", *w)).json()["cid"]
        federation = Federation(workspace=Workspace.load(root), genesis_cid=genesis, tmp=tmp_path)
        federation.admit("alice", Web3.to_hex(anvil_keys[5].key))  # anvil's dev accounts: funded on every anvil
        round_id = federation.open_round(base_cid=genesis, min_updates=1)
        ok(fedledger("node", "train", "--round", str(round_id), "--shard", "0", "--of", "4", *w,
                     env=federation.parties["alice"]["env"], timeout=180))
        federation.admit("bob", Web3.to_hex(anvil_keys[6].key))  # the submission's block is no longer the head

        ok(fedledger("chain", "down", *w))
        ok(fedledger("chain", "up", "--port", port, "--detach", *w))
        finalized = ok(fedledger("aggregate", "--round", str(round_id), "--json", *w)).json()
        assert [u["participant"] for u in finalized["included"]] == [federation.parties["alice"]["address"]]
        assert federation.client().round(round_id).state == "finalized"
        assert federation.open_round(base_cid=finalized["global_cid"], min_updates=1) == round_id + 1
    finally:
        fedledger("chain", "down", *w)
        stop_pidfile(root / "chain" / "anvil.pid")
