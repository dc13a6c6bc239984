"""Sealed rounds through the CLI on anvil: encryption keys on chain, round open --seal-to, node train
sealing, aggregate opening, audit verify with and without a recipient's key, and each refusal."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.errors import WeightsError
from ledger.sealing.format import MAGIC
from ledger.sealing.keys import new_encryption_key as make_encryption_key
from ledger.sealing.keys import public_key_bytes
from ledger.sealing.recipients import RoundSeal
from ledger.ipfs.store import open_store
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.models import model_layout
from node.participant import update_bytes
from node.update_metrics import metrics_hash
from node.receipt import Receipt
from node.round_config import RoundConfig, config_cid
from tests.audit.conftest import flip_byte
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome, ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, finish, make_federation, start

pytestmark = pytest.mark.anvil

ENC_PASSWORD = "sealing tests password"


@pytest.fixture
def anvil_rpc(chain: TestChain) -> Iterator[str]:
    yield chain.w3.provider.endpoint_uri


def new_encryption_key(federation: Federation, name: str) -> str:
    """`key new-encryption NAME`; returns the public key's hex."""
    made = ok(cli("key", "new-encryption", name, "--light-kdf", "--json", *federation.w, env={"FEDLEDGER_KEY_PASSWORD": ENC_PASSWORD}))
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


# ---------------------------------------------------------------------------------------------- a sealed round

PARTIES = ("alice", "bob")


@dataclass
class SealedRound:
    federation: Federation
    round_id: int
    parties: dict[str, LocalAccount]
    aggregator: LocalAccount
    auditor: LocalAccount


def open_sealed_round(
    tmp_path: Path, rpc: str, keys: list[LocalAccount], *, min_updates: int = 2, cli_keys: bool = False
) -> SealedRound:
    """A federation with alice and bob admitted, the aggregator (the admin) and an auditor holding
    registered encryption keys, and round 1 open and sealed to both. The keys are made by
    `key new-encryption` when ``cli_keys``, else by the library at a test's scrypt cost."""
    federation = make_federation(tmp_path, rpc=rpc)
    parties = {name: keys[4 + i] for i, name in enumerate(PARTIES)} | {"carol": keys[8]}
    for name, account in parties.items():
        federation.admit(name, Web3.to_hex(account.key))
    aggregator, auditor = keys[0], keys[6]
    for name, account in (("aggregator", aggregator), ("auditor", auditor)):
        if cli_keys:
            new_encryption_key(federation, name)
        else:
            make_encryption_key(Workspace.load(federation.workspace.root), name, password=ENC_PASSWORD, iterations=16)
        ok(publish_encryption_key(federation, name, account))
    opened = ok(cli(
        "round", "open", "--base-cid", federation.genesis_cid, "--deadline", "600", "--min-updates", str(min_updates),
        "--config", str(federation.config_file("sealed")), "--seal-to", f"{auditor.address},{aggregator.address}",
        "--json", *federation.w,
    )).json()
    return SealedRound(federation, int(opened["round_id"]), parties, aggregator, auditor)


def with_password(*args: str) -> Outcome:
    return cli(*args, env={"FEDLEDGER_KEY_PASSWORD": ENC_PASSWORD})


@pytest.mark.slow
def test_a_sealed_round_end_to_end(anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path) -> None:
    sealed = open_sealed_round(tmp_path, anvil_rpc, anvil_keys, cli_keys=True)
    federation, rid, w = sealed.federation, sealed.round_id, sealed.federation.w
    config = RoundConfig.from_bytes(open_store(federation.workspace).get(config_cid(federation.client().round(rid).config_hash)))
    assert config.seal_to == tuple(sorted([sealed.auditor.address, sealed.aggregator.address], key=str.lower))

    processes = [start("node", "train", "--round", str(rid), "--shard", str(i), "--of", "2", "--json", *w,
                       env=federation.parties[name]["env"]) for i, name in enumerate(PARTIES)]
    trained = [ok(finish(process, timeout=180)).json() for process in processes]

    # Nobody without a recipient key reads an update: the store holds envelopes, not safetensors.
    store = open_store(federation.workspace)
    recorded = {s.participant: s.cid for s in federation.client().submissions(rid)}
    assert recorded == {t["participant"]: t["update_cid"] for t in trained}
    for cid in recorded.values():
        blob = store.get(cid)
        assert blob.startswith(MAGIC)
        with pytest.raises(WeightsError):
            from_safetensors(blob)

    aggregated = ok(with_password("aggregate", "--round", str(rid), "--json", *w)).json()
    assert aggregated["rejected"] == [] and len(aggregated["included"]) == 2
    assert {(u["participant"], u["cid"]) for u in aggregated["sealed"]} == set(recorded.items())
    receipt = Receipt.from_bytes(store.get(aggregated["receipt_cid"]))
    assert [len(u.plaintext_sha256) for u in receipt.sealed] == [64, 64]

    recomputed = with_password("audit", "verify", "--key", "auditor", "--json", *w)
    assert recomputed.exit_code == 0, recomputed.stdout
    checks = recomputed.json()["checks"]
    assert any(c["check"] == "aggregate" and c["ok"] and "recomputed exactly" in c["what"] for c in checks)
    assert recomputed.json()["not_recomputed"] == []

    unkeyed = cli("audit", "verify", *w)
    assert unkeyed.exit_code == 0, unkeyed.stderr
    assert f"round {rid}: the aggregate was not recomputed because its updates are sealed" in unkeyed.stderr
    document = ok(cli("audit", "verify", "--json", *w)).json()
    assert document["not_recomputed"] == [rid] and document["failed"] == 0
    assert sum(c["check"] == "envelope" and c["ok"] for c in document["checks"]) == 2


