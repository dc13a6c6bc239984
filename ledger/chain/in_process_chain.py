"""The in-process chain (eth-tester on py-evm) with transactions looked up through py-evm's index.

eth-tester 0.14 finds a transaction by hash by walking every block back from the head (its own
source says "TODO: the chain should be able to look these up directly by hash"), so each receipt
lookup costs the chain's length and a demo's rounds grow slower one after another: with 100
parties the in-process demo spent most of its time there. py-evm already keeps a hash -> (block,
index) table for canonical transactions; :func:`in_process_web3` routes the lookup through it and
falls back to eth-tester's own walk for anything the table does not hold.
"""

from __future__ import annotations

from typing import Any

from web3 import EthereumTesterProvider, Web3

_installed = False


def in_process_web3() -> Web3:
    """A Web3 on a fresh in-process chain whose transaction lookups go through py-evm's index."""
    _index_transaction_lookups()
    return Web3(EthereumTesterProvider())


def _index_transaction_lookups() -> None:
    global _installed
    if _installed:
        return
    from eth.exceptions import TransactionNotFound
    from eth_tester.backends.pyevm import main as backend

    walk = backend._get_transaction_by_hash

    def by_index(chain: Any, transaction_hash: bytes) -> tuple[Any, Any, int]:
        head = chain.get_block()  # the pending block: not in the canonical index yet
        for index, transaction in enumerate(head.transactions):
            if transaction.hash == transaction_hash:
                return head, transaction, index
        try:
            number, index = chain.chaindb.get_transaction_index(transaction_hash)
        except (TransactionNotFound, KeyError):
            return walk(chain, transaction_hash)
        block = chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index

    backend._get_transaction_by_hash = by_index
    _installed = True
