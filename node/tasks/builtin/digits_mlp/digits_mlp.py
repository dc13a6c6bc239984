"""Built-in task ``mlp``: fedledger's DigitsMLP (64 -> 64 -> 10) on scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

from torch import nn

from node.models import DigitsMLP
from node.tasks.builtin.digits import Pair, load_digits_task_data


def model() -> nn.Module:
    """A fresh DigitsMLP; its initial weights follow the seed fedledger sets."""
    return DigitsMLP()


def load_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    """A shard of the bundled digits (or the party's own file), and the held-out digits to validate on."""
    return load_digits_task_data(path, partition=partition, partitions=partitions, seed=seed)
