"""A fedledger task bundle as a Flower app: the rounds of the agreement's task, trained by the task's own code.

The same task serves ``fedledger node run`` and Flower without a line rewritten. ``task_app/`` is a
ClientApp/ServerApp pair shipped in the package, built on the two functions here:

- ``task_round_config`` (the ServerApp): the round config and the starting arrays of the task that the
  agreement in force names (``agreement publish --task``): its genesis model, made by the task's
  ``model()`` in a task process and pinned as ``fedledger model init --task`` pins it, or the latest
  global model of its rounds; its declared training settings, as ``round open`` writes them.
- ``record_task_update`` (the ClientApp): the party's part of a task round, with the function
  ``node train`` runs (``node.participant.train_and_submit``): the round's task checked against the
  agreement, the bundle fetched from the store and run in a task process that holds no key, on the
  base model read from the store by the CID the chain records (the train message carries none),
  the update pinned (sealed in a sealed round, DP-SGD in a private one, ε declared) and recorded with
  the party's key. The reply carries its CID and metrics. A refusal, the contract's or the party's
  own (a task the agreement does not name, a budget, a FAB the agreement does not name), comes back
  as the sentence the receipt names.

The run config's ``dp-*`` and ``seal-to`` keys make the rounds private and sealed (``run_options``), the
ServerApp opening them with ``fedledger-encryption-key``, as in the example app.

A SuperNode names its data in its node config: ``fedledger-data`` (handed to the task's
``load_data`` as ``node train --data`` does), ``partition-id``/``num-partitions`` (its ``--shard``/``--of``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Context, Message, MetricRecord, RecordDict

from ledger.errors import ContractRevertError, InvalidInputError
from node.flower.client import _me, ledger_round
from node.flower.connection import Ledger, party_ledger
from node.flower.fab_guard import fab_refusal, refusal_reply, run_fab_hash
from node.flower.records import REPLY_KEY, PartyReply
from node.flower.strategy import latest_global, round_config
from node.participant import TaskInputs, train_and_submit
from node.privacy.accountant import PrivacyBudgetExceededError
from node.round_config import DpSettings, RoundConfig, TaskRef, TrainingSettings
from node.strategies import make_strategy

TASK_TIMEOUT_S = 3600.0


def task_round_config(
    ledger: Ledger, *, strategy: str = "fedavg", seed: int = 0, dp: DpSettings | None = None,
    seal_to: tuple[str, ...] | None = None, timeout_s: float = TASK_TIMEOUT_S,
) -> tuple[RoundConfig, dict[str, np.ndarray]]:
    """The config of a round of the agreement's task and the arrays the run starts from (the latest global model
    of its rounds, else its genesis model, made under ``seed`` and pinned). InvalidInputError when the agreement in
    force names no task."""
    from node.tasks.agreement import agreement_task
    from node.tasks.rounds import bundle_manifest, make_task_genesis, read_weights, task_cache
    from node.tasks.spec import effective_settings

    federation, store = ledger.federation, ledger.store
    version = federation.agreement_version()
    task = agreement_task(store, federation.terms_cid(version)) if version else None
    if task is None:
        raise InvalidInputError(
            f"the agreement in force ({'version ' + str(version) if version else 'none is published'}) names no task, "
            "so this app has nothing to train; publish one that does (`fedledger agreement publish TERMS_FILE "
            "--task TASK_CID`) and have every party accept it."
        )
    manifest = bundle_manifest(store, task)
    latest = latest_global(ledger, model=manifest.name)
    if latest is not None:
        arrays = latest[1]
        last = round_config(ledger, latest[0]).task
        frozen = last.frozen_cid if last is not None else None
    else:
        genesis = make_task_genesis(store, task, seed=seed, cache_root=task_cache(ledger.workspace), timeout_s=timeout_s)
        arrays, _ = read_weights(store, genesis.cid, what=f"the genesis model of task {manifest.name}")
        frozen = genesis.frozen_cid
    settings = effective_settings(manifest.settings, None, task=manifest.name)
    config = RoundConfig(model=manifest.name, strategy=make_strategy(strategy).params(),
                         training=TrainingSettings(**settings), task=TaskRef(cid=task, frozen_cid=frozen), dp=dp,
                         seal_to=seal_to)
    return config, arrays


def run_options(run: Mapping[str, object]) -> dict[str, Any]:
    """``task_round_config``'s options from the task app's run config: ``strategy``, ``seed``; ``dp-noise`` > 0 makes
    the rounds private (with ``dp-clip``, ``dp-sample-rate``, ``dp-steps``), ``seal-to`` (addresses, comma-separated)
    seals them, as in the example app."""
    noise = float(run.get("dp-noise", 0.0))  # type: ignore[arg-type]
    dp = None if not noise else DpSettings(
        noise_multiplier=noise, max_grad_norm=float(run.get("dp-clip", 1.0)),  # type: ignore[arg-type]
        sample_rate=float(run.get("dp-sample-rate", 0.2)), steps=int(run.get("dp-steps", 20)))  # type: ignore[arg-type]
    seal_to = tuple(address.strip() for address in str(run.get("seal-to", "")).split(",") if address.strip()) or None
    return {"strategy": str(run.get("strategy", "fedavg")), "seed": int(run.get("seed", 0)), "dp": dp,  # type: ignore[arg-type]
            "seal_to": seal_to}


def task_inputs(ledger: Ledger, node_config: dict, *, timeout_s: float = TASK_TIMEOUT_S) -> TaskInputs:
    """What this SuperNode gives a task round, from its node config."""
    from node.tasks.rounds import task_cache

    data = str(node_config.get("fedledger-data", "")) or None
    partition, partitions = node_config.get("partition-id"), node_config.get("num-partitions")
    return TaskInputs(cache_root=task_cache(ledger.workspace), data_path=data,
                      partition=None if partition is None else int(partition),  # type: ignore[arg-type]
                      partitions=None if partitions is None else int(partitions),  # type: ignore[arg-type]
                      timeout_s=timeout_s)


def record_task_update(msg: Message, context: Context, *, timeout_s: float = TASK_TIMEOUT_S) -> Message:
    """The reply to a train message of a task round: the party's update, trained by the task's own code exactly as
    ``node train`` trains it, pinned and recorded; or the sentence of a refusal, with nothing sent."""
    ledger, round_id = party_ledger(context.node_config), ledger_round(msg)
    refusal = fab_refusal(ledger, context.run_id, run_fab_hash(context))  # before anything is trained
    if refusal is not None:
        return refusal_reply(msg, ledger, refusal)
    me = _me(ledger.federation)
    metrics: dict[str, float] = {}
    try:
        outcome = train_and_submit(federation=ledger.federation, store=ledger.store, round_id=round_id, data=None,
                                   journal_dir=ledger.workspace.journal_dir, progress=False,
                                   task=task_inputs(ledger, dict(context.node_config), timeout_s=timeout_s))
    except ContractRevertError as refused:
        reply = PartyReply(me, "", str(refused), "contract")
    except (InvalidInputError, PrivacyBudgetExceededError) as refused:
        reply = PartyReply(me, "", str(refused), "party")
    else:
        reply = PartyReply(me, outcome.update_cid)
        if outcome.metrics:  # a private round's update carries none: nothing measured on the party's data
            metrics = {**outcome.metrics, "num-examples": float(outcome.samples)}
    content = RecordDict({REPLY_KEY: reply.to_record()})
    if metrics:
        content["metrics"] = MetricRecord(metrics)
    return Message(content=content, reply_to=msg)
