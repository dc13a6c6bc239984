"""CLI test helpers: the real console script in a subprocess, typer's runner in-process, a workspace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy.anvil import stop_pidfile
from ledger.workspace import Workspace
from node.cli import app

FEDLEDGER = Path(sys.executable).parent / "fedledger"
PASSWORD = "correct horse battery staple"


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error_line(self) -> str:
        """The single ``error:`` line a failed command prints (asserting there is exactly one)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, self.stderr
        assert lines[0].startswith("error: "), self.stderr
        return lines[0]


def _clean_env(extra: dict[str, str] | None) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEDLEDGER_")}
    env["COLUMNS"] = "200"
    env.update(extra or {})
    return env


@pytest.fixture(autouse=True)
def _no_fedledger_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FEDLEDGER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def fedledger() -> Callable[..., Outcome]:
    """Run the installed console script; ``env`` adds variables to a FEDLEDGER_-free environment."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> Outcome:
        done = subprocess.run(
            [str(FEDLEDGER), *args], capture_output=True, text=True, env=_clean_env(env), cwd=cwd, timeout=60
        )
        return Outcome(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture
def cli() -> Callable[..., Outcome]:
    """Run a command in-process with typer's runner (fast: no interpreter start-up)."""
    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None) -> Outcome:
        result = runner.invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[Workspace]:
    """A fresh workspace; any anvil it started is stopped by PID afterwards."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        yield ws
    finally:
        stop_pidfile(ws.chain_dir / "anvil.pid")
