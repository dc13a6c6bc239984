"""Crash recovery on a real anvil: a participant and the aggregator are killed at their named
failpoints (after pinning, before the transaction) and run again. The chain ends with exactly one
submission and one finalize, the participant does not train twice (counted from outside: each
training run appends a line to $FEDLEDGER_TRACE; seeded training would give the same CID, so the
CID alone could not tell), and the global model the rerun records is FedAvg worked out here by
hand, with plain numpy, from the update tensors in the store and the sample counts on chain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from safetensors.numpy import load as load_safetensors
from web3 import Web3

from ledger.failpoints import FAILPOINT_ENV, FAILPOINT_EXIT, TRACE_ENV
from ledger.ipfs.store import EmbeddedStore
from node.receipt import Receipt
from node.round_config import RoundConfig, config_cid
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.round.conftest import Federation, finish, make_federation, start

pytestmark = pytest.mark.anvil


def journal(federation: Federation, role: str, actor: str, round_id: int) -> dict:
    path = federation.workspace.journal_dir / f"{role}-{actor.lower()}-round-{round_id}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def training_runs(trace: Path) -> int:
    """How many times the processes given this trace file trained (node/training.py's `train` lines)."""
    return sum(line.startswith("train ") for line in trace.read_text().splitlines()) if trace.is_file() else 0


def fedavg_by_hand(updates: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """sum(n_i * w_i) / sum(n_i) per coordinate in float64, rounded once to float32 (DESIGN.md)."""
    total = sum(n for _, n in updates)
    return {
        name: (sum(tensors[name].astype(np.float64) * n for tensors, n in updates) / total).astype(np.float32)
        for name in updates[0][0]
    }


@pytest.mark.slow
def test_killed_participant_and_aggregator_finish_the_round_once_without_retraining(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    alice = federation.admit("alice", Web3.to_hex(anvil_keys[1].key))
    bob = federation.admit("bob", Web3.to_hex(anvil_keys[2].key))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=2)
    client = federation.client()
    w = federation.w
    alice_trace, bob_trace = tmp_path / "alice-trace.log", tmp_path / "bob-trace.log"
    alice_env = {**federation.parties["alice"]["env"], TRACE_ENV: str(alice_trace)}
    # A non-IID split gives the parties different sample counts (818 and 620), so FedAvg's weights matter.
    train = ("node", "train", "--round", str(round_id), "--of", "2", "--non-iid", "0.5", "--json", *w)

    # Bob trains undisturbed meanwhile; Alice dies after pinning her update, before submitting it.
    bob_run = start(*train, "--shard", "1", env={**federation.parties["bob"]["env"], TRACE_ENV: str(bob_trace)})
    crashed = fedledger(*train, "--shard", "0", env={**alice_env, FAILPOINT_ENV: "participant:after-pin"})
    assert crashed.exit_code == FAILPOINT_EXIT, crashed.stderr
    assert crashed.stdout == ""
    assert training_runs(alice_trace) == 1
    pinned = journal(federation, "participant", alice, round_id)["update_cid"]
    assert EmbeddedStore(federation.workspace.store_dir).has(pinned)
    assert not client.has_submitted(round_id, alice)

    # The rerun submits the pinned update without training again.
    rerun_outcome = ok(fedledger(*train, "--shard", "0", env=alice_env))
    rerun = rerun_outcome.json()
    assert training_runs(alice_trace) == 1, "the rerun trained again"
    assert "reused the update pinned by an earlier run" in rerun_outcome.stderr
    assert rerun["trained"] is False
    assert rerun["update_cid"] == pinned
    assert rerun["tx_hash"] is not None

    assert ok(finish(bob_run)).json()["trained"] is True
    assert training_runs(bob_trace) == 1

    # A third run after submitting does nothing.
    again = fedledger(*train, "--shard", "0", env=alice_env)
    ok(again)
    assert again.json()["tx_hash"] is None and again.json()["update_cid"] == pinned
    assert "Already submitted" in again.stderr
    assert training_runs(alice_trace) == 1

    submissions = client.submissions(round_id)
    assert sorted(s.participant for s in submissions) == sorted([alice, bob])
    assert [s.cid for s in submissions if s.participant == alice] == [pinned]
    assert len(client.contract.events.UpdateSubmitted.get_logs(
        argument_filters={"roundId": round_id, "participant": alice}, from_block=client.from_block)) == 1

    # The aggregator dies after pinning the global model and receipt, before finalizing.
    aggregate = ("aggregate", "--round", str(round_id), "--json", *w)
    crashed = fedledger(*aggregate, env={FAILPOINT_ENV: "aggregator:after-pin"})
    assert crashed.exit_code == FAILPOINT_EXIT, crashed.stderr
    assert client.round(round_id).state == "open"
    pinned_global = journal(federation, "aggregator", client.address, round_id)["global_cid"]

    finalized = ok(fedledger(*aggregate)).json()
    assert finalized["tx_hash"] is not None
    info = client.round(round_id)
    assert info.state == "finalized"
    assert info.global_cid == finalized["global_cid"] == pinned_global
    assert info.receipt_cid == finalized["receipt_cid"]
    assert len(client.contract.events.RoundFinalized.get_logs(
        argument_filters={"roundId": round_id}, from_block=client.from_block)) == 1

    # The global model is FedAvg worked out by hand from the updates in the store, weighted by the
    # sample counts on chain (none reaches the round's max_samples cap).
    store = EmbeddedStore(federation.workspace.store_dir)
    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    assert config.strategy == {"name": "fedavg"}
    submitted = sorted(client.submissions(round_id), key=lambda s: s.participant.lower())
    assert all(0 < s.samples < config.max_samples for s in submitted)
    assert len({s.samples for s in submitted}) == 2  # unequal: an unweighted mean would differ
    expected = fedavg_by_hand([(load_safetensors(store.get(s.cid)), s.samples) for s in submitted])
    global_model = load_safetensors(store.get(info.global_cid))
    assert sorted(global_model) == sorted(expected)
    for name, tensor in expected.items():
        assert global_model[name].dtype == np.float32 and global_model[name].shape == tensor.shape
        np.testing.assert_array_equal(global_model[name], tensor, err_msg=name)
    total = sum(s.samples for s in submitted)
    recorded = Receipt.from_bytes(store.get(info.receipt_cid))
    assert recorded.global_cid == info.global_cid and recorded.rejected == []
    assert recorded.strategy == {"name": "fedavg"}
    included = sorted(recorded.included, key=lambda u: u.participant.lower())
    assert [(u.participant, u.cid, u.samples, u.counted_samples) for u in included] == [
        (s.participant, s.cid, s.samples, s.samples) for s in submitted
    ]
    assert [u.weight for u in included] == pytest.approx([s.samples / total for s in submitted])

    # Aggregating a finalized round again changes nothing.
    repeat = fedledger("aggregate", "--round", str(round_id), *w)
    ok(repeat)
    assert "Already finalized" in repeat.stderr
    assert len(client.contract.events.RoundFinalized.get_logs(
        argument_filters={"roundId": round_id}, from_block=client.from_block)) == 1
    assert client.round(round_id).global_cid == pinned_global
