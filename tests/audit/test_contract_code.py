"""The contract the auditor trusts, on anvil: other code at the recorded address fails `audit verify` and
`contract verify`, both code hashes named; `deploy` pins the compiler metadata that rebuilds the code.

The code is swapped with ``anvil_setCode`` inside the ``chain`` fixture, whose snapshot is reverted
afterwards, so the session's honest ledger keeps its contract.
"""

from __future__ import annotations

import json

import tomllib
from eth_utils import keccak

from ledger.chain.code_check import METADATA_DOCUMENT, split_metadata
from ledger.ipfs.store import EmbeddedStore
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace


def _hash(code: bytes) -> str:
    return "0x" + keccak(code).hex()


def test_other_code_at_the_address_fails_audit_verify_and_contract_verify(ledger_copy, chain, cli):
    w = ["--workdir", str(ledger_copy.root)]
    address = ledger_copy.workspace.config["deployment"]["address"]
    honest = bytes(chain.w3.eth.get_code(address))

    outcome = cli("contract", "verify", "--json", *w)
    assert outcome.exit_code == 0, outcome.stderr
    document = outcome.json()
    assert (document["ok"], document["status"], document["code_hash"]) == (True, "full", _hash(honest))
    assert document["expected_code_hash"] == _hash(honest)
    assert document["metadata_check"] == "not recorded"  # the demo deploys without pinning

    # One instruction byte changed: the audit fails on its contract check alone, naming both code hashes.
    tampered = bytearray(honest)
    tampered[100] ^= 0x01
    chain.rpc("anvil_setCode", [address, "0x" + tampered.hex()])
    outcome = cli("audit", "verify", "--json", *w)
    assert outcome.exit_code == 1, outcome.stderr
    (failure,) = outcome.json()["failures"]
    assert failure["check"] == "contract"
    assert _hash(bytes(tampered)) in failure["what"] and _hash(honest) in failure["what"]
    assert f"the code at {address}" in failure["what"]

    outcome = cli("contract", "verify", *w)
    assert outcome.exit_code == 1, outcome.stderr
    assert "MISMATCH" in outcome.stderr
    assert _hash(bytes(tampered)) in outcome.stderr and _hash(honest) in outcome.stderr

    # Only the metadata hash changed: a partial match, reported as such, and still exit 1.
    executable, _ = split_metadata(honest)
    other_metadata = bytearray(honest)
    other_metadata[len(executable) + 20] ^= 0x01
    chain.rpc("anvil_setCode", [address, "0x" + other_metadata.hex()])
    outcome = cli("contract", "verify", "--json", *w)
    assert outcome.exit_code == 1, outcome.stderr
    document = outcome.json()
    assert (document["ok"], document["status"]) == (False, "partial")
    assert document["metadata"] != document["expected_metadata"]

    # No contract at the address given: it cannot run, one sentence, exit 2.
    outcome = cli("contract", "verify", "--address", ledger_copy.admin.address, *w)
    assert outcome.exit_code == 2
    assert f"there is no contract code at {ledger_copy.admin.address}" in outcome.error_line()
    outcome = cli("contract", "verify", "--address", "0x1234", *w)
    assert outcome.exit_code == 2 and "is not an Ethereum address" in outcome.error_line()


def test_deploy_pins_the_compiler_metadata_and_contract_verify_checks_it(chain, anvil, cli, tmp_path, monkeypatch):
    root = tmp_path / "ws"
    Workspace.init(root, rpc=anvil.rpc_url)
    w = ["--workdir", str(root)]
    outcome = cli("deploy", "--json", *w)
    assert outcome.exit_code == 0, outcome.stderr
    record = outcome.json()
    cid = record["metadata_cid"]
    recorded = tomllib.loads((root / "fedledger.toml").read_text())["deployment"]
    assert recorded["metadata_cid"] == cid
    store = EmbeddedStore(Workspace.load(root).store_dir)
    assert store.get(cid) == METADATA_DOCUMENT.read_bytes() and cid in store.pins()

    outcome = cli("contract", "verify", "--json", *w)
    assert outcome.exit_code == 0, outcome.stderr
    document = outcome.json()
    assert (document["ok"], document["status"], document["metadata_check"]) == (True, "full", "ok")
    assert document["address"] == record["address"] and document["metadata_cid"] == cid
    outcome = cli("contract", "verify", *w)
    assert outcome.exit_code == 0 and "MATCH" in outcome.stderr and f"pinned compiler metadata {cid}" in outcome.stderr

    # Pinned metadata whose source text was changed: the code still matches, the metadata does not; exit 1.
    altered = json.loads(METADATA_DOCUMENT.read_bytes())
    altered["sources"]["contracts/Federation.sol"]["content"] += "// hidden\n"
    workspace = Workspace.load(root)
    workspace.set("deployment", "metadata_cid", store.add_bytes(json.dumps(altered).encode()))
    workspace.save()
    outcome = cli("contract", "verify", *w)
    assert outcome.exit_code == 1
    assert "FAIL pinned compiler metadata" in outcome.stderr and "does not hash to its keccak256" in outcome.stderr

    # Recorded, but not in this store: it could not check, exit 2 with one sentence.
    absent = cid_of_bytes(b"not pinned anywhere")
    workspace.set("deployment", "metadata_cid", absent)
    workspace.save()
    outcome = cli("contract", "verify", *w)
    assert outcome.exit_code == 2
    assert f"({absent}) is not in this store" in outcome.error_line(alone=False)

    # Without a workspace, --address and --rpc are enough.
    monkeypatch.chdir(tmp_path)
    outcome = cli("contract", "verify", "--address", record["address"], "--rpc", anvil.rpc_url, "--json")
    assert outcome.exit_code == 0, outcome.stderr
    assert (outcome.json()["status"], outcome.json()["metadata_check"]) == ("full", "not recorded")
