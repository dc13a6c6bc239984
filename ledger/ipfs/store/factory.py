"""Pick the workspace's store backend from ``[store] backend``."""

from __future__ import annotations

from ledger.errors import ConfigError
from ledger.ipfs.store.base import ContentStore
from ledger.ipfs.store.embedded import EmbeddedStore
from ledger.ipfs.store.kubo import KuboStore
from ledger.workspace import Workspace


def open_store(workspace: Workspace) -> ContentStore:
    """The store ``fedledger.toml`` (or ``FEDLEDGER_STORE`` / ``FEDLEDGER_IPFS_API``) names."""
    backend = str(workspace.get("store", "backend", "embedded")).strip().lower()
    if backend == "embedded":
        return EmbeddedStore(workspace.store_dir)
    if backend == "kubo":
        return KuboStore(str(workspace.get("store", "api")))
    raise ConfigError(
        f"store backend {backend!r} in {workspace.config_path} is unknown; "
        "set store.backend in fedledger.toml to \"embedded\" or \"kubo\"."
    )
