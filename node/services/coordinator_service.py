"""``fedledger coordinator run``: schedule rounds until a number of them are finalized.

Round 1 opens on the given base model (the genesis model by default), each next round on the
global model of the last finalized one, and a round cancelled below its minimum is opened again on
the same base. The schedule (the rounds this coordinator opened, in order) lives in a journal file
of the workspace, ``journal/coordinator-<contract>-<address>.json``, so a restarted coordinator
goes on with the same schedule; a round opened just before a crash, before the journal recorded
it, is found on chain by its base model and config hash and adopted instead of opened twice.

With ``[chain] confirmations = N`` the schedule is judged on the chain N blocks under the head: the
next round opens once the last one's finalization is that deep. A round of the schedule whose
opening a reorganization deeper than N took away leaves the schedule (with any later one), and the
schedule goes on from the chain as it is now: the round is opened again, once, on the same base.

With ``secure`` (``coordinator run --secure``) every round it opens is a secure round: its config's
``secure_aggregation`` section is built at that opening (``node.secure.opening.secure_round``, as
``round open --secure`` builds it): the cohort is the parties admitted then with an encryption key
registered on chain, the key window half the round unless given. So each round has a config of its
own (its hash is journaled with the pending opening). A cohort too small to open a secure round with
is refused at start; later, such a round is not opened and the coordinator says so once and looks again
at each step (a party may register its key).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any


from ledger.chain.contract_errors import FederationMinimumReached, FederationRoundClosed, FederationRoundStillOpen
from ledger.errors import InvalidInputError, LedgerError
from ledger.chain.federation import FederationClient, RoundInfo
from ledger.ipfs.store import ContentStore
from ledger.types import Cid
from ledger.utc import utc_text
from ledger.workspace import atomic_write_bytes
from node.round_config import RoundConfig
from node.secure.opening import secure_round
from node.secure.settings import SecureRound
from node.services.clock import chain_time, decision_time
from node.services.log import ServiceLog
from node.services.settled_step import step_on_settled_view
from node.services.metrics import ServiceMetrics


@dataclass(frozen=True)
class SecureOptions:
    """How each secure round is opened (None: ``node.secure.opening.secure_round``'s defaults)."""

    threshold: int | None = None
    neighbours: int | None = None
    key_window: int | None = None


class CoordinatorGaveUpError(LedgerError):
    """Rounds kept being cancelled below their minimum: too few parties take part."""


@dataclass
class Schedule:
    """What the coordinator has opened, as its journal keeps it."""

    rounds: list[int] = field(default_factory=list)
    pending: dict[str, Any] | None = None  # a round being opened: base, config_hash, round count before

    @classmethod
    def load(cls, path: Path) -> Schedule:
        if not path.is_file():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            return cls(rounds=[int(r) for r in document.get("rounds", [])], pending=document.get("pending"))
        except (OSError, ValueError, TypeError, AttributeError):
            raise LedgerError(
                f"the coordinator's journal {path} is unreadable; delete it to start a new schedule "
                "(the rounds already on chain stay as they are)."
            ) from None

    def save(self, path: Path) -> None:
        atomic_write_bytes(path, json.dumps(asdict(self), indent=2, sort_keys=True).encode("utf-8"))


def schedule_path(journal_dir: Path, federation: FederationClient) -> Path:
    return Path(journal_dir) / f"coordinator-{federation.address.lower()}-{federation.sender.lower()}.json"


class CoordinatorService:
    """The steps of the coordinator (see the module docstring)."""

    def __init__(
        self,
        *,
        federation: FederationClient,
        store: ContentStore,
        journal_dir: Path,
        rounds: int,
        round_seconds: int,
        min_updates: int,
        config: RoundConfig,
        base_cid: Cid,
        log: ServiceLog,
        metrics: ServiceMetrics,
        max_reopens: int = 3,
        secure: SecureOptions | None = None,
    ) -> None:
        self.federation = federation
        self.store = store
        self.rounds = rounds
        self.round_seconds = round_seconds
        self.min_updates = min_updates
        self.config = config
        self.secure = secure
        self.cohort_warned = False  # a secure round could not be opened for want of a cohort (said once)
        self.base_cid = base_cid
        self.log = log
        self.metrics = metrics
        self.max_reopens = max_reopens
        self.path = schedule_path(journal_dir, federation)
        self.schedule = Schedule.load(self.path)
        self.closed: dict[int, RoundInfo] = {}  # rounds of the schedule that are closed (they never change)

    def start(self) -> None:
        done = len(self.schedule.rounds)
        resumed = f", resuming a schedule of {done} round(s) from {self.path}" if done else ""
        kind = ""
        if self.secure is not None:  # refused now, with round open --secure's sentence, when no round could open
            now = chain_time(self.federation.w3)
            section = self._secure_section(now, now + self.round_seconds)
            replace(self.config, secure=section)  # a config that cannot be secure (sealed, say) is refused now too
            kind = f" secure (a cohort of {len(section.params.cohort)} now)"
        self.log.info("started", f"coordinator {self.federation.sender} schedules {self.rounds} finalized{kind} round(s) "
                      f"of {self.round_seconds} s, minimum {self.min_updates} updates{resumed}.",
                      rounds=self.rounds, resumed=done, secure=self.secure is not None)

    def _info(self, round_id: int, view: FederationClient | None = None) -> RoundInfo:
        if round_id in self.closed:
            return self.closed[round_id]
        info = (view or self.federation).round(round_id)
        if info.state != "open":
            self.closed[round_id] = info
        return info

    def finalized(self, view: FederationClient | None = None) -> list[RoundInfo]:
        return [info for info in (self._info(r, view) for r in self.schedule.rounds) if info.state == "finalized"]

    def step(self) -> bool:
        return step_on_settled_view(self.federation, self.log, self._step)

    def _step(self, view: FederationClient) -> bool:
        if view is not self.federation and not self._check_schedule(view):
            return False
        if self.schedule.pending is not None and self._adopt_pending():
            return False
        if not self.schedule.rounds:
            self._open(self.base_cid)
            return False
        last = self._info(self.schedule.rounds[-1], view)
        # Counted after ``last`` was read: a round finalized in between is counted, never reopened on.
        finalized = self.finalized(view)
        if len(finalized) >= self.rounds:
            self.log.info("complete", f"{len(finalized)} round(s) finalized ({', '.join(str(i.round_id) for i in finalized)}); "
                          "the schedule is complete.", rounds=[i.round_id for i in finalized])
            return True
        if last.state == "open":
            if decision_time(view) > last.deadline and last.submissions < last.min_updates:
                self._cancel(last)
            return False
        if last.state == "finalized":
            self.log.info("finalized", f"round {last.round_id} was finalized: global model {last.global_cid} "
                          f"({len(finalized)} of {self.rounds}).", round=last.round_id, global_cid=last.global_cid)
            self._open(last.global_cid)  # type: ignore[arg-type]
            return False
        cancelled_in_row = 0
        for round_id in reversed(self.schedule.rounds):
            if self._info(round_id, view).state != "cancelled":
                break
            cancelled_in_row += 1
        if cancelled_in_row > self.max_reopens:
            raise CoordinatorGaveUpError(
                f"round {last.round_id} was cancelled below its minimum of {last.min_updates} updates, "
                f"{cancelled_in_row} times in a row on base {last.base_cid}; check that enough parties run "
                "`fedledger node run` (or lower --min-updates), then start the coordinator again."
            )
        self.log.warning("reopening", f"round {last.round_id} was cancelled with {last.submissions} of its minimum "
                         f"{last.min_updates} updates; opening it again on the same base {last.base_cid}.",
                         round=last.round_id, base_cid=last.base_cid)
        self._open(last.base_cid)
        return False

    def _check_schedule(self, view: FederationClient) -> bool:
        """Whether the schedule's rounds are all in the settled view (True: decide on it now).

        A round whose opening is on chain but not yet that deep (re-mined after a reorg) is waited for
        (False). A round the chain no longer holds at all (a reorganization deeper than the
        confirmations removed its opening) leaves the schedule, and so does every later one; what the
        schedule keeps is read again (a finalization may have gone with them), so the step goes on
        from the chain as it is now and opens the removed round again, once."""
        if not self.schedule.rounds or max(self.schedule.rounds) <= view.round_count():
            return True
        count = self.federation.round_count()
        gone = [r for r in self.schedule.rounds if r > count]
        if not gone:
            return False  # on chain, not yet deep enough to decide on
        first = min(gone)
        self.schedule.rounds = [r for r in self.schedule.rounds if r < first]
        self.schedule.save(self.path)
        self.closed.clear()
        self.metrics.reorgs.inc()
        self.log.warning("reorganized", f"round(s) {', '.join(map(str, gone))} that this coordinator opened are no "
                         "longer on chain (a reorganization removed the opening); the schedule goes on from the "
                         "chain as it is now.", rounds=gone)
        return False

    def _cancel(self, info: RoundInfo) -> None:
        try:
            tx = self.federation.cancel_round(info.round_id)
        except (FederationRoundClosed, FederationRoundStillOpen, FederationMinimumReached):
            return  # the aggregator got there first, or the chain does not see it late yet
        self.metrics.rounds_cancelled.inc()
        self.metrics.gas_used.inc(tx.gas_used)
        self.log.info("cancelled", f"round {info.round_id}: cancelled: its deadline passed with {info.submissions} of "
                      f"its minimum {info.min_updates} updates.", round=info.round_id, gas_used=tx.gas_used)

    def _adopt_pending(self) -> bool:
        """Adopt the round an earlier run opened but did not record; True if one was adopted."""
        pending = self.schedule.pending or {}
        for round_id in range(int(pending.get("after", 0)) + 1, self.federation.round_count() + 1):
            if round_id in self.schedule.rounds:
                continue
            info = self.federation.round(round_id)
            if info.base_cid == pending.get("base") and info.config_hash.hex() == pending.get("config_hash"):
                self.schedule.rounds.append(round_id)
                self.schedule.pending = None
                self.schedule.save(self.path)
                self.log.info("adopted", f"round {round_id} was opened before a restart; it continues the schedule.",
                              round=round_id)
                return True
        self.schedule.pending = None
        self.schedule.save(self.path)
        return False

    def _secure_section(self, opens_at: int, deadline: int) -> SecureRound:
        assert self.secure is not None
        return secure_round(self.federation, opens_at=opens_at, deadline=deadline, max_samples=self.config.max_samples,
                            threshold=self.secure.threshold, neighbours=self.secure.neighbours,
                            key_window=self.secure.key_window)

    def _open(self, base: Cid) -> None:
        federation = self.federation
        now = chain_time(federation.w3)
        deadline = now + self.round_seconds
        config = self.config
        if self.secure is not None:  # the cohort and the key deadline are this round's own
            try:
                config = replace(config, secure=self._secure_section(now, deadline))
            except InvalidInputError as problem:
                if not self.cohort_warned:
                    self.cohort_warned = True
                    self.log.warning("cannot-open", f"cannot open the next secure round now: {problem} Looking again "
                                     "at each step.")
                return
            self.cohort_warned = False
        config_bytes, config_hash = config.to_bytes(), config.config_hash
        self.store.add_bytes(config_bytes, pin=True)  # parties and the aggregator read it by its hash
        self.schedule.pending = {"base": base, "config_hash": config_hash.hex(), "after": federation.round_count()}
        self.schedule.save(self.path)
        round_id, tx = federation.open_round(
            base_cid=base, deadline=deadline, min_updates=self.min_updates, config_hash=config_hash
        )
        self.schedule.rounds.append(round_id)
        self.schedule.pending = None
        self.schedule.save(self.path)
        self.metrics.rounds_opened.inc()
        self.metrics.gas_used.inc(tx.gas_used)
        extra: dict[str, Any] = {}
        said = ""
        if config.secure is not None:
            params = config.secure.params
            extra = {"cohort": list(params.cohort), "threshold": params.threshold, "neighbours": params.neighbours,
                     "key_deadline": config.secure.key_deadline}
            said = (f"; secure: {len(params.cohort)} parties advertise keys until {utc_text(config.secure.key_deadline)}, "
                    f"each masks with {params.neighbours} peers, {params.threshold} shares remove a dropout's masks")
        self.log.info(
            "opened", f"opened round {round_id} on {base}: minimum {self.min_updates} updates, closes at "
            f"{utc_text(deadline)}{said} (gas {tx.gas_used}).",
            round=round_id, base_cid=base, deadline=deadline, min_updates=self.min_updates, gas_used=tx.gas_used,
            **extra,
        )
