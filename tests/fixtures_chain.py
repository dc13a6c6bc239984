"""Chain fixtures: one real anvil per test session, isolated per test by snapshot/revert.

- ``anvil``: the session's AnvilProcess (127.0.0.1, free port, stopped by PID).
- ``anvil_w3``: a Web3 connected to it; ``anvil_keys``: its ten funded dev accounts as LocalAccounts.
- ``chain``: a :class:`TestChain` on anvil for one test; every change is reverted afterwards.
- ``federation``: a fresh Federation deployment on ``chain``, admin client (dev account 0).
- ``memory_chain``: a :class:`TestChain` on the in-process EthereumTesterProvider.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3

from deploy.anvil import AnvilProcess
from ledger.chain.federation import FederationClient
from ledger.chain.in_process_chain import in_process_web3

DEV_MNEMONIC = "test test test test test test test test test test test junk"


class TestChain:
    """A Web3 plus the clock and state controls tests need, for anvil or the in-process chain."""

    __test__ = False

    def __init__(self, w3: Web3, *, keys: list[LocalAccount] | None = None) -> None:
        self.w3 = w3
        self.keys = keys or []
        self.in_process = isinstance(w3.provider, EthereumTesterProvider)

    def now(self) -> int:
        """Timestamp of the latest block: what the next transaction sees (or a little more)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> int:
        """Mine a block ``seconds`` later than the latest one; returns its timestamp."""
        target = self.now() + seconds
        if self.in_process:
            self.w3.provider.ethereum_tester.time_travel(target)  # type: ignore[attr-defined]
        else:
            self.rpc("evm_mine", [target])
        return self.now()

    def rpc(self, method: str, params: list[Any]) -> Any:
        response = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in response:
            raise RuntimeError(f"{method}: {response['error']}")
        return response.get("result")

    def snapshot(self) -> Any:
        if self.in_process:
            return self.w3.provider.ethereum_tester.take_snapshot()  # type: ignore[attr-defined]
        return self.rpc("evm_snapshot", [])

    def revert(self, snapshot: Any) -> None:
        if self.in_process:
            self.w3.provider.ethereum_tester.revert_to_snapshot(snapshot)  # type: ignore[attr-defined]
        else:
            self.rpc("evm_revert", [snapshot])

    def new_account(self, *, fund_wei: int = 10**18) -> LocalAccount:
        """A fresh key, funded from the node's first account."""
        account: LocalAccount = Account.create()
        if fund_wei:
            if self.in_process:
                tx = self.w3.eth.send_transaction(
                    {"from": self.w3.eth.accounts[0], "to": account.address, "value": fund_wei}
                )
                self.w3.eth.wait_for_transaction_receipt(tx)
            else:
                self.rpc("anvil_setBalance", [account.address, hex(fund_wei)])
        return account

    def deploy(self) -> FederationClient:
        """A fresh Federation, admin = the node's first unlocked account."""
        return FederationClient.deploy(self.w3)[0]


@pytest.fixture(scope="session")
def anvil() -> Iterator[AnvilProcess]:
    process = AnvilProcess().start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def anvil_w3(anvil: AnvilProcess) -> Web3:
    return Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="session")
def anvil_keys() -> list[LocalAccount]:
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(10)]


@pytest.fixture
def chain(anvil_w3: Web3, anvil_keys: list[LocalAccount]) -> Iterator[TestChain]:
    test_chain = TestChain(anvil_w3, keys=anvil_keys)
    snapshot = test_chain.snapshot()
    try:
        yield test_chain
    finally:
        test_chain.revert(snapshot)


@pytest.fixture
def federation(chain: TestChain) -> FederationClient:
    return chain.deploy()


@pytest.fixture
def memory_chain() -> TestChain:
    return TestChain(in_process_web3())
