"""ledger.weights.WeightsFile: refuses what from_safetensors refuses, in its words, and reads any range."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from ledger.errors import WeightsError
from ledger.weights import WeightsFile, from_safetensors, layout_of, to_safetensors

TENSORS = {
    "fc.weight": np.arange(60, dtype=np.float32).reshape(3, 4, 5) - 30,
    "fc.bias": np.array([0.5, -0.0, 2.0], np.float32),
    "half": np.linspace(-1, 1, 9).astype(np.float16),
    "scalar": np.array([7.25], np.float64),
    "none": np.zeros(0, np.float32),
}
LAYOUT = layout_of(TENSORS)


def _nan() -> bytes:
    bad = dict(TENSORS, **{"fc.bias": np.array([0, np.nan, 1], np.float32)})
    return to_safetensors(bad)


def _torch_save() -> bytes:
    buffer = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buffer)
    return buffer.getvalue()


BAD = {
    "a pickle": pickle.dumps({"w": [1.0]}),
    "a torch.save archive": _torch_save(),
    "junk": b"not weights at all",
    "a truncated blob": to_safetensors(TENSORS)[:-7],
    "a tensor missing": to_safetensors({k: v for k, v in TENSORS.items() if k != "half"}),
    "a wrong shape": to_safetensors(dict(TENSORS, **{"fc.bias": np.zeros(4, np.float32)})),
    "a wrong dtype": to_safetensors(dict(TENSORS, scalar=np.array([7.25], np.float32))),
    "a NaN": _nan(),
}


@pytest.mark.parametrize("what", sorted(BAD))
def test_a_bad_blob_is_refused_in_from_safetensors_words_and_nothing_is_written(what, tmp_path):
    with pytest.raises(WeightsError) as expected:
        from_safetensors(BAD[what], layout=LAYOUT, source="update 7")
    path = tmp_path / "spooled.safetensors"
    with pytest.raises(WeightsError) as refused:
        WeightsFile.write(BAD[what], path, layout=LAYOUT, source="update 7")
    assert str(refused.value) == str(expected.value) and "update 7" in str(refused.value)
    assert not path.exists()


def test_any_range_of_any_tensor_reads_back_as_written(tmp_path):
    data = to_safetensors(TENSORS, metadata={"participant": "0xabc", "round": 3})
    lazy, metadata = WeightsFile.write(data, tmp_path / "u.safetensors", layout=LAYOUT)
    assert metadata == {"participant": "0xabc", "round": 3}
    assert lazy.path.read_bytes() == data and lazy.layout == LAYOUT and sorted(lazy) == sorted(TENSORS)
    for name, array in TENSORS.items():
        flat = array.reshape(-1)
        assert lazy[name].shape == array.shape and lazy[name].tobytes() == array.tobytes()
        for start in range(flat.size + 1):
            for stop in range(start, flat.size + 1, 3):
                assert lazy.read(name, start, stop).tobytes() == flat[start:stop].tobytes()
        into = np.full(flat.size + 2, 99, array.dtype)
        assert lazy.read(name, 0, flat.size, out=into[1:-1]).tobytes() == flat.tobytes()
        assert into[0] == into[-1] == 99


def test_a_spooled_file_cut_short_afterwards_is_an_error_not_data(tmp_path):
    lazy, _ = WeightsFile.write(to_safetensors(TENSORS), tmp_path / "u.safetensors")
    lazy.path.write_bytes(lazy.path.read_bytes()[:-16])
    with pytest.raises(WeightsError, match="shorter than when it was written"):
        for name in lazy:  # whichever tensor was laid out last
            lazy.read(name)


def test_an_existing_file_is_never_overwritten(tmp_path):
    path = tmp_path / "u.safetensors"
    path.write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        WeightsFile.write(to_safetensors(TENSORS), path)
    assert path.read_bytes() == b"someone else's"
