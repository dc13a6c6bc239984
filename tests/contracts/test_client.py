"""The Python client itself: locally signed transactions from many threads, input checks, read helpers."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.chain.connection import chain_now
from ledger.errors import (
    ChainError,
    ChainUnreachableError,
    InvalidInputError,
    MalformedCidError,
)
from ledger.chain.federation import FederationClient
from tests.contracts.conftest import CONFIG, METRICS, MODEL, TERMS, Fed, submit
from tests.fixtures_chain import TestChain


def test_one_local_key_sending_from_many_threads_never_reuses_a_nonce(chain: TestChain) -> None:
    admin_key = chain.new_account()
    admin, deployed = FederationClient.deploy(chain.w3, account=admin_key)
    assert deployed.gas_used > 0 and admin.has_role("admin", admin_key.address)
    admin.publish_agreement(TERMS)
    fed = Fed(chain, admin)
    parties = [fed.party(approve=False) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda party: admin.with_account(admin_key).approve(party[0].address), parties))
    assert {admin.participant(key.address).status for key, _ in parties} == {"admitted"}
    round_id = fed.open_round(min_updates=8)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda party: submit(party[1], round_id), parties))
    assert admin.round(round_id).submissions == 8
    assert sorted(s.participant for s in admin.submissions(round_id)) == sorted(key.address for key, _ in parties)


def test_malformed_inputs_are_refused_before_anything_is_sent(fed: Fed) -> None:
    w3, sender = fed.chain.w3, fed.admin.sender
    before = (w3.eth.get_transaction_count(sender, "pending"), w3.eth.block_number)
    with pytest.raises(InvalidInputError, match="not an Ethereum address"):
        fed.admin.approve("0x1234")
    with pytest.raises(MalformedCidError):
        fed.admin.open_round(base_cid="QmNotACidV1", deadline=fed.chain.now() + 60, min_updates=1, config_hash=CONFIG)
    with pytest.raises(InvalidInputError, match="32 bytes"):
        fed.admin.open_round(base_cid=MODEL, deadline=fed.chain.now() + 60, min_updates=1, config_hash=b"short")
    with pytest.raises(InvalidInputError, match="not a role"):
        fed.admin.grant_role("owner", fed.admin.sender)
    with pytest.raises(InvalidInputError, match="sample count"):
        fed.admin.submit_update(1, cid=MODEL, samples=-1, metrics_hash=METRICS)
    with pytest.raises(InvalidInputError, match="no round 9"):
        fed.admin.round(9)
    with pytest.raises(InvalidInputError, match="no agreement version 5"):
        fed.admin.agreement(5)
    # Nothing was sent: the sender's nonce (pending ones included) and the chain did not move.
    assert (w3.eth.get_transaction_count(sender, "pending"), w3.eth.block_number) == before


def test_participants_lists_every_address_that_ever_joined_in_order(fed: Fed) -> None:
    first, _ = fed.party()
    second, _ = fed.party(approve=False)
    fed.admin.revoke(second.address)
    listed = fed.admin.participants()
    assert [(p.address, p.status, p.index) for p in listed] == [
        (first.address, "admitted", 0),
        (second.address, "revoked", None),  # revoked before admission: it never took a bit
    ]


def test_a_sender_without_ether_gets_a_chain_error_naming_it(fed: Fed) -> None:
    broke = fed.chain.new_account(fund_wei=0)
    fed.admin.grant_role("coordinator", broke.address)
    with pytest.raises(ChainError, match=f"from {broke.address} .*enough ether"):
        fed.admin.with_account(broke).open_round(base_cid=MODEL, deadline=fed.chain.now() + 60, min_updates=1, config_hash=CONFIG)


def test_a_node_that_stopped_answering_is_a_chain_unreachable_error() -> None:
    with AnvilProcess() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        client, _ = FederationClient.deploy(w3)
    with pytest.raises(ChainUnreachableError, match="stopped answering"):
        client.round_count()


def test_reads_at_an_earlier_block_see_the_state_of_that_block(fed: Fed) -> None:
    account, _ = fed.party(approve=False)
    joined_block = fed.chain.w3.eth.block_number
    fed.admin.approve(account.address)
    fed.admin.publish_agreement(MODEL)
    assert fed.admin.participant(account.address, block=joined_block).status == "pending"
    assert fed.admin.participant(account.address).status == "admitted"
    assert fed.admin.agreement(block=joined_block).version == 1
    assert fed.admin.agreement().terms_cid == MODEL


def test_deadlines_count_from_the_wall_clock_when_the_chain_has_been_idle(
    fed: Fed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle or restarted local chain's latest block can be hours old; a deadline counted from it
    would already be past when the next block (stamped with the wall clock) arrives."""
    latest = int(fed.chain.w3.eth.get_block("latest")["timestamp"])
    monkeypatch.setattr("ledger.chain.connection.time.time", lambda: latest + 7200.0)
    assert chain_now(fed.chain.w3) == latest + 7200
    monkeypatch.setattr("ledger.chain.connection.time.time", lambda: latest - 7200.0)  # chain time ahead (evm_increaseTime)
    assert chain_now(fed.chain.w3) == latest


def test_a_read_the_node_cannot_answer_is_a_chain_error_about_the_node(fed: Fed) -> None:
    future = int(fed.chain.w3.eth.block_number) + 1000  # like a past block a restarted or pruned node no longer holds
    with pytest.raises(ChainError, match="the node refused to answer a read of the contract .*; point --rpc at a node"):
        fed.admin.agreement_version(block=future)
