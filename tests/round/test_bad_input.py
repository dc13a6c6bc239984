"""Bad input to the round commands, one test each: one clear `error:` line naming cause and fix, a
non-zero exit, nothing recorded on chain.

All but one run in-process through typer's runner (``cli``): each is refused by the command's own
checks before any training or aggregation, and the runner gives the same exit code and the same
stdout and stderr as the console script (human output and errors go through rich consoles that
write to whatever ``sys.stdout``/``sys.stderr`` are, so the runner captures them), so the refusal
is checked as fully without an interpreter and torch start-up per test. The refused outsider's
``node train`` stays on the installed console script (``fedledger``, a subprocess): it asserts that
the whole process never trained (no progress bar anywhere on its stderr), and it keeps the
script's own path covered.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import AnvilProcess
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, make_federation

pytestmark = pytest.mark.anvil


@pytest.fixture(scope="module")
def federation(anvil: AnvilProcess, anvil_keys: list[LocalAccount], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """A fresh deployment on the session anvil with one admitted party and round 1 open (fedavg), no submissions."""
    built = make_federation(tmp_path_factory.mktemp("round-bad-input"), rpc=anvil.rpc_url)
    built.admit("alice", Web3.to_hex(anvil_keys[4].key))
    built.open_round(base_cid=built.genesis_cid, min_updates=1, strategy="fedavg")
    yield built


def train(federation: Federation, *args: str) -> tuple[int, str, str]:
    outcome = cli("node", "train", *args, *federation.w, env=federation.parties["alice"]["env"])
    return outcome.exit_code, outcome.stdout, outcome.error_line(alone=False)  # after the "Party …: round N" banner


def test_node_train_without_a_data_source_says_how_to_give_one(federation: Federation) -> None:
    code, stdout, line = train(federation, "--round", "1")
    assert code != 0 and stdout == ""
    assert "no training data given" in line and "--data FILE" in line and "--shard I --of N" in line
    assert not federation.client().has_submitted(1, federation.parties["alice"]["address"])


def test_node_train_on_a_malformed_csv_names_the_file_and_the_problem(federation: Federation, tmp_path: Path) -> None:
    bad = tmp_path / "mine.csv"
    bad.write_text("p0,p1,label\n0.1,0.2,3\n0.5,0.7,1\n")
    code, stdout, line = train(federation, "--round", "1", "--data", str(bad))
    assert code != 0 and stdout == ""
    assert str(bad) in line and "columns" in line and "64 features then the label" in line
    assert not federation.client().has_submitted(1, federation.parties["alice"]["address"])


def test_node_train_for_a_round_that_does_not_exist_is_refused(federation: Federation) -> None:
    code, stdout, line = train(federation, "--round", "7", "--shard", "0", "--of", "2")
    assert code != 0 and stdout == ""
    assert "there is no round 7" in line
    assert federation.client().round_count() == 1


def test_aggregate_with_another_strategy_than_the_rounds_config_is_refused(federation: Federation) -> None:
    outcome = cli("aggregate", "--round", "1", "--strategy", "median", *federation.w)
    assert outcome.exit_code != 0 and outcome.stdout == ""
    line = outcome.error_line()
    assert "opened with strategy 'fedavg', not 'median'" in line and "drop --strategy" in line
    assert federation.client().round(1).state == "open"


def test_aggregate_a_round_without_submissions_finalizes_nothing(federation: Federation) -> None:
    outcome = cli("aggregate", "--round", "1", *federation.w)
    assert outcome.exit_code != 0 and outcome.stdout == ""
    line = outcome.error_line()
    assert "round 1 has no usable update" in line
    assert "`fedledger aggregate --round 1`" in line and "`fedledger round abort 1 --reason TEXT`" in line
    info = federation.client().round(1)
    assert (info.state, info.global_cid, info.submissions) == ("open", None, 0)


def test_aggregate_with_a_key_that_lacks_the_aggregator_role_is_refused_before_any_work(federation: Federation) -> None:
    alice = federation.parties["alice"]
    outcome = cli("aggregate", "--round", "1", *federation.w, env=alice["env"])
    assert outcome.exit_code != 0 and outcome.stdout == ""
    line = outcome.error_line()
    assert f"{alice['address']} lacks the aggregator role" in line and "--key" in line
    assert list(federation.workspace.journal_dir.glob("aggregator-*")) == []  # nothing was aggregated or pinned
    assert federation.client().round(1).state == "open"


def test_node_train_by_a_party_the_contract_would_refuse_stops_before_training(
    federation: Federation, anvil_keys: list[LocalAccount]
) -> None:
    outsider = anvil_keys[8]  # funded, never joined
    outcome = fedledger("node", "train", "--round", "1", "--shard", "0", "--of", "2", *federation.w,
                        env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(outsider.key)})
    assert outcome.exit_code != 0 and outcome.stdout == ""
    line = outcome.error_line(alone=False)  # after the "Party …: round N" banner
    assert f"{outsider.address} is not an admitted participant" in line
    assert "training" not in outcome.stderr  # no progress bar: it never trained
    journal = federation.workspace.journal_dir / f"participant-{outsider.address.lower()}-round-1.json"
    assert not journal.exists() or "update_cid" not in journal.read_text()
