"""Questions an auditor asks of the index: who joined under which terms, what each round did,
where a model came from. Everything here is read from indexed events (plus, for provenance, the
round's receipt and config from the store when one is given); nothing trusts the aggregator.

Rows are plain dicts of JSON values, so the CLI prints them as tables, JSON or CSV unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.ipfs.cid import RAW, cid_from_parts
from ledger.errors import InvalidInputError, LedgerError
from ledger.chain.federation import Submission
from ledger.fixed_point import micros_to_epsilon, units_to_delta
from ledger.index.index import IndexedEvent, LedgerIndex
from ledger.types import Address, Cid, RoundId

MEMBERSHIP_EVENTS = (
    "AgreementPublished",
    "ParticipantJoined",
    "ParticipantAdmitted",
    "ParticipantSuspended",
    "ParticipantReinstated",
    "ParticipantRevoked",
)
TIME_COLUMNS = frozenset({"published_at", "joined_at", "at"})
"""The row columns below that hold a block timestamp (tables show them with ledger.utc.utc_text)."""
ROUND_EVENTS = ("RoundOpened", "UpdateSubmitted", "RoundFinalized", "RoundCancelled", "RoundAborted")
_TRANSITIONS = {
    "ParticipantAdmitted": "admitted",
    "ParticipantSuspended": "suspended",
    "ParticipantReinstated": "admitted",
    "ParticipantRevoked": "revoked",
}


@dataclass
class Member:
    """One party's standing as replayed from events."""

    address: str
    status: str = "none"
    accepted_version: int = 0
    joins: list[IndexedEvent] = field(default_factory=list)  # every ParticipantJoined, in order


@dataclass
class Membership:
    """The federation's membership, replayed event by event in chain order."""

    agreement_version: int = 0
    terms: dict[int, str | None] = field(default_factory=dict)  # version -> terms CID
    members: dict[str, Member] = field(default_factory=dict)

    def member(self, address: str) -> Member:
        return self.members.setdefault(address, Member(address))

    def apply(self, event: IndexedEvent) -> None:
        if event.name == "AgreementPublished":
            self.agreement_version = int(event.args["version"])
            self.terms[self.agreement_version] = event.args.get("terms_cid")
        elif event.name == "ParticipantJoined":
            member = self.member(event.args["participant"])
            member.joins.append(event)
            member.accepted_version = int(event.args["version"])
            if member.status == "none":
                member.status = "pending"
        elif event.name in _TRANSITIONS:
            self.member(event.args["participant"]).status = _TRANSITIONS[event.name]


def replay(index: LedgerIndex, *, extra: Iterable[str] = ()) -> Iterator[tuple[IndexedEvent, Membership]]:
    """Every membership event (and the ``extra`` event names) with the membership just before it."""
    membership = Membership()
    for event in index.events((*MEMBERSHIP_EVENTS, *extra)):
        yield event, membership
        membership.apply(event)


def submission_refusal(membership: Membership, participant: str) -> str | None:
    """Why ``participant`` was not entitled to submit under ``membership``; None when it was
    (admitted, and its accepted agreement version is the one in force)."""
    member = membership.members.get(participant)
    status = member.status if member else "none"
    accepted = member.accepted_version if member else 0
    if status != "admitted":
        return f"{participant} submitted while {status}"
    if accepted != membership.agreement_version:
        return f"{participant} submitted under agreement v{accepted} while v{membership.agreement_version} was in force"
    return None


def submission_of(event: IndexedEvent) -> Submission:
    """An indexed ``UpdateSubmitted`` event as the client's ``Submission``."""
    args = event.args
    return Submission(
        round_id=RoundId(int(args["roundId"])), participant=Address(args["participant"]), cid=Cid(args["cid"]),
        samples=int(args["samples"]), metrics_hash=bytes.fromhex(args["metricsHash"][2:]),
        block=event.block, tx_hash=event.tx_hash,
    )


