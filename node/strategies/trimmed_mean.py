"""Coordinate-wise trimmed mean (Yin et al., 2018): drop the extremes of each coordinate, average the rest."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ledger.errors import InvalidInputError
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


def trim_count(beta: float, n: int) -> int:
    """How many values are cut from each end of a coordinate when there are ``n`` updates."""
    return math.floor(beta * n)


def trimmed_mean(arrays: Sequence[Tensors], *, trim: int) -> Arrays:
    """Per coordinate, the mean of the values left after removing the ``trim`` smallest and largest.

    Sorted in the input dtype with ``-0.0`` made ``+0.0`` first (so the sorted bytes are unique),
    then summed in float64 from the smallest kept value up, one elementwise ``+=`` per rank; a slice
    of coordinates at a time, as the median (the bits do not depend on the slices).
    """
    n = len(arrays)
    if not 0 <= 2 * trim < n:
        raise InvalidInputError(f"cannot trim {trim} values from each end of {n}; at least one must remain.")
    result: Arrays = {}
    for name, (shape, _) in layout_of(arrays[0]).items():
        out = np.empty(size_of(shape), dtype=np.float64)
        for start, stop, values in stacked(arrays, name):
            drop_negative_zeros(values)
            values.sort(axis=0)  # exact in the input dtype
            total = np.zeros(stop - start, dtype=np.float64)
            for row in values[trim : n - trim]:
                total += row.astype(np.float64)
            out[start:stop] = total / (n - 2 * trim)
        result[name] = out.reshape(shape)
    return result


class TrimmedMean(Strategy):
    """Trimmed mean cutting ``floor(beta * n)`` values from each end of every coordinate."""

    name = "trimmed-mean"

    def __init__(self, *, beta: float = 0.2) -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 0.5:
            raise InvalidInputError(f"trimmed-mean beta must be a number in [0, 0.5), not {beta!r}.")
        self.beta = float(beta)

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "beta": self.beta}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        screened = screen(updates, base=base)
        kept = screened.updates
        averaged = trimmed_mean([u.arrays for u in kept], trim=trim_count(self.beta, len(kept)))
        return AggregateResult(
            arrays=cast_like(averaged, screened.signature),
            included=uniform_weights(kept),
            rejected=screened.rejected,
        )
