"""The data of the built-in digits tasks, as their ``load_data`` hooks return it.

Training data is exactly what ``fedledger node train --model mlp|cnn`` trains on: shard ``partition``
of the bundled digits split ``partitions`` ways by ``seed`` (IID, ``--shard I --of N``), or the
party's own ``.npz``/CSV file at ``path`` (``--data FILE``: 64 features, then the label); one of the two.
Validation data, for federated evaluation, is the digits set's held-out test split under the same
seed: disjoint from every shard, and the same for every party, so the training samples (and so the
demo's figures) stay what they were.
"""

from __future__ import annotations

import numpy as np

from node.data import load_digits_split, load_local_data

Pair = tuple[np.ndarray, np.ndarray]


def load_digits_task_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    """((x, y) to train on, (x, y) to validate on) for a built-in digits task."""
    if path is not None and partition is not None:
        raise ValueError("give either a data file or a shard of the bundled digits, not both")
    if path is None and partition is None:
        raise ValueError("give the party's data: --data FILE (.npz with arrays x, y, or CSV of 64 features then the "
                         "label) or a shard of the bundled digits, --shard I --of N")
    if (partition is None) != (partitions is None):
        raise ValueError("a shard needs both its number and the number of shards (--shard I --of N)")
    parties = partitions or 1
    if not 0 <= (partition or 0) < parties:
        raise ValueError(f"shard {partition} does not exist when the digits are split {parties} ways")
    shards, test = load_digits_split(parties=parties, seed=seed)
    train = load_local_data(path) if path is not None else shards[partition or 0]
    return (train.x, train.y), (test.x, test.y)
