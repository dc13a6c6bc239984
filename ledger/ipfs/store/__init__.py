"""Content store: where weights and documents live, addressed by the CID Kubo would give them.

Two backends behind :class:`ContentStore`: :class:`EmbeddedStore` (blocks on disk in the
workspace, the default) and :class:`KuboStore` (Kubo's RPC API, or ``fedledger ipfs serve``).
"""

from ledger.ipfs.store.base import ContentStore
from ledger.ipfs.store.embedded import EmbeddedStore
from ledger.ipfs.store.factory import open_store
from ledger.ipfs.store.kubo import KuboStore, store_auth_from_env

__all__ = ["ContentStore", "EmbeddedStore", "KuboStore", "open_store", "store_auth_from_env"]
