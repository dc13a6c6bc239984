"""Own tasks (issue 23): the task loop, precision and compilation, the task process, the ledger's share, update bytes.

    .venv/bin/python benchmarks/tasks.py [--threads 1] [--repeats 31] [--cnn-repeats 3] [--cnn-rows 512]
        [--images 2000] [--parties 4] [--process-repeats 3] [--ledger-repeats 9] [--no-compile] [--compile-bf16]
        [--compare-loop FILE] [--profile] [--sections loop,precision,process,ledger,bytes]

The three example tasks, written as ``fedledger task new`` writes them into a temporary folder:
``tabular`` (the template: an MLP on scikit-learn's breast-cancer data), ``images`` (the CNN of 1.4 M
parameters, on ``--images`` synthetic 32x32x3 uint8 images with random labels, made here), and
``finetune`` (LoRA adapters on a frozen backbone that ``lora_task.make_backbone`` pretrains on half of
scikit-learn's digits). Each runs with the settings its pyproject.toml declares (epochs, batch size, lr).

Sections (every time is a median over alternating runs in this process; ratios are medians of the
per-repeat ratios, so neighbouring runs share the machine's load):

loop       ``node.tasks.loop.train`` against the plainest correct PyTorch loop on the same model, data,
           epochs, batch size and optimizer (SGD, momentum 0.9, over the parameters that train): tensors
           made once, one seeded ``randperm`` per epoch, slices of it index the batch, zero_grad / forward /
           cross-entropy / backward / step, nothing measured. Both start from the same seeded model and
           must end with the same weights bit for bit ("same weights"). The CNN trains on the first
           ``--cnn-rows`` rows of its training split for one epoch (its declared batch size and lr), the
           others on their whole training split for their declared epochs. ``--compare-loop FILE`` times
           another copy of loop.py too (e.g. ``git show 0a8ec64:node/tasks/loop.py > /tmp/loop_before.py``);
           ``--profile`` prints cProfile's view of ``loop.train`` on the two small examples.
precision  the CNN's plain loop (same rows) under ``torch.autocast("cpu", dtype=torch.bfloat16)`` against
           float32, and ``torch.compile``-d against eager (``--compile-bf16``: compiled under bf16 autocast
           too), each after a warm-up run whose time, compiling included, is reported (compiling = warm-up
           minus a steady run). Inductor compiles into a fresh cache folder, so that compile is cold; then a
           new interpreter compiles the float32 model again with that cache warm (first run minus second
           run): what every round's fresh task process would pay before its first step.
process    ``TaskRunner(folder, manifest, device="cpu").train(...)`` on party 0 of ``--parties`` (the whole
           round in the task process: start, imports, weights handed over as safetensors files, model,
           data, evaluation of the base model, training, the trained tensors back and checked) against the
           same steps in this process (``model()``, ``load_into``, ``load_data``, ``loop.evaluate``,
           ``loop.train``, ``state_arrays``), which must give the same tensors bit for bit. The overhead
           (process minus in-process) is split into: the interpreter start with fedledger's worker and the
           task module imported (a new interpreter in the task's folder and environment), the import of
           ``torch._dynamo`` that a process's first optimizer step makes (``torch._disable_dynamo`` imports
           it lazily), scikit-learn's import (the tabular and fine-tuning examples read its bundled data),
           the hand-over (safetensors encode, file write, read and decode of the base, frozen and trained
           tensors, timed here), and the rest (a cold process's first steps, the runner's waiting).
ledger     for the CNN's update (every tensor, float32): ``ledger.weights.to_safetensors`` with an update's
           metadata, ``EmbeddedStore.add_bytes`` (durable, pinned, new bytes every repeat) and a verifying
           ``get``, against one epoch of ``loop.train`` on party 0's training split, and against plain
           ``hashlib.sha256`` of the same bytes.
bytes      the fine-tuning example's update (the adapters, the tensors that train) against full
           fine-tuning of the same network (every tensor of the backbone) and against every tensor of
           the adapted model, as safetensors bytes, with the ledger's time for each.

Torch runs ``--threads`` CPU threads here and in every task process (OMP_NUM_THREADS), default 1.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import cProfile
import hashlib
import importlib.util
import io
import os
import platform
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

_CACHE = tempfile.mkdtemp(prefix="fedledger-bench-inductor-")
os.environ["TORCHINDUCTOR_CACHE_DIR"] = _CACHE  # before torch: the first compile is a cold one
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledger.ipfs.store import EmbeddedStore  # noqa: E402
from ledger.ipfs.unixfs import cid_of_bytes  # noqa: E402
from ledger.weights import from_safetensors, to_safetensors  # noqa: E402
from node.tasks import loop, worker  # noqa: E402
from node.tasks.bundle import pack_task, read_bundle, unpack_task  # noqa: E402
from node.tasks.runner import TaskRunner, task_environment  # noqa: E402
from node.tasks.spec import effective_settings, read_spec  # noqa: E402
from node.tasks.template import write_example, write_template  # noqa: E402

SEED = 0
CPU = torch.device("cpu")
SECTIONS = ("loop", "precision", "process", "ledger", "bytes")

Arrays = dict[str, np.ndarray]


@dataclass
class Example:
    """One example task: its folder, its module imported from there, its declared settings, its data file."""

    name: str
    folder: Path
    module_name: str
    module: ModuleType
    settings: dict[str, int | float]
    data_path: Path | None

    def load(self, *, partition: int | None = None, partitions: int | None = None) -> tuple[Any, Any]:
        path = None if self.data_path is None else str(self.data_path)
        return self.module.load_data(path, partition=partition, partitions=partitions, seed=SEED)

    def fresh(self) -> torch.nn.Module:
        torch.manual_seed(SEED)
        return self.module.model()


def import_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def make_examples(work: Path, images: int) -> dict[str, Example]:
    write_template(work / "tabular")
    write_example(work / "images", "images")
    write_example(work / "finetune", "finetune")
    rng = np.random.default_rng(SEED)
    data = work / "images.npz"
    np.savez(data, x=rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, images))
    examples = {}
    for name, path in (("tabular", None), ("images", data), ("finetune", None)):
        folder = work / name
        spec = read_spec(folder)
        module = import_file(f"bench_{name}_task", folder / f"{spec.module}.py")
        if name == "finetune":
            module.make_backbone(folder / "backbone.safetensors")
        settings = effective_settings(spec.settings, None, task=spec.name)
        examples[name] = Example(name, folder, spec.module, module, settings, path)
    return examples


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternate(runs: Mapping[str, Callable[[], object]], repeats: int, *, warm_up: bool = True) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` times, the order reversed every repeat (no run always goes first)."""
    if warm_up:
        for fn in runs.values():
            fn()
    times: dict[str, list[float]] = {key: [] for key in runs}
    for repeat in range(repeats):
        for key in list(runs) if repeat % 2 == 0 else list(reversed(runs)):
            times[key].append(timed(runs[key]))
    return times


