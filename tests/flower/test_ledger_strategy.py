"""The Flower wrapper and the party's helper on the in-process chain: what reaches the ledger,
what the receipt names, and what is refused before anything is recorded.

Messages are Flower's own ``Message`` objects; the one stand-in is the grid, which here only has
to list node ids (sending them is the Deployment Engine's job, exercised in test_deployment).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402
from flwr.serverapp.strategy import FedAvg  # noqa: E402

from ledger.errors import InvalidInputError  # noqa: E402
from ledger.index.index import LedgerIndex  # noqa: E402
from ledger.ipfs.store import EmbeddedStore  # noqa: E402
from ledger.weights import from_safetensors  # noqa: E402
from ledger.workspace import Workspace  # noqa: E402
from node.audit.verify import verify_ledger  # noqa: E402
from node.demo import DemoOptions, found_federation  # noqa: E402
from node.flower.client import ledger_round, submit_arrays  # noqa: E402
from node.flower.connection import Ledger  # noqa: E402
from node.flower.records import REPLY_KEY, PartyReply, array_record, arrays_of  # noqa: E402
from node.flower.strategy import LedgerStrategy, latest_global  # noqa: E402
from node.models import build_model, state_arrays  # noqa: E402
from node.round_config import RoundConfig, TaskRef  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402

CONFIG = RoundConfig(model="mlp", strategy={"name": "fedavg"})


class NodeIds:
    """The part of Flower's Grid that configure_train reads: which nodes are connected."""

    def __init__(self, count: int) -> None:
        self.ids = list(range(1, count + 1))

    def get_node_ids(self) -> list[int]:
        return self.ids


