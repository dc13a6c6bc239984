"""A party without ether registers its encryption key through anyone (``publishSignedEncryptionKey``).

The signature is the party's EIP-712 ``EncryptionKey(participant, publicKey, previousKey, deadline)``
over this chain and contract; it holds up to its deadline second and no longer, and only while the key
it replaces (``previousKey``) is the one registered, so neither the relayer nor anyone who saw it can
replay it to put back a key the party rotated away from. Then the rule and event of
``publishEncryptionKey``. The same on anvil and on the in-process chain (same compiled contract).
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from eth_account import Account

from ledger.chain.contract_errors import (
    FederationEncryptionKeyChanged,
    FederationInvalidEncryptionKey,
    FederationInvalidSignature,
    FederationSignatureExpired,
)
from ledger.chain.federation import FederationClient
from tests.contracts.conftest import Fed, make_fed
from tests.contracts.test_round_messages import _at_second, _block_time
from tests.fixtures_chain import TestChain

FIRST, SECOND = b"\x01" * 32, b"\x02" * 32


@pytest.mark.parametrize("kind", ["chain", "memory_chain"])
def test_a_party_without_ether_registers_its_key_through_anyone_and_no_old_signature_comes_back(
    kind: str, request: pytest.FixtureRequest,
) -> None:
    chain: TestChain = request.getfixturevalue(kind)
    fed: Fed = make_fed(chain)
    gasless, other = Account.create(), Account.create()  # never funded: no membership needed for a key either
    relayer = fed.admin
    now = chain.now()

    with pytest.raises(FederationSignatureExpired) as expired:
        relayer.publish_signed_encryption_key(relayer.sign_encryption_key(gasless, FIRST, deadline=now - 1))
    assert expired.value.deadline == now - 1
    forged = replace(relayer.sign_encryption_key(other, FIRST, deadline=now + 600), participant=gasless.address)
    elsewhere = FederationClient(chain.w3, relayer.address)
    elsewhere._chain_id = relayer.chain_id + 1  # noqa: SLF001 - a signature for another chain
    # another party's signature for gasless's key, another chain's, and gasless's own over another key
    swapped = replace(relayer.sign_encryption_key(gasless, FIRST, deadline=now + 600), public_key=SECOND)
    for bad in (forged, elsewhere.sign_encryption_key(gasless, FIRST, deadline=now + 600), swapped):
        assert isinstance(relayer.check_signed_encryption_key(bad), FederationInvalidSignature)
        with pytest.raises(FederationInvalidSignature) as invalid:
            relayer.publish_signed_encryption_key(bad)
        assert invalid.value.participant == gasless.address
    with pytest.raises(FederationInvalidEncryptionKey):  # the direct call's rule, for the signed one too
        relayer.publish_signed_encryption_key(relayer.sign_encryption_key(gasless, bytes(32), deadline=now + 600))
    assert relayer.encryption_key(gasless.address) is None

    # Valid to its deadline second: taken at that second, the event names the party, the relayer paid.
    first = relayer.sign_encryption_key(gasless, FIRST, deadline=now + 50)
    kept = relayer.sign_encryption_key(gasless, FIRST, deadline=now + 600)  # another one, the relayer keeps it
    assert first.previous_key is None
    _at_second(chain, now + 50)
    assert relayer.check_signed_encryption_key(first) is None
    _at_second(chain, now + 50)
    sent = relayer.publish_signed_encryption_key(first)
    assert _block_time(chain, sent.block) == now + 50
    assert relayer.encryption_key(gasless.address) == FIRST
    (event,) = relayer.contract.events.EncryptionKeyPublished().process_receipt(
        chain.w3.eth.get_transaction_receipt(sent.tx_hash))
    assert (event.args.account, bytes(event.args.publicKey)) == (gasless.address, FIRST)
    assert chain.w3.eth.get_transaction(sent.tx_hash)["from"] == relayer.sender

    # A rotation, signed against FIRST; afterwards the first signature (still in time) is refused: no rollback.
    second = relayer.sign_encryption_key(gasless, SECOND, deadline=now + 600)
    assert second.previous_key == FIRST
    relayer.publish_signed_encryption_key(second)
    assert relayer.encryption_key(gasless.address) == SECOND
    refused = relayer.check_signed_encryption_key(kept)  # still in time, and no longer valid
    assert isinstance(refused, FederationEncryptionKeyChanged) and (refused.expected, refused.current) == (bytes(32), SECOND)
    back = relayer.sign_encryption_key(gasless, FIRST, deadline=now + 600)  # back to FIRST, signed against SECOND
    relayer.publish_signed_encryption_key(back)
    with pytest.raises(FederationEncryptionKeyChanged) as changed:
        relayer.publish_signed_encryption_key(back)  # replaces SECOND, which is no longer registered
    assert (changed.value.account, changed.value.expected, changed.value.current) == (gasless.address, SECOND, FIRST)
    assert "sign the registration again" in str(changed.value)
    assert relayer.encryption_key(gasless.address) == FIRST
    _at_second(chain, now + 601)
    with pytest.raises(FederationSignatureExpired):
        relayer.publish_signed_encryption_key(relayer.sign_encryption_key(gasless, SECOND, deadline=now + 600))
    assert chain.w3.eth.get_balance(gasless.address) == 0 and chain.w3.eth.get_transaction_count(gasless.address) == 0
