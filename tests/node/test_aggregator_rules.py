"""The aggregator's rules for what an update may count for, in the pure core the auditor repeats:
an update names its submitter and round, a missing blob is unavailable (not rejected), a claimed
sample count is capped by the round config, and a round with no usable update keeps its base."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ledger.errors import ContentNotFoundError
from ledger.chain.federation import RoundInfo, Submission
from ledger.ipfs.store import EmbeddedStore
from ledger.types import Address, Cid, RoundId
from ledger.weights import to_safetensors
from node.aggregator import aggregate_updates
from node.models import build_model, state_arrays
from node.receipt import Receipt
from node.round_config import RoundConfig
from node.strategies import make_strategy

ALICE, BOB, CAROL = (Address("0x" + c * 40) for c in "abc")
ROUND = RoundId(4)
FEDAVG = RoundConfig(model="mlp", strategy={"name": "fedavg"})


class Round:
    """A store holding a base MLP, and the round's submissions as the tests make them."""

    def __init__(self, tmp_path: Path) -> None:
        self.store = EmbeddedStore(tmp_path / "store")
        self.base = state_arrays(build_model("mlp"))
        base_cid = Cid(self.store.add_bytes(to_safetensors(self.base, metadata={"model": "mlp"}), pin=True))
        self.info = RoundInfo(round_id=ROUND, base_cid=base_cid, deadline=0, min_updates=1, config_hash=b"\0" * 32,
                              state="open", submissions=0, global_cid=None, receipt_cid=None, opened_block=1)
        self.submissions: list[Submission] = []

    def update(self, *, shift: float, names: str | None, round_id: object = ROUND) -> bytes:
        metadata = {"model": "mlp", "round": round_id, **({"participant": names} if names else {})}
        return to_safetensors({k: v + np.float32(shift) for k, v in self.base.items()}, metadata=metadata)

    def submit(self, party: Address, blob: bytes | None = None, *, cid: str | None = None, samples: int = 100,
               pin: bool = True) -> Submission:
        if cid is None:
            assert blob is not None
            cid = self.store.add_bytes(blob, pin=True) if pin else _cid_only(blob)
        submission = Submission(ROUND, party, Cid(cid), samples, b"\0" * 32, 10 + len(self.submissions), "0x")
        self.submissions.append(submission)
        return submission

    def aggregate(self, config: RoundConfig = FEDAVG, **kwargs: object) -> tuple[bytes, Receipt]:
        return aggregate_updates(store=self.store, info=self.info, config=config,
                                 strategy=make_strategy(config.strategy["name"]), submissions=self.submissions, **kwargs)


def _cid_only(blob: bytes) -> str:
    from ledger.ipfs.unixfs import cid_of_bytes

    return cid_of_bytes(blob)


def test_a_copy_of_another_partys_update_is_rejected_and_the_original_counts_once(tmp_path: Path) -> None:
    r = Round(tmp_path)
    original = r.submit(ALICE, r.update(shift=0.01, names=ALICE))
    r.submit(BOB, cid=original.cid)  # Bob copies Alice's CID from her event
    r.submit(CAROL, r.update(shift=0.02, names=CAROL))
    _, receipt = r.aggregate()
    assert [(u.participant, u.weight) for u in receipt.included] == [(ALICE, 0.5), (CAROL, 0.5)]
    assert [(x.participant, x.cid, x.reason) for x in receipt.rejected] == [
        (BOB, original.cid, f"the update's metadata names participant {ALICE}, not its submitter: "
                            "a copy of another party's update")
    ]


def test_an_update_made_for_another_round_or_naming_nobody_is_rejected(tmp_path: Path) -> None:
    r = Round(tmp_path)
    r.submit(ALICE, r.update(shift=0.01, names=ALICE, round_id=3))
    r.submit(BOB, r.update(shift=0.02, names=None))
    r.submit(CAROL, r.update(shift=0.03, names=CAROL))
    _, receipt = r.aggregate()
    assert [u.participant for u in receipt.included] == [CAROL]
    reasons = {x.participant: x.reason for x in receipt.rejected}
    assert reasons[ALICE] == "the update's metadata names round 3, not round 4: an update made for another round"
    assert reasons[BOB].startswith("the update's metadata names no participant")


def test_a_blob_missing_from_the_store_is_unavailable_not_rejected(tmp_path: Path) -> None:
    r = Round(tmp_path)
    r.submit(ALICE, r.update(shift=0.01, names=ALICE))
    late = r.update(shift=0.5, names=BOB)
    absent = r.submit(BOB, late, pin=False)
    blob, receipt = r.aggregate()
    assert [(u.participant, u.cid) for u in receipt.unavailable] == [(BOB, absent.cid)]
    assert receipt.rejected == [] and [u.participant for u in receipt.included] == [ALICE]
    assert receipt.outcome == "aggregated 1 of 2 submitted updates (0 rejected, 1 unavailable)"

    # An auditor whose store holds the blob after all takes the aggregator's list as given: same bytes.
    r.store.add_bytes(late, pin=True)
    again = r.aggregate(unavailable=[(BOB, absent.cid)])
    assert again[0] == blob and again[1].to_bytes() == receipt.to_bytes()
    # An auditor that lacks a blob the receipt does not call unavailable cannot recompute: it says which.
    auditor = EmbeddedStore(tmp_path / "auditor")
    auditor.add_bytes(r.store.get(r.info.base_cid), pin=True)
    with pytest.raises(ContentNotFoundError, match=f"the update {r.submissions[0].cid} of {ALICE} is not in this store"):
        aggregate_updates(store=auditor, info=r.info, config=FEDAVG, strategy=make_strategy("fedavg"),
                          submissions=r.submissions, unavailable=[(BOB, absent.cid)])


def test_a_claimed_sample_count_counts_at_most_the_rounds_max_samples(tmp_path: Path) -> None:
    r = Round(tmp_path)
    r.submit(ALICE, r.update(shift=0.01, names=ALICE), samples=300)
    r.submit(BOB, r.update(shift=0.02, names=BOB), samples=2**63)
    _, uncapped = r.aggregate(RoundConfig(model="mlp", strategy={"name": "fedavg"}, max_samples=2**64 - 1))
    assert dict((u.participant, u.weight) for u in uncapped.included)[BOB] > 0.999

    _, receipt = r.aggregate(RoundConfig(model="mlp", strategy={"name": "fedavg"}, max_samples=300))
    assert receipt.max_samples == 300
    assert [(u.participant, u.samples, u.counted_samples, u.weight) for u in receipt.included] == [
        (ALICE, 300, 300, 0.5), (BOB, 2**63, 300, 0.5)
    ]
    assert [(n.participant, n.note) for n in receipt.notes] == [
        (BOB, f"claimed {2**63} samples; counted 300, the round's max_samples")
    ]


def test_a_round_whose_only_updates_are_unusable_returns_its_base_model(tmp_path: Path) -> None:
    r = Round(tmp_path)
    r.submit(ALICE, b"junk, not weights")
    r.submit(BOB, r.update(shift=0.01, names=BOB), samples=0)
    blob, receipt = r.aggregate()
    assert blob == r.store.get(r.info.base_cid) and receipt.global_cid == r.info.base_cid
    assert receipt.included == [] and [x.participant for x in receipt.rejected] == [ALICE, BOB]
    assert receipt.rejected[1].reason == "claims 0 samples; an update must count at least 1"
    assert receipt.outcome == ("no update was usable: the global model is the round's base model, unchanged "
                               "(2 rejected, 0 unavailable)")
    assert Receipt.from_bytes(receipt.to_bytes()) == receipt
