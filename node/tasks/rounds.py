"""A task in a federation's rounds: its bundle fetched and unpacked from the store, its models read
with a size cap, its genesis model made and pinned.

Only the trainable tensors travel: the genesis model (round 0's base) holds them alone, with metadata
naming the task and, when the model has frozen tensors (parameters with ``requires_grad=False``), the
CID of the safetensors file that holds those. Every later model of the federation has the genesis
model's layout, so the aggregator and the auditor take a task round's layout from its base model
and need no task code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ledger.errors import ContentNotFoundError, ContentTooLargeError, InvalidInputError
from ledger.ipfs.cid import parse_cid
from ledger.ipfs.store import ContentStore
from ledger.types import Cid
from ledger.weights import from_safetensors, to_safetensors
from ledger.workspace import Workspace
from node.tasks.bundle import DEFAULT_MAX_BYTES, read_bundle, unpack_task
from node.tasks.dependencies import check_dependencies
from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest

MAX_WEIGHTS_BYTES = 4 * 2**30
"""The most bytes read for a task's model (base, global or frozen tensors): a fixed cap, so a
stranger's blob cannot exhaust memory; the updates themselves are capped by the base model's layout."""

TRAVELLING_DTYPES = ("float16", "float32", "float64")
"""The dtypes a trainable tensor may have: what the strategies aggregate (in float64, the result
rounded once back to the tensor's dtype, bit for bit the same on every machine)."""

CACHE_FOLDER = "tasks"


def task_cache(workspace: Workspace) -> Path:
    """Where the workspace keeps unpacked task bundles, one folder per CID (made on first use)."""
    return workspace.root / CACHE_FOLDER


def fetch_bundle(store: ContentStore, cid: str) -> bytes:
    """The bytes of task bundle ``cid`` from ``store`` (checked against the CID by the read)."""
    cid = parse_cid(cid)
    try:
        return store.get(cid, max_bytes=DEFAULT_MAX_BYTES)
    except ContentNotFoundError:
        raise TaskError(
            f"task bundle {cid} is not in this workspace's store; pack the task into it with `fedledger task pack DIR` "
            "(or add the bundle file with `fedledger ipfs add FILE`)."
        ) from None
    except ContentTooLargeError:
        raise TaskError(
            f"content {cid} is larger than a task bundle may be ({DEFAULT_MAX_BYTES // 2**20} MiB), so it is not one; "
            "give the CID that `fedledger task pack` printed."
        ) from None


def bundle_manifest(store: ContentStore, cid: str) -> TaskManifest:
    """The manifest of task bundle ``cid``, after checking every byte of the bundle."""
    manifest, _ = read_bundle(fetch_bundle(store, cid), source=f"content {cid}")
    return manifest


def prepare_task(store: ContentStore, cid: str, cache_root: Path) -> tuple[Path, TaskManifest]:
    """Fetch bundle ``cid``, unpack it into ``cache_root/<cid>`` (verified), check its dependencies here."""
    data = fetch_bundle(store, cid)
    folder = unpack_task(data, cid, cache_root)
    manifest, _ = read_bundle(data, source=f"bundle {cid}")
    check_dependencies(manifest)
    return folder, manifest


def read_weights_bytes(store: ContentStore, cid: str, *, what: str) -> bytes:
    """The bytes of a task's weights file ``cid`` (``what`` names it in the error), capped."""
    try:
        return store.get(cid, max_bytes=MAX_WEIGHTS_BYTES)
    except ContentTooLargeError:
        raise InvalidInputError(
            f"{what} {cid} is larger than the {MAX_WEIGHTS_BYTES // 2**30} GiB fedledger reads for a task's model, "
            "so it was not read; use a smaller model, or keep its large tensors frozen."
        ) from None


def read_weights(store: ContentStore, cid: str, *, what: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of a task's weights file ``cid``, read with the cap and checked."""
    return from_safetensors(read_weights_bytes(store, cid, what=what), source=f"{what} {cid}")


def check_travelling_dtypes(arrays: Mapping[str, np.ndarray], *, task: str) -> None:
    """TaskError naming the first trainable tensor whose dtype cannot be aggregated."""
    for name in sorted(arrays):
        dtype = np.asarray(arrays[name]).dtype.name
        if dtype not in TRAVELLING_DTYPES:
            raise TaskError(
                f"task {task!r}: tensor {name!r} of its model is {dtype}, and only {', '.join(TRAVELLING_DTYPES)} "
                "tensors can be aggregated; make it a floating-point tensor, or a frozen parameter "
                "(an integer buffer such as BatchNorm's num_batches_tracked: build it with track_running_stats=False)."
            )


def frozen_bytes(arrays: Mapping[str, np.ndarray], *, name: str, task_cid: str) -> bytes:
    """The safetensors file of a task's frozen tensors, its metadata naming the task."""
    return to_safetensors(dict(arrays), metadata={"model": name, "task": task_cid, "frozen": True})


def genesis_bytes(arrays: Mapping[str, np.ndarray], *, name: str, task_cid: str, frozen_cid: str | None) -> bytes:
    """The genesis model of a task: its trainable tensors only, the metadata naming the task and its frozen file."""
    return to_safetensors(dict(arrays), metadata={
        "model": name, "task": task_cid, "frozen_cid": frozen_cid or "", "round": 0, "base_cid": "",
    })


@dataclass(frozen=True)
class TaskGenesis:
    """A task's genesis model as pinned: its CID, its frozen tensors' CID (None without any), its names."""

    cid: Cid
    frozen_cid: Cid | None
    task: Cid
    name: str
    seed: int
    trainable: tuple[str, ...]
    frozen: tuple[str, ...]


def make_task_genesis(
    store: ContentStore, task_cid: str, *, seed: int, cache_root: Path, timeout_s: float, verbose: bool = False,
) -> TaskGenesis:
    """Run the task's ``model()`` under ``seed`` in a task process and pin its genesis model (and frozen tensors)."""
    from node.tasks.runner import TaskRunner

    task_cid = parse_cid(task_cid)
    folder, manifest = prepare_task(store, task_cid, cache_root)
    genesis = TaskRunner(folder, manifest, timeout_s=timeout_s, verbose=verbose).genesis(seed)
    trainable = genesis.trainable_arrays()
    check_travelling_dtypes(trainable, task=manifest.name)
    frozen = genesis.frozen_arrays()
    frozen_cid = None
    if frozen:
        frozen_cid = store.add_bytes(frozen_bytes(frozen, name=manifest.name, task_cid=task_cid), pin=True)
    cid = store.add_bytes(genesis_bytes(trainable, name=manifest.name, task_cid=task_cid, frozen_cid=frozen_cid), pin=True)
    return TaskGenesis(cid=cid, frozen_cid=frozen_cid, task=task_cid, name=manifest.name, seed=int(seed),
                       trainable=tuple(sorted(trainable)), frozen=tuple(sorted(frozen)))
