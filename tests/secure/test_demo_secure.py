"""`fedledger demo --secure` on the in-process chain: masked updates, a sum recomputed by the audit with no key;
with --private the rounds are DP-SGD rounds too (ε declared as always), not sealed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli


@pytest.mark.slow
def test_demo_secure_and_private_audits_without_a_key_and_refuses_two_parties(tmp_path: Path) -> None:
    report = ok(cli("demo", "--secure", "--private", "--participants", "3", "--rounds", "1", "--json",
                    "--workdir", str(tmp_path / "demo"))).json()
    assert report["audit_ok"] is True and report["audit_failures"] == [] and report["secure"] is True
    assert report["privacy"]["sealed"] is False and min(report["privacy"]["epsilon_spent"].values()) > 0
    assert [r["accepted"] for r in report["rounds"]] == [3]

    two = cli("demo", "--secure", "--participants", "2", "--workdir", str(tmp_path / "two"))
    assert two.exit_code == 1 and "at least 3 parties" in two.error_line()
    assert not (tmp_path / "two").exists()
    robust = cli("demo", "--secure", "--strategy", "median", "--workdir", str(tmp_path / "median"))
    assert robust.exit_code == 1 and "FedAvg only" in robust.error_line()
