"""ClientApp: train on this SuperNode's shard of digits, then let fedledger pin and record the update.

On the ledger the round's base model comes from the party's store by the CID the chain records (the
train message carries no arrays), and ``agreed_fab_mod`` answers a train message with a refusal when
the run's FAB is not the one the agreement in force names (it lets every run through when the
agreement names no Flower app)."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable

from node.data import load_digits_split
from node.flower import arrays_of, base_arrays, private_round, record_private_update, record_update
from node.flower.fab_guard import agreed_fab_mod
from node.models import build_model, load_arrays
from node.training import train as train_locally


def agreed_fab(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """On the ledger, the party trains only for a run of the FAB its agreement names; plain Flower runs pass."""
    if not context.run_config["ledger"]:
        return call_next(msg, context)
    return agreed_fab_mod(msg, context, call_next)


app = ClientApp(mods=[agreed_fab])


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    alpha = float(context.run_config["non-iid-alpha"]) or None
    shards, _ = load_digits_split(parties=partitions, seed=int(context.run_config["seed"]), non_iid_alpha=alpha)
    model = build_model(str(context.run_config["model"]))
    ledger = bool(context.run_config["ledger"])
    load_arrays(model, base_arrays(msg, context) if ledger else arrays_of(msg.content["arrays"]))
    if ledger and private_round(msg, context):  # the round's dp section, read from the chain
        return record_private_update(msg, context, model, shards[partition])  # DP-SGD, sealed if the round is, ε declared
    result = train_locally(
        model, shards[partition], epochs=int(config["epochs"]), batch_size=int(config["batch-size"]),
        lr=float(config["lr"]), seed=1000 * int(config["server-round"]) + partition, progress=False,
    )
    arrays = ArrayRecord(model.state_dict())
    if ledger:  # the one change on the client: pin and record the update, reply with its CID
        return record_update(msg, context, arrays, samples=result.samples, metrics=result.metrics)
    metrics = MetricRecord({**result.metrics, "num-examples": result.samples})
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)
