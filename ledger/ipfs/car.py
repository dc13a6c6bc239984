"""CARv1 files: how content leaves the embedded store for the IPFS network (``ipfs dag import``).

Format: ``varint(len(header)) | header`` where the header is the dag-cbor map
``{"roots": [CID], "version": 1}``, then per block ``varint(len(cid) + len(data)) | cid | data``.
The header is one small, fixed map, so it is encoded by hand in dag-cbor's canonical form
(keys sorted by length, the CID as tag 42 over bytes prefixed with the identity multibase 0x00).
CIDs are written in the version they are spelled in (a CIDv0 ``Qm…`` as its 34-byte multihash),
as ``ipfs dag export`` writes them. The reader accepts any CARv1 whose blocks are raw or dag-pb
with sha2-256 (CIDv0 or CIDv1), checks every block's hash, and names blocks canonically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ledger.ipfs.cid import DIGEST_LENGTH, SHA2_256, V0_LENGTH, binary_as_spelled, cid_from_link, cid_to_bytes
from ledger.errors import IntegrityError, InvalidInputError
from ledger.types import Cid
from ledger.ipfs.unixfs import Block, encode_varint
from ledger.workspace import atomic_file

_CID_TAG = 42


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * size):
            return bytes([major << 5 | extra]) + value.to_bytes(size, "big")
    raise ValueError("integer too large for CBOR")


def encode_header(roots: list[str]) -> bytes:
    """The dag-cbor bytes of ``{"roots": [...], "version": 1}``."""
    out = bytearray(_cbor_head(5, 2))
    out += _cbor_head(3, 5) + b"roots" + _cbor_head(4, len(roots))
    for root in roots:
        binary = b"\x00" + binary_as_spelled(root)
        out += _cbor_head(6, _CID_TAG) + _cbor_head(2, len(binary)) + binary
    out += _cbor_head(3, 7) + b"version" + _cbor_head(0, 1)
    return bytes(out)


def car_pieces(root: str, blocks: Iterable[tuple[str, bytes]]) -> Iterator[bytes]:
    """The bytes of a CARv1 of ``blocks`` (each CID as spelled, e.g. by ``walk_dag``) rooted at ``root``, piece by piece."""
    header = encode_header([root])
    yield encode_varint(len(header)) + header
    for cid, data in blocks:
        binary = binary_as_spelled(cid)
        yield encode_varint(len(binary) + len(data)) + binary
        yield data


def write_car(root: str, blocks: Iterable[tuple[str, bytes]], out: BinaryIO) -> int:
    """Write the CARv1 of :func:`car_pieces` to ``out``; returns the bytes written."""
    return sum(out.write(piece) for piece in car_pieces(root, blocks))


def export_car(root: str, blocks: Iterable[tuple[str, bytes]], path: Path | str) -> int:
    """Write the CAR to ``path`` atomically: the file appears whole or not at all."""
    with atomic_file(Path(path)) as handle:
        return write_car(root, blocks, handle)


# -- reading ------------------------------------------------------------------------------------
def _bad(why: str) -> InvalidInputError:
    return InvalidInputError(f"this is not a CARv1 file fedledger can read ({why}); export it again with `fedledger ipfs export`.")


def _read_varint(stream: BinaryIO) -> int | None:
    value = shift = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if shift == 0:
                return None
            raise _bad("truncated varint")
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise _bad("varint too long")


def _cbor_decode(data: bytes, pos: int = 0) -> tuple[Any, int]:
    """Just enough CBOR for a CAR header: maps, arrays, text, bytes, unsigned ints, tag 42."""
    if pos >= len(data):
        raise _bad("truncated header")
    major, info = data[pos] >> 5, data[pos] & 31
    pos += 1
    if info < 24:
        value = info
    elif info <= 27:
        size = 1 << (info - 24)
        value = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    else:
        raise _bad("indefinite lengths are not dag-cbor")
    if major == 0:
        return value, pos
    if major in (2, 3):
        raw = data[pos : pos + value]
        return (raw if major == 2 else raw.decode("utf-8")), pos + value
    if major == 4:
        items = []
        for _ in range(value):
            item, pos = _cbor_decode(data, pos)
            items.append(item)
        return items, pos
    if major == 5:
        mapping = {}
        for _ in range(value):
            key, pos = _cbor_decode(data, pos)
            mapping[key], pos = _cbor_decode(data, pos)
        return mapping, pos
    if major == 6 and value == _CID_TAG:
        raw, pos = _cbor_decode(data, pos)
        if not isinstance(raw, bytes) or raw[:1] != b"\x00":
            raise _bad("a CID link without the identity multibase prefix")
        try:
            return cid_from_link(raw[1:])[0], pos
        except InvalidInputError:
            raise _bad("a root that is not a raw or dag-pb sha2-256 CID") from None
    raise _bad(f"unexpected CBOR major type {major}")


@dataclass(frozen=True)
class CarFile:
    """A CAR read back: its roots and its blocks, each checked against its CID."""

    roots: list[Cid]
    blocks: list[Block]


def _read_cid(section: bytes) -> tuple[Cid, bytes]:
    length = V0_LENGTH if section[:2] == bytes([SHA2_256, DIGEST_LENGTH]) else V0_LENGTH + 2
    try:
        return cid_from_link(section[:length])[0], section[length:]
    except InvalidInputError:
        raise _bad("a block whose CID is not a raw or dag-pb sha2-256 CID") from None


def iter_car(stream: BinaryIO) -> tuple[list[Cid], Iterator[Block]]:
    """The roots of a CARv1 and an iterator of its blocks; IntegrityError on a block that does not match its CID."""
    length = _read_varint(stream)
    if length is None:
        raise _bad("empty file")
    header, end = _cbor_decode(stream.read(length))
    if end != length or not isinstance(header, dict) or header.get("version") != 1 or not isinstance(header.get("roots"), list):
        raise _bad("its header is not {roots, version: 1}")

    def blocks() -> Iterator[Block]:
        while (size := _read_varint(stream)) is not None:
            section = stream.read(size)
            if len(section) != size:
                raise _bad("a block is cut short")
            cid, data = _read_cid(section)
            if hashlib.sha256(data).digest() != cid_to_bytes(cid)[4:]:
                raise IntegrityError(f"block {cid} in the CAR does not hash to its CID; the file was altered, export it again.")
            yield cid, data

    return list(header["roots"]), blocks()


def read_car(path: Path | str) -> CarFile:
    """Read and check a whole CAR file."""
    with open(path, "rb") as stream:
        roots, blocks = iter_car(stream)
        return CarFile(roots, list(blocks))
