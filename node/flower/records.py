"""What fedledger adds to Flower's messages, and arrays between Flower's records and numpy.

The server's train config carries the ledger round (``ROUND_KEY``) and the CID of its base model
(``BASE_KEY``), and no arrays: the party reads the base model from its store by the CID the chain
records for the round (``node.flower.base_arrays``), so the model never crosses Flower's transport and
a party trains only from the model the ledger names. An evaluate config carries the ledger round and
the CID of the model to evaluate (``MODEL_KEY``: the round's global model, or its base when the round
was aborted), read the same way (``node.flower.evaluate_arrays``). A party's reply carries a
``ConfigRecord`` under ``REPLY_KEY`` naming its address, its update's CID and, when the update was
refused, the sentence and who refused it: the contract, or the party itself (the run's Flower app is
not the agreed one, its privacy budget would be passed). The reply carries no arrays: the aggregator
reads each update from the store by the CID the chain records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message

ROUND_KEY = "fedledger-round"
BASE_KEY = "fedledger-base"
MODEL_KEY = "fedledger-model"
REPLY_KEY = "fedledger"


def arrays_of(record: ArrayRecord) -> dict[str, np.ndarray]:
    """The record's arrays as numpy, keyed as in the record (a torch ``state_dict``'s names)."""
    return {name: array.numpy() for name, array in record.items()}


def array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """numpy arrays as a Flower ``ArrayRecord``, names kept."""
    return ArrayRecord({name: Array.from_numpy_ndarray(np.ascontiguousarray(value)) for name, value in arrays.items()})


REFUSED_BY = ("contract", "party")


@dataclass(frozen=True)
class PartyReply:
    """A party's word on its update: who it is, the update's CID (empty when nothing was made), and the
    refusal if any, with who refused: ``"contract"`` (the chain would not record it) or ``"party"``."""

    participant: str
    cid: str
    refusal: str | None = None
    refused_by: str = "contract"

    def to_record(self) -> ConfigRecord:
        fields = {"participant": self.participant, "cid": self.cid}
        return ConfigRecord({**fields, "refusal": self.refusal, "refused-by": self.refused_by} if self.refusal else fields)

    @classmethod
    def from_message(cls, message: Message) -> PartyReply | None:
        """The reply's fedledger record, or None when it has none (not a fedledger ClientApp)."""
        if message.has_error() or REPLY_KEY not in message.content.config_records:
            return None
        record = message.content.config_records[REPLY_KEY]
        participant, cid, refusal = record.get("participant"), record.get("cid"), record.get("refusal")
        if not isinstance(participant, str) or not isinstance(cid, str):
            return None
        by = record.get("refused-by")
        if by not in REFUSED_BY:  # a reply without the field: a party refuses before making an update
            by = "contract" if cid else "party"
        return cls(participant, cid, refusal if isinstance(refusal, str) else None, str(by))
