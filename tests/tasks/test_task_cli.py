"""``fedledger task new|pack|show`` against a workspace made with ``fedledger init``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ledger.ipfs.store import open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace
from node.cli import app as main_app
from node.cli import task_cmd
from node.tasks.bundle import pack_task
from tests.fixtures_cli import Outcome, ok
from tests.tasks.helpers import BUILTIN_CIDS


def _task_app() -> typer.Typer:
    """The main app if it has the task group already, else one with only the task group."""
    if any(group.name == "task" for group in main_app.registered_groups):
        return main_app
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root() -> None:
        """fedledger (the task group alone)."""

    task_cmd.register(app)
    return app


@pytest.fixture
def task_cli() -> Callable[..., Outcome]:
    app = _task_app()

    def run(*args: str) -> Outcome:
        result = CliRunner().invoke(app, ["task", *args], env={"COLUMNS": "400", "NO_COLOR": "1"})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return run


def test_new_pack_and_show_a_task_through_the_cli(
    cli: Callable[..., Outcome], task_cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    ok(cli("init", str(tmp_path / "fed")))
    w = ("--workdir", str(tmp_path / "fed"))
    folder = tmp_path / "tabular"

    made = ok(task_cli("new", str(folder), "--name", "breast-cancer", "--json")).json()
    assert made == {"folder": str(folder), "name": "breast-cancer", "files": ["pyproject.toml", "task.py"]}
    refused = task_cli("new", str(folder))
    assert refused.exit_code == 1 and "is not empty; give a new or empty folder" in refused.error_line()

    packed = ok(task_cli("pack", str(folder), *w, "--json")).json()
    data = pack_task(folder)
    assert packed == {"cid": cid_of_bytes(data), "name": "breast-cancer", "module": "task", "files": 2, "bytes": len(data)}
    store = open_store(Workspace.load(tmp_path / "fed"))
    assert store.get(packed["cid"]) == data and packed["cid"] in store.pins()
    plain = ok(task_cli("pack", str(folder), *w))
    assert plain.stdout == packed["cid"] + "\n"  # the CID alone on stdout, for $(...)

    shown = ok(task_cli("show", packed["cid"], *w, "--json")).json()
    assert (shown["cid"], shown["name"], shown["module"], shown["source"]) == (packed["cid"], "breast-cancer", "task", "store")
    assert shown["settings"] == {"batch_size": 32, "epochs": 5, "lr": 0.05}
    assert shown["dependencies"] == ["torch>=2.1", "numpy>=1.26", "scikit-learn>=1.4"]
    assert set(shown["files"]) == {"pyproject.toml", "task.py"}
    assert all(len(entry["sha256"]) == 64 and entry["size"] > 0 for entry in shown["files"].values())
    from_folder = ok(task_cli("show", str(folder), "--json")).json()  # no workspace needed
    assert {**from_folder, "source": "store"} == shown

    human = ok(task_cli("show", packed["cid"], *w))
    assert "breast-cancer" in human.stdout and shown["files"]["task.py"]["sha256"] in human.stdout
    assert "epochs=5" in human.stdout

    unknown = task_cli("show", "not-a-cid-or-folder", *w)
    assert unknown.exit_code == 1 and "is neither a task folder, a task bundle's CID nor a built-in task" in unknown.error_line()
    assert "a built-in task: mlp (the digits MLP) or cnn (the digits CNN)." in unknown.error_line()
    # A built-in task by its short name: the bundle shipped with fedledger, its pinned CID; no workspace needed.
    builtin = ok(task_cli("show", "mlp", "--json")).json()
    assert (builtin["cid"], builtin["name"], builtin["source"]) == (BUILTIN_CIDS["mlp"], "digits-mlp", "built-in")
    (folder / "pyproject.toml").write_text('[project]\nname = "x"\n')
    broken = task_cli("pack", str(folder), *w, "--json")
    assert broken.exit_code == 1 and broken.stdout == ""
    assert "declares no [tool.fedledger.task] table" in broken.error_line()
    assert json.loads(ok(task_cli("show", packed["cid"], *w, "--json")).stdout)["cid"] == packed["cid"]
