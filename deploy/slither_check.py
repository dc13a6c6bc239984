"""Slither over the project's own contracts, held against a triage file of accepted findings.

Slither (PyPI ``slither-analyzer``) pins ``web3<8``, which the project cannot share, so it lives in
its own virtual environment, ``.venv-slither``; this module runs it as a process and reads its
JSON report. Slither compiles through crytic-compile's ``solc-json`` mode from the standard-JSON
input that deploy/compile.py builds (same source unit names, evmVersion, optimizer) with the same
compiler (``deploy.compile.solc_binary``: a native solc of the npm version, else
deploy/solc_standard_json.js, which answers ``--version`` and ``--standard-json`` as solc does), so
it analyses exactly what the project compiles.

Only findings that touch our own sources (``contracts/``) count. A High or Medium one that no
entry of contracts/slither-triage.toml matches fails the check, and so does an entry that matches
no finding. Entries name a detector, an element (``Contract.function``) and optionally part of the
statement, never a line, so they survive edits elsewhere in the file. Inline
``slither-disable`` comments are not honoured (``--show-ignored-findings``): the triage file,
with its reasons, is the one place a finding is accepted.

``python -m deploy.slither_check`` exits 0 when clean, 1 on untriaged findings or stale entries,
2 when Slither could not run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploy.compile import ROOT, SETTINGS, collect_sources, solc_binary
from ledger.errors import ConfigError

SLITHER_VERSION = "0.11.6"
SLITHER = ROOT / ".venv-slither" / "bin" / "slither"
TRIAGE = ROOT / "contracts" / "slither-triage.toml"
OWN_PREFIX = "contracts/"
GATED = ("High", "Medium")
INSTALL = (
    f"python3 -m venv .venv-slither && .venv-slither/bin/python -m pip install slither-analyzer=={SLITHER_VERSION}"
)
_ENTRY_KEYS = {"detector", "element", "statement", "reason"}
# crytic-compile reads the AST, ABI, bytecode and source maps of every contract.
_OUTPUT = {"*": {"*": ["abi", "devdoc", "userdoc", "evm.bytecode", "evm.deployedBytecode"], "": ["ast"]}}


@dataclass(frozen=True)
class Finding:
    """One Slither result, reduced to what triage matches on and what a person reads."""

    detector: str
    impact: str
    element: str
    statements: tuple[str, ...]
    location: str
    summary: str


@dataclass(frozen=True)
class TriageEntry:
    """An accepted finding: detector and element, optionally narrowed to a statement, with its reason."""

    detector: str
    element: str
    reason: str
    statement: str | None = None

    def matches(self, finding: Finding) -> bool:
        if (finding.detector, finding.element) != (self.detector, self.element):
            return False
        return self.statement is None or any(self.statement in s for s in finding.statements)

    def describe(self) -> str:
        narrowed = f' (statement "{self.statement}")' if self.statement else ""
        return f"{self.detector} on {self.element}{narrowed}"


def slither_input(sources: dict[str, str]) -> dict[str, Any]:
    """The standard-JSON input deploy/compile.py compiles, asking for what crytic-compile reads."""
    settings = {**SETTINGS, "outputSelection": _OUTPUT}
    return {
        "language": "Solidity",
        "sources": {unit: {"content": text} for unit, text in sources.items()},
        "settings": settings,
    }


def _run(command: list[str], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    except FileNotFoundError:
        raise ConfigError(f"Slither is not installed at {command[0]}; install it with `{INSTALL}`.") from None


def _check_version(slither: Path) -> None:
    version = _run([str(slither), "--version"], cwd=ROOT).stdout.strip()
    if version != SLITHER_VERSION:
        raise ConfigError(
            f"{slither} is Slither {version or '(unknown)'}, but contracts/slither-triage.toml was made with "
            f"{SLITHER_VERSION}; install that version with `{INSTALL}`."
        )


def run_slither(sources: dict[str, str], *, slither: Path = SLITHER, cwd: Path = ROOT) -> dict[str, Any]:
    """Slither's JSON report over ``sources`` (unit names relative to ``cwd``), every detector on."""
    _check_version(slither)
    with tempfile.TemporaryDirectory(prefix="fedledger-slither-") as tmp:
        source = Path(tmp) / "input.json"
        report = Path(tmp) / "report.json"
        source.write_text(json.dumps(slither_input(sources)), encoding="utf-8")
        done = _run(
            [
                str(slither), str(source),
                "--compile-force-framework", "solc-json",
                "--solc", str(solc_binary()),
                "--json", str(report),
                "--show-ignored-findings", "--fail-none", "--disable-color",
            ],
            cwd=cwd,
        )  # fmt: skip
        result = json.loads(report.read_text(encoding="utf-8")) if report.is_file() else {}
    if done.returncode != 0 or not result.get("success"):
        raise ConfigError(
            f"Slither could not analyse the contracts ({_first_lines(result.get('error') or done.stderr)}); "
            "fix the sources if the compiler refused them (`python -m deploy.compile` shows its errors), "
            "else run Slither by hand to read its full output."
        )
    return result


