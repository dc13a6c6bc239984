"""A participant's round: fetch the base model, train on local data only, pin the update, record it.

Idempotent: the chain is asked first whether this party already submitted; a journal remembers an
update that was trained and pinned, so a rerun after a crash submits it without retraining. Only
the update's CID, sample count and metrics hash leave the party; its data never does. In a sealed
round (the config's ``seal_to``) what is pinned, and recorded by CID, is the update sealed to the
recipients' keys registered on chain: the store holds nothing a non-recipient can read.

In a private round (the config's ``dp`` section) the party first works out the cumulative ε it
would declare (``node.privacy.budget``) and is refused, before training, when that passes its
budget on chain; it then trains with DP-SGD (``train_private``) and declares that ε with the update.
A party whose agreement carries a budget is refused a round without DP.

In a task round (the config's ``task`` section) the party runs the task the agreement in force
names, and no other: the config's task must be that agreement's (which the contract requires the
party to have accepted). The bundle is fetched by CID, unpacked into the workspace's task cache and
its dependencies checked; the task's code then runs in a process of its own that holds no key
(``node.tasks.runner``), trains the base model's trainable tensors (the frozen ones come from their
own file) and hands back arrays that must have the base model's layout. A task that fails leaves
nothing pinned and nothing sent. A private task round trains with fedledger's DP-SGD loop in the task
process (a task with its own ``train``, or a model Opacus rejects, is refused there before any data is
read) and its update carries no metrics.

In a secure round (the config's ``secure_aggregation``) the party first advertises its round keys
and waits for the key phase to end (``node.secure.party``); what it pins and records is its update
masked with its neighbours' keys, weighted by its sample count (at most ``max_samples``), with no
metrics: nobody, the aggregator included, sees more than the survivors' sum.

The update's metadata names the party's own address and the round: its CID is public once
submitted, and another party that submits the same CID is refused by the aggregator and the
auditor, because the update names someone else (re-wrapping the copied tensors under one's own
address stays possible until updates are sealed to the aggregator).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ledger.errors import InvalidInputError
from ledger.failpoints import failpoint
from ledger.chain.federation import FederationClient, TxResult
from ledger.sealing.recipients import RoundSeal
from ledger.ipfs.store import ContentStore
from ledger.types import Address, Cid
from ledger.weights import from_safetensors, max_blob_bytes, to_safetensors
from node.data import Dataset
from node.journal import Journal
from node.models import build_model, load_arrays, model_layout, state_arrays
from node.privacy.budget import epsilon_to_declare
from node.privacy.dp_training import train_private
from node.round_config import RoundConfig, TaskRef, config_cid
from node.secure.party import PostMessage, advertise, masked_update_bytes, say_on_stderr, wait_for_key_phase
from node.training import evaluate, train
from node.update_metrics import metrics_hash


@dataclass(frozen=True)
class TaskInputs:
    """What a party gives a task round: its data as the task reads it, and how to run the task.

    ``data_path`` is passed to the task's ``load_data`` as given (a file, a folder, None);
    ``partition``/``partitions`` are its ``--shard``/``--of``; ``data_seed`` seeds its split.
    """

    cache_root: Path
    data_path: str | None = None
    partition: int | None = None
    partitions: int | None = None
    data_seed: int = 0
    timeout_s: float = 3600.0
    verbose: bool = False
    device: str | None = None
    compile_model: bool = False
    workers: int = 0


@dataclass(frozen=True)
class ParticipantOutcome:
    """What one party did in one round."""

    round_id: int
    participant: Address
    update_cid: Cid
    samples: int
    metrics: dict[str, float]
    tx: TxResult | None  # None when the submission was already on chain before this run
    trained: bool  # False when a pinned update from an earlier run was reused
    epsilon_micros: int = 0  # the cumulative ε declared with the update (millionths; 0 outside private rounds)


def training_seed(participant: str, round_id: int) -> int:
    """A seed that depends only on who trains in which round, so a rerun trains identically."""
    digest = hashlib.sha256(f"{participant.lower()}:{round_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def update_bytes(
    arrays: dict[str, np.ndarray], *, model: str, participant: str, round_id: int, base_cid: str, samples: int,
    metrics: dict[str, float], task: str | None = None,
) -> bytes:
    """An update's safetensors bytes: the arrays, with metadata naming the party and round it belongs to
    (and, in a task round, the task that trained it)."""
    metadata = {
        "model": model, "participant": participant, "round": round_id, "base_cid": base_cid, "samples": samples,
        "metrics": metrics,
    }
    if task is not None:
        metadata["task"] = task
    return to_safetensors(arrays, metadata=metadata)


def fetch_round_config(store: ContentStore, config_hash: bytes) -> RoundConfig:
    """The round's configuration document, verified against the hash recorded on chain."""
    return RoundConfig.from_bytes(store.get(config_cid(config_hash)))


