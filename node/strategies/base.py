"""What every strategy shares: the update and result shapes, the base class, and screening.

Screening turns a batch of updates into the ones a strategy may use, in a canonical order (by
participant address, lower-cased), plus the ones it may not, each with a reason. Everything after
screening sees the same inputs in the same order whatever order they arrived in, which is what
makes an aggregate repeatable to the bit by an auditor. Screening also refuses to go on in a
process that flushes subnormal floats to zero (see ``node.strategies.numerics``). It reads an
update's layout from its header and its values a slice at a time (``node.strategies.tensors``), so
updates spooled to disk are screened without being loaded.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ledger.errors import InvalidInputError
from node.strategies.numerics import require_ieee_subnormals
from node.strategies.tensors import Tensors, layout_of, read, size_of, spans

Arrays = dict[str, np.ndarray]
Signature = tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape, dtype) per tensor, sorted by name


@dataclass(frozen=True)
class Update:
    """One party's trained weights for a round and the number of samples it trained on.

    ``arrays`` is a mapping of arrays or a reader of a spooled file (``ledger.weights.WeightsFile``).
    """

    participant: str
    arrays: Tensors
    samples: int


@dataclass(frozen=True)
class AggregateResult:
    """The aggregate, who went into it with which weight, who did not and why, and any remarks.

    ``included`` weights are each update's share: by sample count for FedAvg and (Multi-)Krum,
    a nominal 1/n for median and trimmed mean (every update takes part, coordinate by coordinate).
    ``notes`` records changes made to an update that was still used (e.g. its delta was clipped).
    """

    arrays: Arrays
    included: list[tuple[str, float]]
    rejected: list[tuple[str, str]]
    notes: list[tuple[str, str]] = field(default_factory=list)


class Strategy(ABC):
    """One aggregation algorithm. ``params()`` names it fully: ``strategy_from_params`` rebuilds it."""

    name: str

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """JSON-serializable parameters, including ``name``."""

    @abstractmethod
    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        """Combine ``updates``; ``base`` is the round's starting model, needed by some strategies."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()})"


@dataclass(frozen=True)
class Screened:
    """The usable updates in canonical order, those refused with reasons, and the common layout."""

    updates: list[Update]
    rejected: list[tuple[str, str]]
    signature: Signature


def signature_of(arrays: Tensors) -> Signature:
    return tuple(sorted((name, shape, dtype) for name, (shape, dtype) in layout_of(arrays).items()))


def screen(updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None, finite: bool = True) -> Screened:
    """Sort by participant, refuse what cannot be aggregated, and raise if nothing is left.

    The reference layout is the base model's when there is one, else the layout most updates
    share (ties go to the first participant in canonical order). ``finite=False`` leaves out the
    check that the updates' values are finite, for a caller that checks its result instead and
    screens again in full when the result is not finite (FedAvg: see ``fedavg.FedAvg.aggregate``).
    """
    require_ieee_subnormals()
    ordered = sorted(updates, key=lambda u: u.participant.lower())
    counts = Counter(u.participant.lower() for u in ordered)
    if base is not None:
        reference = signature_of(base)
        for name, array in base.items():
            if not np.all(np.isfinite(array)):
                raise InvalidInputError(f"the base model's tensor {name!r} holds NaN or infinite values; use a valid base model.")
    else:
        reference = _majority_signature(ordered)
    kept: list[Update] = []
    rejected: list[tuple[str, str]] = []
    for update in ordered:
        if counts[update.participant.lower()] > 1:
            reason = f"{counts[update.participant.lower()]} updates from the same participant; only one per round counts"
        else:
            reason = _problem(update, reference, finite=finite)
            if reason is not None and not finite:
                reason = _problem(update, reference)  # the first problem in full order, as a full screen names it
        if reason is None:
            kept.append(update)
        else:
            rejected.append((update.participant, reason))
    if not kept:
        raise InvalidInputError(
            f"no usable update to aggregate ({len(updates)} given, all rejected: "
            + "; ".join(f"{p}: {r}" for p, r in rejected)
            + "); the round needs at least one valid update."
        )
    return Screened(kept, rejected, reference)


def _majority_signature(ordered: Sequence[Update]) -> Signature:
    if not ordered:
        raise InvalidInputError("no update to aggregate; the round needs at least one valid update.")
    signatures = [signature_of(u.arrays) for u in ordered]
    counts = Counter(signatures)
    best = max(counts.values())
    return next(s for s in signatures if counts[s] == best)


def _problem(update: Update, reference: Signature, *, finite: bool = True) -> str | None:
    """Why ``update`` cannot be used, or None."""
    if isinstance(update.samples, bool) or not isinstance(update.samples, (int, np.integer)) or update.samples < 1:
        return f"sample count must be a positive integer, not {update.samples!r}"
    expected = {name: (shape, dtype) for name, shape, dtype in reference}
    layout = layout_of(update.arrays)
    if set(layout) != set(expected):
        missing = sorted(set(expected) - set(layout))
        extra = sorted(set(layout) - set(expected))
        return f"tensor names differ from the model's (missing {missing}, unexpected {extra})"
    for name in sorted(expected):
        (shape, dtype), (has_shape, has_dtype) = expected[name], layout[name]
        if has_shape != shape:
            return f"tensor {name!r} has shape {has_shape}, expected {shape}"
        if has_dtype != dtype:
            return f"tensor {name!r} has dtype {has_dtype}, expected {dtype}"
        if not _floating(dtype):
            return f"tensor {name!r} is not floating point ({dtype})"
        if finite and not _finite(update.arrays, name, size_of(shape), np.dtype(dtype).itemsize):
            return f"tensor {name!r} holds NaN or infinite values"
    return None


def _floating(dtype: str) -> bool:
    try:
        return bool(np.issubdtype(np.dtype(dtype), np.floating))
    except TypeError:  # names numpy does not parse back, such as str96: not floating point either
        return False


def _finite(arrays: Tensors, name: str, size: int, itemsize: int) -> bool:
    return all(np.isfinite(read(arrays, name, start, stop)).all() for start, stop in spans(size, rows=1, itemsize=itemsize))


def cast_like(arrays: Mapping[str, np.ndarray], signature: Signature) -> Arrays:
    """``arrays`` cast (rounded once, IEEE) to the layout's dtypes, in the layout's name order."""
    return {name: np.asarray(arrays[name]).astype(dtype, copy=False) for name, _, dtype in signature}


def uniform_weights(updates: Sequence[Update]) -> list[tuple[str, float]]:
    return [(u.participant, 1.0 / len(updates)) for u in updates]
