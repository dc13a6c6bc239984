"""The relay refuses every bad submission with the contract error (or input error) that names it, on a
real anvil and over real HTTP; its own settings and the party's --relay URL are checked too."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3

from deploy.anvil import free_port
from ledger.chain.federation import FederationClient
from ledger.chain.keys import create_keystore
from ledger.workspace import Workspace
from ledger.contract_constants import RoundMessageKind
from ledger.ipfs.cid import RAW, cid_from_parts
from node.services.relay_service import key_document, message_document, request_document
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome
from tests.relay.conftest import BASE, RelayUnderTest, make_federation, running_relay

pytestmark = pytest.mark.anvil
ADVERTISE, REVEAL = RoundMessageKind.ADVERTISE, RoundMessageKind.REVEAL


@pytest.fixture
def relayed(chain: TestChain, tmp_path: Path) -> Iterator[RelayUnderTest]:
    with running_relay(make_federation(chain), tmp_path) as relay:
        yield relay


def test_a_valid_update_is_answered_with_its_transaction_and_block(relayed: RelayUnderTest) -> None:
    party = relayed.federation.gasless_party()
    status, answer = relayed.post(relayed.pinned(party))
    assert status == 200 and answer["recorded"] is True, answer
    assert answer["relayer"] == relayed.federation.admin.sender and answer["participant"] == party.address
    receipt = relayed.federation.chain.w3.eth.get_transaction_receipt(answer["tx_hash"])
    assert receipt["blockNumber"] == answer["block"] and receipt["status"] == 1
    assert relayed.federation.admin.has_submitted(relayed.federation.round_id, party.address)
    assert relayed.relay.status()["recorded"] == 1


def _forged(relayed: RelayUnderTest) -> dict[str, Any]:
    party = relayed.federation.gasless_party()
    document = relayed.pinned(party)
    other = relayed.federation.gasless_party()  # a member's signature, claimed for another member
    document["signature"] = request_document(1, relayed.federation.signed(other))["signature"]
    return document


def _replayed(relayed: RelayUnderTest) -> dict[str, Any]:
    document = relayed.pinned(relayed.federation.gasless_party())
    assert relayed.post(document)[0] == 200
    return document


def _signed_elsewhere(relayed: RelayUnderTest, *, chain_id: int | None = None, contract: str | None = None) -> dict[str, Any]:
    admin = relayed.federation.admin
    party = relayed.federation.gasless_party()
    elsewhere = FederationClient(admin.w3, contract or admin.address)
    elsewhere._chain_id = chain_id or admin.chain_id  # noqa: SLF001 - a signature for another domain
    cid = relayed.store.add_bytes(b"update signed for another deployment")
    signed = elsewhere.sign_update(party, relayed.federation.round_id, cid=cid, samples=10, metrics_hash=b"\x44" * 32,
                                   deadline=2**40)
    return request_document(relayed.federation.round_id, signed)


def _suspended(relayed: RelayUnderTest) -> dict[str, Any]:
    party = relayed.federation.gasless_party()
    relayed.federation.admin.suspend(party.address)
    return relayed.pinned(party)


def _expired(relayed: RelayUnderTest) -> dict[str, Any]:
    return relayed.pinned(relayed.federation.gasless_party(), deadline=relayed.federation.chain.now() - 1)


def _closed_round(relayed: RelayUnderTest) -> dict[str, Any]:
    document = relayed.pinned(relayed.federation.gasless_party())
    relayed.federation.admin.abort_round(relayed.federation.round_id, reason="closed for the test")
    return document


def _not_in_store(relayed: RelayUnderTest) -> dict[str, Any]:
    return request_document(relayed.federation.round_id, relayed.federation.signed(relayed.federation.gasless_party()))


def _bad_cid(relayed: RelayUnderTest) -> dict[str, Any]:
    return {**relayed.pinned(relayed.federation.gasless_party()), "cid": "bafy-not-a-cid"}


CASES: dict[str, tuple[Callable[[RelayUnderTest], dict[str, Any]], int, str]] = {
    "forged signature": (_forged, 422, "FederationInvalidSignature"),
    "replayed": (_replayed, 422, "FederationAlreadySubmitted"),
    "another chain id": (lambda r: _signed_elsewhere(r, chain_id=r.federation.admin.chain_id + 1), 422, "FederationInvalidSignature"),
    "another contract": (lambda r: _signed_elsewhere(r, contract=Account.create().address), 422, "FederationInvalidSignature"),
    "suspended signer": (_suspended, 422, "FederationNotParticipant"),
    "non-member signer": (lambda r: r.pinned(r.federation.gasless_party(admit=False)), 422, "FederationNotParticipant"),
    "expired deadline": (_expired, 422, "FederationSignatureExpired"),
    "closed round": (_closed_round, 422, "FederationRoundClosed"),
    "blob not in store": (_not_in_store, 422, "ContentNotFoundError"),
    "malformed CID": (_bad_cid, 400, "MalformedCidError"),
    "missing field": (lambda r: {"participant": Account.create().address}, 400, "InvalidInputError"),
    "samples over uint64": (lambda r: {**r.pinned(r.federation.gasless_party()), "samples": 2**64}, 400, "InvalidInputError"),
    "bad signature hex": (lambda r: {**r.pinned(r.federation.gasless_party()), "signature": "0x12"}, 400, "InvalidInputError"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_submission_is_refused_with_its_named_reason(relayed: RelayUnderTest, case: str) -> None:
    make, status, error = CASES[case]
    document = make(relayed)
    w3, relayer = relayed.federation.chain.w3, relayed.federation.admin.sender
    before = (w3.eth.get_transaction_count(relayer), w3.eth.get_balance(relayer), relayed.relay.status()["batches"])
    got_status, answer = relayed.post(document)
    assert (got_status, answer["error"], answer["recorded"]) == (status, error, False), answer
    assert answer["message"].endswith(".") and "\n" not in answer["message"]
    # Refused by the relay's own checks, before queueing: nothing batched, nothing sent, no gas spent
    # (the contract would name most of these errors too, but only after the relayer paid for a batch).
    after = (w3.eth.get_transaction_count(relayer), w3.eth.get_balance(relayer), relayed.relay.status()["batches"])
    assert after == before and relayed.relay.status()["queued"] == 0


def test_a_round_message_is_posted_for_a_party_without_ether_and_answered_with_its_transaction(
    relayed: RelayUnderTest,
) -> None:
    party = relayed.federation.gasless_party()
    document = relayed.pinned_message(party, ADVERTISE)
    status, answer = relayed.post_message(document)
    assert status == 200 and answer["posted"] is True, answer
    assert (answer["participant"], answer["kind"], answer["relayer"]) == (party.address, ADVERTISE, relayed.federation.admin.sender)
    [posted] = relayed.federation.admin.round_messages(relayed.federation.round_id)
    assert (posted.party, posted.cid, posted.tx_hash) == (party.address, document["cid"], answer["tx_hash"])
    assert relayed.relay.status()["messages"] == 1 and relayed.relay.status()["batches"] == 0


def _forged_message(relayed: RelayUnderTest) -> dict[str, Any]:
    party, other = relayed.federation.gasless_party(), relayed.federation.gasless_party()
    document = relayed.pinned_message(party, ADVERTISE)
    forged = message_document(1, relayed.federation.signed_message(other, ADVERTISE, document["cid"]))
    return {**document, "signature": forged["signature"]}  # a member's signature, claimed for another member


MESSAGE_CASES: dict[str, tuple[Callable[[RelayUnderTest], dict[str, Any]], int, str, str]] = {
    "forged signature": (_forged_message, 422, "FederationInvalidSignature", "signature was not made by"),
    "expired signature": (lambda r: r.pinned_message(r.federation.gasless_party(), ADVERTISE, deadline=r.federation.chain.now() - 1),
                          422, "FederationSignatureExpired", "expired"),
    "reveal before the deadline": (lambda r: r.pinned_message(r.federation.gasless_party(), REVEAL), 422,
                                   "FederationRevealBeforeDeadline", "deadline"),
    "advertisement by a non-member": (lambda r: r.pinned_message(r.federation.gasless_party(admit=False), ADVERTISE), 422,
                                      "FederationNotParticipant", "pending"),
    "document not in store": (lambda r: message_document(1, r.federation.signed_message(
        r.federation.gasless_party(), ADVERTISE, cid_from_parts(RAW, b"\x77" * 32))), 422, "ContentNotFoundError", "store"),
    "unknown kind": (lambda r: r.pinned_message(r.federation.gasless_party(), 3), 422, "FederationUnknownMessageKind", "kind"),
    "kind over uint8": (lambda r: {**r.pinned_message(r.federation.gasless_party(), ADVERTISE), "kind": 256}, 400,
                        "InvalidInputError", "'kind'"),
    "missing field": (lambda r: {"participant": Account.create().address, "round": 1}, 400, "InvalidInputError", "kind"),
}


def relayer_state(relayed: RelayUnderTest) -> tuple[int, int, int]:
    """The relayer's nonce and balance and the chain's height: unchanged when nothing was sent."""
    w3, relayer = relayed.federation.chain.w3, relayed.federation.admin.sender
    return w3.eth.get_transaction_count(relayer), w3.eth.get_balance(relayer), w3.eth.block_number


@pytest.mark.parametrize("case", list(MESSAGE_CASES))
def test_a_bad_round_message_is_refused_with_its_named_reason_and_nothing_sent(
    relayed: RelayUnderTest, case: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, status, error, words = MESSAGE_CASES[case]
    document = make(relayed)
    sends: list[Any] = []  # refused by the relay's own check: the relayer's client is never asked to send
    monkeypatch.setattr(relayed.relay.federation, "post_signed_round_message", lambda *args: sends.append(args))
    before = relayer_state(relayed)
    got_status, answer = relayed.post_message(document)
    assert (got_status, answer["error"], answer["posted"]) == (status, error, False), answer
    assert words in answer["message"].lower() and answer["message"].endswith(".") and "\n" not in answer["message"]
    # Judged by the contract in a simulation, before anything is sent: no transaction, no gas, no block.
    assert relayer_state(relayed) == before
    assert relayed.relay.status()["messages"] == 0 and relayed.federation.admin.round_messages(relayed.federation.round_id) == []
    assert sends == []


def test_an_encryption_key_is_registered_for_a_party_without_ether_and_answered_with_its_transaction(
    relayed: RelayUnderTest,
) -> None:
    party = Account.create()  # no membership needed: a key comes before joining a secure round's cohort
    status, answer = relayed.post_key(relayed.key(party))
    assert status == 200 and answer["registered"] is True, answer
    assert (answer["participant"], answer["public_key"], answer["relayer"]) == (
        party.address, "0x" + "55" * 32, relayed.federation.admin.sender)
    assert relayed.federation.admin.encryption_key(party.address) == b"\x55" * 32
    assert relayed.relay.status()["keys"] == 1 and relayed.relay.status()["batches"] == 0
    status, answer = relayed.post_key(relayed.key(party, b"\x66" * 32))  # a rotation, signed against the key registered
    assert status == 200 and relayed.federation.admin.encryption_key(party.address) == b"\x66" * 32
    assert relayed.federation.chain.w3.eth.get_balance(party.address) == 0


def _forged_key(relayed: RelayUnderTest) -> dict[str, Any]:
    party, other = Account.create(), Account.create()
    forged = key_document(relayed.federation.signed_key(other))
    return {**relayed.key(party), "signature": forged["signature"]}  # another's signature, claimed for the party


def _replayed_key(relayed: RelayUnderTest) -> dict[str, Any]:
    """A registration signed before the party rotated its key (directly here): replaying it would undo the rotation."""
    party = relayed.federation.chain.new_account()
    document = relayed.key(party)
    relayed.federation.admin.with_account(party).publish_encryption_key(b"\x66" * 32)
    return document


KEY_CASES: dict[str, tuple[Callable[[RelayUnderTest], dict[str, Any]], int, str, str]] = {
    "forged signature": (_forged_key, 422, "FederationInvalidSignature", "signature was not made by"),
    "expired signature": (lambda r: r.key(Account.create(), deadline=r.federation.chain.now() - 1), 422,
                          "FederationSignatureExpired", "expired"),
    "replayed after a rotation": (_replayed_key, 422, "FederationEncryptionKeyChanged", "sign the registration again"),
    "zero key": (lambda r: r.key(Account.create(), bytes(32)), 422, "FederationInvalidEncryptionKey", "not a key"),
    "key not 32 bytes": (lambda r: {**r.key(Account.create()), "public_key": "0x55"}, 400, "InvalidInputError",
                         "'public_key'"),
    "previous key not hex": (lambda r: {**r.key(Account.create()), "previous_key": 7}, 400, "InvalidInputError",
                             "'previous_key'"),
    "missing field": (lambda r: {"participant": Account.create().address, "public_key": "0x" + "55" * 32}, 400,
                      "InvalidInputError", "previous_key"),
}


@pytest.mark.parametrize("case", list(KEY_CASES))
def test_a_bad_encryption_key_is_refused_with_its_named_reason_and_nothing_sent(
    relayed: RelayUnderTest, case: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    make, status, error, words = KEY_CASES[case]
    document = make(relayed)
    sends: list[Any] = []  # refused by the relay's own check: the relayer's client is never asked to send
    monkeypatch.setattr(relayed.relay.federation, "publish_signed_encryption_key", lambda *args: sends.append(args))
    before = relayer_state(relayed)
    registered = relayed.federation.admin.encryption_key(document["participant"])
    got_status, answer = relayed.post_key(document)
    assert (got_status, answer["error"], answer["registered"]) == (status, error, False), answer
    assert words in answer["message"].lower() and answer["message"].endswith(".") and "\n" not in answer["message"]
    # Judged by the contract in a simulation, before anything is sent: no transaction, no gas, no block.
    assert relayer_state(relayed) == before
    assert relayed.federation.admin.encryption_key(document["participant"]) == registered
    assert relayed.relay.status()["keys"] == 0 and relayed.relay.status()["keys_refused"] == (status == 422)
    assert sends == []


def test_a_body_that_is_not_json_is_refused(relayed: RelayUnderTest) -> None:
    status, answer = relayed.post(None, raw=b"{not json")
    assert (status, answer["error"]) == (400, "InvalidInputError") and "not JSON" in answer["message"]


def test_a_duplicate_inside_one_batch_records_the_first_copy_only(chain: TestChain, tmp_path: Path) -> None:
    with running_relay(make_federation(chain), tmp_path, batch_size=2, max_wait_s=30) as relayed:
        document = relayed.pinned(relayed.federation.gasless_party())
        with ThreadPoolExecutor(2) as pool:  # both queued before the batch of two is due
            answers = list(pool.map(lambda _: relayed.post(document), range(2)))
        assert sorted(status for status, _ in answers) == [200, 422], answers
        [(_, refused)] = [a for a in answers if a[0] == 422]
        [(_, recorded)] = [a for a in answers if a[0] == 200]
        assert refused["error"] == "FederationAlreadySubmitted"
        assert recorded["batch"] == 2  # one transaction carried both
        assert relayed.relay.status()["batches"] == 1


def test_relay_serve_refuses_a_batch_size_over_the_contracts_limit(cli: Callable[..., Outcome], tmp_path: Path) -> None:
    outcome = cli("relay", "serve", "--key", "relayer", "--batch-size", "257", "--workdir", str(tmp_path))
    assert outcome.exit_code == 1
    assert "--batch-size must be from 1 to 256" in outcome.error_line()


@pytest.mark.parametrize("url, words", [
    ("localhost:8650", "is not a relay URL"),
    ("http://127.0.0.1:{port}", "cannot reach the relay"),
])
def test_node_train_refuses_a_bad_or_unreachable_relay(
    relay_workspace: Path, cli: Callable[..., Outcome], url: str, words: str
) -> None:
    party = Account.create()
    outcome = cli("node", "train", "--round", "1", "--shard", "0", "--of", "2", "--relay", url.format(port=free_port()),
                  "--workdir", str(relay_workspace), env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(party.key)})
    assert outcome.exit_code == 1
    assert words in outcome.error_line()


@pytest.fixture
def relay_workspace(chain: TestChain, tmp_path: Path, cli: Callable[..., Outcome]) -> Path:
    """A workspace whose deployment is on the session's anvil."""
    root = tmp_path / "ws"
    assert cli("init", str(root), "--rpc", chain.w3.provider.endpoint_uri).exit_code == 0  # type: ignore[attr-defined]
    assert cli("deploy", "--workdir", str(root)).exit_code == 0
    return root



