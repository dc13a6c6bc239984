"""Training throughput of node.training.train against a plain PyTorch loop, same model, data and run.

The plain loop is the smallest correct loop: data on the device once, seeded randperm batches,
zero_grad / forward / cross-entropy / backward / SGD step, no logging, and (on CUDA) the same
autocast precision that train() picks. train() is timed whole (it also measures loss and accuracy
over its last epoch, and builds its progress bar when asked). Runs alternate, reversing their order
every repeat, so drift hits all; samples/s are medians, ratios are medians of the per-repeat ratios
plain time / train() time (neighbouring runs share the machine's load).

    .venv/bin/python benchmarks/training.py [--device cpu|cuda] [--repeats 15] [--epochs 3] [--threads N]
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.data import Dataset, load_digits_split
from node.models import build_model
from node.training import MOMENTUM, autocast_dtype, pick_device, train


def plain_loop(model, data: Dataset, *, epochs: int, batch_size: int, lr: float, seed: int, device: torch.device) -> None:
    model.to(device).train()
    x = torch.from_numpy(data.x).to(device)
    y = torch.from_numpy(data.y).to(device)
    n = len(data)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=MOMENTUM)
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
                loss = F.cross_entropy(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
    model.to("cpu")


def _variants(name: str, data: Dataset, *, device: torch.device, epochs: int, batch_size: int) -> dict[str, Callable[[], object]]:
    """The three timed runs on fresh models: the plain loop, train(), train() with its progress bar."""
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": 0.01, "seed": 0}
    return {
        "plain": lambda: plain_loop(build_model(name), data, device=device, **settings),
        "train": lambda: train(build_model(name), data, device=device, progress=False, **settings),
        "progress": lambda: train(build_model(name), data, device=device, progress=True, **settings),
    }


def _timed(fn: Callable[[], object]) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-sizes", default="32,128")
    parser.add_argument("--copies", type=int, default=2, help="tile the digits training set this many times")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    shards, _ = load_digits_split(parties=1, seed=0)
    data = Dataset(x=np.tile(shards[0].x, (args.copies, 1)), y=np.tile(shards[0].y, args.copies))
    print(f"command: .venv/bin/python benchmarks/training.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"device: {device} ({torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, threads {torch.get_num_threads()}, {len(data)} samples, "
          f"{args.epochs} epochs, {args.repeats} repeats (medians)\n")
    print("| model | batch | plain loop samples/s | train() samples/s | ratio | train(progress=True) samples/s | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in ("mlp", "cnn"):
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            runs = _variants(name, data, device=device, epochs=args.epochs, batch_size=batch_size)
            times: dict[str, list[float]] = {key: [] for key in runs}
            for fn in runs.values():
                fn()  # warm-up
            for repeat in range(args.repeats):
                keys = list(runs) if repeat % 2 == 0 else list(reversed(runs))  # no variant always runs first
                for key in keys:
                    times[key].append(_timed(runs[key]))
            rate = {key: len(data) * args.epochs / statistics.median(t) for key, t in times.items()}
            # Ratio per repeat (neighbouring runs share the machine's load), then the median of those.
            paired = {
                key: statistics.median(p / t for p, t in zip(times["plain"], times[key], strict=True))
                for key in ("train", "progress")
            }
            print(f"| {name} | {batch_size} | {rate['plain']:,.0f} | {rate['train']:,.0f} | "
                  f"{paired['train']:.3f} | {rate['progress']:,.0f} | {paired['progress']:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
