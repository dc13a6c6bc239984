"""A small on-disk journal that makes a participant's or aggregator's round idempotent.

Each actor writes one JSON file per round (``journal/<role>-<address>-round-<n>.json``) after each
step that costs something (training, pinning, sending a transaction). Every write is atomic, so a
process killed at any point leaves the previous complete entry. The chain stays the authority:
the journal only saves repeating work, and every entry is re-checked against chain and store.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ledger.workspace import atomic_write_bytes


class Journal:
    """The steps one actor has completed for one round."""

    def __init__(self, directory: Path, *, role: str, actor: str, round_id: int) -> None:
        self.path = Path(directory) / f"{role}-{actor.lower()}-round-{round_id}.json"
        self._entries: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            return dict(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            # A journal is a cache of work already done; an unreadable one only costs a redo.
            return {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._entries.get(key, default)

    def record(self, **entries: Any) -> None:
        """Add ``entries`` and write the whole journal atomically."""
        self._entries.update(entries)
        atomic_write_bytes(self.path, json.dumps(self._entries, indent=2, sort_keys=True).encode("utf-8"))
