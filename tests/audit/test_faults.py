"""Faults the contract lets through, built on a real anvil; `audit verify` names each one and exits 1.

The contract accepts any metrics hash, base model, config hash and receipt, so the first tests record
such faults with real transactions. It refuses bad signatures and non-members, so the last tests read
the honest chain through a lying RPC node (a real HTTP server on 127.0.0.1 that rewrites the logs it
serves): there the auditor's own checks are all that stands between it and a forged history.

Each test fails when the check it names is made to always pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import pytest

from ledger.chain.federation import Submission, sign_join_message
from ledger.types import RoundId
from node.aggregator import aggregate_updates
from node.receipt import Receipt
from node.round_config import RoundConfig, config_cid
from node.strategies import strategy_from_params
from tests.audit.conftest import Ledger, finalize, honest_aggregate, not_the_aggregate
from tests.audit.faults import (
    data_field,
    demo_config,
    is_event,
    lying_node,
    open_round,
    submit_updates,
    synthetic_update,
    with_data,
)

ANOTHER_DEPLOYMENT = "0x" + "5e" * 20


def verify(cli, ledger, *args: str) -> list[dict]:
    """`audit verify --json` on ``ledger``: asserts exit 1 and a consistent document; returns the failures."""
    outcome = cli("audit", "verify", "--workdir", str(ledger.root), "--json", *args)
    assert outcome.exit_code == 1, outcome.stderr + outcome.stdout
    document = outcome.json()
    assert document["ok"] is False and document["failed"] == len(document["failures"]) > 0
    return document["failures"]


def named(failures: list[dict], check: str, **where: object) -> list[dict]:
    """The failures of ``check`` whose fields equal ``where``."""
    return [f for f in failures if f["check"] == check and all(f[key] == value for key, value in where.items())]


def aggregated_with(ledger: Ledger, round_id: int, config: RoundConfig) -> tuple[bytes, Receipt]:
    """Round ``round_id`` aggregated honestly, but with ``config`` given (not read from the chain's hash)."""
    return aggregate_updates(store=ledger.store, info=ledger.federation().round(round_id), config=config,
                             strategy=strategy_from_params(config.strategy),
                             submissions=ledger.federation().submissions(round_id))


# ---------------------------------------------------------------- metrics


def test_update_whose_metrics_do_not_hash_to_the_metrics_hash_on_chain_is_caught(ledger_copy, cli):
    # Party 2 records the hash of better metrics than its update's file reports.
    round_id, _ = open_round(ledger_copy)
    submitted = submit_updates(ledger_copy, round_id, claimed_metrics={2: {"accuracy": 0.99, "loss": 0.01}})
    finalize(ledger_copy, round_id, *honest_aggregate(ledger_copy, round_id)[:2])

    (failure,) = verify(cli, ledger_copy)
    liar = submitted[1]
    assert failure["check"] == "metrics" and failure["round_id"] == round_id
    assert failure["participant"] == liar.participant and failure["cid"] == liar.cid
    assert failure["tx_hash"] == liar.tx_hash and failure["block"] == liar.block
    assert "do not hash to the metrics hash on chain" in failure["what"]


def test_update_that_is_not_a_weights_file_is_a_finding_against_its_party_when_rightly_left_out(ledger_copy, cli):
    # The party's metrics hash is backed by nothing, but the aggregator rejected its update: the audit
    # names the party (a finding) and passes; --strict fails it. The same junk, included, fails.
    round_id, _ = open_round(ledger_copy)
    submitted = submit_updates(ledger_copy, round_id, blobs={3: json.dumps({"accuracy": 0.99}).encode()})
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    assert [r.participant for r in receipt.rejected] == [submitted[2].participant]  # the aggregator left it out
    finalize(ledger_copy, round_id, blob, receipt)

    passed = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert passed.exit_code == 0, passed.stdout
    assert passed.json()["failures"] == [] and passed.json()["ok"] is True
    (finding,) = passed.json()["findings"]
    (failure,) = verify(cli, ledger_copy, "--strict")
    assert failure == finding and failure["finding"] is True
    assert failure["check"] == "metrics" and failure["round_id"] == round_id
    assert failure["participant"] == submitted[2].participant and failure["cid"] == submitted[2].cid
    assert failure["tx_hash"] == submitted[2].tx_hash and failure["block"] == submitted[2].block
    assert "not a readable weights file" in failure["what"]
    assert f"(a finding against {submitted[2].participant}: round {round_id}'s receipt rejects it)" in failure["what"]


def test_update_that_is_not_a_weights_file_fails_the_audit_when_a_receipt_includes_it(ledger_copy, cli):
    round_id, _ = open_round(ledger_copy)
    submitted = submit_updates(ledger_copy, round_id, blobs={3: json.dumps({"accuracy": 0.99}).encode()})
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    junk = receipt.included[0]
    receipt = replace(receipt, included=[*receipt.included, replace(junk, participant=submitted[2].participant,
                                                                     cid=submitted[2].cid)], rejected=[])
    finalize(ledger_copy, round_id, blob, receipt)

    failures = verify(cli, ledger_copy)
    (metrics,) = named(failures, "metrics")
    assert metrics["participant"] == submitted[2].participant and metrics["finding"] is False
    assert "not a readable weights file" in metrics["what"] and "a finding" not in metrics["what"]


# ---------------------------------------------------------------- lineage


def test_round_on_a_base_that_is_neither_the_genesis_nor_an_earlier_global_model_breaks_lineage(ledger_copy, cli):
    # A model no round produced (round 2's result, scaled), pinned so that every blob is present;
    # the round is then aggregated honestly on it.
    last = ledger_copy.federation().round(2)
    stranger = not_the_aggregate(ledger_copy.store.get(last.global_cid), demo_config(ledger_copy), 2, last.base_cid)
    base_cid = ledger_copy.store.add_bytes(stranger)
    round_id, opened = open_round(ledger_copy, base_cid=base_cid)
    submit_updates(ledger_copy, round_id)
    finalize(ledger_copy, round_id, *honest_aggregate(ledger_copy, round_id)[:2])

    (failure,) = verify(cli, ledger_copy)
    assert failure["check"] == "lineage" and failure["round_id"] == round_id and failure["cid"] == base_cid
    assert (failure["block"], failure["tx_hash"]) == (opened.block, opened.tx_hash)
    assert "neither the genesis model nor an earlier round's global model" in failure["what"]
    # --round N still judges the base against every earlier round.
    assert [f["check"] for f in verify(cli, ledger_copy, "--round", str(round_id))] == ["lineage"]


def test_round_on_the_model_of_a_later_round_breaks_lineage(ledger_copy, cli):
    # Round 4's honest result is computed ahead (its updates are deterministic), round 3 is opened on
    # it, then round 4 is opened on round 2's model and finalized with exactly that result.
    round_two = ledger_copy.federation().round(2)
    config, base = demo_config(ledger_copy), round_two.global_cid
    ahead = []
    for number, party in enumerate(ledger_copy.parties, start=1):
        blob, _, samples = synthetic_update(ledger_copy, round_id=4, base_cid=base, number=number)
        ahead.append(Submission(RoundId(4), party.address, ledger_copy.store.add_bytes(blob), samples, b"", 0, ""))
    round_four = replace(round_two, round_id=RoundId(4), base_cid=base, config_hash=config.config_hash)
    future, _ = aggregate_updates(store=ledger_copy.store, info=round_four, config=config,
                                  strategy=strategy_from_params(config.strategy), submissions=ahead)
    future_cid = ledger_copy.store.add_bytes(future)

    early, _ = open_round(ledger_copy, base_cid=future_cid)
    later, _ = open_round(ledger_copy, base_cid=base)
    assert (early, later) == (3, 4)
    submit_updates(ledger_copy, later)
    global_cid, _ = finalize(ledger_copy, later, *honest_aggregate(ledger_copy, later)[:2])
    assert global_cid == future_cid

    (failure,) = verify(cli, ledger_copy)
    assert failure["check"] == "lineage" and failure["round_id"] == early and failure["cid"] == future_cid


# ---------------------------------------------------------------- receipts


def test_receipt_that_weighs_an_update_with_a_sample_count_the_chain_does_not_record_is_caught(ledger_copy, cli):
    round_id, _ = open_round(ledger_copy)
    target = submit_updates(ledger_copy, round_id)[0]
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    inflated = [replace(u, samples=u.samples * 10) if u.participant == target.participant else u for u in receipt.included]
    _, receipt_cid = finalize(ledger_copy, round_id, blob, replace(receipt, included=inflated))

    failures = verify(cli, ledger_copy)
    (failure,) = named(failures, "receipt", participant=target.participant)
    assert failure["round_id"] == round_id and failure["cid"] == target.cid
    assert f"with {target.samples * 10} samples, the chain records {target.samples}" in failure["what"]
    assert {f["round_id"] for f in failures} == {round_id}


def test_receipt_whose_weights_are_not_the_recomputed_ones_is_caught(ledger_copy, cli):
    # The global model is the honest aggregate; only the receipt misstates who counted for how much.
    round_id, _ = open_round(ledger_copy)
    submit_updates(ledger_copy, round_id)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    weights = [u.weight for u in receipt.included]
    assert len(set(weights)) == len(weights) > 1
    swapped = [replace(u, weight=w) for u, w in zip(receipt.included, reversed(weights))]
    _, receipt_cid = finalize(ledger_copy, round_id, blob, replace(receipt, included=swapped))

    failures = verify(cli, ledger_copy)
    (failure,) = named(failures, "aggregate", round_id=round_id)
    assert failure["cid"] == receipt_cid and "recomputation" in failure["what"]
    assert str(weights[0]) in failure["what"] and str(weights[-1]) in failure["what"]
    assert {f["round_id"] for f in failures} == {round_id}


@pytest.mark.parametrize(
    "document",
    [
        b'{"note": "this is not a round config"}',
        b"\xff\xfe not even text",
        b"[]",
        b'{"model": "mlp", "strategy": "fedavg"}',
    ],
    ids=["json-but-no-config", "not-utf8", "json-list", "strategy-not-an-object"],
)
def test_round_whose_config_hash_names_no_readable_config_is_caught_and_cannot_be_recomputed(ledger_copy, cli, document):
    ledger_copy.store.add_bytes(document)
    round_id, opened = open_round(ledger_copy, config_hash=hashlib.sha256(document).digest(), min_updates=1)
    submit_updates(ledger_copy, round_id, parties=1)
    finalize(ledger_copy, round_id, *aggregated_with(ledger_copy, round_id, demo_config(ledger_copy)))

    failures = verify(cli, ledger_copy)
    (unreadable,) = named(failures, "receipt", round_id=round_id, cid=config_cid(hashlib.sha256(document).digest()))
    assert f"round {round_id} config is unreadable" in unreadable["what"]
    assert (unreadable["block"], unreadable["tx_hash"]) == (opened.block, opened.tx_hash)
    (aggregate,) = named(failures, "aggregate", round_id=round_id)
    assert "cannot be recomputed: its config or base model is unavailable" in aggregate["what"]
    assert len(failures) == 2


def _honest_receipt_with(ledger, round_id: int, **changes: object) -> bytes:
    document = asdict(honest_aggregate(ledger, round_id)[1])
    document["included"][0].update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "receipt_bytes",
    [
        lambda ledger, round_id: b"not a receipt",
        lambda ledger, round_id: json.dumps({"round_id": round_id, "strategy": {"name": "fedavg"}}).encode(),
        lambda ledger, round_id: _honest_receipt_with(ledger, round_id, weight_in_percent=50),
        lambda ledger, round_id: _honest_receipt_with(ledger, round_id, participant=5),
    ],
    ids=["not-json", "fields-missing", "unknown-field", "participant-not-a-string"],
)
def test_round_finalized_with_a_receipt_that_is_not_a_receipt_is_caught(ledger_copy, cli, receipt_bytes):
    round_id, _ = open_round(ledger_copy, min_updates=1)
    submit_updates(ledger_copy, round_id, parties=1)
    global_cid = ledger_copy.store.add_bytes(honest_aggregate(ledger_copy, round_id)[0])
    receipt_cid = ledger_copy.store.add_bytes(receipt_bytes(ledger_copy, round_id))
    finalized = ledger_copy.federation().finalize_round(round_id, global_cid=global_cid, receipt_cid=receipt_cid)

    failures = verify(cli, ledger_copy)
    (failure,) = named(failures, "receipt", round_id=round_id, cid=receipt_cid)
    assert f"round {round_id} receipt is unreadable" in failure["what"]
    assert (failure["block"], failure["tx_hash"]) == (finalized.block, finalized.tx_hash)
    assert {f["round_id"] for f in failures} == {round_id}


