"""A round's deadline second belongs to the round: at it, updates (direct and relayed, with a
signature valid until that second) are recorded, the round cannot be cancelled and may be
finalized; one second later it takes no update and, below its minimum, may be cancelled.

Each action is tried in a block mined at exactly that second (anvil's
``evm_setNextBlockTimestamp``), from the same state (snapshot and revert), since one second holds
only one block here.
"""

from __future__ import annotations

import pytest

from ledger.chain.contract_errors import FederationDeadlinePassed, FederationRoundStillOpen
from tests.contracts.conftest import METRICS, MODEL, TERMS, UPDATE, Fed, submit


def _block_time(fed: Fed, block: int) -> int:
    return int(fed.chain.w3.eth.get_block(block)["timestamp"])


def test_the_deadline_second_takes_updates_and_finalizing_but_not_cancelling(fed: Fed) -> None:
    _, first = fed.party()
    second_key, second = fed.party()
    round_id = fed.open_round(seconds=100, min_updates=2)
    submit(first, round_id)
    deadline = fed.admin.round(round_id).deadline
    at = fed.chain.rpc

    def at_second(second_: int) -> None:
        at("evm_setNextBlockTimestamp", [second_])

    # At the deadline second: no cancelling (the round may still reach its minimum in this very block).
    at_second(deadline)
    with pytest.raises(FederationRoundStillOpen) as still_open:
        fed.admin.cancel_round(round_id)
    assert (still_open.value.round_id, still_open.value.deadline) == (round_id, deadline)

    # At the deadline second: a direct update is recorded ...
    before = fed.chain.snapshot()
    at_second(deadline)
    tx = second.submit_update(round_id, cid=UPDATE, samples=7, metrics_hash=METRICS)
    assert _block_time(fed, tx.block) == deadline
    assert fed.admin.has_submitted(round_id, second_key.address)
    # ... and the round, now at its minimum, is finalized in the next block.
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert fed.admin.round(round_id).state == "finalized"
    fed.chain.revert(before)

    # At the deadline second: a relayed update signed until that very second is recorded.
    before = fed.chain.snapshot()
    signed = fed.admin.sign_update(
        second_key, round_id, cid=UPDATE, samples=7, metrics_hash=METRICS, deadline=deadline
    )
    at_second(deadline)
    relayed = fed.admin.submit_updates(round_id, [signed])
    assert _block_time(fed, relayed.tx.block) == deadline
    assert relayed.results == [(0, second_key.address, None)]
    fed.chain.revert(before)

    # One second later: no update, and the round below its minimum is cancelled.
    at_second(deadline + 1)
    with pytest.raises(FederationDeadlinePassed) as late:
        submit(second, round_id)
    assert (late.value.round_id, late.value.deadline) == (round_id, deadline)
    at_second(deadline + 1)
    cancelled = fed.admin.cancel_round(round_id)
    assert _block_time(fed, cancelled.block) == deadline + 1
    assert fed.admin.round(round_id).state == "cancelled"


def test_a_round_at_its_minimum_is_finalized_at_its_deadline_second(fed: Fed) -> None:
    _, client = fed.party()
    round_id = fed.open_round(seconds=100, min_updates=1)
    submit(client, round_id)
    deadline = fed.admin.round(round_id).deadline
    fed.chain.rpc("evm_setNextBlockTimestamp", [deadline])
    tx = fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert _block_time(fed, tx.block) == deadline
    assert fed.admin.round(round_id).state == "finalized"
