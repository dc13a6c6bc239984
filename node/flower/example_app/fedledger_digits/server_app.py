"""ServerApp: Flower's FedAvg for sampling and configuration, wrapped so that the ledger records
every round and fedledger's deterministic strategy aggregates only the updates the chain holds."""

from __future__ import annotations

from dataclasses import asdict

import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Strategy

from node.flower import LedgerStrategy, array_record, latest_global, operator_ledger
from node.models import build_model, state_arrays
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    training = TrainingSettings(epochs=int(run["epochs"]), batch_size=int(run["batch-size"]), lr=float(run["lr"]))
    config = RoundConfig(model=str(run["model"]), strategy=make_strategy(str(run["strategy"])).params(), training=training)
    nodes = int(run["min-nodes"])
    torch.manual_seed(int(run["seed"]))  # the genesis model: the same seed gives the same CID
    initial = state_arrays(build_model(config.model))
    strategy: Strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes)
    if run["ledger"]:  # the one change a Flower app needs on the server: wrap its strategy
        ledger = operator_ledger(run)
        strategy = LedgerStrategy(strategy, ledger=ledger, config=config, min_updates=int(run["min-updates"]))
        latest = latest_global(ledger, model=config.model)  # a federation with rounds: go on from its latest model
        initial = latest[1] if latest is not None else initial
    strategy.start(
        grid=grid, initial_arrays=array_record(initial), num_rounds=int(run["num-server-rounds"]),
        train_config=ConfigRecord({key.replace("_", "-"): value for key, value in asdict(training).items()}),
    )
