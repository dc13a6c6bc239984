"""The built-in tasks: fedledger's digits models (``--model mlp|cnn``) as task folders shipped in the package.

Each folder is a task like any other (``pyproject.toml`` + a module), packed the same way, so each
has one CID on every machine (a test pins them). Their modules build ``node.models.DigitsMLP`` /
``DigitsCNN`` and read data through ``node.data``: that code is fedledger's own, covered by the
installed fedledger version rather than by the bundle's bytes.

Wherever a command takes a task's CID (``task show``, ``agreement publish --task``, ``model init
--task``), the short names ``mlp`` and ``cnn`` name these bundles: :func:`resolve_task`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.errors import MalformedCidError
from ledger.ipfs.cid import parse_cid
from node.tasks.errors import TaskError

if TYPE_CHECKING:
    from ledger.ipfs.store import ContentStore
    from ledger.types import Cid

_HERE = Path(__file__).resolve().parent

BUILTIN_TASKS: dict[str, Path] = {"mlp": _HERE / "digits_mlp", "cnn": _HERE / "digits_cnn"}
"""Short name (as ``--model`` spells it) -> the task's folder."""

_DESCRIPTIONS = {"mlp": "the digits MLP", "cnn": "the digits CNN"}


def builtin_names() -> str:
    """The built-in tasks as a sentence names them: ``mlp (the digits MLP) or cnn (the digits CNN)``."""
    return " or ".join(f"{name} ({_DESCRIPTIONS[name]})" for name in BUILTIN_TASKS)


@functools.lru_cache(maxsize=None)
def builtin_bundle(name: str) -> bytes:
    """The bundle of built-in task ``name`` ("mlp" or "cnn"); the same bytes on every machine."""
    from node.tasks.bundle import pack_task

    if name not in BUILTIN_TASKS:
        raise TaskError(f"there is no built-in task {name!r}; choose {builtin_names()}.")
    return pack_task(BUILTIN_TASKS[name])


def resolve_task(given: str, store: ContentStore | None = None) -> Cid:
    """The task bundle's CID that ``given`` names on a command line: a built-in task's short name gives its
    bundle's CID (the bundle added and pinned to ``store`` when one is given, so it is there like a packed
    task); anything else must be a CID. TaskError, one sentence listing the built-in names, otherwise."""
    if given in BUILTIN_TASKS:
        data = builtin_bundle(given)
        if store is not None:
            return store.add_bytes(data, pin=True)
        from ledger.ipfs.unixfs import cid_of_bytes

        return cid_of_bytes(data)
    try:
        return parse_cid(given)
    except MalformedCidError:
        raise TaskError(
            f"{given!r} is neither a task bundle's CID nor a built-in task; give the CID that `fedledger task pack` "
            f"printed, or a built-in task: {builtin_names()}."
        ) from None
