"""The console script as the tests run it: a subprocess in a clean environment, or in-process.

Subprocesses run the installed ``fedledger`` script, as a user would; operator steps whose start-up
cost would dominate a test run in-process through typer's runner (the same commands).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from node.cli import app

FEDLEDGER = Path(sys.executable).parent / "fedledger"
_DISPLAY = {"COLUMNS": "400", "NO_COLOR": "1"}


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without any FEDLEDGER_ variable, plus ``extra``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FEDLEDGER_")}
    return {**env, **_DISPLAY, **(extra or {})}


@dataclass(frozen=True)
class Outcome:
    """What a command printed and how it exited."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def error_line(self, *, alone: bool = True) -> str:
        """The one ``error:`` line a failed command prints last; ``alone``: stderr holds nothing else."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert lines and lines[-1].startswith("error: "), self.stderr
        assert sum(line.startswith("error: ") for line in lines) == 1, self.stderr
        assert len(lines) == 1 or not alone, self.stderr
        return lines[-1]


def ok(outcome: Outcome) -> Outcome:
    """``outcome``, after asserting the command succeeded (showing its output when it did not)."""
    assert outcome.exit_code == 0, f"exit {outcome.exit_code}\n{outcome.stderr}\n{outcome.stdout}"
    return outcome


def run_fedledger(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Outcome:
    """Run the installed console script to completion."""
    done = subprocess.run(
        [str(FEDLEDGER), *args], capture_output=True, text=True, env=clean_env(env), cwd=cwd, timeout=timeout, check=False
    )
    return Outcome(done.returncode, done.stdout, done.stderr)


def run_in_process(*args: str, env: dict[str, str] | None = None) -> Outcome:
    """Run a command in this process with typer's runner (no interpreter and torch start-up)."""
    result = CliRunner().invoke(app, list(args), env={**_DISPLAY, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def fedledger() -> Callable[..., Outcome]:
    """The installed console script in a subprocess; ``env`` adds variables to a FEDLEDGER_-free environment."""
    return run_fedledger


@pytest.fixture
def cli() -> Callable[..., Outcome]:
    """The same app in-process through typer's runner (same exit codes and streams, no start-up)."""
    return run_in_process


@pytest.fixture(autouse=True)
def _no_fedledger_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No FEDLEDGER_ variable of the caller's shell leaks into commands run in-process."""
    for name in list(os.environ):
        if name.startswith("FEDLEDGER_"):
            monkeypatch.delenv(name)
