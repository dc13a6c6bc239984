"""A content-addressed block store on disk that yields the CIDs Kubo would.

Layout under ``root``::

    blocks/<2 chars>/<cid>   one file per block (raw leaf or dag-pb node), sharded like Kubo's
                             flatfs (the next-to-last two characters of the CID)
    pins/<cid>               an empty file per pinned root
    tmp/                     blocks being written

Crash safety and concurrency come from the file system, not from locks: a block is written to
``tmp/``, made durable (fsync; for a large file one ``syncfs`` per 32 MiB batch), then renamed
onto its CID name (``os.replace`` is atomic), so a reader sees a whole block or none. Children
are renamed before their parents and the root last, so once a root is visible every block under
it is too; a writer killed mid-file leaves only complete, unreferenced blocks (and stray temp
files) behind, and adding the file again completes it. Two processes writing the same block
write the same bytes. Every read re-hashes each block against its CID.

Failpoints (``ledger.failpoints``) let tests kill a writer inside a commit:
``store:between-renames`` after the first rename of a batch, ``store:before-root-rename`` with
every block of the file renamed but its root.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import itertools
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ledger.cid import RAW, cid_to_bytes, parse_cid
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    StoreError,
)
from ledger.failpoints import failpoint
from ledger.types import Cid
from ledger.unixfs import (
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

_WORKERS = max(2, min(4, os.cpu_count() or 2))
_WINDOW = 4 * _WORKERS  # chunks in flight while adding or reading: bounds memory
_STALE_TMP_SECONDS = 3600
_BATCH_BYTES = 32 * 1024 * 1024  # temp bytes written before they are made durable and renamed
_FSYNC_EACH_UP_TO = 8  # small batches fsync file by file; larger ones sync the file system once
_binary = functools.lru_cache(maxsize=1 << 16)(cid_to_bytes)  # text -> binary CID, hot on every block read
_TEMP_NUMBERS = itertools.count()  # next() is atomic under the GIL: unique temp names across threads


class EmbeddedStore:
    """Blocks on disk under ``root``; safe for several processes at once."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._blocks = self.root / "blocks"
        self._pins = self.root / "pins"
        self._tmp = self.root / "tmp"
        self._blocks_name, self._tmp_name = str(self._blocks), str(self._tmp)
        try:
            for folder in (self._blocks, self._pins, self._tmp):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"cannot use {self.root} as a content store ({error.strerror}); "
                "choose a folder you can write to (--repo DIR, or store.path in fedledger.toml)."
            ) from error
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
        batch = _Batch(self)
        pending: deque[Future[tuple[Cid, int, int, str | None]]] = deque()
        try:
            with ThreadPoolExecutor(_WORKERS, thread_name_prefix="store-add") as pool:
                try:
                    for chunk in chunks:
                        pending.append(pool.submit(self._write_leaf, builder, chunk))
                        while len(pending) >= _WINDOW:
                            self._take_leaf(builder, batch, *pending.popleft().result())
                    while pending:
                        self._take_leaf(builder, batch, *pending.popleft().result())
                except BaseException:
                    _drop_temps(pending)  # leaves written by workers but never taken into the batch
                    raise
            root, blocks = builder.finish()
            batch.root = root
            for cid, data in blocks:  # the root (or the empty block) goes last
                batch.add(cid, self._write_temp(cid, data), len(data))
            batch.commit()
        finally:
            batch.discard()
        if pin:
            self.pin(root)
        return root

    def _write_leaf(self, builder: DagBuilder, chunk: bytes | memoryview) -> tuple[Cid, int, int, str | None]:
        """Make a chunk's leaf block, hash it and write it to a temp file (runs on worker threads)."""
        cid, data = builder.leaf(chunk)
        return cid, len(chunk), len(data), self._write_temp(cid, data)

    def _take_leaf(self, builder: DagBuilder, batch: _Batch, cid: Cid, size: int, block_size: int,
                   temp: str | None) -> None:
        batch.add(cid, temp, block_size)
        for parent, data in builder.push_leaf(cid, size, block_size):
            batch.add(parent, self._write_temp(parent, data), len(data))

    def _write_temp(self, cid: Cid, data: bytes | memoryview) -> str | None:
        """The block's bytes in a temp file, not yet durable; None when the store already has it.

        The temp name is unique by process, thread and count (no random names to draw), and the
        file is written with bare system calls: this runs once per 256 KiB block."""
        if os.path.exists(self._block_name(cid)):
            return None
        temp = f"{self._tmp_name}/{cid}.{os.getpid()}.{threading.get_ident()}.{next(_TEMP_NUMBERS)}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        except BaseException:
            os.close(fd)
            os.unlink(temp)
            raise
        os.close(fd)
        return temp

    def _block_name(self, cid: str) -> str:
        """``block_path`` as a string (on the write path, where Path objects cost more than the I/O)."""
        return f"{self._blocks_name}/{cid[-3:-1]}/{cid}"

    # -- reading ----------------------------------------------------------------------------
    def block_path(self, cid: str) -> Path:
        return self._blocks / cid[-3:-1] / cid

    def has(self, cid: str) -> bool:
        cid_to_bytes(cid)
        return self.block_path(cid).is_file()

    def read_block(self, cid: str, *, root: str | None = None) -> bytes:
        """One block's bytes, checked against its CID."""
        try:
            data = self.block_path(cid).read_bytes()
        except FileNotFoundError:
            raise self._missing(cid, root) from None
        if hashlib.sha256(data).digest() != _binary(cid)[4:]:
            raise self._tampered(cid, root)
        return data

    def get(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)
        raw = cid_to_bytes(cid)[1] == RAW
        if raw and max_bytes is not None:  # the size on disk is the content's: check it before reading
            self._refuse_above(cid, self._stored_size(cid), max_bytes)
        data = self.read_block(cid)
        if raw:
            return data
        node = decode_node(cid, data)
        if max_bytes is not None:
            self._refuse_above(cid, node.filesize, max_bytes)
        pending: deque[Future[bytes]] = deque()
        parts: list[bytes] = []
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="store-get") as pool:
            for _, piece in self._pieces(cid, node, 0):
                if isinstance(piece, bytes):  # a dag-pb leaf, read and checked on the way down
                    while pending:
                        parts.append(pending.popleft().result())
                    parts.append(piece)
                    continue
                pending.append(pool.submit(self._read_leaf, piece, cid))
                while len(pending) >= _WINDOW:
                    parts.append(pending.popleft().result())
            while pending:
                parts.append(pending.popleft().result())
        return b"".join(parts)  # one copy; sizes were checked leaf by leaf against the parents

    def _stored_size(self, cid: Cid) -> int:
        try:
            return self.block_path(cid).stat().st_size
        except FileNotFoundError:
            raise self._missing(cid, None) from None

    @staticmethod
    def _refuse_above(cid: Cid, size: int, max_bytes: int) -> None:
        if size > max_bytes:
            raise ContentTooLargeError(f"content {cid} is {size} bytes, more than the {max_bytes} expected; it was not read.")

    def iter_content(self, cid: str, *, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The content of ``cid`` (or ``length`` bytes of it from ``offset``) block by block, each block
        checked before its bytes are yielded; leaves wholly outside the range are not read."""
        cid = parse_cid(cid)
        data = self.read_block(cid)
        node = Node((), len(data), data) if cid_to_bytes(cid)[1] == RAW else decode_node(cid, data)
        end = node.filesize if length is None else min(node.filesize, offset + length)
        for first, piece in self._pieces(cid, node, 0, offset, end):
            if not isinstance(piece, bytes):
                piece = self._read_leaf(piece, cid)
            start, stop = max(offset - first, 0), min(end - first, len(piece))
            if start < stop:
                yield piece if (start, stop) == (0, len(piece)) else piece[start:stop]

    def content_size(self, cid: str) -> int:
        """The file size of ``cid``'s content, from its root block alone."""
        cid = parse_cid(cid)
        data = self.read_block(cid)
        return len(data) if cid_to_bytes(cid)[1] == RAW else decode_node(cid, data).filesize

    def iter_dag(self, cid: str, *, version: int = 1) -> Iterator[tuple[str, bytes]]:
        """Every block of ``cid``'s DAG once, checked, in ``ipfs dag export``'s order (root first,
        depth first, each where first seen); the root spelled in CID ``version``."""
        cid = parse_cid(cid)
        return walk_dag(cid, lambda block: self.read_block(block, root=cid), root_version=version)

    def _pieces(self, root: Cid, node: Node, depth: int, start: int = 0, end: int | None = None,
                base: int = 0) -> Iterator[tuple[int, Link | bytes]]:
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
            child = decode_node(link.cid, self.read_block(link.cid, root=root))
            if child.filesize != link.filesize:
                raise self._tampered(link.cid, root)
            yield from self._pieces(root, child, depth + 1, max(start - first, 0), end - first, base + first)

    def _read_leaf(self, link: Link, root: Cid) -> bytes:
        try:
            with open(self.block_path(link.cid), "rb", buffering=0) as handle:
                data = handle.read()
        except FileNotFoundError:
            raise self._missing(link.cid, root) from None
        if len(data) != link.filesize or hashlib.sha256(data).digest() != _binary(link.cid)[4:]:
            raise self._tampered(link.cid, root)
        return data

    def _missing(self, cid: str, root: str | None) -> ContentNotFoundError:
        what = f"block {cid} of content {root}" if root and root != cid else f"content {cid}"
        return ContentNotFoundError(
            f"{what} is not in the store at {self.root}; add it again, or fetch it from the store that pinned it."
        )

    def _tampered(self, cid: str, root: str | None) -> IntegrityError:
        what = f"block {cid} of content {root}" if root and root != cid else f"content {cid}"
        return IntegrityError(
            f"{what} does not hash to its CID: the store at {self.root} was altered or damaged; "
            f"delete {self.block_path(cid)} and add the content again."
        )

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


def _drop_temps(pending: Iterable[Future[tuple[Cid, int, int, str | None]]]) -> None:
    for future in pending:
        try:
            *_, temp = future.result()
        except BaseException:  # noqa: BLE001 - the first error is the one being raised
            continue
        if temp is not None:
            _unlink(temp)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _load_syncfs() -> Callable[[int], int] | None:
    """Linux's syncfs(2): one call makes every written file on the file system durable."""
    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (AttributeError, OSError):
        return None
    function.argtypes = [ctypes.c_int]
    return function  # type: ignore[no-any-return]


_SYNCFS = _load_syncfs() if sys.platform.startswith("linux") else None


class _Batch:
    """Blocks written to temp files, made durable together, then renamed onto their CIDs in order.

    Durability before visibility: nothing is renamed until its bytes are on disk (one ``syncfs``
    for a large batch, where Linux offers it, else one ``fsync`` per file). Renames keep the order
    blocks were added in, children before parents, so a visible parent implies visible children.
    ``root``, set once the DAG is finished, is the block the last commit renames last.
    """

    def __init__(self, store: EmbeddedStore) -> None:
        self._store = store
        self.root: Cid | None = None
        self._temps: list[tuple[Cid, str]] = []
        self._names: set[Cid] = set()
        self._bytes = 0

    def add(self, cid: Cid, temp: str | None, size: int) -> None:
        if temp is None:
            return
        if cid in self._names:  # the same block twice in one file (e.g. runs of zeros)
            _unlink(temp)
            return
        self._temps.append((cid, temp))
        self._names.add(cid)
        self._bytes += size
        if self._bytes >= _BATCH_BYTES:
            self.commit()

    def commit(self) -> None:
        if not self._temps:
            return
        if _SYNCFS is not None and len(self._temps) > _FSYNC_EACH_UP_TO:
            folder = os.open(self._store._tmp, os.O_RDONLY)
            try:
                if _SYNCFS(folder) != 0:
                    raise OSError(ctypes.get_errno(), "syncfs failed")
            finally:
                os.close(folder)
        else:
            for _, temp in self._temps:
                handle = os.open(temp, os.O_RDONLY)
                try:
                    os.fsync(handle)
                finally:
                    os.close(handle)
        for number, (cid, temp) in enumerate(self._temps):
            if number:
                failpoint("store:between-renames")
            if cid == self.root:
                failpoint("store:before-root-rename")
            path = self._store._block_name(cid)
            try:
                os.replace(temp, path)
            except FileNotFoundError:  # first block in this shard folder (mkdir is slow: only when needed)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(temp, path)
        self._temps, self._names, self._bytes = [], set(), 0

    def discard(self) -> None:
        """Remove temp files that were never committed (after an error)."""
        for _, temp in self._temps:
            _unlink(temp)
        self._temps, self._names, self._bytes = [], set(), 0
