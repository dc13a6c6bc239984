"""The embedded store: verified round trips, tamper and loss detection, crash safety, many writers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ledger.cid import cid_digest
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    MalformedCidError,
)
from ledger.store import ContentStore, EmbeddedStore, open_store
from ledger.unixfs import CHUNK_SIZE, cid_of_bytes
from ledger.workspace import Workspace


def random_bytes(size: int, seed: int = 11) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.fixture
def store(tmp_path: Path) -> EmbeddedStore:
    return EmbeddedStore(tmp_path / "store")


def flip_one_byte(path: Path, offset: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_embedded_store_is_a_content_store(store: EmbeddedStore) -> None:
    assert isinstance(store, ContentStore)


@pytest.mark.parametrize("size", [0, 5, CHUNK_SIZE, 3 * CHUNK_SIZE + 1])
def test_round_trip_gives_kubo_cid_and_same_bytes(store: EmbeddedStore, size: int) -> None:
    data = random_bytes(size)
    cid = store.add_bytes(data)
    assert cid == cid_of_bytes(data)
    assert store.has(cid)
    assert store.get(cid) == data
    assert b"".join(store.iter_content(cid)) == data


def test_add_file_streams_to_the_same_cid(store: EmbeddedStore, tmp_path: Path) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 99)
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert store.add_file(path) == store.add_bytes(data) == cid_of_bytes(data)


def test_pins_are_recorded_and_removed(store: EmbeddedStore) -> None:
    pinned = store.add_bytes(b"keep me")
    unpinned = store.add_bytes(b"not me", pin=False)
    assert store.pins() == [pinned]
    store.pin(unpinned)
    assert sorted([pinned, unpinned]) == store.pins()
    store.unpin(pinned)
    assert store.pins() == [unpinned]
    with pytest.raises(ContentNotFoundError, match=pinned):
        store.unpin(pinned)


def test_pinning_absent_content_is_refused(store: EmbeddedStore) -> None:
    absent = cid_of_bytes(b"never added")
    with pytest.raises(ContentNotFoundError, match=absent):
        store.pin(absent)


def test_flipped_byte_in_a_leaf_is_an_integrity_error_naming_the_cid(store: EmbeddedStore) -> None:
    data = random_bytes(3 * CHUNK_SIZE)
    cid = store.add_bytes(data)
    leaf = cid_of_bytes(data[CHUNK_SIZE : 2 * CHUNK_SIZE])
    flip_one_byte(store.block_path(leaf), 1000)
    with pytest.raises(IntegrityError, match=cid) as caught:
        store.get(cid)
    assert leaf in str(caught.value)
    with pytest.raises(IntegrityError, match=leaf):
        list(store.iter_content(cid))


def test_flipped_byte_in_a_raw_root_is_an_integrity_error(store: EmbeddedStore) -> None:
    cid = store.add_bytes(b"small document")
    flip_one_byte(store.block_path(cid))
    with pytest.raises(IntegrityError, match=cid):
        store.get(cid)


def test_missing_content_and_missing_block_are_not_found_naming_the_cid(store: EmbeddedStore) -> None:
    absent = cid_of_bytes(b"nobody added this")
    with pytest.raises(ContentNotFoundError, match=absent):
        store.get(absent)
    data = random_bytes(2 * CHUNK_SIZE + 1)
    cid = store.add_bytes(data)
    leaf = cid_of_bytes(data[:CHUNK_SIZE])
    store.block_path(leaf).unlink()
    with pytest.raises(ContentNotFoundError, match=leaf):
        store.get(cid)


@pytest.mark.parametrize("size", [100, 3 * CHUNK_SIZE + 5])  # one raw block; a DAG of four leaves
def test_content_over_max_bytes_is_refused_before_it_is_read(store: EmbeddedStore, size: int) -> None:
    data = os.urandom(size)
    cid = store.add_bytes(data)
    assert store.get(cid, max_bytes=size) == data
    with pytest.raises(ContentTooLargeError, match=f"content {cid} is {size} bytes, more than the {size - 1} expected"):
        store.get(cid, max_bytes=size - 1)
    if size > CHUNK_SIZE:  # the size comes from the root node: a damaged leaf is never reached
        leaf = next(p for p in (store.root / "blocks").rglob("*") if p.is_file() and p.name != cid)
        leaf.write_bytes(b"damaged")
        with pytest.raises(ContentTooLargeError):
            store.get(cid, max_bytes=size - 1)
    else:  # the size comes from the file: a grown block is refused without being read and hashed
        store.block_path(cid).write_bytes(os.urandom(size + 10))
        with pytest.raises(ContentTooLargeError):
            store.get(cid, max_bytes=size)


def test_malformed_cid_is_refused(store: EmbeddedStore) -> None:
    with pytest.raises(MalformedCidError, match="not a CID"):
        store.get("QmNotACidv1")


WRITER = textwrap.dedent(
    """
    import sys, time
    from ledger.store import EmbeddedStore

    class Slow:
        def __init__(self):
            self.sent = 0
        def read(self, size):
            if self.sent >= 64 * 2**20:
                return b""
            if self.sent == 8 * 2**20:
                print("writing", flush=True)
            if self.sent >= 8 * 2**20:
                time.sleep(0.01)
            self.sent += size
            return bytes([self.sent % 251]) * size

    EmbeddedStore(sys.argv[1]).add_stream(Slow())
    """
)


def test_writer_killed_mid_write_leaves_a_readable_store_and_no_partial_object(store: EmbeddedStore) -> None:
    before = random_bytes(CHUNK_SIZE * 2 + 5)
    kept = store.add_bytes(before)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root)], stdout=subprocess.PIPE)
    assert writer.stdout is not None and writer.stdout.readline() == b"writing\n"
    time.sleep(0.2)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(10)
    writer.stdout.close()

    assert store.get(kept) == before
    chunks = [bytes([(i * CHUNK_SIZE + CHUNK_SIZE) % 251]) * CHUNK_SIZE for i in range(64 * 4)]
    unfinished = cid_of_bytes(b"".join(chunks))
    assert not store.has(unfinished)
    with pytest.raises(ContentNotFoundError, match=unfinished):
        store.get(unfinished)
    assert store.pins() == [kept]
    for block in (store.root / "blocks").rglob("*"):  # every visible block is whole
        if block.is_file():
            assert hashlib.sha256(block.read_bytes()).digest() == cid_digest(block.name), block.name
    again = EmbeddedStore(store.root)
    assert again.get(again.add_bytes(b"still writable")) == b"still writable"


ADDER = textwrap.dedent(
    """
    import sys
    from ledger.store import EmbeddedStore
    data = bytes(range(256)) * (4 * 4096 + int(sys.argv[2]))
    print(EmbeddedStore(sys.argv[1]).add_bytes(data))
    """
)


def test_several_processes_write_one_store_at_once(store: EmbeddedStore) -> None:
    writers = [
        subprocess.Popen([sys.executable, "-c", ADDER, str(store.root), str(n % 2)], stdout=subprocess.PIPE)
        for n in range(4)
    ]
    cids = {writer.communicate(timeout=60)[0].decode().strip() for writer in writers}
    assert all(writer.returncode == 0 for writer in writers)
    assert len(cids) == 2
    for n in range(2):
        data = bytes(range(256)) * (4 * 4096 + n)
        assert store.get(cid_of_bytes(data)) == data
    assert sorted(cids) == store.pins()


def test_open_store_picks_the_embedded_backend_by_default(tmp_path: Path) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    store = open_store(workspace)
    assert isinstance(store, EmbeddedStore)
    assert store.root == workspace.store_dir
