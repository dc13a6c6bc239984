"""The aggregator's pure core, without a chain: verify each blob, aggregate, describe it in the receipt."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ledger.errors import InvalidInputError
from ledger.chain.federation import RoundInfo, Submission
from ledger.ipfs.store import EmbeddedStore
from ledger.types import Address, Cid, RoundId
from ledger.weights import max_blob_bytes, to_safetensors
from node.aggregator import aggregate_updates
from node.models import build_model, model_layout, state_arrays
from node.receipt import Receipt
from node.round_config import RoundConfig
from node.strategies import make_strategy

ALICE, BOB, CAROL = (Address("0x" + c * 40) for c in "abc")


def _setup(tmp_path: Path, deltas: dict[Address, float]) -> tuple[EmbeddedStore, RoundInfo, list[Submission]]:
    """A store holding a base MLP and one update per party: the base shifted by ``deltas[party]``."""
    store = EmbeddedStore(tmp_path / "store")
    base = state_arrays(build_model("mlp"))
    base_cid = store.add_bytes(to_safetensors(base, metadata={"model": "mlp"}), pin=True)
    info = RoundInfo(
        round_id=RoundId(1), base_cid=Cid(base_cid), deadline=0, min_updates=1, config_hash=b"\0" * 32,
        state="open", submissions=len(deltas), global_cid=None, receipt_cid=None, opened_block=1,
    )
    submissions = []
    for block, (party, delta) in enumerate(deltas.items(), start=2):
        blob = to_safetensors({k: v + np.float32(delta) for k, v in base.items()},
                              metadata={"model": "mlp", "participant": party, "round": 1})
        submissions.append(Submission(RoundId(1), party, Cid(store.add_bytes(blob, pin=True)), 100, b"\0" * 32, block, "0x"))
    return store, info, submissions


def test_clipped_updates_are_named_in_the_receipt_notes(tmp_path: Path) -> None:
    store, info, submissions = _setup(tmp_path, {ALICE: 0.001, BOB: 0.001, CAROL: 5.0})
    config = RoundConfig(model="mlp", strategy=make_strategy("fedavg", clip_norm=1.0).params())
    _, receipt = aggregate_updates(
        store=store, info=info, config=config, strategy=make_strategy("fedavg", clip_norm=1.0), submissions=submissions
    )
    assert [(n.participant, n.cid) for n in receipt.notes] == [(CAROL, submissions[2].cid)]
    assert receipt.notes[0].note.startswith("delta norm ") and receipt.notes[0].note.endswith("clipped to 1")
    assert Receipt.from_bytes(receipt.to_bytes()).notes == receipt.notes


def test_an_altered_blob_is_rejected_and_the_rest_aggregated_deterministically(tmp_path: Path) -> None:
    store, info, submissions = _setup(tmp_path, {ALICE: 0.01, BOB: 0.02, CAROL: 0.03})
    block = store.block_path(submissions[1].cid)  # an MLP update is one raw block
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0xFF
    block.write_bytes(bytes(data))
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"})
    first = aggregate_updates(store=store, info=info, config=config, strategy=make_strategy("fedavg"), submissions=submissions)
    again = aggregate_updates(store=store, info=info, config=config, strategy=make_strategy("fedavg"), submissions=submissions[::-1])
    assert first[0] == again[0] and first[1].to_bytes() == again[1].to_bytes()
    assert [u.participant for u in first[1].included] == [ALICE, CAROL] and first[1].notes == []
    assert [(r.participant, r.reason) for r in first[1].rejected] == [
        (BOB, "blob does not hash to its CID (altered in the store)")
    ]


def test_a_blob_larger_than_the_model_can_be_is_rejected_unread(tmp_path: Path) -> None:
    store, info, submissions = _setup(tmp_path, {ALICE: 0.01, BOB: 0.02})
    limit = max_blob_bytes(model_layout("mlp"))
    huge = Cid(store.add_bytes(bytes(limit + 1), pin=True))
    submissions[1] = replace(submissions[1], cid=huge)
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"})
    _, receipt = aggregate_updates(store=store, info=info, config=config, strategy=make_strategy("fedavg"), submissions=submissions)
    assert [u.participant for u in receipt.included] == [ALICE]
    assert [(r.participant, r.cid, r.reason) for r in receipt.rejected] == [
        (BOB, huge, f"blob is larger than an update of this model can be ({limit} bytes at most); not read")
    ]


def test_a_round_without_a_usable_update_keeps_its_base_model_and_says_so(tmp_path: Path) -> None:
    store, info, _ = _setup(tmp_path, {ALICE: 0.01})
    junk = Submission(RoundId(1), BOB, Cid(store.add_bytes(b"not weights", pin=True)), 5, b"\0" * 32, 9, "0x")
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"})
    blob, receipt = aggregate_updates(store=store, info=info, config=config, strategy=make_strategy("fedavg"), submissions=[junk])
    assert blob == store.get(info.base_cid) and receipt.global_cid == info.base_cid
    assert receipt.included == [] and [(r.participant, r.cid) for r in receipt.rejected] == [(BOB, junk.cid)]
    assert receipt.outcome.startswith("no update was usable: the global model is the round's base model")
