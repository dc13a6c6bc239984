"""``fedledger node run``: a party's node, taking part in every open round it may and has not yet.

Each step lists the open rounds (``FederationClient.open_round_ids``, one cheap call) and, for each
round this party has not settled, asks the chain whether it already submitted, lets the contract
judge a submission now (``check_can_submit``: before any training), then calls
``node.participant.train_and_submit``, the very function ``node train`` calls. That function
resumes from the journal (an update trained and pinned before a crash is submitted without
training again) and asks the chain first, so a restart doubles nothing.

A round gets what ``node train`` would give it: a built-in round the party's ``Dataset``, a round
whose config names a task the party's ``TaskInputs`` (its data path, shard and seed, the task's
timeout), so the task's code runs in its own keyless process. Either may be given as a function
that builds it: it is called when the first round of its kind needs it, so a node whose --data is a
task's CSV file or folder never loads it as digits, and a built-in file that does not load stops
only the built-in rounds.

A refusal that concerns one round (its deadline passed, it closed) settles that round and the node
waits for the next; so does a problem of the party's own inputs for that round (a data file that
does not load, a task that fails, hangs past its timeout or hands back the wrong layout: nothing is
then pinned or sent), logged as a warning with its sentence. A refusal that concerns the party itself
(not admitted, suspended, revoked, an agreement version it has not accepted) ends the service with
the contract's own sentence: no later round could be submitted either.

With ``[chain] confirmations = N`` the open rounds are read N blocks under the head, so a party takes
part in a round once its opening is that deep. An open round whose update this party saw recorded is
checked at that depth at each step; when a reorganization took the update away (it is neither there
nor at the latest block) the round is taken part in again: ``train_and_submit`` finds the update in
the journal and records the same CID without training.

A secure round (its config's ``secure_aggregation``) never holds a step: the node advertises its round
keys (``node.secure.party.advertise``, once: the seed is journaled) and, while the key phase is open,
leaves the round for the next step (logged once, ``waiting-for-key-phase``); once it is over the node
trains, masks and submits as ``node train`` does. After the round's deadline (judged, as every deadline
here, by the settled block's time: every submission the round can get is then that deep) a node whose
update is in the round reveals once (``node.secure.party.reveal``) with its encryption key: ``revealed``
with the reveal's CID, or ``nothing-to-reveal`` when no neighbour dropped out. Who dropped out is read
at the latest block, a superset of the settled block's submitters, so a party whose submission is not
yet deep is never taken for a dropout. A node restarted after it submitted reveals then (``reveal`` is
idempotent: a reveal already on chain is not posted again). A reveal the round refuses for good (it
would expose a survivor; no encryption key to decrypt with; the contract's refusal) is logged as a
warning, once; one that failed otherwise (a document not yet in the store, a transaction not mined in
time) is said once and tried again at each step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.chain.contract_errors import (
    FederationAgreementNotAccepted,
    FederationContractError,
    FederationNotParticipant,
    FederationRoundClosed,
)
from ledger.failpoints import hangpoint
from ledger.errors import ContentNotFoundError, InvalidInputError, KeyLoadError, LedgerError
from ledger.chain.federation import FederationClient
from ledger.chain.finality import chain_moved
from ledger.ipfs.store import ContentStore
from ledger.types import Address
from ledger.utc import utc_text
from node.data import Dataset
from node.journal import Journal
from node.participant import TaskInputs, fetch_round_config, train_and_submit
from node.round_config import RoundConfig
from node.secure.party import KeyPhaseOpen, advertise, key_phase_over, reveal
from node.secure.settings import SecureRound
from node.services.backoff import is_transient
from node.services.clock import decision_time
from node.services.log import ServiceLog
from node.services.settled_step import step_on_settled_view
from node.services.metrics import ServiceMetrics
from node.tasks.errors import TaskError

PARTY_REFUSALS = (FederationNotParticipant, FederationAgreementNotAccepted)
"""Contract errors about the party, not the round: no round could take its update."""


def check_membership(federation: FederationClient, address: str) -> None:
    """Raise the contract's own error when ``address`` could not submit to a round opened now."""
    info = federation.participant(address)
    if info.status != "admitted":
        raise FederationNotParticipant(info.address, info.status)
    current = federation.agreement_version()
    if info.accepted_version != current:
        raise FederationAgreementNotAccepted(info.address, info.accepted_version, current)


