"""The services as separate processes on loopback against the in-process loop, in the same run.

    .venv/bin/python -m benchmarks.services [--parties 4 16] [--rounds 3] [--poll-seconds 1]

For each party count, on a fresh anvil: N `fedledger node run` processes (one digits shard each,
as .npz), one `aggregator run` and one `coordinator run --rounds R+1 --min-updates N`, all with
``--log-json``; the first round is a warm-up (first training in each process) and is not reported.
From the logs' timestamps:

- round time: the coordinator's ``opened`` to the aggregator's ``finalized``; rounds per minute
  counts the whole cycle, from one round's opening to the next one's (the coordinator's reaction
  to a finalized round included);
- ledger overhead: round time minus the time during which at least one party was training (the
  union of the parties' training intervals: each node process here wraps
  ``node.participant.train`` with a timer, as benchmarks/ledger_overhead.py does in-process);
- reaction latency: a round's opening to the first party starting on it, and to the first
  submission recorded.

The in-process figure is benchmarks/ledger_overhead.py's loop (the same steps called one after
another in one process, no polling) on another fresh anvil, in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np
from web3 import Web3

from benchmarks.ledger_overhead import run_rounds
from deploy.anvil import AnvilProcess
from deploy.deployer import deploy_federation
from ledger.chain.connection import open_federation
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.data import load_digits_split
from node.demo import TERMS, party_account
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy

FEDLEDGER = Path(sys.executable).parent / "fedledger"


def node_process(trace: str, argv: list[str]) -> None:
    """`fedledger node run ARGV` with ``node.participant.train`` timed: one JSON line per training in ``trace``."""
    import node.participant
    from node.cli import main

    original = node.participant.train

    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.time()
        try:
            return original(*args, **kwargs)
        finally:
            with open(trace, "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"start": start, "end": time.time()}) + "\n")

    node.participant.train = timed  # type: ignore[assignment]
    sys.argv = ["fedledger", "node", "run", *argv]
    main()


def _ts(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["ts"]).timestamp()


def union_seconds(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds of [lo, hi] covered by at least one interval."""
    clipped = sorted((max(a, lo), min(b, hi)) for a, b in intervals if b > lo and a < hi)
    total, end = 0.0, lo
    for a, b in clipped:
        if b > end:
            total += b - max(a, end)
            end = b
    return total


