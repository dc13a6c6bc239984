"""Commands: ``init`` (make a workspace) and ``config show`` (print resolved settings, secrets masked)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)

SECRET_WORDS = ("key", "password", "secret", "token")


def _masked(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with every value whose name looks secret replaced by ``***``."""
    masked: dict[str, Any] = {}
    for name, value in config.items():
        if isinstance(value, dict):
            masked[name] = _masked(value)
        elif any(word in name.lower() for word in SECRET_WORDS) and name.lower() != "keys":
            masked[name] = "***"
        else:
            masked[name] = value
    return masked


def register(app: typer.Typer) -> None:
    """Add ``init`` and ``config`` to the app."""
    config_app = typer.Typer(help="Show the workspace configuration.", no_args_is_help=True)
    app.add_typer(config_app, name="config")

    @app.command("init")
    @handle_errors
    def init(
        directory: Annotated[Path, typer.Argument(help="Folder for the new workspace (created if missing).")],
        rpc: Annotated[str | None, typer.Option(help="RPC URL of the chain, or 'memory' for the in-process chain.")] = None,
    ) -> None:
        """Create a workspace: fedledger.toml, the embedded store, keys/, chain/ and journal/ folders."""
        workspace = Workspace.init(directory, rpc=rpc)
        console.print(f"Created workspace [bold]{workspace.root}[/] ({workspace.config_path.name}).")

    @config_app.command("show")
    @handle_errors
    def show(workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Print the configuration as resolved from flags, environment and fedledger.toml."""
        workspace = Workspace.find(workdir)
        resolved = _masked(workspace.config)
        resolved["chain"]["rpc"] = workspace.get("chain", "rpc")
        resolved["store"]["backend"] = workspace.get("store", "backend")
        resolved["store"]["api"] = workspace.get("store", "api")
        if json:
            print_json({"workspace": str(workspace.root), "config": resolved})
            return
        console.print(f"[bold]workspace[/] {workspace.root}")
        for section, values in resolved.items():
            console.print(f"[bold]\\[{section}][/]")
            for name, value in (values.items() if isinstance(values, dict) else [(section, values)]):
                console.print(f"  {name} = {value!r}", highlight=False)
