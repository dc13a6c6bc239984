"""Commands: ``chain up`` and ``chain down`` — a local anvil testnet whose state lives in the workspace.

The state file (``chain/anvil.json``) is loaded when anvil starts and written when it stops on
SIGTERM or SIGINT, so a stopped and restarted chain keeps every deployment and transaction.
``chain/anvil.pid`` holds the PID of a detached anvil so that ``chain down`` can stop it; a PID is
signalled only when that process is this workspace's anvil (its command line names the anvil binary
and this workspace's state file), never because the number matches.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from deploy.anvil import AnvilProcess, RecordedProcess, inspect_pidfile, rpc_chain_id, stop_recorded
from ledger.errors import ChainError
from ledger.workspace import Workspace, atomic_write_bytes
from node.cli._common import (
    JsonOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)

STATE_FILE = "anvil.json"
PID_FILE = "anvil.pid"
LOG_FILE = "anvil.log"


def chain_up(
    workspace: Workspace, *, port: int | None = None, detach: bool = False, block_time: int | None = None
) -> AnvilProcess:
    """Start anvil for ``workspace`` and record its RPC URL in ``[chain]``; ``block_time`` (seconds) mines a
    block at that interval instead of one per transaction, as a real network does.

    Refuses when this workspace's anvil already runs or the port is taken; in both cases
    fedledger.toml is left as it was. A stale PID file (its process ended, or the PID now belongs
    to another program) is replaced.
    """
    pidfile = workspace.chain_dir / PID_FILE
    recorded = inspect_pidfile(pidfile, state=workspace.chain_dir / STATE_FILE)
    if recorded.status == "anvil":
        raise ChainError(
            f"anvil already runs for this workspace (pid {recorded.pid}, see {pidfile}); "
            "use it, or stop it first with `fedledger chain down`."
        )
    pidfile.unlink(missing_ok=True)  # a PID file naming no process, or another program, is stale
    port = int(port if port is not None else workspace.get("chain", "anvil_port", 8545))
    anvil = AnvilProcess(
        port=port,
        state=workspace.chain_dir / STATE_FILE,
        log=workspace.chain_dir / LOG_FILE,
        detach=detach,
        block_time=block_time,
    ).start()
    try:
        atomic_write_bytes(pidfile, f"{anvil.pid}\n".encode())
        workspace.set("chain", "rpc", anvil.rpc_url)
        workspace.set("chain", "anvil_port", anvil.port)
        workspace.save()
    except BaseException:
        anvil.stop()
        pidfile.unlink(missing_ok=True)
        raise
    return anvil


def _announce(anvil: AnvilProcess, *, detach: bool, json: bool) -> None:
    if json:
        print_json({"rpc": anvil.rpc_url, "pid": anvil.pid, "state": str(anvil.state), "detached": detach})
    console.print(f"anvil answers at [bold]{anvil.rpc_url}[/] (pid {anvil.pid}); state in {anvil.state}.", soft_wrap=True)
    if detach:
        console.print("Stop it with `fedledger chain down`.")
    else:
        console.print("Press Ctrl-C to stop it; its state is saved on the way out.")


@contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """While inside, SIGINT (Ctrl-C) and SIGTERM are appended to the yielded list instead of acting.

    A flag instead of KeyboardInterrupt: Python raises a handler's exception wherever the main thread
    happens to be, and one raised inside a finalizer (``__del__`` of the HTTP response or socket each
    health check drops) is printed as "Exception ignored" and lost, so a Ctrl-C could leave ``chain
    up`` running. A flag cannot be lost. Installed before anything is announced, so a signal sent as
    soon as the prompt shows is never met by the default action (SIGTERM would kill the process and
    leave anvil running with its state unsaved).
    """
    received: list[int] = []
    handlers = {number: signal.signal(number, lambda number, _frame: received.append(number))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for number, handler in handlers.items():
            signal.signal(number, handler)


def _wait_for_stop_signal(anvil: AnvilProcess, received: list[int], *, poll_s: float = 0.5) -> bool:
    """Wait until a stop signal is in ``received`` (True) or anvil stops answering (False).

    ``time.sleep`` returns early on a signal, so a signal is seen within ``poll_s / 5``.
    """
    next_check = 0.0
    while not received:
        if time.monotonic() >= next_check:
            if rpc_chain_id(anvil.rpc_url, timeout=1.0) is None and not received:
                return False
            next_check = time.monotonic() + poll_s
        time.sleep(poll_s / 5)
    return True


def register(app: typer.Typer) -> None:
    """Add the ``chain`` group to the app."""
    chain_app = typer.Typer(help="Run a local anvil testnet whose state is kept in the workspace.", no_args_is_help=True)
    app.add_typer(chain_app, name="chain")

    @chain_app.command("up")
    @handle_errors
    def up(
        port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: \\[chain] anvil_port, 8545).")] = None,
        detach: Annotated[bool, typer.Option(help="Leave anvil running in the background and return.")] = False,
        block_time: Annotated[int | None, typer.Option("--block-time", min=1, help="Mine a block every this many seconds, as a real network does (default: one block per transaction, at once).")] = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Start anvil on 127.0.0.1 with its state in <workspace>/chain/anvil.json."""
        workspace = Workspace.find(workdir)
        anvil = chain_up(workspace, port=port, detach=detach, block_time=block_time)
        if detach:
            _announce(anvil, detach=True, json=json)
            return
        try:  # from here on, however the command ends, anvil is stopped (and so writes its state)
            with _stop_signals() as received:
                _announce(anvil, detach=False, json=json)
                stopped_by_signal = _wait_for_stop_signal(anvil, received)
            if stopped_by_signal:
                console.print("Stopping anvil and saving its state…")
            else:
                console.print(f"[yellow]anvil stopped by itself[/]; see {workspace.chain_dir / LOG_FILE}.", soft_wrap=True)
        finally:
            anvil.stop()
            (workspace.chain_dir / PID_FILE).unlink(missing_ok=True)

    @chain_app.command("down")
    @handle_errors
    def down(workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Stop this workspace's anvil (SIGTERM, so it writes its state first)."""
        workspace = Workspace.find(workdir)
        state = workspace.chain_dir / STATE_FILE
        found = stop_recorded(workspace.chain_dir / PID_FILE, state=state)
        if json:
            print_json({"stopped": found.status == "anvil", "pid": found.pid, "found": found.status, "command": found.command})
        console.print(_down_message(found, state=state), soft_wrap=True, highlight=False, markup=False)


def _down_message(found: RecordedProcess, *, state: Path) -> str:
    """What ``chain down`` found behind the PID file, and what (if anything) is left to do."""
    if found.status == "anvil":
        return f"Stopped anvil (pid {found.pid}); its state is in {state}."
    if found.status == "none":
        return f"No anvil runs for this workspace (no {found.pidfile}); nothing to stop."
    if found.status == "gone" and found.pid is None:
        return f"{found.pidfile} held no process id; removed it, nothing to stop."
    if found.status == "gone":
        return (
            f"{found.pidfile} named pid {found.pid}, which no longer runs (anvil ended without `fedledger chain down`, "
            "or the machine restarted); removed the stale file, nothing to stop."
        )
    return (
        f"{found.pidfile} named pid {found.pid}, but that process is not this workspace's anvil "
        f"(it runs `{found.command}`; the pid was reused after anvil ended): left it running and removed the "
        f"stale file. If this workspace's anvil still runs under another pid, find it with "
        f"`pgrep -af {state}` and stop it with `kill PID`."
    )
