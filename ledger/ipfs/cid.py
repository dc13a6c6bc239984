"""CIDv1 text ⇄ binary conversions, and the compact forms the contract carries.

A fedledger CID is always CIDv1 with a sha2-256 multihash: binary form is 36 bytes
``0x01 | codec | 0x12 0x20 | digest``. The codec is raw (0x55) for content of one chunk and
dag-pb (0x70) for larger content, so the digest alone does not name the content: the codec
always travels with it. Text form is ``b`` + lowercase base32 without padding: the canonical
spelling, the one the chain, the store and :func:`parse_cid` use.

Kubo names the same blocks in other spellings too: CIDv0 (``Qm…``, base58btc of the bare
multihash, always dag-pb) and CIDv1 in any multibase (``z…``, ``k…``, ``BAFY…``).
:func:`read_cid` turns any of them into the canonical form and :func:`spell_cid` spells a
canonical CID the way a Kubo client asked for; a dag-pb node links its children in one of
the two binary forms (:func:`cid_from_link`, :func:`link_binary`).
"""

from __future__ import annotations

import base64

from ledger.ipfs import multibase
from ledger.errors import MalformedCidError
from ledger.types import Cid

CIDV1 = 0x01
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_LENGTH = 32
BINARY_LENGTH = 4 + DIGEST_LENGTH
V0_LENGTH = 2 + DIGEST_LENGTH  # a CIDv0 is the bare multihash: 0x12 0x20 | digest
_CODECS = (RAW, DAG_PB)


def _fail(text: object, why: str) -> MalformedCidError:
    return MalformedCidError(
        f"{text!r} is not a CID fedledger can use ({why}); "
        "give a CIDv1 such as bafkrei… or bafybei…, as printed by `fedledger ipfs add`."
    )


def cid_from_parts(codec: int, digest: bytes) -> Cid:
    """The text CID of a sha2-256 ``digest`` under ``codec`` (RAW or DAG_PB)."""
    if codec not in _CODECS:
        raise _fail(codec, f"codec 0x{codec:02x} is neither raw (0x55) nor dag-pb (0x70)")
    if len(digest) != DIGEST_LENGTH:
        raise _fail(digest.hex(), f"a sha2-256 digest has 32 bytes, this one {len(digest)}")
    return cid_from_bytes(bytes([CIDV1, codec, SHA2_256, DIGEST_LENGTH]) + digest)


