"""The verifiable record as Python sees it: chain client, content store, weights, audit index.

Rooms, each importing only from those below it (``lint-imports`` checks this in CI):

- ``sealing/``: updates encrypted to a round's named recipients;
- ``index/``: the audit index of every Federation event and its queries;
- ``chain/``: the chain connection, the Federation client, its errors and the signing keys;
- ``ipfs/``: CIDs, UnixFS, the content stores and ``ipfs serve``;
- the shared basics at the top level: ``errors``, ``types``, ``workspace``, ``weights``,
  ``canonical_json``, ``fixed_point``, ``contract_constants``, ``utc``, ``failpoints``.
"""
