"""Coordinate-wise median (Yin et al., 2018): each weight is the median of the updates' values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from node.strategies.base import AggregateResult, Arrays, Strategy, Update, cast_like, screen, uniform_weights


def coordinate_median(arrays: Sequence[Mapping[str, np.ndarray]]) -> Arrays:
    """Per coordinate, the median over the updates (mean of the middle two for an even count), float64."""
    return {
        name: np.median(np.stack([np.asarray(a[name], dtype=np.float64) for a in arrays]), axis=0)
        for name in arrays[0]
    }


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
