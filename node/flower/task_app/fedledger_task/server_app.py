"""ServerApp: rounds of the task the agreement in force names, opened, aggregated and finalized on the ledger
(Flower's FedAvg samples the SuperNodes; fedledger's deterministic strategy aggregates what the chain holds)."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from node.flower import LedgerStrategy, array_record, operator_ledger
from node.flower.task_round import run_options, task_round_config

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    ledger = operator_ledger(run)
    config, initial = task_round_config(ledger, **run_options(run))  # private and sealed as dp-noise and seal-to say
    nodes = int(run["min-nodes"])  # type: ignore[arg-type]
    strategy = LedgerStrategy(FedAvg(fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes),
                              ledger=ledger, config=config, min_updates=int(run["min-updates"]),  # type: ignore[arg-type]
                              encryption_key=str(run["fedledger-encryption-key"]) or None)
    strategy.start(grid=grid, initial_arrays=array_record(initial), num_rounds=int(run["num-server-rounds"]))  # type: ignore[arg-type]
