"""A party trains only for a Flower run of the app its accepted agreement names (issue 22), on the in-process
chain with Flower's own Message and Context objects: the run's FAB hash against the agreement's, in the
ClientApp mod before training and in ``record_update`` before anything is pinned or sent, and the refusal
named in the receipt."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict  # noqa: E402

import node.flower.client as client  # noqa: E402
import node.flower.fab_guard as fab_guard  # noqa: E402
from node.audit.verify import verify_ledger  # noqa: E402
from ledger.index.index import LedgerIndex  # noqa: E402
from node.flower.client import record_update  # noqa: E402
from node.flower.fab_guard import agreed_fab_mod, note_run_fab  # noqa: E402
from node.flower.records import PartyReply, array_record  # noqa: E402
from node.tasks.agreement import FlowerApp, agreement_document, fab_sha256  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.flower.test_ledger_strategy import Federation, NodeIds, _flower_task, genesis, trained  # noqa: E402,F401

AGREED_FAB = b"PK a stand-in for the .fab file the parties agreed to"
OTHER_FAB = b"PK the same app with one line changed"
AGREED, OTHER = fab_sha256(AGREED_FAB), fab_sha256(OTHER_FAB)
AGREED_RUN, OTHER_RUN, UNTOLD_RUN = 11, 12, 13


@pytest.fixture(autouse=True)
def _runs() -> Iterator[None]:
    """The FAB hashes the ClientApp's runner read from the SuperNode's run records, for this test only."""
    saved = dict(fab_guard._RUN_FABS)
    note_run_fab(AGREED_RUN, AGREED)
    note_run_fab(OTHER_RUN, OTHER)
    yield
    fab_guard._RUN_FABS.clear()
    fab_guard._RUN_FABS.update(saved)


def agree_to_fab(f: Federation) -> None:
    """Agreement version 2 names the agreed FAB (pinned), and every party accepts it."""
    terms = f.store.add_bytes(b"Each party runs the Flower app named here.\n", pin=True)
    app = FlowerApp(sha256=AGREED, cid=f.store.add_bytes(AGREED_FAB, pin=True))
    version, _ = f.admin.publish_agreement(f.store.add_bytes(agreement_document(None, terms, flower_app=app), pin=True))
    deadline = f.admin.w3.eth.get_block("latest")["timestamp"] + 600
    for party in f.parties:
        signature = f.admin.sign_join(party, version=version, deadline=deadline)
        f.admin.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)


def context(run_id: int) -> Context:
    return Context(run_id=run_id, node_id=1, node_config={}, state=RecordDict(), run_config={})


def test_a_run_of_another_fab_is_refused_before_anything_is_pinned_and_the_receipt_names_it(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path)
    agree_to_fab(f)
    strategy = f.strategy(min_updates=1)
    arrays = genesis()
    messages = list(strategy.configure_train(1, arrays, ConfigRecord(), NodeIds(2)))
    honest, misled = f.parties
    ledgers = iter([f.party(misled), f.party(honest)])
    monkeypatch.setattr(client, "party_ledger", lambda _config: next(ledgers))

    pins = f.store.pins()
    refused = record_update(messages[0], context(OTHER_RUN), arrays, samples=100, metrics={"loss": 1.0})
    word = PartyReply.from_message(refused)
    assert word is not None and (word.participant, word.cid) == (misled.address, "")
    assert word.refusal is not None and f"run {OTHER_RUN} runs the Flower app with sha256 {OTHER}" in word.refusal
    assert f"names {AGREED}" in word.refusal and "nothing was trained or sent" in word.refusal
    assert f.store.pins() == pins and f.admin.submissions(1) == []  # nothing pinned, nothing recorded

    accepted = record_update(messages[1], context(AGREED_RUN), array_record(trained(arrays, 0.1)), samples=100,
                             metrics={"loss": 1.0})
    recorded = PartyReply.from_message(accepted)
    assert recorded is not None and recorded.refusal is None
    assert [s.participant for s in f.admin.submissions(1)] == [honest.address]

    strategy.aggregate_train(1, [refused, accepted])
    receipt = strategy.outcomes[1].receipt
    assert [u.participant for u in receipt.included] == [honest.address]
    assert [(u.participant, u.cid) for u in receipt.unrecorded] == [(misled.address, "")]
    assert receipt.unrecorded[0].reason.startswith("the party refused the run: ")  # not the contract's refusal
    assert f"runs the Flower app with sha256 {OTHER}" in receipt.unrecorded[0].reason
    with LedgerIndex.for_federation(":memory:", f.admin) as index:
        verdict = verify_ledger(f.admin, f.store, index, progress=False)
    assert verdict.ok, [c.what for c in verdict.failures]


def train_message() -> Message:
    return Message(RecordDict({"config": ConfigRecord({"fedledger-round": 1})}), dst_node_id=1, message_type="train")


class App:
    """The ClientApp behind the mod: counts the messages it was asked to handle (train on)."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, msg: Message, context: Context) -> Message:
        self.calls += 1
        return Message(RecordDict({"metrics": MetricRecord({"loss": 0.5})}), reply_to=msg)


@pytest.mark.parametrize("run_id, trains, said", [
    (AGREED_RUN, True, None),
    (OTHER_RUN, False, f"runs the Flower app with sha256 {OTHER}, but agreement version 2 in force"),
    (UNTOLD_RUN, False, f"this ClientApp process was not told the FAB hash of run {UNTOLD_RUN}"),
], ids=["agreed", "other", "untold"])
def test_the_mod_lets_only_the_agreed_fab_train(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_id: int, trains: bool, said: str | None
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    agree_to_fab(f)
    monkeypatch.setattr(fab_guard, "party_ledger", lambda _config: f.party(f.parties[0]))
    app = App()
    reply = agreed_fab_mod(train_message(), context(run_id), app)
    assert app.calls == (1 if trains else 0)
    word = PartyReply.from_message(reply)
    if trains:
        assert word is None and reply.content.metric_records["metrics"]["loss"] == 0.5
    else:
        assert word is not None and word.participant == f.parties[0].address and word.refusal is not None
        assert said in word.refusal


def test_without_a_named_fab_any_run_trains_and_other_messages_pass_unchecked(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)  # the demo's agreement: plain terms, no Flower app
    monkeypatch.setattr(fab_guard, "party_ledger", lambda _config: f.party(f.parties[0]))
    app = App()
    agreed_fab_mod(train_message(), context(UNTOLD_RUN), app)
    assert app.calls == 1
    agree_to_fab(f)
    monkeypatch.setattr(fab_guard, "party_ledger", lambda _config: pytest.fail("an evaluate message reads no ledger"))
    evaluate = Message(RecordDict(), dst_node_id=1, message_type="evaluate")
    agreed_fab_mod(evaluate, context(OTHER_RUN), app)
    assert app.calls == 2


def test_a_run_fab_hash_that_is_not_a_sha256_is_refused() -> None:
    with pytest.raises(Exception, match="is not a sha256"):
        note_run_fab(1, "3eb70f6e")
