"""Commands: ``model init`` — pin a seeded genesis model to start the first round from."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import (
    TASK_TIMEOUT_S,
    JsonOption,
    TaskTimeoutOption,
    VerboseOption,
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
        model: Annotated[str | None, typer.Option("--model", help="mlp or cnn (default mlp).")] = None,
        task: Annotated[str | None, typer.Option(
            "--task", help="CID of a task bundle in the store (`fedledger task pack`), or a built-in task (mlp or "
                           "cnn: its shipped bundle is pinned): its model() under --seed, trainable tensors only "
                           "(frozen ones pinned as their own file).",
        )] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the initial weights.")] = 0,
        task_timeout: TaskTimeoutOption = TASK_TIMEOUT_S,
        verbose: VerboseOption = False,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Build the model with seeded initial weights, pin it, print its CID (use it as --base-cid)."""
        if task is not None:
            if model is not None:
                raise InvalidInputError("give either --model NAME or --task CID, not both.")
            _init_task(task, seed=seed, timeout_s=task_timeout, verbose=verbose, workdir=workdir, json=json)
            return
        from node.genesis import genesis_model_bytes

        model = "mlp" if model is None else model
        workspace = Workspace.find(workdir)
        cid = open_store(workspace).add_bytes(genesis_model_bytes(model, seed=seed), pin=True)
        console.print(f"Genesis {model} model (seed {seed}): {cid}", soft_wrap=True, highlight=False)
        if json:
            print_json({"model": model, "seed": seed, "cid": cid})
        else:
            typer.echo(cid)


def _init_task(task: str, *, seed: int, timeout_s: float, verbose: bool, workdir, json: bool) -> None:  # noqa: ANN001
    from node.tasks.builtin import resolve_task
    from node.tasks.rounds import make_task_genesis, task_cache

    workspace = Workspace.find(workdir)
    store = open_store(workspace)
    genesis = make_task_genesis(store, resolve_task(task, store), seed=seed, cache_root=task_cache(workspace),
                                timeout_s=timeout_s, verbose=verbose)
    frozen = (f"; {len(genesis.frozen)} frozen tensors pinned as {genesis.frozen_cid}" if genesis.frozen_cid
              else "; no frozen tensors")
    console.print(
        f"Genesis model of task {genesis.name} ({genesis.task}, seed {seed}): {genesis.cid} "
        f"({len(genesis.trainable)} trainable tensors{frozen})", soft_wrap=True, highlight=False,
    )
    if json:
        print_json({"model": genesis.name, "task": genesis.task, "seed": seed, "cid": genesis.cid,
                    "frozen_cid": genesis.frozen_cid})
    else:
        typer.echo(genesis.cid)
