"""The aggregator's round: take only what the ledger proves, aggregate it, pin and record the result.

Every submission comes from the chain's events. Each is kept only if its submitter was an admitted
party with the current agreement at the submission's block, its blob hashes to its CID, matches
the model's tensor layout and holds finite values; anything else is rejected with a reason in the
receipt, never silently dropped. Aggregation is deterministic, so a rerun after a crash (or an
auditor) gets the same bytes and the same CIDs, and the round is finalized exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ledger.audit_queries import round_submissions
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    InvalidInputError,
    WeightsError,
)
from ledger.failpoints import failpoint
from ledger.federation import FederationClient, RoundInfo, Submission, TxResult
from ledger.index import LedgerIndex
from ledger.store import ContentStore
from ledger.types import Cid
from ledger.weights import from_safetensors, max_blob_bytes, to_safetensors
from node.journal import Journal
from node.models import model_layout
from node.receipt import IncludedUpdate, Receipt, RejectedUpdate, UpdateNote
from node.round_config import RoundConfig, config_cid
from node.strategies import Strategy, Update, strategy_from_params


@dataclass(frozen=True)
class AggregationOutcome:
    """What the aggregator recorded for a round."""

    round_id: int
    global_cid: Cid
    receipt_cid: Cid
    receipt: Receipt
    tx: TxResult | None  # None when the round was already finalized before this run


def load_update(store: ContentStore, submission: Submission, layout: dict) -> Update | RejectedUpdate:
    """The submission's verified weights, or the reason they cannot be used."""

    def reject(reason: str) -> RejectedUpdate:
        return RejectedUpdate(participant=submission.participant, cid=submission.cid, reason=reason)

    limit = max_blob_bytes(layout)
    try:
        arrays, _ = from_safetensors(store.get(submission.cid, max_bytes=limit), layout=layout)
    except ContentTooLargeError:
        return reject(f"blob is larger than an update of this model can be ({limit} bytes at most); not read")
    except IntegrityError:
        return reject("blob does not hash to its CID (altered in the store)")
    except ContentNotFoundError:
        return reject("blob not found in the store")
    except WeightsError as error:
        return reject(f"invalid weights: {error}")
    return Update(participant=submission.participant, arrays=arrays, samples=submission.samples)


def global_model_bytes(arrays: dict[str, np.ndarray], *, model: str, round_id: int, base_cid: str) -> bytes:
    """The global model's safetensors bytes; the metadata is fixed, so equal arrays give an equal CID."""
    return to_safetensors(arrays, metadata={"model": model, "round": round_id, "base_cid": base_cid})


def aggregate_updates(
    *,
    store: ContentStore,
    info: RoundInfo,
    config: RoundConfig,
    strategy: Strategy,
    submissions: list[Submission],
    pre_rejected: list[RejectedUpdate] = (),  # type: ignore[assignment]
) -> tuple[bytes, Receipt]:
    """Verify, aggregate, and describe: the pure core that the auditor repeats."""
    layout = model_layout(config.model)
    base_arrays, _ = from_safetensors(store.get(info.base_cid, max_bytes=max_blob_bytes(layout)), layout=layout)
    by_participant = {s.participant.lower(): s for s in submissions}
    updates: list[Update] = []
    rejected = list(pre_rejected)
    for submission in sorted(submissions, key=lambda s: s.participant.lower()):
        loaded = load_update(store, submission, layout)
        (rejected if isinstance(loaded, RejectedUpdate) else updates).append(loaded)  # type: ignore[arg-type]
    if not updates:
        raise InvalidInputError(
            f"round {info.round_id} has no usable update ({len(rejected)} rejected); "
            f"wait for more submissions, or cancel it after its deadline (`fedledger round cancel {info.round_id}`)."
        )
    result = strategy.aggregate(updates, base=base_arrays)
    included = [
        IncludedUpdate(participant=p, cid=by_participant[p.lower()].cid, samples=by_participant[p.lower()].samples, weight=float(w))
        for p, w in result.included
    ]
    rejected += [RejectedUpdate(participant=p, cid=by_participant[p.lower()].cid, reason=r) for p, r in result.rejected]
    blob = global_model_bytes(result.arrays, model=config.model, round_id=info.round_id, base_cid=info.base_cid)
    receipt = Receipt(
        round_id=info.round_id,
        base_cid=info.base_cid,
        config_cid=config_cid(info.config_hash),
        strategy=strategy.params(),
        included=sorted(included, key=lambda u: u.participant.lower()),
        rejected=sorted(rejected, key=lambda u: u.participant.lower()),
        notes=[UpdateNote(participant=p, cid=by_participant[p.lower()].cid, note=n) for p, n in result.notes],
    )
    return blob, receipt


def aggregate_round(
    *,
    federation: FederationClient,
    store: ContentStore,
    round_id: int,
    journal_dir: Path,
    strategy_name: str | None = None,
) -> AggregationOutcome:
    """Aggregate ``round_id`` and finalize it on chain, resuming whatever an earlier run finished."""
    info = federation.round(round_id)
    if info.state == "finalized":
        receipt = Receipt.from_bytes(store.get(info.receipt_cid))  # type: ignore[arg-type]
        return AggregationOutcome(round_id, info.global_cid, info.receipt_cid, receipt, None)  # type: ignore[arg-type]
    if info.state != "open":
        raise InvalidInputError(f"round {round_id} is {info.state}; only an open round can be aggregated.")

    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    strategy = strategy_from_params(config.strategy)
    if strategy_name is not None and strategy_name != strategy.name:
        raise InvalidInputError(
            f"round {round_id} was opened with strategy {strategy.name!r}, not {strategy_name!r}; "
            "drop --strategy or pass the round's own, since the receipt must match the recorded config."
        )

    with LedgerIndex.for_federation(":memory:", federation) as index:  # membership replayed from events
        index.sync()
        submitted = round_submissions(index, round_id)
    admitted = [submission for submission, refusal in submitted if refusal is None]
    refused = [RejectedUpdate(s.participant, s.cid, refusal) for s, refusal in submitted if refusal is not None]

    blob, receipt = aggregate_updates(
        store=store, info=info, config=config, strategy=strategy, submissions=admitted, pre_rejected=refused
    )
    journal = Journal(journal_dir, role="aggregator", actor=federation.address, round_id=round_id)
    global_cid = store.add_bytes(blob, pin=True)
    receipt = Receipt(**{**receipt.__dict__, "global_cid": global_cid})
    receipt_cid = store.add_bytes(receipt.to_bytes(), pin=True)
    journal.record(global_cid=global_cid, receipt_cid=receipt_cid)
    failpoint("aggregator:after-pin")

    tx = federation.finalize_round(round_id, global_cid=global_cid, receipt_cid=receipt_cid)
    journal.record(finalized_tx=tx.tx_hash)
    return AggregationOutcome(round_id, Cid(global_cid), Cid(receipt_cid), receipt, tx)
