"""`fedledger demo --private` on the in-process chain: DP within the budget, sealed updates, an audit that
recomputed every party's ε (and the sealed aggregates with the auditor's key)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.fixed_point import epsilon_to_micros
from node.privacy import demo_settings
from node.privacy.accountant import cumulative_epsilon
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli


@pytest.mark.slow
def test_demo_private_reports_the_privacy_it_kept(tmp_path: Path) -> None:
    report = ok(cli("demo", "--private", "--participants", "2", "--rounds", "2", "--json",
                    "--workdir", str(tmp_path / "demo"))).json()
    assert report["audit_ok"] is True and report["audit_failures"] == []
    dp, _ = demo_settings.private_demo_settings(2)
    spent = epsilon_to_micros(cumulative_epsilon([dp, dp], demo_settings.DELTA)) / 1e6
    privacy = report["privacy"]
    assert (privacy["epsilon_budget"], privacy["delta"], privacy["sealed"]) == (8.0, 1e-5, True)
    assert len(privacy["epsilon_spent"]) == 2 and set(privacy["epsilon_spent"].values()) == {spent}
    assert 7.5 < spent <= 8.0  # the noise is the least that keeps both rounds within the budget
    assert [r["accepted"] for r in report["rounds"]] == [2, 2] and report["final_accuracy"] > 0.5
    assert [r["fed_eval_accuracy"] for r in report["rounds"]] == [None, None]  # nothing measured on private data

