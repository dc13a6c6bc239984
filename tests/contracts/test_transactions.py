"""Transactions on a chain that misbehaves (ledger.chain.transactions), on the session anvil:
a fee spike over the cap refused before anything is sent, a stuck transaction replaced, a dropped
one resent, a sender killed with a transaction in flight restarted without duplicate or gap.

Automine is turned off where a transaction must sit in the pool; each test turns it back on and
empties the pool, and the ``chain`` fixture reverts the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from ledger.chain import federation as federation_module
from ledger.chain import transactions
from ledger.chain.federation import FederationClient, TxResult
from ledger.chain.transactions import GWEI, FeeCapError, TxPolicy
from tests.fixtures_chain import TestChain

pytestmark = pytest.mark.anvil


@contextmanager
def automine_off(chain: TestChain) -> Iterator[None]:
    chain.rpc("evm_setAutomine", [False])
    try:
        yield
    finally:
        chain.rpc("anvil_dropAllTransactions", [])
        chain.rpc("evm_setAutomine", [True])


@contextmanager
def base_fee(chain: TestChain, wei: int) -> Iterator[None]:
    """The next block's base fee set to ``wei`` (a spike), restored afterwards."""
    before = int(chain.w3.eth.get_block("pending")["baseFeePerGas"])
    chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(wei)])
    try:
        yield
    finally:
        chain.rpc("anvil_setNextBlockBaseFeePerGas", [hex(before)])


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The hash of every raw transaction ledger.chain.transactions sends, in order."""
    hashes: list[str] = []
    real = transactions._send_raw

    def spy(w3: Web3, raw: str, *, again: bool) -> None:
        hashes.append(Web3.to_hex(Web3.keccak(hexstr=raw)))
        real(w3, raw, again=again)

    monkeypatch.setattr(transactions, "_send_raw", spy)
    return hashes


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The fields of every version ledger.chain.transactions signs, in order."""
    versions: list[dict[str, Any]] = []
    real = transactions._sign_and_send

    def spy(w3: Web3, account: Any, flight: Any, tx: dict[str, Any], *, again: bool) -> None:
        versions.append(dict(tx))
        real(w3, account, flight, tx, again=again)

    monkeypatch.setattr(transactions, "_sign_and_send", spy)
    return versions


def admin_client(chain: TestChain, policy: TxPolicy) -> FederationClient:
    """A fresh Federation whose admin (dev account 0) signs here, as a keyed CLI command does."""
    deployed = chain.deploy()
    return FederationClient(chain.w3, deployed.address, account=chain.keys[0], policy=policy)


