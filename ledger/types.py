"""Distinct types for the values that cross the chain, the store and the CLI."""

from __future__ import annotations

from typing import NewType

Cid = NewType("Cid", str)
"""A CIDv1 in its text form (``bafk…`` for one-chunk files, ``bafy…`` for larger ones)."""

RoundId = NewType("RoundId", int)
"""A round number as the contract counts them, starting at 1."""

Address = NewType("Address", str)
"""A checksummed 0x-prefixed Ethereum address."""
