"""Agreements and joining: who may accept which version, with which signature."""

from __future__ import annotations

import pytest
from eth_account import Account

from ledger.chain.contract_errors import (
    AccessControlUnauthorizedAccount,
    FederationAlreadyAccepted,
    FederationInvalidCid,
    FederationInvalidSignature,
    FederationNoAgreement,
    FederationSignatureExpired,
    FederationStaleAgreement,
    FederationUnexpectedStatus,
)
from ledger.chain.federation import send_transaction, sign_join_message
from tests.contracts.conftest import TERMS, TERMS_2, Fed, make_fed


def test_admin_publishes_numbered_versions_and_others_are_refused(fed: Fed) -> None:
    assert fed.admin.agreement().terms_cid == TERMS
    version, _ = fed.admin.publish_agreement(TERMS_2)
    assert version == 2
    assert fed.admin.agreement().terms_cid == TERMS_2
    assert fed.admin.agreement(1).terms_cid == TERMS
    outsider = fed.chain.new_account()
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        fed.admin.with_account(outsider).publish_agreement(TERMS)
    assert (caught.value.account, caught.value.role) == (outsider.address, "admin")


def test_publishing_a_cid_with_an_unknown_codec_is_refused(fed: Fed) -> None:
    call = fed.admin.contract.functions.publishAgreement(0x99, b"\1" * 32, 0, 0)
    with pytest.raises(FederationInvalidCid) as caught:
        send_transaction(fed.chain.w3, call, account=None)
    assert caught.value.codec == 0x99


def test_a_party_joins_itself_and_becomes_pending(fed: Fed) -> None:
    account, client = fed.party(join=False)
    deadline = fed.chain.now() + 60
    signature = client.sign_join(account, version=1, deadline=deadline)
    client.join(account.address, version=1, deadline=deadline, signature=signature)
    info = fed.admin.participant(account.address)
    assert (info.status, info.accepted_version, info.index) == ("pending", 1, None)  # a bit comes with admission
    assert [p.address for p in fed.admin.participants()] == [account.address]


def test_a_join_relayed_by_anyone_counts_for_the_signer(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    relayer = fed.admin.with_account(fed.chain.new_account())
    deadline = fed.chain.now() + 60
    signature = relayer.sign_join(account, version=1, deadline=deadline)
    result = relayer.join(account.address, version=1, deadline=deadline, signature=signature)
    assert fed.admin.participant(account.address).status == "pending"
    event = fed.admin.contract.events.ParticipantJoined().process_receipt(
        fed.chain.w3.eth.get_transaction_receipt(result.tx_hash)
    )[0]["args"]
    assert event["relayer"] == relayer.sender and event["signature"] == signature and event["deadline"] == deadline


def test_joining_before_any_agreement_is_refused(chain) -> None:
    admin = chain.deploy()
    account = chain.new_account()
    with pytest.raises(FederationNoAgreement):
        admin.join(account.address, version=1, deadline=chain.now() + 60, signature=b"\0" * 65)


def test_a_stale_agreement_version_is_refused(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    deadline = fed.chain.now() + 60
    old = fed.admin.sign_join(account, version=1, deadline=deadline)
    fed.admin.publish_agreement(TERMS_2)
    with pytest.raises(FederationStaleAgreement) as caught:
        fed.admin.join(account.address, version=1, deadline=deadline, signature=old)
    assert (caught.value.version, caught.value.current) == (1, 2)


def test_a_signature_for_another_version_is_refused(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    deadline = fed.chain.now() + 60
    old = fed.admin.sign_join(account, version=1, deadline=deadline)
    fed.admin.publish_agreement(TERMS_2)
    with pytest.raises(FederationInvalidSignature) as caught:
        fed.admin.join(account.address, version=2, deadline=deadline, signature=old)
    assert caught.value.participant == account.address


def test_a_signature_for_another_contract_is_refused(fed: Fed) -> None:
    other = make_fed(fed.chain)
    account, _ = fed.party(join=False)
    deadline = fed.chain.now() + 60
    signature = other.admin.sign_join(account, version=1, deadline=deadline)
    with pytest.raises(FederationInvalidSignature) as caught:
        fed.admin.join(account.address, version=1, deadline=deadline, signature=signature)
    assert caught.value.participant == account.address
    other.admin.join(account.address, version=1, deadline=deadline, signature=signature)


def test_a_signature_for_another_chain_is_refused(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    deadline = fed.chain.now() + 60
    fields = dict(contract=fed.admin.address, version=1, terms_cid=TERMS, deadline=deadline)
    with pytest.raises(FederationInvalidSignature):
        fed.admin.join(account.address, version=1, deadline=deadline,
                       signature=sign_join_message(account, chain_id=1, **fields))
    fed.admin.join(account.address, version=1, deadline=deadline,
                   signature=sign_join_message(account, chain_id=fed.admin.chain_id, **fields))


def test_a_signature_by_another_key_is_refused(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    impostor = fed.chain.new_account(fund_wei=0)
    deadline = fed.chain.now() + 60
    typed = fed.admin.join_typed_data(account.address, version=1, deadline=deadline)
    forged = Account.sign_typed_data(impostor.key, typed["domain"], typed["types"], typed["message"]).signature
    with pytest.raises(FederationInvalidSignature):
        fed.admin.join(account.address, version=1, deadline=deadline, signature=bytes(forged))


def test_an_expired_signature_is_refused(fed: Fed) -> None:
    account, _ = fed.party(join=False)
    deadline = fed.chain.now() + 30
    signature = fed.admin.sign_join(account, version=1, deadline=deadline)
    fed.chain.advance(31)
    with pytest.raises(FederationSignatureExpired) as caught:
        fed.admin.join(account.address, version=1, deadline=deadline, signature=signature)
    assert caught.value.deadline == deadline


def test_accepting_the_same_version_twice_is_refused(fed: Fed) -> None:
    account, _ = fed.party()
    with pytest.raises(FederationAlreadyAccepted) as caught:
        fed.join(account)
    assert (caught.value.account, caught.value.version) == (account.address, 1)


def test_a_revoked_party_cannot_join_again(fed: Fed) -> None:
    account, _ = fed.party()
    fed.admin.revoke(account.address)
    fed.admin.publish_agreement(TERMS_2)
    with pytest.raises(FederationUnexpectedStatus) as caught:
        fed.join(account)
    assert (caught.value.account, caught.value.status) == (account.address, "revoked")
