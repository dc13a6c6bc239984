"""One party cannot make the federation's audit fail, and `round open` cannot start a round the audit
would fail for good (issue 26, "The audit cannot be griefed").

On a copy of the honest anvil ledger, with the project's own commands in-process (`round open`,
`aggregate`, `audit verify`): a party's junk (a blob that is not a weights file, with a metrics
hash nothing backs) in a round the aggregator rightly closes without it, in a round met only by
that junk, and in a round still open, is a finding against that party, listed in the text output
and in `--json`, not a failure; `--strict` fails it. A config naming a strategy without its
defaults (`{"name": "krum"}`) passes the strategy check of the honest round that ran it.
`round open` on a base outside the lineage, missing from the store, or not a weights file of the
round's model is refused with one sentence, and nothing is pinned or sent.
"""

from __future__ import annotations

import json

from web3 import Web3

from tests.audit.conftest import Ledger, not_the_aggregate
from tests.audit.faults import demo_config, submit_updates
from tests.fixtures_cli import ok

JUNK = json.dumps({"accuracy": 0.99}).encode()  # a party's "update": no weights at all


def admin_env(ledger: Ledger) -> dict[str, str]:
    """The deployer's key (it holds the coordinator and aggregator roles), as FEDLEDGER_PRIVATE_KEY."""
    return {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(ledger.admin.key)}


def open_round(cli, ledger: Ledger, *args: str, min_updates: int) -> int:
    base = ledger.federation().round(2).global_cid
    opened = ok(cli("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", str(min_updates),
                    *args, "--json", "--workdir", str(ledger.root), env=admin_env(ledger))).json()
    return int(opened["round_id"])


def test_junk_closed_with_the_commands_is_a_finding_against_its_party_and_strict_fails_it(ledger_copy, cli, tmp_path):
    w = ("--workdir", str(ledger_copy.root))
    junk_party = ledger_copy.parties[2].address
    base = ledger_copy.federation().round(2).global_cid

    # Round 3: a config naming Krum without its parameters; two honest updates and party 3's junk.
    krum = tmp_path / "krum.json"
    krum.write_text(json.dumps({"model": "mlp", "strategy": {"name": "krum"}}))
    mixed = open_round(cli, ledger_copy, "--config", str(krum), min_updates=3)
    junk_cid = submit_updates(ledger_copy, mixed, blobs={3: JUNK})[2].cid
    closed = ok(cli("aggregate", "--round", str(mixed), "--json", *w, env=admin_env(ledger_copy))).json()
    reasons = {r["participant"]: r["reason"] for r in closed["rejected"]}  # Krum (m = 1) keeps one honest update
    assert reasons[junk_party].startswith("invalid weights: ") and len(reasons) == 2 and len(closed["included"]) == 1

    # Round 4: met only by party 3's junk; `aggregate` finalizes it on its base model.
    only_junk = open_round(cli, ledger_copy, "--strategy", "fedavg", min_updates=1)
    ledger_copy.federation(ledger_copy.parties[2]).submit_update(only_junk, cid=junk_cid, samples=10,
                                                                 metrics_hash=b"\x01" * 32)
    closed = ok(cli("aggregate", "--round", str(only_junk), "--json", *w, env=admin_env(ledger_copy))).json()
    assert closed["global_cid"] == base and closed["included"] == []
    assert [r["participant"] for r in closed["rejected"]] == [junk_party]

    # Round 5: still open, party 3's junk in it.
    still_open = open_round(cli, ledger_copy, "--strategy", "fedavg", min_updates=3)
    ledger_copy.federation(ledger_copy.parties[2]).submit_update(still_open, cid=junk_cid, samples=10,
                                                                 metrics_hash=b"\x02" * 32)

    verdict = cli("audit", "verify", "--json", *w)
    assert verdict.exit_code == 0, verdict.stdout
    document = verdict.json()
    assert (document["ok"], document["failed"], document["failures"], document["strict"]) == (True, 0, [], False)
    findings = document["findings"]
    assert document["found"] == 3
    assert [(f["check"], f["participant"], f["round_id"], f["cid"], f["ok"], f["finding"]) for f in findings] == [
        ("metrics", junk_party, rid, junk_cid, False, True) for rid in (mixed, only_junk, still_open)]
    assert all(f["what"].startswith("the update is not a readable weights file: ") for f in findings)
    assert f"(a finding against {junk_party}: round {mixed}'s receipt rejects it)" in findings[0]["what"]
    assert f"(a finding against {junk_party}: round {only_junk}'s receipt rejects it)" in findings[1]["what"]
    assert f"round {still_open} is still open and no aggregate has used it yet" in findings[2]["what"]
    assert [c for c in document["checks"] if c.get("finding")] == findings  # the same rows, marked, among the checks
    strategy = {c["round_id"]: c for c in document["checks"] if c["check"] == "strategy"}
    assert strategy[mixed]["ok"] and "{'name': 'krum', 'f': 1, 'm': 1}" in strategy[mixed]["what"]

    text = cli("audit", "verify", *w)
    assert text.exit_code == 0, text.stderr
    lines = text.stderr.splitlines()
    found = [line for line in lines if line.startswith("FINDING ")]
    assert len(found) == 3 and all(line.startswith("FINDING metrics: the update is not a readable weights file: ")
                                   and f"(a finding against {junk_party}: round " in line for line in found), lines
    assert not any(line.startswith("FAIL") for line in lines)
    assert f"none failed; 3 finding(s) against {junk_party}, whose update(s) no aggregate used" in lines[-1]

    strict = cli("audit", "verify", "--strict", "--json", *w)
    assert strict.exit_code == 1, strict.stdout
    document = strict.json()
    assert (document["ok"], document["failed"], document["strict"]) == (False, 3, True)
    assert document["failures"] == document["findings"] == findings
    strict_text = cli("audit", "verify", "--strict", *w)
    assert strict_text.exit_code == 1
    assert sum(line.startswith("FAIL metrics: ") for line in strict_text.stderr.splitlines()) == 3
    assert not any(line.startswith("FINDING") for line in strict_text.stderr.splitlines())


