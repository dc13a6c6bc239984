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
from node.strategies.tensors import Tensors, fitting, layout_of, size_of


class DeltaVector:
    """One update as the float64 vector that Krum measures (``numerics.flatten``), built only when numpy asks.

    The distances need whole vectors (the fold of ``numerics.squared_distance`` pairs coordinate ``k``
    with ``k + size / 2`` first, so no slice of coordinates is a part of it that could be summed on
    its own), so a vector is built from its update, used for a block of distances, and dropped.
    """

    def __init__(self, arrays: Tensors, base: Mapping[str, np.ndarray] | None) -> None:
        self.arrays = arrays
        self.base = base
        self.size = sum(size_of(shape) for shape, _ in layout_of(arrays).values())

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        vector = flatten(self.arrays, base=self.base)
        return vector if dtype is None else vector.astype(dtype, copy=False)


def pairwise_sq_distances(vectors: Sequence[np.ndarray | DeltaVector]) -> np.ndarray:
    """Squared Euclidean distances between every pair, from explicit differences (no Gram trick, no BLAS).

    The vectors are taken in blocks, two blocks at a time within ``SLICE_BYTES`` (one vector per
    block at least): a block of rows is built once and measured against itself and then against
    each later block in turn, so vectors built on demand (:class:`DeltaVector`) are never all held
    at once. Each distance is computed alone, so the blocks change no bit.
    """
    n = len(vectors)
    distances = np.zeros((n, n), dtype=np.float64)
    width = fitting(2 * 8 * max((v.size for v in vectors), default=1))
    for low in range(0, n, width):
        rows = [np.asarray(v, dtype=np.float64) for v in vectors[low : low + width]]
        for i, row in enumerate(rows):
            for j in range(i + 1, len(rows)):
                distances[low + i, low + j] = distances[low + j, low + i] = squared_distance(row, rows[j])
        for high in range(low + width, n, width):
            columns = [np.asarray(v, dtype=np.float64) for v in vectors[high : high + width]]
            for i, row in enumerate(rows):
                for j, column in enumerate(columns):
                    distances[low + i, high + j] = distances[high + j, low + i] = squared_distance(row, column)
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
        base64 = None if base is None else {name: np.asarray(array, dtype=np.float64) for name, array in base.items()}
        vectors = [DeltaVector(u.arrays, base64) for u in kept]
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
