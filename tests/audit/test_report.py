"""`fedledger audit report`: a self-contained HTML page that a real browser renders, and its JSON twin."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
REQUIRE_ENV = "REQUIRE_CHROMIUM"
"""Set (to 1) by .ci/run: there the browser test must run, and a machine without a browser fails it."""


def find_browser() -> str | None:
    """The first Chromium-family browser on PATH (Debian names it chromium, Ubuntu chromium-browser)."""
    return next((found for name in BROWSERS if (found := shutil.which(name))), None)


@pytest.fixture
def browser() -> str:
    found = find_browser()
    if found is None:
        message = f"no Chromium-family browser on PATH (looked for {', '.join(BROWSERS)}; .ci/run installs `chromium`)"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{message}; {REQUIRE_ENV} is set, so it may not be skipped")
        pytest.skip(message)
    return found


def headless(browser: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", *extra, page.resolve().as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_json_report_tells_the_story(anvil_ledger, cli):
    outcome = cli("audit", "report", "--json", "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 0, outcome.stderr
    report = outcome.json()
    assert report["verify"]["ok"] is True
    assert [row["round_id"] for row in report["rounds"]] == [1, 2]
    for row in report["rounds"]:
        assert row["verified"] and row["strategy"] == {"name": "fedavg"} and len(row["included"]) == 3
        assert 0 < row["mean_local_accuracy"] <= 1
    assert {entry["participant"] for entry in report["contribution"]} == {p.address for p in anvil_ledger.parties}
    assert all(entry["submitted"] == entry["included"] == 2 for entry in report["contribution"])


def test_html_report_is_self_contained(anvil_ledger, cli, tmp_path):
    page = tmp_path / "report.html"
    outcome = cli("audit", "report", "--html", str(page), "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 0, outcome.stderr
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch: no network needed
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,", text)) == 2
    assert "not a held-out test accuracy" in text or "not recorded on the ledger" in text
    assert text.count("<td>fedavg</td>") == 2  # each round's strategy by name, not as JSON


def test_html_report_renders_in_headless_chromium(anvil_ledger, cli, tmp_path, browser):
    page = tmp_path / "report.html"
    assert cli("audit", "report", "--html", str(page), "--workdir", str(anvil_ledger.root)).exit_code == 0

    shot = tmp_path / "report.png"
    done = headless(browser, page, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000")
    assert done.returncode == 0, done.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

    dom = headless(browser, page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    rounds_table = re.search(r'<table id="rounds">.*?</table>', dom.stdout, re.DOTALL)
    assert rounds_table is not None
    assert rounds_table.group(0).count("<tr>") == 3  # header + two rounds
    for plot in ("accuracy-plot", "contribution-plot"):
        assert re.search(rf'<img id="{plot}"[^>]*src="data:image/png;base64,', dom.stdout), plot
    assert "All " in dom.stdout and "checks passed." in dom.stdout

    # As an auditor sees it at 1300 px: nothing scrolls sideways, and selecting a shortened hash selects all of it.
    probe = tmp_path / "probe.html"  # the page plus a test-only script that measures it (the report has none)
    probe.write_text(page.read_text().replace("</body>", f"<script>{MEASURE}</script></body>"))
    measured = headless(browser, probe, tmp_path / "profile-measure", "--dump-dom", "--window-size=1300,2000")
    assert measured.returncode == 0, measured.stderr
    found = re.search(r'data-measured="([^"]*)"', measured.stdout)
    assert found is not None, measured.stdout[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert result["width"] == 1300 and result["page"] == 0 and result["scrolling"] == [], result
    assert result["hashes"] > 20 and result["selected"] == result["title"] and len(result["title"]) == 42, result


MEASURE = """(function () {
  var scrolling = [].slice.call(document.querySelectorAll('.wide')).filter(function (e) {
    return e.scrollWidth > e.clientWidth;
  }).map(function (e) { var t = e.querySelector('table'); return (t && t.id || '?') + ' by ' + (e.scrollWidth - e.clientWidth); });
  var hashes = document.querySelectorAll('code.h'), first = document.querySelector('#round-1 code.h');
  var range = document.createRange(); range.selectNodeContents(first);
  window.getSelection().removeAllRanges(); window.getSelection().addRange(range);
  document.body.setAttribute('data-measured', JSON.stringify({
    width: window.innerWidth, page: document.documentElement.scrollWidth - document.documentElement.clientWidth,
    scrolling: scrolling, hashes: hashes.length, title: first.title, selected: window.getSelection().toString()}));
})();"""
