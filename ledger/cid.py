"""CIDv1 text ⇄ binary conversions, and the compact forms the contract carries.

A fedledger CID is always CIDv1 with a sha2-256 multihash: binary form is 36 bytes
``0x01 | codec | 0x12 0x20 | digest``. The codec is raw (0x55) for content of one chunk and
dag-pb (0x70) for larger content, so the digest alone does not name the content: the codec
always travels with it. Text form is ``b`` + lowercase base32 without padding.
"""

from __future__ import annotations

import base64

from ledger.errors import MalformedCidError
from ledger.types import Cid

CIDV1 = 0x01
RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_LENGTH = 32
BINARY_LENGTH = 4 + DIGEST_LENGTH
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
    return Cid("b" + base64.b32encode(binary).decode("ascii").rstrip("=").lower())


def cid_to_bytes(cid: str) -> bytes:
    """The 36-byte binary form of a text CIDv1; raises MalformedCidError on anything else."""
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
