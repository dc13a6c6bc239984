"""``fedledger aggregator run``: finalize each open round as soon as it may be, cancel the ones that cannot.

A round is finalized (by ``node.aggregator.aggregate_round``, the function ``fedledger aggregate``
calls) once it holds its minimum of updates and either every party entitled to submit to it has
submitted or its deadline has passed; a round whose deadline passed below its minimum is
cancelled, which lets the coordinator open it again. The parties entitled to submit are those
admitted now whose accepted agreement is the round's; the aggregator keeps them from an event
index in memory, synced at each step (a few new logs, not a scan).

A round that cannot be aggregated for a reason that will not go away by retrying (its config is
not a round config, its base model fails verification) is reported once and left to governance,
which can abort it. A sealed round is opened with the recipient key ``opener_for`` gives (``aggregator
run`` uses the workspace's encryption key that a recipient registered, or ``--encryption-key``).

With ``[chain] confirmations = N`` the decision (how many updates, whether the deadline passed) is
taken on the chain N blocks under the head, by that block's time, so a round is finalized only on
updates that deep. A round this aggregator finalized that is open again there (a reorganization
deeper than N took the finalization) is finalized again: the same updates give the same global
model. A finalization the contract refuses (the updates it counted were taken) waits for the next step.

A secure round (its config's ``secure_aggregation``) is aggregated once its deadline has passed, or
earlier once its key phase is over and every party that advertised keys has submitted (nobody can drop
out any more; the board is read at the latest block, the submissions in the settled view). While what
the aggregate needs may still come (a survivor's reveal of a dropout's shares, a masked vector not yet
in the store: ``node.secure.aggregate.SecureRoundWaiting``; an advertisement or reveal document not yet
in the store) the round is tried again at each step, logged once (``secure-waiting``). A round that cannot be unmasked for good (unmasking would expose a
survivor, a survivor's masked vector is malformed, every share holder revealed and too few shares are
right) is reported once as a warning with its sentence: an aggregator whose key also holds the admin
role aborts it with that reason; otherwise it stays open for the admin to abort.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


from ledger.index.queries import membership_at_end
from ledger.chain.contract_errors import (
    FederationContractError,
    FederationMinimumReached,
    FederationRoundClosed,
    FederationRoundStillOpen,
)
from ledger.errors import ContentNotFoundError, LedgerError
from ledger.chain.federation import FederationClient, RoundInfo
from ledger.chain.finality import chain_moved
from ledger.index.index import LedgerIndex
from ledger.sealing.recipients import RoundOpener, RoundSeal
from ledger.ipfs.store import ContentStore
from node.aggregator import aggregate_round
from node.round_config import RoundConfig, config_cid
from node.secure.aggregate import SecureRoundStuck, SecureRoundWaiting
from node.secure.board import read_board
from node.secure.settings import SecureRound
from node.services.backoff import is_transient
from node.services.clock import decision_time
from node.services.log import ServiceLog
from node.services.settled_step import step_on_settled_view
from node.services.metrics import ServiceMetrics


class AggregatorService:
    """The steps of the aggregator (see the module docstring)."""

    def __init__(
        self,
        *,
        federation: FederationClient,
        store: ContentStore,
        journal_dir: Path,
        log: ServiceLog,
        metrics: ServiceMetrics,
        opener_for: Callable[[RoundSeal], RoundOpener] | None = None,
    ) -> None:
        self.federation = federation
        self.opener_for = opener_for  # a sealed round's recipient key (node.aggregator.aggregate_round)
        self.store = store
        self.journal_dir = journal_dir
        self.log = log
        self.metrics = metrics
        self.index = LedgerIndex.for_federation(":memory:", federation)
        self.seen: set[int] = set()
        self.stuck: dict[int, str] = {}  # rounds that cannot be aggregated, and why (reported once)
        self.view = federation  # what the current step decides on (ledger.chain.finality.settled)
        self.refused: set[int] = set()  # rounds whose finalization the contract refused (warned once)
        self.finalized: set[int] = set()  # rounds this aggregator finalized (confirmed: open again only after a reorg)
        self.secure: dict[int, SecureRound | None] = {}  # open rounds' secure settings (None: not a secure round)
        self.secure_waiting: set[int] = set()  # secure rounds waiting for reveals or submissions (logged once)
        self.early_checked: dict[int, int] = {}  # secure rounds: submissions counted when not all advertisers had

    def start(self) -> None:
        self.log.info("started", f"aggregator {self.federation.sender} watches for rounds to finalize or cancel.")

    def close(self) -> None:
        self.index.close()

    def entitled(self, agreement_version: int) -> int:
        """How many parties may submit to a round opened under ``agreement_version`` (as of the latest block)."""
        self.index.sync()
        members = membership_at_end(self.index).members.values()
        return sum(1 for m in members if m.status == "admitted" and m.accepted_version == agreement_version)

    def step(self) -> bool:
        return step_on_settled_view(self.federation, self.log, self._step)

    def _step(self, view: FederationClient) -> bool:
        self.view = view
        open_rounds = view.open_round_ids()
        now = decision_time(view)
        for round_id in open_rounds:
            if round_id not in self.seen:
                self.seen.add(round_id)
                self.metrics.rounds_seen.inc()
            if round_id in self.stuck:
                continue
            info = view.round(round_id)
            if info.state != "open":
                continue
            late = now > info.deadline
            secure = self._secure_settings(info)
            if secure is not None and info.submissions >= info.min_updates:
                if late:
                    self._finalize(info, f"its deadline passed with {info.submissions} masked update(s)")
                elif self._advertisers_submitted(view, info, secure, now):
                    self._finalize(info, "every party that advertised keys has submitted")
            elif info.submissions >= info.min_updates:
                entitled = self.entitled(info.agreement_version)
                if info.submissions >= entitled:
                    self._finalize(info, f"all {entitled} entitled parties have submitted")
                elif late:
                    self._finalize(info, f"its deadline passed with {info.submissions} of {entitled} entitled parties")
            elif late:
                self._cancel(info)
        still_open = set(open_rounds)
        self.seen &= still_open
        self.stuck = {r: why for r, why in self.stuck.items() if r in still_open}
        self.refused &= still_open
        self.secure = {r: settings for r, settings in self.secure.items() if r in still_open}
        self.secure_waiting &= still_open
        self.early_checked = {r: n for r, n in self.early_checked.items() if r in still_open}
        return False

    def _secure_settings(self, info: RoundInfo) -> SecureRound | None:
        """The round's secure settings (None: not a secure round, or a config this store could not give when
        first asked, which ``aggregate_round`` then reports or, arrived since, aggregates as it says)."""
        if info.round_id not in self.secure:
            try:
                self.secure[info.round_id] = RoundConfig.from_bytes(self.store.get(config_cid(info.config_hash))).secure
            except LedgerError as problem:  # asked once: ``aggregate_round`` reads the config again and judges it
                if is_transient(problem):
                    raise
                self.secure[info.round_id] = None
        return self.secure[info.round_id]

    def _advertisers_submitted(self, view: FederationClient, info: RoundInfo, secure: SecureRound, now: int) -> bool:
        """Before the deadline: whether the key phase is over and every party that advertised has submitted
        (the board read at the latest block, the submissions in the settled view: never fewer than it shows).
        Read again only when the round's submissions changed, or while the key phase is still open."""
        if self.early_checked.get(info.round_id) == info.submissions:
            return False
        try:
            board = read_board(self.federation, self.store, info.round_id, secure)
        except LedgerError as problem:  # a document not in this store (yet): the deadline decides instead
            if is_transient(problem):
                raise
            return False
        if not (board.all_advertised or now > secure.key_deadline):
            return False
        submitted = {s.participant.lower() for s in view.submissions(info.round_id)}
        if all(party.lower() in submitted for party in board.advertisements):
            return True
        self.early_checked[info.round_id] = info.submissions
        return False

    def _finalize(self, info: RoundInfo, why: str) -> None:
        round_id = info.round_id
        if round_id in self.finalized:  # a round this aggregator saw finalized is open again in the settled view
            self.finalized.discard(round_id)
            self.metrics.reorgs.inc()
            self.log.warning("reorganized", f"round {round_id}: its finalization is no longer on chain (a "
                             "reorganization removed it); finalizing it again.", round=round_id)
        # In a secure round a document the store lacks (an advertisement, a reveal) may yet come; a plain
        # round's missing content is reported as it always was.
        waiting_for = (SecureRoundWaiting, ContentNotFoundError) if self.secure.get(round_id) else SecureRoundWaiting
        try:
            outcome = aggregate_round(
                federation=self.federation, store=self.store, round_id=round_id, journal_dir=self.journal_dir,
                opener_for=self.opener_for,
            )
        except FederationRoundClosed:
            return  # finalized or cancelled by someone else since we looked
        except FederationContractError as refusal:  # e.g. a reorg took updates it counted: decided again next step
            if round_id not in self.refused:
                self.refused.add(round_id)
                self.log.warning("finalize-refused", f"round {round_id}: the contract refused its finalization now: "
                                 f"{refusal} Deciding again at the next step.", round=round_id)
            return
        except waiting_for as waiting:  # a reveal, a submission, a document may still come
            if chain_moved(self.view):
                raise
            if round_id not in self.secure_waiting:
                self.secure_waiting.add(round_id)
                self.log.info("secure-waiting", f"round {round_id}: not yet: {waiting} Trying again at each step.",
                              round=round_id)
            return
        except SecureRoundStuck as stuck:
            if is_transient(stuck) or chain_moved(self.view):
                raise
            self._cannot_unmask(round_id, stuck)
            return
        except LedgerError as problem:
            if is_transient(problem) or chain_moved(self.view):
                raise  # the step's wrapper decides again when the chain reorganized under it
            self.stuck[round_id] = str(problem)
            self.log.error(
                "cannot-finalize",
                f"round {round_id}: cannot be aggregated: {problem} It stays open; governance can close it with "
                f"`fedledger round abort {round_id} --reason TEXT`.", round=round_id,
            )
            return
        if outcome.tx is None:
            return  # finalized by someone else (or by this aggregator before a restart)
        self.finalized.add(round_id)
        self.metrics.rounds_finalized.inc()
        self.metrics.gas_used.inc(outcome.tx.gas_used)
        receipt = outcome.receipt
        self.log.info(
            "finalized",
            f"round {round_id}: finalized ({why}): {receipt.outcome}; global model {outcome.global_cid}, "
            f"receipt {outcome.receipt_cid} (gas {outcome.tx.gas_used}).",
            round=round_id, global_cid=outcome.global_cid, receipt_cid=outcome.receipt_cid,
            included=[item.participant for item in receipt.included],
            rejected=[item.participant for item in receipt.rejected],
            gas_used=outcome.tx.gas_used, tx_hash=outcome.tx.tx_hash,
            **({"dropouts": [d.participant for d in receipt.dropouts], "reveals": [r.participant for r in receipt.reveals],
                "wrong_reveals": [w.participant for w in receipt.wrong_reveals]}
               if round_id in self.secure and self.secure[round_id] is not None else {}),
        )

    def _cannot_unmask(self, round_id: int, stuck: SecureRoundStuck) -> None:
        """A secure round that cannot be unmasked for good: abort it with the reason when this aggregator's key
        holds the admin role, else say who must (reported once: the round is left alone afterwards)."""
        reason = str(stuck)
        self.stuck[round_id] = reason
        if not self.federation.has_role("admin", self.federation.sender):
            self.log.warning(
                "cannot-unmask", f"round {round_id}: {reason} This aggregator ({self.federation.sender}) lacks the "
                f"admin role, so the round stays open: the federation admin aborts it with `fedledger round abort "
                f"{round_id} --reason TEXT`.", round=round_id, reason=reason,
            )
            return
        try:
            tx = self.federation.abort_round(round_id, reason=reason)
        except FederationRoundClosed:
            return  # closed by someone else since we looked
        self.metrics.gas_used.inc(tx.gas_used)
        self.log.warning(
            "aborted", f"round {round_id}: {reason} Aborted with that reason (this aggregator's key holds the admin "
            f"role; gas {tx.gas_used}).", round=round_id, reason=reason, gas_used=tx.gas_used, tx_hash=tx.tx_hash,
        )

    def _cancel(self, info: RoundInfo) -> None:
        try:
            tx = self.federation.cancel_round(info.round_id)
        except (FederationRoundClosed, FederationRoundStillOpen, FederationMinimumReached):
            return  # closed by the coordinator, not yet late at the pending block, or an update just landed
        self.metrics.rounds_cancelled.inc()
        self.metrics.gas_used.inc(tx.gas_used)
        self.log.info(
            "cancelled",
            f"round {info.round_id}: cancelled: its deadline passed with {info.submissions} of its minimum "
            f"{info.min_updates} updates (gas {tx.gas_used}).",
            round=info.round_id, submissions=info.submissions, min_updates=info.min_updates, gas_used=tx.gas_used,
        )
