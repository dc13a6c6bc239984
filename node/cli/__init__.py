"""The ``fedledger`` console script.

Subcommands are thin: each parses arguments and calls a function of ``ledger``, ``node`` or
``deploy`` that tests can call directly. The CLI lives under ``node`` because the layout's
top level is fixed and ``node`` (the actors) is the one package allowed to import the others.
Each module below owns one group of commands and adds it with ``register(app)``.
"""

from __future__ import annotations

import typer

from node.cli import (
    aggregate_cmd,
    audit_cmd,
    chain_cmd,
    demo_cmd,
    governance_cmd,
    ipfs_cmd,
    model_cmd,
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

for module in (
    workspace_cmd,
    chain_cmd,
    governance_cmd,
    ipfs_cmd,
    model_cmd,
    train_cmd,
    aggregate_cmd,
    audit_cmd,
    demo_cmd,
):
    module.register(app)


def main() -> None:
    """Entry point of the console script."""
    app()
