"""`fedledger demo` through the console script: one JSON document on the in-process chain, and on
anvil a workspace that `chain up` reopens with the deployment and its finalized round."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from deploy.anvil import stop_pidfile
from tests.fixtures_cli import Outcome, ok
from tests.fixtures_cli import run_fedledger as fedledger


def check_report(outcome: Outcome, *, rounds: int) -> dict[str, Any]:
    """The demo's --json document: one parseable document on stdout, an audit that passed, exit 0."""
    assert outcome.stdout.strip(), outcome.stderr
    report = json.loads(outcome.stdout)  # exactly one JSON document, nothing else on stdout
    assert report["audit_ok"] is True and report["audit_failures"] == [], report
    assert outcome.exit_code == 0, outcome.stderr
    assert [r["round_id"] for r in report["rounds"]] == list(range(1, rounds + 1))
    for row in report["rounds"]:
        assert 0.0 <= row["accuracy"] <= 1.0
        assert row["accepted"] >= 1 and row["rejected"] == 0
    assert isinstance(report["final_accuracy"], float)
    assert report["final_accuracy"] == report["rounds"][-1]["accuracy"]
    assert report["gas"]["submit_update"] > 21_000
    return report


def test_demo_on_the_in_process_chain_prints_one_json_report() -> None:
    outcome = fedledger("demo", "--participants", "3", "--rounds", "2", "--json", timeout=300)
    if outcome.stdout.strip():
        shutil.rmtree(json.loads(outcome.stdout)["workdir"], ignore_errors=True)  # the demo's temporary workspace
    report = check_report(outcome, rounds=2)
    assert [r["accepted"] for r in report["rounds"]] == [3, 3]
    # Federated evaluation: each party scores the round's base model on its share of the held-out digits;
    # weighted by samples that is the previous global model's accuracy on all of them, as measured centrally.
    first, second = report["rounds"]
    assert 0.0 <= first["fed_eval_accuracy"] < 0.5  # the genesis model guesses
    assert second["fed_eval_accuracy"] == pytest.approx(first["accuracy"], abs=1e-12)
    assert report["final_accuracy"] > 0.5  # two rounds of three parties on digits already learn


@pytest.mark.slow
def test_demo_output_in_a_log_has_a_line_per_round_then_the_table_and_the_verdict(tmp_path: Path) -> None:
    outcome = ok(fedledger("demo", "--participants", "2", "--rounds", "2", "--workdir", str(tmp_path / "demo"), timeout=300))
    lines = outcome.stderr.splitlines()
    progress = [line for line in lines if line.startswith("round ")]
    assert [line.split(":")[0] for line in progress] == ["round 1", "round 2"], outcome.stderr
    header = next(i for i, line in enumerate(lines) if "test accuracy" in line and "accepted" in line)
    verdict = next(i for i, line in enumerate(lines) if line.startswith("Final test accuracy"))
    assert lines.index(progress[-1]) < header < verdict, outcome.stderr
    assert "audit passed" in lines[verdict], outcome.stderr  # on its own line, after the table


@pytest.mark.slow
def test_demo_refuses_bad_options_and_a_failed_demo_leaves_no_workspace_behind(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    refused = fedledger("demo", "--strategy", "fedsgd", "--workdir", str(workdir))
    assert refused.exit_code == 1 and "unknown strategy 'fedsgd'" in refused.error_line()
    assert not workdir.exists()
    failed = fedledger("demo", "--non-iid", "-1", "--participants", "1", "--rounds", "1", "--workdir", str(workdir))
    assert failed.exit_code == 1
    assert "the non-IID alpha must be a positive number" in failed.error_line(alone=False)  # after the banner
    assert not workdir.exists()  # so the same command, corrected, can run again


@pytest.mark.slow
@pytest.mark.anvil
def test_demo_on_anvil_leaves_a_workspace_that_chain_up_reopens(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    outcome = fedledger("demo", "--chain", "anvil", "--workdir", str(workdir), "--participants", "2", "--rounds", "1",
                        "--json", timeout=300)
    report = check_report(outcome, rounds=1)
    assert report["chain"] == "anvil" and Path(report["workdir"]) == workdir.resolve()
    assert (workdir / "chain" / "anvil.json").stat().st_size > 0
    try:
        ok(fedledger("chain", "up", "--detach", "-w", str(workdir)))
        status = ok(fedledger("round", "status", "1", "--json", "-w", str(workdir))).json()
        assert status["state"] == "finalized"
        assert status["global_cid"] == report["rounds"][0]["global_cid"]
        assert len(status["updates"]) == 2
        # The audit reads the same federated evaluation from the updates, checked against the hashes on chain.
        audited = ok(fedledger("audit", "rounds", "--json", "-w", str(workdir))).json()[0]
        assert (audited["fed_eval_parties"], audited["fed_eval_note"]) == (2, None)
        assert audited["fed_eval_accuracy"] == pytest.approx(report["rounds"][0]["fed_eval_accuracy"], abs=1e-12)
        # The demo's admin key is kept there, encrypted: the federation goes on with a next round.
        admin = json.loads((workdir / "keys" / "admin.json").read_text())
        assert "crypto" in admin and sorted(p.name for p in (workdir / "keys").iterdir()) == ["admin.json", "party1.json", "party2.json"]
        opened = ok(fedledger("round", "open", "--base-cid", status["global_cid"], "--deadline", "600", "--min-updates", "2",
                              "--json", "-w", str(workdir), env={"FEDLEDGER_KEY_PASSWORD": "fedledger-demo"})).json()
        assert opened["round_id"] == 2
        ok(fedledger("chain", "down", "-w", str(workdir)))
    finally:
        stop_pidfile(workdir / "chain" / "anvil.pid")
