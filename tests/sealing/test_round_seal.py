"""A round config's seal_to, and choosing the workspace key that opens a sealed round (no chain needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import to_canonical_address

from ledger.errors import InvalidInputError
from ledger.sealing.errors import RecipientMismatchError
from ledger.sealing.keys import new_encryption_key
from ledger.sealing.recipients import RoundSeal, recipient_opener, registered_keys
from ledger.workspace import Workspace
from node.round_config import RoundConfig
from tests.fixtures_chain import TestChain

PASSWORD = "round seal tests"
CONTRACT = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def test_seal_to_is_sorted_checksummed_and_left_out_of_configs_without_it() -> None:
    plain = RoundConfig(model="mlp", strategy={"name": "fedavg"})
    a, b = (Account.create().address for _ in range(2))
    sealed = RoundConfig(model="mlp", strategy={"name": "fedavg"}, seal_to=(b.lower(), a))
    assert b"seal_to" not in plain.to_bytes()
    assert sealed.seal_to == tuple(sorted([a, b], key=to_canonical_address))
    assert RoundConfig.from_bytes(sealed.to_bytes()) == sealed
    assert sealed.config_hash != plain.config_hash
    assert RoundConfig.from_bytes(plain.to_bytes()).seal_to is None


@pytest.mark.parametrize(("seal_to", "says"), [
    ((), "seal_to must be a non-empty list of addresses"),
    (("0x1234",), "is not an Ethereum address"),
    (("0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"), "more than once"),
])
def test_bad_seal_to_is_refused_with_one_sentence(seal_to: tuple[str, ...], says: str) -> None:
    with pytest.raises(InvalidInputError, match=says):
        RoundConfig(model="mlp", strategy={"name": "fedavg"}, seal_to=seal_to)


def test_a_config_whose_seal_to_is_not_a_list_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="seal_to is str, not a list of addresses"):
        RoundConfig.from_bytes(b'{"model":"mlp","strategy":{"name":"fedavg"},"seal_to":"0xabc"}')


def test_the_workspace_key_a_recipient_registered_opens_the_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FEDLEDGER_KEY_PASSWORD", PASSWORD)
    workspace = Workspace.init(tmp_path / "ws")
    other = new_encryption_key(workspace, "other", password=PASSWORD, iterations=16)
    mine = new_encryption_key(workspace, "mine", password=PASSWORD, iterations=16)
    recipient, sender = Account.create().address, Account.create().address
    round_seal = RoundSeal(31337, CONTRACT, 4, {recipient: mine})

    opener = recipient_opener(Workspace.load(workspace.root), round_seal)  # found by its public half
    assert opener.address == recipient
    sealed = round_seal.seal(b"update bytes", sender=sender)
    assert opener.open(sealed, sender=sender) == b"update bytes"
    with pytest.raises(RecipientMismatchError):
        RoundSeal(31337, CONTRACT, 4, {recipient: other}).check(sealed, sender=sender)

    with pytest.raises(InvalidInputError, match=f"the encryption key 'other' \\(public key 0x{other.hex()}\\) is not"):
        recipient_opener(workspace, round_seal, "other")
    stranger = RoundSeal(31337, CONTRACT, 4, {recipient: bytes(range(32))})
    with pytest.raises(InvalidInputError, match="no encryption key in this workspace is one they registered"):
        recipient_opener(workspace, stranger)


def test_a_round_takes_the_keys_registered_at_its_opening_block(memory_chain: TestChain) -> None:
    federation = memory_chain.deploy()
    first, second = bytes(range(1, 33)), bytes(range(2, 34))
    federation.publish_encryption_key(first)
    opened_block = memory_chain.w3.eth.block_number
    federation.publish_encryption_key(second)  # a later rotation changes nothing for that round
    me = federation.sender
    assert RoundSeal.read(federation, 1, [me], opened_block=opened_block).recipients == {me: first}
    assert registered_keys(federation, [me]) == {me: second}
    nobody = Account.create().address
    with pytest.raises(InvalidInputError, match=f"{nobody} has no encryption key registered on chain"):
        registered_keys(federation, [me, nobody])
