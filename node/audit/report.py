"""The audit report: the federation's story as one JSON document and one self-contained HTML page.

The HTML page needs no network to open: its CSS is inline and its plots are matplotlib PNGs
embedded as base64 ``data:`` URLs. Accuracy is not recorded on chain; the only accuracy an
auditor can read is what each party reported about its own local training data in its update's
metadata (checked against the metrics hash on chain by ``verify``). The page says so. Under an
agreement with a privacy budget the page also plots each party's cumulative ε over the rounds, as
the auditor recomputes it from the round configs and as the party declared it, against its budget.
Each round also names the task it trained (None: a built-in model) and, for a task round, the
federated evaluation of its base model: the parties' own evaluations on their validation splits,
weighted by their sizes (``node.audit.tasks``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from collections import defaultdict
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from ledger.index.queries import (
    TIME_COLUMNS,
    agreements,
    membership_history,
    participants,
    rounds,
)
from ledger.errors import LedgerError
from ledger.index.index import LedgerIndex
from ledger.ipfs.store import ContentStore
from ledger.utc import utc_text
from ledger.weights import from_safetensors
from node.audit.privacy import COLUMNS as PRIVACY_COLUMNS
from node.audit.privacy import privacy_rows
from node.audit.tasks import round_task_columns
from node.audit.verify import VerifyReport


def _metadata(store: ContentStore, cid: str | None) -> dict[str, Any] | None:
    try:
        return from_safetensors(store.get(cid))[1] if cid else None
    except LedgerError:
        return None


def _document(store: ContentStore, cid: str | None) -> dict[str, Any] | None:
    try:
        return json.loads(store.get(cid)) if cid else None
    except (LedgerError, ValueError):
        return None


def build_report(index: LedgerIndex, store: ContentStore, verify: VerifyReport) -> dict[str, Any]:
    """The report as one JSON document: parties, agreements, rounds (with updates and receipts), checks."""
    round_rows = rounds(index)
    task_columns = round_task_columns(index, store, round_rows)
    updates_by_round: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for event in index.events("UpdateSubmitted"):
        metadata = _metadata(store, event.args.get("cid")) or {}
        metrics = metadata.get("metrics") if isinstance(metadata.get("metrics"), dict) else {}
        updates_by_round[int(event.args["roundId"])].append(
            {
                "participant": event.args["participant"],
                "cid": event.args.get("cid"),
                "samples": int(event.args["samples"]),
                "local_accuracy": metrics.get("accuracy"),
                "local_loss": metrics.get("loss"),
                "block": event.block,
                "tx_hash": event.tx_hash,
            }
        )
    failures_by_round: dict[int, int] = defaultdict(int)
    for check in verify.failures:
        if check.round_id is not None:
            failures_by_round[check.round_id] += 1
    unchecked_by_round: dict[int, int] = defaultdict(int)
    for check in verify.unchecked:
        if check.round_id is not None:
            unchecked_by_round[check.round_id] += 1
    story = []
    for row in round_rows:
        rid = row["round_id"]
        receipt = _document(store, row["receipt_cid"])
        config = _document(store, row["config_cid"])
        accuracies = [u["local_accuracy"] for u in updates_by_round[rid] if isinstance(u["local_accuracy"], (int, float))]
        story.append(
            {
                **row,
                **task_columns[rid],
                "strategy": (config or {}).get("strategy"),
                "model": (config or {}).get("model"),
                "updates": updates_by_round[rid],
                "included": receipt["included"] if receipt else None,
                "rejected": receipt["rejected"] if receipt else None,
                "unavailable": receipt.get("unavailable") if receipt else None,
                "outcome": receipt.get("outcome") if receipt else None,
                "mean_local_accuracy": sum(accuracies) / len(accuracies) if accuracies else None,
                "verified": rid in verify.rounds and failures_by_round[rid] == 0 and unchecked_by_round[rid] == 0,
                "failed_checks": failures_by_round[rid],
                "unchecked_checks": unchecked_by_round[rid],
            }
        )
    return {
        "generated_at": utc_text(time.time()),
        "federation": {"address": verify.address, "chain_id": verify.chain_id, "indexed_to_block": verify.indexed_to_block},
        "agreements": agreements(index),
        "participants": participants(index),
        "history": membership_history(index),
        "rounds": story,
        "contribution": _contribution(story),
        "privacy": privacy_rows(index, store),
        "verify": verify.to_json(),
    }


def _contribution(story: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per party: rounds submitted, rounds included, samples, total aggregation weight."""
    table: dict[str, dict[str, Any]] = {}
    for row in story:
        for update in row["updates"]:
            entry = table.setdefault(update["participant"].lower(), {
                "participant": update["participant"], "submitted": 0, "included": 0, "samples": 0, "weight": 0.0,
            })
            entry["submitted"] += 1
            entry["samples"] += update["samples"]
        for item in row["included"] or []:
            entry = table.get(item["participant"].lower())
            if entry is not None:
                entry["included"] += 1
                entry["weight"] += float(item["weight"])
    return list(table.values())


