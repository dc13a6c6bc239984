"""Arithmetic whose result bits are fixed by the inputs alone, not by the CPU or numpy's kernels and version.

numpy's elementwise operations (``+ - * /``, casts) are IEEE-754, each correctly rounded, whichever
SIMD kernel runs them. What numpy does not fix: the order of a reduction (``np.sum`` and
``np.linalg.norm`` add pairwise in blocks whose shape depends on the kernel, the memory layout and
the version; BLAS more so), the place of ``-0.0`` against ``+0.0`` after a sort (they compare
equal, and each sorting kernel leaves them as it goes), and, in a process whose floating-point
unit flushes subnormals to zero (FTZ/DAZ), every result that touches one. So the strategies:

- add across updates only with elementwise ``+=`` in canonical update order, and within a vector
  only with the fold of :func:`squared_norm`, whose order is written here;
- sort only values whose zeros were all made ``+0.0`` first (:func:`drop_negative_zeros`), so the
  sorted bytes are unique (NaN cannot occur: screening refuses it);
- refuse to run where subnormals are flushed (:func:`require_ieee_subnormals`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ledger.errors import LedgerError
from node.strategies.tensors import Tensors, layout_of, read, size_of


class FloatingPointModeError(LedgerError, RuntimeError):
    """This process flushes subnormal floats to zero, so its aggregates would differ from other machines'."""


def _bits(value: np.ndarray) -> int:
    """The bit pattern of a one-element float array (compared as an integer: DAZ also bends comparisons)."""
    return int(value.view({4: np.uint32, 8: np.uint64}[value.dtype.itemsize])[0])


def subnormals_flushed() -> bool:
    """Whether float arithmetic in this thread treats subnormal inputs or results as zero (FTZ/DAZ)."""
    tiny32 = np.array([1], dtype=np.uint32).view(np.float32)  # 2**-149, the smallest float32 subnormal
    smallest_normal64 = np.array([2.0**-1022], dtype=np.float64)
    return (
        _bits(tiny32.astype(np.float64)) != 0x36A0_0000_0000_0000  # DAZ on a float32 -> float64 cast
        or _bits(tiny32 + tiny32) != 2  # DAZ or FTZ in float32 arithmetic
        or _bits(smallest_normal64 / 2.0) != 0x0008_0000_0000_0000  # FTZ on a float64 result
        or _bits(np.array([2.0**-140], dtype=np.float64).astype(np.float32)) != 1 << 9  # FTZ on a float32 cast
    )


def require_ieee_subnormals() -> None:
    """Raise FloatingPointModeError when this thread flushes subnormals (checked per call: the mode can change)."""
    if subnormals_flushed():
        raise FloatingPointModeError(
            "this process flushes subnormal floats to zero (FTZ/DAZ is on, set by torch.set_flush_denormal(True) "
            "or a library built with -ffast-math), so its aggregate would differ from other machines'; "
            "aggregate in a process without that setting."
        )


def drop_negative_zeros(values: np.ndarray) -> np.ndarray:
    """``values`` with every ``-0.0`` turned into ``+0.0``, in place (``x + 0.0`` is ``x`` for every other x)."""
    return np.add(values, values.dtype.type(0), out=values)


def flatten(arrays: Tensors, *, base: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """One float64 vector of all tensors in name order, minus the base model when given."""
    layout = layout_of(arrays)
    names = sorted(layout)
    vector = np.empty(sum(size_of(layout[name][0]) for name in names), dtype=np.float64)
    start = 0
    for name in names:
        stop = start + size_of(layout[name][0])
        values = read(arrays, name, 0, stop - start)
        if base is None:
            vector[start:stop] = values
        else:  # float64(x) - float64(base): both casts exact, one IEEE subtraction
            np.subtract(values, np.asarray(base[name], dtype=np.float64).reshape(-1), out=vector[start:stop], dtype=np.float64)
        start = stop
    return vector


def squared_norm(parts: Sequence[np.ndarray]) -> float:
    """The sum of the squares of every value of ``parts`` (float64 arrays, taken in the order given), by the fold.

    The fold: the squares go into one buffer padded with ``+0.0`` to a power-of-two length; then,
    until one value is left, its upper half is added onto its lower half, element by element. Each
    step is elementwise, so the result depends on the values alone (with the error bound of pairwise
    summation); ``np.sum`` and ``np.linalg.norm`` promise no order at all.
    """
    buffer = _padded(sum(part.size for part in parts))
    start = 0
    for part in parts:
        flat = part.reshape(-1)
        np.multiply(flat, flat, out=buffer[start : start + flat.size])
        start += flat.size
    return _fold(buffer)


def squared_distance(vector: np.ndarray, other: np.ndarray) -> float:
    """``squared_norm([vector - other])`` for two 1-D float64 arrays, without a temporary."""
    buffer = _padded(vector.size)
    head = buffer[: vector.size]
    np.subtract(vector, other, out=head)
    np.multiply(head, head, out=head)
    return _fold(buffer)


def _padded(size: int) -> np.ndarray:
    """A float64 buffer of the smallest power-of-two length >= ``size``, ``+0.0`` past ``size``."""
    buffer = np.empty(1 << max(size - 1, 0).bit_length(), dtype=np.float64)
    buffer[size:] = 0.0
    return buffer


def _fold(buffer: np.ndarray) -> float:
    width = buffer.size
    while width > 1:
        width //= 2
        np.add(buffer[:width], buffer[width : 2 * width], out=buffer[:width])
    return float(buffer[0])
