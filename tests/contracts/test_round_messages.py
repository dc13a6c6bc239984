"""The bulletin board of secure rounds (``postRoundMessage``): an advertisement is taken up to the
deadline second and refused one second later; a reveal is refused up to the deadline second and
from a party that did not submit, and taken after it from a submitter; ``round_messages`` reads
them back with their CIDs, the first per (party, kind). A party without ether signs its messages
(``postSignedRoundMessage``) and anyone sends them, under the same rules and to the second of the
signature's own deadline. The same on anvil and on the in-process chain (which runs the same
compiled contract).

Each deadline-second action is mined at exactly that second: anvil's ``evm_setNextBlockTimestamp``,
eth-tester's ``time_travel`` on the in-process chain (it sets the pending block's time). Every such
transaction's block time is asserted, so the helper cannot drift silently.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from ledger.chain.contract_errors import (
    FederationDeadlinePassed,
    FederationInvalidCid,
    FederationInvalidSignature,
    FederationNotASubmitter,
    FederationNotParticipant,
    FederationRevealBeforeDeadline,
    FederationRoundClosed,
    FederationSignatureExpired,
    FederationUnknownMessageKind,
)
from ledger.chain.federation import FederationClient, RoundMessage, send_transaction
from ledger.contract_constants import RoundMessageKind
from tests.contracts.conftest import MODEL, TERMS, TERMS_2, UPDATE, Fed, make_fed, submit
from tests.fixtures_chain import TestChain

ADVERTISE, REVEAL = RoundMessageKind.ADVERTISE, RoundMessageKind.REVEAL
# Three distinct CIDs (raw and dag-pb) for the three kept messages, and one for an ignored repeat.
KEYS_A, KEYS_B, REVEAL_A, REVEAL_A_AGAIN = TERMS, MODEL, TERMS_2, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def _at_second(chain: TestChain, second: int) -> None:
    """The next transaction (and a call judged at the pending block) happens at ``second``."""
    if chain.in_process:
        chain.w3.provider.ethereum_tester.time_travel(second)  # type: ignore[attr-defined]
    else:
        chain.rpc("evm_setNextBlockTimestamp", [second])


def _block_time(chain: TestChain, block: int) -> int:
    return int(chain.w3.eth.get_block(block)["timestamp"])


@pytest.mark.parametrize("kind", ["chain", "memory_chain"])
def test_advertise_until_the_deadline_second_then_reveal_by_submitters_only(kind: str, request: pytest.FixtureRequest) -> None:
    chain: TestChain = request.getfixturevalue(kind)
    fed: Fed = make_fed(chain)
    a_key, a = fed.party()  # submits
    b_key, b = fed.party()  # admitted, advertises at the deadline second, never submits
    c_key, c = fed.party(approve=False)  # joined, not admitted
    round_id = fed.open_round(seconds=100)
    deadline = fed.admin.round(round_id).deadline

    # Before the deadline: an admitted party advertises; a pending one cannot; no reveal yet.
    a.post_round_message(round_id, ADVERTISE, KEYS_A)
    with pytest.raises(FederationNotParticipant) as pending:
        c.post_round_message(round_id, ADVERTISE, KEYS_A)
    assert (pending.value.account, pending.value.status) == (c_key.address, "pending")
    with pytest.raises(FederationInvalidCid) as bad_codec:  # not a CID's codec (the client would not send it)
        send_transaction(chain.w3, fed.admin.contract.functions.postRoundMessage(round_id, ADVERTISE, 0x71, b"\1" * 32), account=b_key)
    assert bad_codec.value.codec == 0x71
    submit(a, round_id)
    a.post_round_message(round_id, ADVERTISE, REVEAL_A_AGAIN)  # after its update: taken, ignored by readers
    with pytest.raises(FederationRevealBeforeDeadline) as early:
        a.post_round_message(round_id, REVEAL, REVEAL_A)
    assert (early.value.round_id, early.value.deadline) == (round_id, deadline)
    with pytest.raises(FederationUnknownMessageKind) as unknown:
        a.post_round_message(round_id, 3, REVEAL_A)
    assert unknown.value.kind == 3

    # The deadline second still belongs to the round: no reveal, an advertisement is taken.
    _at_second(chain, deadline)
    with pytest.raises(FederationRevealBeforeDeadline):
        a.post_round_message(round_id, REVEAL, REVEAL_A)
    advertised = b.post_round_message(round_id, ADVERTISE, KEYS_B)
    assert _block_time(chain, advertised.block) == deadline

    # One second later: no advertisement; a reveal from the submitter only.
    _at_second(chain, deadline + 1)
    with pytest.raises(FederationDeadlinePassed) as late:
        b.post_round_message(round_id, ADVERTISE, KEYS_B)
    assert (late.value.round_id, late.value.deadline) == (round_id, deadline)
    for key, client in ((b_key, b), (c_key, c)):
        with pytest.raises(FederationNotASubmitter) as outsider:
            client.post_round_message(round_id, REVEAL, REVEAL_A)
        assert (outsider.value.round_id, outsider.value.account) == (round_id, key.address)
    revealed = a.post_round_message(round_id, REVEAL, REVEAL_A)
    assert _block_time(chain, revealed.block) == deadline + 1
    a.post_round_message(round_id, REVEAL, REVEAL_A_AGAIN)  # taken by the contract, ignored by readers

    messages = fed.admin.round_messages(round_id)
    assert [(m.party, m.kind, m.cid) for m in messages] == [
        (a_key.address, ADVERTISE, KEYS_A),
        (b_key.address, ADVERTISE, KEYS_B),
        (a_key.address, REVEAL, REVEAL_A),
    ]
    assert messages[1] == RoundMessage(
        round_id, b_key.address, ADVERTISE, KEYS_B, advertised.block, advertised.tx_hash, messages[1].log_index
    )
    assert messages[2].tx_hash == revealed.tx_hash and messages[2].block_number == revealed.block
    assert [m.cid for m in fed.admin.round_messages(round_id, REVEAL)] == [REVEAL_A]
    assert [m.party for m in fed.admin.round_messages(round_id, ADVERTISE)] == [a_key.address, b_key.address]
    assert fed.admin.round_messages(round_id + 1) == []
    # Messages are no submissions: the round holds A's update only.
    assert [(s.participant, s.cid) for s in fed.admin.submissions(round_id)] == [(a_key.address, UPDATE)]
    assert fed.admin.round(round_id).submissions == 1

    # A closed round takes no message.
    fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    with pytest.raises(FederationRoundClosed):
        a.post_round_message(round_id, REVEAL, REVEAL_A)


@pytest.mark.parametrize("kind", ["chain", "memory_chain"])
def test_a_party_without_ether_posts_signed_messages_through_anyone_under_the_same_rules(
    kind: str, request: pytest.FixtureRequest,
) -> None:
    """``postSignedRoundMessage``: the admin sends, the board names the signer; the signature holds to its
    deadline second and no longer, must be the party's over this chain and contract, and then the party
    meets exactly the rules of ``postRoundMessage`` (an advertisement at the round's deadline second but
    not after it, a reveal only after it and only from a submitter, members only)."""
    chain: TestChain = request.getfixturevalue(kind)
    fed: Fed = make_fed(chain)
    gasless, outsider = Account.create(), Account.create()
    fed.join(gasless)  # its join signature, sent by the admin
    fed.admin.approve(gasless.address)
    round_id = fed.open_round(seconds=100)
    deadline = fed.admin.round(round_id).deadline
    relayer = fed.admin

    def signed(account, message_kind: int, cid: str, *, until: int = deadline + 1000):  # noqa: ANN001, ANN202
        return relayer.sign_round_message(account, round_id, kind=message_kind, cid=cid, deadline=until)

    now = chain.now()
    with pytest.raises(FederationSignatureExpired) as expired:
        relayer.post_signed_round_message(round_id, signed(gasless, ADVERTISE, KEYS_A, until=now - 1))
    assert expired.value.deadline == now - 1
    forged = replace(signed(outsider, ADVERTISE, KEYS_A), participant=gasless.address)
    elsewhere = FederationClient(chain.w3, relayer.address)
    elsewhere._chain_id = relayer.chain_id + 1  # noqa: SLF001 - a signature for another chain
    for bad in (forged, elsewhere.sign_round_message(gasless, round_id, kind=ADVERTISE, cid=KEYS_A, deadline=deadline)):
        assert isinstance(relayer.check_signed_round_message(round_id, bad), FederationInvalidSignature)
        with pytest.raises(FederationInvalidSignature) as invalid:
            relayer.post_signed_round_message(round_id, bad)
        assert invalid.value.participant == gasless.address
    with pytest.raises(FederationNotParticipant) as outside:
        relayer.post_signed_round_message(round_id, signed(outsider, ADVERTISE, KEYS_A))
    assert (outside.value.account, outside.value.status) == (outsider.address, "none")
    update = relayer.sign_update(gasless, round_id, cid=UPDATE, samples=10, metrics_hash=bytes(32), deadline=deadline)
    assert relayer.submit_updates(round_id, [update]).recorded == [0]
    with pytest.raises(FederationRevealBeforeDeadline):
        relayer.post_signed_round_message(round_id, signed(gasless, REVEAL, REVEAL_A))

    # The deadline second: a signature valid until exactly this second, for an advertisement, is taken.
    message = signed(gasless, ADVERTISE, KEYS_A, until=deadline)
    _at_second(chain, deadline)
    assert relayer.check_signed_round_message(round_id, message) is None
    _at_second(chain, deadline)
    advertised = relayer.post_signed_round_message(round_id, message)
    assert _block_time(chain, advertised.block) == deadline

    # One second later: that signature has expired, a fresh one meets the round's deadline; a reveal is taken.
    _at_second(chain, deadline + 1)
    with pytest.raises(FederationSignatureExpired):
        relayer.post_signed_round_message(round_id, message)
    _at_second(chain, deadline + 1)
    with pytest.raises(FederationDeadlinePassed):
        relayer.post_signed_round_message(round_id, signed(gasless, ADVERTISE, KEYS_B))
    with pytest.raises(FederationNotASubmitter):
        relayer.post_signed_round_message(round_id, signed(outsider, REVEAL, REVEAL_A))
    revealed = relayer.post_signed_round_message(round_id, signed(gasless, REVEAL, REVEAL_A))

    messages = fed.admin.round_messages(round_id)
    assert [(m.party, m.kind, m.cid, m.tx_hash) for m in messages] == [
        (gasless.address, ADVERTISE, KEYS_A, advertised.tx_hash),
        (gasless.address, REVEAL, REVEAL_A, revealed.tx_hash),
    ]
    assert chain.w3.eth.get_transaction(revealed.tx_hash)["from"] == relayer.sender
    assert chain.w3.eth.get_balance(gasless.address) == 0 and chain.w3.eth.get_transaction_count(gasless.address) == 0
