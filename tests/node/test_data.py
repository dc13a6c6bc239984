"""Digits splits (sizes, seeds, skew, disjointness) and loading a party's own data file."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ledger.errors import InvalidInputError
from node.data import (
    MIN_SHARD,
    Dataset,
    load_digits_data,
    load_digits_split,
    load_local_data,
)


def test_the_digits_are_sklearns_load_digits() -> None:
    from sklearn.datasets import load_digits

    digits, ours = load_digits(), load_digits_data()
    assert ours.x.dtype == np.float32 and ours.y.dtype == np.int64 and ours.x.shape == (1797, 64)
    assert np.array_equal(ours.x, (np.asarray(digits.data, dtype=np.float32) / 16.0).astype(np.float32))
    assert np.array_equal(ours.y, digits.target)


def _rows(*datasets: Dataset) -> Counter[bytes]:
    return Counter(x.tobytes() + y.tobytes() for d in datasets for x, y in zip(d.x, d.y, strict=True))


def _label_skew(shards: list[Dataset]) -> float:
    """Mean total-variation distance between each shard's label distribution and the overall one."""
    overall = np.bincount(np.concatenate([s.y for s in shards]), minlength=10) / sum(len(s) for s in shards)
    return float(np.mean([0.5 * np.abs(np.bincount(s.y, minlength=10) / len(s) - overall).sum() for s in shards]))


def test_digits_are_scaled_float32_and_int64_labels():
    data = load_digits_data()
    assert data.x.shape == (1797, 64) and data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert data.x.min() == 0.0 and data.x.max() == 1.0
    assert set(np.unique(data.y)) == set(range(10))


def test_iid_split_sizes_cover_the_data_without_overlap():
    shards, test = load_digits_split(parties=5, seed=3)
    assert len(test) == round(1797 * 0.2)
    sizes = [len(s) for s in shards]
    assert sum(sizes) + len(test) == 1797 and max(sizes) - min(sizes) <= 1
    assert _rows(*shards, test) == _rows(load_digits_data())  # every sample exactly once


def test_split_is_a_function_of_the_seed():
    first, test_a = load_digits_split(parties=3, seed=11, non_iid_alpha=0.5)
    again, test_b = load_digits_split(parties=3, seed=11, non_iid_alpha=0.5)
    other, _ = load_digits_split(parties=3, seed=12, non_iid_alpha=0.5)
    assert all(np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) for a, b in zip(first, again, strict=True))
    assert np.array_equal(test_a.y, test_b.y)
    assert not all(len(a) == len(b) and np.array_equal(a.y, b.y) for a, b in zip(first, other, strict=True))


def test_non_iid_split_skews_labels_and_stays_disjoint():
    iid, _ = load_digits_split(parties=5, seed=0)
    skewed, test = load_digits_split(parties=5, seed=0, non_iid_alpha=0.1)
    mild, _ = load_digits_split(parties=5, seed=0, non_iid_alpha=100.0)
    assert _label_skew(skewed) > 0.4
    assert _label_skew(mild) < 0.1 and _label_skew(iid) < 0.1
    assert _rows(*skewed, test) == _rows(load_digits_data())


def test_strong_skew_still_gives_every_party_some_samples():
    shards, _ = load_digits_split(parties=20, seed=5, non_iid_alpha=0.01)
    assert min(len(s) for s in shards) >= MIN_SHARD


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [({"parties": 0}, "at least 1"), ({"parties": 2, "non_iid_alpha": 0.0}, "positive"),
     ({"parties": 2, "test_fraction": 1.0}, "test_fraction"), ({"parties": 1000}, "fewer parties")],
)
def test_bad_split_arguments_are_refused(kwargs, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        load_digits_split(seed=0, **kwargs)


def _sample(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.random((n, 64)).astype(np.float32), np.arange(n, dtype=np.int64) % 10


def test_npz_data_loads(tmp_path: Path):
    x, y = _sample()
    np.savez(tmp_path / "mine.npz", x=x.astype(np.float64), y=y.astype(np.int32))
    data = load_local_data(tmp_path / "mine.npz")
    assert data.x.dtype == np.float32 and data.y.dtype == np.int64
    assert np.array_equal(data.x, x) and np.array_equal(data.y, y)


@pytest.mark.parametrize("header", [None, "p{}", "{}"])
def test_csv_data_loads_with_or_without_header(tmp_path: Path, header: str | None):
    x, y = _sample()
    lines = [",".join([header.format(i) for i in range(64)] + ["label"])] if header else []
    lines += [",".join([repr(float(v)) for v in row] + [str(label)]) for row, label in zip(x, y, strict=True)]
    (tmp_path / "mine.csv").write_text("\n".join(lines) + "\n")
    data = load_local_data(tmp_path / "mine.csv")
    assert np.array_equal(data.x, x) and np.array_equal(data.y, y)


def _write_csv(path: Path, rows: list[list[object]]) -> Path:
    path.write_text("".join(",".join(str(v) for v in row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "absent.npz", "does not exist"),
        (lambda d: (d / "data.txt").write_text("1,2") and d / "data.txt", "neither .npz nor .csv"),
        (lambda d: (d / "bad.npz").write_bytes(b"not a zip") and d / "bad.npz", "not a readable .npz"),
        (lambda d: np.savez(d / "k.npz", a=np.zeros((2, 64)), y=np.zeros(2)) or d / "k.npz", "lacks array 'x' or 'y'"),
        (lambda d: np.savez(d / "w.npz", x=np.zeros((2, 63)), y=np.zeros(2)) or d / "w.npz", "64 features"),
        (lambda d: np.savez(d / "n.npz", x=np.zeros((2, 64)), y=np.zeros(3)) or d / "n.npz", "one label per sample"),
        (lambda d: np.savez(d / "f.npz", x=np.zeros((2, 64)), y=np.array([1.0, 2.5])) or d / "f.npz", "not integers"),
        (lambda d: np.savez(d / "r.npz", x=np.zeros((2, 64)), y=np.array([1, 10])) or d / "r.npz", "outside 0..9"),
        (lambda d: np.savez(d / "m.npz", x=np.zeros((2, 64)), y=np.array([-1, 0])) or d / "m.npz", "outside 0..9"),
        (lambda d: np.savez(d / "e.npz", x=np.zeros((0, 64)), y=np.zeros(0)) or d / "e.npz", "no samples"),
        (lambda d: np.savez(d / "i.npz", x=np.full((1, 64), np.nan), y=np.zeros(1)) or d / "i.npz", "non-finite"),
        (lambda d: (d / "empty.csv").write_text("") or d / "empty.csv", "no samples"),
        (lambda d: _write_csv(d / "h.csv", [["a"] * 65]), "no samples"),
        (lambda d: _write_csv(d / "c.csv", [[0] * 10 + [1]]), "each row needs 64 features"),
        (lambda d: _write_csv(d / "s.csv", [[0] * 64 + [1], [0] * 63 + ["x", 1]]), "not a number"),
        (lambda d: _write_csv(d / "l.csv", [[0] * 64 + [12]]), "outside 0..9"),
        (lambda d: _write_csv(d / "g.csv", [[0] * 64 + [0.5]]), "not integers"),
    ],
)
def test_bad_local_data_is_refused_with_a_sentence_naming_the_file(tmp_path: Path, make, fragment):
    path = make(tmp_path)
    with pytest.raises(InvalidInputError, match=fragment) as caught:
        load_local_data(path)
    message = str(caught.value)
    assert str(path) in message and message.endswith(".")
