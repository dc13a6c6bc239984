"""Coordinate-wise median (Yin et al., 2018): each weight is the median of the updates' values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from node.strategies.base import (
    AggregateResult,
    Arrays,
    Strategy,
    Update,
    cast_like,
    screen,
    uniform_weights,
)
from node.strategies.numerics import drop_negative_zeros
from node.strategies.tensors import Tensors, layout_of, size_of, stacked


def coordinate_median(arrays: Sequence[Tensors]) -> Arrays:
    """Per coordinate, the median over the updates (mean of the middle two for an even count), float64.

    The values are sorted in their own dtype (exact, and a full sort of a few values per coordinate
    beats a partition) after every ``-0.0`` became ``+0.0``: sorting kernels leave equal values in
    different places, and the two zeros compare equal, so otherwise the sign of a zero median would
    depend on the CPU. Only the averaging of the middle two happens in float64. Each coordinate is
    its own computation, so the tensors are taken a slice of coordinates at a time (all updates'
    values for the slice together) and the bits do not depend on the slices.
    """
    n = len(arrays)
    result: Arrays = {}
    for name, (shape, _) in layout_of(arrays[0]).items():
        out = np.empty(size_of(shape), dtype=np.float64)
        for start, stop, values in stacked(arrays, name):
            drop_negative_zeros(values)
            values.sort(axis=0)
            upper = values[n // 2].astype(np.float64)
            out[start:stop] = upper if n % 2 else (values[n // 2 - 1].astype(np.float64) + upper) / 2.0
        result[name] = out.reshape(shape)
    return result


class Median(Strategy):
    """Coordinate-wise median; sample counts do not weigh in, so one party cannot buy influence."""

    name = "median"

    def params(self) -> dict[str, Any]:
        return {"name": self.name}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        screened = screen(updates, base=base)
        return AggregateResult(
            arrays=cast_like(coordinate_median([u.arrays for u in screened.updates]), screened.signature),
            included=uniform_weights(screened.updates),
            rejected=screened.rejected,
        )
