"""Task folders written by the tests: a pyproject.toml declaring the task and its module's source."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

BUILTIN_CIDS = {
    "mlp": "bafkreiaiqa3lh2hopna7kqmstx47i54ahe6i6punnnmbke3pelptio25bq",
    "cnn": "bafkreicsxkektlvu3lkfc62lviq3it3oyqg4ek3nhjqumepptvcjryeasa",
}
"""The built-in tasks' CIDs. Any change to a built-in task's files changes its CID: update it here on purpose,
never by accident."""

PROBE_MODEL = "torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))"
"""The model of most test tasks: tensors 0.weight (8, 4), 0.bias (8), 2.weight (2, 8), 2.bias (2)."""


ROWS_DATASET = """
    class Rows(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            generator = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 4, generator=generator)
            self.y = (self.x.sum(dim=1) > 0).long()
        def __len__(self):
            return len(self.y)
        def __getitem__(self, index):
            return self.x[index], self.y[index]
"""
"""A map-style torch Dataset of n random rows for PROBE_MODEL, labelled by their sign (task source, indented 4)."""


def probe_arrays() -> dict[str, np.ndarray]:
    """Base weights with the layout of PROBE_MODEL."""
    rng = np.random.default_rng(0)
    shapes = {"0.weight": (8, 4), "0.bias": (8,), "2.weight": (2, 8), "2.bias": (2,)}
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def write_task(
    folder: Path,
    source: str,
    *,
    name: str = "probe",
    module: str = "task",
    settings: str = "",
    dependencies: str = '["torch"]',
    extra: str = "",
) -> Path:
    """A task folder holding ``pyproject.toml`` and ``<module>.py`` with ``source`` (dedented)."""
    folder.mkdir(parents=True, exist_ok=True)
    pyproject = f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = {dependencies}\n\n'
    pyproject += f'[tool.fedledger.task]\nname = "{name}"\nmodule = "{module}"\n{extra}'
    if settings:
        pyproject += f"\n[tool.fedledger.task.settings]\n{settings}\n"
    (folder / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    path = folder / (module.replace(".", "/") + ".py")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return folder
