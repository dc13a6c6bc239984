"""Commands: ``agreement publish`` and ``agreement show`` — the federation's agreement (terms) versions."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from ledger.ipfs.store import open_store
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import KeyOption, governed, jsonable, reader, report_tx


def register(app: typer.Typer) -> None:
    """Add the ``agreement`` group to the app."""
    agreement_app = typer.Typer(help="Publish and read the federation's agreement (terms) versions.", no_args_is_help=True)
    app.add_typer(agreement_app, name="agreement")

    @agreement_app.command("publish")
    @handle_errors
    def agreement_publish(
        terms_file: Annotated[Path, typer.Argument(help="The terms document (any file); it is added to the content store.")],
        epsilon_budget: Annotated[float | None, typer.Option(
            "--epsilon-budget", help="Each party's privacy budget ε over all private rounds (> 0, at most 6 decimals); needs --delta.",
        )] = None,
        delta: Annotated[float | None, typer.Option(
            "--delta", help="The δ every party's ε is stated at (0 < δ < 1, e.g. 1e-5); needs --epsilon-budget.",
        )] = None,
        rpc: RpcOption = None,
        key: KeyOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Add the terms document to the content store and publish its CID as the next agreement version.

        With --epsilon-budget and --delta the version carries a privacy budget: a party that accepts it
        may declare a cumulative ε of at most the budget over the private rounds it takes part in.
        """
        from ledger.fixed_point import budget_to_micros, delta_to_units

        if (epsilon_budget is None) != (delta is None):
            raise InvalidInputError("a privacy budget needs both --epsilon-budget E and --delta D; give both, or neither.")
        if epsilon_budget is not None and delta is not None:  # checked before anything is pinned or sent
            budget_to_micros(epsilon_budget)
            delta_to_units(delta)
        if not terms_file.is_file():
            raise InvalidInputError(f"no terms file at {terms_file}; give the path of the agreement document.")
        workspace, federation = governed(workdir, rpc, key)
        cid = open_store(workspace).add_file(terms_file, pin=True)
        version, tx = federation.publish_agreement(cid, epsilon_budget=epsilon_budget, delta=delta)
        budget = "" if epsilon_budget is None else f", privacy budget ε = {epsilon_budget:g} at δ = {delta:g}"
        report_tx(f"Published agreement version {version}, terms {cid}{budget}", tx, json,
                  {"version": version, "terms_cid": cid, "epsilon_budget": epsilon_budget, "delta": delta})

    @agreement_app.command("show")
    @handle_errors
    def agreement_show(
        version: Annotated[int | None, typer.Argument(min=1, help="Agreement version (default: the current one).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print an agreement version and the CID of its terms."""
        info = reader(workdir, rpc).agreement(version)
        if json:
            print_json(jsonable({**asdict(info), "epsilon_budget": info.epsilon_budget, "delta": info.delta}))
        budget = "no privacy budget" if info.epsilon_budget is None else f"privacy budget ε = {info.epsilon_budget:g} at δ = {info.delta:g}"
        console.print(f"Agreement version {info.version}: terms {info.terms_cid}, {budget} (block {info.block}).",
                      soft_wrap=True, highlight=False)
