"""The example tasks shipped in node/tasks/examples run in the task process: genesis, then a party's training.

The images CNN reads a party's ``.npz`` (made here); the fine-tuning example freezes its backbone, so
only the adapters train and travel, and the genesis model computes exactly what the backbone does.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from ledger.ipfs.unixfs import cid_of_bytes
from node.tasks.bundle import pack_task, read_bundle, unpack_task
from node.tasks.errors import TaskError
from node.tasks.examples import EXAMPLES
from node.tasks.runner import TaskRunner
from node.tasks.template import write_example

pytestmark = pytest.mark.slow


def _runner(folder: Path, cache: Path) -> TaskRunner:
    data = pack_task(folder)
    manifest, _ = read_bundle(data)
    return TaskRunner(unpack_task(data, cid_of_bytes(data), cache), manifest, device="cpu")


def test_the_images_cnn_trains_a_million_parameters_on_a_partys_npz(tmp_path: Path) -> None:
    written = write_example(tmp_path / "images", "images", name="my-images")
    assert sorted(path.name for path in written) == ["images_task.py", "pyproject.toml"]
    with pytest.raises(TaskError, match="there is no example task 'nope'; choose one of tabular, images, finetune"):
        write_example(tmp_path / "other", "nope")
    runner = _runner(tmp_path / "images", tmp_path / "cache")
    assert runner.manifest.name == "my-images"
    genesis = runner.genesis(0)
    assert sum(array.size for array in genesis.arrays.values()) > 1_000_000
    assert genesis.frozen_arrays() == {}

    rng = np.random.default_rng(1)
    images = tmp_path / "party.npz"
    np.savez(images, x=rng.integers(0, 256, (120, 32, 32, 3), dtype=np.uint8), y=rng.integers(0, 10, 120))
    outcome = runner.train(genesis.trainable_arrays(), {}, data_path=images, partition=0, partitions=2, seed=3,
                           settings={"epochs": 1, "batch_size": 16, "lr": 0.01})
    assert set(outcome.arrays) == set(genesis.trainable) and outcome.samples == 48  # 60 rows, a fifth held out
    assert {"base_loss", "base_accuracy", "loss", "accuracy"} <= set(outcome.metrics)
    assert any(not np.array_equal(outcome.arrays[name], genesis.arrays[name]) for name in genesis.trainable)

    np.savez(tmp_path / "flat.npz", x=np.zeros((4, 32, 32)), y=np.zeros(4))
    with pytest.raises(TaskError, match=r"load_data raised ValueError: .*expected N x 32 x 32 x 3"):
        runner.train(genesis.trainable_arrays(), {}, data_path=tmp_path / "flat.npz", partition=None, partitions=None,
                     seed=3, settings={"epochs": 1, "batch_size": 16, "lr": 0.01})


def test_finetuning_trains_and_sends_only_the_adapters_of_a_frozen_backbone(tmp_path: Path) -> None:
    folder = tmp_path / "finetune"
    shutil.copytree(EXAMPLES["finetune"], folder)
    with pytest.raises(TaskError, match="backbone.safetensors is missing from the task folder"):
        _runner(folder, tmp_path / "cache").genesis(0)

    sys.path.insert(0, str(folder))
    try:
        import lora_task

        lora_task.make_backbone(folder / "backbone.safetensors")
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("lora_task", None)
    runner = _runner(folder, tmp_path / "cache")
    genesis = runner.genesis(0)
    frozen, trainable = genesis.frozen_arrays(), genesis.trainable_arrays()
    assert set(trainable) == {f"layers.{i}.lora_{part}" for i in range(3) for part in "ab"}
    assert set(frozen) == {f"layers.{i}.base.{part}" for i in range(3) for part in ("weight", "bias")}
    adapter_values = sum(array.size for array in trainable.values())
    assert adapter_values * 15 < sum(array.size for array in frozen.values())  # an update is a small fraction

    outcome = runner.train(trainable, frozen, data_path=None, partition=1, partitions=2, seed=5,
                           settings={"epochs": 2, "batch_size": 32, "lr": 0.05})
    assert set(outcome.arrays) == set(trainable)  # the backbone neither travels nor changes
    assert not np.array_equal(outcome.arrays["layers.0.lora_b"], trainable["layers.0.lora_b"])
    # B starts at zero: the genesis model is the backbone itself, so its federated evaluation is the backbone's.
    assert np.all(trainable["layers.0.lora_b"] == 0) and outcome.metrics["base_accuracy"] > 0.5
