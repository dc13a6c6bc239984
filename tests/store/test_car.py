"""CARv1 export: read back, root checked, every block hashed; the header as other tools read it."""

from __future__ import annotations

from pathlib import Path

import aleph_cid
import numpy as np
import pytest

from ledger.ipfs.car import encode_header, export_car, read_car
from ledger.errors import IntegrityError, InvalidInputError
from ledger.ipfs.store import EmbeddedStore
from ledger.ipfs.unixfs import CHUNK_SIZE, decode_node


@pytest.fixture
def content(tmp_path: Path) -> tuple[EmbeddedStore, str, bytes]:
    store = EmbeddedStore(tmp_path / "store")
    data = np.random.default_rng(3).bytes(5 * CHUNK_SIZE + 1)
    return store, store.add_bytes(data), data


def test_exported_car_reads_back_with_its_root_and_every_block(content, tmp_path: Path) -> None:
    store, cid, data = content
    path = tmp_path / "out.car"
    export_car(cid, store.iter_dag(cid), path)
    car = read_car(path)  # raises on any block that does not hash to its CID
    assert car.roots == [cid]
    assert aleph_cid.read_carv1_root(str(path)) == cid  # an independent reader agrees on the header
    blocks = dict(car.blocks)
    assert car.blocks[0][0] == cid and len(blocks) == 7
    leaves = [blocks[link.cid] for link in decode_node(cid, blocks[cid]).links]
    assert b"".join(leaves) == data


def test_one_block_content_exports_as_one_block(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path / "store")
    cid = store.add_bytes(b"terms of the federation")
    export_car(cid, store.iter_dag(cid), tmp_path / "one.car")
    assert read_car(tmp_path / "one.car").blocks == [(cid, b"terms of the federation")]


def test_header_is_canonical_dag_cbor() -> None:
    cid = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    header = encode_header([cid])
    assert header.startswith(b"\xa2eroots\x81\xd8\x2aX\x25\x00\x01\x55\x12\x20")
    assert header.endswith(b"gversion\x01")


def test_altered_car_is_refused(content, tmp_path: Path) -> None:
    store, cid, _ = content
    path = tmp_path / "out.car"
    export_car(cid, store.iter_dag(cid), path)
    data = bytearray(path.read_bytes())
    data[-10] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not hash"):
        read_car(path)
    path.write_bytes(b"not a car at all")
    with pytest.raises(InvalidInputError, match="not a CARv1"):
        read_car(path)
