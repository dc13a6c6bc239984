"""Updates as the aggregator holds them: safetensors files on disk, read a slice at a time."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import safetensors.numpy

from ledger.weights import WeightsFile
from node.strategies import Update


def weights_file(arrays: Mapping[str, np.ndarray], path: Path) -> WeightsFile:
    """``arrays`` written to ``path`` as safetensors and opened lazily, unchecked (NaN and all: screening's job)."""
    data = safetensors.numpy.save({name: np.asarray(array).copy(order="C") for name, array in arrays.items()})
    path.write_bytes(data)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    entries = {
        name: (tuple(np.shape(array)), np.asarray(array).dtype, 8 + length + header[name]["data_offsets"][0])
        for name, array in arrays.items()
    }
    return WeightsFile(path, entries)


def spooled(updates: Iterable[Update], directory: Path) -> list[Update]:
    """Each update with its arrays moved to a file in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        Update(u.participant, weights_file(u.arrays, directory / f"{k}.safetensors"), u.samples)
        for k, u in enumerate(updates)
    ]
