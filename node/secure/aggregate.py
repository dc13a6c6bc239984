"""A secure round's aggregate from public data alone: the masked vectors, the advertisements, the reveals.

No key is used or needed: the aggregator and any auditor run the same function on the same board and
get the same bytes. The survivors (parties that advertised in time and submitted) are summed; each
dropout's (advertised, did not submit) round seed is recovered from its neighbours' revealed shares,
each checked against the commitment the dropout published before the deadline, and its masks are
taken out of the sum; the sum is decoded and divided by the survivors' total sample count: FedAvg of
their clipped updates, to ``2**-(scale_bits+1)`` per coordinate.

A reveal that is wrong (a share that is not the committed one) or that offers a share of a party that
submitted is disregarded and named in ``wrong_reveals``; the round goes on if enough right shares
remain. What cannot be recovered from stops the round with a sentence (``SecureRoundStuck``) instead
of a global model: a survivor's masked vector that is malformed (leaving it out would need its masks
removed, which would expose it), a dropout with fewer than T right shares, a survivor that no
surviving neighbour still masks. A submitter that never advertised masked with nobody: its blob is
rejected and never summed.
"""

from __future__ import annotations


import numpy as np

from ledger.chain.federation import RoundInfo, Submission
from ledger.errors import ContentNotFoundError, ContentTooLargeError, IntegrityError, InvalidInputError, WeightsError
from ledger.ipfs.store import ContentStore
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.secagg.errors import SecureAggregationError, TooFewSharesError
from ledger.secagg.graph import check_unmaskable, neighbours_of
from ledger.secagg.masks import check_masked
from ledger.secagg.reveal import recover_dropout_seeds
from ledger.secagg.unmask import secure_fedavg
from ledger.types import Address
from ledger.weights import from_safetensors, max_blob_bytes
from node.receipt import IncludedUpdate, PostedDocument, Receipt, RejectedUpdate
from node.round_config import RoundConfig, config_cid
from node.secure.board import RoundBoard
from node.secure.layout import parameter_count, unflatten
from node.secure.party import MASKED_KIND
from ledger.weights import Layout


class SecureRoundStuck(InvalidInputError):
    """The round cannot be unmasked (yet, or at all); the sentence says why and what to do."""


class SecureRoundWaiting(SecureRoundStuck):
    """Not yet: what is missing may still come (a survivor's reveal, a party that may still submit, a vector
    the store does not hold yet). Every other SecureRoundStuck is for good: the admin aborts the round."""


