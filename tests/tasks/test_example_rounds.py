"""The example tasks each run a round of two parties on a real anvil, from `task new --example` to `audit verify`.

For each example: the task folder written by ``task new --example`` (the fine-tuning one given its
backbone), packed, named by an agreement, its genesis model pinned, a round opened on it, two parties
training as real processes (images: each from its own ``.npz`` of synthetic images; fine-tuning:
``--shard I --of 2`` of the bundled digits), aggregated and audited. Each also checks what makes its
example what it is: the images CNN's million values travel whole; the fine-tuning's frozen backbone is
pinned once, in its own file, and only the adapters travel.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from safetensors.numpy import load_file
from web3 import Web3

from ledger.weights import from_safetensors
from node.round_config import RoundConfig, TaskRef
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import finish, start
from tests.tasks.test_task_round import deployed_workspace

IMAGES_PER_PARTY = 100
ONE_EPOCH = ("epochs = 2\n", "epochs = 1\n")  # the images task's declared settings, edited before packing


def layout(arrays: dict[str, np.ndarray]) -> dict[str, tuple[tuple[int, ...], str]]:
    return {name: (array.shape, array.dtype.str) for name, array in arrays.items()}


def write_images(path: Path, seed: int) -> Path:
    """A party's synthetic images: x (N x 32 x 32 x 3, uint8), y (N labels 0..9)."""
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.integers(0, 256, (IMAGES_PER_PARTY, 32, 32, 3), dtype=np.uint8),
             y=rng.integers(0, 10, IMAGES_PER_PARTY))
    return path


def make_backbone(folder: Path) -> Path:
    """backbone.safetensors in the fine-tuning task's folder, made by its own ``make_backbone``."""
    spec = importlib.util.spec_from_file_location("example_lora_task", folder / "lora_task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_backbone(folder / "backbone.safetensors")


@pytest.mark.anvil
@pytest.mark.slow
@pytest.mark.parametrize("example", ["images", "finetune"])
def test_an_example_task_runs_a_round_of_two_parties_to_audit_verify(
    example: str, chain: TestChain, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    w, workspace, store = deployed_workspace(chain, tmp_path)

    # The task, as `task new --example` writes it; the images one trains one epoch, the fine-tuning one gets its backbone.
    folder = tmp_path / example
    ok(cli("task", "new", str(folder), "--example", example))
    if example == "images":
        pyproject = folder / "pyproject.toml"
        assert ONE_EPOCH[0] in pyproject.read_text()
        pyproject.write_text(pyproject.read_text().replace(*ONE_EPOCH))
        data = {"alice": ["--data", str(write_images(tmp_path / "alice.npz", 1))],
                "bob": ["--data", str(write_images(tmp_path / "bob.npz", 2))]}
    else:
        backbone = make_backbone(folder)
        data = {"alice": ["--shard", "0", "--of", "2"], "bob": ["--shard", "1", "--of", "2"]}
    task = ok(cli("task", "pack", str(folder), "--json", *w)).json()["cid"]
    terms = tmp_path / "terms.md"
    terms.write_text(f"# Terms\nEach party trains the {example} example on its own data.\n")
    ok(cli("agreement", "publish", str(terms), "--task", task, *w))

    parties = {}
    for name, account in (("alice", anvil_keys[4]), ("bob", anvil_keys[5])):
        env = {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(account.key)}
        address = ok(cli("participant", "join", "--json", *w, env=env)).json()["participant"]
        ok(cli("participant", "approve", address, *w))
        parties[name] = {"address": address, "env": env}

    genesis = ok(cli("model", "init", "--task", task, "--seed", "0", "--json", *w)).json()
    base_arrays, _ = from_safetensors(store.get(genesis["cid"]))
    opened = ok(cli("round", "open", "--base-cid", genesis["cid"], "--deadline", "600", "--min-updates", "2",
                    "--json", *w)).json()
    config = RoundConfig.from_bytes(store.get(opened["config_cid"]))
    assert config.task == TaskRef(task, genesis["frozen_cid"])

    # Both parties train at the same time, as separate processes.
    processes = {name: start("node", "train", "--round", "1", *data[name], "--json", *w, env=parties[name]["env"])
                 for name in parties}
    trained = {name: ok(finish(process, timeout=180)).json() for name, process in processes.items()}
    updates = {}
    for name, outcome in trained.items():
        assert outcome["trained"] and outcome["participant"] == parties[name]["address"]
        updates[name] = store.get(outcome["update_cid"])
        assert layout(from_safetensors(updates[name])[0]) == layout(base_arrays)  # the base model's tensors, no more

    aggregated = ok(cli("aggregate", "--round", "1", "--json", *w)).json()
    assert sorted(i["participant"] for i in aggregated["included"]) == sorted(p["address"] for p in parties.values())
    global_arrays, global_metadata = from_safetensors(store.get(aggregated["global_cid"]))
    assert layout(global_arrays) == layout(base_arrays)
    assert (global_metadata["task"], global_metadata["frozen_cid"]) == (task, genesis["frozen_cid"] or "")
    verified = cli("audit", "verify", "--json", *w)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert verified.json()["failed"] == 0

    if example == "images":
        # The whole CNN trains and travels: more than a million values, nothing frozen; each party its own file.
        assert sum(array.size for array in global_arrays.values()) > 1_000_000
        assert not genesis["frozen_cid"] and config.task.frozen_cid is None
        assert all(outcome["samples"] == IMAGES_PER_PARTY * 4 // 5 for outcome in trained.values())  # a fifth held out
    else:
        # The frozen backbone: pinned by the genesis as its own file, named by the round config, exactly the backbone.
        frozen_cid = genesis["frozen_cid"]
        assert frozen_cid and frozen_cid in store.pins()
        frozen_bytes = store.get(frozen_cid)
        frozen_arrays, _ = from_safetensors(frozen_bytes)
        pretrained = load_file(str(backbone))
        assert sorted(frozen_arrays) == sorted(f"layers.{i}.base.{part}" for i in range(3) for part in ("weight", "bias"))
        for i in range(3):
            for part in ("weight", "bias"):
                assert np.array_equal(frozen_arrays[f"layers.{i}.base.{part}"], pretrained[f"layer{i}.{part}"])
        # Only the adapters travel and are aggregated; an update is a small fraction of the backbone.
        adapters = sorted(f"layers.{i}.lora_{part}" for i in range(3) for part in "ab")
        assert sorted(base_arrays) == adapters and sorted(global_arrays) == adapters
        for update in updates.values():
            assert sorted(from_safetensors(update)[0]) == adapters
            assert len(update) * 10 < len(frozen_bytes), (len(update), len(frozen_bytes))
        # The round moved the adapters (B starts at zero, so the genesis is the backbone itself).
        assert np.all(base_arrays["layers.0.lora_b"] == 0)
        assert any(not np.array_equal(global_arrays[name], base_arrays[name]) for name in adapters)
