"""One model's tensors, in memory or read lazily, and the coordinate slices strategies walk them in.

An update's tensors are either a plain mapping of arrays or a *reader* (``ledger.weights.WeightsFile``,
a clipped view of another reader): a mapping that also knows every tensor's shape and dtype without
reading it and hands out a flat range of coordinates on request. The strategies only ever ask for
ranges, so the same code aggregates arrays held in memory and updates spooled to disk, and gives the
same bits either way: every step across updates is elementwise, so how the coordinates are cut into
slices changes the order of nothing that is summed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

SLICE_BYTES = 64 << 20
"""Bytes of one slice taken from all updates together (updates x coordinates x item size): the working
set of the coordinate-wise strategies, and of Krum's blocks of whole vectors. Peak memory is about the
model's size plus this, whatever the number of updates."""

Layout = dict[str, tuple[tuple[int, ...], str]]


@runtime_checkable
class TensorReader(Protocol):
    """Tensors read on demand: ``layout`` without reading, ``read`` a flat range of one tensor."""

    layout: Layout

    def read(self, name: str, start: int = 0, stop: int | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
        """Coordinates ``start:stop`` of ``name`` in C order as a 1-D array (written into ``out`` when given)."""
        ...  # pragma: no cover


Tensors = Mapping[str, np.ndarray]
"""An update's tensors: a mapping of arrays, which may be a :class:`TensorReader`."""


def layout_of(tensors: Tensors) -> Layout:
    """Each tensor's shape and dtype name, in the mapping's order, read from no tensor data."""
    if isinstance(tensors, TensorReader):
        return dict(tensors.layout)
    layout: Layout = {}
    for name, value in tensors.items():
        array = np.asarray(value)
        layout[name] = (tuple(array.shape), array.dtype.name)
    return layout


def read(tensors: Tensors, name: str, start: int, stop: int, *, out: np.ndarray | None = None) -> np.ndarray:
    """Coordinates ``start:stop`` of tensor ``name``: a view of an in-memory array, or ``out`` filled by a reader."""
    if isinstance(tensors, TensorReader):
        return tensors.read(name, start, stop, out=out)
    flat = np.asarray(tensors[name]).reshape(-1)[start:stop]
    if out is None:
        return flat
    out[...] = flat
    return out


def size_of(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=np.int64))


def fitting(item_bytes: int) -> int:
    """How many items of ``item_bytes`` fit in SLICE_BYTES (at least one)."""
    return max(1, SLICE_BYTES // max(1, item_bytes))


def spans(size: int, *, rows: int, itemsize: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` ranges covering ``range(size)``, each as long as ``rows`` of them fit in SLICE_BYTES."""
    width = max(1, min(size, fitting(rows * itemsize)))
    for start in range(0, size, width):
        yield start, min(size, start + width)


def stacked(updates: Sequence[Tensors], name: str) -> Iterator[tuple[int, int, np.ndarray]]:
    """For each slice of tensor ``name``: its range and the updates' values there, one row per update.

    The rows are in the tensor's own dtype (nothing rounded) and in the order of ``updates``; the
    buffer is reused from slice to slice, so a caller may sort it in place but must not keep it.
    """
    shape, dtype = layout_of(updates[0])[name]
    size, itemsize = size_of(shape), np.dtype(dtype).itemsize
    buffer: np.ndarray | None = None
    for start, stop in spans(size, rows=len(updates), itemsize=itemsize):
        if buffer is None:
            buffer = np.empty((len(updates), stop - start), dtype=dtype)
        values = buffer[:, : stop - start]
        for row, tensors in zip(values, updates, strict=True):
            read(tensors, name, start, stop, out=row)
        yield start, stop, values
