"""Weights as safetensors: same tensors give the same bytes; loading refuses anything unsafe or unexpected."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from ledger.errors import WeightsError
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors, layout_of, to_safetensors

TENSORS = {"fc.weight": np.arange(12, dtype=np.float32).reshape(3, 4), "fc.bias": np.ones(3, dtype=np.float32)}
METADATA = {"model": "mlp", "round": 3, "base_cid": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"}
LAYOUT = layout_of(TENSORS)


def test_same_tensors_same_bytes_whatever_the_order() -> None:
    forward = to_safetensors(TENSORS, metadata=METADATA)
    backward = to_safetensors(dict(reversed(TENSORS.items())), metadata=dict(reversed(METADATA.items())))
    as_torch = to_safetensors({name: torch.from_numpy(value) for name, value in TENSORS.items()}, metadata=METADATA)
    assert forward == backward == as_torch


def test_same_bytes_in_another_process_which_never_imports_torch() -> None:
    """safetensors orders metadata keys at random per process; ours must not depend on it. Numpy
    arrays are written without importing torch (~2 s of CPU in every aggregator and auditor)."""
    script = (
        "import sys, numpy as np; from ledger.weights import to_safetensors; from ledger.ipfs.unixfs import cid_of_bytes;"
        "t = {'fc.weight': np.arange(12, dtype=np.float32).reshape(3, 4), 'fc.bias': np.ones(3, dtype=np.float32)};"
        "print(cid_of_bytes(to_safetensors(t, metadata={'round': 3, 'model': 'mlp', "
        "'base_cid': 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'})), 'torch' in sys.modules)"
    )
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, text=True).stdout.split()
    assert other == [cid_of_bytes(to_safetensors(TENSORS, metadata=METADATA)), "False"]


ARRAYS_OF_EVERY_KIND = {
    "f32": np.linspace(-1, 1, 24, dtype=np.float32).reshape(2, 3, 4),
    "f64": np.linspace(-1, 1, 5, dtype=np.float64),
    "f16": np.array([0.5, -2.0, 65504.0], dtype=np.float16),
    "i64": np.array([-(2**40), 0, 7], dtype=np.int64),
    "i32": np.array([[1, -2], [3, -4]], dtype=np.int32),
    "i8": np.array([-128, 127], dtype=np.int8),
    "u8": np.arange(5, dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "scalar": np.array(3.5, dtype=np.float32),
    "empty": np.zeros((0, 4), dtype=np.float32),
    "transposed": np.arange(6, dtype=np.float32).reshape(2, 3).T,
    "reversed": np.arange(5, dtype=np.float32)[::-1],
    "fortran": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
}


def test_numpy_arrays_give_the_bytes_torch_gave_for_every_dtype_and_shape() -> None:
    """The same bytes as writing through torch, as fedledger did before (0-d arrays become 1-d, as
    np.ascontiguousarray made them then): every CID of a numpy-written update stays what it was."""
    through_torch = {name: torch.from_numpy(np.ascontiguousarray(value).copy()) for name, value in ARRAYS_OF_EVERY_KIND.items()}
    blob = to_safetensors(ARRAYS_OF_EVERY_KIND, metadata=METADATA)
    assert blob == to_safetensors(through_torch, metadata=METADATA)
    arrays, _ = from_safetensors(blob)
    for name, value in ARRAYS_OF_EVERY_KIND.items():
        np.testing.assert_array_equal(arrays[name], np.ascontiguousarray(value))
        assert arrays[name].dtype == value.dtype


def test_round_trip_keeps_arrays_and_metadata() -> None:
    arrays, metadata = from_safetensors(to_safetensors(TENSORS, metadata=METADATA), layout=LAYOUT)
    assert metadata == METADATA
    assert set(arrays) == set(TENSORS)
    for name, value in TENSORS.items():
        np.testing.assert_array_equal(arrays[name], value)


def test_views_and_shared_storage_are_saved() -> None:
    """A transposed view (not contiguous) and a row sharing its storage (which safetensors refuses
    as such) are saved as the values they show, the same bytes as independent copies."""
    base = torch.arange(16, dtype=torch.float32).reshape(4, 4)
    blob = to_safetensors({"t": base.t(), "row": base[1]})
    arrays, _ = from_safetensors(blob)
    np.testing.assert_array_equal(arrays["t"], base.t().numpy())
    np.testing.assert_array_equal(arrays["row"], np.array([4.0, 5.0, 6.0, 7.0], dtype=np.float32))
    assert blob == to_safetensors({"t": np.ascontiguousarray(base.numpy().T), "row": base.numpy()[1].copy()})
    np.testing.assert_array_equal(base.numpy(), np.arange(16, dtype=np.float32).reshape(4, 4))  # sources untouched


def test_a_pickle_is_refused_and_never_unpickled() -> None:
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    with pytest.raises(WeightsError, match="looks like a pickle; fedledger only loads safetensors"):
        from_safetensors(pickle.dumps(Boom()))
    buffer = io.BytesIO()
    torch.save({"fc.bias": torch.ones(3)}, buffer)
    with pytest.raises(WeightsError, match="looks like a pickle"):
        from_safetensors(buffer.getvalue())


@pytest.mark.parametrize("blob", [b"", b"hello", b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!", np.zeros(9).tobytes()])
def test_bytes_that_are_not_safetensors_are_refused(blob: bytes) -> None:
    with pytest.raises(WeightsError, match="is not a safetensors file"):
        from_safetensors(blob)


def test_wrong_shape_is_refused_naming_the_tensor() -> None:
    blob = to_safetensors({**TENSORS, "fc.bias": np.ones(4, dtype=np.float32)})
    with pytest.raises(WeightsError, match=r"'fc\.bias'.*shape \(4,\).*expects \(3,\)"):
        from_safetensors(blob, layout=LAYOUT)


def test_wrong_names_and_dtypes_are_refused() -> None:
    with pytest.raises(WeightsError, match=r"lacks fc\.bias.*unexpected fc\.extra"):
        from_safetensors(to_safetensors({"fc.weight": TENSORS["fc.weight"], "fc.extra": TENSORS["fc.bias"]}), layout=LAYOUT)
    with pytest.raises(WeightsError, match="float64 but the model expects float32"):
        from_safetensors(to_safetensors({**TENSORS, "fc.bias": np.ones(3)}), layout=LAYOUT)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_infinity_are_refused(bad: float) -> None:
    blob = to_safetensors({**TENSORS, "fc.bias": np.array([0.0, bad, 1.0], dtype=np.float32)})
    with pytest.raises(WeightsError, match="'fc.bias'.*NaN or infinite"):
        from_safetensors(blob, layout=LAYOUT)


def test_anything_but_arrays_is_refused_naming_the_tensor() -> None:
    with pytest.raises(WeightsError, match=r"tensor 'fc.bias' is a list, not a torch tensor or numpy array; pass arrays only\."):
        to_safetensors({"fc.weight": TENSORS["fc.weight"], "fc.bias": [1.0, 2.0, 3.0]})