def train_and_submit(
    *,
    federation: FederationClient,
    store: ContentStore,
    round_id: int,
    data: Dataset | None,
    journal_dir: Path,
    device: torch.device | None = None,
    progress: bool = True,
    submit: Callable[..., TxResult] | None = None,
    task: TaskInputs | None = None,
    validation: Dataset | None = None,
    key_phase_timeout_s: float | None = None,
    post: PostMessage | None = None,
) -> ParticipantOutcome:
    """Run this party's part of ``round_id`` to the end, resuming whatever an earlier run finished.

    ``submit`` records the update: ``federation.submit_update`` (the party's own transaction) by
    default, or one with its keywords that records it another way (``node.relay_client``: signed,
    sent by a relayer); ``post``, in a secure round, posts its advertisement the same way:
    ``federation.post_round_message`` by default, or ``RelayClient.post_round_message``. ``data`` is the party's data for a built-in round; ``task`` what it gives a
    task round (a task round without it is refused). ``validation``, in a built-in round that is not
    private, is what the base model is evaluated on before training (the federated evaluation:
    ``base_accuracy``, ``base_loss`` and ``val_samples`` join the update's metrics); a task round's
    comes from the task's own ``load_data``. ``key_phase_timeout_s``, in a secure round: how long to wait
    for the key phase after advertising before giving up with ``node.secure.party.KeyPhaseOpen`` (0: one
    look, what a service gives so that its loop never blocks; None, ``node train``'s: as long as it takes).
    """
    if federation.account is None:
        raise InvalidInputError("training needs the participant's own key; pass --key NAME or set FEDLEDGER_PRIVATE_KEY.")
    me = Address(federation.account.address)
    journal = Journal(journal_dir, role="participant", actor=me, round_id=round_id)

    status = federation.submission_status(round_id, me)  # submitted?, privacy and the round: one round trip
    if status.submitted:
        mine = [s for s in federation.submissions(round_id) if s.participant.lower() == me.lower()]
        recorded = mine[0]
        return ParticipantOutcome(round_id, me, recorded.cid, recorded.samples, journal.get("metrics", {}), None, False,
                                  recorded.epsilon_micros)

    privacy = (status.epsilon_spent_micros, status.epsilon_budget_micros)  # as the contract's privacy(me)
    declared = status.epsilon_spent_micros  # ε only adds up: its last declaration is always one the contract takes
    samples_known = len(data) if data is not None else 1  # a task's data is read by its own process, later
    federation.check_can_submit(round_id, samples=samples_known, epsilon_micros=declared)  # refused now, not after training
    info = status.round()  # raises here, after the contract's refusal, as federation.round would
    config = fetch_round_config(store, info.config_hash)
    if config.task is not None:
        return _task_round(federation=federation, store=store, round_id=round_id, me=me, journal=journal, info=info,
                           config=config, privacy=privacy, task=task, submit=submit)
    if data is None:
        raise InvalidInputError(f"round {round_id} trains the built-in model {config.model!r}; give the party's data "
                                "(--data FILE or --shard I --of N).")
    layout = model_layout(config.model)
    # Refused now, by this party's own accounting (under a budget, a round without DP too), then by the contract's rule.
    epsilon_micros = epsilon_to_declare(federation, store, me, round_id, config.dp, privacy=privacy)
    if epsilon_micros != declared:
        federation.check_can_submit(round_id, samples=len(data), epsilon_micros=epsilon_micros)
    sealing = None if config.seal_to is None else RoundSeal.read(  # keys from the chain, never from files
        federation, round_id, config.seal_to, opened_block=info.opened_block
    )

    update_cid = journal.get("update_cid")
    trained = not (update_cid and store.has(update_cid))
    board = None
    if trained and config.secure is not None:
        advertise(federation, store, journal, round_id=round_id, settings=config.secure, opened_block=info.opened_block,
                  post=post)
        board = wait_for_key_phase(federation, store, round_id=round_id, settings=config.secure,
                                   say=say_on_stderr if progress else None, timeout_s=key_phase_timeout_s)
    if trained:
        base_arrays, _ = from_safetensors(store.get(info.base_cid, max_bytes=max_blob_bytes(layout)), layout=layout)
        model = build_model(config.model)
        load_arrays(model, base_arrays)
        evaluated: dict[str, float] = {}
        if validation is not None and config.dp is None and board is None:  # nothing measured on its data leaves a private or secure round
            scores = evaluate(model, validation, device=device)
            evaluated = {f"base_{name}": value for name, value in scores.items()}
            evaluated["val_samples"] = float(len(validation))
        if config.dp is not None:  # its noise is seeded by the OS, not by the public training_seed
            result = train_private(model, data, dp=config.dp, lr=config.training.lr, device=device, progress=progress)
        else:
            result = train(
                model,
                data,
                epochs=config.training.epochs,
                batch_size=config.training.batch_size,
                lr=config.training.lr,
                seed=training_seed(me, round_id),
                device=device,
                progress=progress,
            )
        metrics = {name: float(value) for name, value in {**result.metrics, **evaluated}.items()}
        samples = result.samples
        if board is not None:
            samples, metrics = min(samples, config.max_samples), {}
            blob = masked_update_bytes(state_arrays(model), layout, samples=samples, board=board, journal=journal,
                                       me=me, round_id=round_id)
        else:
            blob = update_bytes(
                state_arrays(model), model=config.model, participant=me, round_id=round_id, base_cid=info.base_cid,
                samples=samples, metrics=metrics,
            )
        update_cid = _pin_update(store, journal, blob, sealing=sealing, me=me, samples=samples, metrics=metrics)
    return _submit_pinned(federation, journal, round_id=round_id, me=me, update_cid=update_cid, trained=trained,
                          epsilon_micros=epsilon_micros, submit=submit)


