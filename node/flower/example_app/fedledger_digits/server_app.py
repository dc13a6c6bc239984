"""ServerApp: Flower's FedAvg for sampling and configuration, wrapped so that the ledger records
every round and fedledger's deterministic strategy aggregates only the updates the chain holds.
``dp-noise`` > 0 makes every round private (DP-SGD with the run config's dp settings) and ``seal-to``
seals every round's updates to those addresses, opened here with ``fedledger-encryption-key``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict

import torch
from flwr.app import ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, Strategy

from node.flower import LedgerStrategy, array_record, latest_global, operator_ledger
from node.models import build_model, state_arrays
from node.round_config import DpSettings, RoundConfig, TrainingSettings
from node.strategies import make_strategy

app = ServerApp()


def dp_settings(run: Mapping[str, object]) -> DpSettings | None:
    """The rounds' dp section from the run config (``dp-noise`` 0: not private)."""
    noise = float(run["dp-noise"])  # type: ignore[arg-type]
    if not noise:
        return None
    return DpSettings(noise_multiplier=noise, max_grad_norm=float(run["dp-clip"]),  # type: ignore[arg-type]
                      sample_rate=float(run["dp-sample-rate"]), steps=int(run["dp-steps"]))  # type: ignore[arg-type]


@app.main()
def main(grid: Grid, context: Context) -> None:
    run = context.run_config
    training = TrainingSettings(epochs=int(run["epochs"]), batch_size=int(run["batch-size"]), lr=float(run["lr"]))
    config = RoundConfig(model=str(run["model"]), strategy=make_strategy(str(run["strategy"])).params(), training=training,
                         dp=dp_settings(run), seal_to=tuple(filter(None, str(run["seal-to"]).split(","))) or None)
    nodes = int(run["min-nodes"])
    torch.manual_seed(int(run["seed"]))  # the genesis model: the same seed gives the same CID
    initial = state_arrays(build_model(config.model))
    strategy: Strategy = FedAvg(fraction_evaluate=0.0, min_train_nodes=nodes, min_available_nodes=nodes)
    if run["ledger"]:  # the one change a Flower app needs on the server: wrap its strategy
        ledger = operator_ledger(run)
        strategy = LedgerStrategy(strategy, ledger=ledger, config=config, min_updates=int(run["min-updates"]),
                                  encryption_key=str(run["fedledger-encryption-key"]) or None)
        latest = latest_global(ledger, model=config.model)  # a federation with rounds: go on from its latest model
        initial = latest[1] if latest is not None else initial
    strategy.start(
        grid=grid, initial_arrays=array_record(initial), num_rounds=int(run["num-server-rounds"]),
        train_config=ConfigRecord({key.replace("_", "-"): value for key, value in asdict(training).items()}),
    )
