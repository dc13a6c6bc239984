"""The UnixFS file DAG that ``ipfs add --cid-version=1`` builds, so our CIDs equal Kubo's.

Kubo's defaults with CIDv1: fixed 256 KiB chunks, each chunk a raw block (codec 0x55);
chunks grouped left to right into dag-pb parents of at most 174 links, level by level, until
one root remains (Kubo's "balanced" layout). A file of one chunk is its own root; the empty
file is one empty raw block. A parent is a dag-pb ``PBNode`` whose links come first (Hash,
empty Name, Tsize = the child's whole subtree size) followed by its Data: a UnixFS message
``{Type=File, filesize, blocksizes of each child}``.

Everything streams: :class:`DagBuilder` takes leaves one by one and hands back the blocks it
can already finish, so a file is never held in memory; at most 174 link entries per level are
kept. :func:`decode_node` reads a parent back (for reassembly and CAR export).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ledger.cid import DAG_PB, RAW, cid_from_bytes, cid_from_parts, cid_to_bytes
from ledger.errors import IntegrityError
from ledger.types import Cid

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174
_UNIXFS_FILE = 2

Block = tuple[Cid, bytes]
"""A block as the store writes it: its CID and its exact bytes."""


@dataclass(frozen=True)
class Link:
    """One child of a dag-pb node: its CID, its subtree size in bytes, its file-content size."""

    cid: Cid
    tsize: int
    filesize: int


@dataclass(frozen=True)
class Node:
    """A decoded dag-pb UnixFS file node."""

    links: tuple[Link, ...]
    filesize: int


# -- protobuf wire format (just what dag-pb and UnixFS need) ------------------------------------
def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, the varint of protobuf, multiformats and CAR."""
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a protobuf message; only varint and bytes fields."""
    pos = 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(data, pos)
            yield number, wire, value
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield number, wire, bytes(data[pos : pos + length])
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire}")


def _bytes_field(number: int, value: bytes) -> bytes:
    return encode_varint(number << 3 | 2) + encode_varint(len(value)) + value


def _varint_field(number: int, value: int) -> bytes:
    return encode_varint(number << 3) + encode_varint(value)


def encode_node(links: Iterable[Link]) -> bytes:
    """The dag-pb bytes of a UnixFS file node over ``links`` (links first, then Data)."""
    links = list(links)
    out = bytearray()
    for link in links:
        pb_link = _bytes_field(1, cid_to_bytes(link.cid)) + _bytes_field(2, b"") + _varint_field(3, link.tsize)
        out += _bytes_field(2, pb_link)
    unixfs = bytearray(_varint_field(1, _UNIXFS_FILE))
    unixfs += _varint_field(3, sum(link.filesize for link in links))
    for link in links:
        unixfs += _varint_field(4, link.filesize)
    out += _bytes_field(1, bytes(unixfs))
    return bytes(out)


def decode_node(cid: str, data: bytes | memoryview) -> Node:
    """Parse a dag-pb UnixFS file node; IntegrityError naming ``cid`` if it is not one."""
    try:
        links: list[tuple[Cid, int]] = []
        unixfs: bytes | None = None
        for number, wire, value in _fields(data):
            if number == 2 and wire == 2:
                link_cid, tsize = None, 0
                for sub, sub_wire, sub_value in _fields(value):  # type: ignore[arg-type]
                    if sub == 1 and sub_wire == 2:
                        link_cid = cid_from_bytes(sub_value)  # type: ignore[arg-type]
                    elif sub == 3 and sub_wire == 0:
                        tsize = int(sub_value)  # type: ignore[arg-type]
                if link_cid is None:
                    raise ValueError("link without a hash")
                links.append((link_cid, tsize))
            elif number == 1 and wire == 2:
                unixfs = value  # type: ignore[assignment]
        if unixfs is None:
            raise ValueError("no UnixFS data")
        kind, filesize, sizes, inline = None, None, [], b""
        for number, wire, value in _fields(unixfs):
            if number == 1 and wire == 0:
                kind = value
            elif number == 2 and wire == 2:
                inline = value  # type: ignore[assignment]
            elif number == 3 and wire == 0:
                filesize = value
            elif number == 4 and wire == 0:
                sizes.append(int(value))  # type: ignore[arg-type]
        if kind != _UNIXFS_FILE or inline or len(sizes) != len(links) or not links:
            raise ValueError("not a UnixFS file node with raw leaves")
        if filesize != sum(sizes):
            raise ValueError("filesize does not equal the sum of blocksizes")
    except ValueError as error:
        raise IntegrityError(
            f"block {cid} is not a UnixFS file node fedledger can read ({error}); "
            "the content was not added with `ipfs add --cid-version=1` defaults, or it is corrupt."
        ) from error
    return Node(tuple(Link(c, t, s) for (c, t), s in zip(links, sizes, strict=True)), int(filesize))


def raw_cid(data: bytes | memoryview) -> Cid:
    """The CID of ``data`` as one raw block."""
    return cid_from_parts(RAW, hashlib.sha256(data).digest())


def block_cid(codec: int, data: bytes | memoryview) -> Cid:
    """The CID a block of ``codec`` with these bytes has."""
    return cid_from_parts(codec, hashlib.sha256(data).digest())


# -- building -------------------------------------------------------------------------------
class DagBuilder:
    """Builds the balanced DAG from leaves given in order; yields finished parent blocks.

    Feed each chunk's raw CID and length with :meth:`push_leaf` (hashing may happen elsewhere,
    e.g. on worker threads), collect the parent blocks it returns, then call :meth:`finish`.
    """

    def __init__(self) -> None:
        self._levels: list[list[Link]] = [[]]
        self._leaves = 0

    def push_leaf(self, cid: Cid, size: int) -> list[Block]:
        self._leaves += 1
        return self._push(0, Link(cid, size, size))

    def _push(self, level: int, link: Link) -> list[Block]:
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(link)
        if len(self._levels[level]) < MAX_LINKS:
            return []
        # A full group never changes again: emit its parent now.
        parent, block = self._parent(self._levels[level])
        self._levels[level] = []
        return [block, *self._push(level + 1, parent)]

    @staticmethod
    def _parent(links: list[Link]) -> tuple[Link, Block]:
        data = encode_node(links)
        cid = block_cid(DAG_PB, data)
        return Link(cid, len(data) + sum(link.tsize for link in links), sum(link.filesize for link in links)), (cid, data)

    def finish(self) -> tuple[Cid, list[Block]]:
        """The root CID and the last parent blocks (plus the empty raw block for an empty file)."""
        if self._leaves == 0:
            return raw_cid(b""), [(raw_cid(b""), b"")]
        blocks: list[Block] = []
        level = 0
        while True:
            links = self._levels[level]
            above = any(self._levels[level + 1 :])
            if not above and len(links) == 1:
                return links[0].cid, blocks
            if links:
                parent, block = self._parent(links)
                self._levels[level] = []
                blocks.append(block)
                if level + 1 == len(self._levels):
                    self._levels.append([])
                self._levels[level + 1].append(parent)  # never full: it had room before finish
            level += 1


def iter_chunks(stream: BinaryIO, size: int = CHUNK_SIZE) -> Iterator[bytes]:
    """Fixed-size chunks of a binary stream (the last one may be short), like Kubo's size splitter."""
    while True:
        chunk = stream.read(size)
        while chunk and len(chunk) < size:  # pipes and sockets may return short reads
            more = stream.read(size - len(chunk))
            if not more:
                break
            chunk += more
        if not chunk:
            return
        yield chunk


def iter_blocks(chunks: Iterable[bytes]) -> Iterator[Block]:
    """Every block of the DAG over ``chunks`` (256 KiB each but the last), root last."""
    builder = DagBuilder()
    for chunk in chunks:
        cid = raw_cid(chunk)
        yield cid, chunk
        yield from builder.push_leaf(cid, len(chunk))
    _, blocks = builder.finish()
    yield from blocks


def cid_of_stream(stream: BinaryIO) -> Cid:
    """The CID Kubo gives these bytes with ``ipfs add --cid-version=1`` (nothing stored)."""
    builder = DagBuilder()
    for chunk in iter_chunks(stream):
        builder.push_leaf(raw_cid(chunk), len(chunk))
    return builder.finish()[0]


def cid_of_bytes(data: bytes | memoryview) -> Cid:
    """The CID Kubo gives ``data`` with ``ipfs add --cid-version=1`` (nothing stored)."""
    view = memoryview(data)
    builder = DagBuilder()
    for start in range(0, len(view), CHUNK_SIZE):
        chunk = view[start : start + CHUNK_SIZE]
        builder.push_leaf(raw_cid(chunk), len(chunk))
    return builder.finish()[0]