def check_agreed_task(federation: FederationClient, store: ContentStore, round_id: int, task: TaskRef) -> None:
    """InvalidInputError unless ``task`` is the task of the agreement version in force: the one the contract
    requires this party to have accepted before it may submit, so the only code it consented to run."""
    from node.tasks.agreement import agreement_task

    version = federation.agreement_version()
    if version == 0:
        raise InvalidInputError(f"round {round_id} names task {task.cid}, but no agreement is published; "
                                "a party runs only the task of the agreement it accepted.")
    terms = federation.terms_cid(version)
    if not store.has(terms):
        raise InvalidInputError(
            f"round {round_id} names task {task.cid}, but the terms {terms} of agreement version {version} are not in "
            "this workspace's store, so it cannot be checked that they name it; fetch them into the store and run again."
        )
    agreed = agreement_task(store, terms)
    if agreed != task.cid:
        named = f"task {agreed}" if agreed is not None else "no task"
        raise InvalidInputError(
            f"round {round_id} names task {task.cid}, but agreement version {version} in force, the one this party "
            f"accepted, names {named}; nothing was run or sent: a party runs only the task of the agreement it "
            "accepted, so ask the coordinator to open the round under that agreement (or to publish one naming "
            "this task, and accept it with `fedledger participant join`)."
        )


