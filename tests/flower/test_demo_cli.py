"""`fedledger demo --engine`: refusals come as one sentence before any workspace is made; the run config the
Flower demo hands the example app (`demo --engine flower --private` runs by hand: README, Flower section)."""

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


def test_the_private_flower_demos_run_config_is_the_example_apps_and_names_the_rounds_dp_section() -> None:
    pytest.importorskip("flwr")
    import tomllib

    from node.flower.demo import flower_run_config, private_run_config
    from node.flower.deployment import EXAMPLE_APP
    from node.demo import DemoOptions
    from node.privacy.demo_settings import private_demo_settings

    sys.path.insert(0, str(EXAMPLE_APP))
    try:
        from fedledger_digits.server_app import dp_settings
    finally:
        sys.path.remove(str(EXAMPLE_APP))
    declared = tomllib.loads((EXAMPLE_APP / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    dp, _ = private_demo_settings(5)
    run = {**flower_run_config(DemoOptions()), **private_run_config(dp, seal_to=("0xA", "0xB"), encryption_key="agg")}
    assert set(run) <= set(declared)  # Flower takes only the keys the app declares
    assert dp_settings(run) == dp and dp_settings(declared) is None  # the app's default: no DP
