"""The built-in tasks: fedledger's digits models (``--model mlp|cnn``) as task folders shipped in the package.

Each folder is a task like any other (``pyproject.toml`` + a module), packed the same way, so each
has one CID on every machine (a test pins them). Their modules build ``node.models.DigitsMLP`` /
``DigitsCNN`` and read data through ``node.data``: that code is fedledger's own, covered by the
installed fedledger version rather than by the bundle's bytes.
"""

from __future__ import annotations

import functools
from pathlib import Path

from node.tasks.errors import TaskError

_HERE = Path(__file__).resolve().parent

BUILTIN_TASKS: dict[str, Path] = {"mlp": _HERE / "digits_mlp", "cnn": _HERE / "digits_cnn"}
"""Short name (as ``--model`` spells it) -> the task's folder."""


@functools.lru_cache(maxsize=None)
def builtin_bundle(name: str) -> bytes:
    """The bundle of built-in task ``name`` ("mlp" or "cnn"); the same bytes on every machine."""
    from node.tasks.bundle import pack_task

    if name not in BUILTIN_TASKS:
        raise TaskError(f"there is no built-in task {name!r}; choose one of {', '.join(sorted(BUILTIN_TASKS))}.")
    return pack_task(BUILTIN_TASKS[name])
