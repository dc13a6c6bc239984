"""Commands: ``demo`` — the whole federation loop in one command, then an audit of what it built."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.table import Table

from ledger.errors import InvalidInputError
from ledger.workspace import Workspace
from node.cli._common import JsonOption, console, handle_errors, print_json

if TYPE_CHECKING:
    from node.demo import DemoOptions, DemoReport, RoundReport


def _table(rows: list[RoundReport]) -> Table:
    table = Table(
        title="fedledger demo", header_style="bold",
        caption="base: federated = the model each round started from, as the parties evaluated it, each on its own "
                "share of the held-out digits (weighted by samples; '-' in a private round); test accuracy = the "
                "round's global model on all of them.",
    )
    for column in ("round", "base: federated", "test accuracy", "accepted", "rejected", "gas", "global model"):
        table.add_column(column, justify="right" if column != "global model" else "left")
    for row in rows:
        federated = "-" if row.fed_eval_accuracy is None else f"{row.fed_eval_accuracy:.4f}"
        table.add_row(str(row.round_id), federated, f"{row.accuracy:.4f}", str(row.accepted), str(row.rejected), f"{row.gas:,}", row.global_cid)
    return table


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the app."""

    @app.command("demo")
    @handle_errors
    def demo(
        participants: Annotated[int, typer.Option("--participants", min=1, max=200, help="Number of parties.")] = 4,
        rounds: Annotated[int, typer.Option("--rounds", min=1, max=100, help="Number of rounds.")] = 5,
        chain: Annotated[str, typer.Option("--chain", help="memory (in-process chain) or anvil (a real local node).")] = "memory",
        workdir: Annotated[Path | None, typer.Option("--workdir", "-w", help="Workspace to create (default: a new temporary folder).")] = None,
        strategy: Annotated[str, typer.Option("--strategy", help="fedavg, median, trimmed-mean or krum.")] = "fedavg",
        non_iid: Annotated[float | None, typer.Option("--non-iid", help="Dirichlet alpha for a non-IID split (default IID).")] = None,
        model: Annotated[str, typer.Option("--model", help="mlp or cnn.")] = "mlp",
        seed: Annotated[int, typer.Option("--seed", help="Seed for data split, keys and the genesis model.")] = 0,
        engine: Annotated[str, typer.Option("--engine", help="plain (this process) or flower (the example Flower app on Flower's Deployment Engine, on anvil; needs the [flower] extra).")] = "plain",
        private: Annotated[bool, typer.Option("--private", help="Differential privacy (DP-SGD within a budget of ε = 8 at δ = 1e-5) and updates sealed to the aggregator and an auditor (with --engine flower too: DP-SGD in each party's ClientApp).")] = False,
        secure: Annotated[bool, typer.Option("--secure", help="Secure aggregation: each party masks its update so that only the sum is readable, the aggregator and the audit recompute it without a key (FedAvg, 3 parties or more; with --private: DP-SGD too, no sealing).")] = False,
        json: JsonOption = False,
    ) -> None:
        """Deploy, admit N parties, run R rounds of federated training on digits, audit the ledger."""
        from node.demo import DemoOptions, default_workdir
        from node.model_layouts import MODEL_NAMES
        from node.strategies import make_strategy

        if chain not in ("memory", "anvil"):
            raise InvalidInputError(f"--chain must be memory or anvil, not {chain!r}.")
        if engine not in ("plain", "flower"):
            raise InvalidInputError(f"--engine must be plain or flower, not {engine!r}.")
        if engine == "flower":
            import node.flower  # noqa: F401 - without the [flower] extra: one sentence, before a workspace is made

            chain = "anvil"  # Flower's processes share the chain: it must be a node
        if model not in MODEL_NAMES:
            raise InvalidInputError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}.")
        make_strategy(strategy)  # an unknown name fails here, before a workspace is made
        if secure:
            from node.round_config import check_secure_strategy

            check_secure_strategy(make_strategy(strategy).params())
            if engine == "flower":
                raise InvalidInputError("--secure runs on the plain engine only; drop --engine flower or --secure.")
            if participants < 3:
                raise InvalidInputError(f"--secure needs at least 3 parties (a sum of two tells each the other's update), "
                                        f"not {participants}; give --participants 3 or more.")
        options = DemoOptions(
            participants=participants, rounds=rounds, chain=chain, workdir=workdir,
            strategy=strategy, non_iid_alpha=non_iid, model=model, seed=seed, private=private, secure=secure,
        )
        root = workdir if workdir is not None else default_workdir()
        fresh = not root.exists() or not any(root.iterdir())
        workspace = Workspace.init(root, rpc="memory" if chain == "memory" else None)
        try:
            report = _run(options, workspace, json=json, engine=engine)
        except BaseException:
            if fresh:  # a demo that failed leaves nothing behind that would block the next try
                shutil.rmtree(root, ignore_errors=True)
            raise
        verdict = "[bold green]audit passed[/]" if report.audit_ok else "[bold red]audit FAILED[/]"
        console.print(f"Final test accuracy {report.final_accuracy:.4f}; {verdict} ({report.audit_checks} checks).")
        for failure in report.audit_failures:
            console.print(f"  [red]✗[/] {failure}", soft_wrap=True, highlight=False)
        if report.privacy is not None:
            spent = max(report.privacy["epsilon_spent"].values(), default=0.0)
            sealed = "sealed to the aggregator and an auditor" if report.privacy["sealed"] else "not sealed"
            console.print(f"Privacy: each party spent at most ε = {spent:.4f} of its budget ε = "
                          f"{report.privacy['epsilon_budget']:g} (δ = {report.privacy['delta']:g}); updates {sealed}.",
                          highlight=False)
        if report.secure:
            console.print("Secure aggregation: every round's updates were masked; the aggregator and the audit "
                          "recomputed each sum without any key.", highlight=False)
        average = report.average_gas()
        console.print("Average gas: " + ", ".join(f"{name} {gas:,}" for name, gas in average.items()), soft_wrap=True)
        if chain == "anvil":
            from node.demo import KEY_PASSWORD

            if engine == "flower" and private:
                console.print(f"The aggregator's and the auditor's encryption keys (the ServerApp opened the sealed updates "
                              f"with the aggregator's, the audit with the auditor's) are kept encrypted in "
                              f"{workspace.keys_dir / 'encryption'}.", soft_wrap=True, highlight=False)
            console.print(
                f"Keys admin, party1… are kept encrypted in {workspace.keys_dir} (password {KEY_PASSWORD!r}): "
                f"`fedledger chain up -w {workspace.root} --detach`, then `FEDLEDGER_KEY_PASSWORD={KEY_PASSWORD} "
                f"fedledger round open -w {workspace.root} …` goes on with the federation (see the README).",
                soft_wrap=True, highlight=False,
            )
        if json:
            print_json(report.to_json())
        if not report.audit_ok:
            raise typer.Exit(1)


