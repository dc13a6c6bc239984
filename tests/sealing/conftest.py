"""Sealing test helpers: recipients with fresh X25519 keys and the context of one round."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account

from ledger.sealing.format import SealContext
from ledger.sealing.keys import public_key_bytes


@dataclass(frozen=True)
class Party:
    address: str
    key: X25519PrivateKey

    @property
    def public_key(self) -> bytes:
        return public_key_bytes(self.key)


def new_party() -> Party:
    return Party(address=Account.create().address, key=X25519PrivateKey.generate())


@pytest.fixture
def parties() -> list[Party]:
    """Three recipients (an aggregator and two auditors, say), each with its own encryption key."""
    return [new_party() for _ in range(3)]


@pytest.fixture
def context() -> SealContext:
    return SealContext(
        chain_id=31337,
        contract="0x5FbDB2315678afecb367f032d93F642f64180aa3",
        round_id=3,
        sender="0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    )


def directory(parties: list[Party]) -> dict[str, bytes]:
    """The recipients as the chain's key directory would give them: address -> registered public key."""
    return {party.address: party.public_key for party in parties}
