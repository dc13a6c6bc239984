"""The contract's privacy budget, declared ε, encryption-key registry and relayed batches, both
ways (accepted, and refused with the named error decoded by ledger.chain.contract_errors), on anvil."""

from __future__ import annotations

import pytest
from eth_account.signers.local import LocalAccount

from ledger.contract_constants import DELTA_SCALE, MAX_BATCH_SIZE
from ledger.chain.contract_errors import (
    FederationAlreadySubmitted,
    FederationDeadlinePassed,
    FederationInvalidBatchSize,
    FederationInvalidEncryptionKey,
    FederationInvalidPrivacyBudget,
    FederationInvalidSignature,
    FederationNotParticipant,
    FederationPrivacyBudgetExceeded,
    FederationPrivacyLossDecreased,
    FederationRoundClosed,
    FederationSignatureExpired,
)
from ledger.ipfs.cid import cid_to_bytes
from ledger.chain.federation import FederationClient, SignedUpdate, send_transaction
from tests.contracts.conftest import METRICS, MODEL, TERMS, TERMS_2, UPDATE, Fed
from tests.fixtures_chain import TestChain

pytestmark = pytest.mark.anvil

BUDGET = 4_000_000  # ε 4 in millionths
DELTA = 10**13  # δ 1e-5 in 1e-18


def private_fed(chain: TestChain) -> Fed:
    admin = chain.deploy()
    admin.publish_agreement(TERMS, epsilon_budget=4.0, delta=1e-5)
    return Fed(chain, admin)


def publish_raw(admin: FederationClient, epsilon_budget: int, delta: int) -> None:
    """publishAgreement with figures the client itself would refuse: the contract's own check."""
    binary = cid_to_bytes(TERMS)
    call = admin.contract.functions.publishAgreement(binary[1], binary[4:], epsilon_budget, delta)
    send_transaction(admin.w3, call, account=admin.account, chain_id=admin.chain_id)


def events(client: FederationClient, name: str, **filters: object) -> list[dict]:
    return [log["args"] for log in client._logs(name, **filters)]


# ---------------------------------------------------------------- agreement budget


def test_an_agreement_carries_its_budget_and_a_joining_party_copies_it(chain: TestChain) -> None:
    fed = private_fed(chain)
    info = fed.admin.agreement()
    assert (info.epsilon_budget_micros, info.delta_units) == (BUDGET, DELTA)
    assert (info.epsilon_budget, info.delta) == (4.0, 1e-5)
    account, _ = fed.party()
    assert fed.admin.privacy(account.address) == (0, BUDGET)


def test_an_agreement_without_a_budget_is_0_0(fed: Fed) -> None:
    info = fed.admin.agreement()
    assert (info.epsilon_budget_micros, info.delta_units, info.epsilon_budget, info.delta) == (0, 0, None, None)
    account, _ = fed.party()
    assert fed.admin.privacy(account.address) == (0, 0)


@pytest.mark.parametrize(
    ("epsilon_budget", "delta"),
    [(0, DELTA), (BUDGET, 0), (BUDGET, DELTA_SCALE), (BUDGET, 2**64 - 1)],
    ids=["epsilon-0-delta-positive", "delta-0", "delta-1", "delta-above-1"],
)
def test_a_half_or_out_of_range_budget_is_refused(chain: TestChain, epsilon_budget: int, delta: int) -> None:
    admin = chain.deploy()
    with pytest.raises(FederationInvalidPrivacyBudget) as caught:
        publish_raw(admin, epsilon_budget, delta)
    assert (caught.value.epsilon_budget, caught.value.delta) == (epsilon_budget, delta)
    assert admin.agreement_version() == 0


