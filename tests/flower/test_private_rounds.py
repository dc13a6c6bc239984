"""Private rounds on Flower, through the ClientApp's helpers, on the in-process chain with Flower's own Message and
Context objects: a private round trains with the node's DP-SGD and declares the accountant's ε; the next, past the
party's budget, is refused before anything is trained, pinned or sent; arrays the app trained itself are refused in a
private round; the strategy refuses to open a sealed round it could not open. A private sealed round on a real
deployment, audited with a recipient's key: test_deployment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey  # noqa: E402
from flwr.app import ConfigRecord, Context, RecordDict  # noqa: E402

import node.flower.client as client  # noqa: E402
import node.privacy.dp_training as dp_training  # noqa: E402
from ledger.chain.connection import chain_now  # noqa: E402
from ledger.errors import InvalidInputError  # noqa: E402
from ledger.fixed_point import epsilon_to_micros  # noqa: E402
from ledger.sealing.keys import public_key_bytes  # noqa: E402
from node.data import load_digits_split  # noqa: E402
from node.flower.client import record_private_update, record_update  # noqa: E402
from node.flower.records import PartyReply, arrays_of  # noqa: E402
from node.flower.strategy import _unrecorded_reason  # noqa: E402
from node.models import build_model, load_arrays, state_arrays  # noqa: E402
from node.privacy.accountant import cumulative_epsilon  # noqa: E402
from node.round_config import DpSettings, RoundConfig  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.flower.test_ledger_strategy import Federation, NodeIds, _flower_task, genesis  # noqa: E402,F401

DELTA = 1e-5
SMALL = DpSettings(noise_multiplier=1.5, max_grad_norm=1.0, sample_rate=0.2, steps=5)  # ε ≈ 1.2 at δ = 1e-5
LOUD = DpSettings(noise_multiplier=0.5, max_grad_norm=1.0, sample_rate=0.5, steps=200)  # ε far past 3


def with_budget(f: Federation, epsilon: float) -> None:
    """Agreement version 2 bounds each party's ε, and every party accepts it."""
    terms = f.store.add_bytes(b"Each party spends at most the budget named here.\n", pin=True)
    version, _ = f.admin.publish_agreement(terms, epsilon_budget=epsilon, delta=DELTA)
    deadline = chain_now(f.admin.w3) + 600
    for party in f.parties:
        signature = f.admin.sign_join(party, version=version, deadline=deadline)
        f.admin.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def mlp(arrays: dict[str, np.ndarray]):  # noqa: ANN201
    model = build_model("mlp")
    load_arrays(model, arrays)
    return model


def test_a_private_round_trains_with_the_nodes_dp_sgd_and_one_past_the_budget_is_refused_before_training(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    with_budget(f, 3.0)
    monkeypatch.setattr(client, "party_ledger", lambda _config: f.party(f.parties[0]))
    shards, _ = load_digits_split(parties=1, seed=0)
    trained: list[DpSettings] = []
    dp_sgd = dp_training.dp_sgd

    def spy(*args: object, **kwargs: object) -> None:
        trained.append(kwargs["dp"])  # type: ignore[arg-type]
        dp_sgd(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dp_training, "dp_sgd", spy)
    first = f.strategy(RoundConfig(model="mlp", strategy={"name": "fedavg"}, dp=SMALL))
    arrays = genesis()
    [message] = first.configure_train(1, arrays, ConfigRecord(), NodeIds(1))
    reply = record_private_update(message, context(), mlp(arrays_of(arrays)), shards[0])
    word = PartyReply.from_message(reply)
    assert word is not None and word.refusal is None and trained == [SMALL]  # the node's DP-SGD, as the round asks
    assert not reply.content.metric_records  # nothing measured on private data leaves the party
    spent = epsilon_to_micros(cumulative_epsilon([SMALL], DELTA))
    assert [s.epsilon_micros for s in f.admin.submissions(1)] == [spent] == [f.admin.privacy(f.parties[0].address)[0]]
    arrays, _ = first.aggregate_train(1, [reply])
    assert arrays is not None

    second = f.strategy(RoundConfig(model="mlp", strategy={"name": "fedavg"}, dp=LOUD))
    [message] = second.configure_train(1, arrays, ConfigRecord(), NodeIds(1))
    monkeypatch.setattr(dp_training, "dp_sgd", lambda *_, **__: pytest.fail("DP-SGD ran for a round past the budget"))
    model = mlp(arrays_of(arrays))
    pins = f.store.pins()
    word = PartyReply.from_message(record_private_update(message, context(), model, shards[0]))
    assert word is not None and (word.participant, word.cid, word.refused_by) == (f.parties[0].address, "", "party")
    assert word.refusal is not None and f"cumulative ε from {spent / 1e6:.6f} to " in word.refusal, word.refusal
    assert "past the agreement's budget of 3.000000" in word.refusal
    assert _unrecorded_reason(word).startswith("the party refused the run: taking part in this round would bring")
    assert all(np.array_equal(value, arrays_of(arrays)[name]) for name, value in state_arrays(model).items())

    plain = PartyReply.from_message(record_update(message, context(), arrays, samples=10, metrics={"loss": 1.0}))
    assert plain is not None and plain.refused_by == "party" and plain.refusal is not None
    assert "is private" in plain.refusal and "record_private_update" in plain.refusal
    assert f.store.pins() == pins and f.admin.submissions(2) == []  # nothing pinned, nothing recorded


def test_a_sealed_round_is_not_opened_unless_every_recipient_has_a_key_and_the_strategy_holds_one(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    auditor = f.parties[0]  # any address: here one that registers no key at first
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"}, seal_to=(f.admin.account.address, auditor.address))
    f.admin.publish_encryption_key(public_key_bytes(X25519PrivateKey.generate()))
    with pytest.raises(InvalidInputError, match=f"{auditor.address} has no encryption key registered on chain"):
        list(f.strategy(config, encryption_key=X25519PrivateKey.generate()).configure_train(1, genesis(), ConfigRecord(), NodeIds(1)))
    f.admin.with_account(auditor).publish_encryption_key(public_key_bytes(X25519PrivateKey.generate()))
    with pytest.raises(InvalidInputError, match="the strategy's encryption key is not the one any of them registered"):
        list(f.strategy(config, encryption_key=X25519PrivateKey.generate()).configure_train(1, genesis(), ConfigRecord(), NodeIds(1)))
    assert f.admin.round_count() == 0  # refused before a round was opened that nobody here could open
