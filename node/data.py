"""Training data: the bundled digits set split across parties, or a party's own file.

The default data is scikit-learn's digits (1,797 images of 8x8, shipped inside the package, nothing
downloaded), scaled to 0..1 and split into a held-out test set plus one shard per party, either IID
or skewed per class by a Dirichlet(alpha) draw. Every split is a pure function of its seed, so every
party (and the demo) rebuilds the same shards.
"""

from __future__ import annotations

import csv
import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ledger.errors import InvalidInputError

FEATURES = 64
CLASSES = 10
MIN_SHARD = 5  # every party gets at least this many samples, even under a strong non-IID skew
_DIGITS_MAX = 16.0  # digits pixels are integers 0..16


@dataclass(frozen=True)
class Dataset:
    """Features ``x`` (float32 [n, 64], 0..1) and labels ``y`` (int64 [n], 0..9)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return int(self.y.shape[0])


def digits_file() -> Path:
    """scikit-learn's bundled digits file (``sklearn/datasets/data/digits.csv.gz``), found without importing
    scikit-learn: its import (scipy.stats with it) costs about 2 s of CPU in every process that loads the digits,
    and ``load_digits`` only reads this file (``np.loadtxt``, 64 pixel columns then the label)."""
    spec = importlib.util.find_spec("sklearn")
    path = None if spec is None or spec.origin is None else Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if path is None or not path.is_file():
        raise InvalidInputError("scikit-learn's bundled digits data was not found; reinstall scikit-learn (a "
                                "dependency of fedledger), or train on the party's own data with --data.")
    return path


def load_digits_data() -> Dataset:
    """The whole bundled digits set, scaled to 0..1: the arrays ``sklearn.datasets.load_digits()`` gives."""
    with gzip.open(digits_file(), mode="rt", encoding="utf-8") as text:
        table = np.loadtxt(text, delimiter=",")
    x = (table[:, :-1].astype(np.float32) / _DIGITS_MAX).astype(np.float32)
    return Dataset(x=x, y=table[:, -1].astype(np.int64))


def load_digits_split(
    *, parties: int, seed: int, non_iid_alpha: float | None = None, test_fraction: float = 0.2
) -> tuple[list[Dataset], Dataset]:
    """Per-party shards and a held-out test set of the digits data; disjoint, seeded.

    ``non_iid_alpha=None`` deals the training samples out evenly at random (IID); a number draws,
    for each class, the share every party gets from Dirichlet(alpha): small alpha, strong skew.
    """
    if parties < 1:
        raise InvalidInputError(f"the number of parties must be at least 1, not {parties}.")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidInputError(f"test_fraction must lie strictly between 0 and 1, not {test_fraction}.")
    if non_iid_alpha is not None and not non_iid_alpha > 0:
        raise InvalidInputError(f"the non-IID alpha must be a positive number, not {non_iid_alpha}.")
    data = load_digits_data()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data))
    n_test = round(len(data) * test_fraction)
    test_idx, train_idx = np.sort(order[:n_test]), order[n_test:]
    if len(train_idx) < parties * MIN_SHARD:
        raise InvalidInputError(
            f"{len(train_idx)} training samples cannot give {parties} parties {MIN_SHARD} each; use fewer parties."
        )
    if non_iid_alpha is None:
        shards = np.array_split(train_idx, parties)
    else:
        shards = _dirichlet_shards(train_idx, data.y, parties=parties, alpha=non_iid_alpha, rng=rng)
    test = Dataset(x=data.x[test_idx], y=data.y[test_idx])
    return [Dataset(x=data.x[np.sort(s)], y=data.y[np.sort(s)]) for s in shards], test


def digits_validation(seed: int) -> Dataset:
    """The held-out test split of the bundled digits under ``seed`` (whatever the number of shards or their
    skew): what a party validates a built-in round's base model on, disjoint from every shard of that seed."""
    return load_digits_split(parties=1, seed=seed)[1]