def test_a_new_version_budget_is_copied_at_the_next_join_and_the_declared_loss_stays(chain: TestChain) -> None:
    fed = private_fed(chain)
    account, client = fed.party()
    round_id = fed.open_round()
    client.submit_update(round_id, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=1_500_000)
    fed.admin.publish_agreement(TERMS_2, epsilon_budget=8.0, delta=1e-5)
    assert fed.admin.privacy(account.address) == (1_500_000, BUDGET)  # not joined v2 yet
    fed.join(account)
    assert fed.admin.privacy(account.address) == (1_500_000, 8_000_000)


# ---------------------------------------------------------------- declared ε


def test_declared_loss_grows_stays_and_is_refused_going_down_or_past_the_budget(chain: TestChain) -> None:
    fed = private_fed(chain)
    account, client = fed.party()
    first, second, third = fed.open_round(), fed.open_round(), fed.open_round()
    client.submit_update(first, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=2_000_000)
    assert fed.admin.privacy(account.address) == (2_000_000, BUDGET)

    with pytest.raises(FederationPrivacyLossDecreased) as down:
        client.submit_update(second, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=1_999_999)
    assert (down.value.party, down.value.declared, down.value.recorded) == (account.address, 1_999_999, 2_000_000)
    with pytest.raises(FederationPrivacyBudgetExceeded) as past:
        client.submit_update(second, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=BUDGET + 1)
    assert (past.value.party, past.value.declared, past.value.budget) == (account.address, BUDGET + 1, BUDGET)
    assert not fed.admin.has_submitted(second, account.address)

    client.submit_update(second, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=2_000_000)  # equal
    client.submit_update(third, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=BUDGET)  # the whole budget
    declared = events(fed.admin, "PrivacyLossDeclared", participant=account.address)
    assert [(e["roundId"], e["epsilon"]) for e in declared] == [(first, 2_000_000), (third, BUDGET)]
    assert [s.epsilon_micros for s in fed.admin.submissions(second)] == [2_000_000]
    assert fed.admin.privacy(account.address) == (BUDGET, BUDGET)


def test_without_a_budget_any_growing_loss_is_taken_but_not_a_decrease(fed: Fed) -> None:
    account, client = fed.party()
    first, second = fed.open_round(), fed.open_round()
    client.submit_update(first, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=2**64 - 1)
    with pytest.raises(FederationPrivacyLossDecreased):
        client.submit_update(second, cid=UPDATE, samples=1, metrics_hash=METRICS, epsilon_micros=0)
    assert fed.admin.privacy(account.address) == (2**64 - 1, 0)


def test_a_submission_without_dp_declares_nothing(fed: Fed) -> None:
    account, client = fed.party()
    client.submit_update(fed.open_round(), cid=UPDATE, samples=1, metrics_hash=METRICS)
    assert events(fed.admin, "PrivacyLossDeclared") == []
    assert fed.admin.privacy(account.address) == (0, 0)


# ---------------------------------------------------------------- encryption keys


def test_an_account_publishes_replaces_and_reads_its_encryption_key(fed: Fed) -> None:
    account, client = fed.party(join=False)
    assert fed.admin.encryption_key(account.address) is None
    client.publish_encryption_key(b"\x01" * 32)
    client.publish_encryption_key(b"\x02" * 32)
    assert fed.admin.encryption_key(account.address) == b"\x02" * 32
    published = events(fed.admin, "EncryptionKeyPublished", account=account.address)
    assert [bytes(e["publicKey"]) for e in published] == [b"\x01" * 32, b"\x02" * 32]
    assert fed.admin.encryption_key(fed.admin.sender) is None  # one account's key is its own


def test_a_zero_encryption_key_is_refused(fed: Fed) -> None:
    account, client = fed.party(join=False)
    with pytest.raises(FederationInvalidEncryptionKey):
        client.publish_encryption_key(b"\0" * 32)
    assert fed.admin.encryption_key(account.address) is None


# ---------------------------------------------------------------- relayed batches


