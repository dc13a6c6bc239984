"""Rounds: open, one update per admitted party before the deadline, finalize once, cancel."""

from __future__ import annotations

import pytest

from ledger.chain.contract_errors import (
    AccessControlUnauthorizedAccount,
    FederationAgreementNotAccepted,
    FederationAlreadySubmitted,
    FederationBelowMinimum,
    FederationDeadlinePassed,
    FederationInvalidDeadline,
    FederationMinimumReached,
    FederationRoundClosed,
    FederationRoundStillOpen,
    FederationUnknownRound,
)
from ledger.chain.federation import sign_join_message
from tests.contracts.conftest import CONFIG, METRICS, MODEL, TERMS, UPDATE, Fed, submit


def test_the_coordinator_opens_numbered_rounds(fed: Fed) -> None:
    assert fed.admin.round_count() == 0
    first, second = fed.open_round(), fed.open_round(min_updates=3)
    assert (first, second) == (1, 2)
    info = fed.admin.round(second)
    assert (info.state, info.min_updates, info.submissions, info.base_cid, info.config_hash) == (
        "open", 3, 0, MODEL, CONFIG
    )
    assert info.global_cid is None and info.agreement_version == 1


def test_round_info_follows_a_reorg_that_reopens_the_round_differently(fed: Fed) -> None:
    """The client caches a round's opening event; a reorg that replaces it must not be hidden."""
    snapshot = fed.chain.snapshot()
    fed.open_round()
    assert fed.admin.round(1).base_cid == MODEL  # now cached
    fed.chain.revert(snapshot)
    fed.admin.open_round(base_cid=UPDATE, deadline=fed.chain.now() + 900, min_updates=2, config_hash=CONFIG)
    info = fed.admin.round(1)
    assert (info.base_cid, info.min_updates) == (UPDATE, 2)


def test_others_cannot_open_a_round(fed: Fed) -> None:
    account, client = fed.party()
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        client.open_round(base_cid=MODEL, deadline=fed.chain.now() + 60, min_updates=1, config_hash=CONFIG)
    assert (caught.value.account, caught.value.role) == (account.address, "coordinator")


def test_a_round_deadline_in_the_past_is_refused(fed: Fed) -> None:
    deadline = fed.chain.now() - 1
    with pytest.raises(FederationInvalidDeadline) as caught:
        fed.admin.open_round(base_cid=MODEL, deadline=deadline, min_updates=1, config_hash=CONFIG)
    assert caught.value.deadline == deadline


def test_an_admitted_party_submits_once_and_the_update_is_recorded(fed: Fed) -> None:
    account, client = fed.party()
    round_id = fed.open_round()
    assert not fed.admin.has_submitted(round_id, account.address)
    result = client.submit_update(round_id, cid=UPDATE, samples=123, metrics_hash=METRICS)
    assert fed.admin.has_submitted(round_id, account.address)
    [recorded] = fed.admin.submissions(round_id)
    assert (recorded.participant, recorded.cid, recorded.samples, recorded.metrics_hash, recorded.tx_hash) == (
        account.address, UPDATE, 123, METRICS, result.tx_hash
    )
    assert fed.admin.round(round_id).submissions == 1
    with pytest.raises(FederationAlreadySubmitted) as caught:
        submit(client, round_id)
    assert (caught.value.round_id, caught.value.account) == (round_id, account.address)


def test_a_submission_to_an_unknown_round_is_refused(fed: Fed) -> None:
    _, client = fed.party()
    with pytest.raises(FederationUnknownRound) as caught:
        submit(client, 7)
    assert caught.value.round_id == 7


