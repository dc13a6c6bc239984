"""``fedledger task new DIR``: a working task to start from, like ``flwr new``.

The template trains a small MLP on tabular data: a CSV file with a header row and the label in the
last column, one file per party (``--data FILE``); without a file it uses scikit-learn's bundled
breast-cancer data (569 samples, 30 features, 2 classes), split between parties by ``--shard/--of``.
It runs as written, and every line a user changes for their own data is marked in it.
"""

from __future__ import annotations

import re
from pathlib import Path

from node.tasks.errors import TaskError
from node.tasks.spec import check_name

MODULE = "task"

_PYPROJECT = """\
[project]
name = "{name}"
version = "0.1.0"
description = "A fedledger task: a small MLP on tabular data (CSV, label in the last column)"
requires-python = ">=3.11"
# Checked against each party's environment before the task runs; fedledger never installs anything.
dependencies = ["torch>=2.1", "numpy>=1.26", "scikit-learn>=1.4"]

[tool.fedledger.task]
name = "{name}"
module = "task"
# Globs left out of the bundle (the parties' data never travels): a name at any depth, or a path.
exclude = ["*.csv", "data/"]

# Defaults for the round's training settings (a round's own settings win).
[tool.fedledger.task.settings]
epochs = 5
batch_size = 32
lr = 0.05
"""

_TASK = '''\
"""A fedledger task: a small MLP for tabular data.

fedledger calls these functions in a process of their own (it holds no key):

- ``model()`` builds a fresh model; fedledger seeds torch before calling it, so every party and the
  genesis model agree on the initial weights.
- ``load_data(path, *, partition, partitions, seed)`` returns ``(train, validation)``, each a
  ``torch.utils.data.Dataset`` or an ``(x, y)`` pair of arrays. ``path`` is the party's ``--data``
  (None without one); ``partition``/``partitions`` its ``--shard``/``--of`` (None without them).

Optional hooks, used when defined: ``loss(outputs, targets)`` (default cross-entropy),
``evaluate(model, data, *, device) -> dict[str, float]`` (default loss and accuracy), and
``train(model, train, *, settings, device) -> (samples, metrics)`` for a loop of your own.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

FEATURES = 30  # change to your data's number of feature columns
CLASSES = 2  # change to your number of classes (labels 0 .. CLASSES-1)
HIDDEN = 32
VALIDATION_FRACTION = 0.2

Pair = tuple[torch.Tensor, torch.Tensor]  # (features, labels)


def model() -> nn.Module:
    """A fresh MLP: FEATURES -> HIDDEN -> CLASSES."""
    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))


def _read(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Features and labels: from a CSV file with a header row and the label last, else the bundled data."""
    if path is None:
        from sklearn.datasets import load_breast_cancer

        bundled = load_breast_cancer()
        return np.asarray(bundled.data, dtype=np.float64), np.asarray(bundled.target, dtype=np.int64)
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    if table.shape[1] != FEATURES + 1:
        raise ValueError(f"{path} has {table.shape[1]} columns; this task expects {FEATURES} features then the label")
    labels = table[:, -1]
    if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= CLASSES:
        raise ValueError(f"{path} has labels outside 0..{CLASSES - 1}; relabel the classes or change CLASSES")
    return table[:, :-1], labels.astype(np.int64)


def load_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    """This party's (train, validation) split, features standardised by its own training statistics."""
    x, y = _read(path)
    order = np.random.default_rng(seed).permutation(len(y))
    if partition is not None:
        order = np.array_split(order, partitions)[partition]  # every party draws the same order: disjoint shards
    cut = max(1, int(len(order) * VALIDATION_FRACTION))
    validation, train = order[:cut], order[cut:]
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-8

    def pair(rows: np.ndarray) -> Pair:
        return torch.from_numpy(((x[rows] - mean) / std).astype(np.float32)), torch.from_numpy(y[rows])

    return pair(train), pair(validation)
'''


def default_name(folder: Path) -> str:
    """A task name made from the folder's name (``My Task!`` -> ``my-task``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-._").lower()
    return name[:64].strip("-._") or "my-task"


def write_example(folder: Path | str, example: str, *, name: str | None = None) -> list[Path]:
    """Write the example task ``example`` (see ``node.tasks.examples``) into ``folder``; the files written.

    ``tabular`` is the template itself; the others are copied from the package, renamed when ``name`` is given.
    """
    from node.tasks.examples import EXAMPLES

    if example not in EXAMPLES:
        raise TaskError(f"there is no example task {example!r}; choose one of {', '.join(EXAMPLES)}.")
    source = EXAMPLES[example]
    if source is None:
        return write_template(folder, name=name)
    folder = _empty_folder(Path(folder))
    written = []
    for path in sorted(source.iterdir()):
        if path.suffix not in (".py", ".toml") or path.name == "__init__.py":
            continue
        text = path.read_text(encoding="utf-8")
        if name is not None and path.name == "pyproject.toml":
            chosen = check_name(name, where="the task name")
            text = re.sub(r'^name = "[^"]*"$', f'name = "{chosen}"', text, flags=re.M)
        (folder / path.name).write_text(text, encoding="utf-8")
        written.append(folder / path.name)
    return written


def _empty_folder(folder: Path) -> Path:
    """``folder``, created; refused when it is a file or a folder that is not empty (nothing is overwritten)."""
    if folder.exists() and not folder.is_dir():
        raise TaskError(f"{folder} is a file, not a folder; give the path of a new or empty folder.")
    if folder.is_dir() and any(folder.iterdir()):
        raise TaskError(f"folder {folder} is not empty; give a new or empty folder so that nothing in it is overwritten.")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_template(folder: Path | str, *, name: str | None = None) -> list[Path]:
    """Write a working task into ``folder`` (created; refused when it exists and is not empty); the files written."""
    folder = Path(folder)
    name = check_name(name if name is not None else default_name(folder), where="the task name")
    _empty_folder(folder)
    written = []
    for relative, text in (("pyproject.toml", _PYPROJECT.format(name=name)), (f"{MODULE}.py", _TASK)):
        path = folder / relative
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
