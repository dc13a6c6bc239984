"""The in-process chain finds transactions through py-evm's index and answers as eth-tester's walk does."""

from __future__ import annotations

import pytest
from eth_tester.backends.pyevm import main as backend
from web3.exceptions import TransactionNotFound

from ledger.chain.in_process_chain import in_process_web3


def test_transactions_of_old_blocks_are_found_where_the_walk_finds_them() -> None:
    w3 = in_process_web3()
    sender, receiver = w3.eth.accounts[:2]
    hashes = [w3.eth.send_transaction({"from": sender, "to": receiver, "value": value}) for value in range(1, 6)]
    assert backend._get_transaction_by_hash.__name__ == "by_index"
    for value, tx_hash in enumerate(hashes, start=1):
        receipt = w3.eth.get_transaction_receipt(tx_hash)
        transaction = w3.eth.get_transaction(tx_hash)
        assert transaction["value"] == value
        assert (transaction["blockNumber"], transaction["transactionIndex"]) == (receipt["blockNumber"], 0)
        assert w3.eth.get_block(receipt["blockNumber"])["transactions"][0] == tx_hash


def test_an_unknown_hash_is_still_not_found() -> None:
    w3 = in_process_web3()
    with pytest.raises(TransactionNotFound):
        w3.eth.get_transaction_receipt("0x" + "ab" * 32)
