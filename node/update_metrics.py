"""The hash of an update's training metrics, as the chain records it beside the update's CID.

Its own module so that the auditor checks it without importing the training side (torch).
"""

from __future__ import annotations

import hashlib

from ledger.canonical_json import canonical_json


def metrics_hash(metrics: dict[str, float]) -> bytes:
    """sha256 of the metrics as canonical JSON: what the chain records, what the update's metadata reveals."""
    return hashlib.sha256(canonical_json(metrics)).digest()
