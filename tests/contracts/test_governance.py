"""Governance limits: bounded rounds, a recorded abort, a delayed two-step admin transfer, a
publishAgreement that walks open rounds only, and time-dependent calls judged at the next block."""

from __future__ import annotations

import time

import pytest
import requests
from web3 import Web3
from web3.exceptions import TransactionNotFound

from deploy.anvil import AnvilProcess
from ledger.index.queries import rounds
from ledger.contract_constants import MAX_ROUND_DURATION
from ledger.chain.contract_errors import (
    AccessControlEnforcedDefaultAdminDelay,
    AccessControlEnforcedDefaultAdminRules,
    AccessControlUnauthorizedAccount,
    FederationDeadlineTooFar,
    FederationInvalidMinimum,
    FederationReasonRequired,
    FederationRoundClosed,
)
from ledger.errors import InvalidInputError
from ledger.chain.federation import FederationClient, _cid_parts, send_transaction
from ledger.index.index import LedgerIndex
from tests.contracts.conftest import CONFIG, MODEL, TERMS, TERMS_2, Fed, submit


def test_a_round_longer_than_the_maximum_is_refused(fed: Fed) -> None:
    assert fed.admin.contract.functions.MAX_ROUND_DURATION().call() == MAX_ROUND_DURATION  # the CLI's copy
    now = fed.chain.now()
    with pytest.raises(FederationDeadlineTooFar) as caught:
        fed.admin.open_round(base_cid=MODEL, deadline=now + MAX_ROUND_DURATION + 60, min_updates=1, config_hash=CONFIG)
    assert caught.value.deadline == now + MAX_ROUND_DURATION + 60
    assert "at most 30 days" in str(caught.value)
    fed.admin.open_round(base_cid=MODEL, deadline=now + MAX_ROUND_DURATION - 60, min_updates=1, config_hash=CONFIG)


def test_a_round_asking_for_no_update_is_refused(fed: Fed) -> None:
    with pytest.raises(FederationInvalidMinimum):
        fed.admin.open_round(base_cid=MODEL, deadline=fed.chain.now() + 60, min_updates=0, config_hash=CONFIG)
    assert fed.admin.round_count() == 0


def test_governance_aborts_an_open_round_with_a_reason_the_audit_lists(fed: Fed, tmp_path) -> None:
    _, client = fed.party()
    round_id = fed.open_round(seconds=MAX_ROUND_DURATION - 60, min_updates=5)
    submit(client, round_id)
    assert fed.admin.open_round_ids() == [round_id]
    with pytest.raises(AccessControlUnauthorizedAccount) as caught:
        client.abort_round(round_id, reason="not mine to abort")
    assert caught.value.role == "admin"
    with pytest.raises(InvalidInputError, match="needs a reason"):
        fed.admin.abort_round(round_id, reason="  ")
    with pytest.raises(FederationReasonRequired):  # the contract itself refuses an empty reason too
        send_transaction(fed.chain.w3, fed.admin.contract.functions.abortRound(round_id, ""), account=None)

    fed.admin.abort_round(round_id, reason="wrong base model")
    assert fed.admin.round(round_id).state == "cancelled"
    assert fed.admin.open_round_ids() == []
    with pytest.raises(FederationRoundClosed):
        fed.admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", fed.admin) as index:
        index.sync()
        (row,) = rounds(index)
    assert (row["state"], row["abort_reason"], row["closed_by"], row["submissions"]) == (
        "cancelled", "wrong base model", fed.admin.sender, 1
    )


def test_the_admin_role_moves_only_in_two_steps_after_the_delay(chain) -> None:
    admin = FederationClient.deploy(chain.w3, admin_delay=3600)[0]
    successor = chain.new_account()
    with pytest.raises(AccessControlEnforcedDefaultAdminRules):
        admin.grant_role("admin", successor.address)
    admin.begin_admin_transfer(successor.address)
    info = admin.admin()
    assert (info.admin, info.pending, info.delay) == (admin.sender, successor.address, 3600)
    with pytest.raises(AccessControlEnforcedDefaultAdminDelay):
        admin.with_account(successor).accept_admin_transfer()
    chain.advance(3601)
    admin.with_account(successor).accept_admin_transfer()
    assert admin.has_role("admin", successor.address) and not admin.has_role("admin", admin.sender)
    with pytest.raises(AccessControlUnauthorizedAccount):
        admin.publish_agreement(TERMS)
    admin.with_account(successor).publish_agreement(TERMS)


