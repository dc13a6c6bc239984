"""The aggregation receipt: what the aggregator did in a round, pinned beside the global model.

It names the strategy and its parameters, every update it included (with its weight), every
update it rejected (with the reason) and every change made to an update it still used (a
clipped delta, with its norm). Canonical JSON, so the same aggregation gives the same
bytes and CID on every machine; the auditor re-derives it and compares.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger.errors import InvalidInputError
from ledger.canonical_json import canonical_json


@dataclass(frozen=True)
class IncludedUpdate:
    participant: str
    cid: str
    samples: int
    weight: float


@dataclass(frozen=True)
class RejectedUpdate:
    participant: str
    cid: str
    reason: str


@dataclass(frozen=True)
class UpdateNote:
    """A change the strategy made to an update it still included (e.g. its delta was clipped)."""

    participant: str
    cid: str
    note: str


@dataclass(frozen=True)
class Receipt:
    round_id: int
    base_cid: str
    config_cid: str
    strategy: dict[str, Any]
    included: list[IncludedUpdate] = field(default_factory=list)
    rejected: list[RejectedUpdate] = field(default_factory=list)
    notes: list[UpdateNote] = field(default_factory=list)
    global_cid: str = ""

    def to_bytes(self) -> bytes:
        return canonical_json(asdict(self))

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        try:
            document = json.loads(data.decode("utf-8"))
            return cls(
                round_id=int(document["round_id"]),
                base_cid=str(document["base_cid"]),
                config_cid=str(document["config_cid"]),
                strategy=dict(document["strategy"]),
                included=[IncludedUpdate(**item) for item in document["included"]],
                rejected=[RejectedUpdate(**item) for item in document["rejected"]],
                notes=[UpdateNote(**item) for item in document.get("notes", [])],
                global_cid=str(document["global_cid"]),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(f"the blob is not a fedledger aggregation receipt ({error}).") from error
