"""Private rounds through the CLI on a real anvil: the agreement's budget flags, round open --dp-*, node
train declaring its cumulative ε and refused before training past its budget, audit privacy, and
audit verify failing a party that under-declared its ε."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.fixed_point import epsilon_to_micros
from ledger.ipfs.store import open_store
from node.privacy.accountant import cumulative_epsilon, noise_multiplier_for, round_epsilon
from node.round_config import DpSettings, RoundConfig, config_cid
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, anvil_rpc, make_federation  # noqa: F401 (anvil_rpc: a fixture)

pytestmark = pytest.mark.anvil

DELTA = 1e-5
DP = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, steps=4)
DP_FLAGS = ("--dp-noise", "1.0", "--dp-sample-rate", "0.2", "--dp-steps", "4")


def terms_file(federation: Federation) -> Path:
    path = federation.tmp / "private-terms.md"
    path.write_text("# Terms\nEach party's ε stays within its budget.\n")
    return path


def open_round(federation: Federation, *flags: str) -> int:
    opened = cli("round", "open", "--base-cid", federation.genesis_cid, "--deadline", "600", "--min-updates", "1",
                 "--config", str(federation.config_file("quick")), *flags, "--json", *federation.w)
    return int(ok(opened).json()["round_id"])


BAD_BUDGETS = [
    (("--epsilon-budget", "8"), "needs both --epsilon-budget E and --delta D"),
    (("--delta", "1e-5"), "needs both --epsilon-budget E and --delta D"),
    (("--epsilon-budget", "0", "--delta", "1e-5"), "the ε budget 0.0 must be above 0"),
    (("--epsilon-budget", "-2", "--delta", "1e-5"), "the ε budget -2.0 must be above 0"),
    (("--epsilon-budget", "1.0000001", "--delta", "1e-5"), "at most 6 decimal places"),
    (("--epsilon-budget", "8", "--delta", "1.5"), "δ = 1.5 must be above 0 and below 1"),
    (("--epsilon-budget", "8", "--delta", "1e-19"), "a multiple of 1e-18"),
]


def test_agreement_budget_is_published_and_shown_and_dp_options_checked(anvil_rpc: str, tmp_path: Path) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    w = federation.w
    for flags, words in BAD_BUDGETS:  # refused before anything is pinned or published
        refused = cli("agreement", "publish", str(terms_file(federation)), *flags, *w)
        assert refused.exit_code != 0 and words in refused.error_line(), flags
    assert federation.client().agreement_version() == 1

    no_budget = cli("round", "open", "--base-cid", federation.genesis_cid, "--deadline", "600", "--min-updates", "1",
                    "--dp-target-epsilon", "2", *w)
    assert no_budget.exit_code != 0 and "needs the agreement in force to carry a privacy budget" in no_budget.error_line()
    assert "no privacy budget" in ok(cli("agreement", "show", *w)).stderr

    published = ok(cli("agreement", "publish", str(terms_file(federation)), "--epsilon-budget", "8", "--delta", "1e-5",
                       "--json", *w)).json()
    assert (published["version"], published["epsilon_budget"], published["delta"]) == (2, 8.0, 1e-5)
    shown = ok(cli("agreement", "show", "--json", *w)).json()
    assert (shown["epsilon_budget"], shown["delta"], shown["epsilon_budget_micros"], shown["delta_units"]) == (
        8.0, 1e-5, 8_000_000, 10**13)
    assert "privacy budget ε = 8 at δ = 1e-05" in ok(cli("agreement", "show", *w)).stderr
    listed = ok(cli("audit", "agreements", "--json", *w)).json()
    assert [(row["epsilon_budget"], row["delta"]) for row in listed] == [(None, None), (8.0, 1e-5)]

    for flags, words in [
        (("--dp-clip", "1.0"), "need --dp-noise S or --dp-target-epsilon E"),
        (("--dp-noise", "1.0", "--dp-target-epsilon", "2"), "either --dp-noise S or --dp-target-epsilon E, not both"),
        (("--dp-noise", "0"), "noise_multiplier must be a positive finite number"),
        (("--dp-target-epsilon", "2", "--dp-sample-rate", "1.5"), "sample_rate must be a number in (0, 1]"),
    ]:
        refused = cli("round", "open", "--base-cid", federation.genesis_cid, "--deadline", "600", "--min-updates", "1",
                      *flags, *w)
        assert refused.exit_code != 0 and words in refused.error_line(), flags
    assert federation.client().round_count() == 0

    rid = open_round(federation, "--dp-target-epsilon", "2", "--dp-steps", "10")
    config = RoundConfig.from_bytes(open_store(federation.workspace).get(config_cid(federation.client().round(rid).config_hash)))
    sigma = noise_multiplier_for(2.0, sample_rate=0.2, steps=10, delta=DELTA)
    assert config.dp == DpSettings(noise_multiplier=sigma, max_grad_norm=1.0, sample_rate=0.2, steps=10)


def test_private_rounds_declare_refuse_past_the_budget_and_the_audit_catches_an_under_declaration(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    w = federation.w
    one = epsilon_to_micros(round_epsilon(DP, DELTA))
    two = epsilon_to_micros(cumulative_epsilon([DP, DP], DELTA))
    budget = (one + two) // 2  # room for one round of DP, not two
    ok(cli("agreement", "publish", str(terms_file(federation)), "--epsilon-budget", f"{budget / 1e6:.6f}",
           "--delta", "1e-5", *w))
    alice = federation.admit("alice", Web3.to_hex(anvil_keys[4].key))
    bob_account = anvil_keys[5]
    bob = federation.admit("bob", Web3.to_hex(bob_account.key))
    client = federation.client()
    assert client.privacy(alice) == (0, budget)

    first = open_round(federation, *DP_FLAGS)
    trained = ok(cli("node", "train", "--round", str(first), "--shard", "0", "--of", "2", "--json", *w,
                     env=federation.parties["alice"]["env"])).json()
    assert trained["epsilon"] == one / 1e6 and trained["metrics"] == {}  # no metric of the private data leaves
    assert client.privacy(alice) == (one, budget)

    # bob records an update declaring far less than the round spends: the contract cannot know, the audit does.
    store = open_store(federation.workspace)
    junk = store.add_bytes(b"bob's update", pin=True)
    client.with_account(bob_account).submit_update(first, cid=junk, samples=10, metrics_hash=b"\0" * 32, epsilon_micros=1)

    second = open_round(federation, *DP_FLAGS)
    pins = sorted(store.pins())
    refused = cli("node", "train", "--round", str(second), "--shard", "0", "--of", "2", *w,
                  env=federation.parties["alice"]["env"])
    assert refused.exit_code == 1
    line = refused.error_line(alone=False)
    assert f"from {one / 1e6:.6f} to {two / 1e6:.6f}, past the agreement's budget of {budget / 1e6:.6f}" in line
    assert "DP-SGD" not in refused.stderr  # refused before training
    assert sorted(open_store(federation.workspace).pins()) == pins and not client.has_submitted(second, alice)
    plain = open_round(federation)  # no dp section: under a budget, no finite ε
    refused = cli("node", "train", "--round", str(plain), "--shard", "0", "--of", "2", *w,
                  env=federation.parties["alice"]["env"])
    assert refused.exit_code == 1
    assert f"round {plain} has no dp section" in refused.error_line(alone=False)
    assert not client.has_submitted(plain, alice)

    rows = ok(cli("audit", "privacy", "--json", *w)).json()
    assert [(r["round_id"], r["participant"], r["declared_micros"], r["recomputed_micros"]) for r in rows] == [
        (first, alice, one, one), (first, bob, 1, one)]
    assert rows[0]["round_epsilon"] == pytest.approx(one / 1e6, abs=1e-6) and rows[0]["epsilon_budget"] == budget / 1e6
    table = list(csv.DictReader(io.StringIO(ok(cli("audit", "privacy", "--csv", *w)).stdout)))
    assert [row["participant"] for row in table] == [alice, bob] and table[1]["epsilon_declared"] == "1e-06"

    verified = cli("audit", "verify", "--json", *w)
    assert verified.exit_code == 1
    privacy = [c for c in verified.json()["checks"] if c["check"] == "privacy"]
    assert [(c["participant"], c["ok"]) for c in privacy] == [(alice, True), (bob, False)]
    assert privacy[1]["round_id"] == first
    assert (f"{bob} declared a cumulative ε of 0.000001 with its update to round {first}, "
            f"below the {one / 1e6:.6f} recomputed") in privacy[1]["what"]

    page = tmp_path / "report.html"
    ok(cli("audit", "report", "--html", str(page), *w))
    text = page.read_text()
    assert "<h2>Privacy loss (ε)</h2>" in text and "id='privacy-plot'" in text and "budget" in text
    assert [row["participant"] for row in ok(cli("audit", "report", "--json", *w)).json()["privacy"]] == [alice, bob]
