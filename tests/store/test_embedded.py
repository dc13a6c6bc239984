"""The embedded store: verified round trips, tamper and loss detection, crash safety, many writers."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    MalformedCidError,
)
from ledger.failpoints import FAILPOINT_ENV, FAILPOINT_EXIT
from ledger.ipfs.store import ContentStore, EmbeddedStore, open_store
from ledger.ipfs.unixfs import CHUNK_SIZE, cid_of_bytes
from ledger.workspace import Workspace
from tests.fixtures_store import assert_no_partial_object, damage_block, lose_block, stored_copy, visible_blocks


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
    damage_block(store, leaf, 1000)
    with pytest.raises(IntegrityError, match=cid) as caught:
        store.get(cid)
    assert leaf in str(caught.value)
    assert "was set aside; add the content again" in str(caught.value)
    with pytest.raises(ContentNotFoundError, match=leaf):  # the damaged copy is no longer offered
        list(store.iter_content(cid))
    assert store.add_bytes(data) == cid  # adding again writes the leaf anew
    assert store.get(cid) == data


def test_flipped_byte_in_a_raw_root_is_an_integrity_error(store: EmbeddedStore) -> None:
    cid = store.add_bytes(b"small document")
    flip_one_byte(store.block_path(cid))
    with pytest.raises(IntegrityError, match=f"delete {store.block_path(cid)} and add the content again"):
        store.get(cid)


def test_missing_content_and_missing_block_are_not_found_naming_the_cid(store: EmbeddedStore) -> None:
    absent = cid_of_bytes(b"nobody added this")
    with pytest.raises(ContentNotFoundError, match=absent):
        store.get(absent)
    data = random_bytes(2 * CHUNK_SIZE + 1)
    cid = store.add_bytes(data)
    leaf = cid_of_bytes(data[:CHUNK_SIZE])
    lose_block(store, leaf)
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
        damage_block(store, cid_of_bytes(data[:CHUNK_SIZE]))
        with pytest.raises(ContentTooLargeError):
            store.get(cid, max_bytes=size - 1)
    else:  # the size comes from the file: a grown block is refused without being read and hashed
        store.block_path(cid).write_bytes(os.urandom(size + 10))
        with pytest.raises(ContentTooLargeError):
            store.get(cid, max_bytes=size)


def test_malformed_cid_is_refused(store: EmbeddedStore) -> None:
    with pytest.raises(MalformedCidError, match="not a CID"):
        store.get("QmNotACidv1")


ADD_RANDOM = textwrap.dedent(
    """
    import random, sys
    from ledger.ipfs.store import EmbeddedStore
    data = random.Random(int(sys.argv[3])).randbytes(int(sys.argv[2]))
    print(EmbeddedStore(sys.argv[1]).add_bytes(data))
    """
)
SMALL = 4 * CHUNK_SIZE + 7  # five leaves and a root: one batch
LARGE = 36 * 2**20 + 5  # 145 leaves: four batches of 32 (8 MiB each), then the other 17 and the root
ONE_BLOCK = CHUNK_SIZE  # its own file, not a pack


def add_in_a_process(root: Path, size: int, seed: int, failpoint: str | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {key: value for key, value in os.environ.items() if key != FAILPOINT_ENV}
    if failpoint is not None:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.run([sys.executable, "-c", ADD_RANDOM, str(root), str(size), str(seed)],
                          env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    ("failpoint", "size", "committed"),
    [
        ("store:before-commit", ONE_BLOCK, 0),
        ("store:before-commit", SMALL, 0),  # every block durable in the pack, none indexed
        ("store:before-commit", LARGE, 0),
        ("store:before-root-commit", SMALL, 0),
        ("store:before-root-commit", LARGE, 128),  # four batches committed, the last (with the root) not
    ],
)
def test_writer_killed_inside_a_commit_exposes_no_partial_object_and_a_rerun_completes(
    store: EmbeddedStore, failpoint: str, size: int, committed: int
) -> None:
    before = random_bytes(CHUNK_SIZE * 2 + 5)
    kept = store.add_bytes(before)
    existing = visible_blocks(store)
    data = random.Random(7).randbytes(size)
    cid = cid_of_bytes(data)
    leaves = [cid_of_bytes(data[start : start + CHUNK_SIZE]) for start in range(0, size, CHUNK_SIZE)]

    crashed = add_in_a_process(store.root, size, 7, failpoint)
    assert crashed.returncode == FAILPOINT_EXIT, crashed.stderr
    # The kill landed where it was aimed: inside a commit, the batches before it visible, the root not.
    assert visible_blocks(store) - existing == set(leaves[:committed])
    assert not store.has(cid)
    with pytest.raises(ContentNotFoundError, match=cid):
        store.get(cid)
    assert_no_partial_object(store)
    assert store.pins() == [kept]
    assert store.get(kept) == before

    rerun = add_in_a_process(store.root, size, 7)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.decode().strip() == cid
    assert store.get(cid) == data
    assert store.pins() == sorted([kept, cid])
    assert_no_partial_object(store)


ADDER = textwrap.dedent(
    """
    import sys
    from ledger.ipfs.store import EmbeddedStore
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
