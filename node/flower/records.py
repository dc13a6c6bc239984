"""What fedledger adds to Flower's messages, and arrays between Flower's records and numpy.

The server's train config carries the ledger round (``ROUND_KEY``); a party's reply carries a
``ConfigRecord`` under ``REPLY_KEY`` naming its address, its update's CID and, when the contract
refused to record it, the contract's sentence. The reply carries no arrays: the aggregator reads
each update from the store by the CID the chain records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

ROUND_KEY = "fedledger-round"
REPLY_KEY = "fedledger"


def arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The record's arrays as numpy, keyed as in the record (a torch ``state_dict``'s names)."""
    return {name: array.numpy() for name, array in record.items()}


def array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """numpy arrays as a Flower ``ArrayRecord``, names kept."""
    return ArrayRecord({name: Array.from_numpy_ndarray(np.ascontiguousarray(value)) for name, value in arrays.items()})


@dataclass(frozen=True)
class PartyReply:
    """A party's word on its update: who it is, the update's CID, and the contract's refusal if any."""

    participant: str
    cid: str
    refusal: str | None = None

    def to_record(self) -> ConfigRecord:
        fields = {"participant": self.participant, "cid": self.cid}
        return ConfigRecord({**fields, "refusal": self.refusal} if self.refusal else fields)

    @classmethod
    def from_message(cls, message: Message) -> PartyReply | None:
        """The reply's fedledger record, or None when it has none (not a fedledger ClientApp)."""
        if message.has_error() or REPLY_KEY not in message.content.config_records:
            return None
        record = message.content.config_records[REPLY_KEY]
        participant, cid, refusal = record.get("participant"), record.get("cid"), record.get("refusal")
        if not isinstance(participant, str) or not isinstance(cid, str):
            return None
        return cls(participant, cid, refusal if isinstance(refusal, str) else None)
