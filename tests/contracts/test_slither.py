"""The Slither gate: which findings are ours, what the triage file accepts, and when the check fails.

slither_report.json beside this file was recorded from slither-analyzer 0.11.6 on this project
(trimmed to a few results and the keys the checker reads): an OZ High and Medium, our triaged
Medium (`unused-return` on ECDSA.tryRecover in `join`), a Low of ours and of OZ, an Informational.
One test runs the real Slither on a small contract of its own; .ci/run runs it on contracts/.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deploy.compile import ROOT
from deploy.slither_check import (
    INSTALL,
    SLITHER,
    TRIAGE,
    TriageEntry,
    load_triage,
    main,
    own_findings,
    problems,
    run_slither,
)
from ledger.errors import ConfigError

REPORT = Path(__file__).with_name("slither_report.json")
JOIN_ENTRY = TriageEntry("unused-return", "Federation.join", "error and signer are checked", "ECDSA.tryRecover(")


def recorded() -> dict[str, Any]:
    return json.loads(REPORT.read_text())


def _result(report: dict[str, Any], check: str, own: bool = True) -> dict[str, Any]:
    return next(
        r
        for r in report["results"]["detectors"]
        if r["check"] == check and r["first_markdown_element"].startswith("contracts/") == own
    )


def test_only_findings_touching_our_sources_count() -> None:
    findings = own_findings(recorded())
    assert {(f.detector, f.impact, f.element) for f in findings} == {
        ("unused-return", "Medium", "Federation.join"),
        ("timestamp", "Low", "Federation.cancelRound"),
        ("pragma", "Informational", "^0.8.20"),
    }
    join = next(f for f in findings if f.detector == "unused-return")
    assert join.statements == ("(signer,recoverError,None) = ECDSA.tryRecover(digest,signature)",)
    assert join.location.startswith("contracts/Federation.sol#L")


def test_an_untriaged_medium_of_ours_fails_with_one_line_naming_detector_element_and_fix() -> None:
    [line] = problems(own_findings(recorded()), [])
    assert line.startswith("untriaged Medium unused-return in Federation.join (contracts/Federation.sol#L")
    assert "ignores return value by" in line
    assert '[[finding]] detector = "unused-return", element = "Federation.join", reason = ' in line
    assert "contracts/slither-triage.toml" in line
    assert "\n" not in line


def test_a_triaged_medium_passes_and_lows_and_openzeppelin_highs_are_not_gated() -> None:
    assert problems(own_findings(recorded()), [JOIN_ENTRY]) == []


def test_an_untriaged_high_of_ours_fails() -> None:
    report = recorded()
    high = copy.deepcopy(_result(report, "timestamp"))
    high.update(check="reentrancy-eth", impact="High")
    report["results"]["detectors"].append(high)
    [line] = problems(own_findings(report), [JOIN_ENTRY])
    assert line.startswith("untriaged High reentrancy-eth in Federation.cancelRound ")


def test_the_statement_pins_an_entry_to_one_call() -> None:
    report = recorded()
    other = copy.deepcopy(_result(report, "unused-return"))
    other["elements"][1]["name"] = "ECDSA.recoverCalldata(digest,signature)"
    report["results"]["detectors"].append(other)
    [line] = problems(own_findings(report), [JOIN_ENTRY])
    assert line.startswith("untriaged Medium unused-return in Federation.join ")
    anywhere_in_join = TriageEntry("unused-return", "Federation.join", "reason")
    assert problems(own_findings(report), [anywhere_in_join]) == []


def test_an_entry_that_matches_no_finding_is_stale() -> None:
    moved = TriageEntry("unused-return", "Federation.joinFor", "reason")
    lines = problems(own_findings(recorded()), [JOIN_ENTRY, moved])
    assert lines == [
        "stale triage entry: unused-return on Federation.joinFor matches no current Slither finding; "
        "delete it from contracts/slither-triage.toml (or correct its detector, element or statement)."
    ]


def test_an_entry_for_openzeppelin_code_is_stale() -> None:
    """Findings in node_modules are not ours, so an entry cannot hide one (and would rot)."""
    openzeppelin = TriageEntry("divide-before-multiply", "Math.mulDiv", "audited upstream")
    [line] = problems(own_findings(recorded()), [JOIN_ENTRY, openzeppelin])
    assert line.startswith("stale triage entry: divide-before-multiply on Math.mulDiv ")


def test_the_committed_triage_file_loads_with_a_reason_per_entry() -> None:
    entries = load_triage(TRIAGE)
    assert JOIN_ENTRY.detector in {e.detector for e in entries}
    assert all(len(e.reason) > 20 for e in entries)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[finding]]\ndetector = "x"\nelement = "C.f"\n', "finding 1 needs a non-empty `reason` string"),
        ('[[finding]]\ndetector = "x"\nelement = "C.f"\nreason = "  "\n', "finding 1 needs a non-empty `reason`"),
        ('[[finding]]\ndetector = "x"\nelement = "C.f"\nreason = "r"\nline = 149\n', "unknown keys ['line']"),
        ('[[finding]]\ndetector = "x"\nelement = "C.f"\nreason = "r"\nstatement = ""\n', "empty `statement`"),
        ("[finding\n", "is not valid TOML"),
        ('[accepted]\nx = 1\n', "unknown tables ['accepted']"),
    ],
)
def test_a_malformed_triage_file_is_refused_with_one_sentence(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "triage.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_triage(path)


def test_a_missing_triage_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="triage.toml is missing; create it"):
        load_triage(tmp_path / "triage.toml")


def test_the_command_exits_1_on_an_untriaged_finding_and_0_once_it_is_triaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    triage = tmp_path / "triage.toml"
    triage.write_text("")
    command = [sys.executable, "-m", "deploy.slither_check", "--report", str(REPORT), "--triage", str(triage)]
    failed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert failed.returncode == 1, failed.stderr
    assert failed.stdout.splitlines()[0].startswith("untriaged Medium unused-return in Federation.join ")
    triage.write_text(
        '[[finding]]\ndetector = "unused-return"\nelement = "Federation.join"\n'
        'statement = "ECDSA.tryRecover("\nreason = "both the error and the signer are checked"\n'
    )
    assert main(command[3:]) == 0
    assert capsys.readouterr().out.strip().endswith("no untriaged High or Medium finding")


def test_the_command_exits_2_when_slither_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--slither", str(tmp_path / "slither")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Slither is not installed at" in captured.err
    assert INSTALL in captured.err


BAD = """// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

