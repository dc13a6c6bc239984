"""The round configuration document: which model, how parties train, how the aggregator aggregates.

The coordinator pins this JSON document to the store and records its sha256 as the round's
``config_hash``. A document of one chunk (< 256 KiB, always the case here) is stored as a single
raw block, so its CIDv1 is ``cid_from_parts(RAW, sha256(bytes))``: the hash on chain is at once a
commitment and an address. Participants read their training settings from it, the aggregator its
strategy, and the auditor checks the receipt's strategy against it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger.cid import RAW, cid_from_parts
from ledger.canonical_json import canonical_json
from ledger.errors import InvalidInputError
from ledger.types import Cid

MAX_CONFIG_BYTES = 256 * 1024


@dataclass(frozen=True)
class TrainingSettings:
    """How every party trains in a round."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.05


@dataclass(frozen=True)
class RoundConfig:
    """What a round asks of its parties and its aggregator."""

    model: str
    strategy: dict[str, Any]
    training: TrainingSettings = field(default_factory=TrainingSettings)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): the same config gives the same hash anywhere."""
        document = {"model": self.model, "strategy": self.strategy, "training": asdict(self.training)}
        return canonical_json(document)

    @property
    def config_hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundConfig:
        try:
            document = json.loads(data.decode("utf-8"))
            training = TrainingSettings(**document.get("training", {}))
            return cls(model=str(document["model"]), strategy=dict(document["strategy"]), training=training)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidInputError(
                f"the round configuration is not a fedledger round config ({error}); "
                "open the round with `fedledger round open --strategy NAME` so one is written."
            ) from error


def config_cid(config_hash: bytes) -> Cid:
    """The CID under which the config document with this sha256 is stored."""
    return cid_from_parts(RAW, config_hash)
