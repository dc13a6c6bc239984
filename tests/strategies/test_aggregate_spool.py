"""The aggregator's core spools each checked update to a file, aggregates from the files, and removes them."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest

from ledger.errors import ContentNotFoundError
from ledger.chain.federation import RoundInfo, Submission
from ledger.ipfs.store import EmbeddedStore
from ledger.types import Address, Cid, RoundId
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import WeightsFile, to_safetensors
from node.aggregator import aggregate_updates, global_model_bytes
from node.models import build_model, state_arrays
from node.round_config import RoundConfig
from node.strategies import AggregateResult, Median, Update, make_strategy

PARTIES = [Address("0x" + c * 40) for c in "abcde"]


@pytest.fixture
def spool_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _round(tmp_path: Path) -> tuple[EmbeddedStore, RoundInfo, list[Submission], dict, list[Update]]:
    store = EmbeddedStore(tmp_path / "store")
    base = state_arrays(build_model("mlp"))
    base_cid = Cid(store.add_bytes(to_safetensors(base, metadata={"model": "mlp"})))
    rng = np.random.default_rng(4)
    submissions, in_memory = [], []
    for index, party in enumerate(PARTIES):
        arrays = {k: v + rng.standard_normal(v.shape, dtype=np.float32) * 0.1 for k, v in base.items()}
        cid = store.add_bytes(to_safetensors(arrays, metadata={"model": "mlp", "participant": party, "round": 1}))
        submissions.append(Submission(RoundId(1), party, Cid(cid), 10 + index, b"\0" * 32, 2 + index, "0x"))
        in_memory.append(Update(party, arrays, 10 + index))
    info = RoundInfo(RoundId(1), base_cid, 0, 1, b"\0" * 32, "open", len(PARTIES), None, None, 1)
    return store, info, submissions, base, in_memory


class _Watching(Median):
    """The median, noting what it was handed: the updates' types and whether their files exist."""

    seen: list[tuple[type, bool]]

    def aggregate(self, updates: Sequence[Update], *, base: Mapping[str, np.ndarray] | None = None) -> AggregateResult:
        self.seen = [(type(u.arrays), isinstance(u.arrays, WeightsFile) and u.arrays.path.exists()) for u in updates]
        return super().aggregate(updates, base=base)


@pytest.mark.parametrize("params", [{"name": "median"}, {"name": "krum", "f": 1, "m": 2, "clip_norm": 1.0}])
def test_the_aggregate_from_spooled_files_is_the_in_memory_one_and_the_files_are_removed(tmp_path, spool_root, params):
    store, info, submissions, base, in_memory = _round(tmp_path)
    config = RoundConfig(model="mlp", strategy=params)
    blob, receipt = aggregate_updates(store=store, info=info, config=config,
                                      strategy=make_strategy(**params), submissions=submissions)
    expected = make_strategy(**params).aggregate(in_memory, base=base)
    assert blob == global_model_bytes(expected.arrays, model="mlp", round_id=1, base_cid=info.base_cid)
    assert receipt.global_cid == cid_of_bytes(blob)
    assert list(spool_root.iterdir()) == []


def test_the_strategy_reads_files_that_exist_while_it_runs(tmp_path, spool_root):
    store, info, submissions, _, _ = _round(tmp_path)
    watching = _Watching()
    aggregate_updates(store=store, info=info, config=RoundConfig(model="mlp", strategy={"name": "median"}),
                      strategy=watching, submissions=submissions)
    assert watching.seen == [(WeightsFile, True)] * len(PARTIES)
    assert list(spool_root.iterdir()) == []


def test_the_spool_is_removed_when_the_recomputation_fails(tmp_path, spool_root):
    store, info, submissions, _, _ = _round(tmp_path)
    store.unpin(submissions[-1].cid)
    store.block_path(submissions[-1].cid).unlink()  # an MLP update is one block
    with pytest.raises(ContentNotFoundError, match="not in this store"):
        aggregate_updates(store=store, info=info, config=RoundConfig(model="mlp", strategy={"name": "fedavg"}),
                          strategy=make_strategy("fedavg"), submissions=submissions, unavailable=[])
    assert list(spool_root.iterdir()) == []
