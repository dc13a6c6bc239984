"""ClientApp: train on this SuperNode's shard of digits, then let fedledger pin and record the update."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from node.data import load_digits_split
from node.flower import arrays_of, private_round, record_private_update, record_update
from node.models import build_model, load_arrays
from node.training import train as train_locally

app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    alpha = float(context.run_config["non-iid-alpha"]) or None
    shards, _ = load_digits_split(parties=partitions, seed=int(context.run_config["seed"]), non_iid_alpha=alpha)
    model = build_model(str(context.run_config["model"]))
    load_arrays(model, arrays_of(msg.content["arrays"]))
    if context.run_config["ledger"] and private_round(msg, context):  # the round's dp section, read from the chain
        return record_private_update(msg, context, model, shards[partition])  # DP-SGD, sealed if the round is, ε declared
    result = train_locally(
        model, shards[partition], epochs=int(config["epochs"]), batch_size=int(config["batch-size"]),
        lr=float(config["lr"]), seed=1000 * int(config["server-round"]) + partition, progress=False,
    )
    arrays = ArrayRecord(model.state_dict())
    if context.run_config["ledger"]:  # the one change on the client: pin and record the update, reply with its CID
        return record_update(msg, context, arrays, samples=result.samples, metrics=result.metrics)
    metrics = MetricRecord({**result.metrics, "num-examples": result.samples})
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)
