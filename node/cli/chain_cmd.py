"""Commands: ``chain up`` and ``chain down`` — a local anvil testnet whose state lives in the workspace.

The state file (``chain/anvil.json``) is loaded when anvil starts and written when it stops on
SIGTERM or SIGINT, so a stopped and restarted chain keeps every deployment and transaction.
``chain/anvil.pid`` holds the PID of a detached anvil so that ``chain down`` can stop it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from deploy.anvil import AnvilProcess, rpc_chain_id, stop_pidfile
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


def _running_pid(pidfile: Path) -> int | None:
    """The PID in ``pidfile`` when that process is alive; a stale file is removed."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pidfile.unlink(missing_ok=True)
        return None
    except PermissionError:
        return pid
    return pid


def chain_up(workspace: Workspace, *, port: int | None = None, detach: bool = False) -> AnvilProcess:
    """Start anvil for ``workspace`` and record its RPC URL in ``[chain]``.

    Refuses when this workspace's anvil already runs or the port is taken; in both cases
    fedledger.toml is left as it was.
    """
    pidfile = workspace.chain_dir / PID_FILE
    running = _running_pid(pidfile)
    if running is not None:
        raise ChainError(
            f"anvil already runs for this workspace (pid {running}, see {pidfile}); "
            "use it, or stop it first with `fedledger chain down`."
        )
    port = int(port if port is not None else workspace.get("chain", "anvil_port", 8545))
    anvil = AnvilProcess(
        port=port,
        state=workspace.chain_dir / STATE_FILE,
        log=workspace.chain_dir / LOG_FILE,
        detach=detach,
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


def register(app: typer.Typer) -> None:
    """Add the ``chain`` group to the app."""
    chain_app = typer.Typer(help="Run a local anvil testnet whose state is kept in the workspace.", no_args_is_help=True)
    app.add_typer(chain_app, name="chain")

    @chain_app.command("up")
    @handle_errors
    def up(
        port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: \\[chain] anvil_port, 8545).")] = None,
        detach: Annotated[bool, typer.Option(help="Leave anvil running in the background and return.")] = False,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Start anvil on 127.0.0.1 with its state in <workspace>/chain/anvil.json."""
        workspace = Workspace.find(workdir)
        anvil = chain_up(workspace, port=port, detach=detach)
        if detach:
            _announce(anvil, detach=True, json=json)
            return
        try:  # from here on, however the command ends, anvil is stopped (and so writes its state)
            _announce(anvil, detach=False, json=json)
            while rpc_chain_id(anvil.rpc_url, timeout=1.0) is not None:
                time.sleep(0.5)
            console.print(f"[yellow]anvil stopped by itself[/]; see {workspace.chain_dir / LOG_FILE}.", soft_wrap=True)
        except KeyboardInterrupt:
            console.print("Stopping anvil and saving its state…")
        finally:
            anvil.stop()
            (workspace.chain_dir / PID_FILE).unlink(missing_ok=True)

    @chain_app.command("down")
    @handle_errors
    def down(workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Stop this workspace's anvil (SIGTERM, so it writes its state first)."""
        workspace = Workspace.find(workdir)
        pidfile = workspace.chain_dir / PID_FILE
        pid = _running_pid(pidfile)
        stopped = pid is not None and stop_pidfile(pidfile)
        if json:
            print_json({"stopped": stopped, "pid": pid})
        if stopped:
            console.print(f"Stopped anvil (pid {pid}); its state is in {workspace.chain_dir / STATE_FILE}.")
        else:
            console.print(f"No anvil runs for this workspace (no live pid in {pidfile}); nothing to stop.")
