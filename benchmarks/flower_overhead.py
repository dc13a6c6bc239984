"""A Flower round against a `node run` round of the same model, parties and data, in one sitting.

    .venv/bin/python -m benchmarks.flower_overhead [--parties 4] [--rounds 3] [--poll-seconds 2]

One anvil, one federation (deployed and its parties admitted as in the demo). On it, the example
app (``node/flower/example_app``: MLP, FedAvg, 1 local epoch, IID digits) runs on Flower's
Deployment Engine, a SuperLink and a SuperNode per party as processes on loopback, twice:

- ``process``: each SuperNode with ``--isolation process`` beside its long-lived ClientApp
  process (``node.flower.warm_clientapp``), started through ``node.flower.supernode`` (its idle
  poll of the SuperLink 0.2 s instead of flwr 1.42's fixed 3 s), as ``FlowerDeployment`` starts them
  now; runs on the ledger (``ledger=true``) and as plain Flower (``ledger=false``: FedAvg, arrays in
  the replies);
- ``process, 3 s poll``: the same, each SuperNode Flower's ``flower-supernode`` as shipped;
- ``subprocess``: Flower's default, a ClientApp process per message (what the deployment used before).

Each deployment first runs one warm-up round (the first message a ClientApp process handles
imports the app; the SuperNodes connect), then ``--rounds`` measured rounds. A Flower round's time
is the ServerApp's own "Strategy execution finished in X s" / rounds: the whole cycle, opening to
finalization to the next opening, without the ServerApp's start-up (once per ``flwr run``).

Against it, benchmarks/services.py's federation on a fresh anvil: a `fedledger node run` process
per party (the same digits shards as .npz), an `aggregator run` and a `coordinator run`, all with
``--poll-seconds`` (their default: 2 s); its round is the cycle, 60 / rounds per minute over the
measured rounds after a warm-up. ``vs node run`` = node run's seconds per round / Flower's (≥ 1:
Flower is as fast).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from web3 import Web3

from benchmarks.services import run_services
from deploy.anvil import AnvilProcess
from ledger.chain.connection import connect
from ledger.chain.keys import PRIVATE_KEY_ENV
from ledger.ipfs.store import EmbeddedStore
from ledger.workspace import Workspace
from node.demo import KEY_PASSWORD, DemoOptions, found_federation
from node.flower.demo import flower_run_config
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment
from node.flower.supernode import POLL_INTERVAL
from node.round_config import TrainingSettings

_FINISHED = re.compile(r"Strategy execution finished in ([0-9.]+)s")


def strategy_seconds(output: str) -> float:
    """The ServerApp's own time for its rounds, as Flower logs it."""
    found = _FINISHED.search(output)
    if found is None:
        raise SystemExit(f"flwr run printed no strategy time:\n{output[-2000:]}")
    return float(found.group(1))


SETTINGS = (  # (name, isolation, SuperNode poll interval: None is Flower's own 3 s, modes)
    ("process", "process", POLL_INTERVAL, ("ledger", "plain")),
    ("process stock-poll", "process", None, ("ledger",)),
    ("subprocess", "subprocess", POLL_INTERVAL, ("ledger",)),
)


def measure_flower(parties: int, rounds: int, root: Path) -> dict[str, float]:
    """Seconds per round of each setting and mode ("process ledger", "process plain", ...)."""
    anvil = AnvilProcess(state=root / "anvil.json").start()
    try:
        workspace = Workspace.init(root / "federation", rpc=anvil.rpc_url)
        options = DemoOptions(participants=parties, rounds=rounds, chain="anvil", training=TrainingSettings(epochs=1))
        _, keys = found_federation(options, w3=connect(anvil.rpc_url), workspace=workspace,
                                   store=EmbeddedStore(workspace.store_dir), track=lambda *_: None)
        env = {"FEDLEDGER_WORKDIR": str(workspace.root), "FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}
        per_round: dict[str, float] = {}
        for setting, isolation, poll, modes in SETTINGS:
            with FlowerDeployment(root / f"flower-{setting.replace(' ', '-')}", env=env, isolation=isolation,
                                  poll_interval=poll) as flower:
                flower.start_superlink()
                for i, key in enumerate(keys):
                    flower.start_supernode(f"party{i + 1}", {"partition-id": i, "num-partitions": parties},
                                           env={PRIVATE_KEY_ENV: Web3.to_hex(key.key)})
                flower.run(EXAMPLE_APP, {**flower_run_config(replace(options, rounds=1)), "ledger": True}, timeout=3600)
                for mode in modes:
                    config = {**flower_run_config(options), "ledger": mode == "ledger"}
                    seconds = strategy_seconds(flower.run(EXAMPLE_APP, config, timeout=3600)) / rounds
                    per_round[f"{setting} {mode}"] = seconds
                    print(f"Flower, {setting}, {mode}: {seconds:.2f} s per round", file=sys.stderr, flush=True)
        return per_round
    finally:
        anvil.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds of each setting, after a warm-up round")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="of the node run / aggregator / coordinator services")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fedledger-flower-bench-"))
    try:
        flower = measure_flower(args.parties, args.rounds, root / "flower")
        _, per_minute = run_services(parties=args.parties, rounds=args.rounds, poll_s=args.poll_seconds,
                                            root=root / "services")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    node_run = 60 / per_minute
    print(f"command: .venv/bin/python -m benchmarks.flower_overhead --parties {args.parties} --rounds {args.rounds} "
          f"--poll-seconds {args.poll_seconds:g}")
    print("| round of | s/round | rounds/min | vs node run |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| `node run` services (poll {args.poll_seconds:g} s) | {node_run:.2f} | {per_minute:.1f} | 1.00x |")
    names = {"process ledger": "Flower, long-lived ClientApp processes, on the ledger",
             "process plain": "Flower, long-lived ClientApp processes, plain (no ledger)",
             "process stock-poll ledger": "Flower, long-lived ClientApp processes, on the ledger, SuperNodes polling every 3 s "
                                          "(stock `flower-supernode`)",
             "subprocess ledger": "Flower, a ClientApp process per message (Flower's default), on the ledger"}
    for key, name in names.items():
        seconds = flower[key]
        print(f"| {name} | {seconds:.2f} | {60 / seconds:.1f} | {node_run / seconds:.2f}x |")


if __name__ == "__main__":
    main()
