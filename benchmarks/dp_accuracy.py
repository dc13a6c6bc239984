"""Final accuracy of the digits federation against each party's ε, and DP-SGD throughput against the plain loop.

Accuracy: the demo's federation (4 parties, IID digits shards, the MLP, FedAvg, 5 rounds) run in
this process without chain or store (they record weights, they do not change them), once without DP
(the demo's training settings: 2 epochs, batch 32, lr 0.05) and once per target ε with DP-SGD: each
round every party takes ``--steps`` steps at sample rate ``--sample-rate``, clipping norm ``--clip``, and the noise multiplier that
``node.privacy.accountant.noise_multiplier_for`` finds so that a party's cumulative ε over all rounds
stays within the target at δ = ``--delta``. The DP defaults are those of ``fedledger demo --private``
(node/privacy/demo_settings.py), whose budget is the ε = 8 row. Accuracy is the final global model's on the held-out
test set (359 images); each row is the median (and range) over ``--repeats`` training seeds.

Throughput: one party's round, ``train_private`` against ``node.training.train`` on the same shard,
the plain loop at batch size sample_rate·n for sample_rate·steps epochs (the same expected samples
and steps); runs alternate, reversing their order every repeat; the ratio is the median of the
per-repeat ratios plain time / DP time (samples per second of DP-SGD as a share of the plain loop's).

    .venv/bin/python benchmarks/dp_accuracy.py [--repeats 3] [--threads 1] [--plot benchmarks/dp_accuracy.svg]
"""

from __future__ import annotations

import argparse
import hashlib
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.data import Dataset, load_digits_split
from node.models import build_model, load_arrays, state_arrays
from node.privacy import demo_settings as demo
from node.privacy.accountant import cumulative_epsilon, noise_multiplier_for
from node.privacy.dp_training import train_private
from node.round_config import DpSettings, TrainingSettings
from node.strategies import make_strategy
from node.strategies.base import Update
from node.training import TrainResult, evaluate, train

PLAIN = TrainingSettings()  # the demo's: 2 epochs, batch 32, lr 0.05
TrainParty = Callable[[torch.nn.Module, Dataset, int], TrainResult]


def federate(shards: list[Dataset], test: Dataset, *, rounds: int, model: str, seed: int, train_party: TrainParty) -> float:
    """Test accuracy of the global model after ``rounds`` FedAvg rounds; ``train_party(model, shard, seed)`` trains in place."""
    torch.manual_seed(seed)
    global_arrays = state_arrays(build_model(model))
    strategy = make_strategy("fedavg")
    for round_id in range(1, rounds + 1):
        updates = []
        for party, shard in enumerate(shards):
            local = build_model(model)
            load_arrays(local, global_arrays)
            digest = hashlib.sha256(f"{seed}:{round_id}:{party}".encode()).digest()
            result = train_party(local, shard, int.from_bytes(digest[:4], "big"))
            updates.append(Update(participant=f"0x{party:040x}", arrays=state_arrays(local), samples=result.samples))
        global_arrays = strategy.aggregate(updates, base=global_arrays).arrays
    final = build_model(model)
    load_arrays(final, global_arrays)
    return evaluate(final, test, device="cpu")["accuracy"]


def plain_party(model: torch.nn.Module, shard: Dataset, seed: int) -> TrainResult:
    return train(model, shard, epochs=PLAIN.epochs, batch_size=PLAIN.batch_size, lr=PLAIN.lr, seed=seed, device="cpu", progress=False)


def private_party(dp: DpSettings, lr: float) -> TrainParty:
    def run(model: torch.nn.Module, shard: Dataset, seed: int) -> TrainResult:
        return train_private(model, shard, dp=dp, lr=lr, seed=seed, device="cpu", progress=False)

    return run


def accuracy_table(args: argparse.Namespace, shards: list[Dataset], test: Dataset) -> list[tuple[str, float, float, list[float]]]:
    """Rows (label, ε target, noise multiplier, accuracies per seed); the no-DP row has ε = inf and σ = 0."""
    seeds = list(range(args.repeats))
    rows = [("no DP", float("inf"), 0.0, [federate(shards, test, rounds=args.rounds, model=args.model, seed=s, train_party=plain_party) for s in seeds])]
    for target in (float(e) for e in args.epsilons.split(",")):
        sigma = noise_multiplier_for(target, sample_rate=args.sample_rate, steps=args.steps, rounds=args.rounds, delta=args.delta)
        dp = DpSettings(noise_multiplier=sigma, max_grad_norm=args.clip, sample_rate=args.sample_rate, steps=args.steps)
        spent = cumulative_epsilon([dp] * args.rounds, args.delta)
        scores = [federate(shards, test, rounds=args.rounds, model=args.model, seed=s, train_party=private_party(dp, args.lr)) for s in seeds]
        rows.append((f"ε ≤ {target:g} (spent {spent:.3f})", target, sigma, scores))
    return rows


