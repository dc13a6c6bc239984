"""Aggregation throughput (MB of updates per second) of the strategies against plain numpy sums.

Throughput counts the float32 bytes of all input updates. ``aggregate()`` is timed whole: it
screens every update (layout, dtype, finite values), orders them, accumulates in float64 and casts
back. The baselines sum the same arrays with numpy and nothing else: in place in float32, and into
a float64 accumulator (what the determinism rule asks for). FedAvg's parts are also timed on their
own: its screening (without the finite-values pass, which it does on its result instead), its
weighting pass (``weighted_average``), and, for comparison, screening in full. The repeats go
round-robin over all rows, so a burst of load from another process slows every row alike; the
table gives medians.

    .venv/bin/python benchmarks/aggregation.py [--updates 16] [--params 2000000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.strategies import Update, make_strategy
from node.strategies.base import screen
from node.strategies.fedavg import weighted_average


FLOAT32 = "numpy sum, float32 in place (baseline)"
FLOAT64 = "numpy sum, float64 accumulator (baseline)"


def make_updates(count: int, params: int, *, seed: int = 0) -> tuple[list[Update], dict[str, np.ndarray]]:
    """``count`` updates of a four-tensor layout holding about ``params`` float32 values."""
    side = int((params / 2) ** 0.5)
    shapes = {"layer1.weight": (side, side), "layer1.bias": (side,), "layer2.weight": (side, side), "layer2.bias": (side,)}
    rng = np.random.default_rng(seed)
    base = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in shapes.items()}
    updates = [
        Update(f"0x{i:040x}", {n: a + rng.standard_normal(a.shape, dtype=np.float32) * 0.01 for n, a in base.items()}, 100 + i)
        for i in range(count)
    ]
    return updates, base


def numpy_sum_float32(updates: list[Update]) -> None:
    for name in updates[0].arrays:
        total = updates[0].arrays[name].copy()
        for update in updates[1:]:
            total += update.arrays[name]


def numpy_sum_float64(updates: list[Update]) -> None:
    for name in updates[0].arrays:
        total = np.zeros(updates[0].arrays[name].shape, dtype=np.float64)
        for update in updates:
            total += update.arrays[name]


def _median_seconds(runs: list[tuple[str, Callable[[], object]]], repeats: int) -> dict[str, float]:
    for _, fn in runs:
        fn()  # warm-up
    times: dict[str, list[float]] = {label: [] for label, _ in runs}
    for _ in range(repeats):
        for label, fn in runs:
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return {label: statistics.median(values) for label, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=16)
    parser.add_argument("--params", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    updates, base = make_updates(args.updates, args.params)
    values = sum(a.size for a in updates[0].arrays.values())
    megabytes = args.updates * values * 4 / 1e6
    print(f"command: .venv/bin/python benchmarks/aggregation.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"numpy {np.__version__}; {args.updates} updates x {values:,} float32 parameters = {megabytes:.1f} MB per "
          f"aggregation; {args.repeats} repeats round-robin (medians)\n")
    samples = [u.samples for u in updates]
    runs: list[tuple[str, Callable[[], object]]] = [
        (FLOAT32, lambda: numpy_sum_float32(updates)),
        (FLOAT64, lambda: numpy_sum_float64(updates)),
        ("FedAvg", lambda: make_strategy("fedavg").aggregate(updates, base=base)),
        ("… its screening (`screen(finite=False)`)", lambda: screen(updates, base=base, finite=False)),
        ("… its weighting pass (`weighted_average`)", lambda: weighted_average([u.arrays for u in updates], samples)),
        ("screening in full (`screen`, as the other strategies do)", lambda: screen(updates, base=base)),
        ("Median", lambda: make_strategy("median").aggregate(updates, base=base)),
        ("TrimmedMean(beta=0.2)", lambda: make_strategy("trimmed-mean", beta=0.2).aggregate(updates, base=base)),
        ("Krum(f=1, m=3)", lambda: make_strategy("krum", f=1, m=3).aggregate(updates, base=base)),
        ("FedAvg + clip_norm", lambda: make_strategy("fedavg", clip_norm=1.0).aggregate(updates, base=base)),
    ]
    seconds = _median_seconds(runs, args.repeats)
    print("| aggregation | seconds | MB/s | × numpy float32 sum | × numpy float64 sum |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, _ in runs:
        print(
            f"| {label} | {seconds[label]:.4f} | {megabytes / seconds[label]:,.0f} | "
            f"{seconds[FLOAT32] / seconds[label]:.2f} | {seconds[FLOAT64] / seconds[label]:.2f} |"
        )


if __name__ == "__main__":
    main()
