"""The one interface every content store offers: add, get (always verified), has, pins."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from ledger.types import Cid


@runtime_checkable
class ContentStore(Protocol):
    """Content addressed by Kubo-identical CIDv1; every read is checked against its CID."""

    def add_bytes(self, data: bytes, *, pin: bool = True) -> Cid:
        """Store ``data``; return the CID ``ipfs add --cid-version=1`` gives it."""
        ...

    def add_file(self, path: Path, *, pin: bool = True) -> Cid:
        """Store a file's bytes, streaming; return its CID."""
        ...

    def get(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        """The bytes under ``cid``; IntegrityError or ContentNotFoundError naming the CID.

        ``max_bytes``: ContentTooLargeError, without reading the content whole, when it is larger
        (a stranger's blob must not be able to exhaust the reader's memory).
        """
        ...

    def has(self, cid: str) -> bool:
        """Whether the store holds the whole content of ``cid``."""
        ...

    def pin(self, cid: str) -> None:
        """Keep ``cid``; ContentNotFoundError if the store does not hold it."""
        ...

    def unpin(self, cid: str) -> None:
        """Stop keeping ``cid``; ContentNotFoundError if it was not pinned."""
        ...

    def pins(self) -> list[Cid]:
        """Every pinned CID, sorted."""
        ...
