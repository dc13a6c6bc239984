"""The services on a sealed round, one step at a time on anvil: a node seals its update to the keys on
chain, the aggregator service opens it with the recipient key it is given and finalizes the round."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.chain.federation import FederationClient
from ledger.sealing.format import MAGIC
from ledger.sealing.keys import public_key_bytes
from ledger.ipfs.store import EmbeddedStore
from node.data import load_digits_split
from node.demo import TERMS
from node.genesis import genesis_model_bytes
from node.receipt import Receipt
from node.round_config import RoundConfig, TrainingSettings
from node.services.aggregator_service import AggregatorService
from node.services.log import ServiceLog
from node.services.metrics import ServiceMetrics
from node.services.participant_service import NodeService
from node.strategies import make_strategy
from tests.fixtures_chain import TestChain

pytestmark = pytest.mark.anvil


def test_the_aggregator_service_opens_a_sealed_round_with_the_key_it_is_given(chain: TestChain, tmp_path: Path) -> None:
    admin = FederationClient.deploy(chain.w3, account=chain.keys[0])[0]
    store = EmbeddedStore(tmp_path / "store")
    version, _ = admin.publish_agreement(store.add_bytes(TERMS, pin=True))
    party = chain.keys[5]
    deadline = chain.now() + 3600
    admin.with_account(party).join(party.address, version=version, deadline=deadline,
                                   signature=admin.sign_join(party, version=version, deadline=deadline))
    admin.approve(party.address)
    key = X25519PrivateKey.generate()
    admin.publish_encryption_key(public_key_bytes(key))  # the admin aggregates: it is the one recipient
    config = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(), training=TrainingSettings(epochs=1),
                         seal_to=(admin.sender,))
    store.add_bytes(config.to_bytes(), pin=True)
    genesis = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
    round_id, _ = admin.open_round(base_cid=genesis, deadline=chain.now() + 600, min_updates=1,
                                   config_hash=config.config_hash)

    out = io.StringIO()
    shards, _ = load_digits_split(parties=4, seed=0)
    NodeService(federation=admin.with_account(party), store=store, data=shards[0], journal_dir=tmp_path / "journal",
                log=ServiceLog("node", json_lines=True, machine=out), metrics=ServiceMetrics("node")).step()
    [submission] = admin.submissions(round_id)
    assert store.get(submission.cid).startswith(MAGIC)

    AggregatorService(federation=admin, store=store, journal_dir=tmp_path / "journal",
                      log=ServiceLog("aggregator", json_lines=True, machine=out), metrics=ServiceMetrics("aggregator"),
                      opener_for=lambda round_seal: round_seal.opener(key)).step()
    info = admin.round(round_id)
    assert info.state == "finalized"
    receipt = Receipt.from_bytes(store.get(info.receipt_cid))
    assert [(u.participant, u.cid) for u in receipt.included] == [(party.address, submission.cid)]
    assert [u.cid for u in receipt.sealed] == [submission.cid]
