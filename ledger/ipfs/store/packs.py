"""Packed blocks: the blocks of one add back to back in one file, found through an on-disk index.

Creating, syncing and renaming one file per 256 KiB block cost the embedded store more than
hashing the blocks; a pack is one file per add. ``packs/<name>.pack`` is a run of CARv1 block
sections, ``varint(len(cid) + len(data)) | binary CIDv1 | data``, nothing else (a CAR file's body
without its header). ``index.sqlite`` (table ``blocks``: CID text, pack name, offset and length
of the data; ``PRAGMA user_version`` is the format) says where each block lies, so a read is one
lookup and one ``pread``. The index is SQLite in WAL mode with ``synchronous=FULL``: a commit
is durable once it returns, several processes may write at once (each commit takes SQLite's lock
for a moment), and readers never wait. Because each section names its block, a lost index is
rebuilt from the packs (:meth:`BlockIndex.rebuild`).

A :class:`PackWriter` makes the blocks of one add visible batch by batch (8 MiB), durability
before visibility: a batch's sections are appended to the pack, the pack is ``fdatasync``-ed
(and, at its first commit, moved from ``tmp/`` to ``packs/`` and that folder synced), then the
batch's rows go into the index in one transaction; this runs on a thread of its own while the
next batch is hashed and written. A reader therefore sees a
batch whole or not at all, and as children come before parents, a visible parent implies
visible children. A writer killed before a commit leaves bytes no row points at (a pack in
``tmp/``, swept later, or a tail past the last committed row); adding the content again writes
what is missing.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

from ledger.ipfs.cid import BINARY_LENGTH, CIDV1, DAG_PB, DIGEST_LENGTH, RAW, SHA2_256, cid_from_bytes, cid_to_bytes
from ledger.errors import StoreError
from ledger.failpoints import failpoint
from ledger.types import Cid
from ledger.ipfs.unixfs import encode_varint

INDEX_NAME = "index.sqlite"
FORMAT = 1  # PRAGMA user_version of index.sqlite; 0 is a store made before packs (blocks/ only)
BATCH_BYTES = 8 * 1024 * 1024  # pack bytes written before they are handed over to be made durable and indexed

Location = tuple[str, int, int]
"""Where a packed block lies: its pack's name, its offset and its length."""


