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
from ledger.canonical_json import canonical_json
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
from node.round_config import RoundConfig, config_cid
from node.training import train


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


def metrics_hash(metrics: dict[str, float]) -> bytes:
    """sha256 of the metrics as canonical JSON: what the chain records, what the update's metadata reveals."""
    return hashlib.sha256(canonical_json(metrics)).digest()


def training_seed(participant: str, round_id: int) -> int:
    """A seed that depends only on who trains in which round, so a rerun trains identically."""
    digest = hashlib.sha256(f"{participant.lower()}:{round_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def update_bytes(
    arrays: dict[str, np.ndarray], *, model: str, participant: str, round_id: int, base_cid: str, samples: int,
    metrics: dict[str, float],
) -> bytes:
    """An update's safetensors bytes: the arrays, with metadata naming the party and round it belongs to."""
    return to_safetensors(arrays, metadata={
        "model": model, "participant": participant, "round": round_id, "base_cid": base_cid, "samples": samples,
        "metrics": metrics,
    })


def fetch_round_config(store: ContentStore, config_hash: bytes) -> RoundConfig:
    """The round's configuration document, verified against the hash recorded on chain."""
    return RoundConfig.from_bytes(store.get(config_cid(config_hash)))


def train_and_submit(
    *,
    federation: FederationClient,
    store: ContentStore,
    round_id: int,
    data: Dataset,
    journal_dir: Path,
    device: torch.device | None = None,
    progress: bool = True,
    submit: Callable[..., TxResult] | None = None,
) -> ParticipantOutcome:
    """Run this party's part of ``round_id`` to the end, resuming whatever an earlier run finished.

    ``submit`` records the update: ``federation.submit_update`` (the party's own transaction) by
    default, or one with its keywords that records it another way (``node.relay_client``: signed,
    sent by a relayer).
    """
    if federation.account is None:
        raise InvalidInputError("training needs the participant's own key; pass --key NAME or set FEDLEDGER_PRIVATE_KEY.")
    me = Address(federation.account.address)
    journal = Journal(journal_dir, role="participant", actor=me, round_id=round_id)

    if federation.has_submitted(round_id, me):
        mine = [s for s in federation.submissions(round_id) if s.participant.lower() == me.lower()]
        recorded = mine[0]
        return ParticipantOutcome(round_id, me, recorded.cid, recorded.samples, journal.get("metrics", {}), None, False,
                                  recorded.epsilon_micros)

    declared = federation.privacy(me)[0]  # ε only adds up: its last declaration is always one the contract takes
    federation.check_can_submit(round_id, samples=len(data), epsilon_micros=declared)  # refused now, not after training
    info = federation.round(round_id)
    config = fetch_round_config(store, info.config_hash)
    layout = model_layout(config.model)
    # Refused now, by this party's own accounting (under a budget, a round without DP too), then by the contract's rule.
    epsilon_micros = epsilon_to_declare(federation, store, me, round_id, config.dp)
    if epsilon_micros != declared:
        federation.check_can_submit(round_id, samples=len(data), epsilon_micros=epsilon_micros)
    sealing = None if config.seal_to is None else RoundSeal.read(  # keys from the chain, never from files
        federation, round_id, config.seal_to, opened_block=info.opened_block
    )

    update_cid = journal.get("update_cid")
    trained = not (update_cid and store.has(update_cid))
    if trained:
        base_arrays, _ = from_safetensors(store.get(info.base_cid, max_bytes=max_blob_bytes(layout)), layout=layout)
        model = build_model(config.model)
        load_arrays(model, base_arrays)
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
        metrics = {name: float(value) for name, value in result.metrics.items()}
        blob = update_bytes(
            state_arrays(model), model=config.model, participant=me, round_id=round_id, base_cid=info.base_cid,
            samples=result.samples, metrics=metrics,
        )
        if sealing is not None:  # only the envelope is pinned: its CID is what the chain records
            blob = sealing.seal(blob, sender=me)
        update_cid = store.add_bytes(blob, pin=True)
        journal.record(update_cid=update_cid, samples=result.samples, metrics=metrics)
    failpoint("participant:after-pin")

    samples = int(journal.get("samples"))
    metrics = dict(journal.get("metrics"))
    tx = (submit or federation.submit_update)(
        round_id, cid=update_cid, samples=samples, metrics_hash=metrics_hash(metrics), epsilon_micros=epsilon_micros
    )
    journal.record(submitted_tx=tx.tx_hash, submitted_block=tx.block)
    return ParticipantOutcome(round_id, me, Cid(update_cid), samples, metrics, tx, trained, epsilon_micros)
