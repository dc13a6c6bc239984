"""openRound, finalizeRound, publishAgreement and approve cost the same gas at 1,000 parties and
after many rounds as in a fresh federation with a few parties.

Each operation is measured twice in the same shape (one round open, the same arguments: the same
terms CID, since a raw CID passes the codec check a few gas sooner than a dag-pb one): early
(a few parties, no past rounds) and late (1,000 admitted parties, every one of them recorded in
the round being finalized, many past rounds). The gas compared is the receipt's minus the
transaction's calldata cost, which differs only by the zero bytes of an address or timestamp
(4 gas instead of 16 each). What is left must be equal, not just close: each operation touches a
fixed set of slots whose warm/cold state and zero/non-zero transitions are the same early and
late (the round count, agreement version and indexed count are non-zero → non-zero from the
second write on; a new round's slots and its place in the open-round list start at zero each
time, since closing a round zeroes them; finalizing reads one round slot whatever its updates:
the inline bits are counted, the overflow updates are a counter in the same slot).

Fills the chain fast: joins, approvals and past rounds sent by the node's unlocked admin without
a gas estimate or a wait each, the round filled by four relayed batches of signed updates.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.contract_constants import MAX_BATCH_SIZE
from ledger.chain.federation import FederationClient, TxResult
from tests.contracts.conftest import CONFIG, METRICS, MODEL, TERMS, TERMS_2, UPDATE
from tests.fixtures_chain import TestChain

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PARTIES = 1_000
PAST_ROUNDS = 60
CHUNK = 200  # receipts per JSON-RPC batch


def execution_gas(w3: Web3, result: TxResult) -> int:
    """Gas used minus the calldata's cost (16 per non-zero byte, 4 per zero byte)."""
    data = bytes(w3.eth.get_transaction(result.tx_hash)["input"])
    zeros = data.count(0)
    return result.gas_used - 16 * (len(data) - zeros) - 4 * zeros


def send_many(w3: Web3, sender: str, to: str, calldata: list[str]) -> None:
    """Send one transaction per calldata from the node's unlocked ``sender``, without a gas estimate
    or a wait per transaction; every one must succeed."""
    send = w3.provider.make_request
    hashes = [
        send("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(250_000)}])["result"]  # type: ignore[arg-type]
        for data in calldata
    ]
    w3.eth.wait_for_transaction_receipt(hashes[-1], timeout=120)  # mined in nonce order: the others are too
    for start in range(0, len(hashes), CHUNK):
        receipts = w3.provider.make_batch_request(  # type: ignore[attr-defined]
            [("eth_getTransactionReceipt", [h]) for h in hashes[start : start + CHUNK]]
        )
        assert all(int(r["result"]["status"], 16) == 1 for r in receipts)


def join(admin: FederationClient, keys: list[LocalAccount], deadline: int) -> None:
    """Each party accepts the current agreement (the admin relays its signature)."""
    version = admin.agreement_version()
    send_many(admin.w3, admin.sender, admin.address, [
        admin.contract.functions.join(
            key.address, version, deadline, admin.sign_join(key, version=version, deadline=deadline)
        )._encode_transaction_data()
        for key in keys
    ])


def approve(admin: FederationClient, keys: list[LocalAccount]) -> None:
    send_many(admin.w3, admin.sender, admin.address,
              [admin.contract.functions.approve(key.address)._encode_transaction_data() for key in keys])


def measure_round(admin: FederationClient, chain: TestChain, keys: list[LocalAccount]) -> dict[str, int]:
    """Execution gas of one round with ``keys`` as its updates, no other round open: openRound,
    publishAgreement while it is open (one open round to move forward), finalizeRound."""
    w3, deadline = admin.w3, chain.now() + 3600
    round_id, opened = admin.open_round(base_cid=MODEL, deadline=deadline, min_updates=1, config_hash=CONFIG)
    signed = [
        admin.sign_update(key, round_id, cid=UPDATE, samples=10, metrics_hash=METRICS, deadline=deadline) for key in keys
    ]
    for start in range(0, len(signed), MAX_BATCH_SIZE):
        batch = signed[start : start + MAX_BATCH_SIZE]
        assert len(admin.submit_updates(round_id, batch).recorded) == len(batch)
    assert admin.round(round_id).submissions == len(keys)
    _, published = admin.publish_agreement(TERMS_2)
    finalized = admin.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS)
    return {name: execution_gas(w3, tx) for name, tx in
            (("openRound", opened), ("publishAgreement", published), ("finalizeRound", finalized))}


def test_governance_gas_does_not_grow_with_parties_or_past_rounds(chain: TestChain) -> None:
    admin = chain.deploy()
    admin.publish_agreement(TERMS)
    w3 = admin.w3
    keys = [Account.create() for _ in range(PARTIES)]
    few, many = keys[:4], keys[4:]

    join(admin, few, chain.now() + 3600)
    approve(admin, few[:-1])
    approve_early = execution_gas(w3, admin.approve(few[-1].address))  # the 4th bit index handed out
    early = measure_round(admin, chain, few)

    deadline = chain.now() + 3600
    opening = admin.contract.functions.openRound(0x55, bytes(32), deadline, 1, CONFIG)._encode_transaction_data()
    send_many(w3, admin.sender, admin.address, [opening] * PAST_ROUNDS)
    send_many(w3, admin.sender, admin.address, [
        admin.contract.functions.abortRound(r, "past")._encode_transaction_data()
        for r in range(admin.round_count() - PAST_ROUNDS + 1, admin.round_count() + 1)
    ])
    assert admin.open_round_ids() == [] and admin.round_count() == PAST_ROUNDS + 1

    join(admin, keys, chain.now() + 3600)  # the first four again (a new version), the rest anew
    approve(admin, many[:-1])
    approve_late = execution_gas(w3, admin.approve(many[-1].address))  # the 1,000th
    assert admin.participant_count() == PARTIES
    late = measure_round(admin, chain, keys)

    assert approve_late == approve_early
    assert late == early
