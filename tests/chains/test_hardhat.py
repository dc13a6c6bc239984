"""A federated round end to end through the CLI on a Hardhat node instead of anvil, so that fedledger does
not lean on one node's quirks: deploy, a keystore party funded by `key fund` and a party signing from the
environment join and are approved, a round is opened, both parties train as separate `node train`
processes, `aggregate` finalizes it, and `audit verify` passes. Then what anvil does not test: Hardhat's
pool, like geth's, takes a replacement only at 10 % higher fees, and it words its refusals of a transaction
sent again otherwise than anvil.

What differs between Hardhat and anvil, and what fedledger does about it, is in README.md ("Running on a
real network"); fedledger itself calls no node-specific (cheat) RPC.
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
from web3.exceptions import Web3RPCError

from deploy.hardhat import HardhatProcess
from ledger.chain import transactions
from ledger.chain.federation import FederationClient
from ledger.chain.transactions import GWEI, TxPolicy
from ledger.errors import ChainError
from ledger.workspace import Workspace
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import PASSWORD, finish, make_federation, start

pytestmark = pytest.mark.hardhat


def test_a_missing_hardhat_is_an_error_naming_npm_ci(tmp_path: Path) -> None:
    """CI installs Hardhat with `npm ci`: without it the tests here fail (the fixture raises this), never skip."""
    with pytest.raises(ChainError, match=r"Hardhat \(.*\) is not installed; run `npm ci`"):
        HardhatProcess(cli=tmp_path / "node_modules/hardhat/internal/cli/bootstrap.js").start()


@pytest.mark.slow
def test_a_round_end_to_end_on_a_hardhat_node(hardhat: HardhatProcess, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(hardhat.rpc_url))
    assert w3.eth.chain_id == 31337 and "HardhatNetwork" in w3.client_version  # not an anvil answering
    federation = make_federation(tmp_path, rpc=hardhat.rpc_url)  # init --rpc, deploy, agreement, genesis model
    w = federation.w
    deployment = Workspace.load(federation.workspace.root).config["deployment"]
    assert deployment["chain_id"] == 31337 and w3.eth.get_code(deployment["address"])

    # Alice: a keystore, funded from the node's first dev account (unlocked on Hardhat as on anvil).
    alice_env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}
    alice = ok(cli("key", "new", "alice", "--light-kdf", "--json", *w, env=alice_env)).json()["address"]
    ok(cli("key", "fund", "alice", "--amount", "1", *w))
    ok(cli("participant", "join", "--key", "alice", *w, env=alice_env))
    ok(cli("participant", "approve", alice, *w))
    # Bob: Hardhat's third dev account, signing from $FEDLEDGER_PRIVATE_KEY.
    bob_key = hardhat.dev_accounts(3)[2]
    bob = federation.admit("bob", Web3.to_hex(bob_key.key))
    assert bob == bob_key.address

    # A party may not approve anyone: the contract's revert comes back as fedledger's sentence.
    refused = cli("participant", "approve", alice, *w, env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(bob_key.key)})
    assert refused.exit_code != 0 and "lacks the admin role" in refused.error_line(alone=False)

    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=2)
    train = ("node", "train", "--round", str(round_id), "--of", "2", "--json", *w)
    parties = {
        "alice": start(*train, "--shard", "0", "--key", "alice", env=alice_env),
        "bob": start(*train, "--shard", "1", env=federation.parties["bob"]["env"]),
    }
    updates = {name: ok(finish(process)).json() for name, process in parties.items()}
    assert {u["participant"] for u in updates.values()} == {alice, bob}
    for update in updates.values():
        assert w3.eth.get_transaction_receipt(update["tx_hash"])["status"] == 1

    aggregated = ok(fedledger("aggregate", "--round", str(round_id), "--json", *w)).json()
    assert sorted(i["participant"] for i in aggregated["included"]) == sorted([alice, bob])
    assert aggregated["rejected"] == []
    status = ok(cli("round", "status", str(round_id), "--json", *w)).json()
    assert status["state"] == "finalized" and status["global_cid"] == aggregated["global_cid"]

    verified = ok(cli("audit", "verify", "--json", *w)).json()
    assert verified["ok"] is True, [c for c in verified["checks"] if not c["ok"]]


# ------------------------------------------------------------------ transactions that sit in Hardhat's pool


@contextmanager
def automine_off(w3: Web3) -> Iterator[None]:
    """Transactions sit in the pool until ``evm_mine``; afterwards what is left is mined and automine is back."""
    rpc(w3, "evm_setAutomine", [False])
    try:
        yield
    finally:
        rpc(w3, "evm_mine", [])
        rpc(w3, "evm_setAutomine", [True])


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in response, response
    return response["result"]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_a_stuck_transaction_is_replaced_with_fees_hardhat_accepts(
    hardhat: HardhatProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anvil takes a replacement at any higher fee; Hardhat, like geth, wants 10 % more: fedledger's 12.5 % passes."""
    w3 = Web3(Web3.HTTPProvider(hardhat.rpc_url))
    admin = hardhat.dev_accounts(1)[0]
    address = FederationClient.deploy(w3)[0].address
    client = FederationClient(w3, address, account=admin, policy=TxPolicy(replace_after_s=0.3, timeout_s=20))
    sent: list[str] = []
    real = transactions._send_raw

    def spy(w3: Web3, raw: str, *, again: bool) -> None:
        real(w3, raw, again=again)  # raises if Hardhat refuses a replacement
        sent.append(Web3.to_hex(Web3.keccak(hexstr=raw)))

    monkeypatch.setattr(transactions, "_send_raw", spy)
    grantee = Account.create().address
    start = w3.eth.get_transaction_count(admin.address)
    outcome: dict[str, Any] = {}

    def grant() -> None:
        try:
            outcome["result"] = client.grant_role("coordinator", grantee)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    with automine_off(w3):
        thread = threading.Thread(target=grant, daemon=True)
        thread.start()
        wait_until(lambda: len(sent) >= 2)  # replaced after 0.3 s in the pool
        rpc(w3, "evm_mine", [])
        thread.join(20)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["result"].tx_hash in sent[1:]  # a replacement was mined, not the original
    assert w3.eth.get_transaction_count(admin.address) == start + 1
    assert client.has_role("coordinator", grantee)