# ---------------------------------------------------------------- plots


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _round_axis(axis: Any, round_ids: list[int]) -> None:
    """An x axis of whole rounds: integer ticks only, from half a round before the first to half after the last
    (matplotlib's own limits around a single round run from 0.945 to 1.055, ticked in fractions)."""
    axis.set_xlabel("round")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    if round_ids:
        axis.set_xlim(min(round_ids) - 0.5, max(round_ids) + 0.5)


def _accuracy_plot(story: list[dict[str, Any]]) -> str:
    figure, axis = plt.subplots(figsize=(7, 3.2))
    for row in story:
        values = [u["local_accuracy"] for u in row["updates"] if isinstance(u["local_accuracy"], (int, float))]
        axis.scatter([row["round_id"]] * len(values), values, color="#9bb", s=14)
    points = [(row["round_id"], row["mean_local_accuracy"]) for row in story if row["mean_local_accuracy"] is not None]
    if points:
        axis.plot(*zip(*points), marker="o", color="#146", label="mean over parties")
    evaluated = [(row["round_id"], row["fed_eval_accuracy"]) for row in story if row.get("fed_eval_accuracy") is not None]
    if evaluated:
        axis.plot(*zip(*evaluated), marker="s", linestyle="--", color="#b60",
                  label="federated evaluation of the round's base model")
    if points or evaluated:
        axis.legend(loc="best")
    _round_axis(axis, [row["round_id"] for row in story])
    axis.set_ylabel("accuracy on own local data")
    axis.set_title("Self-reported local training accuracy (not a held-out test accuracy)")
    axis.set_ylim(0, 1.02)
    return _png(figure)


def _privacy_plot(rows: list[dict[str, Any]]) -> str:
    """Cumulative ε per party over rounds (recomputed: solid, declared: dotted) against each budget (dashed)."""
    figure, axis = plt.subplots(figsize=(7, 3.2))
    by_party: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_party[row["participant"]].append(row)
    for party, mine in by_party.items():
        line = axis.plot([r["round_id"] for r in mine], [r["epsilon_recomputed"] for r in mine], marker="o",
                         label=f"{party[:10]}…")[0]
        axis.plot([r["round_id"] for r in mine], [r["epsilon_declared"] for r in mine], linestyle=":",
                  color=line.get_color())
    for budget in sorted({row["epsilon_budget"] for row in rows}):
        axis.axhline(budget, linestyle="--", color="#b00020", linewidth=1)
        axis.annotate(f"budget ε = {budget:g}", (0.01, budget), xycoords=("axes fraction", "data"),
                      va="bottom", fontsize=8, color="#b00020")
    _round_axis(axis, [row["round_id"] for row in rows])
    axis.set_ylabel("cumulative ε")
    axis.set_ylim(bottom=0)
    axis.set_title("Privacy loss per party: recomputed (solid), declared (dotted), budget (dashed)")
    axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


def _privacy_section(rows: list[dict[str, Any]]) -> list[str]:
    """The page's privacy section, only when some update falls under a privacy budget."""
    accounted = [row for row in rows if row["epsilon_recomputed"] is not None]
    if not accounted:
        return []
    return [
        "<h2>Privacy loss (ε)</h2>",
        ("<p class='note'>Each party's cumulative ε after each of its updates: recomputed by this auditor from the "
         "dp sections of the round configs (RDP, at the agreement's δ) and as the party declared it on chain. "
         "<code>audit verify</code> fails a declaration below the recomputation.</p>"),
        _table(accounted, PRIVACY_COLUMNS, css_id="privacy"),
        f"<img id='privacy-plot' alt='cumulative ε per party against the budget' src='{_privacy_plot(accounted)}'>",
    ]


