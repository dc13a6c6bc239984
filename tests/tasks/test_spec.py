"""A task folder's declaration: read from pyproject.toml, each mistake refused with its sentence."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest

from node.round_config import TrainingSettings
from node.tasks.errors import TaskError
from node.tasks.spec import DEFAULT_SETTINGS, effective_settings, read_spec
from tests.tasks.helpers import write_task

SOURCE = "def model(): ...\ndef load_data(path, *, partition, partitions, seed): ...\n"


def test_a_declared_task_is_read_with_its_settings_dependencies_and_excludes(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", SOURCE, module="pkg.task", settings="epochs = 3\nlr = 1",
                        dependencies='["torch>=2", "numpy"]', extra='exclude = ["*.csv", "data/"]\n')
    spec = read_spec(folder)
    assert (spec.name, spec.module) == ("probe", "pkg.task")
    assert spec.settings == {"epochs": 3, "lr": 1.0} and isinstance(spec.settings["lr"], float)
    assert spec.dependencies == ("torch>=2", "numpy") and spec.exclude == ("*.csv", "data/")
    assert effective_settings(spec.settings, {"batch_size": 8}, task="probe") == {"epochs": 3, "batch_size": 8, "lr": 1.0}
    assert DEFAULT_SETTINGS == asdict(TrainingSettings())  # a task's defaults are the rounds' defaults


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("no-pyproject", "has no pyproject.toml"),
        ("no-table", "declares no [tool.fedledger.task] table"),
        ("bad-toml", "is not valid TOML"),
        ("bad-name", "is not a usable task name"),
        ("bad-module", "which is not an importable Python name"),
        ("file-module", "a file name; set [tool.fedledger.task] module to the name Python imports it by, 'task'"),
        ("missing-module", "names module 'other' but neither other.py nor other/__init__.py exists"),
        ("unknown-setting", "declares unknown settings 'epoch'"),
        ("bad-setting", "setting batch_size = 0"),
        ("unknown-key", "has unknown keys 'setting'"),
        ("bad-dependency", "is not a valid requirement"),
        ("not-a-folder", "is not a folder"),
    ],
)
def test_each_mistake_in_a_declaration_gets_its_sentence(tmp_path: Path, change: str, expected: str) -> None:
    folder = write_task(tmp_path / "t", SOURCE)
    pyproject = folder / "pyproject.toml"
    text = pyproject.read_text()
    if change == "no-pyproject":
        pyproject.unlink()
    elif change == "no-table":
        pyproject.write_text('[project]\nname = "x"\n')
    elif change == "bad-toml":
        pyproject.write_text("[tool.fedledger.task\n")
    elif change == "bad-name":
        pyproject.write_text(text.replace('name = "probe"\nmodule', 'name = "my task!"\nmodule'))
    elif change == "bad-module":
        pyproject.write_text(text.replace('module = "task"', 'module = "my-task"'))
    elif change == "file-module":
        pyproject.write_text(text.replace('module = "task"', 'module = "task.py"'))
    elif change == "missing-module":
        pyproject.write_text(text.replace('module = "task"', 'module = "other"'))
    elif change == "unknown-setting":
        pyproject.write_text(text + "\n[tool.fedledger.task.settings]\nepoch = 3\n")
    elif change == "bad-setting":
        pyproject.write_text(text + "\n[tool.fedledger.task.settings]\nbatch_size = 0\n")
    elif change == "unknown-key":
        pyproject.write_text(text + "setting = 1\n")
    elif change == "bad-dependency":
        pyproject.write_text(text.replace('["torch"]', '["torch>>2"]'))
    elif change == "not-a-folder":
        folder = pyproject
    with pytest.raises(TaskError) as caught:
        read_spec(folder)
    message = str(caught.value)
    assert expected in message, message
    assert "\n" not in message and message.endswith(".")
