"""FedAvg (McMahan et al., 2017): the average of the updates weighted by their sample counts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from node.strategies.base import (
    AggregateResult,
    Arrays,
    Screened,
    Strategy,
    Update,
    cast_like,
    screen,
)
from node.strategies.tensors import Tensors, layout_of, read

BLOCK = 1 << 15
"""Coordinates per block: the float64 sum and product of a block (512 KiB) stay in a core's cache
while every update is added into them, instead of the whole sum streaming through memory per update."""


def weighted_average(arrays: Sequence[Tensors], samples: Sequence[int]) -> Arrays:
    """sum(samples_i * arrays_i) / sum(samples), in each tensor's own dtype.

    Per coordinate: start from ``+0.0``, add ``float64(x_i) * float64(samples_i)`` for each update
    in the order given, divide by the float64 total, round once to the tensor's dtype. Every step
    is elementwise, so the bits do not depend on how coordinates are blocked: the blocks only make
    it fast, and let updates be read from disk one block of one update at a time.
    """
    weights = [float(int(s)) for s in samples]
    total = float(sum(int(s) for s in samples))
    result: Arrays = {}
    for name, (shape, dtype) in layout_of(arrays[0]).items():
        out = np.empty(shape, dtype=dtype)
        flat_out = out.reshape(-1)
        accumulator = np.empty(min(out.size, BLOCK), dtype=np.float64)
        product = np.empty_like(accumulator)
        piece = np.empty(accumulator.size, dtype=dtype)  # where an update read from disk lands
        for start in range(0, out.size, BLOCK):
            stop = min(out.size, start + BLOCK)
            acc, prod = accumulator[: stop - start], product[: stop - start]
            acc.fill(0.0)
            for tensors, weight in zip(arrays, weights, strict=True):
                values = read(tensors, name, start, stop, out=piece[: stop - start])
                np.multiply(values, weight, out=prod, dtype=np.float64)
                np.add(acc, prod, out=acc)
            np.divide(acc, total, out=acc)
            flat_out[start:stop] = acc
        result[name] = out
    return result


class FedAvg(Strategy):
    """Average weighted by sample count."""

    name = "fedavg"

    def params(self) -> dict[str, Any]:
        return {"name": self.name}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        """Screen without the finite-values pass, average, and screen in full only if the average is not finite.

        A NaN or infinity in any kept update makes its coordinate of the weighted sum NaN or infinite
        (a positive weight and finite addends cannot undo either), so a finite average proves every
        kept value finite and the pass over all inputs that screening would spend is saved. When the
        average is not finite (a bad update, or a sum that overflowed), the full screen runs and the
        result is exactly what screening first would have given.
        """
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf in a bad update's coordinate is expected here
            result = self._average(screen(updates, base=base, finite=False))
        if all(np.isfinite(array).all() for array in result.arrays.values()):
            return result
        return self._average(screen(updates, base=base))

    @staticmethod
    def _average(screened: Screened) -> AggregateResult:
        kept = screened.updates
        samples = [int(u.samples) for u in kept]
        total = sum(samples)
        averaged = weighted_average([u.arrays for u in kept], samples)
        return AggregateResult(
            arrays=cast_like(averaged, screened.signature),
            included=[(u.participant, s / total) for u, s in zip(kept, samples, strict=True)],
            rejected=screened.rejected,
        )
