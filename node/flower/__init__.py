"""Flower apps on the ledger (the ``[flower]`` extra).

``LedgerStrategy`` wraps a Flower Message-API strategy on the server: each server round becomes a
ledger round, and only updates the chain records are aggregated, with fedledger's deterministic
strategies; the train messages name the round's base model by CID and carry no arrays: a ClientApp
starts from ``base_arrays``, read from the party's store (an evaluate handler from ``evaluate_arrays``).
``record_update`` is what a ClientApp's ``@app.train()`` handler returns: it pins the party's trained
arrays and records their CID on chain with the party's own key; in a private round (``private_round``)
the handler returns ``record_private_update`` instead, which trains with the node's DP-SGD and declares
the party's ε. ``example_app/`` is a whole Flower app built on both; ``node.flower.deployment`` runs
such an app on Flower's Deployment Engine.
"""

from __future__ import annotations

from importlib import import_module
from importlib.util import find_spec
from typing import TYPE_CHECKING

from ledger.errors import ConfigError

if find_spec("flwr") is None:
    raise ConfigError("Flower is not installed in this environment; install fedledger's extra: pip install -e '.[flower]'.")

if TYPE_CHECKING:
    from node.flower.client import base_arrays, evaluate_arrays, private_round, record_private_update, record_update
    from node.flower.connection import operator_ledger, party_ledger
    from node.flower.records import array_record, arrays_of
    from node.flower.strategy import LedgerStrategy, latest_global

# Imported when first named (torch and web3 come with them: seconds), so that a process that needs only a light
# submodule, such as ``python -m node.flower.supernode``, does not pay for them.
_HOMES = {
    "base_arrays": "client", "evaluate_arrays": "client", "private_round": "client", "record_private_update": "client", "record_update": "client",
    "operator_ledger": "connection", "party_ledger": "connection", "array_record": "records", "arrays_of": "records",
    "LedgerStrategy": "strategy", "latest_global": "strategy",
}

__all__ = [
    "LedgerStrategy", "array_record", "arrays_of", "base_arrays", "evaluate_arrays", "latest_global", "operator_ledger", "party_ledger", "private_round",
    "record_private_update", "record_update",
]


def __getattr__(name: str) -> object:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
