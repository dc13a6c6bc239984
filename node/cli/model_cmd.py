"""Commands: ``model init`` — pin a seeded genesis model to start the first round from."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)


def register(app: typer.Typer) -> None:
    """Add the ``model`` group to the app."""
    model_app = typer.Typer(help="Models: make the genesis model a federation starts from.", no_args_is_help=True)
    app.add_typer(model_app, name="model")

    @model_app.command("init")
    @handle_errors
    def init(
        model: Annotated[str, typer.Option("--model", help="mlp or cnn.")] = "mlp",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights.")] = 0,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Build the model with seeded initial weights, pin it, print its CID (use it as --base-cid)."""
        from node.genesis import genesis_model_bytes

        workspace = Workspace.find(workdir)
        cid = open_store(workspace).add_bytes(genesis_model_bytes(model, seed=seed), pin=True)
        console.print(f"Genesis {model} model (seed {seed}): {cid}", soft_wrap=True, highlight=False)
        if json:
            print_json({"model": model, "seed": seed, "cid": cid})
        else:
            typer.echo(cid)
