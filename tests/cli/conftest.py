"""CLI test helpers: the real console script in a subprocess, typer's runner in-process, a workspace."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.anvil import stop_pidfile
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome, run_fedledger, run_in_process

PASSWORD = "correct horse battery staple"


@pytest.fixture
def fedledger() -> Callable[..., Outcome]:
    """Run the installed console script; ``env`` adds variables to a FEDLEDGER_-free environment."""
    return run_fedledger


@pytest.fixture
def cli() -> Callable[..., Outcome]:
    """Run a command in-process with typer's runner (fast: no interpreter start-up)."""
    return run_in_process


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace; any anvil it started is stopped by PID afterwards."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        stop_pidfile(ws.chain_dir / "anvil.pid")
