"""The embedded store's on-disk format: packs and their index, stores made before packs, refusals."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import requests

from ledger.errors import IntegrityError, StoreError
from ledger.ipfs.store import EmbeddedStore
from ledger.ipfs.store.packs import BATCH_BYTES
from ledger.ipfs.car import encode_header, iter_car
from ledger.ipfs.cid import cid_to_bytes
from ledger.ipfs.unixfs import CHUNK_SIZE, cid_of_bytes, encode_varint, iter_blocks
from tests.fixtures_store import IpfsServer, damage_block, run_fedledger, stored_copy, visible_blocks


def random_bytes(size: int, seed: int = 3) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


def set_index_format(root: Path, version: int) -> None:
    with closing(sqlite3.connect(root / "index.sqlite")) as db:
        db.execute(f"PRAGMA user_version={version}")


def test_a_file_of_many_blocks_is_one_pack_with_a_row_per_block(tmp_path: Path) -> None:
    data = random_bytes(3 * CHUNK_SIZE + 1)
    store = EmbeddedStore(tmp_path / "store")
    cid = store.add_bytes(data)
    blocks = list(iter_blocks(data[start : start + CHUNK_SIZE] for start in range(0, len(data), CHUNK_SIZE)))
    assert files(store.root / "blocks") == []
    (pack,) = files(store.root / "packs")
    sections = [encode_varint(len(cid_to_bytes(name)) + len(block)) + cid_to_bytes(name) + block for name, block in blocks]
    assert pack.read_bytes() == b"".join(sections)  # CAR block sections back to back, root last
    assert visible_blocks(store) == {name for name, _ in blocks}
    assert stored_copy(store, cid) == (pack, pack.stat().st_size - len(blocks[-1][1]), len(blocks[-1][1]))
    header = encode_header([cid])
    roots, car_blocks = iter_car(io.BytesIO(encode_varint(len(header)) + header + pack.read_bytes()))  # a CAR's body
    assert roots == [cid] and list(car_blocks) == blocks


def test_content_of_one_block_is_a_file_of_its_own(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    cid = store.add_bytes(b"one block")
    assert files(store.root / "blocks") == [store.block_path(cid)]
    assert files(store.root / "packs") == []


def test_repeated_blocks_and_content_added_again_are_not_written_again(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    zeros = bytes(10 * CHUNK_SIZE)  # ten identical leaves
    cid = store.add_bytes(zeros)
    (pack,) = files(store.root / "packs")
    leaf = cid_of_bytes(bytes(CHUNK_SIZE))
    assert [stored_copy(store, block)[0] for block in (leaf, cid)] == [pack, pack]
    assert stored_copy(store, cid)[1] + store.block_size(cid) == pack.stat().st_size  # one leaf, then the root
    assert stored_copy(store, leaf)[1] + CHUNK_SIZE + 2 + 36 == stored_copy(store, cid)[1]
    assert store.add_bytes(zeros) == cid
    assert files(store.root / "packs") == [pack]  # nothing written the second time
    assert store.get(cid) == zeros


def test_an_add_broken_off_after_a_batch_keeps_that_batch_and_removes_the_rest(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    chunks = BATCH_BYTES // CHUNK_SIZE + 3

    def broken() -> Iterator[bytes]:
        for number in range(chunks):
            yield bytes([number]) * CHUNK_SIZE
        raise OSError("connection reset")

    class Stream(io.RawIOBase):
        def __init__(self) -> None:
            self.pieces = broken()

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return next(self.pieces)

    with pytest.raises(OSError, match="connection reset"):
        store.add_stream(Stream())  # type: ignore[arg-type]
    first_batch = {cid_of_bytes(bytes([number]) * CHUNK_SIZE) for number in range(BATCH_BYTES // CHUNK_SIZE)}
    assert visible_blocks(store) == first_batch
    (pack,) = files(store.root / "packs")
    last = cid_of_bytes(bytes([BATCH_BYTES // CHUNK_SIZE - 1]) * CHUNK_SIZE)
    assert pack.stat().st_size == stored_copy(store, last)[1] + CHUNK_SIZE  # the uncommitted leaves were cut off
    assert files(store.root / "tmp") == []


def old_store(root: Path, data: bytes) -> str:
    """A store as fedledger wrote it before packs: a file per block under blocks/, no index."""
    cid = cid_of_bytes(data)
    for name, block in iter_blocks(data[start : start + CHUNK_SIZE] for start in range(0, len(data), CHUNK_SIZE)):
        path = root / "blocks" / name[-3:-1] / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(block)
    (root / "pins").mkdir()
    (root / "pins" / cid).write_bytes(b"")
    (root / "tmp").mkdir()
    return cid


def test_a_store_made_before_packs_is_read_as_it_is_and_takes_new_content(tmp_path: Path) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 9)
    cid = old_store(tmp_path / "old", data)
    store = EmbeddedStore(tmp_path / "old")
    assert store.pins() == [cid]
    assert store.get(cid) == data
    assert b"".join(store.iter_content(cid, offset=CHUNK_SIZE - 1, length=3)) == data[CHUNK_SIZE - 1 : CHUNK_SIZE + 2]
    assert store.add_bytes(data) == cid
    assert files(store.root / "packs") == []  # its blocks were there already
    more = random_bytes(2 * CHUNK_SIZE, seed=4)
    assert store.get(store.add_bytes(more)) == more
    cat = run_fedledger("ipfs", "cat", cid, "--repo", str(store.root))
    assert cat.returncode == 0 and cat.stdout == data


def test_an_index_of_another_format_is_refused_in_one_sentence(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    cid = store.add_bytes(random_bytes(2 * CHUNK_SIZE))
    set_index_format(store.root, 7)
    sentence = "has block index format 7, which this fedledger (format 1) cannot read; open it with the fedledger version that wrote it."
    with pytest.raises(StoreError, match=r"\(format 1\) cannot read"):
        EmbeddedStore(store.root)
    result = run_fedledger("ipfs", "cat", cid, "--repo", str(store.root))
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.decode().splitlines() if line.strip()]
    assert line.endswith(sentence) and line.startswith("error: ")


def test_a_damaged_index_is_refused_naming_the_file(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    store.add_bytes(random_bytes(2 * CHUNK_SIZE))
    for leftover in store.root.glob("index.sqlite-*"):
        leftover.unlink()
    (store.root / "index.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreError, match=f"the block index {store.root / 'index.sqlite'} cannot be used") as caught:
        EmbeddedStore(store.root)
    assert str(caught.value).endswith("the store rebuilds the index from its packs when next opened.")


def forget_the_index(root: Path) -> None:
    for path in root.glob("index.sqlite*"):
        path.unlink()


def test_a_deleted_index_is_rebuilt_from_the_packs(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    contents = [random_bytes(size, seed) for seed, size in enumerate([2 * CHUNK_SIZE + 1, 5 * CHUNK_SIZE])]
    cids = [store.add_bytes(data) for data in contents]
    visible = visible_blocks(store)
    forget_the_index(store.root)
    rebuilt = EmbeddedStore(store.root)
    assert visible_blocks(rebuilt) == visible
    assert [rebuilt.get(cid) for cid in cids] == contents


def test_a_rebuild_stops_at_the_first_section_that_is_not_whole(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    data = random_bytes(4 * CHUNK_SIZE + 3)
    cid = store.add_bytes(data)
    leaves = [cid_of_bytes(data[start : start + CHUNK_SIZE]) for start in range(0, len(data), CHUNK_SIZE)]
    damage_block(store, leaves[2], 77)  # as if the writer's third leaf never reached the disk
    (pack,) = files(store.root / "packs")
    with open(pack, "ab") as handle:
        handle.write(encode_varint(1000) + cid_to_bytes(leaves[0])[:10])  # a section cut short
    forget_the_index(store.root)
    rebuilt = EmbeddedStore(store.root)
    assert visible_blocks(rebuilt) == set(leaves[:2])  # not the damaged leaf, nor what follows it
    assert not rebuilt.has(cid)
    assert rebuilt.add_bytes(data) == cid
    assert rebuilt.get(cid) == data


def test_a_pack_cut_short_is_an_integrity_error_naming_the_block(tmp_path: Path) -> None:
    data = random_bytes(3 * CHUNK_SIZE)
    store = EmbeddedStore(tmp_path / "store")
    cid = store.add_bytes(data)
    (pack,) = files(store.root / "packs")
    second = stored_copy(store, cid_of_bytes(data[CHUNK_SIZE : 2 * CHUNK_SIZE]))
    with open(pack, "r+b") as handle:
        handle.truncate(second[1] + 10)  # the second leaf cut short, the third and the root lost
    with pytest.raises(IntegrityError, match=cid):
        store.get(cid)
    assert b"".join(store.iter_content(cid_of_bytes(data[:CHUNK_SIZE]))) == data[:CHUNK_SIZE]


def test_block_stat_gives_a_packed_block_its_size(ipfs_server: IpfsServer) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 5, seed=8)
    cid = EmbeddedStore(ipfs_server.repo).add_bytes(data, pin=False)
    last = cid_of_bytes(data[2 * CHUNK_SIZE :])
    for name, size in ((last, 5), (cid, EmbeddedStore(ipfs_server.repo).block_size(cid))):
        response = requests.post(f"{ipfs_server.url}/api/v0/block/stat?arg={name}", timeout=30)
        assert response.status_code == 200, response.text
        assert response.json() == {"Key": name, "Size": size}
