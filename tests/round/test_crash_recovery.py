"""Crash recovery on a real anvil: a participant and the aggregator are killed at their named
failpoints (after pinning, before the transaction) and run again. The chain ends with exactly one
submission and one finalize, the participant does not train twice, and the aggregate the rerun
records is the one a deterministic recomputation gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.store import EmbeddedStore
from ledger.unixfs import cid_of_bytes
from node.aggregator import aggregate_updates
from ledger.failpoints import FAILPOINT_ENV, FAILPOINT_EXIT
from node.receipt import Receipt
from node.round_config import RoundConfig, config_cid
from node.strategies import strategy_from_params
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.round.conftest import Federation, finish, make_federation, start

pytestmark = pytest.mark.anvil


def journal(federation: Federation, role: str, actor: str, round_id: int) -> dict:
    path = federation.workspace.journal_dir / f"{role}-{actor.lower()}-round-{round_id}.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def test_killed_participant_and_aggregator_finish_the_round_once_without_retraining(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    alice = federation.admit("alice", Web3.to_hex(anvil_keys[1].key))
    bob = federation.admit("bob", Web3.to_hex(anvil_keys[2].key))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=2)
    client = federation.client()
    w = federation.w
    alice_env = federation.parties["alice"]["env"]
    train = ("node", "train", "--round", str(round_id), "--of", "2", "--json", *w)

    # Bob trains undisturbed meanwhile; Alice dies after pinning her update, before submitting it.
    bob_run = start(*train, "--shard", "1", env=federation.parties["bob"]["env"])
    crashed = fedledger(*train, "--shard", "0", env={**alice_env, FAILPOINT_ENV: "participant:after-pin"})
    assert crashed.exit_code == FAILPOINT_EXIT, crashed.stderr
    assert crashed.stdout == ""
    pinned = journal(federation, "participant", alice, round_id)["update_cid"]
    assert EmbeddedStore(federation.workspace.store_dir).has(pinned)
    assert not client.has_submitted(round_id, alice)

    # The rerun submits the pinned update without training again.
    rerun_outcome = ok(fedledger(*train, "--shard", "0", env=alice_env))
    rerun = rerun_outcome.json()
    assert "reused the update pinned by an earlier run" in rerun_outcome.stderr
    assert rerun["trained"] is False
    assert rerun["update_cid"] == pinned
    assert rerun["tx_hash"] is not None

    assert ok(finish(bob_run)).json()["trained"] is True

    # A third run after submitting does nothing.
    again = fedledger(*train, "--shard", "0", env=alice_env)
    ok(again)
    assert again.json()["tx_hash"] is None and again.json()["update_cid"] == pinned
    assert "Already submitted" in again.stderr

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

    # An independent recomputation from chain and store gives the same bytes, hence the same CIDs.
    store = EmbeddedStore(federation.workspace.store_dir)
    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    blob, receipt = aggregate_updates(
        store=store, info=info, config=config, strategy=strategy_from_params(config.strategy),
        submissions=client.submissions(round_id),
    )
    assert cid_of_bytes(blob) == info.global_cid
    recorded = Receipt.from_bytes(store.get(info.receipt_cid))
    assert recorded.global_cid == info.global_cid
    assert sorted(u.participant for u in recorded.included) == sorted([alice, bob]) and recorded.rejected == []
    assert (recorded.included, recorded.strategy) == (receipt.included, receipt.strategy)

    # Aggregating a finalized round again changes nothing.
    repeat = fedledger("aggregate", "--round", str(round_id), *w)
    ok(repeat)
    assert "Already finalized" in repeat.stderr
    assert len(client.contract.events.RoundFinalized.get_logs(
        argument_filters={"roundId": round_id}, from_block=client.from_block)) == 1
    assert client.round(round_id).global_cid == pinned_global
