"""The chain client: reaching an EVM node and speaking to the deployed Federation contract.

- ``connection``: connect to an RPC URL (or the in-process chain), check it is the recorded
  deployment, pick the signing account.
- ``federation``: the typed client of every Federation function and event.
- ``contract_errors``: one Python class per Solidity custom error, decoded from revert data.
- ``in_process_chain``: web3's in-process chain (eth-tester), for the demo and unit tests only.
- ``keys``: signing keys, kept as encrypted keystores in the workspace.

Sits above ``ledger.ipfs`` (a CID on chain is checked with ``ledger.ipfs.cid``) and the shared
basics; never imports ``ledger.index`` or ``ledger.sealing``.
"""
