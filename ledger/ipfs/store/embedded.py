"""A content-addressed block store on disk that yields the CIDs Kubo would.

Layout under ``root`` (format 1, recorded as ``index.sqlite``'s ``PRAGMA user_version``)::

    blocks/<2 chars>/<cid>   content of one block (raw leaf or dag-pb leaf), a file of its own,
                             sharded like Kubo's flatfs (the next-to-last two characters of the CID)
    packs/<name>.pack        the blocks of one larger add, back to back as CAR block sections
                             (``varint | CID | data``: see :mod:`ledger.ipfs.store.packs`)
    index.sqlite             where each packed block lies: CID -> pack, offset, length (rebuilt
                             from the packs when it is deleted)
    pins/<cid>               a file per pinned root (empty, or the spelling it was pinned under)
    tmp/                     blocks and packs being written

Content of one block is one file, as before packs; a file of many blocks goes into one pack, so
an add of 100 MiB creates one file instead of 400. A store made before packs (``blocks/`` only,
no index) is read as it is, and gets its empty index when first opened; an index of another
format is refused with a sentence naming the fix. Blocks are named and looked up by their
canonical CIDv1, whatever layout added them.

Durability before visibility: a lone block is written to ``tmp/``, fsync-ed and renamed onto its
CID (``os.replace`` is atomic); a pack is ``fdatasync``-ed before its rows are committed to the
index, batch by batch (8 MiB), children before parents and the root in the last commit, so once
a root is visible every block under it is too. A writer killed mid-file leaves only complete,
committed batches (and bytes no row points at) behind; adding the file again completes it. Two
processes may write the same block at once: the index keeps the first copy. Every read re-hashes
each block against its CID; a packed copy that fails the check is dropped from the index (the
bytes stay in the pack), so that adding the content again writes it anew.

Failpoints (``ledger.failpoints``) let tests kill a writer inside a commit: ``store:before-commit``
with a batch durable but not yet visible (the first commit of an add), ``store:before-root-commit``
with every batch visible but the last, the one that holds the root.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from ledger.ipfs.cid import RAW, cid_to_bytes, parse_cid
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    StoreError,
)
from ledger.failpoints import failpoint
from ledger.ipfs.store.packs import BATCH_BYTES, BlockIndex, Location, PackReader, PackWriter
from ledger.types import Cid
from ledger.ipfs.unixfs import (
    CHUNK_SIZE,
    FEDLEDGER,
    MAX_DEPTH,
    DagBuilder,
    Layout,
    Link,
    Node,
    decode_node,
    iter_chunks,
    walk_dag,
)
from ledger.workspace import atomic_write_bytes

_STALE_TMP_SECONDS = 3600
_binary = functools.lru_cache(maxsize=1 << 16)(cid_to_bytes)  # text -> binary CID, hot on every block read


class EmbeddedStore:
    """Blocks on disk under ``root``; safe for several processes at once."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        self._tmp = self.root / "tmp"
        self._packs = self.root / "packs"
        self._blocks_name, self._tmp_name = str(self._blocks), str(self._tmp)
        try:
            for folder in (self._blocks, self._pins, self._tmp, self._packs):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot use {self.root} as a content store ({error.strerror}); "
                "choose a folder you can write to (--repo DIR, or store.path in fedledger.toml)."
            ) from error
        self._index = BlockIndex(self.root)
        self._sweep_tmp()

    def __repr__(self) -> str:
        return f"EmbeddedStore({str(self.root)!r})"

    # -- adding -----------------------------------------------------------------------------
    def add_bytes(self, data: bytes | bytearray | memoryview, *, pin: bool = True) -> Cid:
        view = memoryview(data).cast("B")
        chunks = (view[start : start + CHUNK_SIZE] for start in range(0, len(view), CHUNK_SIZE))
        return self._add_chunks(chunks, pin=pin)

    def add_file(self, path: Path | str, *, pin: bool = True) -> Cid:
        try:
            stream = open(path, "rb")
        except FileNotFoundError as error:
            raise StoreError(f"{path} does not exist; give the path of a file to add.") from error
        except IsADirectoryError as error:
            raise StoreError(f"{path} is a folder; fedledger adds single files only.") from error
        with stream:
            return self.add_stream(stream, pin=pin)

    def add_stream(self, stream: BinaryIO, *, pin: bool = True) -> Cid:
        """Add everything a binary stream yields, 256 KiB at a time."""
        return self._add_chunks(iter_chunks(stream), pin=pin)

    def import_stream(self, stream: BinaryIO, *, layout: Layout = FEDLEDGER, pin: bool = True) -> Link:
        """Add a stream as ``ipfs add`` with ``layout`` would; the root's link (CID, Kubo's "Size", file size)."""
        builder = DagBuilder(layout)
        self._add_chunks(iter_chunks(stream, layout.chunk_size), pin=pin, builder=builder)
        assert builder.root is not None
        return builder.root

    def _add_chunks(self, chunks: Iterable[bytes | memoryview], *, pin: bool, builder: DagBuilder | None = None) -> Cid:
        builder = builder or DagBuilder()
        adding = _Add(self)
        try:
            for chunk in chunks:
                cid, data = builder.leaf(chunk)
                adding.take(cid, data)
                for parent, block in builder.push_leaf(cid, len(chunk), len(data)):
                    adding.take(parent, block)
            root, blocks = builder.finish()
            for cid, block in blocks:  # the root (or the empty block) goes last
                adding.take(cid, block)
            adding.finish()
        finally:
            adding.close()
        if pin:
            self.pin(root)
        return root

    def _holds(self, cid: Cid) -> bool:
        return os.path.exists(self._block_name(cid)) or self._index.find(cid) is not None

    def _write_alone(self, cid: Cid, data: bytes | memoryview) -> None:
        """A content of one block: its own file under blocks/, fsync-ed before it is renamed into place."""
        temp = f"{self._tmp_name}/{cid}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            failpoint("store:before-commit")
            failpoint("store:before-root-commit")
            path = self._block_name(cid)
            try:
                os.replace(temp, path)
            except FileNotFoundError:  # first block in this shard folder (mkdir is slow: only when needed)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(temp, path)
        except BaseException:
            _unlink(temp)
            raise

    def _block_name(self, cid: str) -> str:
        """``block_path`` as a string (on the write path, where Path objects cost more than the I/O)."""
        return f"{self._blocks_name}/{cid[-3:-1]}/{cid}"

    # -- reading ----------------------------------------------------------------------------
    def block_path(self, cid: str) -> Path:
        """The file of a block stored on its own (content of one block, or any block of a store
        written before packs); packed blocks are in ``packs/``, found through the index."""
        return self._blocks / cid[-3:-1] / cid

    def has(self, cid: str) -> bool:
        cid_to_bytes(cid)
        return self.block_path(cid).is_file() or self._index.find(cid) is not None

    def block_size(self, cid: str) -> int:
        """The size of the block ``cid`` as stored (Kubo's ``block/stat``), without reading it."""
        cid = parse_cid(cid)
        try:
            return self.block_path(cid).stat().st_size
        except FileNotFoundError:
            location = self._index.find(cid)
            if location is None:
                raise self._missing(cid, None) from None
            return location[2]

    def read_block(self, cid: str, *, root: str | None = None) -> bytes:
        """One block's bytes, checked against its CID."""
        reader = PackReader(self._packs)
        try:
            return self._read(cid, root, reader)
        finally:
            reader.close()

    def _read(self, cid: str, root: str | None, reader: PackReader, size: int | None = None) -> bytes:
        """Block ``cid``, checked against its CID (and against ``size``, its parent's word on its length)."""
        location = self._index.find(cid)  # packed blocks first: they are the many leaves of large content
        if location is not None:
            data = reader.read(location)
        else:
            try:
                with open(self._block_name(cid), "rb", buffering=0) as handle:
                    data = handle.readall()
            except FileNotFoundError:
                raise self._missing(cid, root) from None
        if (size is not None and len(data) != size) or hashlib.sha256(data).digest() != _binary(cid)[4:]:
            raise self._tampered(cid, root, location)
        return data

    def get(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)
        if max_bytes is not None:  # checked before any leaf is read
            self._refuse_above(cid, self.content_size(cid), max_bytes)
        return b"".join(self.iter_content(cid))  # one copy; sizes were checked leaf by leaf against the parents

    @staticmethod
    def _refuse_above(cid: Cid, size: int, max_bytes: int) -> None:
        if size > max_bytes:
            raise ContentTooLargeError(f"content {cid} is {size} bytes, more than the {max_bytes} expected; it was not read.")

    def iter_content(self, cid: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The content of ``cid`` (or ``length`` bytes of it from ``offset``) block by block, each block
        checked before its bytes are yielded; leaves wholly outside the range are not read."""
        cid = parse_cid(cid)
        reader = PackReader(self._packs)
        try:
            data = self._read(cid, None, reader)
            node = Node((), len(data), data) if _binary(cid)[1] == RAW else decode_node(cid, data)
            end = node.filesize if length is None else min(node.filesize, offset + length)
            for first, piece in self._pieces(cid, node, reader, 0, offset, end):
                if not isinstance(piece, bytes):
                    piece = self._read(piece.cid, cid, reader, piece.filesize)
                start, stop = max(offset - first, 0), min(end - first, len(piece))
                if start < stop:
                    yield piece if (start, stop) == (0, len(piece)) else piece[start:stop]
        finally:
            reader.close()

    def content_size(self, cid: str) -> int:
        """The file size of ``cid``'s content, from its root block alone (a raw block's from its size on disk)."""
        cid = parse_cid(cid)
        if _binary(cid)[1] == RAW:
            return self.block_size(cid)
        return decode_node(cid, self.read_block(cid)).filesize

    def iter_dag(self, cid: str, *, version: int = 1) -> Iterator[tuple[str, bytes]]:
        """Every block of ``cid``'s DAG once, checked, in ``ipfs dag export``'s order (root first,
        depth first, each where first seen); the root spelled in CID ``version``."""
        return self._walk(parse_cid(cid), version)

    def _walk(self, cid: Cid, version: int) -> Iterator[tuple[str, bytes]]:
        reader = PackReader(self._packs)
        try:
            yield from walk_dag(cid, lambda block: self._read(block, cid, reader), root_version=version)
        finally:
            reader.close()

    def _pieces(self, root: Cid, node: Node, reader: PackReader, depth: int, start: int = 0,
                end: int | None = None, base: int = 0) -> Iterator[tuple[int, Link | bytes]]:
        """The content under ``node`` in file order, each piece with its offset in the file: a raw leaf
        as its Link (still to be read and checked), a dag-pb leaf as its bytes (read and checked here,
        like every inner node). Subtrees wholly outside ``start``–``end`` (offsets into ``node``'s
        content) are skipped unread; a piece may reach past either end."""
        end = node.filesize if end is None else end
        if not node.links:
            yield base, node.data
            return
        if depth > MAX_DEPTH:
            raise IntegrityError(f"content {root} nests deeper than any file fedledger adds; it was not made by `ipfs add`.")
        position = 0
        for link in node.links:
            first, position = position, position + link.filesize
            if first >= end:
                return
            if position <= start:
                continue
            if _binary(link.cid)[1] == RAW:
                yield base + first, link
                continue
            child = decode_node(link.cid, self._read(link.cid, root, reader))
            if child.filesize != link.filesize:
                raise self._tampered(link.cid, root, None)
            yield from self._pieces(root, child, reader, depth + 1, max(start - first, 0), end - first, base + first)

    def _missing(self, cid: str, root: str | None) -> ContentNotFoundError:
        what = f"block {cid} of content {root}" if root and root != cid else f"content {cid}"
        return ContentNotFoundError(
            f"{what} is not in the store at {self.root}; add it again, or fetch it from the store that pinned it."
        )

    def _tampered(self, cid: str, root: str | None, location: Location | None) -> IntegrityError:
        what = f"block {cid} of content {root}" if root and root != cid else f"content {cid}"
        if location is None:
            fix = f"delete {self.block_path(cid)} and add the content again."
        elif self._index.forget(cid, location):
            fix = f"its copy in {self._packs / location[0]}.pack was set aside; add the content again."
        else:
            fix = f"make {self._index.path} writable, then add the content again."
        return IntegrityError(f"{what} does not hash to its CID: the store at {self.root} was altered or damaged; {fix}")

    # -- pins -------------------------------------------------------------------------------
    def pin(self, cid: str, *, spelled: str | None = None) -> None:
        """Keep ``cid``; ``spelled`` is how it is listed when not canonical (a pin made as CIDv0 ``Qm…``)."""
        cid = parse_cid(cid)
        if not self.has(cid):
            raise self._missing(cid, None)
        path = self._pins / cid
        if not path.exists():
            atomic_write_bytes(path, b"" if spelled in (None, cid) else str(spelled).encode("ascii"))

    def unpin(self, cid: str) -> None:
        cid = parse_cid(cid)
        try:
            (self._pins / cid).unlink()
        except FileNotFoundError:
            raise ContentNotFoundError(f"{cid} is not pinned in the store at {self.root}; nothing to unpin.") from None

    def pins(self) -> list[Cid]:
        return sorted(Cid(path.name) for path in self._pins.iterdir() if not path.name.startswith("."))

    def pin_spellings(self) -> dict[Cid, str]:
        """Every pin with the spelling it was made under (the canonical CID unless recorded otherwise)."""
        spellings = {}
        for cid in self.pins():
            try:
                spelled = (self._pins / cid).read_text("ascii").strip()
            except (FileNotFoundError, UnicodeDecodeError):
                spelled = ""
            spellings[cid] = spelled or cid
        return spellings

    # -- housekeeping -----------------------------------------------------------------------
    def _sweep_tmp(self) -> None:
        """Remove temp files that a killed writer left behind long ago (recent ones may be in use)."""
        cutoff = time.time() - _STALE_TMP_SECONDS
        for path in self._tmp.iterdir():
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except FileNotFoundError:
                pass


class _Add:
    """The blocks of one add on their way to disk, in the order the DAG builder gives them.

    The first block is held back until a second one comes: a content of one block is written as
    its own file, a larger one into a pack. Blocks the store already holds are not written again.
    """

    def __init__(self, store: EmbeddedStore) -> None:
        self._store = store
        self._pack = PackWriter(store.root, store._index)
        self._first: tuple[Cid, bytes | memoryview] | None = None
        self._taken = 0

    def take(self, cid: Cid, data: bytes | memoryview) -> None:
        self._taken += 1
        if self._taken == 1:
            self._first = (cid, data)
            return
        if self._first is not None:
            self._write(*self._first)
            self._first = None
        self._write(cid, data)

    def _write(self, cid: Cid, data: bytes | memoryview) -> None:
        if self._pack.holds(cid) or self._store._holds(cid):
            return
        if self._pack.pending >= BATCH_BYTES:  # checked before writing, so the root is in the last commit
            self._pack.commit(last=False)
        self._pack.write(cid, data)

    def finish(self) -> None:
        """Make every block durable, then visible, the root last."""
        if self._first is not None:  # the whole content is this one block
            cid, data = self._first
            if not self._store._holds(cid):
                self._store._write_alone(cid, data)
            return
        self._pack.commit(last=True)

    def close(self) -> None:
        self._pack.close()


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
