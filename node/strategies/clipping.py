"""Norm clipping: bound how far any one update can move the model, then let another strategy combine.

A wrapper, not a subclass (as Flower's ``DifferentialPrivacyServerSideFixedClipping``): each
update's delta from the base model is scaled down to L2 norm ``max_norm`` (over all tensors
together, in name order, summed by the fold of ``numerics.squared_norm``: no ``np.sum``, whose order
numpy does not fix) when it is longer, and the wrapped strategy aggregates the clipped updates.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ledger.errors import InvalidInputError
from node.strategies.base import AggregateResult, Arrays, Strategy, Update, screen
from node.strategies.numerics import squared_norm


def clip_update(
    arrays: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray], *, max_norm: float
) -> tuple[Arrays, float]:
    """``arrays`` with their delta from ``base`` scaled to at most ``max_norm``, and the original delta norm.

    The delta is taken in float64, its norm over all tensors in name order; a clipped tensor is
    ``base + delta * (max_norm / norm)`` in float64, rounded once to the tensor's dtype.
    """
    names = sorted(arrays)
    deltas = {name: np.subtract(arrays[name], base[name], dtype=np.float64) for name in names}
    norm = math.sqrt(squared_norm([deltas[name] for name in names]))
    if norm <= max_norm:
        return dict(arrays), norm
    scale = max_norm / norm
    clipped = {}
    for name, array in arrays.items():
        delta = np.multiply(deltas[name], scale, out=deltas[name])
        clipped[name] = np.add(delta, base[name], out=delta, dtype=np.float64).astype(np.asarray(array).dtype)
    return clipped, norm


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
