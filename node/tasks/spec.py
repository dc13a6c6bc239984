"""A task folder's declaration: ``[tool.fedledger.task]`` in its ``pyproject.toml``, read and checked.

```toml
[project]
name = "my-task"
version = "0.1.0"
dependencies = ["torch", "numpy>=1.26"]

[tool.fedledger.task]
name = "my-task"
module = "task"              # importable from the folder: task.py or task/__init__.py
exclude = ["data/*.csv"]     # optional globs left out of the bundle

[tool.fedledger.task.settings]   # optional defaults; a round's own settings win
epochs = 2
batch_size = 32
lr = 0.05
```
"""

from __future__ import annotations

import keyword
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from node.tasks.errors import TaskError

PYPROJECT = "pyproject.toml"
SETTINGS_KEYS: tuple[str, ...] = ("batch_size", "epochs", "lr")
DEFAULT_SETTINGS: dict[str, int | float] = {"epochs": 2, "batch_size": 32, "lr": 0.05}
"""The same defaults as ``node.round_config.TrainingSettings`` (a test keeps them equal)."""

_TASK_KEYS = ("exclude", "module", "name", "settings")
_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$")
NAME_RULE = "letters, digits, '.', '_' and '-', starting and ending with a letter or digit, at most 64 characters"


@dataclass(frozen=True)
class TaskSpec:
    """What a task folder declares; ``settings`` holds only the keys it declares, already checked."""

    name: str
    module: str
    settings: dict[str, int | float] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


def check_name(name: object, *, where: str = "[tool.fedledger.task] name") -> str:
    """``name`` if it is a usable task name, else TaskError naming the rule."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise TaskError(f"{where} {name!r} is not a usable task name; use {NAME_RULE}.")
    return name


def check_module_name(module: object, *, task: str) -> str:
    """``module`` if it is a dotted Python module name (``task`` or ``pkg.task``), else TaskError."""
    if isinstance(module, str) and module.endswith(".py"):
        raise TaskError(
            f"task {task!r} names module {module!r}, a file name; set [tool.fedledger.task] module to the name "
            f"Python imports it by, {module.removesuffix('.py').replace('/', '.')!r}."
        )
    parts = module.split(".") if isinstance(module, str) else []
    if not parts or not all(part.isidentifier() and not keyword.iskeyword(part) for part in parts):
        raise TaskError(
            f"task {task!r} names module {module!r}, which is not an importable Python name; "
            "set [tool.fedledger.task] module to a dotted name such as 'task' or 'mypackage.task'."
        )
    return str(module)


def module_files(module: str) -> tuple[str, str]:
    """The two relative paths that can hold ``module``: ``a/b.py`` and ``a/b/__init__.py``."""
    base = module.replace(".", "/")
    return f"{base}.py", f"{base}/__init__.py"


def check_settings(settings: object, *, task: str, where: str = "[tool.fedledger.task.settings]") -> dict[str, int | float]:
    """``settings`` with checked types (``lr`` always a float, so ``1`` and ``1.0`` give the same bytes)."""
    if not isinstance(settings, Mapping):
        raise TaskError(f"task {task!r}: {where} must be a table of {', '.join(SETTINGS_KEYS)}; fix it in pyproject.toml.")
    unknown = sorted(str(key) for key in settings if key not in SETTINGS_KEYS)
    if unknown:
        raise TaskError(
            f"task {task!r} declares unknown settings {', '.join(repr(k) for k in unknown)} in {where}; "
            f"use only {', '.join(SETTINGS_KEYS)}."
        )
    checked: dict[str, int | float] = {}
    for key in sorted(settings):
        value = settings[key]
        if key in ("epochs", "batch_size"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TaskError(f"task {task!r}: setting {key} = {value!r} in {where} must be a whole number of at least 1; fix it.")
            checked[key] = int(value)
        else:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise TaskError(f"task {task!r}: setting lr = {value!r} in {where} must be a positive number; fix it.")
            checked[key] = float(value)
    return checked


def check_dependencies_list(dependencies: object, *, task: str) -> tuple[str, ...]:
    """``[project] dependencies`` as a tuple of requirement strings, each one that pip would parse."""
    if dependencies is None:
        return ()
    if not isinstance(dependencies, list) or not all(isinstance(item, str) for item in dependencies):
        raise TaskError(f"task {task!r}: [project] dependencies must be a list of strings such as 'numpy>=1.26'; fix pyproject.toml.")
    for item in dependencies:
        try:
            Requirement(item)
        except InvalidRequirement as error:
            raise TaskError(
                f"task {task!r} has dependency {item!r}, which is not a valid requirement ({' '.join(str(error).split())}); "
                "write it as pip does, e.g. 'numpy>=1.26'."
            ) from error
    return tuple(dependencies)


def read_spec(folder: Path | str) -> TaskSpec:
    """The checked declaration of the task in ``folder``; TaskError with one sentence when it is unusable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TaskError(f"{folder} is not a folder; give the folder of a task (make one with 'fedledger task new DIR').")
    path = folder / PYPROJECT
    if not path.is_file():
        raise TaskError(
            f"folder {folder} has no {PYPROJECT}; a task declares itself there under [tool.fedledger.task] "
            "(make one with 'fedledger task new DIR')."
        )
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise TaskError(f"{path} is not valid TOML ({error}); fix its syntax.") from error
    table = document.get("tool", {}).get("fedledger", {}).get("task") if isinstance(document.get("tool"), dict) else None
    if not isinstance(table, dict):
        raise TaskError(
            f"{path} declares no [tool.fedledger.task] table; add one with name and module "
            "(see the pyproject.toml that 'fedledger task new DIR' writes)."
        )
    name = check_name(table.get("name"))
    unknown = sorted(str(key) for key in table if key not in _TASK_KEYS)
    if unknown:
        raise TaskError(
            f"task {name!r} has unknown keys {', '.join(repr(k) for k in unknown)} in [tool.fedledger.task]; "
            f"use only {', '.join(_TASK_KEYS)}."
        )
    module = check_module_name(table.get("module"), task=name)
    if not any((folder / candidate).is_file() for candidate in module_files(module)):
        first, second = module_files(module)
        raise TaskError(
            f"task {name!r} names module {module!r} but neither {first} nor {second} exists in {folder}; "
            "create it or fix module in [tool.fedledger.task]."
        )
    settings = check_settings(table.get("settings", {}), task=name)
    exclude = table.get("exclude", [])
    if not isinstance(exclude, list) or not all(isinstance(item, str) and item.strip() for item in exclude):
        raise TaskError(f"task {name!r}: [tool.fedledger.task] exclude must be a list of glob patterns such as 'data/*'; fix it.")
    project = document.get("project", {})
    dependencies = check_dependencies_list(project.get("dependencies") if isinstance(project, dict) else None, task=name)
    return TaskSpec(name=name, module=module, settings=settings, dependencies=dependencies, exclude=tuple(exclude))


def effective_settings(declared: Mapping[str, Any], given: Mapping[str, Any] | None, *, task: str) -> dict[str, int | float]:
    """fedledger's defaults, overridden by the task's declared settings, overridden by ``given``."""
    merged: dict[str, Any] = {**DEFAULT_SETTINGS, **dict(declared), **dict(given or {})}
    return check_settings(merged, task=task, where="the training settings")
