"""The task that ``fedledger task new`` writes works as written: packed, checked, its genesis built and trained."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from ledger.ipfs.unixfs import cid_of_bytes
from node.tasks.bundle import pack_task, read_bundle, unpack_task
from node.tasks.dependencies import check_dependencies
from node.tasks.errors import TaskError
from node.tasks.runner import TaskRunner
from node.tasks.template import default_name, write_template


@pytest.mark.slow
def test_the_template_trains_on_its_default_data_and_repeats_bit_for_bit(tmp_path: Path) -> None:
    written = write_template(tmp_path / "My Task", name=None)
    assert [path.name for path in written] == ["pyproject.toml", "task.py"]
    (tmp_path / "My Task" / "party.csv").write_text("a,b\n1,2\n")  # a party's data: excluded from the bundle
    data = pack_task(tmp_path / "My Task")
    manifest, files = read_bundle(data)
    assert (manifest.name, manifest.module, sorted(files)) == ("my-task", "task", ["pyproject.toml", "task.py"])
    check_dependencies(manifest)
    folder = unpack_task(data, cid_of_bytes(data), tmp_path / "cache")
    runner = TaskRunner(folder, manifest, device="cpu", timeout_s=120)

    genesis = runner.genesis(seed=0)
    assert genesis.trainable == ("0.weight", "0.bias", "2.weight", "2.bias") and genesis.arrays["0.weight"].shape == (32, 30)
    first = runner.train(genesis.trainable_arrays(), genesis.frozen_arrays(), data_path=None, partition=0, partitions=2,
                         seed=5, data_seed=0)
    again = runner.train(genesis.trainable_arrays(), genesis.frozen_arrays(), data_path=None, partition=0, partitions=2,
                         seed=5, data_seed=0)
    assert (first.samples, first.metrics["val_samples"]) == (228, 57)  # shard 0 of 569 samples: 285, a fifth held out
    assert {"base_loss", "base_accuracy", "loss", "accuracy"} <= set(first.metrics)
    assert first.metrics["accuracy"] > max(0.85, first.metrics["base_accuracy"])  # it learns
    assert sorted(first.arrays) == sorted(genesis.trainable)
    assert all(first.arrays[name].tobytes() == again.arrays[name].tobytes() for name in first.arrays)
    assert first.metrics == again.metrics
    assert not all(np.array_equal(first.arrays[name], genesis.arrays[name]) for name in first.arrays)


def test_the_template_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(TaskError, match="folder .* is not empty; give a new or empty folder"):
        write_template(tmp_path / "busy")
    with pytest.raises(TaskError, match="is not a usable task name"):
        write_template(tmp_path / "fresh", name="no spaces please")
    assert not (tmp_path / "fresh").exists()
    assert default_name(tmp_path / "Hospital A (2026)") == "hospital-a-2026"


def test_the_template_reads_a_partys_csv_with_a_header_and_the_label_last(tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    write_template(tmp_path / "t", name="tabular")
    spec = importlib.util.spec_from_file_location("template_task_under_test", tmp_path / "t" / "task.py")
    assert spec is not None and spec.loader is not None
    task = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(task)
    bundled = load_breast_cancer()
    rows = np.column_stack([bundled.data[:100], bundled.target[:100]])
    csv = tmp_path / "hospital-a.csv"
    np.savetxt(csv, rows, delimiter=",", header=",".join([*bundled.feature_names, "label"]), comments="")
    (x, y), (vx, vy) = task.load_data(str(csv), partition=None, partitions=None, seed=0)
    assert (tuple(x.shape), tuple(vx.shape), x.dtype, y.dtype) == ((80, 30), (20, 30), torch.float32, torch.int64)
    assert abs(float(x.mean())) < 1e-5 and sorted(set(y.tolist()) | set(vy.tolist())) == [0, 1]
    (tmp_path / "bad.csv").write_text("a,b,label\n1,2,0\n")
    with pytest.raises(ValueError, match="has 3 columns; this task expects 30 features then the label"):
        task.load_data(str(tmp_path / "bad.csv"), partition=None, partitions=None, seed=0)
