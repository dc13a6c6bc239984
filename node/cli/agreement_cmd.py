"""Commands: ``agreement publish`` and ``agreement show`` — the federation's agreement (terms) versions."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from node.cli.governance_common import KeyOption, MaxFeeOption, chain, governed, jsonable, report_tx
from node.tasks.builtin import resolve_task

if TYPE_CHECKING:
    from ledger.workspace import Workspace
    from node.tasks.agreement import AgreementDocument


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
        task: Annotated[str | None, typer.Option(
            "--task", help="CID of the task bundle every party will run (`fedledger task pack`), or a built-in task "
                           "(mlp or cnn: its shipped bundle is pinned): the agreement names it, so accepting the "
                           "agreement is consenting to that code.",
        )] = None,
        flower_app: Annotated[Path | None, typer.Option(
            "--flower-app", help="The Flower App Bundle (.fab from `flwr build`) every party runs on Flower: the "
                                 "agreement names its sha256 and pins it, and a party refuses to train for a run of "
                                 "any other FAB.",
        )] = None,
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Add the terms document to the content store and publish its CID as the next agreement version.

        With --epsilon-budget and --delta the version carries a privacy budget: a party that accepts it
        may declare a cumulative ε of at most the budget over the private rounds it takes part in.

        With --task the version names a task bundle: a small agreement document naming the task's CID and
        the terms' CID is pinned, and its CID is what the chain records (and each party signs), so a new
        task is a new agreement version that every party must accept again. --task mlp or --task cnn names
        the built-in digits task (its bundle ships with fedledger, the same CID on every machine).

        With --flower-app the version names a Flower App Bundle: the document records the .fab file's sha256
        (as `flwr build` computes it) and the CID the FAB is pinned under, so any party can read the code.
        """
        from ledger.fixed_point import budget_to_micros, delta_to_units

        if (epsilon_budget is None) != (delta is None):
            raise InvalidInputError("a privacy budget needs both --epsilon-budget E and --delta D; give both, or neither.")
        if epsilon_budget is not None and delta is not None:  # checked before anything is pinned or sent
            budget_to_micros(epsilon_budget)
            delta_to_units(delta)
        if not terms_file.is_file():
            raise InvalidInputError(f"no terms file at {terms_file}; give the path of the agreement document.")
        if task is not None:  # a CID or a built-in task (mlp, cnn); anything else is refused before anything is sent
            resolve_task(task)
        fab = None
        if flower_app is not None:  # a file that is not a FAB is refused before anything is pinned or sent
            from node.tasks.agreement import read_flower_app

            fab = read_flower_app(flower_app)
        workspace, federation = governed(workdir, rpc, key, max_fee_gwei)
        store = open_store(workspace)
        manifest = None
        if task is not None:  # a bundle that is not here, or not a bundle, is refused before anything is pinned
            from node.tasks.rounds import bundle_manifest

            task = resolve_task(task, store)  # its CID; a built-in task's bundle is pinned here, like a packed one
            manifest = bundle_manifest(store, task)
        cid = store.add_file(terms_file, pin=True)
        if task is None and fab is None:
            version, tx = federation.publish_agreement(cid, epsilon_budget=epsilon_budget, delta=delta)
            budget = "" if epsilon_budget is None else f", privacy budget ε = {epsilon_budget:g} at δ = {delta:g}"
            report_tx(f"Published agreement version {version}, terms {cid}{budget}", tx, json,
                      {"version": version, "terms_cid": cid, "epsilon_budget": epsilon_budget, "delta": delta})
            return
        from node.tasks.agreement import FlowerApp, agreement_document, fab_sha256

        named_app = None if fab is None else FlowerApp(sha256=fab_sha256(fab), cid=store.add_bytes(fab, pin=True))
        document_cid = store.add_bytes(agreement_document(task, cid, flower_app=named_app), pin=True)
        version, tx = federation.publish_agreement(document_cid, epsilon_budget=epsilon_budget, delta=delta)
        budget = "" if epsilon_budget is None else f", privacy budget ε = {epsilon_budget:g} at δ = {delta:g}"
        task_text = "" if manifest is None else f"task {manifest.name} {task}, "
        app_text = "" if named_app is None else f"Flower app sha256 {named_app.sha256} (FAB {named_app.cid}), "
        extra = {} if named_app is None else {"flower_app": {"sha256": named_app.sha256, "cid": named_app.cid}}
        report_tx(
            f"Published agreement version {version}: {task_text}{app_text}terms file {cid}, "
            f"agreement document {document_cid}{budget}", tx, json,
            {"version": version, "terms_cid": document_cid, "terms_file_cid": cid, "task": task,
             "task_name": None if manifest is None else manifest.name, **extra,
             "epsilon_budget": epsilon_budget, "delta": delta},
        )

    @agreement_app.command("show")
    @handle_errors
    def agreement_show(
        version: Annotated[int | None, typer.Argument(min=1, help="Agreement version (default: the current one).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print an agreement version, the CID of its terms, and the task and Flower app it names (if any)."""
        from ledger.chain.connection import open_federation

        workspace, w3, url = chain(workdir, rpc)
        info = open_federation(workspace, w3=w3, rpc=url).agreement(version)
        named = _named_task(workspace, info.terms_cid)
        extra: dict[str, object] = {} if named is None else {"task": named.task, "terms_file_cid": named.terms}
        if named is not None and named.flower_app is not None:
            extra["flower_app"] = {"sha256": named.flower_app.sha256, "cid": named.flower_app.cid}
        if json:
            print_json(jsonable({**asdict(info), "epsilon_budget": info.epsilon_budget, "delta": info.delta, **extra}))
        budget = "no privacy budget" if info.epsilon_budget is None else f"privacy budget ε = {info.epsilon_budget:g} at δ = {info.delta:g}"
        task_text = ""
        if named is not None:
            parts = ([] if named.task is None else [f"task {named.task}"]) + (
                [] if named.flower_app is None else
                [f"Flower app sha256 {named.flower_app.sha256} (FAB {named.flower_app.cid})"])
            task_text = f"{', '.join(parts)} (terms file {named.terms}), "
        console.print(f"Agreement version {info.version}: terms {info.terms_cid}, {task_text}{budget} (block {info.block}).",
                      soft_wrap=True, highlight=False)


def _named_task(workspace: Workspace, terms_cid: str) -> AgreementDocument | None:
    """The agreement document behind ``terms_cid`` when this workspace's store holds one (None: plain terms,
    or terms this store cannot show: they are shown as the chain records them)."""
    from ledger.errors import StoreError
    from node.tasks.agreement import MAX_DOCUMENT_BYTES, parse_agreement

    store = open_store(workspace)
    try:
        if not store.has(terms_cid):
            return None
        data = store.get(terms_cid, max_bytes=MAX_DOCUMENT_BYTES)
    except StoreError:  # absent, too large to be a document, or the store is unreachable
        return None
    return parse_agreement(data, source=f"the terms {terms_cid} of the agreement")