def cid_from_bytes(binary: bytes) -> Cid:
    """The text form of a 36-byte binary CIDv1."""
    binary = bytes(binary)
    if len(binary) != BINARY_LENGTH:
        raise _fail(binary.hex(), f"a binary CIDv1 has {BINARY_LENGTH} bytes, this one {len(binary)}")
    if binary[0] != CIDV1 or binary[1] not in _CODECS or binary[2:4] != bytes([SHA2_256, DIGEST_LENGTH]):
        raise _fail(binary.hex(), "not a CIDv1 with a raw or dag-pb codec and a sha2-256 hash")
    text = Cid("b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower())
    _remember(text, binary)
    return text


# Text ⇄ binary conversions are pure and sit on every block's path (naming it, linking it, reading
# it): each CID made or checked here is remembered, so the next conversion of it is a lookup.
_KNOWN: dict[str, bytes] = {}
_KNOWN_MAX = 1 << 16


def _remember(text: str, binary: bytes) -> None:
    if len(_KNOWN) >= _KNOWN_MAX:
        _KNOWN.clear()
    _KNOWN[text] = binary


def cid_to_bytes(cid: str) -> bytes:
    """The 36-byte binary form of a text CIDv1; raises MalformedCidError on anything else."""
    known = _KNOWN.get(cid) if isinstance(cid, str) else None
    if known is not None:
        return known
    if not isinstance(cid, str) or not cid:
        raise _fail(cid, "empty")
    if cid.startswith("Qm"):
        raise _fail(cid, "a CIDv0; add content with --cid-version=1")
    if cid[0] != "b":
        raise _fail(cid, "not base32 (it should start with 'b')")
    body = cid[1:].upper()
    try:
        binary = base64.b32decode(body + "=" * (-len(body) % 8))
    except ValueError as error:
        raise _fail(cid, "invalid base32") from error
    try:
        canonical = cid_from_bytes(binary)  # validates the header
    except MalformedCidError:
        raise _fail(cid, "not a CIDv1 with a raw or dag-pb codec and a sha2-256 hash") from None
    if canonical != cid:
        raise _fail(cid, "not in canonical lowercase form")
    return binary


def parse_cid(text: str) -> Cid:
    """Validate a CID given by a user and return it typed."""
    cid_to_bytes(text.strip() if isinstance(text, str) else text)
    return Cid(text.strip())


def cid_codec(cid: str) -> int:
    """The codec byte of a CID (RAW or DAG_PB)."""
    return cid_to_bytes(cid)[1]


def cid_digest(cid: str) -> bytes:
    """The 32-byte sha2-256 digest inside a CID."""
    return cid_to_bytes(cid)[4:]


# -- every other spelling (Kubo's clients) -------------------------------------------------------
def _unusable(text: object, why: str) -> MalformedCidError:
    return MalformedCidError(
        f"{text!r} is not a CID this store can serve ({why}); give the CID as `ipfs add` printed it "
        "(Qm… or bafy…/bafk…, in any multibase)."
    )


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift <= 63:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("truncated varint")


def _canonical_binary(binary: bytes, text: object) -> tuple[Cid, int]:
    """The canonical CID of a binary CID in either version, and that version (0 or 1)."""
    if len(binary) == V0_LENGTH and binary[:2] == bytes([SHA2_256, DIGEST_LENGTH]):
        return cid_from_parts(DAG_PB, binary[2:]), 0
    try:
        version, pos = _varint(binary, 0)
        codec, pos = _varint(binary, pos)
        hash_code, pos = _varint(binary, pos)
        length, pos = _varint(binary, pos)
    except ValueError:
        raise _unusable(text, "its bytes are not a CID") from None
    if version != CIDV1:
        raise _unusable(text, f"CID version {version}")
    if hash_code != SHA2_256 or length != DIGEST_LENGTH or len(binary) != pos + length:
        raise _unusable(text, "its multihash is not sha2-256 (Kubo's default hash, the only one this store keeps)")
    if codec not in _CODECS:
        raise _unusable(text, f"codec 0x{codec:02x}; this store holds raw (0x55) and dag-pb (0x70) blocks")
    return cid_from_parts(codec, binary[pos:]), 1


def read_cid_version(text: str) -> tuple[Cid, int]:
    """Any spelling of a CID (``Qm…``, any multibase, either case prefix) as (canonical CID, its version)."""
    if not isinstance(text, str) or not text.strip():
        raise _unusable(text, "empty")
    text = text.strip()
    if len(text) == 46 and text.startswith("Qm"):  # CIDv0: base58btc without a multibase prefix
        try:
            binary = multibase.decode_base_x(text, multibase.BASE58_BTC)
        except multibase.MultibaseError as error:
            raise _unusable(text, f"invalid base58btc: {error}") from None
    else:
        try:
            _, binary = multibase.decode(text)
        except multibase.MultibaseError as error:
            raise _unusable(text, str(error)) from None
    return _canonical_binary(binary, text)


def read_cid(text: str) -> Cid:
    """Any spelling of a CID, in the canonical CIDv1 base32 form."""
    return read_cid_version(text)[0]


def spell_cid(cid: str, *, version: int = 1, base: str = "base32") -> str:
    """A canonical CID spelled as a Kubo client asked: CIDv0 where ``version`` is 0 and the block is
    dag-pb (a raw block has no CIDv0: it stays CIDv1, as in Kubo), else CIDv1 in ``base``."""
    binary = cid_to_bytes(cid)
    if version == 0 and binary[1] == DAG_PB:
        return multibase.encode_base_x(binary[2:], multibase.BASE58_BTC)
    if base == "base32":
        return cid
    return multibase.encode(base, binary)


def cid_from_link(binary: bytes) -> tuple[Cid, int]:
    """The canonical CID a dag-pb link's Hash bytes name, and the version they are written in."""
    return _canonical_binary(bytes(binary), bytes(binary).hex())


def link_binary(cid: str, version: int) -> bytes:
    """The bytes a dag-pb parent of CID ``version`` uses to link ``cid`` (raw blocks are CIDv1 either way)."""
    binary = cid_to_bytes(cid)
    if version == 0 and binary[1] == DAG_PB:
        return binary[2:]
    return binary


def binary_as_spelled(text: str) -> bytes:
    """The binary CID a text spells, in its own version (34 bytes for ``Qm…``, else 36): what a CAR file carries."""
    cid, version = read_cid_version(text)
    return link_binary(cid, version)
