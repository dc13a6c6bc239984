"""Membership: pending -> admitted -> suspended -> reinstated; revoked for good; re-accepting new versions."""

from __future__ import annotations

import pytest

from ledger.chain.contract_errors import (
    AccessControlUnauthorizedAccount,
    FederationAgreementNotAccepted,
    FederationNotParticipant,
    FederationUnexpectedStatus,
)
from tests.contracts.conftest import TERMS_2, Fed, submit


def test_the_admin_admits_a_pending_party(fed: Fed) -> None:
    account, _ = fed.party(approve=False)
    fed.admin.approve(account.address)
    assert fed.admin.participant(account.address).status == "admitted"


def test_only_the_admin_admits(fed: Fed) -> None:
    account, client = fed.party(approve=False)
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        client.approve(account.address)
    assert (caught.value.account, caught.value.role) == (account.address, "admin")


@pytest.mark.parametrize("action", ["approve", "suspend", "reinstate", "revoke"])
def test_governing_an_address_that_never_joined_is_refused(fed: Fed, action: str) -> None:
    stranger = fed.chain.new_account(fund_wei=0)
    with pytest.raises(FederationUnexpectedStatus) as caught:
        getattr(fed.admin, action)(stranger.address)
    assert (caught.value.account, caught.value.status) == (stranger.address, "none")


def test_approving_twice_and_reinstating_an_admitted_party_are_refused(fed: Fed) -> None:
    account, _ = fed.party()
    for action in (fed.admin.approve, fed.admin.reinstate):
        with pytest.raises(FederationUnexpectedStatus) as caught:
            action(account.address)
        assert caught.value.status == "admitted"


def test_a_pending_party_cannot_submit(fed: Fed) -> None:
    account, client = fed.party(approve=False)
    round_id = fed.open_round()
    with pytest.raises(FederationNotParticipant) as caught:
        submit(client, round_id)
    assert (caught.value.account, caught.value.status) == (account.address, "pending")


def test_a_non_member_cannot_submit(fed: Fed) -> None:
    account, client = fed.party(join=False)
    round_id = fed.open_round()
    with pytest.raises(FederationNotParticipant) as caught:
        submit(client, round_id)
    assert (caught.value.account, caught.value.status) == (account.address, "none")


def test_a_suspended_party_cannot_submit_until_reinstated(fed: Fed) -> None:
    account, client = fed.party()
    fed.admin.suspend(account.address)
    round_id = fed.open_round()
    with pytest.raises(FederationNotParticipant) as caught:
        submit(client, round_id)
    assert (caught.value.account, caught.value.status) == (account.address, "suspended")
    with pytest.raises(FederationUnexpectedStatus):
        fed.admin.suspend(account.address)
    fed.admin.reinstate(account.address)
    submit(client, round_id)
    assert fed.admin.has_submitted(round_id, account.address)


def test_a_revoked_party_cannot_submit_or_come_back(fed: Fed) -> None:
    account, client = fed.party()
    fed.admin.suspend(account.address)
    fed.admin.revoke(account.address)
    round_id = fed.open_round()
    with pytest.raises(FederationNotParticipant) as caught:
        submit(client, round_id)
    assert caught.value.status == "revoked"
    for action in (fed.admin.revoke, fed.admin.reinstate, fed.admin.approve):
        with pytest.raises(FederationUnexpectedStatus) as refused:
            action(account.address)
        assert refused.value.status == "revoked"


def test_a_pending_party_can_be_revoked(fed: Fed) -> None:
    account, _ = fed.party(approve=False)
    fed.admin.revoke(account.address)
    assert fed.admin.participant(account.address).status == "revoked"


def test_a_new_agreement_version_must_be_accepted_before_submitting_again(fed: Fed) -> None:
    account, client = fed.party()
    fed.admin.publish_agreement(TERMS_2)
    round_id = fed.open_round()
    with pytest.raises(FederationAgreementNotAccepted) as caught:
        submit(client, round_id)
    assert (caught.value.account, caught.value.accepted, caught.value.current) == (account.address, 1, 2)
    fed.join(account)
    info = fed.admin.participant(account.address)
    assert (info.status, info.accepted_version) == ("admitted", 2)
    submit(client, round_id)


def test_a_suspended_party_may_accept_a_new_version_and_stays_suspended(fed: Fed) -> None:
    account, _ = fed.party()
    fed.admin.suspend(account.address)
    fed.admin.publish_agreement(TERMS_2)
    fed.join(account)
    info = fed.admin.participant(account.address)
    assert (info.status, info.accepted_version) == ("suspended", 2)


def test_roles_are_granted_by_the_admin_only(fed: Fed) -> None:
    account, client = fed.party(join=False)
    with pytest.raises(AccessControlUnauthorizedAccount):
        client.grant_role("coordinator", account.address)
    fed.admin.grant_role("coordinator", account.address)
    assert fed.admin.has_role("coordinator", account.address)
    assert not fed.admin.has_role("aggregator", account.address)