class Federation:
    """A deployment with admitted parties and one funded outsider, each with its own Ledger view."""

    def __init__(self, chain: TestChain, tmp_path: Path, *, parties: int = 2) -> None:
        self.workspace = Workspace.init(tmp_path / "ws", rpc="memory")
        self.store = EmbeddedStore(self.workspace.store_dir)
        options = DemoOptions(participants=parties, chain="memory")
        self.admin, self.parties = found_federation(options, w3=chain.w3, workspace=self.workspace, store=self.store,
                                                    track=lambda *_: None)
        self.outsider = chain.new_account()
        self.operator = Ledger(self.workspace, self.admin, self.store)

    def party(self, account: object) -> Ledger:
        return Ledger(self.workspace, self.admin.with_account(account), self.store)  # type: ignore[arg-type]

    def strategy(self, config: RoundConfig = CONFIG, **options: object) -> LedgerStrategy:
        return LedgerStrategy(FedAvg(min_available_nodes=1, min_train_nodes=1), ledger=self.operator, config=config,
                              **options)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _flower_task() -> Iterator[None]:
    """Flower stamps each message with the running task's identity; here, a task of our own."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)  # type: ignore[attr-defined]
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved  # type: ignore[attr-defined]


def genesis() -> ArrayRecord:
    return array_record(state_arrays(build_model("mlp")))


def trained(record: ArrayRecord, shift: float) -> dict[str, np.ndarray]:
    return {name: value + np.float32(shift) for name, value in arrays_of(record).items()}


def reply(to: Message, word: PartyReply, samples: int = 100, loss: float = 1.0) -> Message:
    return Message(content=RecordDict({"metrics": MetricRecord({"loss": loss, "num-examples": samples}),
                                       REPLY_KEY: word.to_record()}), reply_to=to)


def test_each_server_round_is_a_ledger_round_and_the_receipt_names_what_the_contract_refused(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path)
    strategy = f.strategy()
    arrays = genesis()
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(3)))
    assert len(messages) == 3 and {ledger_round(m) for m in messages} == {1}
    base = f.admin.round(1).base_cid
    assert from_safetensors(f.store.get(base))[0].keys() == arrays_of(arrays).keys()

    words = [submit_arrays(f.party(p), 1, trained(arrays, 0.01 * (i + 1)), samples=100, metrics={"loss": 1.0})
             for i, p in enumerate(f.parties)]
    refused = submit_arrays(f.party(f.outsider), 1, trained(arrays, 0.5), samples=100, metrics={"loss": 1.0})
    assert [w.refusal for w in words] == [None, None]
    assert refused.refusal is not None and "is not an admitted participant" in refused.refusal
    assert not f.store.has(refused.cid)  # the contract was asked before anything was pinned
    assert [s.cid for s in f.admin.submissions(1)] == [w.cid for w in words]

    result, metrics = strategy.aggregate_train(1, [reply(m, w) for m, w in zip(messages, [*words, refused])])
    info = f.admin.round(1)
    assert info.state == "finalized" and metrics is not None and metrics["loss"] == 1.0
    global_arrays, _ = from_safetensors(f.store.get(info.global_cid))
    assert result is not None and all(np.array_equal(arrays_of(result)[k], v) for k, v in global_arrays.items())
    receipt = strategy.outcomes[1].receipt
    assert [u.participant for u in receipt.included] == sorted((p.address for p in f.parties), key=str.lower)
    assert [(u.participant, u.cid) for u in receipt.unrecorded] == [(f.outsider.address, refused.cid)]
    assert receipt.unrecorded[0].reason.startswith("the contract refused to record it: ")

    next_round = list(strategy.configure_train(2, result, ConfigRecord(), NodeIds(1)))
    assert ledger_round(next_round[0]) == 2 and f.admin.round(2).base_cid == info.global_cid
    with LedgerIndex.for_federation(":memory:", f.admin) as index:
        verdict = verify_ledger(f.admin, f.store, index, progress=False)
    assert verdict.ok, [c.what for c in verdict.failures]


def test_training_metrics_come_only_from_the_updates_the_receipt_included(memory_chain: TestChain, tmp_path: Path) -> None:
    """A recorded update that the aggregator rejects (here a blob that is not a weights file, which
    the contract cannot tell) counts in neither the model nor the metrics: its reply's loss, unlike
    the included parties', must not reach the round's metrics."""
    f = Federation(memory_chain, tmp_path, parties=3)
    strategy = f.strategy()
    arrays = genesis()
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(3)))
    words = [submit_arrays(f.party(p), 1, trained(arrays, shift), samples=s, metrics={})
             for p, shift, s in zip(f.parties[:2], (0.01, 0.02), (100, 300))]
    junk = f.store.add_bytes(b"not a weights file", pin=True)
    f.admin.with_account(f.parties[2]).submit_update(1, cid=junk, samples=600, metrics_hash=b"\0" * 32)
    words.append(PartyReply(f.parties[2].address, junk))  # recorded: no refusal

    replies = [reply(m, w, samples=s, loss=loss) for m, w, s, loss in zip(messages, words, (100, 300, 600), (1.0, 2.0, 9.0))]
    _, metrics = strategy.aggregate_train(1, replies)
    receipt = strategy.outcomes[1].receipt
    assert sorted(u.participant for u in receipt.included) == sorted(p.address for p in f.parties[:2])
    assert [r.participant for r in receipt.rejected] == [f.parties[2].address]
    assert metrics is not None
    assert metrics["loss"] == pytest.approx((1.0 * 100 + 2.0 * 300) / 400)  # weighted over the included two only


def test_a_party_that_already_submitted_gets_its_recorded_cid_back_and_nothing_is_sent_twice(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    arrays = genesis()
    list(f.strategy().configure_train(1, arrays, ConfigRecord(), NodeIds(1)))
    first = submit_arrays(f.party(f.parties[0]), 1, trained(arrays, 0.1), samples=10, metrics={"loss": 2.0})
    again = submit_arrays(f.party(f.parties[0]), 1, trained(arrays, 0.2), samples=10, metrics={"loss": 2.0})
    assert again == first and len(f.admin.submissions(1)) == 1


def test_arrays_that_do_not_fit_the_rounds_model_are_refused_before_anything_is_recorded(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    list(f.strategy().configure_train(1, genesis(), ConfigRecord(), NodeIds(1)))
    wrong = {"weight": np.zeros((3, 3), dtype=np.float32)}
    with pytest.raises(InvalidInputError, match="do not fit the model 'mlp' that round 1's config names"):
        submit_arrays(f.party(f.parties[0]), 1, wrong, samples=10, metrics={})
    assert f.admin.submissions(1) == []


def own_model_round(f: Federation, *, task: bool = True) -> RoundConfig:
    """A round of a model fedledger does not build (its layout is its base model's): a task round, or a Flower
    app's own model without a task."""
    if not task:
        return RoundConfig(model="two-layer-regressor", strategy={"name": "fedavg"})
    bundle = f.store.add_bytes(b"a stand-in for the task bundle an agreement names", pin=True)
    return RoundConfig(model="two-layer-regressor", strategy={"name": "fedavg"}, task=TaskRef(cid=bundle))


def own_model() -> ArrayRecord:
    rng = np.random.default_rng(7)
    return array_record({"encoder.weight": rng.standard_normal((5, 3)).astype(np.float32),
                         "encoder.bias": np.zeros(5, dtype=np.float32),
                         "head.weight": rng.standard_normal((1, 5)).astype(np.float32)})


@pytest.mark.parametrize("task", [True, False], ids=["task", "no-task"])
def test_a_model_that_is_not_built_in_trains_a_round_checked_against_its_base_model(
    memory_chain: TestChain, tmp_path: Path, task: bool
) -> None:
    f = Federation(memory_chain, tmp_path)
    strategy = f.strategy(own_model_round(f, task=task))
    arrays = own_model()
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(2)))
    words = [submit_arrays(f.party(p), 1, trained(arrays, 0.1 * (i + 1)), samples=100, metrics={"loss": 1.0})
             for i, p in enumerate(f.parties)]
    assert [w.refusal for w in words] == [None, None]

    result, _ = strategy.aggregate_train(1, [reply(m, w) for m, w in zip(messages, words)])
    info = f.admin.round(1)
    assert info.state == "finalized"
    assert sorted(u.participant for u in strategy.outcomes[1].receipt.included) == sorted(p.address for p in f.parties)
    assert result is not None
    for name, value in arrays_of(arrays).items():
        np.testing.assert_allclose(arrays_of(result)[name], value + np.float32(0.15), rtol=0, atol=1e-6)
    latest = latest_global(f.operator, model="two-layer-regressor")
    assert latest is not None and latest[0].round_id == 1 and latest[1].keys() == arrays_of(arrays).keys()
    list(strategy.configure_train(2, result, ConfigRecord(), NodeIds(2)))
    assert f.admin.round(2).base_cid == info.global_cid
    if not task:  # the audit recomputes it with its base model's layout (the stand-in task is in no agreement)
        with LedgerIndex.for_federation(":memory:", f.admin) as index:
            verdict = verify_ledger(f.admin, f.store, index, progress=False)
        assert verdict.ok, [c.what for c in verdict.failures]


