"""Commands: ``audit participants|agreements|rounds|updates|privacy|provenance|verify|report``.

Each opens the workspace's deployment (checked: same chain, code at the address), brings the
audit index up to the chain's head, and answers from it. Exit codes: 0 done (for ``verify``:
every check passed, or failed only as a finding against a party whose update no aggregate used),
1 ``verify`` found failures (each listed; with ``--strict`` findings too), 2 the audit could not run (no
workspace or deployment, wrong chain, unreachable chain or store, an index of another
deployment, a CID or round that is not in the ledger) or, for ``verify``, nothing failed but
some claims could not be checked because this store lacks their blobs (each CID named) — with
one sentence saying why.
"""

from __future__ import annotations

import csv
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from node.cli._common import (
    CANNOT_RUN,
    JsonOption,
    RpcOption,
    WorkdirOption,
    check_errors,
    console,
    fail,
    print_json,
)


CsvOption = Annotated[bool, typer.Option("--csv", help="Print the table as CSV on stdout.")]
RoundOption = Annotated[int | None, typer.Option("--round", "-r", min=1, help="Only this round.")]


_audit_errors = check_errors("interrupted; the index keeps what it read, run the command again.")
"""Any LedgerError means the check could not run: one line on stderr, exit 2."""


@dataclass
class _Ledger:
    federation: Any
    store: Any
    index: Any


@contextmanager
def _ledger(workdir: Path | None, rpc: str | None = None, *, sync: bool = True) -> Iterator[_Ledger]:
    """The workspace's checked deployment, its store, and its index synced to the head."""
    from ledger.chain.connection import open_federation
    from ledger.index.index import LedgerIndex
    from ledger.ipfs.store import open_store
    from ledger.workspace import Workspace

    workspace = Workspace.find(workdir)
    federation = open_federation(workspace, rpc=rpc)
    index = LedgerIndex.for_federation(workspace.index_path, federation)
    try:
        if sync:
            index.sync(progress=sys.stderr.isatty())
        yield _Ledger(federation, open_store(workspace), index)
    finally:
        index.close()


def _emit(rows: list[dict[str, Any]], columns: list[str], *, title: str, as_json: bool, as_csv: bool,
          document: Any = None) -> None:
    if as_json and as_csv:
        raise fail("--json and --csv print different formats; choose one.", CANNOT_RUN)
    if as_json:
        print_json(rows if document is None else document)
        return
    if as_csv:
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    cells = [[_cell(column, row.get(column)) for column in columns] for row in rows]
    shortened = any("…" in cell for line in cells for cell in line)
    table = Table(title=title, title_justify="left",
                  caption="identifiers shortened: --json or --csv print them whole" if shortened else None)
    for column in columns:
        table.add_column(column, overflow="fold")
    for line in cells:
        table.add_row(*line)
    if console.is_terminal:
        console.print(table)
    else:  # a log or a pipe has no width to keep to: print each row on one line
        natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
        Console(stderr=True, width=max(console.width, natural)).print(table)


_LONG_HEX = re.compile(r"0x[0-9a-fA-F]{20,}")
_CID = re.compile(r"b[a-z2-7]{50,}")