def secure_aggregate(
    *, store: ContentStore, info: RoundInfo, config: RoundConfig, layout: Layout, submissions: list[Submission],
    pre_rejected: list[RejectedUpdate], board: RoundBoard, global_bytes,  # noqa: ANN001 - (arrays) -> bytes
) -> tuple[bytes, Receipt]:
    """The global model's bytes and its receipt (``global_bytes`` writes the arrays as the round's global model)."""
    assert config.secure is not None
    params, context, rid = config.secure.params, board.context, info.round_id
    length = parameter_count(layout)
    advertised = board.advertisements
    survivors = [s for s in submissions if Address(s.participant) in advertised]
    rejected = list(pre_rejected) + [
        RejectedUpdate(s.participant, s.cid, "submitted without an advertisement that counts in this round, so it "
                                             "masked with nobody; never summed")
        for s in submissions if Address(s.participant) not in advertised
    ]
    if not survivors:
        raise SecureRoundStuck(f"round {rid} has no masked update from a party that advertised; nothing can be "
                               f"aggregated: abort it with `fedledger round abort {rid} --reason TEXT`.")
    submitted = {Address(s.participant) for s in survivors}
    dropouts = sorted((a for a in advertised if a not in submitted), key=str.lower)
    masked = {Address(s.participant): _masked(store, s, length, rid) for s in survivors}
    samples = {Address(s.participant): int(s.samples) for s in survivors}

    try:  # before any reveal is looked at: a round that unmasking would expose waits for nothing
        check_unmaskable(params, context, advertised, submitted)
    except SecureAggregationError as error:
        raise SecureRoundStuck(f"round {rid} cannot be unmasked: {error}") from error
    try:
        recovery = recover_dropout_seeds(params, context, advertisements=advertised, dropouts=dropouts,
                                         reveals=list(board.reveals.values()))
    except TooFewSharesError as error:
        holders = _reveals_to_come(params, context, board, dropouts, submitted)
        if holders:
            raise SecureRoundWaiting(
                f"round {rid} cannot be unmasked yet: {error} {', '.join(holders)} submitted and may still reveal "
                f"(`fedledger node reveal --round {rid}`)."
            ) from error
        raise SecureRoundStuck(f"round {rid} cannot be unmasked: {error} Every survivor that holds a share has "
                               f"revealed: abort the round with `fedledger round abort {rid} --reason TEXT`.") from error
    except SecureAggregationError as error:
        raise SecureRoundStuck(f"round {rid} cannot be unmasked: {error}") from error
    try:
        vector = secure_fedavg(params, context, masked=masked, samples=samples, dropouts=dropouts,
                               seeds=recovery.seeds, advertisements=advertised, length=length)
    except SecureAggregationError as error:
        raise SecureRoundStuck(f"round {rid} cannot be unmasked: {error}") from error
    wrong = [RejectedUpdate(e.holder, board.revealed[Address(e.holder)].cid, str(e))
             for e in (*recovery.wrong_shares, *recovery.refused_reveals)]
    used = sorted({holder for holders in recovery.used.values() for holder in holders} - set(recovery.liars),
                  key=str.lower)
    blob = global_bytes(unflatten(vector, layout))
    total = sum(samples.values())
    included = [IncludedUpdate(participant=s.participant, cid=s.cid, samples=int(s.samples),
                               counted_samples=int(s.samples), weight=int(s.samples) / total) for s in survivors]
    receipt = Receipt(
        round_id=rid, base_cid=info.base_cid, config_cid=config_cid(info.config_hash), strategy=config.strategy,
        max_samples=config.max_samples,
        outcome=(f"securely aggregated {len(survivors)} masked updates ({len(dropouts)} dropout(s) unmasked from "
                 f"{len(used)} reveal(s), {len(wrong)} wrong reveal(s) disregarded, {len(rejected)} rejected)"),
        included=sorted(included, key=lambda u: u.participant.lower()),
        rejected=sorted(rejected, key=lambda u: u.participant.lower()),
        global_cid=cid_of_bytes(blob),
        dropouts=[PostedDocument(d, board.advertised[d].cid) for d in dropouts],
        reveals=[PostedDocument(p, board.revealed[Address(p)].cid) for p in used],
        wrong_reveals=sorted(wrong, key=lambda u: u.participant.lower()),
    )
    return blob, receipt


def _reveals_to_come(params, context, board: RoundBoard, dropouts: list[Address],  # noqa: ANN001
                     submitted: set[Address]) -> list[Address]:
    """The survivors holding a share of some dropout's seed that have not revealed yet."""
    holders = {Address(h) for d in dropouts for h in neighbours_of(params, d, context)}
    return sorted((h for h in holders if h in submitted and h not in board.revealed), key=str.lower)


def _masked(store: ContentStore, submission: Submission, length: int, rid: int) -> np.ndarray:
    """A survivor's masked vector, checked; SecureRoundStuck when it cannot be used (it cannot be left out)."""
    who = f"{submission.participant}'s masked update {submission.cid}"
    layout = {"masked": ((length,), "uint64")}
    try:
        data = store.get(submission.cid, max_bytes=max_blob_bytes(layout))
        vector, metadata = from_safetensors(data, layout=layout, source=who)
    except ContentNotFoundError:
        raise SecureRoundWaiting(f"{who} is not in this store; fetch it (or point [store] at the parties' store) and "
                               f"run the command again: a secure round needs every survivor's vector.") from None
    except (ContentTooLargeError, IntegrityError, WeightsError) as error:
        raise _unusable(rid, who, str(error)) from None
    problem = None
    if metadata.get("kind") != MASKED_KIND:
        problem = "is not a masked update"
    elif str(metadata.get("participant", "")).lower() != submission.participant.lower():
        problem = f"names participant {metadata.get('participant')!r}, not its submitter"
    elif metadata.get("round") != rid:
        problem = f"names round {metadata.get('round')!r}, not round {rid}"
    elif metadata.get("samples") != int(submission.samples):
        problem = f"was weighted by {metadata.get('samples')!r} samples, and the chain records {submission.samples}"
    if problem is not None:
        raise _unusable(rid, who, problem)
    return check_masked(vector["masked"], length, submission.participant)


def _unusable(rid: int, who: str, why: str) -> SecureRoundStuck:
    return SecureRoundStuck(
        f"round {rid} cannot be unmasked: {who} {why}, and leaving it out would take revealing its masks, which would "
        f"expose it; abort the round with `fedledger round abort {rid} --reason TEXT`."
    )
