"""`fedledger audit verify` on real ledgers: an honest one passes, each deliberate fault is caught and named.

The honest ledger runs through the installed console script; the faults through the same app in-process.
"""

from __future__ import annotations

from dataclasses import replace

from ledger.index.index import LedgerIndex
from node.audit.verify import verify_ledger
from node.receipt import IncludedUpdate, UpdateNote
from tests.audit.conftest import (
    finalize,
    flip_byte,
    honest_aggregate,
    not_the_aggregate,
    open_extra_round,
)


def failures(outcome) -> list[dict]:
    document = outcome.json()
    assert document["ok"] is False
    return document["failures"]


def test_honest_ledger_passes_with_exit_0(anvil_ledger, fedledger):
    outcome = fedledger("audit", "verify", "--workdir", str(anvil_ledger.root), "--json")
    assert outcome.exit_code == 0, outcome.stderr
    document = outcome.json()
    assert document["ok"] is True and document["failed"] == 0
    assert document["rounds"] == [1, 2]
    kinds = {check["check"] for check in document["checks"]}
    assert kinds == {"contract", "blob", "signature", "membership", "metrics", "receipt", "strategy", "aggregate", "lineage"}


def test_finalized_model_that_is_not_the_aggregate_is_caught(ledger_copy, cli):
    round_id, _ = open_extra_round(ledger_copy)
    blob, receipt, config = honest_aggregate(ledger_copy, round_id)
    wrong = not_the_aggregate(blob, config, round_id, receipt.base_cid)
    global_cid, _ = finalize(ledger_copy, round_id, wrong, receipt)

    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    (failure,) = failures(outcome)
    assert failure["check"] == "aggregate" and failure["round_id"] == round_id
    assert failure["cid"] == global_cid and "is not the aggregate" in failure["what"]
    assert failure["tx_hash"].startswith("0x") and failure["block"] > 0

    # The other rounds are still sound; --round limits the check to them.
    earlier = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--round", "2")
    assert earlier.exit_code == 0, earlier.stderr
    human = cli("audit", "verify", "--workdir", str(ledger_copy.root))
    assert human.exit_code == 1
    assert f"FAIL aggregate: round {round_id} global model {global_cid} is not the aggregate" in human.stderr


def test_receipt_listing_an_update_never_submitted_in_the_round_is_caught(ledger_copy, cli):
    round_id, _ = open_extra_round(ledger_copy)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    # Round 1's update of the first party, smuggled into round 3's receipt.
    old = ledger_copy.federation().submissions(1)[0]
    phantom = IncludedUpdate(participant=old.participant, cid=old.cid, samples=old.samples,
                             counted_samples=old.samples, weight=0.0)
    finalize(ledger_copy, round_id, blob, replace(receipt, included=[*receipt.included, phantom]))

    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    named = [f for f in failures(outcome) if f["check"] == "receipt"]
    assert len(named) == 1
    assert named[0]["round_id"] == round_id and named[0]["cid"] == old.cid
    assert named[0]["participant"] == old.participant
    assert "never submitted in this round" in named[0]["what"]


def test_update_altered_in_the_store_after_submission_is_caught(ledger_copy, cli):
    target = ledger_copy.federation().submissions(2)[1]
    flip_byte(ledger_copy.workspace.store_dir, target.cid)

    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    blob_failures = [f for f in failures(outcome) if f["check"] == "blob"]
    assert len(blob_failures) == 1
    (failure,) = blob_failures
    assert failure["cid"] == target.cid and failure["round_id"] == 2
    assert failure["tx_hash"] == target.tx_hash and failure["block"] == target.block
    assert "altered in the store" in failure["what"]


def test_receipt_whose_strategy_differs_from_the_round_config_is_caught(ledger_copy, cli):
    round_id, _ = open_extra_round(ledger_copy)
    blob, receipt, config = honest_aggregate(ledger_copy, round_id)
    assert config.strategy == {"name": "fedavg"}
    _, receipt_cid = finalize(ledger_copy, round_id, blob, replace(receipt, strategy={"name": "median"}))

    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    (failure,) = failures(outcome)
    assert failure["check"] == "strategy" and failure["round_id"] == round_id
    assert failure["cid"] == receipt_cid and "median" in failure["what"] and "fedavg" in failure["what"]


