"""Chain timestamps as people read them: the one format every message, table and report uses."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_text(timestamp: float) -> str:
    """``1795660662`` as ``2026-11-26 02:37:42 UTC``."""
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