def throughput(args: argparse.Namespace, shard: Dataset, model: str) -> tuple[float, float, float]:
    """(plain samples/s, DP-SGD samples/s, median per-repeat ratio DP/plain in samples/s)."""
    dp = DpSettings(noise_multiplier=1.0, max_grad_norm=args.clip, sample_rate=args.sample_rate, steps=args.steps)
    batch = max(1, round(args.sample_rate * len(shard)))
    epochs = max(1, round(args.sample_rate * args.steps))
    samples = {"plain": epochs * len(shard), "dp": args.sample_rate * len(shard) * args.steps}  # DP: the expected count
    runs = {
        "plain": lambda: train(build_model(model), shard, epochs=epochs, batch_size=batch, lr=args.lr, seed=0, device="cpu", progress=False),
        "dp": lambda: train_private(build_model(model), shard, dp=dp, lr=args.lr, seed=0, device="cpu", progress=False),
    }
    times: dict[str, list[float]] = {key: [] for key in runs}
    for fn in runs.values():
        fn()  # warm-up
    for repeat in range(args.speed_repeats):
        for key in (list(runs) if repeat % 2 == 0 else list(reversed(runs))):
            start = time.perf_counter()
            runs[key]()
            times[key].append(time.perf_counter() - start)
    rate = {key: samples[key] / statistics.median(t) for key, t in times.items()}
    ratio = statistics.median((samples["dp"] / d) / (samples["plain"] / p) for p, d in zip(times["plain"], times["dp"], strict=True))
    return rate["plain"], rate["dp"], ratio


def plot(rows: list[tuple[str, float, float, list[float]]], path: Path, title: str, delta: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    private = [r for r in rows if np.isfinite(r[1])]
    xs = [r[1] for r in private]
    medians = [statistics.median(r[3]) for r in private]
    low = [m - min(r[3]) for m, r in zip(medians, private, strict=True)]
    high = [max(r[3]) - m for m, r in zip(medians, private, strict=True)]
    figure, axes = plt.subplots(figsize=(6, 3.6))
    axes.errorbar(xs, medians, yerr=[low, high], marker="o", capsize=3, label="DP-SGD (median, range over seeds)")
    axes.axhline(statistics.median(rows[0][3]), color="grey", linestyle="--", label="no DP")
    axes.set_xscale("log", base=2)
    axes.set_xticks(xs, [f"{x:g}" for x in xs])
    axes.set_xlabel(f"each party's cumulative ε (δ = {delta:g})")
    axes.set_ylabel("final test accuracy")
    axes.set_ylim(0, 1)
    axes.set_title(title, fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    plt.rcParams["svg.hashsalt"] = "fedledger"  # stable element ids: the same results give the same file
    figure.savefig(path, format="svg", metadata={"Date": None})
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--epsilons", default="1,2,4,8")
    # DP defaults: those of `fedledger demo --private` (node/privacy/demo_settings.py)
    parser.add_argument("--sample-rate", type=float, default=demo.SAMPLE_RATE)
    parser.add_argument("--steps", type=int, default=demo.STEPS)
    parser.add_argument("--clip", type=float, default=demo.MAX_GRAD_NORM)
    parser.add_argument("--lr", type=float, default=demo.LR)
    parser.add_argument("--delta", type=float, default=demo.DELTA)
    parser.add_argument("--repeats", type=int, default=3, help="training seeds per row")
    parser.add_argument("--speed-repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--plot", type=Path, default=None, help="write the accuracy plot here (SVG)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    shards, test = load_digits_split(parties=args.parties, seed=0)
    print(f"command: .venv/bin/python benchmarks/dp_accuracy.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; {args.parties} parties of "
          f"{min(map(len, shards))}-{max(map(len, shards))} samples, {args.rounds} rounds, {args.model}, FedAvg; "
          f"DP: sample rate {args.sample_rate:g}, {args.steps} steps a round, clip {args.clip:g}, lr {args.lr:g}, "
          f"δ {args.delta:g}; {args.repeats} seeds\n")
    rows = accuracy_table(args, shards, test)
    print("| privacy (each party, all rounds) | noise multiplier | final accuracy (median) | min | max |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, _, sigma, scores in rows:
        print(f"| {label} | {sigma:.3f} | {statistics.median(scores):.3f} | {min(scores):.3f} | {max(scores):.3f} |", flush=True)
    if args.plot is not None:
        plot(rows, args.plot, f"digits, {args.parties} parties, {args.rounds} rounds, {args.model}, "
                              f"q={args.sample_rate:g}, {args.steps} steps/round, C={args.clip:g}", args.delta)
        print(f"\nplot: {args.plot}")
    print("\n| model | plain loop samples/s | DP-SGD samples/s | DP-SGD / plain |")
    print("| --- | ---: | ---: | ---: |")
    for name in ("mlp", "cnn"):
        plain_rate, dp_rate, ratio = throughput(args, shards[0], name)
        print(f"| {name} | {plain_rate:,.0f} | {dp_rate:,.0f} | {ratio:.3f} |", flush=True)


if __name__ == "__main__":
    main()
