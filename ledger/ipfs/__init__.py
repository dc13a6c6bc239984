"""IPFS as fedledger speaks it: CIDs, the UnixFS DAG Kubo builds, and the content stores.

- ``cid``, ``multibase``, ``unixfs``: the CIDv1 that ``ipfs add --cid-version=1`` gives, computed here.
- ``car``: CAR archives (``ipfs export``).
- ``store/``: the ``ContentStore`` protocol and its backends (embedded on disk, Kubo's RPC API).
- ``kubo_rpc``, ``http``, ``server``, ``identity``: ``fedledger ipfs serve``, the subset of Kubo's
  RPC API that fedledger uses, over the embedded store.

Knows nothing of the chain: only the shared basics sit below it.
"""
