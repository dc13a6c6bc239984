"""The global model reaches the parties through the store, not through Flower's train message (issue 22).

On the in-process chain with Flower's own ``Message`` objects: a round of a model far larger than any
train message (here 24 MiB of float32 weights) runs with train messages of a few KiB whatever the
model's size, the party reads the base model from its store by the CID the chain records, and a message
that names another base is refused. The next round's messages built the plain Flower way (``send_arrays=True``)
carry every byte of the model. Flower 1.42 itself no longer has a per-message ceiling to cross: its gRPC
limit is a fixed 2 GiB - 1 that no flag or variable lowers, and it sends arrays as content-addressed
chunks of 5 MiB; what it still does is carry (and keep in the SuperLink's object store) the model once
per round, which the store-based path never does. Evaluate messages likewise name the model to evaluate
by CID (the round's global model, or its base after an abort) and carry no arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, RecordDict  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects  # noqa: E402

import node.flower.client as client  # noqa: E402
from ledger.errors import InvalidInputError  # noqa: E402
from node.flower.client import base_arrays, evaluate_arrays, record_update, submit_arrays  # noqa: E402
from node.flower.records import BASE_KEY, MODEL_KEY, ROUND_KEY, PartyReply, array_record, arrays_of  # noqa: E402
from node.flower.strategy import LedgerStrategy  # noqa: E402
from node.round_config import RoundConfig  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.flower.test_ledger_strategy import CONFIG, Federation, NodeIds, _flower_task, genesis, reply, trained  # noqa: E402,F401

MODEL_BYTES = 24 * 2**20
BIG = RoundConfig(model="wide-regressor", strategy={"name": "fedavg"})


def big_model() -> ArrayRecord:
    rng = np.random.default_rng(3)
    rows = MODEL_BYTES // 4 // 1024
    return array_record({"wide.weight": rng.standard_normal((rows, 1024), dtype=np.float32),
                         "wide.bias": np.zeros(rows, dtype=np.float32)})


def wire_bytes(message: Message) -> int:
    """What Flower 1.42 sends for ``message``: every object of its content, deflated."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(message).values())


def context() -> Context:
    return Context(run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={})


def test_a_round_of_a_model_larger_than_any_train_message_passes_through_the_store(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path)
    arrays = big_model()
    assert sum(a.numpy().nbytes for a in arrays.values()) > MODEL_BYTES
    strategy = f.strategy(BIG)
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(2)))
    info = f.admin.round(1)
    for message in messages:  # the round and its base by CID, no arrays: a few KiB whatever the model's size
        assert all(len(record) == 0 for record in message.content.array_records.values())
        assert message.content["config"][ROUND_KEY] == 1 and message.content["config"][BASE_KEY] == info.base_cid
        assert wire_bytes(message) < 4096, wire_bytes(message)

    replies = []
    for i, (message, party) in enumerate(zip(messages, f.parties)):
        monkeypatch.setattr(client, "party_ledger", lambda _config, party=party: f.party(party))
        base = base_arrays(message, context())  # from the party's store, by the chain's CID, checked
        assert base.keys() == arrays_of(arrays).keys()
        assert all(np.array_equal(base[name], value) for name, value in arrays_of(arrays).items())
        trained = array_record({name: value + np.float32(0.1 * (i + 1)) for name, value in base.items()})
        answer = record_update(message, context(), trained, samples=100, metrics={"loss": 1.0})
        assert not answer.content.array_records and wire_bytes(answer) < 4096  # the reply names the CID only
        word = PartyReply.from_message(answer)
        assert word is not None and word.refusal is None and f.store.has(word.cid)
        replies.append(answer)

    result, _ = strategy.aggregate_train(1, replies)
    assert f.admin.round(1).state == "finalized" and result is not None
    np.testing.assert_allclose(arrays_of(result)["wide.bias"], np.float32(0.15), rtol=0, atol=1e-6)
    strategy.send_arrays = True  # the opt-in: the arrays travel too, the plain Flower way, the whole model each message
    following = list(strategy.configure_train(2, result, ConfigRecord(), NodeIds(1)))
    assert following[0].content["config"][BASE_KEY] == f.admin.round(1).global_cid == f.admin.round(2).base_cid
    assert wire_bytes(following[0]) > MODEL_BYTES


