"""The audit index: every Federation event in SQLite, and the auditor's queries over it.

- ``index``: ``LedgerIndex``, kept in step with the chain (incremental, resumable, reorg-aware).
- ``queries``: participants, agreements, rounds, updates and provenance as rows of JSON values.

Sits above ``ledger.chain`` and ``ledger.ipfs``.
"""
