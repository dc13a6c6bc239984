"""The ``fedledger`` console script.

Subcommands are thin: each parses arguments and calls a function of ``ledger``, ``node`` or
``deploy`` that tests can call directly. The CLI lives under ``node`` because the layout's
top level is fixed and ``node`` (the actors) is the one package allowed to import the others.
Each module below owns one group of commands and adds it with ``register(app)``.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Annotated

import typer

from node.cli import (
    admin_cmd,
    aggregate_cmd,
    agreement_cmd,
    audit_cmd,
    chain_cmd,
    contract_cmd,
    demo_cmd,
    deploy_cmd,
    ipfs_cmd,
    key_cmd,
    model_cmd,
    participant_cmd,
    relay_cmd,
    round_cmd,
    services_cmd,
    task_cmd,
    train_cmd,
    workspace_cmd,
)

app = typer.Typer(
    name="fedledger",
    help="A blockchain-backed governance ledger for federated learning.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"fedledger {version('fedledger')}")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """A blockchain-backed governance ledger for federated learning."""


for module in (
    workspace_cmd,
    chain_cmd,
    deploy_cmd,
    contract_cmd,
    key_cmd,
    agreement_cmd,
    participant_cmd,
    round_cmd,
    admin_cmd,
    ipfs_cmd,
    model_cmd,
    task_cmd,
    train_cmd,
    aggregate_cmd,
    audit_cmd,
    demo_cmd,
    relay_cmd,
    services_cmd,  # adds to the node and round groups registered above
):
    module.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()
