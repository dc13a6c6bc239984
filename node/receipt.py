"""The aggregation receipt: what the aggregator did in a round, pinned beside the global model.

It names the strategy and its parameters, the round's sample cap, every update it included (with
the samples its party claimed, the samples counted after the cap, and its weight), every update it
rejected (with the reason), every update whose blob it could not fetch (``unavailable``: not a
verdict on the update, a fact about the aggregator's store), every change made to an update it
still used (a clipped delta, a capped sample count), and in ``outcome`` one plain sentence: how
many updates were aggregated, or that none was usable and the global model is the base model.
Canonical JSON, so the same aggregation gives the same bytes and CID on every machine; the
auditor re-derives the whole receipt and compares it field by field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ledger.canonical_json import canonical_json
from ledger.errors import InvalidInputError


@dataclass(frozen=True)
class IncludedUpdate:
    participant: str
    cid: str
    samples: int  # as claimed on chain
    counted_samples: int  # min(samples, the round's max_samples): what the strategy weighed
    weight: float


@dataclass(frozen=True)
class RejectedUpdate:
    participant: str
    cid: str
    reason: str


@dataclass(frozen=True)
class UnavailableUpdate:
    """An update whose blob the aggregator's store did not hold when it aggregated."""

    participant: str
    cid: str


@dataclass(frozen=True)
class UpdateNote:
    """A change made to an update that was still included (its delta clipped, its sample count capped)."""

    participant: str
    cid: str
    note: str


@dataclass(frozen=True)
class Receipt:
    round_id: int
    base_cid: str
    config_cid: str
    strategy: dict[str, Any]
    max_samples: int
    outcome: str
    included: list[IncludedUpdate] = field(default_factory=list)
    rejected: list[RejectedUpdate] = field(default_factory=list)
    unavailable: list[UnavailableUpdate] = field(default_factory=list)
    notes: list[UpdateNote] = field(default_factory=list)
    global_cid: str = ""

    def document(self) -> dict[str, Any]:
        """The receipt as the JSON document it is pinned as."""
        return asdict(self)

    def to_bytes(self) -> bytes:
        return canonical_json(self.document())

    @classmethod
    def from_bytes(cls, data: bytes) -> Receipt:
        try:
            document = json.loads(data.decode("utf-8"))
            return cls(
                round_id=int(document["round_id"]),
                base_cid=str(document["base_cid"]),
                config_cid=str(document["config_cid"]),
                strategy=dict(document["strategy"]),
                max_samples=int(document["max_samples"]),
                outcome=str(document["outcome"]),
                included=[IncludedUpdate(**item) for item in document["included"]],
                rejected=[RejectedUpdate(**item) for item in document["rejected"]],
                unavailable=[UnavailableUpdate(**item) for item in document["unavailable"]],
                notes=[UpdateNote(**item) for item in document["notes"]],
                global_cid=str(document["global_cid"]),
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidInputError(f"the blob is not a fedledger aggregation receipt ({error}).") from error
