"""Krum and Multi-Krum (Blanchard et al., 2017): keep the updates closest to their neighbours.

Each update's score is the sum of squared distances to its ``n - f - 2`` nearest other updates
(at least one), measured on the flattened deltas from the base model when one is given. The ``m``
lowest-scoring updates are kept and averaged by sample count (``m = 1`` is plain Krum: the chosen
update itself); the others are rejected with their score. Distances are reduced with
``numerics.squared_distance`` and scores with ``math.fsum`` (exactly rounded), never ``np.sum``, so the
choice and the scores in the reasons are the same on every machine.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ledger.errors import InvalidInputError
from node.strategies.base import AggregateResult, Strategy, Update, cast_like, screen
from node.strategies.fedavg import weighted_average
from node.strategies.numerics import flatten, squared_distance


def pairwise_sq_distances(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """Squared Euclidean distances between every pair, from explicit differences (no Gram trick, no BLAS)."""
    n = len(vectors)
    distances = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            distances[i, j] = distances[j, i] = squared_distance(vectors[i], vectors[j])
    return distances


def krum_scores(distances: np.ndarray, *, f: int) -> np.ndarray:
    """Each update's Krum score: sum of its ``max(1, n - f - 2)`` smallest distances to the others."""
    n = distances.shape[0]
    closest = max(1, n - f - 2)
    scores = np.zeros(n, dtype=np.float64)
    for i in range(n):
        others = np.sort(np.delete(distances[i], i))  # >= +0.0, never -0.0: the sort is unique
        scores[i] = math.fsum(others[:closest].tolist())
    return scores


def krum_select(scores: np.ndarray, *, m: int) -> list[int]:
    """Indices of the ``m`` lowest scores (ties to the earlier index), in ascending index order."""
    return sorted(np.argsort(scores, kind="stable")[: min(m, len(scores))].tolist())


class Krum(Strategy):
    """Krum (``m = 1``) or Multi-Krum (``m > 1``) tolerating ``f`` Byzantine updates."""

    name = "krum"

    def __init__(self, *, f: int = 1, m: int = 1) -> None:
        for label, value, low in (("f", f, 0), ("m", m, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidInputError(f"krum {label} must be an integer >= {low}, not {value!r}.")
        self.f = f
        self.m = m

    def params(self) -> dict[str, Any]:
        return {"name": self.name, "f": self.f, "m": self.m}

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        screened = screen(updates, base=base)
        kept = screened.updates
        vectors = [flatten(u.arrays, base=base) for u in kept]
        scores = krum_scores(pairwise_sq_distances(vectors), f=self.f)
        chosen = krum_select(scores, m=self.m)
        selected = [kept[i] for i in chosen]
        cutoff = max(scores[i] for i in chosen)
        samples = [int(u.samples) for u in selected]
        averaged = weighted_average([u.arrays for u in selected], samples)
        return AggregateResult(
            arrays=cast_like(averaged, screened.signature),
            included=[(u.participant, s / sum(samples)) for u, s in zip(selected, samples, strict=True)],
            rejected=screened.rejected
            + [
                (kept[i].participant, f"Krum score {scores[i]:.6g} is above the {len(chosen)} kept (highest kept {cutoff:.6g}): too far from the others")
                for i in range(len(kept))
                if i not in chosen
            ],
        )