def test_updates_to_two_rounds_go_in_one_batch_per_round(chain: TestChain, tmp_path: Path) -> None:
    federation = make_federation(chain)
    second, _ = federation.admin.open_round(base_cid=BASE, deadline=chain.now() + 3600, min_updates=1,
                                            config_hash=b"\x55" * 32)
    with running_relay(federation, tmp_path, max_wait_s=1.0) as relayed:
        party = federation.gasless_party()
        first_round = relayed.pinned(party)
        second_round = request_document(second, federation.signed(party, cid=relayed.store.add_bytes(b"r2"), round_id=second))
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(relayed.post, [first_round, second_round]))
        assert [(status, answer["round"], answer["batch"]) for status, answer in answers] == [
            (200, federation.round_id, 1), (200, second, 1)
        ], answers
        assert answers[0][1]["tx_hash"] != answers[1][1]["tx_hash"]
        assert relayed.relay.status()["batches"] == 2


def test_relay_serve_refuses_a_key_without_ether(relay_workspace: Path, tmp_path: Path, cli: Callable[..., Outcome]) -> None:
    keystore = tmp_path / "poor.json"
    create_keystore(keystore, "pw", iterations=2)
    outcome = cli("relay", "serve", "--key", str(keystore), "--port", "0", "--workdir", str(relay_workspace),
                  env={"FEDLEDGER_KEY_PASSWORD": "pw"})
    assert outcome.exit_code == 1
    assert "holds no ether" in outcome.error_line()


def test_relay_serve_refuses_a_port_in_use(relay_workspace: Path, tmp_path: Path, cli: Callable[..., Outcome]) -> None:
    keystore = tmp_path / "relayer.json"
    relayer = create_keystore(keystore, "pw", iterations=2)
    Web3(Web3.HTTPProvider(Workspace.load(relay_workspace).get("chain", "rpc"))).provider.make_request(
        "anvil_setBalance", [relayer, hex(10**18)]  # type: ignore[arg-type]
    )
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = cli("relay", "serve", "--key", str(keystore), "--port", str(port),
                      "--workdir", str(relay_workspace), env={"FEDLEDGER_KEY_PASSWORD": "pw"})
    assert outcome.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in outcome.error_line()