def test_an_oversized_update_is_not_read_and_an_honest_aggregate_that_left_it_out_passes(ledger_copy, cli):
    round_id, submissions = open_extra_round(ledger_copy, oversized=2)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    oversized = submissions[[s.participant for s in submissions].index(ledger_copy.parties[1].address)]
    assert [(r.participant, r.cid) for r in receipt.rejected] == [(oversized.participant, oversized.cid)]
    finalize(ledger_copy, round_id, blob, receipt)

    outcome = cli("audit", "verify", "--round", str(round_id), "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 0, outcome.stdout
    (check,) = [c for c in outcome.json()["checks"] if c["check"] == "blob" and c["cid"] == oversized.cid]
    assert check["ok"] is True and "larger than it can be" in check["what"] and "not read" in check["what"]


def test_in_process_ledger_verifies_and_catches_an_altered_global_model(memory_ledger_factory):
    ledger = memory_ledger_factory()
    federation = ledger.federation()
    with LedgerIndex.for_federation(ledger.workspace.index_path, federation) as index:
        report = verify_ledger(federation, ledger.store, index, progress=False)
        assert report.ok, report.failures
        global_cid = federation.round(1).global_cid
        flip_byte(ledger.workspace.store_dir, global_cid)
        report = verify_ledger(federation, ledger.store, index, progress=False)
    assert not report.ok
    named = {(f.check, f.cid, f.round_id) for f in report.failures}
    assert ("blob", global_cid, 1) in named
    # Round 2 starts from the altered model, so it cannot be recomputed either: named, not hidden.
    assert any(f.check == "aggregate" and f.round_id == 2 for f in report.failures)


def remove_blob(ledger, cid: str) -> bytes:
    """Delete ``cid`` (one raw block) from the ledger's embedded store; returns its bytes for putting back."""
    path = ledger.store.block_path(cid)
    data = path.read_bytes()
    path.unlink()
    return data


def test_every_receipt_field_that_differs_from_the_recomputation_is_named(ledger_copy, cli):
    round_id, submissions = open_extra_round(ledger_copy, oversized=2)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    (rejection,) = receipt.rejected
    first = receipt.included[0]
    forged = replace(
        receipt,
        rejected=[replace(rejection, reason="the party asked to be left out")],  # a reworded rejection
        notes=[UpdateNote(participant=first.participant, cid=first.cid, note="delta norm 9 clipped to 1")],
        included=[replace(first, weight=first.weight + 0.01), *receipt.included[1:]],
        max_samples=7,
        outcome="aggregated every update",
    )
    _, receipt_cid = finalize(ledger_copy, round_id, blob, forged)

    outcome = cli("audit", "verify", "--round", str(round_id), "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    found = failures(outcome)
    assert {f["check"] for f in found} == {"aggregate"}
    assert all(f["cid"] == receipt_cid and f["round_id"] == round_id for f in found)
    named = sorted(f["what"].split("receipt field ")[1].split(" ")[0] for f in found)
    assert named == ["'included'", "'max_samples'", "'notes'", "'outcome'", "'rejected'"]
    (reworded,) = [f["what"] for f in found if "field 'rejected'" in f["what"]]
    assert rejection.reason in reworded and "the party asked to be left out" in reworded


def test_a_dropped_rejection_is_named(ledger_copy, cli):
    round_id, _ = open_extra_round(ledger_copy, oversized=3)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)
    (rejection,) = receipt.rejected
    finalize(ledger_copy, round_id, blob, replace(receipt, rejected=[]))

    outcome = cli("audit", "verify", "--round", str(round_id), "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    (failure,) = failures(outcome)
    assert failure["check"] == "aggregate" and "receipt field 'rejected' differs" in failure["what"]
    assert f"the receipt lacks [{{\"cid\":\"{rejection.cid}\"" in failure["what"]


def test_an_auditor_without_a_blob_could_not_check_and_exits_2_naming_it(ledger_copy, cli):
    target = ledger_copy.federation().submissions(2)[0]
    remove_blob(ledger_copy, target.cid)

    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 2, outcome.stderr
    document = outcome.json()
    assert document["failed"] == 0 and document["ok"] is False
    assert document["missing_cids"] == [target.cid]
    kinds = {(c["check"], c["round_id"]) for c in document["could_not_check"]}
    assert kinds == {("blob", 2), ("aggregate", 2)}
    assert target.cid in outcome.error_line(alone=False) and "could not be checked" in outcome.error_line(alone=False)


def test_an_update_unavailable_at_aggregation_is_left_out_and_one_available_after_all_is_reported(ledger_copy, cli):
    round_id, submissions = open_extra_round(ledger_copy)
    late = submissions[[s.participant for s in submissions].index(ledger_copy.parties[0].address)]
    data = remove_blob(ledger_copy, late.cid)
    blob, receipt, _ = honest_aggregate(ledger_copy, round_id)  # the aggregator's store lacks it
    assert [(u.participant, u.cid) for u in receipt.unavailable] == [(late.participant, late.cid)]
    assert receipt.rejected == [] and late.participant not in {u.participant for u in receipt.included}
    finalize(ledger_copy, round_id, blob, receipt)

    # Missing here too: the aggregate is still recomputed (the receipt's list taken as given); the blob is unchecked.
    outcome = cli("audit", "verify", "--round", str(round_id), "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 2, outcome.stderr
    document = outcome.json()
    assert document["failed"] == 0 and document["missing_cids"] == [late.cid]
    checks = {c["check"]: c for c in document["checks"] if c["check"] in ("aggregate", "availability")}
    assert checks["aggregate"]["ok"] is True and checks["availability"]["ok"] is True

    # Published after all: the auditor says so, as its own finding; the aggregate still checks out.
    ledger_copy.store.add_bytes(data)
    outcome = cli("audit", "verify", "--round", str(round_id), "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    (failure,) = failures(outcome)
    assert failure["check"] == "availability" and failure["cid"] == late.cid
    assert failure["participant"] == late.participant and "this auditor's store holds it" in failure["what"]
