"""The aggregation receipt: what the aggregator did in a round, pinned beside the global model.

It names the strategy and its parameters, the round's sample cap, every update it included (with
the samples its party claimed, the samples counted after the cap, and its weight), every update it
rejected (with the reason), every update whose blob it could not fetch (``unavailable``: not a
verdict on the update, a fact about the aggregator's store), every change made to an update it
still used (a clipped delta, a capped sample count), and in ``outcome`` one plain sentence: how
many updates were aggregated, or that none was usable and the global model is the base model.
``unrecorded`` names updates that reached the aggregator off chain (a Flower reply) but that the
contract refused to record, with its reason: never aggregated, and absent from the document when
empty, so receipts without any keep their bytes and CIDs.
``sealed``, in a sealed round only (absent otherwise, likewise), commits to each update that the
aggregator opened: the sha256 of its plaintext (safetensors) bytes, so an auditor holding a
recipient key checks that what was aggregated is what was sealed.
In a secure round (absent otherwise, likewise) ``dropouts`` names each party that advertised keys but
did not submit (with its advertisement's CID), ``reveals`` each reveal whose shares removed their
masks, and ``wrong_reveals`` each reveal that was disregarded and why, naming its publisher.
Canonical JSON, so the same aggregation gives the same bytes and CID on every machine; the
auditor re-derives the whole receipt and compares it field by field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from ledger.canonical_json import canonical_json
from ledger.errors import InvalidInputError


_TYPES: dict[str, tuple[type, ...]] = {"str": (str,), "int": (int,), "float": (int, float)}
E = TypeVar("E")


def _entry(cls: type[E], item: Any) -> E:
    """One list entry of a receipt document as ``cls``, each field of its declared JSON type.

    A receipt is a stranger's document: an entry whose participant is a number would otherwise
    reach the auditor's comparisons and crash them instead of failing a check.
    """
    if not isinstance(item, dict):
        raise TypeError(f"{cls.__name__} entry {item!r} is not an object")
    for spec in fields(cls):  # type: ignore[arg-type]
        value = item.get(spec.name)
        if isinstance(value, bool) or not isinstance(value, _TYPES[str(spec.type)]):
            raise TypeError(f"{cls.__name__} field {spec.name!r} is {value!r}, not a JSON {spec.type}")
    return cls(**item)


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
class SealedUpdate:
    """A sealed update the aggregator opened, and the sha256 (hex) of the plaintext it found inside."""

    participant: str
    cid: str
    plaintext_sha256: str


@dataclass(frozen=True)
class PostedDocument:
    """A secure round's document a party posted on chain: an advertisement or a reveal, by CID."""

    participant: str
    cid: str


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
    unrecorded: list[RejectedUpdate] = field(default_factory=list)
    sealed: list[SealedUpdate] = field(default_factory=list)
    dropouts: list[PostedDocument] = field(default_factory=list)
    reveals: list[PostedDocument] = field(default_factory=list)
    wrong_reveals: list[RejectedUpdate] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        """The receipt as the JSON document it is pinned as."""
        document = asdict(self)
        for optional in ("unrecorded", "sealed", "dropouts", "reveals", "wrong_reveals"):
            if not document[optional]:
                del document[optional]
        return document

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
                included=[_entry(IncludedUpdate, item) for item in document["included"]],
                rejected=[_entry(RejectedUpdate, item) for item in document["rejected"]],
                unavailable=[_entry(UnavailableUpdate, item) for item in document["unavailable"]],
                notes=[_entry(UpdateNote, item) for item in document["notes"]],
                global_cid=str(document["global_cid"]),
                unrecorded=[_entry(RejectedUpdate, item) for item in document.get("unrecorded", [])],
                sealed=[_entry(SealedUpdate, item) for item in document.get("sealed", [])],
                dropouts=[_entry(PostedDocument, item) for item in document.get("dropouts", [])],
                reveals=[_entry(PostedDocument, item) for item in document.get("reveals", [])],
                wrong_reveals=[_entry(RejectedUpdate, item) for item in document.get("wrong_reveals", [])],
            )
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise InvalidInputError(f"the blob is not a fedledger aggregation receipt ({error}).") from error
