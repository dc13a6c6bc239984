"""Is the code at an address the Federation this fedledger compiles? Matched the way Sourcify does.

The runtime code at the address is compared, byte for byte, with the committed artifact's
``deployedBytecode`` (contracts/build/Federation.json):

- **Immutables.** The compiled runtime code holds zeros where the constructor writes its
  immutables (``immutableReferences``: byte ranges, by AST id; ``immutables``: their names).
  Federation's are EIP-712's (cached domain separator, chain id, address, hashed name and
  version, name and version), all determined by the address and the chain id, so the expected
  code is filled with the values *this* deployment's constructor would have written. An
  immutable of unknown name is filled from the code at the address, as Sourcify does.
- **Metadata.** The code ends with solc's CBOR map (the IPFS hash of the compiler metadata:
  sources' keccak256, settings, compiler version) and its length. A **full** match includes it;
  a **partial** match is the same executable code with another metadata hash (other sources or
  settings that happen to compile to the same instructions); anything else is a **mismatch**.

Both code hashes (keccak256 of the runtime code at the address, and of the expected code) are
named either way. contracts/build/Federation.metadata.json is solc's metadata with each source's
text added as ``content``, serialized as solc serializes (sorted keys, no spaces, ASCII):
``verify_metadata_document`` checks every text against its keccak256 and the stripped metadata's
IPFS hash against the one the code commits to, so the document alone rebuilds the bytecode
(``standard_json_input``). ``fedledger deploy`` pins it and records its CID.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3

from ledger.chain.federation import ARTIFACT, EIP712_NAME, EIP712_VERSION, load_artifact
from ledger.errors import ConfigError, DeploymentError
from ledger.ipfs.cid import cid_digest
from ledger.ipfs.multibase import BASE58_BTC, encode_base_x
from ledger.ipfs.unixfs import KUBO_DEFAULT, cid_of_bytes

METADATA_DOCUMENT = ARTIFACT.with_name("Federation.metadata.json")
"""solc's metadata with the sources' texts: what ``fedledger deploy`` pins."""
MAX_METADATA_BYTES = 8 * 1024 * 1024

FULL = "full"
PARTIAL = "partial"
MISMATCH = "mismatch"

_DOMAIN_TYPE = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"


@dataclass(frozen=True)
class CodeMatch:
    """How the code at ``address`` compares with the compiled Federation."""

    status: str  # FULL, PARTIAL or MISMATCH
    address: str
    chain_id: int
    block: int | None
    code_hash: str  # keccak256 of the runtime code at the address
    expected_code_hash: str  # keccak256 of the compiled runtime code, immutables filled for this address and chain
    reason: str
    metadata: str | None = None  # the metadata hash the code at the address ends with (CIDv0 text)
    expected_metadata: str | None = None
    immutables_differ: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == FULL

    def sentence(self) -> str:
        if self.ok:
            return (f"the code at {self.address} is the Federation this fedledger compiles, compiler metadata "
                    f"{self.metadata} included (code hash {self.code_hash})")
        return (f"the code at {self.address} (code hash {self.code_hash}) is not the Federation this fedledger "
                f"compiles (code hash {self.expected_code_hash}): {self.reason}")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


# ---------------------------------------------------------------- the metadata tail


def _cbor_head(data: bytes, pos: int) -> tuple[int, int, int]:
    if pos >= len(data):
        raise ValueError("truncated")
    major, info = data[pos] >> 5, data[pos] & 31
    pos += 1
    if info < 24:
        return major, info, pos
    if info > 27:
        raise ValueError("indefinite or reserved length")
    size = 1 << (info - 24)
    if pos + size > len(data):
        raise ValueError("truncated")
    return major, int.from_bytes(data[pos : pos + size], "big"), pos + size


def _cbor_map(data: bytes) -> dict[str, Any]:
    """The small CBOR map solc appends: text keys, byte-string, text, unsigned or boolean values."""
    major, count, pos = _cbor_head(data, 0)
    if major != 5:
        raise ValueError("not a map")
    fields: dict[str, Any] = {}
    for _ in range(count):
        major, length, pos = _cbor_head(data, pos)
        if major != 3 or pos + length > len(data):
            raise ValueError("a key that is not text")
        key = data[pos : pos + length].decode("utf-8")
        pos += length
        major, value, pos = _cbor_head(data, pos)
        if major in (2, 3):
            if pos + value > len(data):
                raise ValueError("truncated")
            item: Any = data[pos : pos + value]
            pos += value
            if major == 3:
                item = item.decode("utf-8")
        elif major == 0:
            item = value
        elif major == 7 and value in (20, 21):
            item = value == 21
        else:
            raise ValueError("an unexpected value")
        fields[key] = item
    if pos != len(data):
        raise ValueError("trailing bytes")
    return fields


def split_metadata(code: bytes) -> tuple[bytes, dict[str, Any] | None]:
    """The executable part of ``code`` and its CBOR metadata fields (None when it ends with none)."""
    if len(code) < 2:
        return code, None
    length = int.from_bytes(code[-2:], "big")
    if length == 0 or length + 2 > len(code):
        return code, None
    try:
        fields = _cbor_map(code[-2 - length : -2])
    except (ValueError, UnicodeDecodeError):
        return code, None
    return code[: -2 - length], fields


def metadata_name(fields: dict[str, Any] | None) -> str | None:
    """The metadata hash a code's CBOR map carries, as text (``Qm…`` for an IPFS hash)."""
    if not fields:
        return None
    ipfs = fields.get("ipfs")
    if isinstance(ipfs, bytes) and len(ipfs) == 34 and ipfs[:2] == b"\x12\x20":
        return encode_base_x(ipfs, BASE58_BTC)
    for key in ("ipfs", "bzzr1", "bzzr0"):
        if isinstance(fields.get(key), bytes):
            return f"{key}:0x{fields[key].hex()}"
    return None


