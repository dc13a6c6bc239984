"""The services' commands refuse bad input with one sentence and exit 1, before they touch the chain."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.workspace import Workspace
from tests.fixtures_cli import run_in_process as cli


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[tuple[str, str]]:
    Workspace.init(tmp_path / "ws", rpc="http://127.0.0.1:9")
    yield ("--workdir", str(tmp_path / "ws"))


def test_a_taken_metrics_port_is_one_sentence(ws: tuple[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = cli("aggregator", "run", "--once", "--metrics-port", str(port), *ws)
    assert outcome.exit_code == 1
    assert outcome.error_line().startswith(f"error: cannot serve metrics on 127.0.0.1:{port} (")
    assert "choose a free --metrics-port" in outcome.error_line()


def test_a_node_without_data_or_key_is_refused_before_it_starts(ws: tuple[str, str]) -> None:
    no_data = cli("node", "run", "--once", *ws)
    assert no_data.exit_code == 1 and "no training data given; pass --data FILE" in no_data.error_line()
    no_key = cli("node", "run", "--once", "--shard", "0", "--of", "2", *ws)
    assert no_key.exit_code == 1 and "no key given; pass --key NAME" in no_key.error_line()


def test_the_coordinator_checks_its_schedule_before_it_starts(ws: tuple[str, str], tmp_path: Path) -> None:
    too_long = cli("coordinator", "run", "--rounds", "1", "--round-seconds", str(31 * 24 * 3600), "--min-updates", "1", *ws)
    assert too_long.exit_code == 2 and "--round-seconds" in too_long.stderr
    unknown = cli("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1",
                  "--strategy", "best", *ws)
    assert unknown.exit_code == 1 and "best" in unknown.error_line()
    bad_base = cli("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1",
                   "--base-cid", "not-a-cid", *ws)
    assert bad_base.exit_code == 1 and "not-a-cid" in bad_base.error_line()


def test_the_coordinator_checks_its_secure_options_before_it_starts(ws: tuple[str, str]) -> None:
    run = ("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1")
    loose = cli(*run, "--threshold", "2", *ws)
    assert loose.exit_code == 1 and "are a secure round's; add --secure" in loose.error_line()
    window = cli(*run, "--secure", "--key-window", "60", *ws)
    assert window.exit_code == 1 and "--key-window 60 must be less than --round-seconds 60" in window.error_line()
    robust = cli(*run, "--secure", "--strategy", "median", *ws)
    assert robust.exit_code == 1 and "a secure round aggregates by FedAvg only" in robust.error_line()
