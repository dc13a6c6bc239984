"""Norm clipping: bound how far any one update can move the model, then let another strategy combine.

A wrapper, not a subclass (as Flower's ``DifferentialPrivacyServerSideFixedClipping``): each
update's delta from the base model is scaled down to L2 norm ``max_norm`` (over all tensors
together, in name order, summed by the fold of ``numerics.squared_norm``: no ``np.sum``, whose order
numpy does not fix) when it is longer, and the wrapped strategy aggregates the clipped updates,
which are computed from the originals as it reads them (nothing clipped is stored).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ledger.errors import InvalidInputError
from node.strategies.base import AggregateResult, Strategy, Update, screen
from node.strategies.numerics import flatten, squared_norm
from node.strategies.tensors import Tensors, layout_of, read, size_of


def clip_update(arrays: Tensors, base: Mapping[str, np.ndarray], *, max_norm: float) -> tuple[Tensors, float]:
    """``arrays`` with their delta from ``base`` scaled to at most ``max_norm``, and the original delta norm.

    The delta is taken in float64, its norm over all tensors in name order; a clipped tensor is
    ``base + delta * (max_norm / norm)`` in float64, rounded once to the tensor's dtype. The norm
    needs the whole delta (one float64 vector of the model's size, for the fold); the clipped values
    are computed when read (:class:`Clipped`), so a spooled update stays on disk.
    """
    norm = math.sqrt(squared_norm([flatten(arrays, base=base)]))
    if norm <= max_norm:
        return arrays, norm
    return Clipped(arrays, base, scale=max_norm / norm), norm


class Clipped(Mapping[str, np.ndarray]):
    """An update whose delta from ``base`` is scaled by ``scale``: a tensor reader computing each range it is asked for."""

    def __init__(self, arrays: Tensors, base: Mapping[str, np.ndarray], *, scale: float) -> None:
        self.arrays = arrays
        self.base = base
        self.scale = scale
        self.layout = layout_of(arrays)

    def read(self, name: str, start: int = 0, stop: int | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
        shape, dtype = self.layout[name]
        stop = size_of(shape) if stop is None else stop
        base = np.asarray(self.base[name], dtype=np.float64).reshape(-1)[start:stop]
        delta = np.subtract(read(self.arrays, name, start, stop), base, dtype=np.float64)
        np.multiply(delta, self.scale, out=delta)
        np.add(delta, base, out=delta, dtype=np.float64)
        if out is None:
            return delta.astype(dtype)
        out[...] = delta
        return out

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(name).reshape(self.layout[name][0])

    def __iter__(self) -> Iterator[str]:
        return iter(self.layout)

    def __len__(self) -> int:
        return len(self.layout)


class NormClipping(Strategy):
    """Clip each update's delta to ``max_norm`` before ``strategy`` aggregates; needs the base model."""

    def __init__(self, strategy: Strategy, *, max_norm: float) -> None:
        if isinstance(max_norm, bool) or not isinstance(max_norm, (int, float)) or not (0 < max_norm < math.inf):
            raise InvalidInputError(f"clip_norm must be a positive finite number, not {max_norm!r}.")
        if isinstance(strategy, NormClipping):
            raise InvalidInputError("norm clipping is already applied; wrap the strategy once.")
        self.strategy = strategy
        self.max_norm = float(max_norm)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.strategy.name

    def params(self) -> dict[str, Any]:
        return {**self.strategy.params(), "clip_norm": self.max_norm}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        if base is None:
            raise InvalidInputError("norm clipping needs the round's base model to measure each update's delta.")
        screened = screen(updates, base=base)
        base64 = {name: np.asarray(array, dtype=np.float64) for name, array in base.items()}  # converted once
        clipped: list[Update] = []
        notes: list[tuple[str, str]] = []
        for update in screened.updates:
            arrays, norm = clip_update(update.arrays, base64, max_norm=self.max_norm)
            if norm > self.max_norm:
                notes.append((update.participant, f"delta norm {norm:.6g} clipped to {self.max_norm:.6g}"))
            clipped.append(Update(update.participant, arrays, update.samples))
        inner = self.strategy.aggregate(clipped, base=base)
        return AggregateResult(
            arrays=inner.arrays,
            included=inner.included,
            rejected=screened.rejected + inner.rejected,
            notes=notes + inner.notes,
        )