def paired(times: Mapping[str, list[float]], base: str, key: str) -> float:
    """Median over repeats of base time / key time (> 1: ``key`` is faster)."""
    return statistics.median(b / k for b, k in zip(times[base], times[key], strict=True))


def med(values: list[float]) -> float:
    return statistics.median(values)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    first, second = a.state_dict(), b.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def trainable_of(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [parameter for parameter in model.parameters() if parameter.requires_grad]


def plain_loop(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int, lr: float,
               amp: torch.dtype | None = None, forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
    """The plainest correct loop: seeded randperm batches, zero_grad / forward / loss / backward / step."""
    forward = forward or model
    model.train()
    generator = torch.Generator().manual_seed(SEED)
    torch.manual_seed(SEED)
    optimizer = torch.optim.SGD(trainable_of(model), lr=lr, momentum=loop.MOMENTUM)
    n = int(y.shape[0])
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            with torch.autocast("cpu", dtype=amp) if amp is not None else contextlib.nullcontext():
                loss = F.cross_entropy(forward(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def training_split(example: Example, rows: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    train, _ = example.load()
    dataset = loop.as_dataset(train, what="the training data")
    x, y = dataset.x, dataset.y  # type: ignore[attr-defined]
    return (x[:rows], y[:rows]) if rows else (x, y)


# -- 1. the loop -------------------------------------------------------------------------------------
def section_loop(examples: dict[str, Example], args: argparse.Namespace, compare: ModuleType | None) -> None:
    print("\n### 1. `node.tasks.loop.train` against a plain PyTorch loop\n")
    before = " | before: samples/s | ratio" if compare else ""
    print(f"| example | samples × epochs | batch | plain loop samples/s | `loop.train` samples/s | ratio | same weights{before} |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |" + (" ---: | ---: |" if compare else ""))
    for name, example in examples.items():
        is_cnn = name == "images"
        x, y = training_split(example, args.cnn_rows if is_cnn else None)
        settings = dict(example.settings)
        if is_cnn:
            settings["epochs"] = args.cnn_epochs
        epochs, batch_size, lr = int(settings["epochs"]), int(settings["batch_size"]), float(settings["lr"])
        models: dict[str, torch.nn.Module] = {}

        def run(key: str, train: Callable[[torch.nn.Module], object]) -> Callable[[], object]:
            def go() -> None:
                model = example.fresh()
                models[key] = model
                train(model)
            return go

        runs = {
            "plain": run("plain", lambda m: plain_loop(m, x, y, epochs=epochs, batch_size=batch_size, lr=lr)),
            "loop": run("loop", lambda m: loop.train(m, (x, y), settings=settings, device=CPU, seed=SEED)),
        }
        if compare is not None:
            runs["before"] = run("before", lambda m: compare.train(m, (x, y), settings=settings, device=CPU, seed=SEED))
        repeats = args.cnn_repeats if is_cnn else args.repeats
        times = alternate(runs, repeats)
        same = all(same_weights(models["plain"], models[key]) for key in runs)
        samples = int(y.shape[0]) * epochs
        rate = {key: samples / med(t) for key, t in times.items()}
        extra = f" | {rate['before']:,.0f} | {paired(times, 'plain', 'before'):.3f}" if compare else ""
        print(f"| {name} | {int(y.shape[0]):,} × {epochs} | {batch_size} | {rate['plain']:,.0f} | {rate['loop']:,.0f} | "
              f"**{paired(times, 'plain', 'loop'):.3f}** | {'yes' if same else 'NO'}{extra} |", flush=True)
    if args.profile:
        for name in ("tabular", "finetune"):
            example = examples[name]
            x, y = training_split(example)
            profiler = cProfile.Profile()
            for _ in range(10):
                model = example.fresh()
                profiler.enable()
                loop.train(model, (x, y), settings=example.settings, device=CPU, seed=SEED)
                profiler.disable()
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(25)
            print(f"\ncProfile of 10 × loop.train, {name}:\n{text.getvalue()}")


# -- 2. precision and compilation --------------------------------------------------------------------
_FRESH_COMPILE = """
import sys, time, torch
from torch.nn import functional as F
sys.path.insert(0, {folder!r})
import {module}
torch.set_num_threads({threads})
torch.manual_seed(0)
model = {module}.model()
forward = torch.compile(model)
x, y = torch.rand({rows}, 3, 32, 32), torch.randint(0, 10, ({rows},))
optimizer = torch.optim.SGD(model.parameters(), lr={lr}, momentum=0.9)
def run():
    for start in range(0, {rows}, {batch}):
        loss = F.cross_entropy(forward(x[start : start + {batch}]), y[start : start + {batch}])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
times = []
for _ in range(2):
    begin = time.perf_counter()
    run()
    times.append(time.perf_counter() - begin)
print(times[0], times[1])
"""


def compile_in_fresh_process(example: Example, rows: int, batch_size: int, lr: float, threads: int) -> tuple[float, float]:
    """(first run, second run) seconds of the compiled CNN in a new interpreter, inductor's cache already warm."""
    code = _FRESH_COMPILE.format(folder=str(example.folder), module=example.module_name, threads=threads, rows=rows,
                                 batch=batch_size, lr=lr)
    answer = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=dict(os.environ))
    first, second = (float(value) for value in answer.stdout.split())
    return first, second


def section_precision(examples: dict[str, Example], args: argparse.Namespace) -> None:
    example = examples["images"]
    x, y = training_split(example, args.cnn_rows)
    epochs, batch_size, lr = args.cnn_epochs, int(example.settings["batch_size"]), float(example.settings["lr"])
    variants: dict[str, tuple[torch.dtype | None, bool]] = {"float32, eager": (None, False), "bf16 autocast, eager": (torch.bfloat16, False)}
    if not args.no_compile:
        variants["float32, compiled"] = (None, True)
    if args.compile_bf16:
        variants["bf16 autocast, compiled"] = (torch.bfloat16, True)
    runs: dict[str, Callable[[], object]] = {}
    warm: dict[str, float] = {}
    for key, (amp, compiled) in variants.items():
        model = example.fresh()
        forward = torch.compile(model) if compiled else model

        def go(model: torch.nn.Module = model, forward: Any = forward, amp: torch.dtype | None = amp) -> None:
            plain_loop(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, amp=amp, forward=forward)

        warm[key] = timed(go)  # the warm-up: compiling included
        runs[key] = go
    times = alternate(runs, args.cnn_repeats, warm_up=False)
    fresh = None
    if not args.no_compile and epochs == 1:
        fresh = compile_in_fresh_process(example, int(y.shape[0]), batch_size, lr, args.threads)
    samples = int(y.shape[0]) * epochs
    print(f"\n### 2. The images CNN: bf16 autocast and `torch.compile` (plain loop, {int(y.shape[0]):,} samples × {epochs}, "
          f"batch {batch_size})\n")
    print("| variant | samples/s | × float32 eager | warm-up run (s) | of which compiling (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, (_, compiled) in variants.items():
        compiling = f"{warm[key] - med(times[key]):.1f}" if compiled else "—"
        print(f"| {key} | {samples / med(times[key]):,.0f} | **{paired(times, 'float32, eager', key):.3f}** | "
              f"{warm[key]:.1f} | {compiling} |")
    if fresh is not None:
        print(f"| float32, compiled in a new process, inductor's cache warm | {samples / fresh[1]:,.0f} | | {fresh[0]:.1f} | "
              f"{fresh[0] - fresh[1]:.1f} |")
    print(f"\n(one float32 eager run: {med(times['float32, eager']):.2f} s)", flush=True)


# -- 3. the task process -----------------------------------------------------------------------------
def in_process_round(module: ModuleType, base: Arrays, frozen: Arrays, *, data_path: Path | None, partition: int,
                     partitions: int, settings: Mapping[str, Any]) -> Arrays:
    """What the task process does for a round (node.tasks.worker.Worker.train), without the process or the files."""
    torch.manual_seed(SEED)
    model = module.model()
    worker.load_into(model, base, frozen)
    train, validation = module.load_data(None if data_path is None else str(data_path), partition=partition,
                                         partitions=partitions, seed=SEED)
    loss = getattr(module, "loss", None)
    loop.evaluate(model, validation, device=CPU, loss=loss)
    torch.manual_seed(SEED)
    loop.train(model, train, settings=settings, device=CPU, seed=SEED, loss=loss)
    model.to("cpu")
    return {name: value for name, value in worker.state_arrays(model).items() if name not in frozen}


def hand_over(base: Arrays, frozen: Arrays, trained: Arrays, scratch: Path) -> float:
    """Seconds to encode, write, read and decode what crosses between node and task process, both ways."""
    start = time.perf_counter()
    for name, arrays in (("base", base), ("frozen", frozen), ("output", trained)):
        path = scratch / f"{name}.safetensors"
        path.write_bytes(to_safetensors(arrays))
        from_safetensors(path.read_bytes(), source=name)
    return time.perf_counter() - start


_IMPORTS = """
import time
begin = time.perf_counter()
import node.tasks.worker, {module}
imported = time.perf_counter()
import torch._dynamo  # what a process's first optimizer step imports (torch._disable_dynamo's lazy import)
dynamo = time.perf_counter()
{lazy}
print(dynamo - imported, time.perf_counter() - dynamo)
"""


def section_process(examples: dict[str, Example], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    bare = [timed(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True)) for _ in range(args.process_repeats)]
    rows, kept = [], {}
    for name, example in examples.items():
        bundle = pack_task(example.folder)
        manifest, _ = read_bundle(bundle)
        folder = unpack_task(bundle, str(cid_of_bytes(bundle)), work / "cache")
        runner = TaskRunner(folder, manifest, device="cpu")
        genesis_s = time.perf_counter()
        genesis = runner.genesis(SEED)
        genesis_s = time.perf_counter() - genesis_s
        base, frozen = genesis.trainable_arrays(), genesis.frozen_arrays()
        module = import_file(f"bench_{name}_unpacked", folder / f"{example.module_name}.py")
        settings = effective_settings(manifest.settings, None, task=manifest.name)
        where = {"data_path": example.data_path, "partition": 0, "partitions": args.parties}
        outcome: dict[str, Any] = {}

        def task_process() -> None:
            outcome["process"] = runner.train(base, frozen, seed=SEED, **where)

        def here() -> None:
            outcome["here"] = in_process_round(module, base, frozen, settings=settings, **where)

        here()  # the in-process round's one-time costs (imports its hooks make, first steps) are paid once
        times = alternate({"process": task_process, "here": here}, args.process_repeats, warm_up=False)
        trained = outcome["process"].arrays
        same = trained.keys() == outcome["here"].keys() and all(np.array_equal(trained[k], outcome["here"][k]) for k in trained)
        env = task_environment(folder)
        lazy = "import sklearn.datasets" if example.data_path is None else ""  # the data the examples bundle
        code = _IMPORTS.format(module=example.module_name, lazy=lazy)
        starts: list[tuple[float, float, float]] = []
        for _ in range(args.process_repeats):
            begin = time.perf_counter()
            answer = subprocess.run([sys.executable, "-c", code], cwd=folder, env=env, check=True, capture_output=True, text=True)
            wall = time.perf_counter() - begin
            dynamo, sklearn = (float(value) for value in answer.stdout.split())
            starts.append((wall - dynamo - sklearn, dynamo, sklearn))
        start, dynamo, sklearn = (med([row[i] for row in starts]) for i in range(3))
        scratch = Path(tempfile.mkdtemp(dir=work))
        handed = med([hand_over(base, frozen, trained, scratch) for _ in range(max(5, args.process_repeats))])
        process, inside = med(times["process"]), med(times["here"])
        overhead = process - inside
        rows.append((name, outcome["process"].samples, settings["epochs"], process, inside, overhead, start, dynamo,
                     sklearn if lazy else None, handed, overhead - start - dynamo - sklearn - handed, overhead / process,
                     same, genesis_s))
        kept[name] = (base, frozen)
    print(f"\n### 3. The task process per round: `TaskRunner.train` against the same round in-process (party 0 of "
          f"{args.parties})\n")
    print(f"Bare interpreter start (`python -c pass`): {med(bare):.2f} s.\n")
    print("| example | samples × epochs | task process (s) | in-process (s) | overhead (s) | interpreter + imports (s) | "
          "`torch._dynamo` import (s) | scikit-learn import (s) | hand-over | rest (s) | overhead share of the round | "
          "same tensors | genesis call (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, samples, epochs, process, inside, overhead, start, dynamo, sklearn, handed, rest, share, same, genesis_s in rows:
        learn = "—" if sklearn is None else f"{sklearn:.2f}"
        print(f"| {name} | {samples:,} × {epochs} | {process:.2f} | {inside:.2f} | {overhead:.2f} | {start:.2f} | {dynamo:.2f} | "
              f"{learn} | {handed * 1e3:.1f} ms | {rest:.2f} | **{share:.0%}** | {'yes' if same else 'NO'} | {genesis_s:.2f} |",
              flush=True)
    return kept


# -- 4. the ledger's share ---------------------------------------------------------------------------
def update_metadata(samples: int) -> dict[str, Any]:
    return {"model": "task:images-cnn", "participant": "0x" + "ab" * 20, "round": 7, "base_cid": "bafy" + "a" * 55,
            "samples": samples, "metrics": {"loss": 2.3, "accuracy": 0.1}, "task": "bafy" + "b" * 55}


def ledger_steps(arrays_list: list[Arrays], store: EmbeddedStore, samples: int) -> dict[str, list[float]]:
    """Per update: serialize, add (durable, pinned), verifying get, and sha256 of the same bytes."""
    times: dict[str, list[float]] = {"serialize": [], "add": [], "get": [], "sha256": [], "bytes": []}
    for arrays in arrays_list:
        start = time.perf_counter()
        blob = to_safetensors(arrays, metadata=update_metadata(samples))
        times["serialize"].append(time.perf_counter() - start)
        start = time.perf_counter()
        cid = store.add_bytes(blob, pin=True)
        times["add"].append(time.perf_counter() - start)
        start = time.perf_counter()
        back = store.get(str(cid))
        times["get"].append(time.perf_counter() - start)
        start = time.perf_counter()
        hashlib.sha256(blob).digest()
        times["sha256"].append(time.perf_counter() - start)
        times["bytes"].append(float(len(blob)))
        assert back == blob
    return times


def random_like(arrays: Arrays, rng: np.random.Generator) -> Arrays:
    return {name: rng.standard_normal(value.shape).astype(value.dtype) for name, value in arrays.items()}


def section_ledger(examples: dict[str, Example], args: argparse.Namespace, work: Path) -> None:
    example = examples["images"]
    arrays = worker.state_arrays(example.fresh())
    rng = np.random.default_rng(1)
    store = EmbeddedStore(work / "store")
    updates = [random_like(arrays, rng) for _ in range(args.ledger_repeats + 1)]
    ledger_steps(updates[:1], store, 1)  # warm-up: the store's index and first pack
    train, _ = example.load(partition=0, partitions=args.parties)
    settings = {**example.settings, "epochs": 1}
    epoch = alternate({"epoch": lambda: loop.train(example.fresh(), train, settings=settings, device=CPU, seed=SEED)},
                      args.cnn_repeats)["epoch"]
    rows = loop.size_of(train) or 0
    times = ledger_steps(updates[1:], store, rows)
    size = times.pop("bytes")[0]
    epoch_s = med(epoch)
    sha = med(times["sha256"])
    total = [s + a + g for s, a, g in zip(times["serialize"], times["add"], times["get"], strict=True)]
    print(f"\n### 4. The ledger's work per round on the images CNN's update ({size / 1e6:.2f} MB, "
          f"{sum(a.size for a in arrays.values()):,} float32 values), against one epoch of party 0's {rows:,} training rows "
          f"({epoch_s:.2f} s, batch {settings['batch_size']})\n")
    print("| step | ms | MB/s | × sha256 | share of one epoch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for key, label in (("sha256", "plain `hashlib.sha256` (baseline)"), ("serialize", "`to_safetensors` (with metadata)"),
                       ("add", "`EmbeddedStore.add_bytes` (durable, pinned)"), ("get", "verifying `get`")):
        t = med(times[key])
        print(f"| {label} | {t * 1e3:.1f} | {size / t / 1e6:,.0f} | {sha / t:.2f} | {t / epoch_s:.2%} |")
    add_get = [a + g for a, g in zip(times["add"], times["get"], strict=True)]
    print(f"| add + get | {med(add_get) * 1e3:.1f} | {size / med(add_get) / 1e6:,.0f} | **{sha / med(add_get):.2f}** | "
          f"{med(add_get) / epoch_s:.2%} |")
    print(f"| **serialize + add + get** | {med(total) * 1e3:.1f} | {size / med(total) / 1e6:,.0f} | {sha / med(total):.2f} | "
          f"**{med(total) / epoch_s:.2%}** |", flush=True)


# -- 5. update bytes ---------------------------------------------------------------------------------
def section_bytes(examples: dict[str, Example], args: argparse.Namespace, work: Path) -> None:
    example = examples["finetune"]
    model = example.fresh()
    state = worker.state_arrays(model)
    frozen = worker.frozen_names(model)
    adapters = {name: value for name, value in state.items() if name not in frozen}
    backbone = {name.replace("layers.", "layer").replace(".base", ""): value for name, value in state.items() if name in frozen}
    cnn = worker.state_arrays(examples["images"].fresh())
    store = EmbeddedStore(work / "store-bytes")
    rng = np.random.default_rng(2)
    rows = []
    for label, arrays in (("fine-tuning with LoRA: the adapters (what travels)", adapters),
                          ("full fine-tuning of the same network: every backbone tensor", backbone),
                          ("every tensor of the adapted model (backbone + adapters)", {**state}),
                          ("for scale: the images CNN, every tensor", cnn)):
        bare = len(to_safetensors(arrays))
        times = ledger_steps([random_like(arrays, rng) for _ in range(args.ledger_repeats)], store, 1)
        ledger_ms = med([s + a + g for s, a, g in zip(times["serialize"], times["add"], times["get"], strict=True)]) * 1e3
        rows.append((label, len(arrays), sum(v.size for v in arrays.values()), bare, ledger_ms))
    print("\n### 5. Bytes per update: fine-tuning with LoRA against full fine-tuning\n")
    print("| update | tensors | values | safetensors bytes | × the adapters' bytes | serialize + add + get (ms) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for label, count, values, size, ledger_ms in rows:
        print(f"| {label} | {count} | {values:,} | {size:,} | {size / rows[0][3]:.1f} | {ledger_ms:.1f} |")
    print(f"\n(An update's metadata adds {len(to_safetensors(adapters, metadata=update_metadata(1))) - rows[0][3]} bytes to "
          "each row.)", flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, here and in task processes (default 1)")
    parser.add_argument("--repeats", type=int, default=31, help="repeats for the small examples' loops")
    parser.add_argument("--cnn-repeats", type=int, default=3, help="repeats for the CNN's timings")
    parser.add_argument("--cnn-rows", type=int, default=512, help="CNN training rows for the loop and precision timings")
    parser.add_argument("--cnn-epochs", type=int, default=1, help="CNN epochs for the loop and precision timings")
    parser.add_argument("--images", type=int, default=2000, help="synthetic images made for the CNN")
    parser.add_argument("--parties", type=int, default=4, help="the data split between this many parties (process, ledger)")
    parser.add_argument("--process-repeats", type=int, default=3)
    parser.add_argument("--ledger-repeats", type=int, default=9)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it compiles for a minute or more)")
    parser.add_argument("--compile-bf16", action="store_true", help="time the compiled model under bf16 autocast too (another compile)")
    parser.add_argument("--compare-loop", type=Path, default=None, help="another copy of node/tasks/loop.py to time too")
    parser.add_argument("--profile", action="store_true", help="print cProfile's view of loop.train on the small examples")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"which to run, of {','.join(SECTIONS)}")
    args = parser.parse_args()
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {','.join(SECTIONS)}")
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)  # the task processes too
    compare = import_file("bench_compare_loop", args.compare_loop.resolve()) if args.compare_loop else None
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    print(f"command: .venv/bin/python benchmarks/tasks.py {shlex.join(sys.argv[1:])}".rstrip())
    print(f"machine: {cpu}, {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}; load average at start {load_average()}")
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="fedledger-bench-tasks-"))
    try:
        examples = make_examples(work, args.images)
        for name, example in examples.items():
            print(f"  {name}: settings {example.settings}, "
                  f"{sum(p.numel() for p in example.fresh().parameters()):,} parameters", flush=True)
        if "loop" in sections:
            section_loop(examples, args, compare)
        if "precision" in sections:
            section_precision(examples, args)
        if "process" in sections:
            section_process(examples, args, work)
        if "ledger" in sections:
            section_ledger(examples, args, work)
        if "bytes" in sections:
            section_bytes(examples, args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end {load_average()}; whole run {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
