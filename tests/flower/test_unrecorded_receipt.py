"""The receipt's ``unrecorded`` list: absent when empty (every other receipt keeps its bytes and
CID), read back when present, and checked by the auditor against what the chain records."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ledger.index.index import LedgerIndex
from ledger.ipfs.store import EmbeddedStore
from ledger.workspace import Workspace
from node.aggregator import aggregate_round, global_model_bytes
from node.audit.verify import verify_ledger
from node.demo import DemoOptions, found_federation
from node.models import build_model, state_arrays
from node.participant import update_bytes
from node.update_metrics import metrics_hash
from node.receipt import Receipt, RejectedUpdate
from node.round_config import RoundConfig
from tests.fixtures_chain import TestChain

CONFIG = RoundConfig(model="mlp", strategy={"name": "fedavg"})


def test_a_receipt_without_unrecorded_updates_has_no_such_field_and_one_with_them_reads_back() -> None:
    plain = Receipt(round_id=1, base_cid="b", config_cid="c", strategy={"name": "fedavg"}, max_samples=10, outcome="o")
    assert "unrecorded" not in json.loads(plain.to_bytes())
    named = Receipt(**{**plain.__dict__, "unrecorded": [RejectedUpdate("0xabc", "bafk", "refused")]})
    assert Receipt.from_bytes(named.to_bytes()) == named
    assert Receipt.from_bytes(plain.to_bytes()) == plain


def test_the_audit_fails_a_receipt_that_calls_a_recorded_update_unrecorded(memory_chain: TestChain, tmp_path: Path) -> None:
    workspace = Workspace.init(tmp_path / "ws", rpc="memory")
    store = EmbeddedStore(workspace.store_dir)
    admin, [party] = found_federation(DemoOptions(participants=1, chain="memory"), w3=memory_chain.w3,
                                      workspace=workspace, store=store, track=lambda *_: None)
    arrays = state_arrays(build_model("mlp"))
    base = store.add_bytes(global_model_bytes(arrays, model="mlp", round_id=0, base_cid=""))
    store.add_bytes(CONFIG.to_bytes())
    admin.open_round(base_cid=base, deadline=memory_chain.now() + 3600, min_updates=1, config_hash=CONFIG.config_hash)
    update = {k: v + np.float32(0.1) for k, v in arrays.items()}
    cid = store.add_bytes(update_bytes(update, model="mlp", participant=party.address, round_id=1, base_cid=base,
                                       samples=5, metrics={}))
    admin.with_account(party).submit_update(1, cid=cid, samples=5, metrics_hash=metrics_hash({}))
    aggregate_round(federation=admin, store=store, round_id=1, journal_dir=workspace.journal_dir,
                    unrecorded=[RejectedUpdate(party.address, cid, "the contract refused to record it: made up")])
    with LedgerIndex.for_federation(":memory:", admin) as index:
        verdict = verify_ledger(admin, store, index, progress=False)
    assert [c.what for c in verdict.failures] == [
        f"round 1 receipt says the contract refused update {cid} by {party.address}, but the chain records it in this round"
    ]
