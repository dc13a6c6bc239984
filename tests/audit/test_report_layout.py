"""How the HTML report reads (no chain, no browser: a one-round report document rendered in-process).

Hashes, addresses and CIDs show as their first 6 and last 4 characters, with the full value as the
title (on hover) and in the text a selection copies; timestamps stay on one line; the accuracy plot
of one round has whole-round ticks only, from 0.5 to 1.5 (matplotlib's own axis ran from 0.945 to 1.055).
The headless-Chromium test (tests/audit/test_report.py) checks that no table scrolls at 1300 px.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from ledger.utc import utc_text
from node.audit import report as report_module
from node.audit.report import render_html

ADDRESS = "0x975436C4Ca4Ab16693f4dd0cCEBd8e53C5daDFF5"
TX = "0xc52421605d054b1c0bb833da4fe175fab47ec2db6d0b047fa86d4a540e58e433"
UPDATE = "bafkreifm3wlt7vc35uamhvxxtguwl6vss6ae7ckaxyius7do3pxjfsl5pi"
GLOBAL = "bafkreiedciabk346k5oj2fzjhbckk3h6yrdjj46daveichxyp4vlvbbkru"
JOINED_AT = 1796623115
CHECK_TEXT = f"{ADDRESS} signed the agreement it joined under"  # a sentence that starts with an address


def one_round_report() -> dict[str, Any]:
    update = {"participant": ADDRESS, "cid": UPDATE, "samples": 480, "local_accuracy": 0.75, "local_loss": 0.5,
              "block": 14, "tx_hash": TX}
    row = {
        "round_id": 1, "state": "finalized", "strategy": {"name": "fedavg"}, "submissions": 1, "base_cid": GLOBAL,
        "global_cid": GLOBAL, "receipt_cid": GLOBAL, "opened_block": 13, "closed_block": 17, "task_cid": None,
        "updates": [update], "included": [{"participant": ADDRESS, "cid": UPDATE, "weight": 1.0}], "rejected": [],
        "unavailable": [], "outcome": "aggregated 1 of 1 submitted updates", "mean_local_accuracy": 0.75,
        "fed_eval_accuracy": None, "verified": True, "failed_checks": 0, "unchecked_checks": 0,
    }
    check = {"check": "signature", "ok": True, "unchecked": False, "finding": False, "what": CHECK_TEXT,
             "round_id": None, "block": 7, "tx_hash": TX, "cid": None}
    return {
        "generated_at": utc_text(JOINED_AT),
        "federation": {"address": ADDRESS, "chain_id": 31337, "indexed_to_block": 17},
        "agreements": [],
        "participants": [{"address": ADDRESS, "status": "admitted", "accepted_version": 1, "versions": "1",
                          "joined_block": 7, "joined_at": JOINED_AT, "updates": 1, "join_tx": TX}],
        "history": [{"block": 7, "at": JOINED_AT, "participant": ADDRESS, "action": "joined", "version": 1,
                     "by": ADDRESS, "tx_hash": TX}],
        "rounds": [row],
        "contribution": [{"participant": ADDRESS, "submitted": 1, "included": 1, "samples": 480, "weight": 1.0}],
        "privacy": [],
        "verify": {"ok": True, "checked": 1, "failed": 0, "unchecked": 0, "found": 0, "missing_cids": [],
                   "strict": False, "checks": [check]},
    }


@pytest.fixture(scope="module")
def page() -> str:
    return render_html(one_round_report())


def test_hashes_show_short_with_the_full_value_on_hover_and_in_the_copied_text(page: str) -> None:
    for value in (ADDRESS, TX, UPDATE, GLOBAL):
        cells = re.findall(rf"<code class='h' title='{value}'>(.*?)</code>", page)
        assert cells, value
        for cell in cells:
            shown = re.sub(r"<span class='m'>.*?</span>", "", cell)  # the middle is there at zero size
            assert re.sub(r"<[^>]+>", "", shown) == value[:6] + value[-4:]  # the … is the head's ::after
            assert re.sub(r"<[^>]+>", "", cell) == value  # what a selection copies
    assert "code.h .m{font-size:0}" in page and 'code.h .a::after{content:"…"}' in page
    assert f"<td><code>{ADDRESS}</code></td>" not in page and f">{TX}<" not in page  # no full-length cell left


def test_a_sentence_that_starts_with_an_address_is_text_not_a_hash(page: str) -> None:
    assert f"<span class='txt'>{CHECK_TEXT}</span>" in page


def test_timestamps_stay_on_one_line(page: str) -> None:
    assert page.count(f"<span class='nw'>{utc_text(JOINED_AT)}</span>") == 2  # joined_at and the history's at
    assert ".nw,code.h{white-space:nowrap}" in page


def test_the_accuracy_plot_of_one_round_has_whole_round_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    figures: list[Any] = []

    def keep(figure: Any) -> str:
        figures.append(figure)
        return "data:image/png;base64,"

    monkeypatch.setattr(report_module, "_png", keep)
    render_html(one_round_report())
    accuracy = next(f.axes[0] for f in figures if "accuracy" in f.axes[0].get_title())
    accuracy.figure.canvas.draw()
    low, high = accuracy.get_xlim()
    assert (low, high) == (0.5, 1.5)
    assert [tick for tick in accuracy.get_xticks() if low <= tick <= high] == [1.0]
