"""The party's side: pin the trained arrays, record their CID on chain with the party's key, reply.

A ClientApp's ``@app.train()`` handler trains as it always did and returns
``record_update(msg, context, ArrayRecord(model.state_dict()), samples=n, metrics={...})``. The
update is the same safetensors file ``fedledger node train`` pins (its metadata names the party
and the round, so a copied CID is refused), checked against the layout the aggregator holds every
update of the round to (``node.aggregator.round_base``: a built-in model's fixed layout, or, in a
round of any other model, a task round, the round's base model's own).
The contract is asked first: a party it would refuse (not admitted, a stale agreement, a closed
round) pins nothing and replies with the contract's sentence, which the server names in the receipt;
so does a party asked to train for a run of a Flower app its agreement does not name (``fab_guard``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict

from ledger.errors import ContractRevertError, InvalidInputError, WeightsError
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors
from node.flower.connection import Ledger, party_ledger
from node.flower.fab_guard import fab_refusal, refusal_reply, run_fab_hash
from node.flower.records import REPLY_KEY, ROUND_KEY, PartyReply, arrays_of
from node.aggregator import round_base
from node.participant import fetch_round_config, metrics_hash, update_bytes


def ledger_round(msg: Message) -> int:
    """The ledger round a train message belongs to; InvalidInputError when the server sent none."""
    config = msg.content.config_records.get("config")
    value = config.get(ROUND_KEY) if config is not None else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(
            f"the train message names no ledger round ({ROUND_KEY!r} in its config); wrap the ServerApp's strategy "
            "in node.flower.LedgerStrategy so each server round is opened on the ledger."
        )
    return value


def submit_arrays(
    ledger: Ledger, round_id: int, arrays: dict[str, np.ndarray], *, samples: int, metrics: Mapping[str, float]
) -> PartyReply:
    """Pin ``arrays`` as this party's update to ``round_id`` and record it, or say why the contract refuses it."""
    federation, store = ledger.federation, ledger.store
    if federation.account is None:
        raise InvalidInputError("recording an update needs the party's own key; set fedledger-key in the node config.")
    me = federation.account.address
    if federation.has_submitted(round_id, me):  # a message delivered twice: the chain already has this party's update
        recorded = next(s for s in federation.submissions(round_id) if s.participant.lower() == me.lower())
        return PartyReply(me, recorded.cid)
    info = federation.round(round_id)
    config = fetch_round_config(store, info.config_hash)
    values = {name: float(value) for name, value in metrics.items()}
    blob = update_bytes(arrays, model=config.model, participant=me, round_id=round_id, base_cid=info.base_cid,
                        samples=samples, metrics=values)
    _, _, layout = round_base(store, info, config)  # the layout the aggregator will hold this update to
    try:
        from_safetensors(blob, layout=layout)
    except WeightsError as error:
        raise InvalidInputError(
            f"the trained arrays do not fit the model {config.model!r} that round {round_id}'s config names ({error}); "
            "train that model from the round's base model, with its parameter names."
        ) from None
    cid = cid_of_bytes(blob)
    try:
        federation.check_can_submit(round_id, samples=samples)  # refused now, before anything is pinned
        store.add_bytes(blob, pin=True)
        federation.submit_update(round_id, cid=cid, samples=samples, metrics_hash=metrics_hash(values))
    except ContractRevertError as refusal:
        return PartyReply(me, cid, str(refusal))
    return PartyReply(me, cid)


def record_update(
    msg: Message, context: Context, arrays: ArrayRecord, *, samples: int, metrics: Mapping[str, float]
) -> Message:
    """The reply to a train message: the update pinned and recorded on chain, its CID and metrics.

    ``metrics`` gains ``num-examples`` (= ``samples``), the weight Flower's metric aggregation uses.
    A run whose FAB is not the one the agreement in force names is refused first (``node.flower.fab_guard``).
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
