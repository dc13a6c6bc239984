"""A Flower round with and without the ledger, on Flower's Deployment Engine, in one sitting.

    .venv/bin/python -m benchmarks.flower_overhead [--parties 3] [--rounds 2] [--repeats 2] [--epochs 1]

One anvil, one federation (deployed and its parties admitted as in the demo), one SuperLink and a
SuperNode per party, all processes on loopback. The example app runs alternately as plain Flower
(``ledger=false``: FedAvg, arrays in the replies) and on the ledger (``ledger=true``: the strategy
wrapped in LedgerStrategy, each party's update pinned and recorded with its key, aggregated from
the chain, model and receipt pinned, round finalized), ``--repeats`` times each, the same data,
model and training either way. A round's time is the ServerApp's own "Strategy execution
finished in X s" divided by the rounds (so the ServerApp's start-up is not counted; each
ClientApp process a SuperNode starts per message is). Reported: median seconds per round of each,
and their ratio ledger / plain.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.chain.connection import connect
from ledger.chain.keys import PRIVATE_KEY_ENV
from ledger.ipfs.store import EmbeddedStore
from ledger.workspace import Workspace
from node.demo import KEY_PASSWORD, DemoOptions, found_federation
from node.flower.demo import flower_run_config
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment
from node.round_config import TrainingSettings

_FINISHED = re.compile(r"Strategy execution finished in ([0-9.]+)s")


def strategy_seconds(output: str) -> float:
    """The ServerApp's own time for its rounds, as Flower logs it."""
    found = _FINISHED.search(output)
    if found is None:
        raise SystemExit(f"flwr run printed no strategy time:\n{output[-2000:]}")
    return float(found.group(1))


def measure(parties: int, rounds: int, repeats: int, epochs: int) -> dict[str, list[float]]:
    """Seconds per round, plain and on the ledger, alternating runs on one deployment."""
    root = Path(tempfile.mkdtemp(prefix="fedledger-flower-bench-"))
    anvil = AnvilProcess(state=root / "anvil.json").start()
    try:
        workspace = Workspace.init(root / "federation", rpc=anvil.rpc_url)
        options = DemoOptions(participants=parties, rounds=rounds, chain="anvil", training=TrainingSettings(epochs=epochs))
        _, keys = found_federation(options, w3=connect(anvil.rpc_url), workspace=workspace,
                                   store=EmbeddedStore(workspace.store_dir), track=lambda *_: None)
        env = {"FEDLEDGER_WORKDIR": str(workspace.root), "FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}
        per_round: dict[str, list[float]] = {"plain": [], "ledger": []}
        with FlowerDeployment(root / "flower", env=env) as flower:
            flower.start_superlink()
            for i, key in enumerate(keys):
                flower.start_supernode(f"party{i + 1}", {"partition-id": i, "num-partitions": parties},
                                       env={PRIVATE_KEY_ENV: Web3.to_hex(key.key)})
            for repeat in range(repeats):
                for mode in ("plain", "ledger"):
                    config = {**flower_run_config(replace(options, rounds=rounds)), "ledger": mode == "ledger"}
                    seconds = strategy_seconds(flower.run(EXAMPLE_APP, config, timeout=3600)) / rounds
                    per_round[mode].append(seconds)
                    print(f"repeat {repeat + 1} {mode}: {seconds:.2f} s per round", file=sys.stderr)
        return per_round
    finally:
        anvil.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    per_round = measure(args.parties, args.rounds, args.repeats, args.epochs)
    plain, ledger = statistics.median(per_round["plain"]), statistics.median(per_round["ledger"])
    print(f"| parties | rounds x repeats | plain Flower s/round | on the ledger s/round | ledger / plain |")
    print(f"| ---: | ---: | ---: | ---: | ---: |")
    print(f"| {args.parties} | {args.rounds} x {args.repeats} | {plain:.2f} | {ledger:.2f} | {ledger / plain:.2f}x |")
    print(f"runs (s/round): plain {per_round['plain']}, ledger {per_round['ledger']}", file=sys.stderr)


if __name__ == "__main__":
    main()
