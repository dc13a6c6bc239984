"""A sealed round's recipients as the chain's key directory names them, and sealing or opening its updates.

A round config's ``seal_to`` lists addresses; the keys are what those addresses registered on chain
(``publishEncryptionKey``) at the round's opening block, never a file: the party that seals, the
aggregator that opens and the auditor that recomputes all read the same block, so a key published
later (a rotation) changes nothing about a round already open, and no one can substitute a key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.errors import InvalidInputError
from ledger.chain.federation import FederationClient
from ledger.sealing.envelope import check_envelope, seal, unseal
from ledger.sealing.format import SealContext, envelope_size
from ledger.sealing.keys import (
    encryption_key_path,
    load_encryption_key,
    public_key_bytes,
    read_encryption_public_key,
    workspace_key_for,
)
from ledger.types import Address
from ledger.workspace import Workspace


def registered_keys(
    federation: FederationClient, addresses: Iterable[str], *, block: int | str = "latest"
) -> dict[Address, bytes]:
    """Each address's encryption public key on chain at ``block``; InvalidInputError naming those with none."""
    keys = {Address(address): federation.encryption_key(address, block=block) for address in addresses}
    lacking = [address for address, key in keys.items() if key is None]
    if lacking:
        raise InvalidInputError(
            f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no encryption key registered on chain, "
            "so no update can be sealed to it; each recipient runs `fedledger key new-encryption NAME` and "
            "`fedledger key publish-encryption --key NAME --from ITS_KEY` first."
        )
    return {address: key for address, key in keys.items() if key is not None}


@dataclass(frozen=True)
class RoundSeal:
    """One sealed round: its deployment, its number, and its recipients' registered keys."""

    chain_id: int
    contract: Address
    round_id: int
    recipients: dict[Address, bytes]

    @classmethod
    def read(cls, federation: FederationClient, round_id: int, seal_to: Iterable[str], *, opened_block: int) -> RoundSeal:
        """The round's recipients with the keys they had registered at its opening block."""
        return cls(federation.chain_id, Address(federation.address), round_id,
                   registered_keys(federation, seal_to, block=opened_block))

    def context(self, sender: str) -> SealContext:
        return SealContext(chain_id=self.chain_id, contract=self.contract, round_id=self.round_id, sender=sender)

    def max_sealed_bytes(self, max_plaintext: int) -> int:
        """The most bytes a sealed update of at most ``max_plaintext`` plaintext bytes takes in this round."""
        return envelope_size(max_plaintext, len(self.recipients))

    def seal(self, plaintext: bytes, *, sender: str) -> bytes:
        """``plaintext`` sealed by ``sender`` to every recipient."""
        return bytes(seal(plaintext, self.recipients, context=self.context(sender)))

    def check(self, sealed: bytes, *, sender: str) -> None:
        """Without any key: is ``sealed`` an envelope of ``sender`` for this round, to exactly its recipients' keys?

        Raises the ``ledger.sealing.errors`` class that names what is wrong.
        """
        check_envelope(sealed, context=self.context(sender), recipients=self.recipients)

    def recipient_of(self, private_key: X25519PrivateKey) -> Address | None:
        """The recipient whose registered key is ``private_key``'s public half, None when none is."""
        public = public_key_bytes(private_key)
        return next((address for address, key in self.recipients.items() if key == public), None)

    def opener(self, private_key: X25519PrivateKey) -> RoundOpener | None:
        """What opens this round's updates with ``private_key``, None when it is no recipient's registered key."""
        address = self.recipient_of(private_key)
        return None if address is None else RoundOpener(self, address, private_key)


@dataclass(frozen=True)
class RoundOpener:
    """One recipient of a sealed round, holding its private key."""

    round_seal: RoundSeal
    address: Address
    private_key: X25519PrivateKey

    def open(self, sealed: bytes, *, sender: str) -> bytes:
        """The plaintext of ``sender``'s sealed update, or the sealing error naming why it will not open."""
        return unseal(sealed, self.address, self.private_key, context=self.round_seal.context(sender),
                      recipients=self.round_seal.recipients)


def recipient_opener(workspace: Workspace, round_seal: RoundSeal, name: str | None = None) -> RoundOpener:
    """The opener of ``round_seal``'s updates with the workspace's encryption key ``name``.

    Without a name, the workspace's encryption key whose public half a recipient registered is used.
    Public halves are read without a password, so only the chosen key's password is asked for.
    """
    rid, recipients = round_seal.round_id, ", ".join(round_seal.recipients)
    registered = set(round_seal.recipients.values())
    if name is None:
        name = workspace_key_for(workspace, registered)
        if name is None:
            raise InvalidInputError(
                f"round {rid} is sealed to {recipients}, and no encryption key in this workspace is one they registered; "
                "give a recipient's encryption key with --encryption-key NAME (or copy its key file to keys/encryption/)."
            )
    public = read_encryption_public_key(encryption_key_path(workspace, name))
    if public not in registered:
        raise InvalidInputError(
            f"the encryption key {name!r} (public key 0x{public.hex()}) is not the key any recipient of round {rid} "
            f"registered on chain ({recipients}); give the encryption key of one of them."
        )
    opener = round_seal.opener(load_encryption_key(workspace, name))
    assert opener is not None  # its public half is a recipient's, and the loader checked the pair
    return opener
