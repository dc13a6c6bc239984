"""The UnixFS file DAG that ``ipfs add`` builds, so our CIDs equal Kubo's.

fedledger's own content is added with Kubo's CIDv1 defaults (``ipfs add --cid-version=1``):
fixed 256 KiB chunks, each chunk a raw block (codec 0x55); chunks grouped left to right into
dag-pb parents of at most 174 links, level by level, until one root remains (Kubo's "balanced"
layout). A file of one chunk is its own root; the empty file is one empty raw block. A parent is
a dag-pb ``PBNode`` whose links come first (Hash, empty Name, Tsize = the child's whole subtree
size) followed by its Data: a UnixFS message ``{Type=File, filesize, blocksizes of each child}``.

Kubo's other layouts differ only at the edges, described by :class:`Layout`: with
``raw-leaves=false`` (Kubo's default, and CIDv0's) each chunk is a dag-pb leaf
``PBNode{Data: UnixFS{Type=File, Data=chunk, filesize}}``; with CIDv0 a parent links its dag-pb
children by their bare multihash (raw leaves stay CIDv1); ``chunker=size-N`` and
``max-file-links`` change the two numbers. Whatever the layout, blocks are stored and named by
their canonical CIDv1 (:mod:`ledger.ipfs.cid`): Kubo's own blockstore is keyed by multihash too.

Everything streams: :class:`DagBuilder` takes leaves one by one and hands back the blocks it
can already finish, so a file is never held in memory; at most ``max_links`` link entries per
level are kept. :func:`decode_node` reads a node back (for reassembly and CAR export) and
:func:`walk_dag` visits a DAG in ``ipfs dag export``'s order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ledger.ipfs.cid import DAG_PB, RAW, cid_from_link, cid_from_parts, cid_to_bytes, link_binary, spell_cid
from ledger.errors import IntegrityError
from ledger.types import Cid

CHUNK_SIZE = 256 * 1024
MAX_LINKS = 174
MAX_DEPTH = 16  # a 174-ary tree this deep addresses far more than any file
_UNIXFS_RAW = 0
_UNIXFS_FILE = 2

Block = tuple[Cid, bytes]
"""A block as the store writes it: its CID and its exact bytes."""


@dataclass(frozen=True)
class Layout:
    """How ``ipfs add`` shapes a file's DAG: the options that change its CID."""

    cid_version: int = 1
    raw_leaves: bool = True
    chunk_size: int = CHUNK_SIZE
    max_links: int = MAX_LINKS


FEDLEDGER = Layout()
"""``ipfs add --cid-version=1``: what fedledger adds and what the chain records."""

KUBO_DEFAULT = Layout(cid_version=0, raw_leaves=False)
"""Plain ``ipfs add``: CIDv0 with dag-pb leaves."""


@dataclass(frozen=True)
class Link:
    """One child of a dag-pb node: its CID, its subtree size in bytes, its file-content size, and
    the CID version the parent links it with (0: by bare multihash)."""

    cid: Cid
    tsize: int
    filesize: int
    version: int = 1


@dataclass(frozen=True)
class Node:
    """A decoded dag-pb UnixFS file node: a parent (links) or a leaf (its bytes in ``data``)."""

    links: tuple[Link, ...]
    filesize: int
    data: bytes = b""


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


def encode_node(links: Iterable[Link], version: int = 1) -> bytes:
    """The dag-pb bytes of a UnixFS file node over ``links`` (links first, then Data), linking
    dag-pb children in CID ``version``."""
    links = list(links)
    out = bytearray()
    for link in links:
        pb_link = _bytes_field(1, link_binary(link.cid, version)) + _bytes_field(2, b"") + _varint_field(3, link.tsize)
        out += _bytes_field(2, pb_link)
    unixfs = bytearray(_varint_field(1, _UNIXFS_FILE))
    unixfs += _varint_field(3, sum(link.filesize for link in links))
    for link in links:
        unixfs += _varint_field(4, link.filesize)
    out += _bytes_field(1, bytes(unixfs))
    return bytes(out)


