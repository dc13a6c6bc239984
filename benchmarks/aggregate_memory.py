"""Peak memory of aggregation: streamed from spooled files against holding every update in memory.

A store (the embedded one, in a temporary directory) gets a base model and ``--updates`` updates of
a two-tensor float32 model of about ``--params`` parameters. Each measurement is one child process:
it imports everything, aggregates three updates (so pools, arenas and caches exist), notes its
resident memory, aggregates the round, and reports its peak resident memory (``ru_maxrss``) and
the growth over the noted value. Methods:

- ``streamed``: ``node.aggregator.aggregate_updates``, what ``fedledger aggregate`` and ``audit
  verify`` run: every blob fetched and checked one at a time, spooled to a file, and the strategy
  reading the files a slice at a time;
- ``in-memory``: every update parsed into arrays first (``from_safetensors``), then the same
  strategy (today's method before issue 17); the CIDs of the two must be equal.

Krum measures all pairwise distances between whole updates (quadratic in their number), so it is
measured on the first ``--krum-updates`` updates.

    .venv/bin/python benchmarks/aggregate_memory.py [--updates 1000] [--params 1000000] [--krum-updates 100]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ledger.chain.federation import RoundInfo, Submission  # noqa: E402
from ledger.ipfs.store import EmbeddedStore  # noqa: E402
from ledger.types import Address, Cid, RoundId  # noqa: E402
from ledger.ipfs.unixfs import cid_of_bytes  # noqa: E402
from ledger.weights import from_safetensors, to_safetensors  # noqa: E402
from node import aggregator  # noqa: E402
from node.round_config import RoundConfig  # noqa: E402
from node.strategies import Update, strategy_from_params  # noqa: E402

STRATEGIES = {
    "fedavg": {"name": "fedavg"},
    "median": {"name": "median"},
    "trimmed-mean": {"name": "trimmed-mean", "beta": 0.2},
    "fedavg + clip_norm": {"name": "fedavg", "clip_norm": 1.0},
    "krum": {"name": "krum", "f": 1, "m": 3},
}
MB = 1e6


def build_round(directory: Path, *, updates: int, params: int) -> dict:
    """The base model and ``updates`` updates (each naming its party and round 1) in an embedded store."""
    width = max(1, round(params**0.5))
    layout = {"layer.weight": ((width, width), "float32"), "layer.bias": ((width,), "float32")}
    store = EmbeddedStore(directory / "store")
    rng = np.random.default_rng(0)
    base = {name: rng.standard_normal(shape, dtype=np.float32) for name, (shape, _) in layout.items()}
    manifest = {"layout": layout, "base_cid": store.add_bytes(to_safetensors(base, metadata={"model": "mlp"})),
                "updates": [], "bytes": 0}
    for index in range(updates):
        party = f"0x{index:040x}"
        arrays = {name: value + rng.standard_normal(value.shape, dtype=np.float32) * 0.01 for name, value in base.items()}
        blob = to_safetensors(arrays, metadata={"model": "mlp", "participant": party, "round": 1})
        manifest["updates"].append((party, store.add_bytes(blob), 1 + index % 97))
        manifest["bytes"] += len(blob)
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def _rss() -> int:
    return int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) * 1024


def child(directory: Path, strategy: str, method: str, count: int) -> None:
    """Aggregate the first ``count`` updates by ``method``; print peak and growth of resident memory."""
    manifest = json.loads((directory / "manifest.json").read_text())
    layout = {name: (tuple(shape), dtype) for name, (shape, dtype) in manifest["layout"].items()}
    aggregator.model_layout = lambda name: layout  # the round's model is this layout, not a registered model
    store = EmbeddedStore(directory / "store")
    base_cid = Cid(manifest["base_cid"])
    params = STRATEGIES[strategy]
    config = RoundConfig(model="mlp", strategy=params)
    submissions = [Submission(RoundId(1), Address(p), Cid(c), s, b"\0" * 32, 2, "0x") for p, c, s in manifest["updates"]]

    def streamed(chosen: list[Submission]) -> str:
        info = RoundInfo(RoundId(1), base_cid, 0, 1, b"\0" * 32, "open", len(chosen), None, None, 1)
        _, receipt = aggregator.aggregate_updates(
            store=store, info=info, config=config, strategy=strategy_from_params(params), submissions=chosen
        )
        return receipt.global_cid

    def in_memory(chosen: list[Submission]) -> str:
        base, _ = from_safetensors(store.get(base_cid), layout=layout)
        updates = [Update(s.participant, from_safetensors(store.get(s.cid), layout=layout)[0], s.samples) for s in chosen]
        result = strategy_from_params(params).aggregate(updates, base=base)
        return cid_of_bytes(aggregator.global_model_bytes(result.arrays, model="mlp", round_id=1, base_cid=base_cid))

    run = {"streamed": streamed, "in-memory": in_memory}[method]
    run(submissions[:3])
    before = _rss()
    start = time.perf_counter()
    cid = run(submissions[:count])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"cid": cid, "peak": peak, "before": before, "seconds": seconds}))


def measure(directory: Path, strategy: str, method: str, count: int) -> dict:
    env = {**os.environ, "TMPDIR": str(directory), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(directory), strategy, method, str(count)],
        env=env, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {method} {strategy} child failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(Path(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--params", type=int, default=1_000_000)
    parser.add_argument("--krum-updates", type=int, default=100)
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help="comma-separated names from: " + ", ".join(STRATEGIES))
    parser.add_argument("--in-memory", default="fedavg,krum", help="strategies also measured all in memory")
    args = parser.parse_args()
    print(f"command: .venv/bin/python benchmarks/aggregate_memory.py {shlex.join(sys.argv[1:])}".rstrip())
    with tempfile.TemporaryDirectory(prefix="fedledger-aggregate-memory-") as temporary:
        directory = Path(temporary)
        started = time.perf_counter()
        manifest = build_round(directory, updates=args.updates, params=args.params)
        values = sum(np.prod(shape) for shape, _ in manifest["layout"].values())
        print(f"numpy {np.__version__}; {args.updates} updates x {values:,} float32 parameters; store built in "
              f"{time.perf_counter() - started:.0f} s\n")
        print("| strategy | method | updates | all updates (MB) | peak RSS (MB) | growth (MB) | growth / all updates | seconds |")
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for strategy in args.strategies.split(","):
            count = min(args.updates, args.krum_updates) if strategy == "krum" else args.updates
            size = manifest["bytes"] * count // len(manifest["updates"])  # every update is the same size
            cids = {}
            methods = ["streamed"] + (["in-memory"] if strategy in args.in_memory.split(",") else [])
            for method in methods:
                got = measure(directory, strategy, method, count)
                cids[method] = got["cid"]
                growth = got["peak"] - got["before"]
                print(f"| {strategy} | {method} | {count:,} | {size / MB:,.0f} | {got['peak'] / MB:,.0f} | "
                      f"{growth / MB:,.0f} | {growth / size:.3f} | {got['seconds']:.1f} |", flush=True)
            if len(set(cids.values())) != 1:
                raise SystemExit(f"{strategy}: the streamed and in-memory global models differ: {cids}")


if __name__ == "__main__":
    main()
