"""FedAvg (McMahan et al., 2017): the average of the updates weighted by their sample counts."""

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
)


def weighted_average(arrays: Sequence[Mapping[str, np.ndarray]], samples: Sequence[int]) -> Arrays:
    """sum(samples_i * arrays_i) / sum(samples), in float64, summed in the order given."""
    total = float(sum(int(s) for s in samples))
    result: Arrays = {}
    for name in arrays[0]:
        accumulator = np.zeros(np.shape(arrays[0][name]), dtype=np.float64)
        for tensors, count in zip(arrays, samples, strict=True):
            accumulator += np.asarray(tensors[name]).astype(np.float64) * float(count)
        accumulator /= total
        result[name] = accumulator
    return result


class FedAvg(Strategy):
    """Average weighted by sample count."""

    name = "fedavg"

    def params(self) -> dict[str, Any]:
        return {"name": self.name}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        screened = screen(updates, base=base)
        kept = screened.updates
        samples = [int(u.samples) for u in kept]
        total = sum(samples)
        averaged = weighted_average([u.arrays for u in kept], samples)
        return AggregateResult(
            arrays=cast_like(averaged, screened.signature),
            included=[(u.participant, s / total) for u, s in zip(kept, samples, strict=True)],
            rejected=screened.rejected,
        )
