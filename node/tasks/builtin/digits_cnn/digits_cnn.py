"""Built-in task ``cnn``: fedledger's DigitsCNN (two 3x3 convolutions) on scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

from torch import nn

from node.models import DigitsCNN
from node.tasks.builtin.digits import Pair, load_digits_task_data


def model() -> nn.Module:
    """A fresh DigitsCNN; its initial weights follow the seed fedledger sets."""
    return DigitsCNN()


def load_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    """A shard of the bundled digits (or the party's own file), and the held-out digits to validate on."""
    return load_digits_task_data(path, partition=partition, partitions=partitions, seed=seed)
