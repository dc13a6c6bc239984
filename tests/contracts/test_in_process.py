"""The same revert classes come out of the in-process chain (eth-tester raises another exception shape)."""

from __future__ import annotations

import pytest

from ledger.chain.contract_errors import (
    AccessControlUnauthorizedAccount,
    FederationDeadlinePassed,
    FederationInvalidSignature,
    FederationNotParticipant,
)
from tests.contracts.conftest import Fed, make_fed, submit
from tests.fixtures_chain import TestChain


@pytest.fixture
def memory_fed(memory_chain: TestChain) -> Fed:
    return make_fed(memory_chain)


def test_in_process_chain_decodes_custom_errors_with_arguments(memory_fed: Fed) -> None:
    account, client = memory_fed.party(join=False)
    round_id = memory_fed.open_round()
    with pytest.raises(FederationNotParticipant) as caught:
        submit(client, round_id)
    assert (caught.value.account, caught.value.status) == (account.address, "none")
    with pytest.raises(AccessControlUnauthorizedAccount) as refused:
        client.approve(account.address)
    assert refused.value.role == "admin"
    with pytest.raises(FederationInvalidSignature):
        memory_fed.admin.join(account.address, version=1, deadline=memory_fed.chain.now() + 60, signature=b"\1" * 65)


def test_in_process_chain_time_travel_closes_a_round(memory_fed: Fed) -> None:
    _, on_time = memory_fed.party()
    _, late = memory_fed.party()
    round_id = memory_fed.open_round(seconds=100)
    submit(on_time, round_id)
    memory_fed.chain.advance(200)
    with pytest.raises(FederationDeadlinePassed) as caught:
        submit(late, round_id)
    assert caught.value.round_id == round_id
    memory_fed.admin.finalize_round(round_id, global_cid=memory_fed.admin.round(round_id).base_cid,
                                    receipt_cid=memory_fed.admin.agreement().terms_cid)
    assert memory_fed.admin.round(round_id).state == "finalized"