def round_submissions(index: LedgerIndex, round_id: int) -> list[tuple[Submission, str | None]]:
    """Every update of ``round_id`` in chain order, with why its submitter was not entitled to
    submit at that point of the chain (None when it was). Replayed from events, so it needs no
    historical state from the node (a restarted anvil or a pruned node has none)."""
    return [
        (submission_of(event), submission_refusal(membership, event.args["participant"]))
        for event, membership in replay(index, extra=("UpdateSubmitted",))
        if event.name == "UpdateSubmitted" and int(event.args["roundId"]) == round_id
    ]


def membership_at_end(index: LedgerIndex) -> Membership:
    membership = Membership()
    for event in index.events(MEMBERSHIP_EVENTS):
        membership.apply(event)
    return membership


def _when(index: LedgerIndex, block: int) -> int:
    return index.block_timestamp(block)


# ---------------------------------------------------------------- tables


def agreements(index: LedgerIndex) -> list[dict[str, Any]]:
    """Every agreement version: terms CID, when published, how many parties accepted it, its privacy budget (ε, δ; None: none)."""
    joins = index.events("ParticipantJoined")
    return [
        {
            "version": int(event.args["version"]),
            "terms_cid": event.args.get("terms_cid"),
            "block": event.block,
            "published_at": _when(index, event.block),
            "tx_hash": event.tx_hash,
            "accepted_by": len({j.args["participant"] for j in joins if j.args["version"] == event.args["version"]}),
            "epsilon_budget": micros_to_epsilon(int(event.args["epsilonBudget"])) if int(event.args["epsilonBudget"]) else None,
            "delta": units_to_delta(int(event.args["delta"])) if int(event.args["delta"]) else None,
        }
        for event in index.events("AgreementPublished")
    ]


def participants(index: LedgerIndex) -> list[dict[str, Any]]:
    """Every party that ever joined: status now, agreement versions accepted, when it first joined,
    and the EIP-712 signature of its latest acceptance (re-checked by ``audit verify``)."""
    membership = membership_at_end(index)
    submitted: dict[str, int] = {}
    for event in index.events("UpdateSubmitted"):
        submitted[event.args["participant"]] = submitted.get(event.args["participant"], 0) + 1
    rows = []
    for member in membership.members.values():
        first = member.joins[0] if member.joins else None
        rows.append(
            {
                "address": member.address,
                "status": member.status,
                "accepted_version": member.accepted_version,
                "versions": ";".join(str(j.args["version"]) for j in member.joins),
                "joined_block": first.block if first else None,
                "joined_at": _when(index, first.block) if first else None,
                "join_tx": first.tx_hash if first else None,
                "relayer": first.args.get("relayer") if first else None,
                "signature": member.joins[-1].args.get("signature") if member.joins else None,
                "updates": submitted.get(member.address, 0),
            }
        )
    return rows


def membership_history(index: LedgerIndex) -> list[dict[str, Any]]:
    """Every join, admission, suspension, reinstatement and revocation, in chain order."""
    rows = []
    for event in index.events(MEMBERSHIP_EVENTS[1:]):
        rows.append(
            {
                "block": event.block,
                "at": _when(index, event.block),
                "participant": event.args["participant"],
                "action": event.name.removeprefix("Participant").lower(),
                "version": event.args.get("version"),
                "by": event.args.get("sender") or event.args.get("relayer"),
                "tx_hash": event.tx_hash,
            }
        )
    return rows


def rounds(index: LedgerIndex) -> list[dict[str, Any]]:
    """Every round: base model, settings, state, submissions, result."""
    table: dict[int, dict[str, Any]] = {}
    for event in index.events(ROUND_EVENTS):
        round_id = int(event.args["roundId"])
        if event.name == "RoundOpened":
            config_hash = bytes.fromhex(event.args["configHash"][2:])
            table[round_id] = {
                "round_id": round_id,
                "state": "open",
                "base_cid": event.args.get("base_cid"),
                "deadline": int(event.args["deadline"]),
                "min_updates": int(event.args["minUpdates"]),
                "config_hash": event.args["configHash"],
                "config_cid": cid_from_parts(RAW, config_hash),
                "agreement_version": int(event.args["agreementVersion"]),
                "opened_block": event.block,
                "opened_tx": event.tx_hash,
                "submissions": 0,
                "global_cid": None,
                "receipt_cid": None,
                "closed_block": None,
                "closed_tx": None,
                "closed_by": None,
                "abort_reason": None,  # set when governance aborted the round (RoundAborted)
            }
            continue
        row = table.get(round_id)
        if row is None:  # an event for a round opened before the deployment block: not ours
            continue
        if event.name == "UpdateSubmitted":
            row["submissions"] += 1
        else:
            row["state"] = "finalized" if event.name == "RoundFinalized" else "cancelled"
            row["closed_block"], row["closed_tx"] = event.block, event.tx_hash
            row["closed_by"] = event.args.get("sender")
            if event.name == "RoundAborted":
                row["abort_reason"] = event.args["reason"]
            if event.name == "RoundFinalized":
                row["global_cid"], row["receipt_cid"] = event.args.get("global_cid"), event.args.get("receipt_cid")
    return [table[key] for key in sorted(table)]