def test_a_submission_at_the_deadline_counts_and_a_late_one_is_refused(fed: Fed) -> None:
    _, on_time = fed.party()
    _, late = fed.party()
    round_id = fed.open_round(seconds=100)
    deadline = fed.admin.round(round_id).deadline
    fed.chain.rpc("evm_setNextBlockTimestamp", [deadline])
    submit(on_time, round_id)
    fed.chain.rpc("evm_setNextBlockTimestamp", [deadline + 1])
    with pytest.raises(FederationDeadlinePassed) as caught:
        submit(late, round_id)
    assert (caught.value.round_id, caught.value.deadline) == (round_id, deadline)


def test_only_the_aggregator_finalizes(fed: Fed) -> None:
    account, client = fed.party()
    round_id = fed.open_round()
    submit(client, round_id)
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        client.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert (caught.value.account, caught.value.role) == (account.address, "aggregator")
    fed.admin.grant_role("aggregator", account.address)
    client.finalize_round(round_id, global_cid=UPDATE, receipt_cid=TERMS)
    info = fed.admin.round(round_id)
    assert (info.state, info.global_cid, info.receipt_cid, info.submissions) == ("finalized", UPDATE, TERMS, 1)


def test_finalizing_before_the_deadline_needs_the_minimum(fed: Fed) -> None:
    _, first = fed.party()
    _, second = fed.party()
    round_id = fed.open_round(min_updates=2)
    submit(first, round_id)
    with pytest.raises(FederationBelowMinimum) as caught:
        fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert (caught.value.round_id, caught.value.submissions, caught.value.minimum) == (round_id, 1, 2)
    submit(second, round_id)
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert fed.admin.round(round_id).state == "finalized"


def test_a_round_is_finalized_once_and_then_takes_no_updates(fed: Fed) -> None:
    _, client = fed.party()
    _, latecomer = fed.party()
    round_id = fed.open_round()
    submit(client, round_id)
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    with pytest.raises(FederationRoundClosed) as caught:
        fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    assert (caught.value.round_id, caught.value.state) == (round_id, "finalized")
    with pytest.raises(FederationRoundClosed):
        submit(latecomer, round_id)
    with pytest.raises(FederationRoundClosed):
        fed.admin.cancel_round(round_id)


def test_after_the_deadline_a_round_below_its_minimum_is_cancelled_not_finalized(fed: Fed) -> None:
    _, client = fed.party()
    round_id = fed.open_round(seconds=50, min_updates=2)
    submit(client, round_id)
    with pytest.raises(FederationRoundStillOpen) as early:
        fed.admin.cancel_round(round_id)
    assert early.value.round_id == round_id
    fed.chain.advance(51)
    with pytest.raises(FederationBelowMinimum):
        fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    fed.admin.cancel_round(round_id)
    assert fed.admin.round(round_id).state == "cancelled"
    with pytest.raises(FederationRoundClosed) as caught:
        fed.admin.cancel_round(round_id)
    assert caught.value.state == "cancelled"


def test_a_round_that_reached_its_minimum_cannot_be_cancelled(fed: Fed) -> None:
    _, client = fed.party()
    round_id = fed.open_round(seconds=50, min_updates=1)
    submit(client, round_id)
    fed.chain.advance(51)
    with pytest.raises(FederationMinimumReached) as caught:
        fed.admin.cancel_round(round_id)
    assert (caught.value.submissions, caught.value.minimum) == (1, 1)
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)


def test_the_aggregator_may_cancel_and_a_party_may_not(fed: Fed) -> None:
    account, client = fed.party()
    aggregator_key = fed.chain.new_account()
    fed.admin.grant_role("aggregator", aggregator_key.address)
    round_id = fed.open_round(seconds=20, min_updates=1)
    fed.chain.advance(21)
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        client.cancel_round(round_id)
    assert (caught.value.account, caught.value.role) == (account.address, "coordinator")
    fed.admin.with_account(aggregator_key).cancel_round(round_id)


