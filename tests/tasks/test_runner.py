"""The task process: no secret reaches it, and each way a task fails ends in one sentence and nothing returned."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors
from node.data import load_digits_split
from node.genesis import genesis_model_bytes
from node.models import build_model, state_arrays
from node.tasks import loop
from node.tasks.builtin import builtin_bundle
from node.tasks.bundle import manifest_of_folder, read_bundle, unpack_task
from node.tasks.errors import TaskError
from node.tasks.runner import TaskRunner, task_environment
from node.tasks.worker import HookFailure, load_into
from node.tasks.worker import state_arrays as state_arrays_of
from node.training import train as node_train
from tests.tasks.helpers import PROBE_MODEL, probe_arrays, write_task

SECRETS = {
    "FEDLEDGER_KEY_PASSWORD": "hunter2-password",
    "FEDLEDGER_PRIVATE_KEY": "0x" + "ab" * 32,
    "FEDLEDGER_WORKDIR": "/somewhere",
    "MY_API_TOKEN": "tok-123",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "wallet_mnemonic": "abandon abandon about",
    "Private_Thing": "private-value",
}
FORBIDDEN = ("FEDLEDGER_", "KEY", "PASSWORD", "SECRET", "TOKEN", "MNEMONIC", "PRIVATE")


def _runner(folder: Path, **options: object) -> TaskRunner:
    return TaskRunner(folder, manifest_of_folder(folder), device="cpu", **options)  # type: ignore[arg-type]


def _train(runner: TaskRunner, **overrides: object):  # noqa: ANN202
    arguments = {"data_path": None, "partition": None, "partitions": None, "seed": 0, **overrides}
    return runner.train(probe_arrays(), {}, **arguments)  # type: ignore[arg-type]


def test_the_environment_a_task_gets_holds_no_secret() -> None:
    env = task_environment(Path("/task"), {**SECRETS, "PATH": "/bin", "HARMLESS": "1", "PYTHONPATH": "/mine"})
    assert {name: env[name] for name in ("PATH", "HARMLESS")} == {"PATH": "/bin", "HARMLESS": "1"}
    assert env["PYTHONPATH"].split(os.pathsep)[:2] == ["/task", "/mine"]
    assert not [name for name in env if any(word in name.upper() for word in FORBIDDEN)]


def test_the_task_process_sees_no_secret_and_a_crashing_load_data_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {**SECRETS, "HARMLESS_SETTING": "kept"}.items():
        monkeypatch.setenv(name, value)
    folder = write_task(tmp_path / "spy", f"""
        import json, os, sys
        import torch

        def model():
            return {PROBE_MODEL}

        def load_data(path, *, partition, partitions, seed):
            with open(path, "w") as handle:
                json.dump({{"environ": dict(os.environ), "argv": sys.argv, "cwd": os.getcwd(), "seed": seed,
                           "shard": [partition, partitions]}}, handle)
            raise ValueError("no data in " + os.path.basename(path))
        """, name="spy")
    report = tmp_path / "seen.json"  # beside the task's folder, not in it
    with pytest.raises(TaskError) as caught:
        _train(_runner(folder), data_path=report, partition=1, partitions=3, seed=7, data_seed=0)
    assert str(caught.value) == (
        "task 'spy': load_data raised ValueError: no data in seen.json; check the data given to it (--data, "
        "--shard/--of) or fix the task's load_data "
        "(--verbose shows its traceback)."
    )
    seen = json.loads(report.read_text())
    leaked = [name for name in seen["environ"] if any(word in name.upper() for word in FORBIDDEN)]
    assert leaked == [], leaked
    everything = json.dumps([seen["environ"], seen["argv"]])
    assert not [value for value in SECRETS.values() if value in everything]
    assert seen["environ"]["HARMLESS_SETTING"] == "kept"
    assert seen["environ"]["PYTHONPATH"].split(os.pathsep)[0] == str(folder)
    assert Path(seen["cwd"]) == folder and (seen["seed"], seen["shard"]) == (0, [1, 3])


def test_a_model_that_raises_is_named_with_its_traceback_when_verbose(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", """
        def model():
            raise RuntimeError("no GPU model for you.\\nsecond line")

        def load_data(path, *, partition, partitions, seed):
            return None
        """)
    with pytest.raises(TaskError) as caught:
        _runner(folder, verbose=True).genesis(0)
    first, *rest = str(caught.value).splitlines()
    assert first == "task 'probe': model raised RuntimeError: no GPU model for you. second line; fix the task's model."
    assert rest[0] == "Traceback (most recent call last):" and any('task.py", line 3, in model' in line for line in rest)


def test_a_task_process_that_dies_is_named_with_its_exit_code_and_last_words(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", """
        import os, sys

        def model():
            print("loading the backbone", file=sys.stderr)
            print("out of memory, giving up", file=sys.stderr, flush=True)
            os._exit(3)
        """)
    with pytest.raises(TaskError) as caught:
        _runner(folder).genesis(0)
    assert str(caught.value) == (
        "task 'probe': its process exited with code 3 in model() without an answer "
        "(its last error line: out of memory, giving up); run it again with --verbose to see its output."
    )


@pytest.mark.slow
def test_a_task_that_hangs_is_stopped_at_its_limit_with_every_process_it_started(tmp_path: Path) -> None:
    # The limit covers the worker's start (importing torch): 8 s leaves room for that on a loaded machine
    # (with 3 s, a load of 11 on 2 cores stopped the worker before it reached model()).
    folder = write_task(tmp_path / "t", """
        import subprocess, time
        from pathlib import Path

        def model():
            child = subprocess.Popen(["sleep", "300"])
            Path.cwd().parent.joinpath("child.pid").write_text(str(child.pid))
            time.sleep(300)
        """)
    started = time.monotonic()
    with pytest.raises(TaskError) as caught:
        _runner(folder, timeout_s=8).genesis(0)
    assert 8 <= time.monotonic() - started < 40
    assert str(caught.value) == (
        "task 'probe' ran past its limit of 8 s in model() and was stopped; make it faster or raise the limit."
    )
    child = int((tmp_path / "child.pid").read_text())
    for _ in range(100):  # SIGKILL is delivered at once; its reaping by init may take a moment
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        state = Path(f"/proc/{child}/stat").read_text().split()[2] if Path(f"/proc/{child}/stat").exists() else "X"
        if state in ("Z", "X"):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the task's child {child} outlived the stopped task")


def test_trained_arrays_of_another_layout_are_refused_by_tensor(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", f"""
        import torch

        def model():
            return {PROBE_MODEL}

        def load_data(path, *, partition, partitions, seed):
            x = torch.randn(16, 4, generator=torch.Generator().manual_seed(seed))
            return (x, (x[:, 0] > 0).long()), None

        def train(model, train, *, settings, device):
            model[2] = torch.nn.Linear(8, 3)  # a layout change: the aggregator could not use this update
            return 16, {{"loss": 0.5}}
        """)
    with pytest.raises(TaskError) as caught:
        _train(_runner(folder))
    assert str(caught.value) == (
        "task 'probe': train returned tensor '2.bias' of shape (3,) where the base model has (2,); a task must keep "
        "its model's layout (tensor names, shapes, dtypes) from round to round."
    )


def test_base_and_frozen_tensors_must_cover_the_model_exactly_once() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    base = probe_arrays()
    load_into(model, base, {})
    assert np.array_equal(model[2].weight.detach().numpy(), base["2.weight"])
    frozen = {"0.weight": base.pop("0.weight")}
    load_into(model, base, frozen)
    cases = [
        (dict(base), {}, "model() has tensor '0.weight', which neither the base model nor the frozen tensors hold"),
        ({**base, **frozen}, frozen, "tensor '0.weight' is given both as trainable and as frozen"),
        ({**base, "extra": np.zeros(1, np.float32)}, frozen, "the base model holds tensor 'extra', which model() does not have"),
        ({**base, "2.bias": np.zeros(3, np.float32)}, frozen, "tensor '2.bias' has shape (3,) in the base model but (2,) in model()"),
    ]
    for trainable, fixed, expected in cases:
        with pytest.raises(HookFailure) as caught:
            load_into(model, trainable, fixed)
        assert caught.value.message.startswith(expected), caught.value.message


def test_the_builtin_mlp_task_gives_the_genesis_model_and_the_training_of_today(tmp_path: Path) -> None:
    data = builtin_bundle("mlp")
    manifest, _ = read_bundle(data)
    folder = unpack_task(data, cid_of_bytes(data), tmp_path / "cache")
    genesis = TaskRunner(folder, manifest, device="cpu").genesis(0)
    expected, _ = from_safetensors(genesis_model_bytes("mlp", seed=0))
    assert set(genesis.trainable) == set(expected) and genesis.frozen_arrays() == {}
    assert all(np.array_equal(genesis.arrays[name], expected[name]) and genesis.arrays[name].dtype == np.float32
               for name in expected)

    # fedledger's loop for tasks trains a built-in model bit for bit as node.training does today.
    shard = load_digits_split(parties=6, seed=0)[0][2]
    torch.manual_seed(0)
    today = build_model("mlp")
    result = node_train(today, shard, epochs=2, batch_size=32, lr=0.05, seed=11, device="cpu", progress=False)
    torch.manual_seed(0)
    tasked = build_model("mlp")
    samples, metrics = loop.train(tasked, (shard.x, shard.y), settings={"epochs": 2, "batch_size": 32, "lr": 0.05},
                                  device=torch.device("cpu"), seed=11)
    assert samples == result.samples
    assert metrics["accuracy"] == result.metrics["accuracy"] and metrics["loss"] == pytest.approx(result.metrics["loss"])
    assert all(np.array_equal(a, b) for a, b in zip(state_arrays(today).values(), state_arrays(tasked).values()))


def test_the_builtin_tasks_read_a_file_or_a_shard_of_the_bundled_digits_as_node_train_does(tmp_path: Path) -> None:
    from node.tasks.builtin.digits import load_digits_task_data

    shards, test = load_digits_split(parties=3, seed=5)
    (x, y), (vx, vy) = load_digits_task_data(None, partition=1, partitions=3, seed=5)
    assert np.array_equal(x, shards[1].x) and np.array_equal(y, shards[1].y) and np.array_equal(vx, test.x)
    np.savez(tmp_path / "own.npz", x=shards[2].x, y=shards[2].y)
    (x, y), _ = load_digits_task_data(str(tmp_path / "own.npz"), partition=None, partitions=None, seed=0)
    assert np.array_equal(x, shards[2].x) and np.array_equal(y, shards[2].y)
    with pytest.raises(ValueError, match=r"give the party's data: --data FILE .* or a shard of the bundled digits"):
        load_digits_task_data(None, partition=None, partitions=None, seed=0)


def test_state_travels_as_numpy_with_bfloat16_widened_and_a_dataset_trains_repeatably() -> None:
    half = torch.nn.Linear(3, 2).to(torch.float16)
    brain = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)).to(torch.bfloat16)
    assert {a.dtype for a in state_arrays_of(half).values()} == {np.dtype(np.float16)}
    widened = state_arrays_of(brain)
    assert widened["0.weight"].dtype == np.float32 and widened["1.num_batches_tracked"].dtype == np.int64
    assert np.array_equal(widened["0.weight"], brain[0].weight.detach().float().numpy())  # bf16 -> f32 is exact

    generator = torch.Generator().manual_seed(0)
    dataset = torch.utils.data.TensorDataset(torch.randn(50, 3, generator=generator), torch.randint(0, 2, (50,), generator=generator))
    runs = []
    for _ in range(2):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.2), torch.nn.Linear(4, 2))
        samples, metrics = loop.train(model, dataset, settings={"epochs": 2, "batch_size": 8, "lr": 0.1},
                                      device=torch.device("cpu"), seed=3)
        runs.append((samples, metrics, state_arrays_of(model)))
    assert runs[0][0] == 50 and set(runs[0][1]) == {"loss", "accuracy"} and runs[0][1] == runs[1][1]
    assert all(runs[0][2][name].tobytes() == runs[1][2][name].tobytes() for name in runs[0][2])
    assert set(loop.evaluate(model, dataset, device=torch.device("cpu"))) == {"loss", "accuracy"}


def test_an_xy_pair_trains_bit_for_bit_as_the_same_rows_through_a_dataloader_dropout_included() -> None:
    # Off CUDA the loop indexes a pair itself, not through a DataLoader; it still takes the DataLoader's draw from
    # torch's global generator, so dropout sees the same stream and the weights and metrics are the same bits.
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(75, 5, generator=generator), torch.randint(0, 3, (75,), generator=generator)
    runs = []
    for data in ((x, y), torch.utils.data.TensorDataset(x, y)):
        torch.manual_seed(4)
        model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 3))
        samples, metrics = loop.train(model, data, settings={"epochs": 3, "batch_size": 16, "lr": 0.1},
                                      device=torch.device("cpu"), seed=9)
        runs.append((samples, metrics, state_arrays_of(model), loop.evaluate(model, data, device=torch.device("cpu")),
                     torch.rand(2)))
    (samples, metrics, arrays, evaluated, after), other = runs
    assert (samples, metrics, evaluated) == other[:2] + other[3:4] and samples == 75
    assert all(arrays[name].tobytes() == other[2][name].tobytes() for name in arrays)
    assert torch.equal(after, other[4])  # the global generator is where it would be


def test_dataloader_workers_read_the_same_batches_and_compile_wraps_only_the_training_passes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    generator = torch.Generator().manual_seed(0)
    dataset = torch.utils.data.TensorDataset(torch.randn(40, 4, generator=generator), torch.randint(0, 2, (40,), generator=generator))
    compiled: list[torch.nn.Module] = []

    def spy_compile(model: torch.nn.Module) -> torch.nn.Module:  # torch.compile itself takes ~45 s here
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", spy_compile)
    runs = []
    for options in ({}, {"workers": 2}, {"compile_model": True}):
        torch.manual_seed(1)
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        result = loop.train(model, dataset, settings={"epochs": 2, "batch_size": 8, "lr": 0.1},
                            device=torch.device("cpu"), seed=3, **options)  # type: ignore[arg-type]
        runs.append((result, state_arrays_of(model)))
        assert len(compiled) == (1 if options.get("compile_model") else 0)
    assert compiled[0] is model  # the model itself is compiled, so its own parameters train
    (plain, weights), (with_workers, weights_2), _ = runs
    assert plain == with_workers and all(weights[name].tobytes() == weights_2[name].tobytes() for name in weights)
    folder = write_task(tmp_path / "t", "def model():\n    pass\n")
    with pytest.raises(TaskError, match="workers must be 0 or more"):
        TaskRunner(folder, manifest_of_folder(folder), workers=-1)