def signed(fed: Fed, account: LocalAccount, round_id: int, *, epsilon: int = 0, deadline: int | None = None,
           client: FederationClient | None = None) -> SignedUpdate:
    deadline = fed.chain.now() + 3600 if deadline is None else deadline
    return (client or fed.admin).sign_update(
        account, round_id, cid=UPDATE, samples=7, metrics_hash=METRICS, epsilon_micros=epsilon, deadline=deadline
    )


def test_a_batch_records_every_valid_item_and_none_of_the_bad_ones(chain: TestChain) -> None:
    fed = private_fed(chain)
    other_contract = private_fed(chain).admin
    good = [fed.party()[0] for _ in range(3)]
    replayed, suspended, spender = fed.party()[0], fed.party()[0], fed.party()[0]
    outsider, pending = fed.chain.new_account(), fed.party(approve=False)[0]
    fed.admin.suspend(suspended.address)
    round_id = fed.open_round()
    before = fed.open_round()  # the spender declares ε 3 in an earlier round
    fed.admin.submit_updates(before, [signed(fed, spender, before, epsilon=3_000_000)])
    fed.admin.submit_updates(round_id, [signed(fed, replayed, round_id)])

    forged = signed(fed, good[0], round_id)
    forged = SignedUpdate(good[1].address, *[getattr(forged, f) for f in ("cid", "samples", "metrics_hash",
                          "epsilon_micros", "deadline", "signature")])
    other_chain = FederationClient(fed.admin.w3, fed.admin.address)
    other_chain._chain_id = fed.admin.chain_id + 1
    expired_at = fed.chain.now()
    fed.chain.advance(10)
    batch = [
        signed(fed, good[0], round_id),
        forged,  # good[1]'s item signed by good[0]
        signed(fed, replayed, round_id),  # already recorded
        signed(fed, good[1], round_id, client=other_chain),  # another chain id
        signed(fed, good[1], round_id, client=other_contract),  # another contract
        signed(fed, suspended, round_id),
        signed(fed, outsider, round_id),
        signed(fed, pending, round_id),
        signed(fed, good[1], round_id, epsilon=1_000_000),
        signed(fed, good[1], round_id, epsilon=1_000_000),  # duplicate inside the batch
        signed(fed, good[2], round_id, deadline=expired_at),
        signed(fed, spender, round_id, epsilon=2_999_999),  # decrease
        signed(fed, spender, round_id, epsilon=BUDGET + 1),  # past the budget
        signed(fed, good[2], round_id, epsilon=BUDGET),
    ]
    relayer = fed.chain.new_account()
    outcome = fed.admin.with_account(relayer).submit_updates(round_id, batch)

    g0, g1, g2 = (a.address for a in good)
    expected = {
        1: FederationInvalidSignature(g1),
        2: FederationAlreadySubmitted(round_id, replayed.address),
        3: FederationInvalidSignature(g1),
        4: FederationInvalidSignature(g1),
        5: FederationNotParticipant(suspended.address, "suspended"),
        6: FederationNotParticipant(outsider.address, "none"),
        7: FederationNotParticipant(pending.address, "pending"),
        9: FederationAlreadySubmitted(round_id, g1),
        10: FederationSignatureExpired(expired_at),
        11: FederationPrivacyLossDecreased(spender.address, 2_999_999, 3_000_000),
        12: FederationPrivacyBudgetExceeded(spender.address, BUDGET + 1, BUDGET),
    }
    assert outcome.recorded == [0, 8, 13]
    assert {i: error for i, _, error in outcome.results if error is not None} == expected
    assert [party for _, party, _ in outcome.results] == [u.participant for u in batch]

    rejected = events(fed.admin, "UpdateRejected", roundId=round_id)
    assert [(e["item"], e["participant"]) for e in rejected] == [(i, batch[i].participant) for i in sorted(expected)]
    [relayed] = [e for e in events(fed.admin, "UpdatesRelayed", roundId=round_id) if e["relayer"] == relayer.address]
    assert (relayed["recorded"], relayed["rejected"]) == (3, len(expected))

    recorded = {s.participant: s for s in fed.admin.submissions(round_id)}
    assert set(recorded) == {g0, g1, g2, replayed.address}
    assert (recorded[g1].epsilon_micros, recorded[g2].epsilon_micros, recorded[g1].samples) == (1_000_000, BUDGET, 7)
    assert fed.admin.round(round_id).submissions == 4
    assert fed.admin.privacy(spender.address) == (3_000_000, BUDGET)
    assert not fed.admin.has_submitted(round_id, spender.address)