def test_publishing_an_agreement_costs_the_same_after_a_thousand_closed_rounds(fed: Fed) -> None:
    """publishAgreement updates the open rounds only, not every round since the oldest open one."""
    kept_open = fed.open_round(seconds=MAX_ROUND_DURATION - 60)
    before = fed.admin.publish_agreement(TERMS_2)[1].gas_used

    first = fed.admin.round_count() + 1
    deadline = fed.chain.now() + 3600
    codec, digest = _cid_parts(MODEL)
    calls = []
    for round_id in range(first, first + 1000):
        calls.append((fed.admin.contract.functions.openRound(codec, digest, deadline, 1, CONFIG), 200_000))
        calls.append((fed.admin.contract.functions.abortRound(round_id, "closed at once"), 100_000))
    _send_in_batches(fed, calls)
    assert fed.admin.round_count() == first + 999
    assert fed.admin.open_round_ids() == [kept_open]
    after = fed.admin.publish_agreement(TERMS_2)[1].gas_used
    assert after == before


def _send_in_batches(fed: Fed, calls: list, *, per_block: int = 100) -> None:
    """Send many transactions from the admin, ``per_block`` per JSON-RPC batch, each batch mined
    into blocks of its own before the next is sent, and check that the last of each succeeded.

    anvil answers one JSON-RPC batch of thousands of transactions only after minutes, and with
    automine off it silently drops pending transactions that do not fit the next block (seen with
    anvil 1.x: 400 sent, 365 mined, pool empty); batches that fit one block avoid both.
    """
    sender = fed.admin.sender
    nonce = fed.chain.w3.eth.get_transaction_count(sender, "pending")
    fed.chain.rpc("evm_setAutomine", [False])
    try:
        for start in range(0, len(calls), per_block):
            requests_ = [
                {"jsonrpc": "2.0", "id": i, "method": "eth_sendTransaction",
                 "params": [{"from": sender, "to": fed.admin.address, "gas": hex(gas), "nonce": hex(nonce + i),
                             "data": call._encode_transaction_data()}]}
                for i, (call, gas) in enumerate(calls[start:start + per_block], start=start)
            ]
            replies = requests.post(fed.chain.w3.provider.endpoint_uri, json=requests_, timeout=120).json()
            errors = [reply["error"] for reply in replies if "error" in reply]
            assert not errors, errors[:3]
            last = max(replies, key=lambda r: r["id"])["result"]
            while _pending(fed, last):
                fed.chain.rpc("evm_mine", [])
            assert fed.chain.w3.eth.get_transaction_receipt(last)["status"] == 1
    finally:
        fed.chain.rpc("evm_setAutomine", [True])


def _pending(fed: Fed, tx_hash: str) -> bool:
    """Whether ``tx_hash`` is still waiting to be mined."""
    try:
        fed.chain.w3.eth.get_transaction_receipt(tx_hash)
        return False
    except TransactionNotFound:
        return True


def test_a_round_is_cancelled_after_its_deadline_without_mining_a_block_first() -> None:
    """On a chain that mines on demand the latest block predates the deadline; the cancel must be
    judged at the time it is mined, not at that block."""
    with AnvilProcess() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        admin = FederationClient.deploy(w3, admin_delay=0)[0]
        deadline = int(time.time()) + 2
        round_id, _ = admin.open_round(base_cid=MODEL, deadline=deadline, min_updates=1, config_hash=CONFIG)
        while time.time() <= deadline + 1:
            time.sleep(0.25)
        assert w3.eth.get_block("latest")["timestamp"] <= deadline  # nothing was mined since
        admin.cancel_round(round_id)
        assert admin.round(round_id).state == "cancelled"
