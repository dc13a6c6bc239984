"""Model weights as safetensors bytes: deterministic to write, safe to read.

Same tensors give the same bytes on every machine (so the same update gets the same CID):
safetensors lays tensors out by dtype then name, whatever the dict order, and metadata is
written as ONE key, ``fedledger``, holding sorted-key JSON (safetensors orders metadata keys
at random per process). Reading never unpickles anything: a pickle or a ``torch.save`` archive
is recognised and refused with a sentence, as is anything else that is not safetensors, a
tensor whose name, shape or dtype differs from the expected layout, and NaN or infinity.

An aggregator that must not hold every update in memory at once writes each checked blob to a file
(:meth:`WeightsFile.write`) and reads it back a range of coordinates at a time.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save_numpy

from ledger.canonical_json import canonical_json
from ledger.errors import WeightsError

if TYPE_CHECKING:
    import torch

Layout = dict[str, tuple[tuple[int, ...], str]]
"""Tensor name -> (shape, dtype name such as ``"float32"``)."""

METADATA_KEY = "fedledger"
_MAX_HEADER = 100 * 1024 * 1024


def _is_torch_tensor(value: object) -> bool:
    """Whether ``value`` is a torch tensor, without importing torch: none exists unless torch was imported."""
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(value, torch_module.Tensor)


def _as_torch(tensor: torch.Tensor | np.ndarray) -> torch.Tensor:
    import torch

    if isinstance(tensor, torch.Tensor):
        return tensor.detach().to("cpu").contiguous().clone()
    return torch.from_numpy(np.ascontiguousarray(tensor).copy())


def _refuse_non_arrays(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> None:
    for name, value in tensors.items():
        if not (isinstance(value, np.ndarray) or _is_torch_tensor(value)):
            raise WeightsError(f"tensor {str(name)!r} is a {type(value).__name__}, not a torch tensor or numpy array; pass arrays only.")


def to_safetensors(
    tensors: Mapping[str, torch.Tensor | np.ndarray], *, metadata: Mapping[str, Any] | None = None
) -> bytes:
    """The deterministic safetensors bytes of ``tensors`` with ``metadata`` (JSON values) beside them.

    Numpy arrays alone are written without torch (importing it costs a process ~2 s); the bytes are
    the same either way: safetensors serializes each tensor's dtype name, shape and little-endian
    bytes, and both paths make a 0-d array 1-d (``np.ascontiguousarray``) as fedledger always has.
    """
    header = None
    if metadata is not None:
        try:
            header = {METADATA_KEY: canonical_json(dict(metadata)).decode("utf-8")}
        except (TypeError, ValueError) as error:
            raise WeightsError(f"weights metadata must be plain JSON values ({error}); pass strings and numbers.") from error
    _refuse_non_arrays(tensors)
    if any(_is_torch_tensor(value) for value in tensors.values()):
        from safetensors.torch import save as _st_save_torch

        return bytes(_st_save_torch({str(name): _as_torch(value) for name, value in tensors.items()}, metadata=header))
    return bytes(_st_save_numpy({str(name): np.ascontiguousarray(value) for name, value in tensors.items()}, metadata=header))


def layout_of(tensors: Mapping[str, torch.Tensor | np.ndarray]) -> Layout:
    """Each tensor's shape and dtype name."""
    layout: Layout = {}
    for name, value in tensors.items():
        dtype = str(value.dtype).removeprefix("torch.") if _is_torch_tensor(value) else np.dtype(value.dtype).name
        layout[str(name)] = (tuple(int(size) for size in value.shape), dtype)
    return layout


HEADER_ALLOWANCE = 1024 * 1024
"""Room for the safetensors header (tensor names, offsets, metadata) on top of the tensor bytes."""


def max_blob_bytes(layout: Layout) -> int:
    """The most bytes a safetensors blob of ``layout`` can need; anything larger is not such a blob."""
    tensor_bytes = sum(int(np.prod(shape, dtype=np.int64)) * _itemsize(dtype) for shape, dtype in layout.values())
    return tensor_bytes + HEADER_ALLOWANCE


def _itemsize(dtype: str) -> int:
    try:
        return np.dtype(dtype).itemsize
    except TypeError:  # torch-only names such as bfloat16
        import torch

        return int(getattr(torch, dtype).itemsize)


def _refuse_non_safetensors(data: bytes, source: str) -> dict[str, Any]:
    """The parsed safetensors header, or WeightsError saying what the bytes look like instead."""
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise WeightsError(f"{source} looks like a pickle; fedledger only loads safetensors (save with ledger.weights.to_safetensors).")
    if data[:4] == b"PK\x03\x04":
        raise WeightsError(
            f"{source} looks like a pickle (a torch.save zip archive); fedledger only loads safetensors "
            "(save with ledger.weights.to_safetensors)."
        )
    not_st = f"{source} is not a safetensors file"
    if len(data) < 8:
        raise WeightsError(f"{not_st} (only {len(data)} bytes); give the weights file that fedledger wrote.")
    (length,) = struct.unpack("<Q", data[:8])
    if length > min(len(data) - 8, _MAX_HEADER) or data[8:9] != b"{":
        raise WeightsError(f"{not_st} (no safetensors header); give the weights file that fedledger wrote.")
    try:
        header = json.loads(data[8 : 8 + length])
    except (UnicodeDecodeError, ValueError) as error:
        raise WeightsError(f"{not_st} (its header is not JSON); give the weights file that fedledger wrote.") from error
    if not isinstance(header, dict):
        raise WeightsError(f"{not_st} (its header is not a JSON object); give the weights file that fedledger wrote.")
    return header