@dataclass
class ServiceRound:
    round_s: float
    training_s: float
    reaction_s: float
    first_submission_s: float


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def run_services(*, parties: int, rounds: int, poll_s: float, root: Path) -> tuple[list[ServiceRound], float]:
    """A federation of ``parties`` node processes: the measured rounds after one warm-up round, and
    rounds per minute from the first measured round's opening to the last one's finalization."""
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url))
        workspace = Workspace.init(root / "ws", rpc=anvil.rpc_url)
        admin = party_account(2, 0)
        members = [party_account(2, i + 1) for i in range(parties)]
        for account in (admin, *members):
            w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])  # type: ignore[arg-type]
        deploy_federation(workspace, account=admin)
        federation = open_federation(Workspace.load(workspace.root), account=admin)
        store = open_store(workspace)
        version, _ = federation.publish_agreement(store.add_bytes(TERMS, pin=True))
        deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
        for member in members:
            signature = federation.sign_join(member, version=version, deadline=deadline)
            federation.with_account(member).join(member.address, version=version, deadline=deadline, signature=signature)
            federation.approve(member.address)
        config = root / "config.json"
        config.write_bytes(RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(),
                                       training=TrainingSettings(epochs=1)).to_bytes())
        shards, _ = load_digits_split(parties=parties, seed=0)

        logs = root / "logs"
        logs.mkdir()
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_COLOR": "1"}
        common = ["--poll-seconds", str(poll_s), "--log-json", "--workdir", str(workspace.root)]
        processes: list[subprocess.Popen[bytes]] = []

        def start(name: str, command: list[str], key: str) -> None:
            with open(logs / f"{name}.jsonl", "wb") as out, open(logs / f"{name}.err", "wb") as err:
                processes.append(subprocess.Popen(command, stdout=out, stderr=err,
                                                  env={**env, "FEDLEDGER_PRIVATE_KEY": key}))

        try:
            for i, (member, shard) in enumerate(zip(members, shards)):
                data = root / f"shard-{i}.npz"
                np.savez(data, x=shard.x, y=shard.y)
                start(f"node-{i}", [sys.executable, "-m", "benchmarks.services", "node-process", str(logs / f"train-{i}.jsonl"),
                                    "--data", str(data), *common], Web3.to_hex(member.key))
            start("aggregator", [str(FEDLEDGER), "aggregator", "run", *common], Web3.to_hex(admin.key))
            while not all(any(r["event"] == "started" for r in _events(logs / f"node-{i}.jsonl")) for i in range(parties)):
                time.sleep(0.5)
            coordinator = subprocess.run(
                [str(FEDLEDGER), "coordinator", "run", "--rounds", str(rounds + 1), "--round-seconds", "600",
                 "--min-updates", str(parties), "--config", str(config), *common],
                capture_output=True, env={**env, "FEDLEDGER_PRIVATE_KEY": Web3.to_hex(admin.key)}, timeout=3600, check=False,
            )
            if coordinator.returncode != 0:
                raise SystemExit(f"coordinator run failed: {coordinator.stderr.decode()[-2000:]}")
            (logs / "coordinator.jsonl").write_bytes(coordinator.stdout)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(60)

    opened = {r["round"]: _ts(r) for r in _events(logs / "coordinator.jsonl") if r["event"] == "opened"}
    finalized = {r["round"]: _ts(r) for r in _events(logs / "aggregator.jsonl") if r["event"] == "finalized"}
    nodes = [_events(logs / f"node-{i}.jsonl") for i in range(parties)]
    training = [(t["start"], t["end"]) for i in range(parties) for t in _events(logs / f"train-{i}.jsonl")]
    measured = []
    for n in sorted(opened)[1:]:  # round 1 is the warm-up
        lo, hi = opened[n], finalized[n]
        starts = [_ts(r) for events in nodes for r in events if r["event"] == "training" and r.get("round") == n]
        submitted = [_ts(r) for events in nodes for r in events if r["event"] == "submitted" and r.get("round") == n]
        measured.append(ServiceRound(
            round_s=hi - lo, training_s=union_seconds(training, lo, hi),
            reaction_s=min(starts) - lo, first_submission_s=min(submitted) - lo,
        ))
    first, last = sorted(opened)[1], sorted(opened)[-1]
    return measured, 60 * len(measured) / (finalized[last] - opened[first])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["node-process"]:
        node_process(argv[1], argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per setting (after one warm-up round)")
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args(argv)

    print("command: .venv/bin/python -m benchmarks.services " + " ".join(argv))
    print(f"MLP on digits, FedAvg, 1 epoch, embedded store, anvil; services poll every {args.poll_seconds} s; "
          f"mean of {args.rounds} round(s) after a warm-up\n")
    print("| parties | loop | round time (s) | rounds/min | training (s) | ledger overhead (s) | to first start (s) | to first submission (s) |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for parties in args.parties:
        in_process = run_rounds("anvil", parties=parties, rounds=args.rounds, epochs=1)
        round_s = mean(t.round_s for t in in_process)
        training_s = mean(t.training_s for t in in_process)
        print(f"| {parties} | in-process | {round_s:.2f} | {60 / round_s:.1f} | {training_s:.2f} | "
              f"{round_s - training_s:.2f} | – | – |", flush=True)
        root = Path(tempfile.mkdtemp(prefix="fedledger-services-"))
        try:
            rounds, per_minute = run_services(parties=parties, rounds=args.rounds, poll_s=args.poll_seconds, root=root)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        round_s = mean(r.round_s for r in rounds)
        training_s = mean(r.training_s for r in rounds)
        print(f"| {parties} | services | {round_s:.2f} | {per_minute:.1f} | {training_s:.2f} | "
              f"{round_s - training_s:.2f} | {mean(r.reaction_s for r in rounds):.2f} | "
              f"{mean(r.first_submission_s for r in rounds):.2f} |", flush=True)


if __name__ == "__main__":
    main()
