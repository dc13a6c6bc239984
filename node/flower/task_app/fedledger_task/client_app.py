"""ClientApp: this party's part of a round of the agreement's task, run by the task's own code as `node train`
runs it (the bundle from the store, in a task process that holds no key), pinned and recorded on chain.
``agreed_fab_mod`` refuses a run of a Flower app the agreement does not name (any, while it names none)."""

from __future__ import annotations

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from node.flower.fab_guard import agreed_fab_mod
from node.flower.task_round import record_task_update

app = ClientApp(mods=[agreed_fab_mod])


@app.train()
def train(msg: Message, context: Context) -> Message:
    return record_task_update(msg, context)
