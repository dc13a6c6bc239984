"""The round configuration document: which model, how parties train, how the aggregator aggregates.

The coordinator pins this JSON document to the store and records its sha256 as the round's
``config_hash``. A document of one chunk (< 256 KiB, always the case here) is stored as a single
raw block, so its CIDv1 is ``cid_from_parts(RAW, sha256(bytes))``: the hash on chain is at once a
commitment and an address. Participants read their training settings from it, the aggregator its
strategy and its sample cap, and the auditor checks the receipt against it.

``max_samples`` bounds what one party's self-reported sample count can weigh: the aggregator counts
each claim as ``min(claimed, max_samples)`` before the strategy sees it (FedAvg and Multi-Krum
weigh by it), so a party that claims 2^63 samples counts as ``max_samples``. Set it near the
largest dataset an honest party is expected to hold; ``1`` gives every update the same weight.
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
DEFAULT_MAX_SAMPLES = 10_000
"""Above any party's share of the bundled digits set (1,797 images), so the demo's weights are untouched."""
MAX_UINT64 = 2**64 - 1  # the contract records sample counts as uint64


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
    max_samples: int = DEFAULT_MAX_SAMPLES

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): the same config gives the same hash anywhere."""
        document = {
            "model": self.model, "strategy": self.strategy, "training": asdict(self.training),
            "max_samples": self.max_samples,
        }
        return canonical_json(document)

    @property
    def config_hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundConfig:
        try:
            document = json.loads(data.decode("utf-8"))
            training = TrainingSettings(**document.get("training", {}))
            model, strategy = str(document["model"]), dict(document["strategy"])
            max_samples = document.get("max_samples", DEFAULT_MAX_SAMPLES)
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInputError(
                f"the round configuration is not a fedledger round config ({error}); "
                "open the round with `fedledger round open --strategy NAME` so one is written."
            ) from error
        return cls(model=model, strategy=strategy, training=training, max_samples=max_samples)


def check_max_samples(value: object) -> int:
    """``value`` if it is a valid sample cap (an integer from 1 to 2^64 - 1), else InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_UINT64:
        raise InvalidInputError(
            f"max_samples must be an integer from 1 to {MAX_UINT64}, not {value!r}; "
            "give the most samples one party's update may count for (1 weighs every update equally)."
        )
    return value


def config_cid(config_hash: bytes) -> Cid:
    """The CID under which the config document with this sha256 is stored."""
    return cid_from_parts(RAW, config_hash)
