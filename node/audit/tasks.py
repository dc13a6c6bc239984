"""Own tasks in the audit: which task each round trained, under which agreement, and how its base model did.

- **The task of a round** is its config's task section (``RoundConfig.task``; None for a built-in
  round), read from the store by the config hash recorded on chain.
- **The task of an agreement version** is the one its terms CID names (``node.tasks.agreement``):
  the version's terms CID comes from the index's agreements, the document from the store.
  ``AgreedTasks`` reads each version once; ``audit verify``'s ``task`` check compares the two.
- **Federated evaluation** of a round's base model: before training, each party evaluates the base model on its own validation split and puts ``base_loss``, ``base_accuracy``
  (whatever its task's ``evaluate`` returns, prefixed ``base_``) and ``val_samples`` in its update's
  metrics, whose sha256 the chain records. A round's figures are the mean of each ``base_*``
  metric over its submitted updates, weighted by each party's ``val_samples`` (capped at the round's
  ``max_samples``, as the aggregator caps a claimed sample count: no one claim outweighs the rest), counting only an
  update that is in the store, names its submitter, this round and this round's base model, and
  whose metrics hash to the hash on chain: no central test set is needed, and no figure is taken
  on a party's word alone. An update sealed to the round's recipients cannot be read without one
  of their keys: it is left out and counted in the note, as is every other update left out, with
  why. A built-in round's parties evaluate the same way (on the held-out digits, or their share of
  them in the demo); a private round reports no figures (its note says so).
- **Lineage**: ``provenance_tasks`` adds the task of each global model (from its round's config) to
  ``ledger.index.queries.provenance``'s document.

Rows are plain dicts of JSON values, like ``ledger.index.queries``'s, so the CLI prints them as a
table, JSON or CSV unchanged. Reading needs the store; a store that cannot be reached at all
(``StoreUnreachableError``) stops the audit, anything a blob lacks or gets wrong is said per round.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    LedgerError,
    StoreUnreachableError,
)
from ledger.index.index import IndexedEvent, LedgerIndex
from ledger.index.queries import agreements, rounds
from ledger.ipfs.store import ContentStore
from ledger.weights import metadata_of
from node.update_metrics import metrics_hash
from node.round_config import MAX_CONFIG_BYTES, RoundConfig
from node.tasks.agreement import agreement_task
from node.tasks.rounds import MAX_WEIGHTS_BYTES

FED_EVAL_COLUMNS = ["fed_eval_accuracy", "fed_eval_loss", "fed_eval_parties", "fed_eval_note"]
TASK_COLUMNS = ["agreement_version", "task_cid", *FED_EVAL_COLUMNS]
"""What ``audit rounds`` adds to each round of ``ledger.index.queries.rounds`` (agreement_version is already there)."""


# ---------------------------------------------------------------- configs


def read_config(store: ContentStore, cid: str | None) -> tuple[RoundConfig | None, str | None]:
    """The round config stored under ``cid``, or None and why it could not be read (the store unreachable: raised)."""
    if cid is None:
        return None, "the round has no config CID"
    try:
        return RoundConfig.from_bytes(store.get(cid, max_bytes=MAX_CONFIG_BYTES)), None
    except StoreUnreachableError:
        raise
    except ContentNotFoundError:
        return None, f"its config {cid} is not in this store"
    except IntegrityError:
        return None, f"its config {cid} was altered in this store"
    except ContentTooLargeError:
        return None, f"its config {cid} is larger than a round config can be"
    except LedgerError as error:
        return None, f"its config {cid} is unreadable ({error})"


def config_task(config: RoundConfig | None) -> str | None:
    """The task CID a round config names (None: a built-in round, or no readable config)."""
    return None if config is None or config.task is None else config.task.cid


# ---------------------------------------------------------------- agreements


@dataclass(frozen=True)
class AgreementTask:
    """What agreement ``version`` names: its terms CID on chain and the task the terms name (None: no task).

    ``missing``: the terms are not in this store, so whether they name a task is unknown;
    ``problem``: the terms could not be read as terms (altered, or a malformed agreement document).
    """

    version: int
    terms_cid: str | None
    task: str | None
    missing: bool = False
    problem: str | None = None

    @property
    def known(self) -> bool:
        return not self.missing and self.problem is None


class AgreedTasks:
    """The task of each agreement version, from the index's agreements and the store, each version read once."""

    def __init__(self, index: LedgerIndex, store: ContentStore) -> None:
        self.store = store
        self.terms = {int(row["version"]): row["terms_cid"] for row in agreements(index)}
        self._read: dict[int, AgreementTask] = {}

    def of(self, version: int) -> AgreementTask:
        if version not in self._read:
            self._read[version] = self._task(version)
        return self._read[version]

    def _task(self, version: int) -> AgreementTask:
        if version == 0:  # no agreement published yet: nothing names a task
            return AgreementTask(0, None, None)
        if version not in self.terms:
            return AgreementTask(version, None, None, problem=f"agreement v{version} was never published")
        terms = self.terms[version]
        if terms is None:
            return AgreementTask(version, None, None, problem=f"agreement v{version} has no valid terms CID on chain")
        try:
            return AgreementTask(version, terms, agreement_task(self.store, terms))
        except StoreUnreachableError:
            raise
        except ContentNotFoundError:
            return AgreementTask(version, terms, None, missing=True)
        except LedgerError as error:
            return AgreementTask(version, terms, None, problem=f"the terms {terms} of agreement v{version} cannot be "
                                                               f"read: {error}")