class NodeService:
    """The steps of one party's node (see the module docstring)."""

    def __init__(
        self,
        *,
        federation: FederationClient,
        store: ContentStore,
        data: Dataset | Callable[[], Dataset] | None = None,
        task: TaskInputs | Callable[[], TaskInputs] | None = None,
        validation: Dataset | None = None,
        journal_dir: Path,
        log: ServiceLog,
        metrics: ServiceMetrics,
        device: torch.device | None = None,
        encryption_key: Callable[[], X25519PrivateKey] | None = None,
    ) -> None:
        """``data`` for built-in rounds and ``task`` for task rounds, each the thing itself or a function that
        builds it when a round of its kind first needs it (its InvalidInputError then settles that round only,
        and the next round of that kind calls it again); without one, rounds of that kind are settled.
        ``validation``: what a built-in round's base model is evaluated on first (``train_and_submit``).
        ``encryption_key``: gives the party's encryption key, whose public half it registered on chain (asked
        once, when a secure round first needs a reveal; ``node run`` loads it at start when it can)."""
        if federation.account is None or isinstance(federation.account, str):
            raise ValueError("a node needs the party's own signing key")
        self.federation = federation
        self.store = store
        self.data = data
        self.task = task
        self.validation = validation
        self.journal_dir = journal_dir
        self.log = log
        self.metrics = metrics
        self.device = device
        self.me = Address(federation.account.address)
        self.settled: set[int] = set()  # open rounds that need nothing more from this party
        self.seen: set[int] = set()
        self.waiting: set[int] = set()  # rounds whose content the store lacks (warned once)
        self.view = federation  # what the current step decides on (ledger.chain.finality.settled)
        self.recorded: set[int] = set()  # open rounds holding this party's update (checked again after a reorg)
        self.retaking: set[int] = set()  # rounds taken part in again because a reorg removed the update
        self.encryption_key = encryption_key
        self._private_key: X25519PrivateKey | None = None
        self.secure: dict[int, SecureRound | None] = {}  # open rounds' secure settings (None: not a secure round)
        self.advertised: set[int] = set()  # secure rounds this node advertised in (logged once)
        self.key_phase: set[int] = set()  # secure rounds left for a later step while the key phase is open
        self.revealed: set[int] = set()  # secure rounds whose reveal step is done (or refused for good)
        self.reveal_waiting: set[int] = set()  # reveals tried again at the next step (said once)

    def start(self) -> None:
        """Refuse a key that could not submit now, with the contract's reason; log the start."""
        check_membership(self.federation, self.me)
        if isinstance(self.data, Dataset):
            self.log.info("started", f"party {self.me} watches for open rounds with {len(self.data)} local samples.",
                          samples=len(self.data))
        else:
            self.log.info("started", f"party {self.me} watches for open rounds; it reads its data when a round needs it.")

    def step(self) -> bool:
        return step_on_settled_view(self.federation, self.log, self._step)

    def _step(self, view: FederationClient) -> bool:
        self.view = view
        open_rounds = view.open_round_ids()
        if view is not self.federation:
            self._check_recorded(view, open_rounds)
        for round_id in open_rounds:
            if round_id not in self.seen:
                self.seen.add(round_id)
                self.metrics.rounds_seen.inc()
            if round_id not in self.settled:
                self._take_part(round_id)
        self._reveal_due(view, open_rounds)
        still_open = set(open_rounds)
        self.settled &= still_open
        self.seen &= still_open
        self.waiting &= still_open
        self.recorded &= still_open
        self.retaking &= still_open
        self.secure = {r: settings for r, settings in self.secure.items() if r in still_open}
        self.advertised &= still_open
        self.key_phase &= still_open
        self.revealed &= still_open
        self.reveal_waiting &= still_open
        # Suspended or revoked while no round is open: say so now, not at the next round.
        status = self.federation.participant(self.me).status
        if status != "admitted":
            raise FederationNotParticipant(self.me, status)
        return False

    def _check_recorded(self, view: FederationClient, open_rounds: list[int]) -> None:
        """Take part again in an open round whose update this party saw recorded and the chain no longer
        holds: a reorganization deeper than the confirmations removed it. Asked at the settled block
        first (one call per such round), then at the latest (the update may be back, not yet deep)."""
        for round_id in sorted(self.recorded & set(open_rounds)):
            if view.has_submitted(round_id, self.me) or self.federation.has_submitted(round_id, self.me):
                continue
            self.recorded.discard(round_id)
            self.settled.discard(round_id)
            self.retaking.add(round_id)
            self.metrics.reorgs.inc()
            self.log.warning("reorganized", f"round {round_id}: this party's update is no longer on chain (a "
                             "reorganization removed it); submitting it again.", round=round_id)

    def _give_up(self, round_id: int, event: str, message: str, *, warn: bool = False) -> None:
        """Settle a round this party cannot take part in, unless the chain reorganized under the step
        (the round may have been removed and opened again): then it is decided again at the next step."""
        if chain_moved(self.view):
            self.log.info("chain-moved", f"{message} The chain reorganized during this step: deciding again at "
                          "the next one.", round=round_id)
            return
        self._settle(round_id, event, message, warn=warn)

    def _settle(self, round_id: int, event: str, message: str, *, warn: bool = False) -> None:
        self.settled.add(round_id)
        (self.log.warning if warn else self.log.info)(event, message, round=round_id)

    def _built_in_data(self, round_id: int, config: RoundConfig) -> Dataset:
        if self.data is None:
            raise InvalidInputError(f"round {round_id} trains the built-in model {config.model!r}, but this node was "
                                    "given no data for built-in rounds.")
        if not isinstance(self.data, Dataset):
            self.data = self.data()  # kept once it loads; a failure is tried again at the next built-in round
        return self.data

    def _task_inputs(self) -> TaskInputs | None:
        if self.task is not None and not isinstance(self.task, TaskInputs):
            self.task = self.task()
        return self.task

    def _take_part(self, round_id: int) -> None:
        federation = self.federation
        if federation.has_submitted(round_id, self.me):
            self.recorded.add(round_id)
            self._settle(round_id, "already-submitted", f"round {round_id}: this party's update is already on chain.")
            return
        try:
            # The contract judges no sample count: 1 is a placeholder (as train_and_submit's for a task round), so a
            # round this party may not take part in is settled before its data is read; train_and_submit checks
            # again with the real count.
            federation.check_can_submit(round_id, samples=1)
        except PARTY_REFUSALS:
            raise
        except FederationContractError as refusal:
            self._give_up(round_id, "not-taking-part", f"round {round_id}: not taking part: {refusal}")
            return
        try:
            info = federation.round(round_id)
            config = fetch_round_config(self.store, info.config_hash)
            self.secure[round_id] = config.secure
            if config.secure is not None and config.task is None and not self._key_phase_over(round_id, config.secure,
                                                                                               info.opened_block):
                return
            data: Dataset | None = None
            task: TaskInputs | None = None
            if config.task is None:
                data = self._built_in_data(round_id, config)
                if round_id not in self.waiting and round_id not in self.retaking:
                    self.log.info("training", f"round {round_id}: fetching the base model and training on {len(data)} samples.",
                                  round=round_id, samples=len(data))
            else:
                task = self._task_inputs()
                if round_id not in self.waiting and round_id not in self.retaking:
                    given = "no data path" if task is None or task.data_path is None else f"data {task.data_path}"
                    self.log.info("training", f"round {round_id}: fetching task {config.model} ({config.task.cid}) and "
                                  f"running it on {given}.", round=round_id, task=config.task.cid)
            hangpoint(f"participant:training:round-{round_id}")  # tests kill a node here, never after it submitted
            outcome = train_and_submit(
                federation=federation, store=self.store, round_id=round_id, data=data, task=task,
                journal_dir=self.journal_dir, device=self.device, progress=False, validation=self.validation,
                key_phase_timeout_s=0.0,  # the key phase was found over above: never wait in a step
            )
        except PARTY_REFUSALS:
            raise
        except KeyPhaseOpen:  # a reorganization took an advertisement away since: the next step decides again
            self.key_phase.add(round_id)
            return
        except FederationContractError as refusal:  # e.g. the deadline passed while it trained
            self._give_up(round_id, "refused", f"round {round_id}: the submission was refused: {refusal}", warn=True)
            return
        except ContentNotFoundError as missing:  # the store may yet receive it; the deadline bounds the wait
            if round_id not in self.waiting:
                self.waiting.add(round_id)
                self.log.warning("waiting-for-content", f"round {round_id}: {missing} Trying again at each poll.",
                                 round=round_id)
            return
        except LedgerError as problem:  # a task that failed, a data file that does not load, a config it cannot read
            if is_transient(problem):
                raise
            event = "task-failed" if isinstance(problem, TaskError) else "cannot-take-part"
            self._give_up(round_id, event, f"round {round_id}: cannot take part: {problem}", warn=True)
            return
        self.waiting.discard(round_id)
        self.settled.add(round_id)
        self.recorded.add(round_id)
        retaken = round_id in self.retaking
        self.retaking.discard(round_id)
        if outcome.tx is None:
            self.log.info("already-submitted", f"round {round_id}: this party's update {outcome.update_cid} is already on chain.",
                          round=round_id, cid=outcome.update_cid)
            return
        self.metrics.submissions.inc()
        self.metrics.gas_used.inc(outcome.tx.gas_used)
        how = "trained, pinned and submitted" if outcome.trained else "submitted the update pinned before a restart:"
        if retaken and not outcome.trained:
            how = "submitted again the update it had pinned:"
        self.log.info(
            "submitted",
            f"round {round_id}: {how} {outcome.update_cid} ({outcome.samples} samples; block {outcome.tx.block}, "
            f"gas {outcome.tx.gas_used}).",
            round=round_id, cid=outcome.update_cid, samples=outcome.samples, trained=outcome.trained,
            tx_hash=outcome.tx.tx_hash, block=outcome.tx.block, gas_used=outcome.tx.gas_used,
        )

    # ------------------------------------------------------------------ secure rounds

    def _key_phase_over(self, round_id: int, settings: SecureRound, opened_block: int) -> bool:
        """Advertise (once: ``advertise`` finds this party's advertisement on the board), then one look at the
        key phase; False leaves the round for the next step (logged once), True lets the node train and mask."""
        journal = Journal(self.journal_dir, role="participant", actor=self.me, round_id=round_id)
        cid = advertise(self.federation, self.store, journal, round_id=round_id, settings=settings,
                        opened_block=opened_block)
        if round_id not in self.advertised:
            self.advertised.add(round_id)
            self.log.info("advertised", f"round {round_id}: advertised this party's round keys ({cid}).",
                          round=round_id, cid=cid)
        over, board = key_phase_over(self.federation, self.store, round_id=round_id, settings=settings)
        if over:
            self.key_phase.discard(round_id)
            return True
        if round_id not in self.key_phase:
            self.key_phase.add(round_id)
            self.log.info(
                "waiting-for-key-phase",
                f"round {round_id}: {len(board.advertisements)} of {len(settings.params.cohort)} parties advertised; "
                f"masking waits for the others or for the key deadline ({utc_text(settings.key_deadline)}); "
                "looking again at each step.", round=round_id, advertised=len(board.advertisements),
                cohort=len(settings.params.cohort), key_deadline=settings.key_deadline,
            )
        return False

    def _secure_settings(self, view: FederationClient, round_id: int) -> SecureRound | None:
        """A round's secure settings (None: not a secure round), read once; None for now when its config is
        not in the store (asked again at the next step)."""
        if round_id in self.secure:
            return self.secure[round_id]
        try:
            config = fetch_round_config(self.store, view.round(round_id).config_hash)
        except ContentNotFoundError:
            return None
        except LedgerError as problem:
            if is_transient(problem):
                raise
            config = None
        self.secure[round_id] = None if config is None else config.secure
        return self.secure[round_id]

    def _reveal_due(self, view: FederationClient, open_rounds: list[int]) -> None:
        """Reveal in each open secure round holding this party's update whose deadline has passed (by the
        settled block's time, as every deadline the services judge)."""
        due = [r for r in sorted((self.recorded - self.revealed) & set(open_rounds))
               if self._secure_settings(view, r) is not None]
        if not due:
            return
        now = decision_time(view)
        for round_id in due:
            if now > view.round(round_id).deadline:
                self._reveal(round_id, self.secure[round_id])  # type: ignore[arg-type]

    def load_encryption_key(self) -> None:
        """Read the party's encryption key now (``node run`` does at start), not when a reveal first needs it."""
        self._party_key()

    def _party_key(self) -> X25519PrivateKey:
        if self._private_key is None:
            if self.encryption_key is None:
                raise InvalidInputError("this node was given no encryption key, so it cannot decrypt the shares it "
                                        "holds; start it with --encryption-key NAME.")
            self._private_key = self.encryption_key()
        return self._private_key

    def _reveal(self, round_id: int, settings: SecureRound) -> None:
        journal = Journal(self.journal_dir, role="participant", actor=self.me, round_id=round_id)
        try:
            cid = reveal(self.federation, self.store, journal, round_id=round_id, settings=settings,
                         long_term_key=self._party_key())
        except PARTY_REFUSALS:
            raise
        except FederationRoundClosed:
            self.revealed.add(round_id)
            self.log.info("not-revealed", f"round {round_id}: closed before this party revealed; nothing more to do.",
                          round=round_id)
            return
        except (FederationContractError, InvalidInputError, KeyLoadError) as problem:  # the round's or the party's
            if is_transient(problem):
                raise
            if chain_moved(self.view):
                self.log.info("chain-moved", f"round {round_id}: the reveal failed ({problem}) while the chain "
                              "reorganized; deciding again at the next step.", round=round_id)
                return
            self.revealed.add(round_id)
            self.log.warning("cannot-reveal", f"round {round_id}: cannot reveal: {problem}", round=round_id)
            return
        except LedgerError as problem:  # a document not (yet) in this store, a transaction not mined in time
            if is_transient(problem):
                raise
            if round_id not in self.reveal_waiting:
                self.reveal_waiting.add(round_id)
                self.log.warning("reveal-retry", f"round {round_id}: cannot reveal yet: {problem} Trying again at each "
                                 "poll (a reveal already posted is found on chain, never posted twice).", round=round_id)
            return
        self.revealed.add(round_id)
        self.reveal_waiting.discard(round_id)
        if cid is None:
            self.log.info("nothing-to-reveal", f"round {round_id}: no neighbour of this party dropped out; nothing "
                          "to reveal.", round=round_id)
        else:
            self.log.info("revealed", f"round {round_id}: revealed the shares this party holds of its dropped-out "
                          f"neighbours: {cid}.", round=round_id, cid=cid)