def relayers(index: LedgerIndex) -> dict[str, str]:
    """The relayer of each relayed batch, by transaction hash (the UpdatesRelayed event of its transaction)."""
    return {event.tx_hash: event.args["relayer"] for event in index.events("UpdatesRelayed")}


def updates(index: LedgerIndex, *, round_id: int | None = None) -> list[dict[str, Any]]:
    """Every recorded update (of one round, or all); ``relayed_by`` is the relayer that sent it, None
    when its party sent it itself."""
    relayed = relayers(index)
    return [
        {
            "round_id": int(event.args["roundId"]),
            "participant": event.args["participant"],
            "cid": event.args.get("cid"),
            "samples": int(event.args["samples"]),
            "metrics_hash": event.args["metricsHash"],
            "block": event.block,
            "tx_hash": event.tx_hash,
            "relayed_by": relayed.get(event.tx_hash),
        }
        for event in index.events("UpdateSubmitted", round_id=round_id)
    ]


# ---------------------------------------------------------------- provenance


def _receipt_document(store: Any, cid: str | None) -> dict[str, Any] | None:
    if store is None or cid is None:
        return None
    try:
        return json.loads(store.get(cid))
    except (LedgerError, ValueError):
        return None


def provenance(index: LedgerIndex, cid: str, *, store: Any = None) -> dict[str, Any]:
    """The lineage of model ``cid`` back to the genesis model: each round that produced it, its
    base, parties and strategy. InvalidInputError when ``cid`` is no model of this ledger."""
    table = rounds(index)
    by_global: dict[str, list[dict[str, Any]]] = {}  # a CID -> the rounds that produced it, latest first
    for row in reversed(table):
        if row["state"] == "finalized":
            by_global.setdefault(row["global_cid"], []).append(row)
    bases = {row["base_cid"] for row in table}
    if cid not in by_global and cid not in bases:
        raise InvalidInputError(
            f"{cid} is not a model recorded in this ledger (neither a round's base nor a finalized global model); "
            "list the models with `fedledger audit rounds`."
        )
    submitters: dict[int, list[str]] = {}
    for event in index.events("UpdateSubmitted"):
        submitters.setdefault(int(event.args["roundId"]), []).append(event.args["participant"])
    steps, current, before = [], cid, float("inf")
    # A round that found no usable update keeps its base as its global model, so one CID may come
    # from several rounds: each step goes to the latest earlier round that produced the current CID.
    while (row := next((r for r in by_global.get(current, []) if r["round_id"] < before), None)) is not None:
        before = row["round_id"]
        receipt = _receipt_document(store, row["receipt_cid"])
        steps.append(
            {
                "round_id": row["round_id"],
                "model_cid": current,
                "base_cid": row["base_cid"],
                "receipt_cid": row["receipt_cid"],
                "config_cid": row["config_cid"],
                "finalized_block": row["closed_block"],
                "finalized_tx": row["closed_tx"],
                "submitters": submitters.get(row["round_id"], []),
                "included": [item["participant"] for item in receipt["included"]] if receipt else None,
                "strategy": receipt["strategy"] if receipt else None,
            }
        )
        current = row["base_cid"]
    first_base = table[0]["base_cid"] if table else None
    return {
        "cid": cid,
        "genesis_cid": current,
        "reaches_genesis": current == first_base,
        "rounds": steps,
    }
