"""Pick the workspace's store backend from ``[store] backend``."""

from __future__ import annotations

from ledger.errors import ConfigError
from ledger.ipfs.store.base import ContentStore
from ledger.ipfs.store.embedded import EmbeddedStore
from ledger.ipfs.store.kubo import AUTH_ENV, KuboStore
from ledger.workspace import Workspace


def open_store(workspace: Workspace) -> ContentStore:
    """The store ``fedledger.toml`` (or ``FEDLEDGER_STORE`` / ``FEDLEDGER_IPFS_API``) names."""
    backend = str(workspace.get("store", "backend", "embedded")).strip().lower()
    if backend == "embedded":
        return EmbeddedStore(workspace.store_dir)
    if backend == "kubo":
        if "auth" in workspace.config.get("store", {}):
            raise ConfigError(
                f"{workspace.config_path} holds the store's secret in clear ([store] auth); remove that line and "
                f"set ${AUTH_ENV} in the environment instead."
            )
        return KuboStore(str(workspace.get("store", "api")), auth=workspace.get("store", "auth"))
    raise ConfigError(
        f"store backend {backend!r} in {workspace.config_path} is unknown; "
        "set store.backend in fedledger.toml to \"embedded\" or \"kubo\"."
    )