def _join_many(fed: Fed, count: int, *, approve: bool) -> list:
    """``count`` fresh keys joined (and admitted, if ``approve``) in one mined block, relayed by the admin."""
    keys = [fed.chain.new_account(fund_wei=0) for _ in range(count)]
    deadline = fed.chain.now() + 3600
    fed.chain.rpc("evm_setAutomine", [False])  # all in one block: one mining round trip
    try:
        for key in keys:
            signature = sign_join_message(
                key, chain_id=fed.admin.chain_id, contract=fed.admin.address, version=1, terms_cid=TERMS, deadline=deadline
            )
            fed.admin.contract.functions.join(key.address, 1, deadline, signature).transact(
                {"from": fed.admin.sender, "gas": 200_000}
            )
            if approve:
                fed.admin.contract.functions.approve(key.address).transact({"from": fed.admin.sender, "gas": 200_000})
        fed.chain.rpc("evm_mine", [])
    finally:
        fed.chain.rpc("evm_setAutomine", [True])
    return keys


def test_participants_past_the_inline_bitmap_use_overflow_words(fed: Fed) -> None:
    """Bits of the first 120 admitted parties live in the round slot; later ones in a separate word."""
    keys = _join_many(fed, 122, approve=True)
    assert fed.admin.participant_count() == 122
    round_id = fed.open_round(min_updates=3)
    for key in (keys[119], keys[120], keys[121]):
        fed.chain.rpc("anvil_setBalance", [key.address, hex(10**18)])
        submit(fed.admin.with_account(key), round_id)
    assert fed.admin.participant(keys[121].address).index == 121
    assert [fed.admin.has_submitted(round_id, k.address) for k in keys[118:]] == [False, True, True, True]
    with pytest.raises(FederationAlreadySubmitted):
        submit(fed.admin.with_account(keys[121]), round_id)
    assert fed.admin.round(round_id).submissions == 3
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)


def _round_gas(fed: Fed, clients: list) -> tuple[list[int], int]:
    """Gas of each client's submission to a fresh round, and of finalizing it."""
    round_id = fed.open_round(min_updates=len(clients))
    used = [c.submit_update(round_id, cid=UPDATE, samples=100, metrics_hash=METRICS).gas_used for c in clients]
    return used, fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS).gas_used


def test_pending_joins_take_no_bit_and_leave_submission_and_finalize_gas_unchanged(fed: Fed) -> None:
    """Joining is open to anyone; 200 spam joins must not push admitted parties into overflow words
    nor lengthen the count of submissions."""
    parties = [fed.party()[1] for _ in range(2)]
    before = _round_gas(fed, parties)
    spam = _join_many(fed, 200, approve=False)
    assert fed.admin.participant(spam[-1].address).index is None
    assert fed.admin.participant_count() == 2
    late, late_client = fed.party()  # admitted after the spam: the next bit, still inline
    assert fed.admin.participant(late.address).index == 2
    after = _round_gas(fed, parties)
    assert after == before
    assert late_client.submit_update(fed.open_round(), cid=UPDATE, samples=1, metrics_hash=METRICS).gas_used == before[0][1]


def test_an_agreement_published_while_rounds_are_open_binds_those_rounds(fed: Fed) -> None:
    account, client = fed.party()
    closed, first_open, second_open = fed.open_round(), fed.open_round(), fed.open_round()
    submit(client, closed)
    fed.admin.finalize_round(closed, global_cid=MODEL, receipt_cid=TERMS)
    fed.admin.publish_agreement(UPDATE)
    for round_id in (first_open, second_open):
        with pytest.raises(FederationAgreementNotAccepted) as caught:
            submit(client, round_id)
        assert (caught.value.accepted, caught.value.current) == (1, 2)
    fed.join(account)
    submit(client, first_open)
    fed.admin.publish_agreement(TERMS)
    with pytest.raises(FederationAgreementNotAccepted):
        submit(client, second_open)
    fed.join(account)
    submit(client, second_open)
    assert fed.admin.round(second_open).agreement_version == 1  # as opened; the event records it