def describe_task(task: str | None) -> str:
    return "no task" if task is None else f"task {task}"


# ---------------------------------------------------------------- federated evaluation


@dataclass(frozen=True)
class FederatedEvaluation:
    """A round's federated evaluation of its base model: each ``base_*`` metric weighted by ``val_samples``.

    ``figures`` holds every weighted metric by its name without ``base_`` (``accuracy``, ``loss``, and
    whatever else the task's ``evaluate`` returned); ``parties`` how many updates gave figures (None when
    the round's config cannot be read); ``note`` which updates were left out, and why.
    """

    figures: dict[str, float] | None = None
    parties: int | None = None
    note: str | None = None

    def columns(self) -> dict[str, Any]:
        figures = self.figures or {}
        return {"fed_eval_accuracy": figures.get("accuracy"), "fed_eval_loss": figures.get("loss"),
                "fed_eval_parties": self.parties, "fed_eval_note": self.note}


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _party_figures(
    store: ContentStore, row: dict[str, Any], event: IndexedEvent
) -> tuple[dict[str, float], float] | str:
    """The ``base_*`` figures and ``val_samples`` of one submitted update, or why it gives none (a short reason)."""
    cid, participant = event.args.get("cid"), event.args["participant"]
    if cid is None:
        return "no valid CID on chain"
    try:
        data = store.get(cid, max_bytes=MAX_WEIGHTS_BYTES)
    except StoreUnreachableError:
        raise
    except ContentNotFoundError:
        return "not in this store"
    except IntegrityError:
        return "altered in this store"
    except ContentTooLargeError:
        return "too large to be an update"
    try:
        metadata = metadata_of(data, source=f"the update {cid}")
    except LedgerError:
        return "not a readable weights file"
    named = metadata.get("participant")
    if not isinstance(named, str) or named.lower() != participant.lower():
        return "its metadata does not name its submitter"
    if isinstance(metadata.get("round"), bool) or metadata.get("round") != row["round_id"]:
        return "its metadata names another round"
    if metadata.get("base_cid") != row["base_cid"]:
        return "it was made from another base model"
    metrics = metadata.get("metrics")
    if not isinstance(metrics, dict) or metrics_hash(metrics) != bytes.fromhex(event.args["metricsHash"][2:]):
        return "its metrics do not hash to the metrics hash on chain"
    figures = {name.removeprefix("base_"): _number(value) for name, value in metrics.items() if name.startswith("base_")}
    figures = {name: value for name, value in figures.items() if value is not None}
    if not figures:
        return "its metrics carry no federated evaluation"
    weight = _number(metrics.get("val_samples"))
    if weight is None or weight <= 0:
        return "its metrics give no val_samples to weigh it by"
    return figures, weight