def test_hardhats_refusals_of_a_transaction_sent_again_are_understood(hardhat: HardhatProcess) -> None:
    """A resend or replacement that the node answers with "known", "underpriced" or "nonce too low" is no error
    (the receipt tells which version won): Hardhat words each refusal otherwise than anvil and geth do."""
    w3 = Web3(Web3.HTTPProvider(hardhat.rpc_url))
    sender = hardhat.dev_accounts(8)[7]

    def signed(tx: dict[str, Any]) -> str:
        return Web3.to_hex(sender.sign_transaction(tx).raw_transaction)

    with automine_off(w3):
        fee = 2 * int(w3.eth.get_block("pending")["baseFeePerGas"]) + GWEI
        tx = {"to": sender.address, "value": 1, "gas": 21000, "chainId": 31337, "maxPriorityFeePerGas": GWEI,
              "maxFeePerGas": fee, "nonce": w3.eth.get_transaction_count(sender.address, "pending")}
        transactions._send_raw(w3, signed(tx), again=False)
        with pytest.raises(Web3RPCError, match="Known transaction"):  # a first send that is refused still raises
            transactions._send_raw(w3, signed(tx), again=False)
        transactions._send_raw(w3, signed(tx), again=True)  # "Known transaction: 0x…"
        transactions._send_raw(w3, signed({**tx, "maxFeePerGas": fee + fee // 20}), again=True)  # "… underpriced …"
        rpc(w3, "evm_mine", [])
        transactions._send_raw(w3, signed(tx), again=True)  # "Transaction nonce too low. …"
