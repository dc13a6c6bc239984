"""FederationClient.check_signed_update judges a relayed item for a signer that holds no ether, on
both backends: the in-process chain (which refuses to simulate a call from an account without
ether) and anvil (where the contract's own error names the rule)."""

from __future__ import annotations

import pytest

from ledger.chain import contract_errors
from ledger.errors import ContractRevertError
from tests.fixtures_chain import TestChain
from tests.relay.conftest import make_federation


def test_a_valid_update_of_a_party_without_ether_passes_on_the_in_process_chain(memory_chain: TestChain) -> None:
    federation = make_federation(memory_chain)
    party = federation.gasless_party()
    assert federation.admin.check_signed_update(federation.round_id, federation.signed(party)) is None


def test_a_non_member_without_ether_is_refused_on_the_in_process_chain(memory_chain: TestChain) -> None:
    federation = make_federation(memory_chain)
    outsider = federation.gasless_party(admit=False)
    error = federation.admin.check_signed_update(federation.round_id, federation.signed(outsider))
    assert isinstance(error, ContractRevertError) and "would skip the update" in str(error)


@pytest.mark.anvil
def test_a_valid_update_of_a_party_without_ether_passes_on_anvil(chain: TestChain) -> None:
    federation = make_federation(chain)
    party = federation.gasless_party()
    assert federation.admin.check_signed_update(federation.round_id, federation.signed(party)) is None


@pytest.mark.anvil
def test_a_pending_party_without_ether_is_refused_by_name_on_anvil(chain: TestChain) -> None:
    federation = make_federation(chain)
    pending = federation.gasless_party(admit=False)
    error = federation.admin.check_signed_update(federation.round_id, federation.signed(pending))
    assert isinstance(error, contract_errors.FederationNotParticipant)
    assert error.account == pending.address
