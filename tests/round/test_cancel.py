"""`fedledger round cancel`: a round whose deadline passed below its minimum is cancelled, once,
by the coordinator or the aggregator; before its deadline, or by a party, it is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import make_federation

pytestmark = pytest.mark.anvil


def test_a_round_below_its_minimum_is_cancelled_after_its_deadline_only(
    chain: TestChain, anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    federation.admit("alice", Web3.to_hex(anvil_keys[4].key))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=2, deadline=60)

    early = cli("round", "cancel", str(round_id), *federation.w)
    deadline = federation.client().round(round_id).deadline
    assert early.exit_code != 0
    assert f"round {round_id} takes updates until 20" in early.error_line()
    assert f"UTC (unix time {deadline}); it can be cancelled only after its deadline" in early.error_line()
    by_party = cli("round", "cancel", str(round_id), *federation.w, env=federation.parties["alice"]["env"])
    assert by_party.exit_code != 0 and "lacks the coordinator role" in by_party.error_line()

    chain.advance(deadline - chain.now() + 1)  # the deadline counts from the wall clock, which may lead the chain
    cancelled = ok(cli("round", "cancel", str(round_id), "--json", *federation.w)).json()
    assert cancelled["round_id"] == round_id and cancelled["tx_hash"].startswith("0x")
    assert federation.client().round(round_id).state == "cancelled"
    again = cli("aggregate", "--round", str(round_id), *federation.w)
    assert again.exit_code != 0 and f"round {round_id} is cancelled" in again.error_line()
