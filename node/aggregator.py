"""The aggregator's round: take only what the ledger proves, aggregate it, pin and record the result.

Every submission comes from the chain's events. Each is kept only if its submitter was an admitted
party with the current agreement at the submission's block, its blob hashes to its CID, matches
the model's tensor layout and holds finite values, and its metadata names its submitter and this
round (so a party that submits another party's CID, copied from its event, gets no credit for it);
anything else is rejected with a reason in the receipt, never silently dropped. A blob the store
does not hold is not a rejection but a fact about this store: it is listed as ``unavailable``, so an
auditor whose store differs can still recompute the aggregate. Each claimed sample count is capped
at the round config's ``max_samples`` before the strategy weighs it. A round whose minimum was met
only by unusable updates is finalized with its base model as the global model and a receipt that
says so (otherwise it could be neither aggregated nor cancelled); one whose updates are partly
missing from this store is not, since the store may be at fault: the error says how to go on. Aggregation is deterministic, so a
rerun after a crash (or an auditor) gets the same bytes and the same CIDs, and the round is
finalized exactly once.

In a task round (its config's ``task``) the layout every update must match is the round's base
model's (tensor names, shapes and dtypes: a task's trainable tensors), read from the base model file
with a fixed size cap; no task code runs here. The global model's metadata then names the task and
its frozen tensors' file too, so the next round opens on it the same way. A built-in round keeps
its model's fixed layout and its global model's metadata as they always were.

A sealed round (its config's ``seal_to``) is opened with one recipient's encryption key: each
envelope is fetched and checked against its CID first (tampering is caught before decryption),
opened into the spool, and its plaintext checked like any update; one sealed to other keys, that
does not open, or whose plaintext fails is rejected with the sealing library's sentence. The
receipt's ``sealed`` list commits to the sha256 of every plaintext opened.

A secure round (its config's ``secure_aggregation``) is aggregated from public data alone
(``node.secure.aggregate``): the survivors' masked vectors summed, the dropouts' masks removed with the
shares their neighbours revealed, no key used. It is aggregated once its deadline has passed, or
before it when every party that advertised has submitted (then nobody dropped out).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ledger.index.queries import round_submissions
from ledger.chain.connection import chain_now
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    InvalidInputError,
    StoreError,
    WeightsError,
)
from ledger.failpoints import failpoint
from ledger.chain.federation import FederationClient, RoundInfo, Submission, TxResult
from ledger.index.index import LedgerIndex
from ledger.sealing.errors import SealingError
from ledger.sealing.recipients import RoundOpener, RoundSeal
from ledger.ipfs.store import ContentStore
from ledger.types import Cid
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.utc import utc_text
from ledger.weights import Layout, WeightsFile, from_safetensors, layout_of, max_blob_bytes, to_safetensors
from node.journal import Journal
from node.model_layouts import MODEL_NAMES, model_layout
from node.receipt import IncludedUpdate, Receipt, RejectedUpdate, SealedUpdate, UnavailableUpdate, UpdateNote
from node.round_config import RoundConfig, TaskRef, config_cid
from node.secure.aggregate import SecureRoundWaiting, secure_aggregate
from node.secure.board import RoundBoard, read_board
from node.strategies import Strategy, Update, strategy_from_params

NO_USABLE_UPDATE = "no update was usable: the global model is the round's base model, unchanged"


@dataclass(frozen=True)
class AggregationOutcome:
    """What the aggregator recorded for a round."""

    round_id: int
    global_cid: Cid
    receipt_cid: Cid
    receipt: Receipt
    tx: TxResult | None  # None when the round was already finalized before this run


def load_update(
    store: ContentStore, submission: Submission, layout: dict, *, spool: Path,
    opener: RoundOpener | None = None, opened: list[SealedUpdate] | None = None,
) -> Update | RejectedUpdate | UnavailableUpdate:
    """The submission's verified weights (with its claimed sample count), or why they cannot be used.

    The checked blob is written to the file ``spool`` and the update reads it from there a slice at a
    time (``ledger.weights.WeightsFile``), so a round holds one update in memory at a time, not all.
    With an ``opener`` (a sealed round) the blob is an envelope: its plaintext is what is spooled,
    and its sha256 is appended to ``opened``.
    """

    def reject(reason: str) -> RejectedUpdate:
        spool.unlink(missing_ok=True)
        return RejectedUpdate(participant=submission.participant, cid=submission.cid, reason=reason)

    limit = max_blob_bytes(layout)
    fetch_limit = limit if opener is None else opener.round_seal.max_sealed_bytes(limit)
    try:
        data = store.get(submission.cid, max_bytes=fetch_limit)
    except ContentNotFoundError:
        return UnavailableUpdate(participant=submission.participant, cid=submission.cid)
    except ContentTooLargeError:
        return reject(f"blob is larger than an update of this model can be ({fetch_limit} bytes at most); not read")
    except IntegrityError:
        return reject("blob does not hash to its CID (altered in the store)")
    if opener is not None:
        try:
            data = opener.open(data, sender=submission.participant)
        except SealingError as error:
            return reject(str(error))
        if opened is not None:
            opened.append(SealedUpdate(submission.participant, submission.cid, hashlib.sha256(data).hexdigest()))
    try:
        arrays, metadata = WeightsFile.write(data, spool, layout=layout)
    except WeightsError as error:
        return reject(f"invalid weights: {error}")
    problem = binding_problem(metadata, participant=submission.participant, round_id=submission.round_id)
    if problem is not None:
        return reject(problem)
    if submission.samples < 1:
        return reject(f"claims {submission.samples} samples; an update must count at least 1")
    return Update(participant=submission.participant, arrays=arrays, samples=submission.samples)


def binding_problem(metadata: dict, *, participant: str, round_id: int) -> str | None:
    """Why an update's metadata does not bind it to its submitter and round, or None when it does.

    ``node train`` writes the party's own address and the round into the update, so the same CID
    submitted by anyone else (copied from the first party's event) names someone other than its
    submitter and is refused.
    """
    named = metadata.get("participant")
    if not isinstance(named, str):
        return "the update's metadata names no participant; an update must name its submitter (`fedledger node train` writes it)"
    if named.lower() != participant.lower():
        return f"the update's metadata names participant {named}, not its submitter: a copy of another party's update"
    named_round = metadata.get("round")
    if isinstance(named_round, bool) or named_round != round_id:
        return f"the update's metadata names round {named_round!r}, not round {round_id}: an update made for another round"
    return None


def global_model_bytes(
    arrays: dict[str, np.ndarray], *, model: str, round_id: int, base_cid: str, task: TaskRef | None = None,
) -> bytes:
    """The global model's safetensors bytes; the metadata is fixed, so equal arrays give an equal CID.

    In a task round it names the task and its frozen tensors' file, as the genesis model does."""
    metadata: dict[str, object] = {"model": model, "round": round_id, "base_cid": base_cid}
    if task is not None:
        metadata.update(task=task.cid, frozen_cid=task.frozen_cid or "")
    return to_safetensors(arrays, metadata=metadata)


def base_defines_layout(config: RoundConfig) -> bool:
    """Whether every update of the round must have its base model's own layout: a task round, or a model
    fedledger does not build (a Flower app's own). A built-in model's layout is fixed, whatever the base holds.
    The base itself is bound by the audit's lineage check (the genesis model or an earlier global model)."""
    return config.task is not None or config.model not in MODEL_NAMES


def round_base(store: ContentStore, info: RoundInfo, config: RoundConfig) -> tuple[bytes, dict[str, np.ndarray], Layout]:
    """The round's base model (bytes and arrays) and the layout every update must have: the built-in
    model's fixed one, or the base model's own (``base_defines_layout``; read with the task models' size cap)."""
    if not base_defines_layout(config):
        layout = model_layout(config.model)
        base_bytes = store.get(info.base_cid, max_bytes=max_blob_bytes(layout))
        base_arrays, _ = from_safetensors(base_bytes, layout=layout)
        return base_bytes, base_arrays, layout
    from node.tasks.rounds import read_weights_bytes

    base_bytes = read_weights_bytes(store, info.base_cid, what=f"the base model of round {info.round_id}")
    base_arrays, _ = from_safetensors(base_bytes, source=f"the base model {info.base_cid} of round {info.round_id}")
    return base_bytes, base_arrays, layout_of(base_arrays)


def _by_participant(entries: Iterable[object]) -> list:
    return sorted(entries, key=lambda entry: entry.participant.lower())  # type: ignore[attr-defined]


def aggregate_updates(
    *,
    store: ContentStore,
    info: RoundInfo,
    config: RoundConfig,
    strategy: Strategy,
    submissions: list[Submission],
    pre_rejected: Iterable[RejectedUpdate] = (),
    unavailable: Iterable[tuple[str, str]] | None = None,
    opener: RoundOpener | None = None,
) -> tuple[bytes, Receipt]:
    """Verify, cap, aggregate, and describe: the pure core that the auditor repeats.

    ``opener``: a recipient's key for a sealed round (required there, ignored otherwise).

    ``unavailable``: None for the aggregator, which finds out which blobs its store lacks; an
    auditor passes the receipt's (participant, cid) list, so those updates are left out as the
    aggregator left them out, and any other blob its store lacks raises ContentNotFoundError.
    The receipt comes back complete, its ``global_cid`` the CID of the returned bytes. Each update is
    spooled to a temporary directory (``TMPDIR``) and read back a slice at a time: memory grows with
    the model, the disk with all the updates together.
    """
    with tempfile.TemporaryDirectory(prefix="fedledger-spool-") as spool:  # removed, whatever happens
        return _aggregate_spooled(
            store=store, info=info, config=config, strategy=strategy, submissions=submissions,
            pre_rejected=pre_rejected, unavailable=unavailable, spool=Path(spool), opener=opener,
        )


def _aggregate_spooled(
    *,
    store: ContentStore,
    info: RoundInfo,
    config: RoundConfig,
    strategy: Strategy,
    submissions: list[Submission],
    pre_rejected: Iterable[RejectedUpdate],
    unavailable: Iterable[tuple[str, str]] | None,
    spool: Path,
    opener: RoundOpener | None,
) -> tuple[bytes, Receipt]:
    """``aggregate_updates`` with each usable update spooled to a file in the directory ``spool``."""
    if config.seal_to is None:
        opener = None
    elif opener is None or opener.round_seal.round_id != info.round_id:
        raise InvalidInputError(
            f"round {info.round_id} is sealed to {', '.join(config.seal_to)}; its updates open only with one "
            "recipient's encryption key, so give it (`--encryption-key NAME`, `audit verify --key NAME`)."
        )
    opened: list[SealedUpdate] = []
    base_bytes, base_arrays, layout = round_base(store, info, config)
    given = None if unavailable is None else {(participant.lower(), cid) for participant, cid in unavailable}
    by_participant = {s.participant.lower(): s for s in submissions}
    updates: list[Update] = []
    refused = list(pre_rejected)
    rejected = list(refused)
    missing: list[UnavailableUpdate] = []
    for number, submission in enumerate(_by_participant(submissions)):
        if given is not None and (submission.participant.lower(), submission.cid) in given:
            missing.append(UnavailableUpdate(participant=submission.participant, cid=submission.cid))
            continue
        loaded = load_update(store, submission, layout, spool=spool / f"{number}.safetensors", opener=opener, opened=opened)
        if isinstance(loaded, UnavailableUpdate):
            if given is not None:
                raise ContentNotFoundError(
                    f"the update {submission.cid} of {submission.participant} is not in this store, though the receipt "
                    f"does not call it unavailable; fetch it to recompute round {info.round_id}."
                )
            missing.append(loaded)
        elif isinstance(loaded, RejectedUpdate):
            rejected.append(loaded)
        else:
            updates.append(loaded)

    cap = config.max_samples
    notes = [
        UpdateNote(participant=u.participant, cid=by_participant[u.participant.lower()].cid,
                   note=f"claimed {u.samples} samples; counted {cap}, the round's max_samples")
        for u in updates if u.samples > cap
    ]
    included: list[IncludedUpdate] = []
    if updates:
        result = strategy.aggregate([replace(u, samples=min(u.samples, cap)) for u in updates], base=base_arrays)
        included = [
            IncludedUpdate(participant=p, cid=by_participant[p.lower()].cid, samples=by_participant[p.lower()].samples,
                           counted_samples=min(by_participant[p.lower()].samples, cap), weight=float(w))
            for p, w in result.included
        ]
        rejected += [RejectedUpdate(participant=p, cid=by_participant[p.lower()].cid, reason=r) for p, r in result.rejected]
        notes += [UpdateNote(participant=p, cid=by_participant[p.lower()].cid, note=n) for p, n in result.notes]
        blob = global_model_bytes(result.arrays, model=config.model, round_id=info.round_id, base_cid=info.base_cid,
                                  task=config.task)
        outcome = (f"aggregated {len(included)} of {len(submissions) + len(refused)} submitted updates "
                   f"({len(rejected)} rejected, {len(missing)} unavailable)")
    else:
        blob = base_bytes
        outcome = f"{NO_USABLE_UPDATE} ({len(rejected)} rejected, {len(missing)} unavailable)"
    receipt = Receipt(
        round_id=info.round_id,
        base_cid=info.base_cid,
        config_cid=config_cid(info.config_hash),
        strategy=strategy.params(),
        max_samples=cap,
        outcome=outcome,
        included=_by_participant(included),
        rejected=_by_participant(rejected),
        unavailable=_by_participant(missing),
        notes=_by_participant(notes),
        global_cid=cid_of_bytes(blob),
        sealed=_by_participant(opened),
    )
    return blob, receipt


def aggregate_secure_updates(
    *, store: ContentStore, info: RoundInfo, config: RoundConfig, submissions: list[Submission],
    pre_rejected: list[RejectedUpdate], board: RoundBoard,
) -> tuple[bytes, Receipt]:
    """``aggregate_updates`` for a secure round: the pure core the auditor repeats, from the board's public
    documents and the masked vectors (``node.secure.aggregate``), written as the round's global model."""
    _, _, layout = round_base(store, info, config)
    return secure_aggregate(
        store=store, info=info, config=config, layout=layout, submissions=submissions, pre_rejected=pre_rejected,
        board=board, global_bytes=lambda arrays: global_model_bytes(
            arrays, model=config.model, round_id=info.round_id, base_cid=info.base_cid, task=config.task),
    )


def below_minimum_advice(info: RoundInfo, now: int) -> str:
    """Why a round below its minimum cannot be finalized yet, and the command that moves it on."""
    n = info.round_id
    held = ("has no usable update: nobody has submitted yet" if info.submissions == 0
            else f"holds {info.submissions} update(s)")
    if now > info.deadline:
        return (f"round {n} {held}, fewer than its minimum of {info.min_updates}, and its deadline has passed; "
                f"cancel it with `fedledger round cancel {n}`.")
    return (f"round {n} {held}, fewer than its minimum of {info.min_updates}; wait for more until its deadline "
            f"({utc_text(info.deadline)}) and run `fedledger aggregate --round {n}` again, cancel it after the "
            f"deadline with `fedledger round cancel {n}`, or, as the admin, abort it now with "
            f"`fedledger round abort {n} --reason TEXT`.")


def aggregate_round(
    *,
    federation: FederationClient,
    store: ContentStore,
    round_id: int,
    journal_dir: Path,
    strategy_name: str | None = None,
    unrecorded: Iterable[RejectedUpdate] = (),
    opener_for: Callable[[RoundSeal], RoundOpener] | None = None,
) -> AggregationOutcome:
    """Aggregate ``round_id`` and finalize it on chain, resuming whatever an earlier run finished.

    ``unrecorded``: updates offered off chain (Flower replies) that the contract refused, named in the receipt.
    ``opener_for``: in a sealed round, gives the recipient key that opens its updates (asked only then).
    """
    info = federation.round(round_id)
    if info.state == "finalized":
        receipt = Receipt.from_bytes(store.get(info.receipt_cid))  # type: ignore[arg-type]
        return AggregationOutcome(round_id, info.global_cid, info.receipt_cid, receipt, None)  # type: ignore[arg-type]
    if info.state != "open":
        raise InvalidInputError(
            f"round {round_id} is {info.state}; only an open round can be aggregated "
            "(open the next one with `fedledger round open`)."
        )

    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    strategy = strategy_from_params(config.strategy)
    if strategy_name is not None and strategy_name != strategy.name:
        raise InvalidInputError(
            f"round {round_id} was opened with strategy {strategy.name!r}, not {strategy_name!r}; "
            "drop --strategy or pass the round's own, since the receipt must match the recorded config."
        )
    if info.submissions < info.min_updates:  # the contract would refuse to finalize: stop before anything is pinned
        raise InvalidInputError(below_minimum_advice(info, chain_now(federation.w3)))

    with LedgerIndex.for_federation(":memory:", federation) as index:  # membership replayed from events
        index.sync()
        submitted = round_submissions(index, round_id)
    admitted = [submission for submission, refusal in submitted if refusal is None]
    refused = [RejectedUpdate(s.participant, s.cid, refusal) for s, refusal in submitted if refusal is not None]

    opener = None
    if config.secure is not None:
        board = read_board(federation, store, round_id, config.secure)
        check_secure_round_closed(info, board, admitted, chain_now(federation.w3))
        blob, receipt = aggregate_secure_updates(store=store, info=info, config=config, submissions=admitted,
                                                 pre_rejected=refused, board=board)
        return _finalize(federation, store, journal_dir, round_id, blob, receipt, unrecorded)
    if config.seal_to is not None:
        round_seal = RoundSeal.read(federation, round_id, config.seal_to, opened_block=info.opened_block)
        if opener_for is None:
            raise InvalidInputError(
                f"round {round_id} is sealed to {', '.join(config.seal_to)}; aggregate it with one recipient's "
                "encryption key (`fedledger aggregate --encryption-key NAME`)."
            )
        opener = opener_for(round_seal)
    blob, receipt = aggregate_updates(
        store=store, info=info, config=config, strategy=strategy, submissions=admitted, pre_rejected=refused,
        opener=opener,
    )
    return _finalize(federation, store, journal_dir, round_id, blob, receipt, unrecorded)


def check_secure_round_closed(info: RoundInfo, board: RoundBoard, submissions: list[Submission], now: int) -> None:
    """SecureRoundWaiting (an InvalidInputError) unless the secure round's survivors are final: its deadline
    passed, or every party that advertised has submitted (nobody can drop out any more)."""
    submitted = {s.participant.lower() for s in submissions}
    waiting = [party for party in board.advertisements if party.lower() not in submitted]
    if waiting and now <= info.deadline:
        raise SecureRoundWaiting(
            f"secure round {info.round_id} waits for {', '.join(waiting)}, which advertised and may still submit "
            f"until {utc_text(info.deadline)}; run `fedledger aggregate --round {info.round_id}` again after that "
            "(and after its neighbours' reveals)."
        )


def _finalize(
    federation: FederationClient, store: ContentStore, journal_dir: Path, round_id: int, blob: bytes, receipt: Receipt,
    unrecorded: Iterable[RejectedUpdate],
) -> AggregationOutcome:
    """Pin the global model and the receipt, then record them on chain (journaled, so a rerun resumes)."""
    if unrecorded:
        receipt = replace(receipt, unrecorded=_by_participant(unrecorded))
    if not receipt.included and receipt.unavailable:  # maybe this store, not the updates: finalize nothing yet
        missing = ", ".join(item.cid for item in receipt.unavailable)
        raise ContentNotFoundError(
            f"round {round_id} has no usable update, and {len(receipt.unavailable)} of its updates are not in this "
            f"store ({missing}); add them (`fedledger ipfs add FILE`, or point [store] at the store the parties "
            f"pinned to) and run `fedledger aggregate --round {round_id}` again, or, if they never appear, close the "
            f"round as the admin with `fedledger round abort {round_id} --reason TEXT`."
        )
    journal = Journal(journal_dir, role="aggregator", actor=federation.address, round_id=round_id)
    global_cid = store.add_bytes(blob, pin=True)  # the base model's own CID when no update was usable
    if global_cid != receipt.global_cid:
        raise StoreError(
            f"the store added the global model as {global_cid}, but its bytes hash to {receipt.global_cid}; "
            "use a store that adds content as CIDv1 with raw leaves (`ipfs add --cid-version=1`)."
        )
    receipt_cid = store.add_bytes(receipt.to_bytes(), pin=True)
    journal.record(global_cid=global_cid, receipt_cid=receipt_cid)
    failpoint("aggregator:after-pin")

    tx = federation.finalize_round(round_id, global_cid=global_cid, receipt_cid=receipt_cid)
    journal.record(finalized_tx=tx.tx_hash)
    return AggregationOutcome(round_id, Cid(global_cid), Cid(receipt_cid), receipt, tx)
