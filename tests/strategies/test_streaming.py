"""Aggregating from spooled files, a slice at a time, gives the bytes of aggregating arrays in memory.

The slice budget (``node.strategies.tensors.SLICE_BYTES``) and FedAvg's block are shrunk here so
that every tensor is cut into many slices and Krum builds one vector per block: the golden vectors
must come out to the bit, and so must random updates of every shape and dtype, every strategy with
and without clipping, and the rejections of bad updates.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from ledger.errors import InvalidInputError
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import to_safetensors
from node.strategies import AggregateResult, Update, strategy_from_params
from tests.golden.inputs import CASES, arrays_cid, base_model, outcome, updates
from tests.strategies.spooling import spooled

EXPECTED = json.loads((Path(__file__).parents[1] / "golden" / "expected.json").read_text())

STRATEGIES = [
    {"name": "fedavg"},
    {"name": "median"},
    {"name": "trimmed-mean", "beta": 0.2},
    {"name": "krum", "f": 1, "m": 1},
    {"name": "krum", "f": 2, "m": 4},
    {"name": "fedavg", "clip_norm": 4.0},
    {"name": "median", "clip_norm": 4.0},
    {"name": "trimmed-mean", "beta": 0.1, "clip_norm": 4.0},
    {"name": "krum", "f": 1, "m": 3, "clip_norm": 4.0},
]


@pytest.fixture
def thin_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices of a few coordinates, FedAvg blocks of 5, Krum blocks of one vector."""
    monkeypatch.setattr("node.strategies.tensors.SLICE_BYTES", 200)
    monkeypatch.setattr("node.strategies.fedavg.BLOCK", 5)


def _fingerprint(result: AggregateResult) -> dict[str, str]:
    text = json.dumps(outcome(result), sort_keys=True, separators=(",", ":"))
    return {"global_cid": arrays_cid(result.arrays), "outcome_sha256": hashlib.sha256(text.encode()).hexdigest()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_golden_case_gives_its_golden_cid_from_spooled_files_in_thin_slices(name, tmp_path, thin_slices):
    case = CASES[name]
    files = spooled(updates()[: case.count], tmp_path)
    result = strategy_from_params(case.strategy).aggregate(files, base=base_model() if case.with_base else None)
    assert _fingerprint(result) == EXPECTED["cases"][name]


def _random_updates(count: int, *, seed: int) -> tuple[list[Update], dict[str, np.ndarray]]:
    """Updates of five tensors (a scalar, an empty one, 1-D to 3-D; three dtypes) with signed zeros and outliers."""
    shapes = {"conv": ((3, 2, 5), "float64"), "dense": ((13, 7), "float32"), "empty": ((0,), "float32"),
              "half": ((21,), "float16"), "scale": ((), "float32")}
    rng = np.random.default_rng(seed)
    base = {name: (rng.standard_normal(shape) * 3).astype(dtype) for name, (shape, dtype) in shapes.items()}
    made = []
    for index in range(count):
        arrays = {}
        for name, (shape, dtype) in shapes.items():
            values = base[name] + rng.standard_normal(shape) * 0.5 * (1 + index % 4) * (60 if index % 5 == 3 else 1)
            zeros = rng.random(shape) < 0.15
            arrays[name] = np.where(zeros, np.where(rng.random(shape) < 0.5, -0.0, 0.0), values).astype(dtype)
        made.append(Update(f"0x{'aBcD'[index % 4]}{index:039x}", arrays, int(rng.integers(1, 1000))))
    return made, base


def _same(a: AggregateResult, b: AggregateResult) -> None:
    assert to_safetensors(a.arrays) == to_safetensors(b.arrays)
    assert cid_of_bytes(to_safetensors(a.arrays)) == cid_of_bytes(to_safetensors(b.arrays))
    assert (a.included, a.rejected, a.notes) == (b.included, b.rejected, b.notes)


@pytest.mark.parametrize("params", STRATEGIES, ids=lambda p: "-".join(str(v) for v in p.values()))
@pytest.mark.parametrize("count", [6, 11])
def test_the_streamed_and_in_memory_paths_give_byte_identical_models(params, count, tmp_path, monkeypatch):
    made, base = _random_updates(count, seed=count)
    in_memory = strategy_from_params(params).aggregate(made, base=base)
    assert any(a.dtype == np.float16 for a in in_memory.arrays.values())
    files = spooled(made, tmp_path)
    _same(in_memory, strategy_from_params(params).aggregate(files, base=base))
    monkeypatch.setattr("node.strategies.tensors.SLICE_BYTES", 1)  # one coordinate per slice, one vector per block
    monkeypatch.setattr("node.strategies.fedavg.BLOCK", 1)
    _same(in_memory, strategy_from_params(params).aggregate(files, base=base))
    if "clip_norm" not in params:
        _same(strategy_from_params(params).aggregate(made), strategy_from_params(params).aggregate(files))


def _bad_updates(good: list[Update]) -> list[Update]:
    """Each kind of update screening refuses, built from a good one; the NaN sits past the first slices."""
    arrays = good[0].arrays

    def but(**changes: np.ndarray) -> dict[str, np.ndarray]:
        return {**arrays, **changes}

    late_nan = arrays["dense"].copy()
    late_nan[-1, -1] = np.nan
    return [
        Update("0x" + "1" * 40, but(dense=late_nan), 5),
        Update("0x" + "2" * 40, but(half=np.full(21, np.inf, np.float16)), 5),
        Update("0x" + "3" * 40, but(dense=arrays["dense"].T.copy()), 5),  # wrong shape
        Update("0x" + "4" * 40, but(conv=arrays["conv"].astype(np.float32)), 5),  # wrong dtype
        Update("0x" + "5" * 40, {k: v for k, v in arrays.items() if k != "scale"}, 5),  # a tensor missing
        Update("0x" + "6" * 40, but(extra=np.zeros(2, np.float32)), 5),  # one too many
        Update("0x" + "7" * 40, arrays, 0),  # no samples
        Update(good[1].participant.upper().replace("0X", "0x"), good[1].arrays, 3),  # a second from one party
    ]


@pytest.mark.parametrize("params", STRATEGIES, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_bad_updates_are_rejected_from_files_exactly_as_from_memory(params, tmp_path, thin_slices):
    good, base = _random_updates(7, seed=3)
    batch = _bad_updates(good) + good
    in_memory = strategy_from_params(params).aggregate(batch, base=base)
    assert len(in_memory.rejected) >= 8
    reasons = " ".join(reason for _, reason in in_memory.rejected)
    for fragment in ("NaN or infinite", "has shape", "has dtype", "tensor names differ", "sample count", "same participant"):
        assert fragment in reasons
    _same(in_memory, strategy_from_params(params).aggregate(spooled(batch, tmp_path), base=base))


def test_nothing_usable_in_files_is_refused_as_in_memory(tmp_path, thin_slices):
    good, base = _random_updates(2, seed=5)
    bad = _bad_updates(good)[:2]
    for params in STRATEGIES:
        with pytest.raises(InvalidInputError) as in_memory:
            strategy_from_params(params).aggregate(bad, base=base)
        with pytest.raises(InvalidInputError) as from_files:
            strategy_from_params(params).aggregate(spooled(bad, tmp_path / params["name"]), base=base)
        assert str(from_files.value) == str(in_memory.value)
        assert "NaN or infinite" in str(from_files.value)