# ---------------------------------------------------------------- a lying node: signatures and membership


def _another_deployments_signature(party, federation, log) -> dict:
    """The party's own signature of this join, but made for another deployment (a replayed signature)."""
    version = int(log["topics"][2], 16)
    deadline = data_field(log, "ParticipantJoined", "deadline")
    signature = sign_join_message(party, chain_id=federation.chain_id, contract=ANOTHER_DEPLOYMENT, version=version,
                                  terms_cid=federation.terms_cid(version), deadline=deadline)
    return {"signature": signature}


def _expired_signature(party, federation, log) -> dict:
    """A true signature by the party for this deployment, but one whose deadline had passed."""
    version = int(log["topics"][2], 16)
    signature = sign_join_message(party, chain_id=federation.chain_id, contract=federation.address, version=version,
                                  terms_cid=federation.terms_cid(version), deadline=1)
    return {"deadline": 1, "signature": signature}


@pytest.mark.parametrize(
    ("forge", "says"),
    [(_another_deployments_signature, "was made by 0x"), (_expired_signature, "had expired at its block")],
    ids=["signed-for-another-deployment", "expired"],
)
def test_join_signature_that_a_lying_node_forged_is_caught(ledger_copy, anvil, cli, forge, says):
    party, federation = ledger_copy.parties[0], ledger_copy.federation()

    def rewrite(logs: list[dict]) -> list[dict]:
        return [with_data(log, "ParticipantJoined", **forge(party, federation, log))
                if is_event(log, "ParticipantJoined", party.address) else log for log in logs]

    with lying_node(anvil.rpc_url, rewrite) as node:
        failures = verify(cli, ledger_copy, "--rpc", node.url)
    assert node.rewritten > 0

    (signature,) = named(failures, "signature")
    assert signature["participant"] == party.address
    assert f"the join signature of {party.address} for v1 " in signature["what"] and says in signature["what"]
    if says.startswith("was made by"):
        assert party.address not in signature["what"].split(says)[1]
    # Both of its updates are named, and the rounds' aggregates (which counted them) no longer recompute.
    membership = named(failures, "membership")
    assert {(f["round_id"], f["participant"]) for f in membership} == {(1, party.address), (2, party.address)}
    assert all("without a valid signature for agreement v1" in f["what"] for f in membership)
    assert {f["round_id"] for f in named(failures, "aggregate")} == {1, 2}
    assert {f["check"] for f in failures} == {"signature", "membership", "aggregate"}


def test_admission_that_a_lying_node_hides_is_caught_by_the_installed_command(ledger_copy, anvil, fedledger):
    party = ledger_copy.parties[1]

    def rewrite(logs: list[dict]) -> list[dict]:
        return [log for log in logs if not is_event(log, "ParticipantAdmitted", party.address)]

    with lying_node(anvil.rpc_url, rewrite) as node:
        outcome = fedledger("audit", "verify", "--workdir", str(ledger_copy.root), "--rpc", node.url, "--json")
    assert node.rewritten > 0
    assert outcome.exit_code == 1, outcome.stderr
    failures = outcome.json()["failures"]
    membership = named(failures, "membership")
    assert {(f["round_id"], f["participant"]) for f in membership} == {(1, party.address), (2, party.address)}
    assert all(f"{party.address} submitted while pending" in f["what"] for f in membership)
    submitted = {(s.round_id, s.tx_hash) for r in (1, 2) for s in ledger_copy.federation().submissions(r)
                 if s.participant == party.address}
    assert {(f["round_id"], f["tx_hash"]) for f in membership} == submitted
    assert {f["round_id"] for f in named(failures, "aggregate")} == {1, 2}
    assert {f["check"] for f in failures} == {"membership", "aggregate"}
