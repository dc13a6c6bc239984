"""Governance through the console script on a real anvil: bounded rounds, a recorded abort, roles,
and the admin handed over in two steps."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from deploy.anvil import free_port
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome, ok

pytestmark = pytest.mark.anvil

# anvil's third dev account (default mnemonic), funded.
BOB_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
BASE = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"


def test_rounds_are_bounded_aborted_with_a_reason_and_the_admin_moves_in_two_steps(
    fedledger: Callable[..., Outcome], cli: Callable[..., Outcome], workspace: Workspace
) -> None:
    w = ("--workdir", str(workspace.root))
    ok(fedledger("chain", "up", "--port", str(free_port()), "--detach", *w))
    assert ok(cli("deploy", "--admin-delay", "0", "--json", *w)).json()["address"]
    base = ok(cli("model", "init", "--model", "mlp", "--seed", "0", "--json", *w)).json()["cid"]  # round open needs a model in the store

    too_long = cli("round", "open", "--base-cid", BASE, "--deadline", str(31 * 86400), "--min-updates", "1", *w)
    assert too_long.exit_code != 0 and "2592000" in too_long.stderr
    none_asked = cli("round", "open", "--base-cid", BASE, "--deadline", "600", "--min-updates", "0", *w)
    assert none_asked.exit_code != 0 and "--min-updates" in none_asked.stderr
    secure = ("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", "3", "--secure")
    robust = cli(*secure, "--strategy", "krum", *w)
    assert robust.exit_code == 1 and "FedAvg only" in robust.error_line()
    nobody = cli(*secure, *w)  # no party has joined, let alone registered an encryption key
    assert nobody.exit_code == 1 and "at least 3 parties" in nobody.error_line()
    stray = cli("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", "3", "--threshold", "2", *w)
    assert stray.exit_code == 1 and "add --secure" in stray.error_line()
    opened = ok(cli("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", "3", "--json", *w)).json()
    plain = cli("node", "reveal", "--round", str(opened["round_id"]), *w, env={"FEDLEDGER_PRIVATE_KEY": BOB_KEY})
    assert plain.exit_code == 1 and "not a secure round" in plain.error_line()
    keys = cli("node", "advertise", "--round", str(opened["round_id"]), *w, env={"FEDLEDGER_PRIVATE_KEY": BOB_KEY})
    assert keys.exit_code == 1 and "only a secure round's parties advertise" in keys.error_line()

    early = cli("round", "cancel", str(opened["round_id"]), *w)
    assert early.exit_code == 1
    assert f"`fedledger round abort {opened['round_id']} --reason TEXT`" in early.error_line()
    blank = cli("round", "abort", str(opened["round_id"]), "--reason", " ", *w)
    assert blank.exit_code == 1 and "needs a reason" in blank.error_line()
    ok(cli("round", "abort", str(opened["round_id"]), "--reason", "wrong base model", *w))
    (row,) = ok(cli("audit", "rounds", "--json", *w)).json()
    assert (row["state"], row["abort_reason"]) == ("cancelled", "wrong base model")

    bob_env = {"FEDLEDGER_PRIVATE_KEY": BOB_KEY}
    refused = cli("admin", "grant", "admin", BOB, *w)
    assert refused.exit_code == 1 and "fedledger admin transfer" in refused.error_line()
    ok(cli("admin", "grant", "aggregator", BOB, *w))
    assert not ok(cli("admin", "show", "--json", *w)).json()["pending"]
    ok(cli("admin", "transfer", BOB, *w))
    proposed = ok(cli("admin", "show", "--json", *w)).json()
    assert proposed["pending"] == BOB
    while time.time() <= proposed["accept_after"] + 1:  # the contract takes it strictly after the schedule
        time.sleep(0.2)
    ok(cli("admin", "accept", *w, env=bob_env))
    shown = ok(cli("admin", "show", "--json", *w)).json()
    assert (shown["admin"], shown["pending"]) == (BOB, None)
    former = cli("round", "abort", "1", "--reason", "no longer mine", *w)  # the deployer is no admin now
    assert former.exit_code == 1 and "lacks the admin role" in former.error_line()
