"""A fedledger task bundle runs as a Flower app without a line rewritten (issue 22): the shipped ServerApp's and
ClientApp's functions on the in-process chain, with Flower's own Message and Context objects and the task's
real processes (its genesis model, then its training), through one finalized round; an unadmitted party is
refused by the contract and named in the receipt, a run of a FAB the agreement does not name is refused before
the task runs, and an agreement without a task leaves the app nothing to train; a second run, private by its run
config, opens its rounds private from the latest global model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("flwr")

from flwr.app import ConfigRecord, Context, RecordDict  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.serverapp import ServerApp  # noqa: E402

import node.flower.fab_guard as fab_guard  # noqa: E402
import node.flower.task_round as task_round  # noqa: E402
from ledger.errors import InvalidInputError  # noqa: E402
from ledger.weights import from_safetensors  # noqa: E402
from node.flower.fab_guard import note_run_fab  # noqa: E402
from node.flower.records import PartyReply, array_record  # noqa: E402
from node.flower.task_round import record_task_update, run_options, task_round_config  # noqa: E402
from node.privacy.demo_settings import DELTA, EPSILON_BUDGET  # noqa: E402
from node.round_config import DpSettings  # noqa: E402
from node.tasks.agreement import FlowerApp, agreement_document, fab_sha256  # noqa: E402
from node.tasks.bundle import pack_task  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.flower.test_ledger_strategy import Federation, NodeIds, _flower_task  # noqa: E402,F401
from tests.tasks.helpers import PROBE_MODEL, ROWS_DATASET, write_task  # noqa: E402

TASK = f"""
    import torch

    def model():
        return {PROBE_MODEL}

{ROWS_DATASET}
    def load_data(path, *, partition, partitions, seed):
        return Rows(32, seed + (partition or 0)), Rows(8, 99)
"""


AGREED_FAB = b"PK a stand-in for the task app's .fab file"
RUN, OTHER_RUN = 21, 22


@pytest.fixture(autouse=True)
def _runs() -> Iterator[None]:
    """Run RUN runs the agreed FAB, as the ClientApp's runner would note it; OTHER_RUN was never noted."""
    saved = dict(fab_guard._RUN_FABS)
    note_run_fab(RUN, fab_sha256(AGREED_FAB))
    yield
    fab_guard._RUN_FABS.clear()
    fab_guard._RUN_FABS.update(saved)


def agree_to_task(f: Federation, tmp_path: Path, *, private: bool = False) -> str:
    """A new agreement version names the probe task (its bundle pinned) and the task app's FAB (``private``: with an
    ε budget), and every party accepts it; the task's CID."""
    bundle = f.store.add_bytes(pack_task(write_task(tmp_path / "probe", TASK, settings="epochs = 1\nbatch_size = 8")),
                               pin=True)
    terms = f.store.add_bytes(b"Each party trains the task named here.\n", pin=True)
    app = FlowerApp(sha256=fab_sha256(AGREED_FAB), cid=f.store.add_bytes(AGREED_FAB, pin=True))
    budget = {"epsilon_budget": EPSILON_BUDGET, "delta": DELTA} if private else {}
    version, _ = f.admin.publish_agreement(f.store.add_bytes(agreement_document(bundle, terms, flower_app=app), pin=True),
                                           **budget)
    deadline = f.admin.w3.eth.get_block("latest")["timestamp"] + 600
    for party in f.parties:
        signature = f.admin.sign_join(party, version=version, deadline=deadline)
        f.admin.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)
    return bundle


def context(run_id: int = RUN, **node_config: object) -> Context:
    return Context(run_id=run_id, node_id=1, node_config=node_config, state=RecordDict(), run_config={})  # type: ignore[arg-type]


def test_the_agreements_task_trains_a_round_through_the_shipped_flower_apps_functions(
    memory_chain: TestChain, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = Federation(memory_chain, tmp_path, parties=1)
    with pytest.raises(InvalidInputError, match="names no task, so this app has nothing to train"):
        task_round_config(f.operator)
    task = agree_to_task(f, tmp_path)
    config, initial = task_round_config(f.operator, seed=0)  # the genesis model, made by the task's model()
    assert config.model == "probe" and config.task is not None and config.task.cid == task
    assert (config.training.epochs, config.training.batch_size) == (1, 8)  # the task's declared settings
    assert sorted(initial) == ["0.bias", "0.weight", "2.bias", "2.weight"]

    strategy = f.strategy(config)
    [party, outsider] = strategy.configure_train(1, array_record(initial), ConfigRecord(), NodeIds(2))
    genesis, metadata = from_safetensors(f.store.get(f.admin.round(1).base_cid))
    assert metadata["task"] == task and all(np.array_equal(genesis[k], v) for k, v in initial.items())

    monkeypatch.setattr(task_round, "party_ledger", lambda _config: f.party(f.parties[0]))
    pins = f.store.pins()
    other = PartyReply.from_message(record_task_update(party, context(OTHER_RUN)))  # a run of a FAB it did not agree to
    assert other is not None and other.refused_by == "party" and "was not told the FAB hash of run 22" in str(other.refusal)
    assert f.store.pins() == pins and f.admin.submissions(1) == []  # refused before the task ran

    replies = []
    for message, account in ((party, f.parties[0]), (outsider, f.outsider)):
        monkeypatch.setattr(task_round, "party_ledger", lambda _config, account=account: f.party(account))
        replies.append(record_task_update(message, context(**{"partition-id": 0, "num-partitions": 1})))
    trained, refused = (PartyReply.from_message(reply) for reply in replies)
    assert trained is not None and trained.refusal is None and f.store.has(trained.cid)
    assert replies[0].content["metrics"]["num-examples"] == 32.0  # the task's load_data, this party's shard
    assert refused is not None and refused.refused_by == "contract" and "is not an admitted participant" in str(refused.refusal)
    update, update_metadata = from_safetensors(f.store.get(trained.cid))
    assert update_metadata["task"] == task and update.keys() == initial.keys()

    strategy.aggregate_train(1, replies)
    info = f.admin.round(1)
    assert info.state == "finalized"
    receipt = strategy.outcomes[1].receipt
    assert [u.participant for u in receipt.included] == [f.parties[0].address]
    assert [u.participant for u in receipt.unrecorded] == [f.outsider.address]

    # A later run, private by the run config's dp keys (under an agreement with an ε budget), goes on from the latest
    # global model. (The party's side of a private task round is node train's own: train_and_submit.)
    agree_to_task(f, tmp_path / "again", private=True)
    options = run_options({"seed": 0, "dp-noise": 1.0, "dp-clip": 1.0, "dp-sample-rate": 0.25, "dp-steps": 4})
    assert options["dp"] == DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.25, steps=4)
    assert options["seal_to"] is None and run_options({"seal-to": "0xA, 0xB"})["seal_to"] == ("0xA", "0xB")
    private, latest = task_round_config(f.operator, **options)
    assert private.task == config.task and private.dp == options["dp"]
    assert all(np.array_equal(latest[k], v) for k, v in from_safetensors(f.store.get(info.global_cid))[0].items())


def test_the_shipped_task_app_loads_as_a_flower_app() -> None:
    from node.flower.task_app.fedledger_task import client_app, server_app

    assert isinstance(client_app.app, ClientApp) and isinstance(server_app.app, ServerApp)
