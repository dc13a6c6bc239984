"""A fedledger task: a CNN for 32x32 RGB images in 10 classes, read from a party's ``.npz`` file.

The file holds ``x`` (N x 32 x 32 x 3, uint8 0..255 or float 0..1, channels last as images are
usually stored) and ``y`` (N integer labels 0..9). ``--shard I --of N`` splits one file between
parties; a seeded fifth of each party's rows is its validation split.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

CLASSES = 10
SIDE = 32
VALIDATION_FRACTION = 0.2

Pair = tuple[torch.Tensor, torch.Tensor]


def model() -> nn.Module:
    """Three 3x3 convolutions with pooling (32 -> 16 -> 8 -> 4), then two linear layers: 1.43 M parameters."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(256 * 4 * 4, 256), nn.ReLU(), nn.Linear(256, CLASSES),
    )


def _read(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    if path is None:
        raise ValueError("this task needs the party's images: pass --data FILE.npz with arrays x (N x 32 x 32 x 3) and y (N)")
    with np.load(path, allow_pickle=False) as archive:
        if "x" not in archive or "y" not in archive:
            raise ValueError(f"{path} lacks the arrays x and y (it has {sorted(archive.files)})")
        x, y = np.asarray(archive["x"]), np.asarray(archive["y"])
    if x.ndim != 4 or x.shape[1:] != (SIDE, SIDE, 3) or y.shape != (x.shape[0],):
        raise ValueError(f"{path}: x is {list(x.shape)} and y {list(y.shape)}; expected N x {SIDE} x {SIDE} x 3 and N")
    if y.min(initial=0) < 0 or y.max(initial=0) >= CLASSES:
        raise ValueError(f"{path} has labels outside 0..{CLASSES - 1}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    images = np.ascontiguousarray((x.astype(np.float32) / scale).transpose(0, 3, 1, 2))  # NCHW for torch
    return images, y.astype(np.int64)


def load_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    """This party's (train, validation) split of its images."""
    x, y = _read(path)
    order = np.random.default_rng(seed).permutation(len(y))
    if partition is not None:
        order = np.array_split(order, partitions)[partition]
    cut = max(1, int(len(order) * VALIDATION_FRACTION))
    validation, train = order[:cut], order[cut:]
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train])), (torch.from_numpy(x[validation]), torch.from_numpy(y[validation]))
