"""The server's side: a Flower Message-API strategy whose every server round is a ledger round.

``LedgerStrategy(FedAvg(...), ledger=..., config=RoundConfig(...))`` keeps the wrapped strategy's
sampling, configuration and evaluation, and replaces its aggregation of arrays:

1. ``configure_train`` opens a ledger round on the current global arrays (the genesis model in the
   first round, pinned; afterwards the global model the previous round finalized) and tells the
   parties its id and its base model's CID in the train config. The train messages carry no arrays:
   each party reads the base model from its store by the CID the chain records for the round and
   trains from it (``node.flower.base_arrays``), so no model, however large, crosses Flower's
   transport (``send_arrays=True`` also puts the arrays in the messages, as plain Flower does, for a
   ClientApp that still reads ``msg.content["arrays"]``).
   Evaluate messages, likewise, carry the ledger round and the CID of the model to evaluate (the
   round's global model, or its base when the round was aborted) and no arrays: the party reads it
   with ``node.flower.evaluate_arrays`` (``send_arrays=True``: the arrays too).
2. ``aggregate_train`` hands the round to ``node.aggregator.aggregate_round``, the very function
   ``fedledger aggregate`` runs: only updates the chain records from admitted parties under the
   current agreement, whose blobs hash to their CIDs, are aggregated, with the round config's
   deterministic strategy, so ``fedledger audit verify`` recomputes the global model bit for bit.
   The chain decides, not the replies: a recorded update is aggregated even if its reply was lost,
   and a reply whose update the contract refused is named in the receipt's ``unrecorded`` list with
   the contract's sentence. The global model and the receipt are pinned and the round finalized.

A round that ends with fewer recorded updates than ``min_updates`` is aborted on chain with a
reason, and the global model stays as it was (Flower's convention for a round without a result).
When replies named refusals (the contract's, or the parties' own: a Flower app their agreement does
not name, a privacy budget), a receipt listing them in ``unrecorded`` is pinned and the abort's
reason names its CID, so a run every party refused is on the record with each party's sentence.

A config with ``seal_to`` opens sealed rounds: before a round is opened every recipient must have an
encryption key on chain and the strategy must hold one of them (``encryption_key``: an X25519 key, a
name under the workspace's ``[encryption_keys]`` or a key file, or by default the workspace's key
that a recipient registered, as ``fedledger aggregate`` finds it; loaded once, its password from
``FEDLEDGER_KEY_PASSWORD``), which ``aggregate_round`` then opens every envelope with. A config with
``dp`` opens private rounds; the parties train them with DP-SGD (``node.flower.record_private_update``)
and their replies carry no metrics.
``start`` runs the rounds on a ``PromptGrid``: replies are looked for every 0.25 s, not Flower's 3 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from dataclasses import dataclass
from logging import INFO, WARNING

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Result, Strategy
from flwr.serverapp.strategy.strategy_utils import aggregate_metricrecords
from flwr.supercore import log

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.chain.connection import chain_now
from ledger.errors import InvalidInputError
from ledger.chain.federation import RoundInfo
from ledger.sealing.recipients import RoundOpener, RoundSeal, recipient_opener, registered_keys
from ledger.types import Cid
from ledger.weights import from_safetensors, max_blob_bytes
from node.aggregator import AggregationOutcome, aggregate_round, global_model_bytes, round_base
from node.flower.connection import Ledger
from node.flower.grid import POLL_SECONDS as REPLY_POLL_SECONDS
from node.flower.grid import PromptGrid
from node.flower.records import BASE_KEY, MODEL_KEY, ROUND_KEY, PartyReply, array_record, arrays_of
from node.receipt import Receipt, RejectedUpdate
from node.round_config import RoundConfig, config_cid

DEFAULT_ROUND_SECONDS = 3600


@dataclass(frozen=True)
class _Global:
    cid: Cid
    arrays: dict[str, np.ndarray]


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def round_config(ledger: Ledger, info: RoundInfo) -> RoundConfig:
    """The round's config document, as the chain's hash names it in the store."""
    return RoundConfig.from_bytes(ledger.store.get(config_cid(info.config_hash)))


def global_arrays(ledger: Ledger, info: RoundInfo, config: RoundConfig) -> dict[str, np.ndarray]:
    """A finalized round's global model, read with the layout of that round's updates (a built-in
    model's, or its base model's own: ``node.aggregator.round_base``, as the aggregator read them)."""
    _, _, layout = round_base(ledger.store, info, config)
    blob = ledger.store.get(info.global_cid, max_bytes=max_blob_bytes(layout))  # type: ignore[arg-type]
    return from_safetensors(blob, layout=layout, source=f"the global model {info.global_cid} of round {info.round_id}")[0]


def latest_global(ledger: Ledger, *, model: str | None = None) -> tuple[RoundInfo, dict[str, np.ndarray]] | None:
    """The federation's latest finalized round and its global model's arrays (None before any): where a
    Flower run on a federation that already has rounds starts, so the lineage goes on unbroken.
    ``model``: the model this run trains; a latest round of another model is refused with a sentence."""
    federation = ledger.federation
    for round_id in range(federation.round_count(), 0, -1):
        info = federation.round(round_id)
        if info.state == "finalized":
            config = round_config(ledger, info)
            if model is not None and config.model != model:
                raise InvalidInputError(
                    f"the federation at {federation.address} last finalized round {round_id} of the model "
                    f"{config.model!r}, not {model!r}; go on with that model, or deploy a fresh federation for this one."
                )
            return info, global_arrays(ledger, info, config)
    return None


def _unrecorded_reason(word: PartyReply) -> str:
    """Why a party's reply names no recorded update: the contract refused it, or the party itself refused
    the run (the Flower app its agreement does not name, a round past its privacy budget)."""
    if word.refused_by == "party":
        return f"the party refused the run: {word.refusal}"
    return f"the contract refused to record it: {word.refusal}"


class LedgerStrategy(Strategy):
    """Wrap ``strategy`` so that each server round is opened, verified, aggregated and finalized on the ledger."""

    def __init__(
        self,
        strategy: Strategy,
        *,
        ledger: Ledger,
        config: RoundConfig,
        min_updates: int = 1,
        round_seconds: int = DEFAULT_ROUND_SECONDS,
        reply_poll_seconds: float = REPLY_POLL_SECONDS,
        encryption_key: X25519PrivateKey | str | None = None,
        send_arrays: bool = False,
    ) -> None:
        if min_updates < 1:
            raise InvalidInputError(f"min_updates must be at least 1, not {min_updates}; a round needs an update.")
        self.strategy = strategy
        self.ledger = ledger
        self.config = config
        self.min_updates = min_updates
        self.round_seconds = round_seconds
        self.reply_poll_seconds = reply_poll_seconds
        self.rounds: dict[int, int] = {}  # server round -> ledger round
        self.bases: dict[int, Cid] = {}  # server round -> its ledger round's base model
        self.outcomes: dict[int, AggregationOutcome] = {}  # ledger round -> what was finalized
        self._global: _Global | None = None
        self._encryption_key = encryption_key  # a name or a file until loaded, once (sealed rounds)
        self.send_arrays = send_arrays  # the arrays in train and evaluate messages too (parties read models from the store)

    def start(self, grid: Grid, *args: Any, **kwargs: Any) -> Result:
        """Flower's ``Strategy.start`` on ``grid``, its replies looked for every ``reply_poll_seconds``
        (``node.flower.grid.PromptGrid``) instead of every 3 s."""
        return super().start(PromptGrid(grid, poll_seconds=self.reply_poll_seconds), *args, **kwargs)

    # ------------------------------------------------------------------ training
    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        federation, store = self.ledger.federation, self.ledger.store
        if self.config.seal_to is not None:  # refused now, before a round is opened that nobody here could open
            recipients = registered_keys(federation, self.config.seal_to)
            self._opener(RoundSeal(federation.chain_id, federation.address, 0, recipients))  # type: ignore[arg-type]
        base_cid = self._base_cid(arrays_of(arrays))
        assert store.add_bytes(self.config.to_bytes(), pin=True) == config_cid(self.config.config_hash)
        round_id, _ = federation.open_round(
            base_cid=base_cid, deadline=chain_now(federation.w3) + self.round_seconds,
            min_updates=self.min_updates, config_hash=self.config.config_hash,
        )
        self.rounds[server_round], self.bases[server_round] = round_id, base_cid
        log(INFO, "fedledger: server round %s is ledger round %s on base model %s", server_round, round_id, base_cid)
        config[ROUND_KEY] = round_id
        config[BASE_KEY] = base_cid
        return self.strategy.configure_train(server_round, arrays if self.send_arrays else ArrayRecord(), config, grid)

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        federation, store = self.ledger.federation, self.ledger.store
        round_id = self.rounds[server_round]
        replies = list(replies)
        words = {id(message): PartyReply.from_message(message) for message in replies}
        for message in replies:
            if words[id(message)] is None:
                reason = message.error.reason if message.has_error() else "the reply carries no fedledger record"
                log(WARNING, "fedledger: node %s gave no update for round %s: %s",
                    message.metadata.src_node_id, round_id, reason)
        unrecorded = [RejectedUpdate(w.participant, w.cid, _unrecorded_reason(w))
                      for w in words.values() if w is not None and w.refusal is not None]
        info = federation.round(round_id)
        if info.submissions < self.min_updates:
            reason = (f"Flower server round {server_round} ended with {info.submissions} recorded update(s), "
                      f"fewer than its minimum of {self.min_updates}")
            if unrecorded:  # the refusals on the record: a receipt of the aborted round, named by the reason
                receipt = Receipt(round_id=round_id, base_cid=info.base_cid, config_cid=config_cid(info.config_hash),
                                  strategy=self.config.strategy, max_samples=self.config.max_samples,
                                  outcome=f"aborted: {reason}",
                                  unrecorded=sorted(unrecorded, key=lambda entry: entry.participant.lower()))
                reason += f"; receipt {store.add_bytes(receipt.to_bytes(), pin=True)} names {len(unrecorded)} refusal(s)"
            federation.abort_round(round_id, reason=reason)
            log(WARNING, "fedledger: ledger round %s aborted: %s", round_id, reason)
            return None, None
        outcome = aggregate_round(federation=federation, store=store, round_id=round_id,
                                  journal_dir=self.ledger.workspace.journal_dir, unrecorded=unrecorded,
                                  opener_for=self._opener)
        self.outcomes[round_id] = outcome
        arrays = global_arrays(self.ledger, federation.round(round_id), self.config)
        self._global = _Global(outcome.global_cid, arrays)
        log(INFO, "fedledger: ledger round %s finalized: %s; global model %s, receipt %s",
            round_id, outcome.receipt.outcome, outcome.global_cid, outcome.receipt_cid)
        included = {entry.participant.lower() for entry in outcome.receipt.included}
        counted = [m.content for m in replies
                   if (w := words[id(m)]) is not None and w.refusal is None and w.participant.lower() in included]
        return array_record(arrays), self._metrics(counted)

    def _opener(self, round_seal: RoundSeal) -> RoundOpener:
        """What opens ``round_seal``'s updates: the strategy's encryption key, loaded on first use."""
        key = self._encryption_key
        if not isinstance(key, X25519PrivateKey):
            key = self._encryption_key = recipient_opener(self.ledger.workspace, round_seal, key).private_key
        opener = round_seal.opener(key)
        if opener is None:
            raise InvalidInputError(
                f"round {round_seal.round_id} is sealed to {', '.join(round_seal.recipients)}, and the strategy's "
                "encryption key is not the one any of them registered on chain; give LedgerStrategy a recipient's "
                "encryption key (encryption_key=)."
            )
        return opener

    def _metrics(self, contents: list) -> MetricRecord | None:
        """The included replies' metrics, aggregated as the wrapped strategy would (a private round's carry none)."""
        contents = [content for content in contents if content.metric_records]
        if not contents:
            return None
        aggregate = getattr(self.strategy, "train_metrics_aggr_fn", aggregate_metricrecords)
        return aggregate(contents, getattr(self.strategy, "weighted_by_key", "num-examples"))

    def _base_cid(self, arrays: dict[str, np.ndarray]) -> Cid:
        """The CID of the model this round starts from: the last finalized global model, or a pinned genesis."""
        if self._global is not None:
            if not _same_arrays(arrays, self._global.arrays):
                raise InvalidInputError(
                    "the arrays Flower passes to this round are not the global model the ledger finalized last "
                    f"({self._global.cid}); return the strategy's own result from aggregate_train unchanged."
                )
            return self._global.cid
        latest = latest_global(self.ledger, model=self.config.model)
        if latest is None:
            blob = global_model_bytes(arrays, model=self.config.model, round_id=0, base_cid="", task=self.config.task)
            return self.ledger.store.add_bytes(blob, pin=True)
        info, recorded = latest
        if not _same_arrays(arrays, recorded):
            raise InvalidInputError(
                f"the federation at {self.ledger.federation.address} already finalized round {info.round_id}, and the "
                f"initial arrays are not its global model {info.global_cid}; start the Flower run from that model "
                "(node.flower.latest_global), or deploy a fresh federation for this run."
            )
        return Cid(info.global_cid)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ evaluation and the rest: the wrapped strategy's
    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """The wrapped strategy's evaluate messages, naming the ledger round and the CID of the model to evaluate
        instead of carrying its arrays (``send_arrays``: both); a server round this strategy did not open is left
        to the wrapped strategy as it is."""
        if server_round not in self.rounds:
            return self.strategy.configure_evaluate(server_round, arrays, config, grid)
        config[ROUND_KEY] = self.rounds[server_round]
        config[MODEL_KEY] = self._evaluated_cid(server_round, arrays_of(arrays))
        return self.strategy.configure_evaluate(server_round, arrays if self.send_arrays else ArrayRecord(), config, grid)

    def _evaluated_cid(self, server_round: int, arrays: dict[str, np.ndarray]) -> Cid:
        """The CID of the model evaluated after ``server_round``: the global model the ledger finalized last (this
        round's, or, when it was aborted, the one it started from), or this round's base before any was finalized."""
        if self._global is None:
            return self.bases[server_round]
        if not _same_arrays(arrays, self._global.arrays):
            raise InvalidInputError(
                "the arrays Flower passes to evaluation are not the global model the ledger finalized last "
                f"({self._global.cid}); return the strategy's own result from aggregate_train unchanged."
            )
        return self._global.cid

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.strategy.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        log(INFO, "\t├──> fedledger: rounds on %s, strategy %s, at least %s recorded update(s)",
            self.ledger.federation.address, self.config.strategy, self.min_updates)
        self.strategy.summary()