def test_round_open_refuses_a_base_the_audit_would_fail_for_good_with_nothing_pinned_or_sent(ledger_copy, cli):
    w = ("--workdir", str(ledger_copy.root))
    admin = ledger_copy.federation()
    store = ledger_copy.store
    last = admin.round(2)
    stranger = store.add_bytes(not_the_aggregate(store.get(last.global_cid), demo_config(ledger_copy), 2, last.base_cid))
    absent = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"  # the empty file's CID: well-formed, not stored
    assert not store.has(absent)
    terms = admin.terms_cid(1)  # in the store, not a model

    def refused(base: str, *args: str) -> str:
        before = (admin.round_count(), ledger_copy.w3.eth.get_transaction_count(ledger_copy.admin.address),
                  sorted(store.pins()))
        outcome = cli("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", "1", *args, *w,
                      env=admin_env(ledger_copy))
        assert outcome.exit_code == 1 and outcome.stdout == "", outcome.stderr
        after = (admin.round_count(), ledger_copy.w3.eth.get_transaction_count(ledger_copy.admin.address),
                 sorted(store.pins()))
        assert after == before  # no round, no transaction, no config pinned
        return outcome.error_line()

    line = refused(absent)
    assert f"the base model {absent} is not in this workspace's store" in line
    assert "`fedledger ipfs add FILE`" in line and "`fedledger model init`" in line

    genesis = admin.round(1).base_cid
    for outsider in (stranger, terms):
        line = refused(outsider)
        assert (f"the base model {outsider} is neither this federation's genesis model ({genesis}) nor the global "
                f"model of a finalized round; the latest finalized round's is {last.global_cid}") in line
        assert "fails `fedledger audit verify` (lineage) for good" in line
        assert "found a new federation (`fedledger init DIR`, then `fedledger deploy` there)" in line

    line = refused(last.global_cid, "--model", "cnn")  # in the lineage, but not a weights file of the round's model
    assert f"the base model {last.global_cid} is not a weights file of model cnn (" in line
    assert "`fedledger model init --model cnn`" in line

    # The genesis model and every finalized round's global model are accepted.
    for base in (genesis, admin.round(1).global_cid, last.global_cid):
        ok(cli("round", "open", "--base-cid", base, "--deadline", "600", "--min-updates", "1", *w,
               env=admin_env(ledger_copy)))
    assert admin.round_count() == 5