def encode_leaf(chunk: bytes | memoryview) -> bytes:
    """A dag-pb leaf as Kubo writes one with ``raw-leaves=false``: UnixFS File with the chunk as Data."""
    unixfs = _varint_field(1, _UNIXFS_FILE) + (_bytes_field(2, bytes(chunk)) if len(chunk) else b"")
    unixfs += _varint_field(3, len(chunk))
    return _bytes_field(1, unixfs)


def decode_node(cid: str, data: bytes | memoryview) -> Node:
    """Parse a dag-pb UnixFS file node (parent or leaf); IntegrityError naming ``cid`` if it is not one."""
    try:
        links: list[tuple[Cid, int, int]] = []
        unixfs: bytes | None = None
        for number, wire, value in _fields(data):
            if number == 2 and wire == 2:
                link_cid, version, tsize = None, 1, 0
                for sub, sub_wire, sub_value in _fields(value):  # type: ignore[arg-type]
                    if sub == 1 and sub_wire == 2:
                        link_cid, version = cid_from_link(sub_value)  # type: ignore[arg-type]
                    elif sub == 3 and sub_wire == 0:
                        tsize = int(sub_value)  # type: ignore[arg-type]
                if link_cid is None:
                    raise ValueError("link without a hash")
                links.append((link_cid, tsize, version))
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
        if not links:  # a leaf: its bytes are inline (Type=File as Kubo writes it, Raw in older trees)
            if kind not in (_UNIXFS_FILE, _UNIXFS_RAW) or sizes or (filesize is not None and filesize != len(inline)):
                raise ValueError("not a UnixFS file leaf")
            return Node((), len(inline), bytes(inline))
        if kind != _UNIXFS_FILE or inline or len(sizes) != len(links):
            raise ValueError("not a UnixFS file node")
        if filesize != sum(sizes):
            raise ValueError("filesize does not equal the sum of blocksizes")
    except (ValueError, IntegrityError) as error:
        raise IntegrityError(
            f"block {cid} is not a UnixFS file node fedledger can read ({error}); "
            "the content was not added as a file by `ipfs add`, or it is corrupt."
        ) from error
    return Node(tuple(Link(c, t, s, v) for (c, t, v), s in zip(links, sizes, strict=True)), int(filesize))


def raw_cid(data: bytes | memoryview) -> Cid:
    """The CID of ``data`` as one raw block."""
    return cid_from_parts(RAW, hashlib.sha256(data).digest())


def block_cid(codec: int, data: bytes | memoryview) -> Cid:
    """The CID a block of ``codec`` with these bytes has."""
    return cid_from_parts(codec, hashlib.sha256(data).digest())


# -- building -------------------------------------------------------------------------------
class DagBuilder:
    """Builds the balanced DAG from leaves given in order; yields finished parent blocks.

    Make each leaf with :meth:`leaf` (or hash raw leaves elsewhere, e.g. while writing them) and
    feed its CID and sizes to :meth:`push_leaf`; collect the parent blocks it returns, then call
    :meth:`finish`. ``root`` is the root's :class:`Link` once finished (its ``tsize`` is Kubo's
    "Size" of the added file).
    """

    def __init__(self, layout: Layout = FEDLEDGER) -> None:
        self.layout = layout
        self.root: Link | None = None
        self._levels: list[list[Link]] = [[]]
        self._leaves = 0

    def leaf(self, chunk: bytes | memoryview) -> tuple[Cid, bytes | memoryview]:
        """The CID and block bytes of one chunk as a leaf of this layout (a raw leaf is the chunk itself)."""
        if self.layout.raw_leaves:
            return raw_cid(chunk), chunk
        data = encode_leaf(chunk)
        return block_cid(DAG_PB, data), data

    def push_leaf(self, cid: Cid, size: int, block_size: int | None = None) -> list[Block]:
        """Take the next leaf: its CID, content size and block size (the same for a raw leaf)."""
        self._leaves += 1
        version = 1 if self.layout.raw_leaves else self.layout.cid_version  # how a parent links this leaf
        return self._push(0, Link(cid, size if block_size is None else block_size, size, version))

    def _push(self, level: int, link: Link) -> list[Block]:
        if level == len(self._levels):
            self._levels.append([])
        self._levels[level].append(link)
        if len(self._levels[level]) < self.layout.max_links:
            return []
        # A full group never changes again: emit its parent now.
        parent, block = self._parent(self._levels[level])
        self._levels[level] = []
        return [block, *self._push(level + 1, parent)]

    def _parent(self, links: list[Link]) -> tuple[Link, Block]:
        data = encode_node(links, self.layout.cid_version)
        cid = block_cid(DAG_PB, data)
        tsize = len(data) + sum(link.tsize for link in links)
        return Link(cid, tsize, sum(link.filesize for link in links), self.layout.cid_version), (cid, data)

    def finish(self) -> tuple[Cid, list[Block]]:
        """The root CID and the last parent blocks (plus the one empty leaf for an empty file)."""
        if self._leaves == 0:
            cid, data = self.leaf(b"")
            self.root = Link(cid, len(data), 0, self.layout.cid_version if _is_dag_pb(cid) else 1)
            return cid, [(cid, bytes(data))]
        blocks: list[Block] = []
        level = 0
        while True:
            links = self._levels[level]
            above = any(self._levels[level + 1 :])
            if not above and len(links) == 1:
                self.root = links[0]
                return links[0].cid, blocks
            if links:
                parent, block = self._parent(links)
                self._levels[level] = []
                blocks.append(block)
                if level + 1 == len(self._levels):
                    self._levels.append([])
                self._levels[level + 1].append(parent)  # never full: it had room before finish
            level += 1


