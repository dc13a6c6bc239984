"""Sealed rounds through the CLI on anvil: encryption keys on chain, round open --seal-to, node train
sealing, aggregate opening, audit verify with and without a recipient's key, and each refusal."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome, ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, make_federation

pytestmark = pytest.mark.anvil

ENC_PASSWORD = "sealing tests password"


@pytest.fixture
def anvil_rpc(chain: TestChain) -> Iterator[str]:
    yield chain.w3.provider.endpoint_uri


def new_encryption_key(federation: Federation, name: str) -> str:
    """`key new-encryption NAME`; returns the public key's hex."""
    made = ok(cli("key", "new-encryption", name, "--json", *federation.w, env={"FEDLEDGER_KEY_PASSWORD": ENC_PASSWORD}))
    return made.json()["public_key"]


def publish_encryption_key(federation: Federation, name: str, signer: LocalAccount) -> Outcome:
    return cli("key", "publish-encryption", "--key", name, "--json", *federation.w,
               env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(signer.key)})


def test_keys_are_made_and_registered_for_the_signing_account(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    public = new_encryption_key(federation, "auditor")
    document = ok(publish_encryption_key(federation, "auditor", anvil_keys[6])).json()
    assert (document["account"], document["public_key"]) == (anvil_keys[6].address, public)
    assert federation.client().encryption_key(anvil_keys[6].address) == bytes.fromhex(public[2:])
    assert federation.client().encryption_key(anvil_keys[7].address) is None


def test_round_open_refuses_a_recipient_without_a_registered_key(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    new_encryption_key(federation, "aggregator")
    ok(publish_encryption_key(federation, "aggregator", anvil_keys[0]))
    lacking = anvil_keys[7].address
    refused = cli("round", "open", "--base-cid", federation.genesis_cid, "--deadline", "600", "--min-updates", "1",
                  "--seal-to", f"{anvil_keys[0].address},{lacking}", *federation.w)
    assert refused.exit_code != 0
    line = refused.error_line()
    assert f"{lacking} has no encryption key registered on chain" in line and "publish-encryption" in line, line
    assert federation.client().round_count() == 0
