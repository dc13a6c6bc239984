"""A secure round's parties, keys and documents, built in memory (no chain, no store)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_utils import to_checksum_address

from ledger.secagg import (
    Advertisement,
    RoundContext,
    SecureParams,
    make_advertisement,
    masked_vector,
    new_round_seed,
)
from ledger.types import Address

CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def address(i: int) -> Address:
    """A fixed, well-spread test address."""
    return Address(to_checksum_address("0x" + hashlib.sha256(f"party {i}".encode()).hexdigest()[:40]))


@dataclass
class SecureRound:
    """Every party's long-term key, seed, advertisement, update, sample count and masked vector."""

    params: SecureParams
    context: RoundContext
    long_term: dict[Address, X25519PrivateKey]
    seeds: dict[Address, bytes] = field(default_factory=dict)
    advertisements: dict[Address, Advertisement] = field(default_factory=dict)
    updates: dict[Address, np.ndarray] = field(default_factory=dict)
    samples: dict[Address, int] = field(default_factory=dict)
    masked: dict[Address, np.ndarray] = field(default_factory=dict)

    @property
    def registry(self) -> dict[Address, bytes]:
        return {a: k.public_key().public_bytes_raw() for a, k in self.long_term.items()}

    def advertise(self, parties: list[Address] | None = None) -> None:
        for party in self.params.cohort if parties is None else parties:
            self.seeds[party] = new_round_seed()
            self.advertisements[party] = make_advertisement(
                self.params, self.context, party=party, seed=self.seeds[party], long_term_keys=self.registry
            )

    def submit(self, parties: list[Address], length: int, rng: np.random.Generator) -> None:
        for party in parties:
            self.updates[party] = rng.normal(0.0, 2.0, length).astype(np.float32)
            self.samples[party] = int(rng.integers(1, self.params.max_samples + 1))
            self.masked[party] = masked_vector(
                self.updates[party], self.samples[party], self.params, self.context,
                party=party, seed=self.seeds[party], advertisements=self.advertisements,
            )

    def fedavg(self, parties: list[Address]) -> np.ndarray:
        """Plain weighted FedAvg of the clipped updates, in float64."""
        total = sum(self.samples[p] for p in parties)
        clipped = [np.clip(self.updates[p].astype(np.float64), -self.params.clip, self.params.clip) for p in parties]
        return sum(self.samples[p] * c for p, c in zip(parties, clipped)) / total


def new_round(n: int = 5, *, threshold: int = 3, neighbours: int = 4, round_id: int = 7, **extra: object) -> SecureRound:
    cohort = [address(i) for i in range(n)]
    params = SecureParams(cohort=tuple(cohort), threshold=threshold, neighbours=neighbours, max_samples=1000, **extra)
    context = RoundContext(chain_id=31337, contract=CONTRACT, round_id=round_id)
    return SecureRound(params, context, {a: X25519PrivateKey.generate() for a in params.cohort})


@pytest.fixture
def five() -> SecureRound:
    """Five parties, T=3, k=4 (everyone masks with everyone), all advertised."""
    secure = new_round()
    secure.advertise()
    return secure