def _first_lines(text: str, count: int = 3) -> str:
    """The first lines of a multi-line message, on one line (a compiler error's code excerpt left out)."""
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("|")]
    return " ".join(lines[:count]) or "no output"


def _label(element: dict[str, Any]) -> str:
    """``Contract.function`` for a function, ``Contract`` for a contract: the element with its parents."""
    names = [element["name"]]
    parent = element.get("type_specific_fields", {}).get("parent")
    while parent:
        names.append(parent["name"])
        parent = parent.get("type_specific_fields", {}).get("parent")
    return ".".join(reversed(names))


def own_findings(report: dict[str, Any]) -> list[Finding]:
    """The report's results with an element in our own sources, as Slither's --filter-paths keeps them."""
    findings = []
    for result in report.get("results", {}).get("detectors", []):
        elements = result.get("elements", [])
        files = {e.get("source_mapping", {}).get("filename_relative", "") for e in elements}
        if not any(name.startswith(OWN_PREFIX) for name in files):
            continue
        main = next((e for e in elements if e["type"] != "node"), elements[0])
        if main["type"] == "node":
            main = main["type_specific_fields"]["parent"]
        findings.append(
            Finding(
                detector=result["check"],
                impact=result["impact"],
                element=_label(main),
                statements=tuple(e["name"] for e in elements if e["type"] == "node"),
                location=result.get("first_markdown_element", ""),
                summary=result.get("description", "").strip().splitlines()[0] if result.get("description") else "",
            )
        )
    return findings


def _display(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def load_triage(path: Path = TRIAGE) -> list[TriageEntry]:
    """The accepted findings, each entry checked for its keys and a reason."""
    name = _display(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{name} is missing; create it (an empty file accepts no finding).") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{name} is not valid TOML ({error}); fix it.") from None
    extra = set(document) - {"finding"}
    if extra:
        raise ConfigError(f"{name} has unknown tables {sorted(extra)}; it holds only [[finding]] entries.")
    entries = []
    for number, entry in enumerate(document.get("finding", []), start=1):
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ConfigError(
                f"{name}: finding {number} has unknown keys {sorted(unknown)}; the keys are "
                "detector, element, statement (optional) and reason (no line numbers: they go stale)."
            )
        for key in ("detector", "element", "reason"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise ConfigError(f"{name}: finding {number} needs a non-empty `{key}` string.")
        statement = entry.get("statement")
        if statement is not None and (not isinstance(statement, str) or not statement.strip()):
            raise ConfigError(f"{name}: finding {number} has an empty `statement`; give part of it or leave it out.")
        entries.append(TriageEntry(entry["detector"], entry["element"], entry["reason"].strip(), statement))
    return entries


def problems(
    findings: list[Finding], triage: list[TriageEntry], *, triage_name: str = "contracts/slither-triage.toml"
) -> list[str]:
    """One line per untriaged High/Medium finding and per entry that matches no finding."""
    lines = [
        f"untriaged {f.impact} {f.detector} in {f.element} ({f.location}): {f.summary}; "
        f'fix it, or accept it in {triage_name} with [[finding]] detector = "{f.detector}", '
        f'element = "{f.element}", reason = "why it is safe".'
        for f in findings
        if f.impact in GATED and not any(entry.matches(f) for entry in triage)
    ]
    lines += [
        f"stale triage entry: {entry.describe()} matches no current Slither finding; "
        f"delete it from {triage_name} (or correct its detector, element or statement)."
        for entry in triage
        if not any(entry.matches(f) for f in findings)
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.slither_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--slither", type=Path, default=SLITHER, help="the slither executable (default: %(default)s)")
    parser.add_argument("--triage", type=Path, default=TRIAGE, help="the triage file (default: %(default)s)")
    parser.add_argument("--report", type=Path, help="check this recorded Slither JSON report instead of running it")
    args = parser.parse_args(argv)
    try:
        triage = load_triage(args.triage)
        if args.report:
            report = json.loads(args.report.read_text(encoding="utf-8"))
        else:
            report = run_slither(collect_sources(), slither=args.slither)
    except (ConfigError, OSError, json.JSONDecodeError) as error:
        print(f"slither check could not run: {error}", file=sys.stderr)
        return 2
    findings = own_findings(report)
    found = problems(findings, triage, triage_name=_display(args.triage))
    for line in found:
        print(line)
    gated = sum(f.impact in GATED for f in findings)
    print(
        f"slither: {len(findings)} findings in {OWN_PREFIX} ({gated} High/Medium), {len(triage)} triaged, "
        f"{len(found)} problems" + ("" if found else ": no untriaged High or Medium finding")
    )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