def _participation_plot(story: list[dict[str, Any]], contribution: list[dict[str, Any]]) -> str:
    parties = [entry["participant"] for entry in contribution]
    figure, axis = plt.subplots(figsize=(7, 0.5 + 0.35 * max(1, len(parties))))
    weights = defaultdict(float)
    left = [0.0] * len(parties)
    for row in story:
        for item in row["included"] or []:
            weights[(row["round_id"], item["participant"].lower())] = float(item["weight"])
        widths = [weights[(row["round_id"], party.lower())] for party in parties]
        axis.barh([p[:10] + "…" for p in parties], widths, left=left, label=f"round {row['round_id']}")
        left = [a + b for a, b in zip(left, widths)]
    axis.set_xlabel("aggregation weight in the receipts (summed over rounds)")
    axis.set_title("Contribution per party")
    if story:
        axis.legend(fontsize=7, loc="lower right")
    return _png(figure)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1240px}
h1{font-size:1.6em}h2{border-bottom:2px solid #146;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.8em}th,td{border:1px solid #ccc;padding:.25em .35em;text-align:left}
th{background:#eef3f6}code{font-size:.9em}.ok{color:#176b2c;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.banner{padding:.7em 1em;border-radius:6px;margin:1em 0}.banner.ok{background:#e5f5e8}.banner.fail{background:#fde8ea}
.note{color:#555;font-size:.85em}.wide{overflow-x:auto}
.nw,code.h{white-space:nowrap}.txt{overflow-wrap:anywhere}
code.h .a::after{content:"…"}code.h .m{font-size:0}
"""
# Hashes, addresses and CIDs are shown short (``_short_code``); the long middle stays in the page at zero size,
# so a selection (a double click selects the whole value) copies the full value, as the title shows it on hover.


_HASH = re.compile(r"^(0x[0-9a-fA-F]+|baf[a-z2-7]+)$")
"""A value shown short: an address, a transaction or other hash, a CIDv1 (a sentence that starts with one is not)."""


def _short_code(text: str) -> str:
    """``0x9754…DFF5`` (the first 6 and the last 4 characters) as a ``<code>`` whose title is the full value
    and whose text, once copied, is the full value too."""
    head, tail = 6, 4
    if len(text) <= head + tail + 1:
        return f"<code>{html.escape(text)}</code>"
    return (f"<code class='h' title='{html.escape(text)}'><span class='a'>{html.escape(text[:head])}</span>"
            f"<span class='m'>{html.escape(text[head:-tail])}</span>{html.escape(text[-tail:])}</code>")


def _cell(value: Any, column: str = "") -> str:
    if column in TIME_COLUMNS and isinstance(value, int):
        return f"<span class='nw'>{utc_text(value)}</span>"  # one line, not three
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, str) and _HASH.match(value):
        return _short_code(value)
    if isinstance(value, str) and len(value) > 40:  # a sentence: a long word in it (a hash) may break anywhere
        return f"<span class='txt'>{html.escape(value)}</span>"
    return html.escape(str(value))


def _table(rows: list[dict[str, Any]], columns: list[str], *, css_id: str | None = None) -> str:
    head = "".join(f"<th>{html.escape(c).replace('_', '_<wbr>')}</th>" for c in columns)  # long names may wrap
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c), c)}</td>" for c in columns) + "</tr>" for row in rows)
    ident = f' id="{css_id}"' if css_id else ""
    return f"<div class='wide'><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def _strategy_text(params: dict[str, Any]) -> str:
    """``{"name": "krum", "f": 1, "m": 3}`` as ``krum (f=1, m=3)``."""
    rest = ", ".join(f"{key}={value}" for key, value in sorted(params.items()) if key != "name")
    return f"{params.get('name', '?')} ({rest})" if rest else str(params.get("name", "?"))


def _federated_evaluation_note(story: list[dict[str, Any]]) -> list[str]:
    """What the rounds table's task and fed_eval columns mean, and which updates each round left out; only
    when some round trains a task or was evaluated by its parties."""
    tasks = [row for row in story if row.get("task_cid") or row.get("fed_eval_parties")]
    if not tasks:
        return []
    left_out = "".join(f"<li>Round {row['round_id']}: {html.escape(row['fed_eval_note'])}</li>"
                       for row in tasks if row.get("fed_eval_note"))
    return [
        ("<p class='note' id='federated-evaluation'>task_cid: the task bundle the round's config names (— for a "
         "built-in model). fed_eval_*: the federated evaluation of the round's base model, made by each party on its "
         "own validation split before training and committed in its update's metrics (hash on chain), weighted by "
         "the party's val_samples over fed_eval_parties parties; no central test set is used.</p>"),
        *([f"<ul class='note'>{left_out}</ul>"] if left_out else []),
    ]


def render_html(report: dict[str, Any]) -> str:
    """The report as one HTML page with inline CSS and embedded plots."""
    verify = report["verify"]
    story = report["rounds"]
    status = "ok" if verify["ok"] else "fail"
    if verify["ok"] and verify.get("found"):
        banner = (f"None of {verify['checked']} checks failed; {verify['found']} finding(s) against parties whose "
                  "updates no aggregate used (listed below).")
    elif verify["ok"]:
        banner = f"All {verify['checked']} checks passed."
    elif verify["failed"]:
        banner = f"{verify['failed']} of {verify['checked']} checks FAILED."
    else:
        banner = (f"None failed, but {verify['unchecked']} of {verify['checked']} checks could not be made: the store "
                  f"lacks {', '.join(verify['missing_cids'])}.")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>fedledger audit report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>fedledger audit report</h1>",
        (
            f"<p>Federation <code>{html.escape(report['federation']['address'])}</code> on chain id "
            f"{report['federation']['chain_id']}, indexed to block {report['federation']['indexed_to_block']}; "
            f"generated {html.escape(report['generated_at'])}.</p>"
        ),
        f"<div class='banner {status}' id='verdict'><span class='{status}'>{banner}</span></div>",
        "<h2>Agreements</h2>",
        _table(report["agreements"], ["version", "terms_cid", "block", "published_at", "accepted_by", "epsilon_budget",
                                      "delta", "tx_hash"]),
        "<h2>Parties</h2>",
        _table(report["participants"], ["address", "status", "accepted_version", "versions", "joined_block", "joined_at", "updates", "join_tx"]),
        "<h3>Membership history</h3>",
        _table(report["history"], ["block", "at", "participant", "action", "version", "by", "tx_hash"]),
        "<h2>Rounds</h2>",
        _table(
            [{**row, "strategy": _strategy_text(row["strategy"]) if row["strategy"] else None,
              "included": len(row["included"]) if row["included"] is not None else None,
              "rejected": len(row["rejected"]) if row["rejected"] is not None else None,
              "verified": "yes" if row["verified"] else f"NO ({row['failed_checks']} failed)" if row["failed_checks"]
              else f"not fully ({row['unchecked_checks']} not checked)"} for row in story],
            ["round_id", "state", "strategy", "submissions", "included", "rejected", "mean_local_accuracy",
             "task_cid", "fed_eval_accuracy", "fed_eval_loss", "fed_eval_parties",
             "base_cid", "global_cid", "receipt_cid", "opened_block", "closed_block", "verified"],
            css_id="rounds",
        ),
        *_federated_evaluation_note(story),
    ]
    for row in story:
        parts.append(f"<h3>Round {row['round_id']} ({html.escape(row['state'])})</h3>")
        included = {item["participant"].lower(): item for item in row["included"] or []}
        rejected = {item["participant"].lower(): item for item in row["rejected"] or []}
        unavailable = {item["participant"].lower() for item in row["unavailable"] or []}
        if row["outcome"]:
            parts.append(f"<p>{html.escape(row['outcome'])}</p>")
        parts.append(_table(
            [{**u, "weight": included.get(u["participant"].lower(), {}).get("weight"),
              "rejected": rejected.get(u["participant"].lower(), {}).get("reason")
              or ("unavailable at aggregation" if u["participant"].lower() in unavailable else None)}
             for u in row["updates"]],
            ["participant", "cid", "samples", "local_accuracy", "weight", "rejected", "block", "tx_hash"],
            css_id=f"round-{row['round_id']}",
        ))
    parts += [
        "<h2>Accuracy per round</h2>",
        (
            "<p class='note'>Test accuracy of the global models is not recorded on the ledger. Plotted is what each "
            "party reported about its own local data in its update's metadata (whose hash is on chain).</p>"
        ),
        f"<img id='accuracy-plot' alt='self-reported local accuracy per round' src='{_accuracy_plot(story)}'>",
        "<h2>Participation and contribution</h2>",
        _table(report["contribution"], ["participant", "submitted", "included", "samples", "weight"]),
        f"<img id='contribution-plot' alt='contribution per party' src='{_participation_plot(story, report['contribution'])}'>",
        *_privacy_section(report["privacy"]),
        "<h2>Verification</h2>",
        f"<div class='banner {status}'><span class='{status}'>{banner}</span></div>",
        _table(
            [{**c, "result": "pass" if c["ok"] else "NOT CHECKED" if c["unchecked"]
              else "FINDING" if c.get("finding") and not verify.get("strict") else "FAIL"}
             for c in sorted(verify["checks"], key=lambda c: (c["ok"], c["unchecked"]))],
            ["result", "check", "what", "round_id", "block", "tx_hash", "cid"],
            css_id="checks",
        ),
        "</body></html>",
    ]
    return "\n".join(parts)
