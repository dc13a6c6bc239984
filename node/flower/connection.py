"""The ledger as a Flower process sees it: the workspace, the federation signed by its own key, the store.

A SuperNode names its party's workspace and key in its node config (``fedledger-workdir``,
``fedledger-key``: a name under ``[keys]`` or a keystore file; the password comes from
``FEDLEDGER_KEY_PASSWORD``), or through ``FEDLEDGER_WORKDIR`` / ``FEDLEDGER_PRIVATE_KEY`` in its
environment. The key is loaded on the node and signs there; it never travels in a message.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.chain.connection import open_federation, signing_account, workspace_rpc
from ledger.chain.federation import FederationClient
from ledger.chain.keys import load_account
from ledger.ipfs.store import ContentStore, open_store
from ledger.workspace import Workspace

WORKDIR_KEY = "fedledger-workdir"
KEY_KEY = "fedledger-key"


@dataclass(frozen=True)
class Ledger:
    """One process's view of the federation."""

    workspace: Workspace
    federation: FederationClient
    store: ContentStore


def _setting(config: Mapping[str, object], key: str) -> str | None:
    value = config.get(key)
    return str(value) if value not in (None, "") else None


@functools.lru_cache(maxsize=8)
def _party_ledger(workdir: str | None, key: str | None) -> Ledger:
    workspace = Workspace.find(workdir)
    account = load_account(workspace, key)  # None: $FEDLEDGER_PRIVATE_KEY
    return Ledger(workspace, open_federation(workspace, account=account), open_store(workspace))


def party_ledger(node_config: Mapping[str, object]) -> Ledger:
    """The party's ledger, signed by the party's key, as its SuperNode's node config names them (once per
    process, or per run in a long-lived ClientApp process: ``node.flower.warm_clientapp``)."""
    return _party_ledger(_setting(node_config, WORKDIR_KEY), _setting(node_config, KEY_KEY))


def forget_ledgers() -> None:
    """Drop the ledgers ``party_ledger`` opened: the next call reads the workspace and the key again."""
    _party_ledger.cache_clear()


def operator_ledger(run_config: Mapping[str, object]) -> Ledger:
    """The ledger as the ServerApp drives it: the workspace's coordinator and aggregator key
    (``fedledger-key``, else ``$FEDLEDGER_PRIVATE_KEY``, else ``[keys] admin``: the more explicit setting wins)."""
    workspace = Workspace.find(_setting(run_config, WORKDIR_KEY))
    reader = open_federation(workspace)
    signer = signing_account(workspace, _setting(run_config, KEY_KEY), w3=reader.w3, rpc=workspace_rpc(workspace))
    return Ledger(workspace, reader.with_account(signer), open_store(workspace))
