"""Free-riding by copying: party b records party a's CID, sample count and metrics hash (all public in
a's UpdateSubmitted event) straight to the contract. The update's metadata names a, so the aggregator
rejects b's copy with that reason in the receipt and counts a's once; the audit recomputes the same
and passes. (Both used to be included, and the audit passed.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import ipfs_cat, make_federation

pytestmark = pytest.mark.anvil


@pytest.mark.slow
def test_a_party_that_submits_another_partys_cid_is_rejected_and_the_audit_agrees(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    w = federation.w
    alice = federation.admit("alice", Web3.to_hex(anvil_keys[4].key))
    bob = federation.admit("bob", Web3.to_hex(anvil_keys[5].key))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=2)

    ok(fedledger("node", "train", "--round", str(round_id), "--shard", "0", "--of", "2", *w,
                 env=federation.parties["alice"]["env"], timeout=180))
    reader = federation.client()
    (original,) = reader.submissions(round_id)
    reader.with_account(anvil_keys[5]).submit_update(
        round_id, cid=original.cid, samples=original.samples, metrics_hash=original.metrics_hash
    )

    document = ok(cli("aggregate", "--round", str(round_id), "--json", *w)).json()
    assert [(u["participant"], u["cid"], u["weight"]) for u in document["included"]] == [(alice, original.cid, 1.0)]
    reason = f"the update's metadata names participant {alice}, not its submitter: a copy of another party's update"
    assert [(r["participant"], r["cid"], r["reason"]) for r in document["rejected"]] == [(bob, original.cid, reason)]

    receipt = json.loads(ipfs_cat(document["receipt_cid"], *w))
    assert [(r["participant"], r["reason"]) for r in receipt["rejected"]] == [(bob, reason)]
    verdict = cli("audit", "verify", "--json", *w)
    assert verdict.exit_code == 0, verdict.stdout
    assert verdict.json()["failed"] == 0