# ---------------------------------------------------------------- immutables


def _short_string(text: str) -> bytes:
    """OpenZeppelin's ShortString: the bytes left-aligned, their length in the last byte."""
    data = text.encode("utf-8")
    return data.ljust(31, b"\0") + bytes([len(data)])


def immutable_values(address: str, chain_id: int) -> dict[str, bytes]:
    """What Federation's constructor writes into each immutable, deployed at ``address`` on ``chain_id``."""
    hashed_name, hashed_version = keccak(text=EIP712_NAME), keccak(text=EIP712_VERSION)
    checksum = to_checksum_address(address)
    separator = keccak(encode(["bytes32", "bytes32", "bytes32", "uint256", "address"],
                              [keccak(text=_DOMAIN_TYPE), hashed_name, hashed_version, chain_id, checksum]))
    return {
        "EIP712._cachedDomainSeparator": separator,
        "EIP712._cachedChainId": chain_id.to_bytes(32, "big"),
        "EIP712._cachedThis": bytes(12) + bytes.fromhex(checksum[2:]),
        "EIP712._hashedName": hashed_name,
        "EIP712._hashedVersion": hashed_version,
        "EIP712._name": _short_string(EIP712_NAME),
        "EIP712._version": _short_string(EIP712_VERSION),
    }


