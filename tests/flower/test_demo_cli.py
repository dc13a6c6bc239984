"""`fedledger demo --engine`: refusals come as one sentence before any workspace is made."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures_cli import Outcome


def test_an_unknown_engine_is_refused_and_leaves_no_workspace(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    outcome = cli("demo", "--engine", "ray", "--workdir", str(tmp_path / "demo"))
    assert outcome.exit_code == 1
    assert outcome.error_line() == "error: --engine must be plain or flower, not 'ray'."
    assert not (tmp_path / "demo").exists()


def test_the_flower_engine_without_flower_installed_names_the_extra(
    cli: Callable[..., Outcome], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "flwr", None)  # what find_spec sees when flwr is not installed
    monkeypatch.delitem(sys.modules, "node.flower", raising=False)
    outcome = cli("demo", "--engine", "flower", "--workdir", str(tmp_path / "demo"))
    assert outcome.exit_code == 1
    assert "Flower is not installed in this environment" in outcome.error_line()
    assert "pip install -e '.[flower]'" in outcome.error_line()
    assert not (tmp_path / "demo").exists()