contract Scaler {
    function scaled(uint256 amount, uint256 parts, uint256 factor) external pure returns (uint256) {
        // slither-disable-next-line divide-before-multiply
        return (amount / parts) * factor;
    }
}
"""


@pytest.mark.slow
def test_real_slither_through_the_npm_compiler_fails_on_a_new_medium(tmp_path: Path) -> None:
    """End to end, and an inline `slither-disable` comment does not bypass the triage file."""
    if not SLITHER.is_file():
        pytest.skip(f"Slither is not installed in {SLITHER.parent.parent.relative_to(ROOT)}; `{INSTALL}`")
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Scaler.sol").write_text(BAD)
    findings = own_findings(run_slither({"contracts/Scaler.sol": BAD}, cwd=tmp_path))
    [line] = problems(findings, [])
    assert line.startswith("untriaged Medium divide-before-multiply in Scaler.scaled (contracts/Scaler.sol#L")
    accepted = TriageEntry("divide-before-multiply", "Scaler.scaled", "reason", "* factor")
    assert problems(findings, [accepted]) == []


@pytest.mark.slow
def test_sources_the_compiler_refuses_end_in_one_sentence_naming_the_error(tmp_path: Path) -> None:
    if not SLITHER.is_file():
        pytest.skip(f"Slither is not installed in {SLITHER.parent.parent.relative_to(ROOT)}; `{INSTALL}`")
    broken = "pragma solidity ^0.8.24;\ncontract Broken { function f( }\n"
    (tmp_path / "contracts").mkdir()
    (tmp_path / "contracts" / "Broken.sol").write_text(broken)
    with pytest.raises(ConfigError) as refused:
        run_slither({"contracts/Broken.sol": broken}, cwd=tmp_path)
    message = str(refused.value)
    assert "\n" not in message
    assert "ParserError" in message and "contracts/Broken.sol:2:" in message
    assert "`python -m deploy.compile` shows its errors" in message