def _left_out_note(reasons: dict[str, int]) -> str | None:
    if not reasons:
        return None
    parts = [f"{count} {'update' if count == 1 else 'updates'} left out: {reason}" for reason, count in reasons.items()]
    return "; ".join(parts)


def federated_evaluation(
    store: ContentStore, row: dict[str, Any], config: RoundConfig | None, submitted: Iterable[IndexedEvent]
) -> FederatedEvaluation:
    """The federated evaluation of round ``row``'s base model from its submitted updates (see the module doc)."""
    if config is None:
        return FederatedEvaluation()
    if config.dp is not None:  # nothing measured on a party's data leaves it in a private round
        return FederatedEvaluation(parties=0, note="a private round: parties report no figures measured on their data")
    sums: dict[str, float] = defaultdict(float)
    weights: dict[str, float] = defaultdict(float)
    parties = 0
    reasons: dict[str, int] = {}
    for event in submitted:
        if config.seal_to is not None:  # an envelope: only a recipient's key opens it
            found: tuple[dict[str, float], float] | str = "sealed to the round's recipients, not opened without a key"
        else:
            found = _party_figures(store, row, event)
        if isinstance(found, str):
            reasons[found] = reasons.get(found, 0) + 1
            continue
        figures, weight = found
        weight = min(weight, float(config.max_samples))  # as the aggregator caps a claimed sample count
        parties += 1
        for name, value in figures.items():
            sums[name] += value * weight
            weights[name] += weight
    return FederatedEvaluation(figures={name: sums[name] / weights[name] for name in sorted(sums)} or None,
                               parties=parties, note=_left_out_note(reasons))


# ---------------------------------------------------------------- rounds and lineage


def round_task_columns(index: LedgerIndex, store: ContentStore, table: list[dict[str, Any]] | None = None) -> dict[int, dict[str, Any]]:
    """Round id -> its TASK_COLUMNS (task CID, agreement version, federated evaluation), for ``table``'s rounds."""
    table = rounds(index) if table is None else table
    submitted: dict[int, list[IndexedEvent]] = defaultdict(list)
    for event in index.events("UpdateSubmitted"):
        submitted[int(event.args["roundId"])].append(event)
    out: dict[int, dict[str, Any]] = {}
    for row in table:
        config, problem = read_config(store, row["config_cid"])
        evaluation = federated_evaluation(store, row, config, submitted[row["round_id"]])
        columns = {"agreement_version": row["agreement_version"], "task_cid": config_task(config), **evaluation.columns()}
        if problem is not None:
            columns["fed_eval_note"] = f"not evaluated: {problem}"
        out[row["round_id"]] = columns
    return out


def rounds_with_tasks(index: LedgerIndex, store: ContentStore) -> list[dict[str, Any]]:
    """``ledger.index.queries.rounds`` with each round's task and federated evaluation (TASK_COLUMNS)."""
    table = rounds(index)
    columns = round_task_columns(index, store, table)
    return [{**row, **columns[row["round_id"]]} for row in table]


def provenance_tasks(lineage: dict[str, Any], store: ContentStore) -> dict[str, Any]:
    """``provenance``'s document with each step's ``task_cid``: the task its global model was trained on
    (from its round's config; None for a built-in round) and, where the config cannot be read, ``task_note``."""
    steps = []
    for step in lineage["rounds"]:
        config, problem = read_config(store, step["config_cid"])
        steps.append({**step, "task_cid": config_task(config), **({"task_note": problem} if problem else {})})
    return {**lineage, "rounds": steps}
