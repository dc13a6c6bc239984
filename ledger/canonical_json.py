"""The one canonical JSON encoding: hashes and CIDs of receipts, configs, metrics and metadata depend on it.

Sorted keys, no whitespace, UTF-8, and no NaN or infinity (they are not JSON, and two encoders
need not spell them alike). Every document whose bytes are hashed goes through ``canonical_json``.
"""

from __future__ import annotations

import json


def canonical_json(document: object) -> bytes:
    """``document`` as canonical JSON bytes; ValueError for NaN/infinity, TypeError for non-JSON values."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
