"""What every command shares: the workspace option, and turning LedgerError into one clear line."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from ledger.errors import LedgerError

F = TypeVar("F", bound=Callable[..., Any])

# Human output goes to stderr so that `--json` leaves stdout with exactly one JSON document.
console = Console(stderr=True, soft_wrap=True)  # a CID or an address is never broken across lines
stdout = Console()

WorkdirOption = Annotated[
    Path | None,
    typer.Option("--workdir", "-w", help="Workspace folder (default: nearest fedledger.toml above the current folder).",
                 envvar="FEDLEDGER_WORKDIR"),
]
RpcOption = Annotated[
    str | None,
    typer.Option("--rpc", help="RPC URL of the chain, or 'memory' (default: $FEDLEDGER_RPC, else \\[chain] rpc)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]
TASK_TIMEOUT_S = 3600.0
"""node.tasks.runner.DEFAULT_TIMEOUT_S, without importing the runner (and torch) when the CLI starts."""
TaskTimeoutOption = Annotated[
    float,
    typer.Option("--task-timeout", min=1, help="Seconds a task's process may run (rounds and genesis of own tasks)."),
]
VerboseOption = Annotated[bool, typer.Option("--verbose", help="Show a task's own output and its traceback when it fails.")]
CompileOption = Annotated[bool, typer.Option("--compile", help="Task rounds: train through torch.compile (pays on long runs of large models; the first batches compile).")]
WorkersOption = Annotated[int, typer.Option("--workers", min=0, help="Task rounds: DataLoader processes reading a task's Dataset (default 0: read in the task process).")]


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    """Print ``message`` as one error line on stderr and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(exit_code)


def _exit_on_errors(exit_code: Callable[[LedgerError], int], interrupted: str) -> Callable[[F], F]:
    """A decorator turning a LedgerError into one line on stderr and ``exit_code(error)``, Ctrl-C into
    ``interrupted`` and exit 130."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except LedgerError as error:
                raise fail(str(error), exit_code(error)) from None
            except KeyboardInterrupt:
                raise fail(interrupted, 130) from None

        return wrapper  # type: ignore[return-value]

    return decorate


handle_errors = _exit_on_errors(lambda error: error.exit_code, "interrupted; nothing half-written was kept, run the command again.")
"""Turn a LedgerError (or Ctrl-C) raised by a command into one line on stderr and its exit code."""

CANNOT_RUN = 2
"""The exit code of a check (audit, contract verify) that could not run: its exit 1 means it found a fault."""


def check_errors(interrupted: str) -> Callable[[F], F]:
    """For a check whose exit 1 reports what it found: any LedgerError means it could not run (one line on
    stderr, exit CANNOT_RUN); Ctrl-C prints ``interrupted`` and exits 130."""
    return _exit_on_errors(lambda error: CANNOT_RUN, interrupted)


def print_json(document: Any) -> None:
    """Write one JSON document to stdout."""
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()
