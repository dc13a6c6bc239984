"""The code comparison an auditor trusts (ledger/chain/code_check.py), without a chain: Sourcify's full match.

The code "at the address" here is the compiled runtime with the immutables its constructor writes,
then altered one way at a time: an instruction, the metadata hash, the immutables. The committed
metadata document is checked against the sources on disk and against the committed bytecode.
"""

from __future__ import annotations

import json

from eth_utils import keccak

from deploy.compile import collect_sources
from ledger.chain.code_check import (
    FULL,
    METADATA_DOCUMENT,
    MISMATCH,
    PARTIAL,
    expected_runtime,
    immutable_values,
    match_code,
    split_metadata,
    standard_json_input,
    verify_metadata_document,
)
from ledger.chain.federation import load_artifact

ADDRESS = "0x" + "ab" * 20
CHAIN_ID = 31337


def test_code_matches_fully_only_with_its_instructions_immutables_and_metadata_hash() -> None:
    artifact = load_artifact()
    compiled = bytes.fromhex(artifact["deployedBytecode"][2:])
    honest = expected_runtime(ADDRESS, CHAIN_ID)
    h = lambda code: "0x" + keccak(code).hex()  # noqa: E731

    # Every immutable of Federation is one whose value the address and the chain id determine.
    names = set(artifact["immutables"].values())
    assert set(artifact["immutableReferences"]) == set(artifact["immutables"])
    assert names == set(immutable_values(ADDRESS, CHAIN_ID))
    assert honest != compiled and len(honest) == len(compiled)  # the zeros of the compiled code are filled

    match = match_code(honest, address=ADDRESS, chain_id=CHAIN_ID, block=7)
    assert (match.status, match.ok, match.block) == (FULL, True, 7)
    assert match.code_hash == match.expected_code_hash == h(honest)
    assert match.metadata is not None and match.metadata.startswith("Qm")
    assert match.metadata in match.sentence() and match.code_hash in match.sentence()

    # One instruction changed: a mismatch naming both code hashes.
    tampered = bytearray(honest)
    tampered[100] ^= 0x01
    match = match_code(bytes(tampered), address=ADDRESS, chain_id=CHAIN_ID)
    assert (match.status, match.ok) == (MISMATCH, False)
    assert h(bytes(tampered)) in match.sentence() and h(honest) in match.sentence()
    assert "first differ at byte 100" in match.reason

    # Only the metadata hash changed: the same instructions, a partial match, still not accepted.
    executable, fields = split_metadata(honest)
    assert fields is not None and set(fields) == {"ipfs", "solc"}
    other_hash = bytearray(honest)
    other_hash[len(executable) + 20] ^= 0x01  # inside the CBOR's IPFS multihash
    match = match_code(bytes(other_hash), address=ADDRESS, chain_id=CHAIN_ID)
    assert (match.status, match.ok) == (PARTIAL, False)
    assert match.metadata != match.expected_metadata and match.expected_metadata in match.reason
    assert h(bytes(other_hash)) in match.sentence() and h(honest) in match.sentence()

    # The same code with the immutables of another deployment (another chain id): caught, named.
    elsewhere = expected_runtime(ADDRESS, 1)
    match = match_code(elsewhere, address=ADDRESS, chain_id=CHAIN_ID)
    assert (match.status, match.ok) == (MISMATCH, False)
    assert match.immutables_differ == ["EIP712._cachedChainId", "EIP712._cachedDomainSeparator"]
    assert match.code_hash == h(elsewhere) and match.expected_code_hash == h(honest)
    # ... and the compiled code with its zeros left in place is not a match either.
    assert not match_code(compiled, address=ADDRESS, chain_id=CHAIN_ID).ok


def test_the_committed_metadata_document_rebuilds_the_committed_bytecode() -> None:
    document = METADATA_DOCUMENT.read_bytes()
    code = expected_runtime(ADDRESS, CHAIN_ID)
    assert verify_metadata_document(document, code) is None
    parsed = json.loads(document)
    # Its texts are today's sources (no stale document), and the solc input it gives compiles them as the artifact says.
    assert {unit: entry["content"] for unit, entry in parsed["sources"].items()} == collect_sources()
    standard = standard_json_input(document)
    assert standard["settings"]["evmVersion"] == load_artifact()["compiler"]["settings"]["evmVersion"]
    assert parsed["compiler"]["version"] == load_artifact()["compiler"]["version"]

    # A source text changed: its keccak256 no longer holds.
    altered = json.loads(document)
    altered["sources"]["contracts/Federation.sol"]["content"] += "\n"
    problem = verify_metadata_document(json.dumps(altered).encode(), code)
    assert problem is not None and "contracts/Federation.sol does not hash to its keccak256" in problem
    # Another setting (texts intact): the metadata no longer hashes to what the code commits to.
    altered = json.loads(document)
    altered["settings"]["optimizer"]["runs"] = 200
    problem = verify_metadata_document(json.dumps(altered).encode(), code)
    assert problem is not None and "the code commits to Qm" in problem
    # A text left out, or not metadata at all.
    altered = json.loads(document)
    del altered["sources"]["contracts/Federation.sol"]["content"]
    assert verify_metadata_document(json.dumps(altered).encode(), code) == "it lacks the text of contracts/Federation.sol"
    assert "not solc's metadata JSON" in (verify_metadata_document(b"[1, 2]", code) or "")