def _is_dag_pb(cid: str) -> bool:
    return cid_to_bytes(cid)[1] == DAG_PB


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


def iter_blocks(chunks: Iterable[bytes], layout: Layout = FEDLEDGER) -> Iterator[Block]:
    """Every block of the DAG over ``chunks`` (``layout.chunk_size`` each but the last), root last."""
    builder = DagBuilder(layout)
    for chunk in chunks:
        cid, data = builder.leaf(chunk)
        yield cid, data  # type: ignore[misc]
        yield from builder.push_leaf(cid, len(chunk), len(data))
    _, blocks = builder.finish()
    yield from blocks


def hash_stream(stream: BinaryIO, layout: Layout = FEDLEDGER) -> Link:
    """The root link (CID, Kubo's "Size", file size) ``ipfs add`` with ``layout`` gives these bytes; nothing stored."""
    builder = DagBuilder(layout)
    for chunk in iter_chunks(stream, layout.chunk_size):
        cid, data = builder.leaf(chunk)
        builder.push_leaf(cid, len(chunk), len(data))
    builder.finish()
    assert builder.root is not None
    return builder.root


def cid_of_stream(stream: BinaryIO, layout: Layout = FEDLEDGER) -> Cid:
    """The CID Kubo gives these bytes (``ipfs add --cid-version=1`` unless ``layout`` says otherwise)."""
    return hash_stream(stream, layout).cid


def cid_of_bytes(data: bytes | memoryview, layout: Layout = FEDLEDGER) -> Cid:
    """The CID Kubo gives ``data`` (``ipfs add --cid-version=1`` unless ``layout`` says otherwise)."""
    view = memoryview(data)
    builder = DagBuilder(layout)
    for start in range(0, len(view), layout.chunk_size):
        chunk = view[start : start + layout.chunk_size]
        cid, block = builder.leaf(chunk)
        builder.push_leaf(cid, len(chunk), len(block))
    return builder.finish()[0]


# -- walking ----------------------------------------------------------------------------------
def walk_dag(root: Cid, read_block: Callable[[Cid], bytes], *, root_version: int = 1) -> Iterator[tuple[str, bytes]]:
    """Every block of ``root``'s DAG once, in ``ipfs dag export``'s order: depth first, each block
    where it is first seen. Each comes spelled as its parent links it (``Qm…`` for a CIDv0 link),
    the root as ``root_version`` says. ``read_block`` returns a block's checked bytes."""
    seen: set[Cid] = set()
    stack: list[tuple[Cid, int, int]] = [(root, root_version, 0)]
    while stack:
        cid, version, depth = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        data = read_block(cid)
        yield spell_cid(cid, version=version), data
        if cid_to_bytes(cid)[1] == RAW:
            continue
        node = decode_node(cid, data)
        if node.links and depth >= MAX_DEPTH:
            raise IntegrityError(f"content {root} nests deeper than any file fedledger adds; it was not made by `ipfs add`.")
        stack.extend((link.cid, link.version, depth + 1) for link in reversed(node.links))