class BlockIndex:
    """CID -> (pack, offset, length) for every packed block; one SQLite connection per thread."""

    def __init__(self, root: Path) -> None:
        self.path = root / INDEX_NAME
        self._local = threading.local()
        lost = not self.path.exists()
        if lost:  # a write-ahead log left without its database belongs to no index now
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._check_format(self._db())
        if lost:  # a new store, one made before packs, or one whose index was deleted
            self.rebuild(root / "packs")

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA synchronous=FULL")
            except sqlite3.Error as error:
                raise self._unreadable(error) from error
            self._local.db = db
        return db

    def _check_format(self, db: sqlite3.Connection) -> None:
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:  # a new store, or one made before packs: give it the index
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("BEGIN IMMEDIATE")
                db.execute("CREATE TABLE IF NOT EXISTS blocks (cid TEXT PRIMARY KEY, pack TEXT NOT NULL,"
                           " offset INTEGER NOT NULL, size INTEGER NOT NULL) WITHOUT ROWID")
                db.execute(f"PRAGMA user_version={FORMAT}")
                db.execute("COMMIT")
                version = FORMAT
        except sqlite3.Error as error:
            raise self._unreadable(error) from error
        if version != FORMAT:
            raise StoreError(
                f"the content store at {self.path.parent} has block index format {version}, which this "
                f"fedledger (format {FORMAT}) cannot read; open it with the fedledger version that wrote it."
            )

    def _unreadable(self, error: sqlite3.Error) -> StoreError:
        return StoreError(
            f"the block index {self.path} cannot be used ({error}); if {self.path.parent} is writable, delete "
            f"{self.path.name} and its -wal and -shm files: the store rebuilds the index from its packs when next opened."
        )

    def find(self, cid: str) -> Location | None:
        try:
            row = self._db().execute("SELECT pack, offset, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
        except sqlite3.Error as error:
            raise self._unreadable(error) from error
        return None if row is None else (row[0], row[1], row[2])

    def add(self, rows: list[tuple[Cid, str, int, int]]) -> None:
        """Make ``rows`` visible together (a block already indexed keeps its first copy)."""
        db = self._db()
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO blocks VALUES (?, ?, ?, ?)", rows)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        except sqlite3.Error as error:
            raise self._unreadable(error) from error

    def rebuild(self, packs: Path) -> None:
        """Index every whole block of every pack: each pack's sections up to the first that is cut
        short or does not hash to its CID (bytes a killed writer never made durable). Children come
        before parents in a pack, so a parent found whole has its children found too."""
        for path in sorted(packs.glob("*.pack")):
            self.add(list(_sections(path)))

    def forget(self, cid: str, location: Location) -> bool:
        """Drop the row of a damaged copy, so that adding the content again writes the block anew."""
        try:
            self._db().execute("DELETE FROM blocks WHERE cid = ? AND pack = ? AND offset = ?", (cid, *location[:2]))
        except sqlite3.Error:  # a store the reader may not write: the advice stays to add it again
            return False
        return True


class PackWriter:
    """The new blocks of one add, appended to one pack and indexed batch by batch (see the module).

    A batch is made durable and visible on a thread of its own while the caller hashes and writes
    the next one, so the disk's flush overlaps the CPU's work instead of following it (the wait is
    I/O, not a core: this pays on two cores too). At most one batch is in flight; the last commit
    (the root's) is waited for, and ``close`` waits for any commit still running.
    """

    def __init__(self, root: Path, index: BlockIndex) -> None:
        self._root, self._index = root, index
        self._fd: int | None = None
        self._temp: str | None = None  # the pack's path while it is in tmp/ (before its first commit)
        self.name: str | None = None
        self._size = self._handed = self._committed = 0
        self._rows: list[tuple[Cid, str, int, int]] = []
        self._names: set[Cid] = set()
        self._committer: ThreadPoolExecutor | None = None
        self._in_flight: Future[None] | None = None

    @property
    def pending(self) -> int:
        """Bytes written since the last batch was handed over to be committed."""
        return self._size - self._handed

    def holds(self, cid: Cid) -> bool:
        """Whether this pack already took ``cid`` (the same block twice in one file: runs of zeros)."""
        return cid in self._names

    def write(self, cid: Cid, data: bytes | memoryview) -> None:
        if self._fd is None:
            self.name = f"{time.time_ns():x}-{os.getpid()}-{secrets.token_hex(4)}"
            self._temp = f"{self._root}/tmp/{self.name}.pack"
            self._fd = os.open(self._temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        assert self.name is not None
        binary = cid_to_bytes(cid)
        header = encode_varint(len(binary) + len(data)) + binary
        for piece in (header, data):
            view = memoryview(piece)
            while view:
                view = view[os.write(self._fd, view) :]
        self._rows.append((cid, self.name, self._size + len(header), len(data)))
        self._names.add(cid)
        self._size += len(header) + len(data)

    def commit(self, *, last: bool) -> None:
        """Hand what was written over to be made durable, then visible; ``last``: this batch holds
        the root, and the call returns once it is visible."""
        if self._in_flight is not None:  # one batch at a time: its error, if any, is raised here
            self._in_flight.result()
            self._in_flight = None
        if not self._rows:
            return
        rows, self._rows, self._handed = self._rows, [], self._size
        if last:
            self._make_visible(rows, self._size, last=True)
            return
        if self._committer is None:
            self._committer = ThreadPoolExecutor(1, thread_name_prefix="store-commit")
        self._in_flight = self._committer.submit(self._make_visible, rows, self._size, last=False)

    def _make_visible(self, rows: list[tuple[Cid, str, int, int]], size: int, *, last: bool) -> None:
        assert self._fd is not None and self.name is not None
        os.fdatasync(self._fd)  # everything written so far, this batch included
        if self._temp is not None:  # its first commit: the pack takes its place under packs/
            packs = self._root / "packs"
            os.replace(self._temp, packs / f"{self.name}.pack")
            self._temp = None
            _fsync_folder(packs)
        failpoint("store:before-commit")
        if last:
            failpoint("store:before-root-commit")
        self._index.add(rows)
        self._committed = size

    def close(self) -> None:
        """Release the pack once no commit is running; bytes never committed (after an error) are removed."""
        if self._committer is not None:
            self._committer.shutdown(wait=True)  # a failed commit's error was raised by commit, or another is
        if self._fd is None:
            return
        try:
            if self._temp is not None:
                os.unlink(self._temp)
            elif self._committed < self._size:
                os.ftruncate(self._fd, self._committed)
        finally:
            os.close(self._fd)
            self._fd = None


def _sections(path: Path) -> Iterator[tuple[Cid, str, int, int]]:
    """The index rows of a pack's whole sections, in order, up to the first that is not whole."""
    name = path.name.removesuffix(".pack")
    with open(path, "rb") as handle:
        while (length := _read_varint(handle)) is not None and length >= BINARY_LENGTH:
            binary = handle.read(BINARY_LENGTH)
            if binary[:1] != bytes([CIDV1]) or binary[1:2] not in (bytes([RAW]), bytes([DAG_PB])):
                return
            if binary[2:4] != bytes([SHA2_256, DIGEST_LENGTH]):
                return
            offset = handle.tell()
            data = handle.read(length - BINARY_LENGTH)
            if hashlib.sha256(data).digest() != binary[4:] or len(data) != length - BINARY_LENGTH:
                return
            yield cid_from_bytes(binary), name, offset, len(data)


def _read_varint(handle: BinaryIO) -> int | None:
    """A section's length; None at the end of the pack or where the varint is cut short."""
    value = 0
    for shift in range(0, 64, 7):
        byte = handle.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
    return None


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PackReader:
    """Reads packed blocks, keeping each pack open for as long as one content is being read."""

    def __init__(self, packs: Path) -> None:
        self._packs = packs
        self._open: dict[str, int] = {}

    def read(self, location: Location) -> bytes:
        """The bytes at ``location`` (fewer when the pack was cut short: the caller's check fails)."""
        name, offset, size = location
        fd = self._open.get(name)
        if fd is None:
            try:
                fd = os.open(f"{self._packs}/{name}.pack", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return b""
            self._open[name] = fd
        return os.pread(fd, size, offset)

    def close(self) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