def test_arrays_of_another_layout_than_the_base_model_are_refused_before_anything_is_recorded(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    list(f.strategy(own_model_round(f, task=False)).configure_train(1, own_model(), ConfigRecord(), NodeIds(1)))
    wrong = {**arrays_of(own_model()), "encoder.weight": np.zeros((4, 3), dtype=np.float32)}
    pinned = f.store.pins()
    with pytest.raises(InvalidInputError) as refused:
        submit_arrays(f.party(f.parties[0]), 1, wrong, samples=10, metrics={})
    assert str(refused.value).startswith("the trained arrays do not fit the model 'two-layer-regressor' that round 1's "
                                         "config names (tensor 'encoder.weight' in this weights blob has shape (4, 3) "
                                         "but the model expects (5, 3)"), refused.value
    assert f.admin.submissions(1) == []
    assert f.store.pins() == pinned  # refused before the update was pinned


def test_a_round_below_its_minimum_is_aborted_on_chain_and_the_global_model_stays(
    memory_chain: TestChain, tmp_path: Path
) -> None:
    f = Federation(memory_chain, tmp_path)
    strategy = f.strategy(min_updates=2)
    arrays = genesis()
    [message, _] = strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(2))
    word = submit_arrays(f.party(f.parties[0]), 1, trained(arrays, 0.1), samples=10, metrics={"loss": 1.0})
    assert strategy.aggregate_train(1, [reply(message, word)]) == (None, None)
    assert f.admin.round(1).state == "cancelled"
    list(strategy.configure_train(2, arrays, ConfigRecord(), NodeIds(2)))  # the same genesis model again
    assert f.admin.round(2).base_cid == f.admin.round(1).base_cid


def test_arrays_other_than_the_last_global_model_cannot_start_a_round(memory_chain: TestChain, tmp_path: Path) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    strategy = f.strategy()
    arrays = genesis()
    [message] = strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(1))
    word = submit_arrays(f.party(f.parties[0]), 1, trained(arrays, 0.1), samples=10, metrics={"loss": 1.0})
    strategy.aggregate_train(1, [reply(message, word)])
    with pytest.raises(InvalidInputError, match="not the global model the ledger finalized last"):
        list(strategy.configure_train(2, arrays, ConfigRecord(), NodeIds(1)))
    fresh = f.strategy()  # a second run on this federation must start from its latest global model
    with pytest.raises(InvalidInputError, match="already finalized round 1, and the initial arrays are not its global"):
        list(fresh.configure_train(1, arrays, ConfigRecord(), NodeIds(1)))
    assert f.admin.round_count() == 1
    latest = latest_global(f.operator, model="mlp")
    assert latest is not None and latest[0].round_id == 1
    list(fresh.configure_train(1, array_record(latest[1]), ConfigRecord(), NodeIds(1)))
    assert f.admin.round(2).base_cid == f.admin.round(1).global_cid


def test_a_train_message_without_a_ledger_round_is_refused_with_the_fix() -> None:
    message = Message(content=RecordDict({"config": ConfigRecord({"lr": 0.1})}), dst_node_id=1, message_type="train")
    with pytest.raises(InvalidInputError, match="wrap the ServerApp's strategy in node.flower.LedgerStrategy"):
        ledger_round(message)
