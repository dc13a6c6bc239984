"""The party's side: pin the trained arrays, record their CID on chain with the party's key, reply.

A ClientApp's ``@app.train()`` handler starts from ``base_arrays(msg, context)``, the round's base model
read from the party's store by the CID the chain records for the round (the train message carries
that CID, not the arrays: see ``node.flower.strategy``), trains as it always did and returns
``record_update(msg, context, ArrayRecord(model.state_dict()), samples=n, metrics={...})``. The
update is the same safetensors file ``fedledger node train`` pins (its metadata names the party
and the round, so a copied CID is refused), checked against the layout the aggregator holds every
update of the round to (``node.aggregator.round_base``: a built-in model's fixed layout, or, in a
round of any other model, a task round, the round's base model's own).
The contract is asked first: a party it would refuse (not admitted, a stale agreement, a closed
round) pins nothing and replies with the contract's sentence, which the server names in the receipt;
so does a party asked to train for a run of a Flower app its agreement does not name (``fab_guard``).

A private round (its config's ``dp`` section) is not trained by the app's own loop:
``private_round(msg, context)`` tells the handler so, and it returns
``record_private_update(msg, context, model, data)``, which takes the steps ``node train`` takes,
with the same functions: the contract asked first at the party's last declared ε; the cumulative ε it
would declare worked out by ``node.privacy.budget.epsilon_to_declare`` and the round refused, before
any training, past the party's budget (a reply naming the sentence, which the receipt names);
DP-SGD by ``node.privacy.dp_training.train_private`` (the built-in data) or the task loop's
``train_private`` (any model and torch data), both ``dp_sgd``, noise seeded by the OS; an update
with no metrics, declared with that ε. Its pinned update is journaled as ``node train`` journals it,
so a rerun after a crash records it without training (and releasing) a second noisy update.
``record_update`` refuses a private round: arrays the app trained itself carry no DP guarantee.

In a sealed round (the config's ``seal_to``) both pin only the update sealed to the recipients'
keys registered on chain at the round's opening block (``ledger.sealing.recipients.RoundSeal``),
as ``node train`` does: the CID on chain is the envelope's, and the store holds no plaintext.
Under an agreement with a privacy budget a round without DP is refused as ``node train`` refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from ledger.chain.federation import FederationClient, RoundInfo, SubmissionStatus
from ledger.errors import ContractRevertError, InvalidInputError, WeightsError
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.sealing.recipients import RoundSeal
from ledger.types import Address
from ledger.weights import from_safetensors
from node.aggregator import round_base
from node.data import Dataset
from node.flower.connection import Ledger, party_ledger
from node.flower.fab_guard import fab_refusal, refusal_reply, run_fab_hash
from node.flower.records import BASE_KEY, MODEL_KEY, REPLY_KEY, ROUND_KEY, PartyReply, arrays_of
from node.flower.strategy import global_arrays
from node.journal import Journal
from node.participant import fetch_round_config, update_bytes
from node.update_metrics import metrics_hash
from node.privacy.accountant import PrivacyBudgetExceededError
from node.privacy.budget import epsilon_to_declare
from node.round_config import RoundConfig


def ledger_round(msg: Message) -> int:
    """The ledger round a train (or evaluate) message belongs to; InvalidInputError when the server sent none."""
    config = msg.content.config_records.get("config")
    value = config.get(ROUND_KEY) if config is not None else None
    if isinstance(value, bool) or not isinstance(value, int):
        kind = "evaluate" if msg.metadata.message_type.startswith("evaluate") else "train"
        raise InvalidInputError(
            f"the {kind} message names no ledger round ({ROUND_KEY!r} in its config); wrap the ServerApp's strategy "
            "in node.flower.LedgerStrategy so each server round is opened on the ledger."
        )
    return value


def base_arrays(msg: Message, context: Context) -> dict[str, np.ndarray]:
    """The base model of the train message's ledger round, as numpy arrays keyed by parameter name: read from the
    party's store by the base CID the chain records for the round (the store checks the bytes hash to it) and
    checked against the round's layout, the one ``node train`` trains from. The message's own ``fedledger-base``
    must name the same CID: a server that says otherwise is refused with a sentence, nothing trained."""
    ledger, round_id = party_ledger(context.node_config), ledger_round(msg)
    info = ledger.federation.round(round_id)
    said = msg.content.config_records["config"].get(BASE_KEY)
    if said is not None and said != info.base_cid:
        raise InvalidInputError(
            f"the train message says round {round_id} starts from {said}, but the chain records its base model as "
            f"{info.base_cid}; nothing was trained: the server's ServerApp is not the round's, ask its operator."
        )
    config = fetch_round_config(ledger.store, info.config_hash)
    return round_base(ledger.store, info, config)[1]


def evaluate_arrays(msg: Message, context: Context) -> dict[str, np.ndarray]:
    """The model an evaluate message asks the party to evaluate, as numpy arrays keyed by parameter name: the
    message names its ledger round and the model's CID (``fedledger-model``), which must be what the chain records
    for that round, its global model once finalized or its base (a round aborted leaves the model as it was); read
    from the party's store (the bytes checked against the CID) with the round's layout. Any other CID is refused
    with a sentence, nothing evaluated."""
    ledger, round_id = party_ledger(context.node_config), ledger_round(msg)
    info = ledger.federation.round(round_id)
    said = msg.content.config_records["config"].get(MODEL_KEY)
    config = fetch_round_config(ledger.store, info.config_hash)
    if info.state == "finalized" and said == info.global_cid:
        return global_arrays(ledger, info, config)
    if said == info.base_cid:
        return round_base(ledger.store, info, config)[1]
    recorded = f"its global model {info.global_cid} or its base model {info.base_cid}" if info.state == "finalized" \
        else f"its base model {info.base_cid} (no global model yet: the round is {info.state})"
    raise InvalidInputError(
        f"the evaluate message names the model {said} for round {round_id}, but the chain records {recorded}; nothing "
        "was evaluated: the server's ServerApp is not the round's, ask its operator."
    )


@dataclass(frozen=True)
class _Admitted:
    """A round this party may take part in, as the chain and the store say before anything is pinned or sent."""

    me: Address
    info: RoundInfo
    config: RoundConfig
    epsilon_micros: int  # the cumulative ε it declares with its update (node.privacy.budget)
    sealing: RoundSeal | None  # a sealed round's recipients and their keys on chain


def _me(federation: FederationClient) -> Address:
    if federation.account is None:
        raise InvalidInputError("recording an update needs the party's own key; set fedledger-key in the node config.")
    return Address(federation.account.address)


def _recorded(federation: FederationClient, round_id: int, me: str) -> PartyReply:
    """The reply naming the update the chain already holds from this party (a message delivered twice)."""
    recorded = next(s for s in federation.submissions(round_id) if s.participant.lower() == me.lower())
    return PartyReply(me, recorded.cid)


def _admit(
    ledger: Ledger, round_id: int, *, samples: int, cid: str = "", status: SubmissionStatus | None = None
) -> _Admitted | PartyReply:
    """``node train``'s checks before it trains: the round and its config, the contract's refusal at the party's last
    declared ε, the party's own refusal past its budget (``epsilon_to_declare``: under a budget, a round without DP
    too) and the contract's at the ε it will declare, and a sealed round's keys. A refusal comes back as the reply
    that names it (``cid``: the update's, when one was already made), with nothing pinned or sent.
    ``status``: the party's ``submission_status`` when the caller has just read it."""
    federation, store = ledger.federation, ledger.store
    me = _me(federation)
    if status is None:
        status = federation.submission_status(round_id, me)  # submitted?, privacy and the round: one round trip
    if status.submitted:
        return _recorded(federation, round_id, me)
    privacy = (status.epsilon_spent_micros, status.epsilon_budget_micros)
    try:
        federation.check_can_submit(round_id, samples=samples, epsilon_micros=privacy[0])
        info = status.round()
        config = fetch_round_config(store, info.config_hash)
        epsilon_micros = epsilon_to_declare(federation, store, me, round_id, config.dp, privacy=privacy)
        if epsilon_micros != privacy[0]:
            federation.check_can_submit(round_id, samples=samples, epsilon_micros=epsilon_micros)
    except ContractRevertError as refusal:
        return PartyReply(me, cid, str(refusal), "contract")
    except PrivacyBudgetExceededError as refusal:
        return PartyReply(me, cid, str(refusal), "party")
    sealing = None if config.seal_to is None else RoundSeal.read(  # keys from the chain, never from files
        federation, round_id, config.seal_to, opened_block=info.opened_block
    )
    return _Admitted(me, info, config, epsilon_micros, sealing)


def _checked_bytes(ledger: Ledger, admitted: _Admitted, arrays: dict[str, np.ndarray], *, samples: int,
                   metrics: dict[str, float]) -> bytes:
    """The update's safetensors bytes, checked against the layout the aggregator will hold it to."""
    info, config = admitted.info, admitted.config
    blob = update_bytes(arrays, model=config.model, participant=admitted.me, round_id=info.round_id,
                        base_cid=info.base_cid, samples=samples, metrics=metrics)
    _, _, layout = round_base(ledger.store, info, config)
    try:
        from_safetensors(blob, layout=layout)
    except WeightsError as error:
        raise InvalidInputError(
            f"the trained arrays do not fit the model {config.model!r} that round {info.round_id}'s config names "
            f"({error}); train that model from the round's base model, with its parameter names."
        ) from None
    return blob


def _pin(ledger: Ledger, admitted: _Admitted, blob: bytes) -> str:
    """Pin the update (in a sealed round only its envelope); its CID, the one the chain records."""
    if admitted.sealing is not None:
        blob = admitted.sealing.seal(blob, sender=admitted.me)
    return ledger.store.add_bytes(blob, pin=True)


def _record(ledger: Ledger, admitted: _Admitted, cid: str, *, samples: int, metrics: dict[str, float]) -> PartyReply:
    """Record the pinned update on chain with the party's key and its declared ε, or name the contract's refusal."""
    try:
        ledger.federation.submit_update(admitted.info.round_id, cid=cid, samples=samples, metrics_hash=metrics_hash(metrics),
                                        epsilon_micros=admitted.epsilon_micros)
    except ContractRevertError as refusal:
        return PartyReply(admitted.me, cid, str(refusal), "contract")
    return PartyReply(admitted.me, cid)


def submit_arrays(
    ledger: Ledger, round_id: int, arrays: dict[str, np.ndarray], *, samples: int, metrics: Mapping[str, float]
) -> PartyReply:
    """Pin ``arrays`` as this party's update to ``round_id`` and record it, or say why it is refused."""
    federation, store = ledger.federation, ledger.store
    me = _me(federation)
    status = federation.submission_status(round_id, me)
    if status.submitted:  # a message delivered twice: the chain already has this party's update
        return _recorded(federation, round_id, me)
    info = status.round()
    config = fetch_round_config(store, info.config_hash)
    if config.dp is not None:
        return PartyReply(me, "", (
            f"round {round_id} is private (its config has a dp section), and these arrays were not trained with its "
            "DP-SGD; nothing was pinned or sent: train a private round with node.flower.record_private_update"
        ), "party")
    values = {name: float(value) for name, value in metrics.items()}
    blob = _checked_bytes(ledger, _Admitted(me, info, config, 0, None), arrays, samples=samples, metrics=values)
    # Refused now, before anything is pinned; a refusal names the plaintext's CID (in a sealed round, never pinned).
    admitted = _admit(ledger, round_id, samples=samples, cid=cid_of_bytes(blob), status=status)
    if isinstance(admitted, PartyReply):
        return admitted
    return _record(ledger, admitted, _pin(ledger, admitted, blob), samples=samples, metrics=values)


def record_update(
    msg: Message, context: Context, arrays: ArrayRecord, *, samples: int, metrics: Mapping[str, float]
) -> Message:
    """The reply to a train message: the update pinned and recorded on chain, its CID and metrics.

    ``metrics`` gains ``num-examples`` (= ``samples``), the weight Flower's metric aggregation uses.
    A run whose FAB is not the one the agreement in force names is refused first (``node.flower.fab_guard``);
    so is a private round (``record_private_update`` trains those).
    """
    ledger, round_id = party_ledger(context.node_config), ledger_round(msg)
    refusal = fab_refusal(ledger, context.run_id, run_fab_hash(context))  # before anything is pinned or sent
    if refusal is not None:
        return refusal_reply(msg, ledger, refusal)
    reply = submit_arrays(ledger, round_id, arrays_of(arrays), samples=samples, metrics=metrics)
    content = RecordDict({
        "metrics": MetricRecord({**{k: float(v) for k, v in metrics.items()}, "num-examples": samples}),
        REPLY_KEY: reply.to_record(),
    })
    return Message(content=content, reply_to=msg)


def round_config_of(msg: Message, context: Context) -> RoundConfig:
    """The config of the train message's ledger round, as the chain's hash names it in the party's store."""
    ledger = party_ledger(context.node_config)
    return fetch_round_config(ledger.store, ledger.federation.round(ledger_round(msg)).config_hash)


def private_round(msg: Message, context: Context) -> bool:
    """Whether the train message's ledger round is private (its config, read from the chain, has a ``dp`` section):
    then the handler returns ``record_private_update`` instead of training itself."""
    return round_config_of(msg, context).dp is not None


def _train_private(model: torch.nn.Module, data: Any, admitted: _Admitted, *, loss: Any, device: str | None) -> int:
    """DP-SGD as the round's dp section asks, with the node's own loop (``dp_sgd``); the samples it drew from."""
    config = admitted.config
    assert config.dp is not None
    if isinstance(data, Dataset):  # the built-in data, exactly as node train trains it
        from node.privacy.dp_training import train_private

        return train_private(model, data, dp=config.dp, lr=config.training.lr, device=device, progress=False).samples
    from dataclasses import asdict

    from node.tasks.loop import train_private as train_task_private
    from node.training import pick_device

    return train_task_private(model, data, dp=asdict(config.dp), settings=asdict(config.training),
                              device=pick_device(device), loss=loss)


def submit_private(
    ledger: Ledger, round_id: int, model: torch.nn.Module, data: Any, *, loss: Any = None, device: str | None = None
) -> PartyReply:
    """Train ``model`` on ``data`` with DP-SGD for private round ``round_id`` and record the update with the
    cumulative ε this party declares, or say why the round is refused (before any training)."""
    federation, store = ledger.federation, ledger.store
    me = _me(federation)
    try:
        samples = len(data) if not isinstance(data, tuple | list) else len(data[1])
    except TypeError:
        raise InvalidInputError("DP-SGD samples each batch by index: give a sized dataset (a torch Dataset, an "
                                "(x, y) pair or node.data.Dataset), not an iterable.") from None
    admitted = _admit(ledger, round_id, samples=max(1, samples))
    if isinstance(admitted, PartyReply):
        return admitted
    if admitted.config.dp is None:
        return PartyReply(me, "", (
            f"round {round_id} is not private (its config has no dp section); nothing was trained or sent: "
            "train it as any round and return node.flower.record_update"
        ), "party")
    journal = Journal(ledger.workspace.journal_dir, role="participant", actor=me, round_id=round_id)
    cid = journal.get("update_cid")
    if not (cid and store.has(cid)):  # an update pinned before a crash is recorded as it is: one noisy release
        trained = _train_private(model, data, admitted, loss=loss, device=device)
        arrays = arrays_of(ArrayRecord(model.state_dict()))
        cid = _pin(ledger, admitted, _checked_bytes(ledger, admitted, arrays, samples=trained, metrics={}))
        journal.record(update_cid=cid, samples=trained, metrics={})
    return _record(ledger, admitted, cid, samples=int(journal.get("samples")), metrics={})


def record_private_update(
    msg: Message, context: Context, model: torch.nn.Module, data: Any, *, loss: Any = None, device: str | None = None
) -> Message:
    """The reply to a train message of a private round: ``model`` (loaded with ``base_arrays``) trained on
    ``data`` with DP-SGD as the round's dp section asks, pinned (sealed in a sealed round) and recorded with the
    party's cumulative ε; the reply carries its CID and no metrics (nothing measured on private data).

    ``data``: ``node.data.Dataset`` (the built-in digits), or a map-style torch Dataset or ``(x, y)`` pair for any
    model, with ``loss`` (default cross-entropy, a mean over the batch). Refused before training, with the sentence
    in the reply: the app's FAB not the agreed one, the contract's refusal, a round past the party's ε budget.
    """
    ledger, round_id = party_ledger(context.node_config), ledger_round(msg)
    refusal = fab_refusal(ledger, context.run_id, run_fab_hash(context))
    if refusal is not None:
        return refusal_reply(msg, ledger, refusal)
    reply = submit_private(ledger, round_id, model, data, loss=loss, device=device)
    return Message(content=RecordDict({REPLY_KEY: reply.to_record()}), reply_to=msg)
