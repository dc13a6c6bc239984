"""Private rounds on Flower, through the ClientApp's helpers, on the in-process chain with Flower's own Message and
Context objects: a round past the party's budget is refused before anything is trained, pinned or sent, and arrays
the app trained itself are refused in a private round. A private sealed round that trains, declares the accountant's
ε and is audited runs on a real deployment in test_deployment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, RecordDict  # noqa: E402

import node.flower.client as client  # noqa: E402
import node.privacy.dp_training as dp_training  # noqa: E402
from ledger.chain.connection import chain_now  # noqa: E402
from node.data import load_digits_split  # noqa: E402
from node.flower.client import record_private_update, record_update  # noqa: E402
from node.flower.records import PartyReply, arrays_of  # noqa: E402
from node.flower.strategy import _unrecorded_reason  # noqa: E402
from node.models import build_model, load_arrays, state_arrays  # noqa: E402
from node.round_config import DpSettings, RoundConfig  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.flower.test_ledger_strategy import Federation, NodeIds, _flower_task, genesis  # noqa: E402,F401

DELTA = 1e-5
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


def test_a_round_past_the_budget_is_refused_before_training_and_plain_arrays_are_refused_in_a_private_round(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    with_budget(f, 3.0)
    strategy = f.strategy(RoundConfig(model="mlp", strategy={"name": "fedavg"}, dp=LOUD))
    arrays = genesis()
    [message] = strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(1))
    monkeypatch.setattr(client, "party_ledger", lambda _config: f.party(f.parties[0]))
    monkeypatch.setattr(dp_training, "dp_sgd", lambda *_, **__: pytest.fail("DP-SGD ran for a round past the budget"))
    shards, _ = load_digits_split(parties=1, seed=0)
    model = mlp(arrays_of(arrays))
    pins = f.store.pins()

    word = PartyReply.from_message(record_private_update(message, context(), model, shards[0]))
    assert word is not None and (word.participant, word.cid, word.refused_by) == (f.parties[0].address, "", "party")
    assert word.refusal is not None and "past the agreement's budget of 3.000000" in word.refusal, word.refusal
    assert _unrecorded_reason(word).startswith("the party refused the run: taking part in this round would bring")
    assert all(np.array_equal(value, arrays_of(arrays)[name]) for name, value in state_arrays(model).items())

    plain = PartyReply.from_message(record_update(message, context(), arrays, samples=10, metrics={"loss": 1.0}))
    assert plain is not None and plain.refused_by == "party" and plain.refusal is not None
    assert "is private" in plain.refusal and "record_private_update" in plain.refusal
    assert f.store.pins() == pins and f.admin.submissions(1) == []  # nothing pinned, nothing recorded