def test_a_train_message_naming_another_base_model_than_the_chain_is_refused(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    [message] = f.strategy(BIG).configure_train(1, big_model(), ConfigRecord(), NodeIds(1))
    monkeypatch.setattr(client, "party_ledger", lambda _config: f.party(f.parties[0]))
    other = f.store.add_bytes(b"some other model", pin=True)
    lying = Message(RecordDict({"config": ConfigRecord({ROUND_KEY: 1, BASE_KEY: other})}), dst_node_id=1,
                    message_type="train")
    with pytest.raises(InvalidInputError) as refused:
        base_arrays(lying, context())
    assert f"says round 1 starts from {other}, but the chain records its base model as " in str(refused.value)
    assert len(base_arrays(message, context())) == 2


def test_a_round_every_party_refused_is_aborted_with_a_receipt_naming_each_refusal(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path)
    strategy = f.strategy(min_updates=1)
    messages = list(strategy.configure_train(1, array_record({"w": np.zeros(3, np.float32)}), ConfigRecord(),
                                             NodeIds(2)))
    words = [PartyReply(party.address, "", f"party {i} will not run this", "party") for i, party in enumerate(f.parties)]
    assert strategy.aggregate_train(1, [reply(m, w) for m, w in zip(messages, words)]) == (None, None)
    assert f.admin.round(1).state != "finalized"
    [aborted] = f.admin.contract.events.RoundAborted().get_logs(from_block=0)
    reason = aborted["args"]["reason"]
    assert reason.startswith("Flower server round 1 ended with 0 recorded update(s), fewer than its minimum of 1; receipt ")
    receipt_cid = reason.split("; receipt ")[1].split()[0]
    from node.receipt import Receipt

    receipt = Receipt.from_bytes(f.store.get(receipt_cid))
    assert receipt.outcome.startswith("aborted: ") and receipt.included == [] and receipt.global_cid == ""
    assert sorted((u.participant, u.reason) for u in receipt.unrecorded) == sorted(
        (w.participant, f"the party refused the run: {w.refusal}") for w in words)


def test_evaluate_messages_name_the_model_by_cid_and_the_party_reads_it_from_its_store(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    [party] = f.parties
    monkeypatch.setattr(client, "party_ledger", lambda _config: f.party(party))
    evaluating = FedAvg(fraction_evaluate=1.0, min_available_nodes=1, min_train_nodes=1, min_evaluate_nodes=1)
    strategy = LedgerStrategy(evaluating, ledger=f.operator, config=CONFIG)
    arrays = genesis()
    [message] = strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(1))
    word = submit_arrays(f.party(party), 1, trained(arrays, 0.1), samples=100, metrics={"loss": 1.0})
    result, _ = strategy.aggregate_train(1, [reply(message, word)])
    assert result is not None and f.admin.round(1).state == "finalized"

    [evaluate] = strategy.configure_evaluate(1, result, ConfigRecord(), NodeIds(1))
    assert evaluate.metadata.message_type == "evaluate"
    assert all(len(record) == 0 for record in evaluate.content.array_records.values())
    assert evaluate.content["config"][ROUND_KEY] == 1 and evaluate.content["config"][MODEL_KEY] == f.admin.round(1).global_cid
    model = evaluate_arrays(evaluate, context())  # the round's global model, from the party's store
    assert model.keys() == arrays_of(result).keys()
    assert all(np.array_equal(model[name], value) for name, value in arrays_of(result).items())

    lying = Message(RecordDict({"config": ConfigRecord({ROUND_KEY: 1, MODEL_KEY: f.admin.round(1).base_cid + "x"})}),
                    dst_node_id=1, message_type="evaluate")
    with pytest.raises(InvalidInputError, match="the evaluate message names the model .* for round 1, but the chain "
                                                 "records its global model"):
        evaluate_arrays(lying, context())

    # A round every party refused is aborted: the model evaluated is the one it started from, round 1's global.
    [message] = strategy.configure_train(2, result, ConfigRecord(), NodeIds(1))
    assert strategy.aggregate_train(2, [reply(message, PartyReply(party.address, "", "not this one", "party"))]) == (None, None)
    [evaluate] = strategy.configure_evaluate(2, result, ConfigRecord(), NodeIds(1))
    assert evaluate.content["config"][MODEL_KEY] == f.admin.round(2).base_cid == f.admin.round(1).global_cid
    assert all(np.array_equal(evaluate_arrays(evaluate, context())[name], value) for name, value in arrays_of(result).items())

    strategy.send_arrays = True  # the opt-in: the arrays travel too, for a ClientApp that reads msg.content["arrays"]
    [evaluate] = strategy.configure_evaluate(2, result, ConfigRecord(), NodeIds(1))
    assert evaluate.content["config"][MODEL_KEY] == f.admin.round(1).global_cid
    assert all(np.array_equal(arrays_of(evaluate.content["arrays"])[name], value) for name, value in arrays_of(result).items())