def _ranges(artifact: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(name, start, length) of every immutable's place in the runtime code."""
    names = artifact.get("immutables", {})
    return sorted(
        (names.get(ast_id, f"immutable #{ast_id}"), int(ref["start"]), int(ref["length"]))
        for ast_id, refs in artifact.get("immutableReferences", {}).items()
        for ref in refs
    )


def expected_runtime(address: str, chain_id: int, onchain: bytes = b"", *, artifact: dict[str, Any] | None = None) -> bytes:
    """The compiled runtime code with its immutables as the constructor writes them at ``address``.

    An immutable this module does not know is copied from ``onchain`` (Sourcify's way).
    """
    artifact = artifact if artifact is not None else load_artifact()
    code = bytearray(bytes.fromhex(artifact["deployedBytecode"].removeprefix("0x")))
    values = immutable_values(address, chain_id)
    for name, start, length in _ranges(artifact):
        value = values.get(name)
        if value is not None:
            code[start : start + length] = value[32 - length :]
        elif start + length <= len(onchain):
            code[start : start + length] = onchain[start : start + length]
    return bytes(code)


# ---------------------------------------------------------------- the comparison


def _hash(code: bytes) -> str:
    return "0x" + keccak(code).hex()


def match_code(
    onchain: bytes, *, address: str, chain_id: int, block: int | None = None, artifact: dict[str, Any] | None = None
) -> CodeMatch:
    """Compare runtime code read from ``address`` on ``chain_id`` with the compiled Federation."""
    artifact = artifact if artifact is not None else load_artifact()
    address = to_checksum_address(address)
    expected = expected_runtime(address, chain_id, onchain, artifact=artifact)
    executable, fields = split_metadata(onchain)
    expected_executable, expected_fields = split_metadata(expected)
    common = {
        "address": address, "chain_id": chain_id, "block": block, "code_hash": _hash(onchain),
        "expected_code_hash": _hash(expected), "metadata": metadata_name(fields),
        "expected_metadata": metadata_name(expected_fields),
    }
    if onchain == expected:
        return CodeMatch(FULL, reason="full match", **common)  # type: ignore[arg-type]
    if fields is not None and executable == expected_executable:
        tails = (f"its metadata hash is {common['metadata']}, this fedledger's {common['expected_metadata']}"
                 if common["metadata"] != common["expected_metadata"] else "its CBOR metadata tail differs")
        return CodeMatch(PARTIAL, **common, reason=(  # type: ignore[arg-type]
            f"the same instructions, but compiled from other sources or settings: {tails} (a partial match)"))
    differ = [name for name, start, length in _ranges(artifact)
              if onchain[start : start + length] != expected[start : start + length]]
    if len(onchain) == len(expected):
        patched = bytearray(expected)
        for _, start, length in _ranges(artifact):
            patched[start : start + length] = onchain[start : start + length]
        if bytes(patched) == onchain:
            differ = sorted(set(differ))
            return CodeMatch(MISMATCH, **common, immutables_differ=differ, reason=(  # type: ignore[arg-type]
                f"the same code with other immutables ({', '.join(differ)}) than its constructor writes at this "
                f"address on chain id {chain_id}"))
    first = next((i for i, (a, b) in enumerate(zip(onchain, expected)) if a != b), min(len(onchain), len(expected)))
    return CodeMatch(MISMATCH, **common, immutables_differ=sorted(set(differ)), reason=(  # type: ignore[arg-type]
        f"other code ({len(onchain)} bytes at the address, {len(expected)} compiled; they first differ at byte {first})"))


def compare_code(w3: Web3, address: str, *, block: int | str = "latest") -> CodeMatch:
    """Read the runtime code at ``address`` (at ``block``) and match it; DeploymentError when there is none."""
    address = to_checksum_address(address)
    chain_id = int(w3.eth.chain_id)
    number = int(w3.eth.get_block(block)["number"])
    onchain = bytes(w3.eth.get_code(address, block_identifier=number))
    if not onchain:
        raise DeploymentError(
            f"there is no contract code at {address} on chain id {chain_id} (block {number}), so there is nothing to "
            "verify; check the address, and --rpc or [chain] rpc for the chain it was deployed on."
        )
    return match_code(onchain, address=address, chain_id=chain_id, block=number)


# ---------------------------------------------------------------- the metadata document


def _solc_json(document: Any) -> bytes:
    """JSON serialized as solc serializes its metadata: sorted keys, no spaces, ASCII escapes."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("ascii")


def metadata_document(metadata: str, sources: dict[str, str]) -> bytes:
    """solc's ``metadata`` string with each source's text added as ``content``."""
    document = json.loads(metadata)
    if _solc_json(document) != metadata.encode("utf-8"):
        raise ConfigError("the compiler's metadata is not serialized as solc 0.8 serializes it (sorted keys, no "
                          "spaces), so stripping added texts would not give back its bytes; report this with the solc version.")
    for unit, entry in document["sources"].items():
        if unit not in sources:
            raise ConfigError(f"the compiler's metadata names the source {unit}, which was not compiled; rebuild with "
                              "`python -m deploy.compile`.")
        entry["content"] = sources[unit]
    return _solc_json(document)


def _multihash(metadata: bytes) -> bytes:
    """The sha2-256 multihash of ``metadata`` added to IPFS as solc hashes it (plain ``ipfs add``, CIDv0)."""
    return b"\x12\x20" + cid_digest(cid_of_bytes(metadata, KUBO_DEFAULT))


def _parse_document(document: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(document)
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict) or not isinstance(parsed.get("sources"), dict) or not all(
        isinstance(entry, dict) for entry in parsed["sources"].values()
    ):
        raise ValueError("it is not solc's metadata JSON (an object with a sources object)")
    return parsed


def verify_metadata_document(document: bytes, code: bytes) -> str | None:
    """None when ``document`` carries every source's text and is the metadata ``code`` commits to; else why not."""
    try:
        parsed = _parse_document(document)
    except ValueError as error:
        return str(error)
    stripped = dict(parsed, sources={})
    for unit, entry in sorted(parsed["sources"].items()):
        content = entry.get("content")
        if not isinstance(content, str):
            return f"it lacks the text of {unit}"
        if "0x" + keccak(content.encode("utf-8")).hex() != entry.get("keccak256"):
            return f"the text of {unit} does not hash to its keccak256 {entry.get('keccak256')}"
        stripped["sources"][unit] = {key: value for key, value in entry.items() if key != "content"}
    _, fields = split_metadata(code)
    committed = fields.get("ipfs") if fields else None
    if not isinstance(committed, bytes):
        return "the code ends with no IPFS metadata hash to compare it with"
    actual = _multihash(_solc_json(stripped))
    if actual != committed:
        return (f"without the texts it hashes to {encode_base_x(actual, BASE58_BTC)}, but the code commits to "
                f"{metadata_name(fields)}")
    return None


def standard_json_input(document: bytes) -> dict[str, Any]:
    """The solc standard-JSON input that rebuilds the bytecode from a metadata document with contents."""
    parsed = _parse_document(document)
    settings = {key: value for key, value in parsed.get("settings", {}).items() if key != "compilationTarget"}
    ((unit, name),) = parsed["settings"]["compilationTarget"].items()
    settings["outputSelection"] = {unit: {name: ["evm.bytecode.object", "evm.deployedBytecode.object", "metadata"]}}
    return {
        "language": parsed.get("language", "Solidity"),
        "sources": {unit: {"content": entry["content"]} for unit, entry in parsed["sources"].items()},
        "settings": settings,
    }