def in_background(action: Callable[[], TxResult]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = action()
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def finished(thread: threading.Thread, outcome: dict[str, Any]) -> TxResult:
    thread.join(10)
    assert not thread.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def nonce(chain: TestChain, address: str, tag: str = "latest") -> int:
    return int(chain.w3.eth.get_transaction_count(address, tag))  # type: ignore[arg-type]


def test_a_fee_spike_over_the_cap_is_refused_in_one_sentence_and_nothing_is_sent(chain: TestChain, sent: list[str]) -> None:
    client = admin_client(chain, TxPolicy(max_fee_wei=10 * GWEI))
    grantee = Account.create().address
    client.grant_role("coordinator", Account.create().address)  # the chain's ordinary fees fit under the cap
    assert len(sent) == 1
    before = nonce(chain, client.sender, "pending")
    with base_fee(chain, 100 * GWEI):
        with pytest.raises(FeeCapError) as refused:
            client.grant_role("coordinator", grantee)
    message = str(refused.value)
    assert "base fee is 100 gwei" in message and "cap of 10 gwei" in message and "max_fee_gwei" in message
    assert message.count(". ") == 0 and message.endswith(".")  # one sentence
    assert len(sent) == 1 and nonce(chain, client.sender, "pending") == before  # nothing sent
    assert not client.has_role("coordinator", grantee)


def test_without_a_cap_the_spiked_fee_is_paid(chain: TestChain) -> None:
    client = admin_client(chain, TxPolicy())
    grantee = Account.create().address
    with base_fee(chain, 100 * GWEI):
        client.grant_role("coordinator", grantee)
    assert client.has_role("coordinator", grantee)


def test_a_stuck_transaction_is_replaced_with_higher_fees_and_one_version_is_mined(
    chain: TestChain, sent: list[str], signed: list[dict[str, Any]]
) -> None:
    client = admin_client(chain, TxPolicy(replace_after_s=0.3, timeout_s=20))
    grantee = Account.create().address
    start = nonce(chain, client.sender)
    with automine_off(chain):
        thread, outcome = in_background(lambda: client.grant_role("coordinator", grantee))
        wait_until(lambda: len(sent) >= 2)  # sat in the pool past replace_after_s: replaced
        wait_until(lambda: chain.rpc("eth_getTransactionByHash", [sent[1]]) is not None)  # the spy sees it first
        chain.rpc("evm_mine", [])
        result = finished(thread, outcome)
    original, replacement = signed[0], signed[1]
    assert replacement["nonce"] == original["nonce"] == start
    for fee in ("maxFeePerGas", "maxPriorityFeePerGas"):  # at least +12.5 % each (geth asks 10 %)
        assert replacement[fee] * 8 >= original[fee] * 9
    assert nonce(chain, client.sender) == start + 1  # the nonce advanced by one
    assert [h for h in sent if receipt_exists(chain, h)] == [result.tx_hash]  # one version mined, the result
    assert client.has_role("coordinator", grantee)


def test_a_dropped_transaction_is_sent_again_and_mined(chain: TestChain, sent: list[str]) -> None:
    # 1.5 s: the test drops the transaction well before its sender looks again, even on a loaded machine
    # (with 0.3 s a busy CI worker let the sender replace it first, a different hash).
    client = admin_client(chain, TxPolicy(replace_after_s=1.5, timeout_s=20))
    grantee = Account.create().address
    start = nonce(chain, client.sender)
    with automine_off(chain):
        thread, outcome = in_background(lambda: client.grant_role("coordinator", grantee))
        wait_until(lambda: len(sent) >= 1)
        wait_until(lambda: chain.rpc("eth_getTransactionByHash", [sent[0]]) is not None)  # it reached the pool
        chain.rpc("anvil_dropTransaction", [sent[0]])
        assert chain.rpc("eth_getTransactionByHash", [sent[0]]) is None  # gone from the pool
        wait_until(lambda: len(sent) >= 2)
        assert sent[1] == sent[0]  # the same signed transaction, sent again
        wait_until(lambda: chain.rpc("eth_getTransactionByHash", [sent[0]]) is not None)  # back in the pool
        chain.rpc("evm_mine", [])
        result = finished(thread, outcome)
    assert result.tx_hash == sent[0]
    assert nonce(chain, client.sender) == start + 1
    assert client.has_role("coordinator", grantee)


def test_a_replacement_stops_at_the_cap() -> None:
    class Eth:
        gas_price = 0
        max_priority_fee = 1 * GWEI

        def get_block(self, tag: str) -> dict[str, int]:
            return {"baseFeePerGas": 4 * GWEI}

    class W3:
        eth = Eth()

    tx = {"maxFeePerGas": 9 * GWEI, "maxPriorityFeePerGas": 1 * GWEI}
    assert transactions.bumped_fees(tx, W3(), TxPolicy()) == {"maxFeePerGas": 10125 * GWEI // 1000,
                                                            "maxPriorityFeePerGas": 1125 * GWEI // 1000}
    assert transactions.bumped_fees(tx, W3(), TxPolicy(max_fee_wei=10 * GWEI)) is None  # no room for +12.5 %
    assert transactions.bumped_fees({"gasPrice": 8 * GWEI}, W3(), TxPolicy(max_fee_wei=9 * GWEI)) == {"gasPrice": 9 * GWEI}


def test_a_legacy_gas_price_over_the_cap_is_refused_in_one_sentence() -> None:
    with pytest.raises(FeeCapError, match=r"^the chain's gas price is 30 gwei, over the cap of 20 gwei; .*max_fee_gwei"):
        transactions.check_fee_cap({"gasPrice": 30 * GWEI}, TxPolicy(max_fee_wei=20 * GWEI))
    transactions.check_fee_cap({"gasPrice": 20 * GWEI}, TxPolicy(max_fee_wei=20 * GWEI))


class Killed(BaseException):
    """The sender's process dies here (nothing after the send runs)."""


def killed_after_sending(monkeypatch: pytest.MonkeyPatch, client: FederationClient, call: Callable[[FederationClient], Any]) -> None:
    def die(*args: Any, **kwargs: Any) -> None:
        raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(federation_module, "await_receipt", die)
        with pytest.raises(Killed):
            call(client)


def test_a_killed_sender_restarted_adopts_its_transaction_in_flight_without_a_duplicate(
    chain: TestChain, sent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = TxPolicy(replace_after_s=5, timeout_s=20, journal_dir=tmp_path)
    client = admin_client(chain, policy)
    grantee = Account.create().address
    start = nonce(chain, client.sender)
    with automine_off(chain):
        killed_after_sending(monkeypatch, client, lambda c: c.grant_role("coordinator", grantee))
        assert len(list((tmp_path / "transactions").iterdir())) == 1  # journaled before it left
        restarted = FederationClient(chain.w3, client.address, account=chain.keys[0], policy=policy)
        thread, outcome = in_background(lambda: restarted.grant_role("coordinator", grantee))
        time.sleep(0.3)
        assert len(sent) == 1 and nonce(chain, client.sender, "pending") == start + 1  # nothing sent again
        chain.rpc("evm_mine", [])
        result = finished(thread, outcome)
    assert result.tx_hash == sent[0]
    assert nonce(chain, client.sender) == start + 1  # one transaction with that nonce: the action done once
    assert client.has_role("coordinator", grantee)
    assert list((tmp_path / "transactions").iterdir()) == []


def test_a_killed_senders_dropped_transaction_is_resent_before_the_next_call_so_no_nonce_is_skipped(
    chain: TestChain, sent: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = TxPolicy(replace_after_s=0.2, timeout_s=20, journal_dir=tmp_path)
    client = admin_client(chain, policy)
    coordinator, aggregator = Account.create().address, Account.create().address
    start = nonce(chain, client.sender)
    with automine_off(chain):
        killed_after_sending(monkeypatch, client, lambda c: c.grant_role("coordinator", coordinator))
        chain.rpc("anvil_dropTransaction", [sent[0]])  # and the pool lost it meanwhile
    restarted = FederationClient(chain.w3, client.address, account=chain.keys[0], policy=policy)
    restarted.grant_role("aggregator", aggregator)  # a different call: the journaled one goes first
    assert sent[1] == sent[0]  # resent as it was
    assert chain.w3.eth.get_transaction(sent[0])["nonce"] == start  # type: ignore[arg-type]
    assert nonce(chain, client.sender) == start + 2
    assert client.has_role("coordinator", coordinator) and client.has_role("aggregator", aggregator)
    assert list((tmp_path / "transactions").iterdir()) == []


def receipt_exists(chain: TestChain, tx_hash: str) -> bool:
    return chain.w3.provider.make_request("eth_getTransactionReceipt", [tx_hash]).get("result") is not None  # type: ignore[arg-type]


def test_a_command_reports_its_transaction_only_once_it_is_confirmations_deep(chain: TestChain) -> None:
    client = admin_client(chain, TxPolicy(replace_after_s=0.5, timeout_s=20, confirmations=2))
    grantee = Account.create().address
    thread, outcome = in_background(lambda: client.grant_role("coordinator", grantee))
    wait_until(lambda: client.has_role("coordinator", grantee))  # mined (automine), not yet deep
    mined_at = int(chain.w3.eth.block_number)
    chain.rpc("evm_mine", [])
    time.sleep(0.3)
    assert thread.is_alive()  # one block on top: not yet
    chain.rpc("evm_mine", [])
    result = finished(thread, outcome)
    assert result.block == mined_at and int(chain.w3.eth.block_number) >= result.block + 2


def test_a_transaction_reorganized_out_before_it_is_deep_enough_is_sent_again(chain: TestChain, sent: list[str]) -> None:
    client = admin_client(chain, TxPolicy(replace_after_s=0.3, timeout_s=20, confirmations=1))
    grantee = Account.create().address
    start = nonce(chain, client.sender)
    thread, outcome = in_background(lambda: client.grant_role("coordinator", grantee))
    wait_until(lambda: client.has_role("coordinator", grantee))
    chain.rpc("anvil_reorg", [1, []])  # its block replaced by one without it
    assert not client.has_role("coordinator", grantee)
    wait_until(lambda: len(sent) >= 2)  # gone from the chain and the pool: sent again (mined at once)
    wait_until(lambda: receipt_exists(chain, sent[1]))  # the spy sees it first: mined before the block that deepens it
    chain.rpc("evm_mine", [])
    result = finished(thread, outcome)
    assert result.tx_hash == sent[0] and nonce(chain, client.sender) == start + 1
    assert client.has_role("coordinator", grantee)


def test_a_receipts_block_the_node_cannot_find_mid_reorganization_is_not_yet_deep(
    chain: TestChain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """anvil in the middle of a reorganization can name a receipt whose block it no longer finds: that
    transaction is not deep yet (asked again at the next poll), not a failed command."""
    tx_hash = chain.w3.eth.send_transaction({"from": chain.w3.eth.accounts[0], "to": chain.w3.eth.accounts[1], "value": 1})
    for _ in range(2):
        chain.rpc("evm_mine", [])
    flight = transactions.Flight(sender=chain.w3.eth.accounts[0], tx={"nonce": 0}, versions=[(Web3.to_hex(tx_hash), None)])
    assert transactions._receipt(chain.w3, flight, 2) is not None
    monkeypatch.setattr(chain.w3.eth, "get_block", lambda *_: (_ for _ in ()).throw(transactions.BlockNotFound("gone")))
    assert transactions._receipt(chain.w3, flight, 2) is None