def _dirichlet_shards(
    indices: np.ndarray, labels: np.ndarray, *, parties: int, alpha: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Split ``indices`` so each class is shared among parties by a Dirichlet(alpha) draw."""
    buckets: list[list[int]] = [[] for _ in range(parties)]
    for cls in range(CLASSES):
        members = indices[labels[indices] == cls]
        shares = rng.dirichlet(np.full(parties, alpha))
        cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
        for party, part in enumerate(np.split(members, cuts)):
            buckets[party].extend(part.tolist())
    # Top up parties the draw starved, taking from the largest shard, so nobody trains on nothing.
    for party in range(parties):
        while len(buckets[party]) < MIN_SHARD:
            donor = max(range(parties), key=lambda p: len(buckets[p]))
            buckets[party].append(buckets[donor].pop())
    return [np.asarray(b, dtype=np.int64) for b in buckets]


def load_local_data(path: str | Path) -> Dataset:
    """A party's own data: ``.npz`` with arrays ``x`` [n, 64] and ``y`` [n], or CSV (64 features, then the label)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"data file {path} does not exist; pass the path of a .npz or .csv file.")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        x, y = _read_npz(path)
    elif suffix == ".csv":
        x, y = _read_csv(path)
    else:
        raise InvalidInputError(f"data file {path} is neither .npz nor .csv; convert it to one of those formats.")
    return _validated(path, x, y)


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            if "x" not in archive.files or "y" not in archive.files:
                raise InvalidInputError(
                    f"data file {path} lacks array 'x' or 'y' (has {sorted(archive.files)}); save it with np.savez(path, x=..., y=...)."
                )
            return np.asarray(archive["x"]), np.asarray(archive["y"])
    except InvalidInputError:
        raise
    except Exception as error:  # zipfile, pickle refusal, truncated data: all mean "not a usable npz"
        raise InvalidInputError(
            f"data file {path} is not a readable .npz archive ({error}); save it with np.savez(path, x=..., y=...)."
        ) from error


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    except (UnicodeDecodeError, csv.Error) as error:
        raise InvalidInputError(
            f"data file {path} is not a readable CSV file ({error}); write {FEATURES} numeric feature columns then the label."
        ) from error
    if rows and not all(_is_number(cell) for cell in rows[0]):
        rows = rows[1:]  # a header line (column names, e.g. "p0,...,p63,label" or "0,...,63,label")
    if not rows:
        raise InvalidInputError(f"data file {path} holds no samples; add rows of {FEATURES} features then the label.")
    widths = {len(row) for row in rows}
    if widths != {FEATURES + 1}:
        raise InvalidInputError(
            f"data file {path} has rows of {sorted(widths)} columns; each row needs {FEATURES} features then the label (no index column)."
        )
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError as error:
        raise InvalidInputError(
            f"data file {path} holds a value that is not a number ({error}); keep only numbers in the CSV."
        ) from error
    return table[:, :FEATURES], table[:, FEATURES]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _validated(path: Path, x: np.ndarray, y: np.ndarray) -> Dataset:
    """Check shapes, labels and values; return the data in the dtypes training expects."""
    if x.ndim != 2 or x.shape[1] != FEATURES:
        raise InvalidInputError(
            f"data file {path} has features of shape {list(x.shape)}; each sample needs {FEATURES} features (an 8x8 image, flattened)."
        )
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise InvalidInputError(
            f"data file {path} has {x.shape[0]} samples but labels of shape {list(y.shape)}; give one label per sample."
        )
    if x.shape[0] == 0:
        raise InvalidInputError(f"data file {path} holds no samples; add at least one sample.")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise InvalidInputError(f"data file {path} has non-numeric or non-finite features; replace NaN/inf with numbers.")
    if not np.issubdtype(y.dtype, np.number):
        raise InvalidInputError(f"data file {path} has non-numeric labels; use integer class labels 0..{CLASSES - 1}.")
    labels = y.astype(np.float64)
    if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
        raise InvalidInputError(f"data file {path} has labels that are not integers; use integer class labels 0..{CLASSES - 1}.")
    if labels.min() < 0 or labels.max() >= CLASSES:
        raise InvalidInputError(
            f"data file {path} has labels outside 0..{CLASSES - 1} (found {int(labels.min())}..{int(labels.max())}); relabel the classes."
        )
    return Dataset(x=np.ascontiguousarray(x, dtype=np.float32), y=labels.astype(np.int64))