def _task_round(
    *,
    federation: FederationClient,
    store: ContentStore,
    round_id: int,
    me: Address,
    journal: Journal,
    info,  # noqa: ANN001 - RoundInfo
    config: RoundConfig,
    privacy: tuple[int, int],
    task: TaskInputs | None,
    submit: Callable[..., TxResult] | None,
) -> ParticipantOutcome:
    """A task round: the same steps as a built-in one, the training done by the task's own process."""
    assert config.task is not None
    check_agreed_task(federation, store, round_id, config.task)
    if config.secure is not None:
        raise InvalidInputError(
            f"round {round_id} is a secure round of task {config.model}; secure task rounds are not built yet: "
            "ask the coordinator to open it without --secure."
        )
    if task is None:
        raise InvalidInputError(
            f"round {round_id} trains task {config.model} ({config.task.cid}); take part with "
            f"`fedledger node train --round {round_id} --data PATH`, which runs the task."
        )
    epsilon_micros = epsilon_to_declare(federation, store, me, round_id, config.dp, privacy=privacy)
    if epsilon_micros != privacy[0]:
        federation.check_can_submit(round_id, samples=1, epsilon_micros=epsilon_micros)
    sealing = None if config.seal_to is None else RoundSeal.read(
        federation, round_id, config.seal_to, opened_block=info.opened_block
    )

    update_cid = journal.get("update_cid")
    trained = not (update_cid and store.has(update_cid))
    if trained:
        from dataclasses import asdict

        from node.tasks.rounds import prepare_task, read_weights
        from node.tasks.runner import TaskRunner

        folder, manifest = prepare_task(store, config.task.cid, task.cache_root)
        base, _ = read_weights(store, info.base_cid, what=f"the base model of round {round_id}")
        frozen: dict[str, np.ndarray] = {}
        if config.task.frozen_cid is not None:
            frozen, _ = read_weights(store, config.task.frozen_cid, what=f"the frozen tensors of task {manifest.name}")
        runner = TaskRunner(folder, manifest, timeout_s=task.timeout_s, verbose=task.verbose, device=task.device,
                            compile_model=task.compile_model, workers=task.workers)
        result = runner.train(
            base, frozen, data_path=task.data_path, partition=task.partition, partitions=task.partitions,
            seed=training_seed(me, round_id), data_seed=task.data_seed, settings=asdict(config.training),
            dp=None if config.dp is None else asdict(config.dp),
        )
        # A private round's update carries no figure measured on the party's data, whatever the task said.
        metrics = {} if config.dp is not None else {name: float(value) for name, value in result.metrics.items()}
        blob = update_bytes(
            result.arrays, model=config.model, participant=me, round_id=round_id, base_cid=info.base_cid,
            samples=result.samples, metrics=metrics, task=config.task.cid,
        )
        update_cid = _pin_update(store, journal, blob, sealing=sealing, me=me, samples=result.samples, metrics=metrics)
    return _submit_pinned(federation, journal, round_id=round_id, me=me, update_cid=update_cid, trained=trained,
                          epsilon_micros=epsilon_micros, submit=submit)


def _pin_update(
    store: ContentStore, journal: Journal, blob: bytes, *, sealing: RoundSeal | None, me: Address, samples: int,
    metrics: dict[str, float],
) -> str:
    """Pin the update (in a sealed round only its envelope, whose CID the chain records) and journal it,
    so that a rerun after a crash submits it without training again."""
    if sealing is not None:
        blob = sealing.seal(blob, sender=me)
    update_cid = store.add_bytes(blob, pin=True)
    journal.record(update_cid=update_cid, samples=samples, metrics=metrics)
    return update_cid


def _submit_pinned(
    federation: FederationClient, journal: Journal, *, round_id: int, me: Address, update_cid: str, trained: bool,
    epsilon_micros: int, submit: Callable[..., TxResult] | None,
) -> ParticipantOutcome:
    """Record the journaled update on chain (``submit``, or the party's own transaction) and journal the receipt."""
    failpoint("participant:after-pin")
    samples = int(journal.get("samples"))
    metrics = dict(journal.get("metrics"))
    tx = (submit or federation.submit_update)(
        round_id, cid=update_cid, samples=samples, metrics_hash=metrics_hash(metrics), epsilon_micros=epsilon_micros
    )
    journal.record(submitted_tx=tx.tx_hash, submitted_block=tx.block)
    return ParticipantOutcome(round_id, me, Cid(update_cid), samples, metrics, tx, trained, epsilon_micros)
