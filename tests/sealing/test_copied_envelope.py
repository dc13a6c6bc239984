"""A party that records another party's sealed envelope as its own, on a real chain: the contract
cannot tell (a CID is a CID), the envelope's sealed-in sender can. The aggregator includes the
author's update once and rejects the copy with the sealing library's sentence; the audit, with or
without a recipient's key, passes the federation and names the copier in a finding."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount

from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.sealing.test_cli_sealed import anvil_rpc, open_sealed_round, submit_by_hand, with_password  # noqa: F401

pytestmark = pytest.mark.anvil


def test_a_party_submitting_another_partys_sealed_envelope_is_rejected_and_named(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path  # noqa: F811
) -> None:
    sealed = open_sealed_round(tmp_path, anvil_rpc, anvil_keys, min_updates=1)
    w, rid = sealed.federation.w, sealed.round_id
    alice, bob = sealed.parties["alice"].address, sealed.parties["bob"].address
    original = submit_by_hand(sealed, "alice")
    client = sealed.federation.client()
    client.with_account(sealed.parties["bob"]).submit_update(rid, cid=original, samples=10, metrics_hash=b"\x01" * 32)
    assert {(s.participant, s.cid) for s in client.submissions(rid)} == {(alice, original), (bob, original)}

    document = ok(with_password("aggregate", "--round", str(rid), "--json", *w)).json()
    assert [(u["participant"], u["cid"]) for u in document["included"]] == [(alice, original)]
    [(who, cid, reason)] = [(r["participant"], r["cid"], r["reason"]) for r in document["rejected"]]
    assert (who, cid) == (bob, original)
    assert f"sender {alice}" in reason and f"sender {bob}" in reason and "another party's" in reason, reason
    assert [(u["participant"], u["cid"]) for u in document["sealed"]] == [(alice, original)]  # the copy never opened

    for keyed in (False, True):  # the auditor without a key checks the envelope's header; with one, opens it too
        args = ("audit", "verify", *(("--key", "auditor") if keyed else ()), "--json", *w)
        outcome = with_password(*args) if keyed else cli(*args)
        assert outcome.exit_code == 0, (keyed, outcome.stdout)
        findings = outcome.json()["findings"]
        assert [(f["check"], f["participant"]) for f in findings] == [("envelope", bob)], (keyed, findings)
        assert f"sender {alice}" in findings[0]["what"], findings[0]["what"]