def _run(options: DemoOptions, workspace: Workspace, *, json: bool, engine: str = "plain") -> DemoReport:
    """Run the demo, showing its rounds as they finish (unless --json)."""
    if engine == "flower":
        from node.flower.demo import run_flower_demo as run_demo_on_chain
    else:
        from node.demo import run_demo_on_chain

    split = f"non-IID α={options.non_iid_alpha}" if options.non_iid_alpha else "IID"
    console.print(
        f"Workspace {workspace.root}: {options.participants} parties, {options.rounds} rounds, {options.strategy}, "
        f"chain {options.chain}, {split} digits.",
        soft_wrap=True, highlight=False,
    )
    rows: list[RoundReport] = []
    if json:
        return run_demo_on_chain(options, workspace=workspace)
    if console.is_terminal:  # the table grows as rounds finish
        with Live(_table(rows), console=console) as live:

            def grow(row: RoundReport) -> None:
                rows.append(row)
                live.update(_table(rows))

            return run_demo_on_chain(options, workspace=workspace, on_round=grow)

    def log(row: RoundReport) -> None:  # a log or a pipe: a line per round as it finishes, then the table
        rows.append(row)
        console.print(f"round {row.round_id}: test accuracy {row.accuracy:.4f}", highlight=False)

    report = run_demo_on_chain(options, workspace=workspace, on_round=log)
    console.print(_table(rows))
    return report