def submit_by_hand(sealed: SealedRound, name: str, *, other_keys: bool = False, plaintext: bytes | None = None) -> str:
    """Party ``name`` seals a copy of the base model as its update (or ``plaintext``; to other keys
    than the registered ones when ``other_keys``), pins it and records it with its own key; returns the CID."""
    client, rid, account = sealed.federation.client(), sealed.round_id, sealed.parties[name]
    info = client.round(rid)
    store = open_store(sealed.federation.workspace)
    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    arrays, _ = from_safetensors(store.get(info.base_cid), layout=model_layout("mlp"))
    metrics = {"loss": 1.0}
    blob = update_bytes(arrays, model="mlp", participant=account.address, round_id=rid, base_cid=info.base_cid,
                        samples=10, metrics=metrics)
    round_seal = RoundSeal.read(client, rid, config.seal_to or (), opened_block=info.opened_block)
    if other_keys:
        round_seal = replace(round_seal, recipients={a: public_key_bytes(X25519PrivateKey.generate()) for a in round_seal.recipients})
    cid = store.add_bytes(round_seal.seal(blob if plaintext is None else plaintext, sender=account.address))
    client.with_account(account).submit_update(rid, cid=cid, samples=10, metrics_hash=metrics_hash(metrics))
    return cid


def test_updates_sealed_to_other_keys_or_holding_no_valid_update_are_rejected_in_the_receipt(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    sealed = open_sealed_round(tmp_path, anvil_rpc, anvil_keys, min_updates=1)
    w = sealed.federation.w
    good = submit_by_hand(sealed, "alice")
    bad = submit_by_hand(sealed, "bob", other_keys=True)
    junk = submit_by_hand(sealed, "carol", plaintext=b"not an update")
    document = ok(with_password("aggregate", "--round", str(sealed.round_id), "--json", *w)).json()
    assert [(u["participant"], u["cid"]) for u in document["included"]] == [(sealed.parties["alice"].address, good)]
    reasons = {(r["participant"], r["cid"]): r["reason"] for r in document["rejected"]}
    assert reasons.keys() == {(sealed.parties["bob"].address, bad), (sealed.parties["carol"].address, junk)}
    other = reasons[(sealed.parties["bob"].address, bad)]
    assert other.startswith("the update is sealed to other keys than") and "registered" in other
    assert reasons[(sealed.parties["carol"].address, junk)].startswith("invalid weights: ")
    assert {u["cid"] for u in document["sealed"]} == {good, junk}  # what was opened is committed to
    # The federation did nothing wrong, so the audit passes with or without a key: bob's envelope, sealed to
    # other keys, is a finding against bob; with a key the auditor recomputes the same rejections and, as for a
    # plaintext round, finds carol's metrics hash backed by no update: a finding against carol. --strict fails both.
    bob, carol = sealed.parties["bob"].address, sealed.parties["carol"].address
    unkeyed = ok(cli("audit", "verify", "--json", *w)).json()
    assert [(f["check"], f["participant"]) for f in unkeyed["findings"]] == [("envelope", bob)], unkeyed["findings"]
    keyed = with_password("audit", "verify", "--key", "auditor", "--json", *w)
    assert keyed.exit_code == 0, keyed.stdout
    findings = keyed.json()["findings"]
    assert [(f["check"], f["participant"]) for f in findings] == [("envelope", bob), ("metrics", carol)], findings
    strict = with_password("audit", "verify", "--key", "auditor", "--strict", "--json", *w)
    assert strict.exit_code == 1 and strict.json()["failures"] == findings


def test_a_tampered_envelope_is_caught_by_its_cid_before_decryption(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    sealed = open_sealed_round(tmp_path, anvil_rpc, anvil_keys, min_updates=1)
    submit_by_hand(sealed, "alice")
    tampered = submit_by_hand(sealed, "bob")
    flip_byte(sealed.federation.workspace.root / "store", tampered)
    document = ok(with_password("aggregate", "--round", str(sealed.round_id), "--json", *sealed.federation.w)).json()
    assert [(r["cid"], r["reason"]) for r in document["rejected"]] == [
        (tampered, "blob does not hash to its CID (altered in the store)")
    ]
    assert len(document["included"]) == 1


def test_audit_verify_refuses_a_key_that_no_recipient_registered(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    sealed = open_sealed_round(tmp_path, anvil_rpc, anvil_keys, min_updates=1)
    w = sealed.federation.w
    submit_by_hand(sealed, "alice")
    ok(with_password("aggregate", "--round", str(sealed.round_id), *w))
    stranger = "0x" + make_encryption_key(Workspace.load(sealed.federation.workspace.root), "stranger",
                                          password=ENC_PASSWORD, iterations=16).hex()
    refused = with_password("audit", "verify", "--key", "stranger", *w)
    assert refused.exit_code == 2
    line = refused.error_line()
    assert f"the encryption key given (public key {stranger}) is not one that a recipient of sealed round(s) 1" in line, line