def _metadata(header: dict[str, Any], source: str) -> dict[str, Any]:
    raw = header.get("__metadata__") or {}
    if not isinstance(raw, dict):
        raise WeightsError(f"{source} has malformed safetensors metadata; give the weights file that fedledger wrote.")
    metadata: dict[str, Any] = {key: value for key, value in raw.items() if key != METADATA_KEY}
    if METADATA_KEY in raw:
        try:
            ours = json.loads(raw[METADATA_KEY])
        except (TypeError, ValueError) as error:
            raise WeightsError(f"{source} has fedledger metadata that is not JSON; the file was altered.") from error
        if not isinstance(ours, dict):
            raise WeightsError(f"{source} has fedledger metadata that is not a JSON object; the file was altered.")
        metadata.update(ours)
    return metadata


def _check_layout(arrays: Mapping[str, np.ndarray], layout: Layout, source: str) -> None:
    missing = sorted(set(layout) - set(arrays))
    extra = sorted(set(arrays) - set(layout))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
        if extra:
            parts.append(f"has unexpected {', '.join(extra[:5])}{' …' if len(extra) > 5 else ''}")
        raise WeightsError(f"{source} does not match the model: it {' and '.join(parts)}; train it from this round's base model.")
    for name, (shape, dtype) in layout.items():
        array = arrays[name]
        if tuple(array.shape) != tuple(shape):
            raise WeightsError(
                f"tensor {name!r} in {source} has shape {tuple(array.shape)} but the model expects {tuple(shape)}; "
                "train it from this round's base model."
            )
        if array.dtype.name != dtype:
            raise WeightsError(
                f"tensor {name!r} in {source} is {array.dtype.name} but the model expects {dtype}; save the weights as {dtype}."
            )


def from_safetensors(
    data: bytes, *, layout: Layout | None = None, source: str = "this weights blob"
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The arrays and metadata of safetensors ``data``, checked; ``source`` names it in errors."""
    data = bytes(data)
    header = _refuse_non_safetensors(data, source)
    try:
        arrays = dict(_st_load(data))
    except Exception as error:  # safetensors raises its own error types and TypeError for unknown dtypes
        raise WeightsError(f"{source} is not a readable safetensors file ({error}); give the weights file that fedledger wrote.") from error
    metadata = _metadata(header, source)
    if layout is not None:
        _check_layout(arrays, layout, source)
    for name in sorted(arrays):
        array = arrays[name]
        if array.dtype.kind in "fc" and not np.isfinite(array).all():
            raise WeightsError(f"tensor {name!r} in {source} holds NaN or infinite values; the training diverged, retrain with a smaller learning rate.")
    return arrays, metadata


def metadata_of(data: bytes, *, source: str = "this weights blob") -> dict[str, Any]:
    """The metadata of safetensors ``data``, read from its header alone: its tensors are neither
    loaded nor checked (for readers that want what a file says about itself, not its weights)."""
    return _metadata(_refuse_non_safetensors(data, source), source)


class WeightsFile(Mapping[str, np.ndarray]):
    """A checked safetensors file on disk whose tensors are read a flat range of coordinates at a time.

    Made only by :meth:`write`, which checks the bytes exactly as :func:`from_safetensors` does (same
    refusals, same sentences) before they reach the disk, so reading needs no second check. ``read``
    uses ``pread`` on a file opened per call, not ``safetensors.safe_open``: its default mmap backend
    leaves every page read mapped into the process (resident memory grows to the whole file), its
    pread backend took seconds per slice of a large tensor here, and neither slices a flat range that
    crosses rows; and no descriptor stays open, so a thousand updates need no raised file limit.
    As a mapping, ``file[name]`` is the whole tensor.
    """

    def __init__(self, path: Path, entries: dict[str, tuple[tuple[int, ...], np.dtype, int]]) -> None:
        self.path = path
        self._entries = entries  # name -> (shape, dtype, offset of its first byte in the file)
        self.layout: Layout = {name: (shape, dtype.name) for name, (shape, dtype, _) in entries.items()}

    @classmethod
    def write(
        cls, data: bytes, path: Path | str, *, layout: Layout | None = None, source: str = "this weights blob"
    ) -> tuple[WeightsFile, dict[str, Any]]:
        """Check ``data`` as :func:`from_safetensors` does, write it to ``path``; the lazy file and its metadata."""
        arrays, metadata = from_safetensors(data, layout=layout, source=source)
        (length,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8 : 8 + length])
        start = 8 + length
        entries = {
            name: (tuple(array.shape), array.dtype, start + int(header[name]["data_offsets"][0]))
            for name, array in arrays.items()
        }
        del arrays
        path = Path(path)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
        finally:
            os.close(descriptor)
        return cls(path, entries), metadata

    def read(self, name: str, start: int = 0, stop: int | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
        """Coordinates ``start:stop`` of tensor ``name`` in C order, as a 1-D array (into ``out`` when given)."""
        shape, dtype, offset = self._entries[name]
        stop = int(np.prod(shape, dtype=np.int64)) if stop is None else stop
        if out is None:
            out = np.empty(stop - start, dtype=dtype)
        target = memoryview(out).cast("B")
        position = offset + start * dtype.itemsize
        descriptor = os.open(self.path, os.O_RDONLY)
        try:
            while target:
                done = os.preadv(descriptor, [target], position)
                if done == 0:
                    raise WeightsError(f"{self.path} is shorter than when it was written; do not change spooled updates.")
                target, position = target[done:], position + done
        finally:
            os.close(descriptor)
        return out

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read(name).reshape(self._entries[name][0])

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