def test_a_second_item_of_one_party_in_a_batch_is_a_duplicate_and_its_loss_is_not_taken(chain: TestChain) -> None:
    fed = private_fed(chain)
    account = fed.party()[0]
    round_id = fed.open_round()
    outcome = fed.admin.submit_updates(
        round_id, [signed(fed, account, round_id, epsilon=1_000_000), signed(fed, account, round_id, epsilon=2_000_000)]
    )
    assert outcome.recorded == [0]
    assert fed.admin.privacy(account.address) == (1_000_000, BUDGET)


@pytest.mark.parametrize("size", [0, MAX_BATCH_SIZE + 1])
def test_an_empty_or_oversized_batch_is_refused(fed: Fed, size: int) -> None:
    account = fed.party()[0]
    round_id = fed.open_round()
    with pytest.raises(FederationInvalidBatchSize) as caught:
        fed.admin.submit_updates(round_id, [signed(fed, account, round_id)] * size)
    assert (caught.value.size, caught.value.maximum) == (size, MAX_BATCH_SIZE)
    assert not fed.admin.has_submitted(round_id, account.address)


def test_a_batch_to_a_closed_round_or_past_its_deadline_reverts(fed: Fed) -> None:
    account = fed.party()[0]
    closed = fed.open_round()
    fed.admin.abort_round(closed, reason="test")
    with pytest.raises(FederationRoundClosed) as caught:
        fed.admin.submit_updates(closed, [signed(fed, account, closed)])
    assert (caught.value.round_id, caught.value.state) == (closed, "cancelled")

    late = fed.open_round(seconds=60)
    item = signed(fed, account, late)
    fed.chain.advance(120)
    with pytest.raises(FederationDeadlinePassed) as caught_late:
        fed.admin.submit_updates(late, [item])
    assert caught_late.value.round_id == late
    assert not fed.admin.has_submitted(late, account.address)
    assert events(fed.admin, "UpdatesRelayed") == []


def test_the_relayer_client_names_each_item_it_would_drop_before_sending(chain: TestChain) -> None:
    fed = private_fed(chain)
    good, outsider = fed.party()[0], fed.chain.new_account(fund_wei=0)
    round_id = fed.open_round()
    relayer = fed.admin.with_account(fed.chain.new_account())
    assert relayer.check_signed_update(round_id, signed(fed, good, round_id, epsilon=BUDGET)) is None
    assert relayer.check_signed_update(round_id, signed(fed, outsider, round_id)) == FederationNotParticipant(
        outsider.address, "none"
    )
    assert relayer.check_signed_update(round_id, signed(fed, good, round_id, epsilon=BUDGET + 1)) == (
        FederationPrivacyBudgetExceeded(good.address, BUDGET + 1, BUDGET)
    )


def test_a_signature_binds_its_round(fed: Fed) -> None:
    """A signature binds its round: an item signed for round 1 relayed to round 2 is forged there."""
    account = fed.party()[0]
    first, second = fed.open_round(), fed.open_round()
    item = fed.admin.sign_update(account, first, cid=MODEL, samples=1, metrics_hash=METRICS, deadline=fed.chain.now() + 600)
    outcome = fed.admin.submit_updates(second, [item])
    assert outcome.results == [(0, account.address, FederationInvalidSignature(account.address))]