def _cell(column: str, value: Any) -> str:
    """A value as a human table shows it: long hex and CIDs cut to their ends, times in UTC."""
    from ledger.index.queries import (
        TIME_COLUMNS,  # imported with the command's queries already
    )
    from ledger.utc import utc_text

    if value is None:
        return ""
    if column in TIME_COLUMNS and isinstance(value, int):
        return utc_text(value)
    if column in ("fed_eval_accuracy", "fed_eval_loss") and isinstance(value, float):
        return f"{value:.4f}"
    tokens = str(value).split(";")
    return ";".join(
        f"{t[:10]}…{t[-6:]}" if _LONG_HEX.fullmatch(t) else f"{t[:12]}…{t[-6:]}" if _CID.fullmatch(t) else t for t in tokens
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `fedledger` app."""
    audit = typer.Typer(help="Index the ledger, query it, re-verify every claim, write reports. Exit 2 (with one sentence) when the audit cannot run.", no_args_is_help=True)
    app.add_typer(audit, name="audit")

    @audit.command("participants")
    @_audit_errors
    def participants_cmd(
        workdir: WorkdirOption = None, rpc: RpcOption = None,
        history: Annotated[bool, typer.Option("--history", help="List every join, admission, suspension, reinstatement, revocation.")] = False,
        json: JsonOption = False,
        csv_: CsvOption = False,
    ) -> None:
        """Every party: status, agreement versions accepted, when it joined (or --history)."""
        from ledger.index.queries import membership_history, participants

        with _ledger(workdir, rpc) as ledger:
            if history:
                rows = membership_history(ledger.index)
                _emit(rows, ["block", "at", "participant", "action", "version", "by", "tx_hash"],
                      title="Membership history", as_json=json, as_csv=csv_)
            else:
                rows = participants(ledger.index)
                _emit(rows, ["address", "status", "accepted_version", "versions", "joined_block", "joined_at",
                             "updates", "join_tx"], title="Participants", as_json=json, as_csv=csv_)

    @audit.command("agreements")
    @_audit_errors
    def agreements_cmd(workdir: WorkdirOption = None, rpc: RpcOption = None, json: JsonOption = False, csv_: CsvOption = False) -> None:
        """Every agreement version: terms CID, when published, how many parties accepted it, its privacy budget."""
        from ledger.index.queries import agreements

        with _ledger(workdir, rpc) as ledger:
            _emit(agreements(ledger.index), ["version", "terms_cid", "block", "published_at", "accepted_by", "epsilon_budget",
                                             "delta", "tx_hash"],
                  title="Agreements", as_json=json, as_csv=csv_)

    @audit.command("rounds")
    @_audit_errors
    def rounds_cmd(workdir: WorkdirOption = None, rpc: RpcOption = None, json: JsonOption = False, csv_: CsvOption = False) -> None:
        """Every round: state, base and global model, config, submissions, agreement version, task.

        A task round also shows the federated evaluation of its base model (fed_eval_*): each party's
        own evaluation on its validation split, from its update's metrics (checked against the hash on
        chain), weighted by its val_samples; fed_eval_note names the updates left out and why."""
        from node.audit.tasks import TASK_COLUMNS, rounds_with_tasks

        with _ledger(workdir, rpc) as ledger:
            _emit(rounds_with_tasks(ledger.index, ledger.store),
                  ["round_id", "state", "submissions", "min_updates", "base_cid", "global_cid", "receipt_cid",
                   "config_cid", "opened_block", "closed_block", *TASK_COLUMNS],
                  title="Rounds", as_json=json, as_csv=csv_)

    @audit.command("updates")
    @_audit_errors
    def updates_cmd(round_id: RoundOption = None, workdir: WorkdirOption = None, rpc: RpcOption = None, json: JsonOption = False,
                    csv_: CsvOption = False) -> None:
        """Every recorded update (or one round's)."""
        from ledger.index.queries import updates

        with _ledger(workdir, rpc) as ledger:
            _emit(updates(ledger.index, round_id=round_id),
                  ["round_id", "participant", "cid", "samples", "metrics_hash", "block", "tx_hash", "relayed_by"],
                  title="Updates", as_json=json, as_csv=csv_)

    @audit.command("privacy")
    @_audit_errors
    def privacy_cmd(round_id: RoundOption = None, workdir: WorkdirOption = None, rpc: RpcOption = None,
                    json: JsonOption = False, csv_: CsvOption = False) -> None:
        """ε per party per round: the round's ε, the cumulative ε recomputed and declared, and the budget.

        Recomputed from the round configs (RDP, at the δ of the agreement each party accepted);
        `audit verify` fails a declaration below its recomputation. Rows without a budget have no figures.
        """
        from node.audit.privacy import COLUMNS, privacy_rows

        with _ledger(workdir, rpc) as ledger:
            rows = [row for row in privacy_rows(ledger.index, ledger.store) if round_id is None or row["round_id"] == round_id]
        _emit(rows, COLUMNS, title="Privacy loss (ε) per party per round", as_json=json, as_csv=csv_)

    @audit.command("provenance")
    @_audit_errors
    def provenance_cmd(
        cid: Annotated[str, typer.Argument(help="CID of a model recorded in the ledger.")],
        workdir: WorkdirOption = None, rpc: RpcOption = None,
        json: JsonOption = False,
        csv_: CsvOption = False,
    ) -> None:
        """The lineage of a model back to the genesis model: rounds, parties, strategy, the task of each model."""
        from ledger.index.queries import provenance
        from ledger.ipfs.cid import parse_cid
        from node.audit.tasks import provenance_tasks

        parsed = parse_cid(cid)
        with _ledger(workdir, rpc) as ledger:
            lineage = provenance_tasks(provenance(ledger.index, parsed, store=ledger.store), ledger.store)
        rows = [{**step, "submitters": ";".join(step["submitters"]),
                 "included": None if step["included"] is None else ";".join(step["included"]),
                 "strategy": step["strategy"] and sorted(step["strategy"].items())} for step in lineage["rounds"]]
        _emit(rows, ["round_id", "model_cid", "base_cid", "strategy", "included", "submitters", "finalized_block",
                     "task_cid"],
              title=f"Provenance of {parsed} (genesis {lineage['genesis_cid']})", as_json=json, as_csv=csv_,
              document=lineage)

    @audit.command("verify")
    @_audit_errors
    def verify_cmd(
        round_id: RoundOption = None, workdir: WorkdirOption = None, rpc: RpcOption = None, json: JsonOption = False,
        key: Annotated[str | None, typer.Option("--key", help="A recipient's encryption key (a name under [encryption_keys] or its file): open and recompute the sealed rounds it is a recipient of.")] = None,
        strict: Annotated[bool, typer.Option("--strict", help="Fail (exit 1) on findings against parties too: false claims about updates that no aggregate used.")] = False,
    ) -> None:
        """Re-check every blob, signature, membership window, receipt and aggregate.

        Sealed rounds are recomputed with --key, a recipient's encryption key; without one, each is
        named as not recomputed (not a failure). A party's false claim about an update that no
        aggregate used (a blob that is not weights, an unbacked metrics hash, a badly sealed envelope)
        is listed as a FINDING against that party, not a failure (--strict fails it). Exit 0 when every
        check passed, 1 when any failed (each listed), 2 when it could not run (a --key that is no
        recipient's included) or could not check some claims because the store lacks their blobs
        (each CID named)."""
        from ledger.sealing.keys import load_encryption_key
        from ledger.workspace import Workspace
        from node.audit.verify import verify_ledger

        decryption_key = None if key is None else load_encryption_key(Workspace.find(workdir), key)
        with _ledger(workdir, rpc, sync=False) as ledger:
            report = verify_ledger(ledger.federation, ledger.store, ledger.index, round_id=round_id,
                                   progress=sys.stderr.isatty(), decryption_key=decryption_key, strict=strict)
        if json:
            print_json(report.to_json())
        else:
            _print_verdict(report)
        if report.failures:
            raise typer.Exit(1)
        if report.unchecked:
            cids = report.missing_cids
            raise fail(
                f"{len(report.unchecked)} claims could not be checked: this store lacks {', '.join(cids)}; "
                "add those blobs to the store (`fedledger ipfs add FILE`) or point [store] at one that holds them, "
                "then run `fedledger audit verify` again.",
                CANNOT_RUN,
            )

    @audit.command("report")
    @_audit_errors
    def report_cmd(
        html: Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report to this file.")] = None,
        workdir: WorkdirOption = None, rpc: RpcOption = None,
        json: JsonOption = False,
    ) -> None:
        """The federation's story with every verification result: --html FILE and/or --json."""
        from ledger.workspace import atomic_write_bytes
        from node.audit.report import build_report, render_html
        from node.audit.verify import verify_ledger

        if html is None and not json:
            raise fail("say what to write: --html FILE, --json, or both.", CANNOT_RUN)
        with _ledger(workdir, rpc, sync=False) as ledger:
            verified = verify_ledger(ledger.federation, ledger.store, ledger.index, progress=sys.stderr.isatty())
            document = build_report(ledger.index, ledger.store, verified)
        if html is not None:
            atomic_write_bytes(html, render_html(document).encode("utf-8"))
            console.print(f"wrote {html} ({'all checks passed' if verified.ok else f'{len(verified.failures)} checks failed'})")
        if json:
            print_json(document)


def _print_verdict(report: Any) -> None:
    for check in report.failures:
        console.print(f"[bold red]FAIL[/] {check.check}: {check.what} ({_where(check)})", highlight=False, soft_wrap=True)
    for check in report.unchecked:
        console.print(f"[bold yellow]NOT CHECKED[/] {check.check}: {check.what} ({_where(check)})", highlight=False, soft_wrap=True)
    for check in [] if report.strict else report.findings:  # with --strict, each was printed as a FAIL above
        console.print(f"[bold magenta]FINDING[/] {check.check}: {check.what} ({_where(check)})", highlight=False, soft_wrap=True)
    for check in report.checks:
        if check.check == "sealed":  # a sealed round this auditor holds no recipient key for: said, not failed
            console.print(f"[bold cyan]NOTE[/] {check.what}", highlight=False, soft_wrap=True)
    relayed: dict[tuple[int, str], int] = {}  # (round, relayer) -> membership checks of updates it sent
    for check in report.checks:
        if check.check == "membership" and check.relayer:
            relayed[(check.round_id, check.relayer)] = relayed.get((check.round_id, check.relayer), 0) + 1
    for (round_id, relayer), count in sorted(relayed.items()):
        console.print(f"[bold cyan]RELAYED[/] round {round_id}: {count} update(s) sent by relayer {relayer}", highlight=False)
    summary = f"{len(report.checks)} checks on rounds {report.rounds or '—'} (indexed to block {report.indexed_to_block})"
    if report.ok and report.findings:
        parties = ", ".join(sorted({check.participant or "" for check in report.findings}))
        console.print(f"[bold green]ok[/] {summary}: none failed; {len(report.findings)} finding(s) against {parties}, "
                      "whose update(s) no aggregate used (`--strict` fails findings)", highlight=False, soft_wrap=True)
    elif report.ok:
        console.print(f"[bold green]ok[/] {summary}: all passed", highlight=False)
    elif report.failures:
        console.print(f"[bold red]{len(report.failures)} failed[/] of {summary}", highlight=False)
    else:
        console.print(f"[bold yellow]{len(report.unchecked)} not checked[/] of {summary}; none failed", highlight=False)


def _where(check: Any) -> str:
    return ", ".join(
        f"{name} {value}" for name, value in
        (("round", check.round_id), ("block", check.block), ("tx", check.tx_hash), ("cid", check.cid))
        if value is not None
    )
