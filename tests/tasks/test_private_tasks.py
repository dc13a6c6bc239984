"""Private rounds of an own task: DP-SGD in fedledger's loop, in the task process, and the refusals before any data is read."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ledger.weights import to_safetensors
from node.round_config import DpSettings
from node.tasks import loop
from node.tasks.bundle import manifest_of_folder
from node.tasks.protocol import BASE, FROZEN, REQUEST
from node.tasks.runner import TaskRunner
from node.tasks.worker import HookFailure, Worker
from tests.tasks.helpers import PROBE_MODEL, ROWS_DATASET, probe_arrays, write_task

DP = {"noise_multiplier": 1.0, "max_grad_norm": 1.0, "sample_rate": 0.25, "steps": 6, "accountant": "rdp"}
SETTINGS = {"epochs": 1, "batch_size": 8, "lr": 0.1}
BATCH_NORM_MODEL = ("torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8, track_running_stats=False), "
                    "torch.nn.Linear(8, 2))")

# load_data proves it was (not) reached by writing a file named by the party's --data.
DATASET_TASK = f"""
    import pathlib
    import torch

    def model():
        return {PROBE_MODEL}

{ROWS_DATASET}
    def load_data(path, *, partition, partitions, seed):
        pathlib.Path(path).write_text("read")
        return Rows(40, seed), Rows(12, seed + 1)

    def evaluate(model, data, *, device):
        return {{"accuracy": 0.5, "leak": 42.0}}
"""


def _request(folder: Path, module: str, *, dp: dict | None = DP, data_path: Path) -> Path:
    """A request folder for an in-process Worker: train ``module`` of ``folder`` on the probe weights."""
    exchange = folder / "exchange"
    exchange.mkdir()
    (exchange / BASE).write_bytes(to_safetensors(probe_arrays()))
    (exchange / FROZEN).write_bytes(to_safetensors({}))
    request = {"operation": "train", "seed": 1, "data_seed": 0, "data_path": str(data_path), "partition": None,
               "partitions": None, "settings": SETTINGS, "dp": dp, "compile": False, "workers": 0,
               "module": module, "task": module, "device": "cpu"}
    (exchange / REQUEST).write_text(json.dumps(request), encoding="utf-8")
    return exchange


def _refusal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, source: str) -> tuple[HookFailure, Path]:
    folder = write_task(tmp_path / module, source, name=module, module=module)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, module, raising=False)
    marker = tmp_path / f"{module}.read"
    with pytest.raises(HookFailure) as caught:
        Worker(_request(folder, module, data_path=marker)).run()
    return caught.value, marker


def test_a_private_round_of_a_task_trains_with_dp_sgd_in_the_task_process_and_reports_nothing(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "rows", DATASET_TASK, name="rows")
    runner = TaskRunner(folder, manifest_of_folder(folder), device="cpu")
    marker = tmp_path / "rows.read"
    outcome = runner.train(probe_arrays(), {}, data_path=marker, partition=None, partitions=None, seed=0,
                           settings=SETTINGS, dp=DP)
    assert marker.read_text() == "read"  # the party's data was read by the task's own load_data
    assert outcome.samples == 40
    assert outcome.metrics == {}  # neither the task's evaluate nor any training figure: not covered by ε
    assert set(outcome.arrays) == set(probe_arrays())
    assert not all(np.array_equal(outcome.arrays[name], value) for name, value in probe_arrays().items())


def test_a_task_with_its_own_train_is_refused_a_private_round_before_its_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failure, marker = _refusal(tmp_path, monkeypatch, "own_train_task", DATASET_TASK + """
    def train(model, data, *, settings, device):
        return 1, {}
    """)
    assert (failure.hook, failure.type_name) == ("train", "PrivateOwnTrain")
    assert "defines its own train()" in failure.message and "open the round without DP" in failure.message
    assert not marker.exists()


def test_a_model_opacus_rejects_is_refused_with_opacus_own_words_before_its_data_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = DATASET_TASK.replace(PROBE_MODEL, BATCH_NORM_MODEL)
    folder = write_task(tmp_path / "bn_task", source, name="bn_task", module="bn_task")
    monkeypatch.syspath_prepend(str(folder))
    marker = tmp_path / "bn.read"
    from node.tasks.worker import state_arrays

    torch.manual_seed(0)
    arrays = state_arrays(eval(BATCH_NORM_MODEL))
    exchange = _request(folder, "bn_task", data_path=marker)
    (exchange / BASE).write_bytes(to_safetensors(arrays))
    with pytest.raises(HookFailure) as caught:
        Worker(exchange).run()
    assert (caught.value.hook, caught.value.type_name) == ("model", "NotPrivate"), caught.value.message
    assert caught.value.message.startswith("Opacus cannot train model() with DP-SGD: ")
    assert "BatchNorm" in caught.value.message and not marker.exists(), caught.value.message

    # The same task in a round without DP trains (the refusal is about privacy, not the model).
    exchange.rename(tmp_path / "used")
    Worker(_exchange_without_dp(folder, arrays, marker)).run()
    assert marker.read_text() == "read"


def _exchange_without_dp(folder: Path, arrays: dict[str, np.ndarray], marker: Path) -> Path:
    exchange = _request(folder, "bn_task", dp=None, data_path=marker)
    (exchange / BASE).write_bytes(to_safetensors(arrays))
    return exchange


def test_dp_sgd_trains_only_what_is_not_frozen_and_reads_a_dataset_or_a_pair_alike() -> None:
    torch.manual_seed(0)
    x = torch.randn(30, 4)
    y = (x[:, 0] > 0).long()
    results = []
    for data in ((x.numpy(), y.numpy()), torch.utils.data.TensorDataset(x, y)):
        torch.manual_seed(0)
        model = eval(PROBE_MODEL)
        model[0].weight.requires_grad_(False)
        frozen_before = model[0].weight.detach().clone()
        head_before = model[2].weight.detach().clone()
        samples = loop.train_private(model, data, dp=DP, settings=SETTINGS, device=torch.device("cpu"))
        assert samples == 30
        assert torch.equal(model[0].weight, frozen_before)  # the frozen backbone is untouched
        assert not torch.equal(model[2].weight, head_before)
        assert not hasattr(model[2].weight, "grad_sample") or model[2].weight.grad_sample is None
        results.append(model)
    with pytest.raises(loop.InvalidData, match="IterableDataset"):
        loop.train_private(eval(PROBE_MODEL), _Stream(), dp=DP, settings=SETTINGS, device=torch.device("cpu"))
    assert DpSettings(**DP).steps == 6


class _Stream(torch.utils.data.IterableDataset):
    def __iter__(self):  # noqa: ANN204
        yield torch.zeros(4), torch.tensor(0)
