"""Flower apps on the ledger (the ``[flower]`` extra).

``LedgerStrategy`` wraps a Flower Message-API strategy on the server: each server round becomes a
ledger round, and only updates the chain records are aggregated, with fedledger's deterministic
strategies; the train messages name the round's base model by CID and carry no arrays: a ClientApp
starts from ``base_arrays``, read from the party's store. ``record_update`` is what a ClientApp's
``@app.train()`` handler returns: it pins the
party's trained arrays and records their CID on chain with the party's own key; in a private round
(``private_round``) the handler returns ``record_private_update`` instead, which trains with the node's
DP-SGD and declares the party's ε. ``example_app/`` is
a whole Flower app built on both; ``node.flower.deployment`` runs such an app on Flower's
Deployment Engine.
"""

from importlib.util import find_spec

from ledger.errors import ConfigError

if find_spec("flwr") is None:
    raise ConfigError("Flower is not installed in this environment; install fedledger's extra: pip install -e '.[flower]'.")

from node.flower.client import base_arrays, private_round, record_private_update, record_update  # noqa: E402 - after the check above
from node.flower.connection import operator_ledger, party_ledger  # noqa: E402
from node.flower.records import array_record, arrays_of  # noqa: E402
from node.flower.strategy import LedgerStrategy, latest_global  # noqa: E402

__all__ = [
    "LedgerStrategy", "array_record", "arrays_of", "base_arrays", "latest_global", "operator_ledger", "party_ledger", "private_round",
    "record_private_update", "record_update",
]
