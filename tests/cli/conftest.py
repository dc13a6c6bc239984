"""CLI test helpers: a fresh workspace and its keystore password (`fedledger` and `cli` come from tests/fixtures_cli.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.anvil import stop_pidfile
from ledger.workspace import Workspace

PASSWORD = "correct horse battery staple"


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace; any anvil it started is stopped by PID afterwards."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        stop_pidfile(ws.chain_dir / "anvil.pid", state=ws.chain_dir / "anvil.json")
