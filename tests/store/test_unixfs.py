"""Our CIDs equal Kubo's (``ipfs add --cid-version=1``), checked against aleph-cid, itself golden-tested against Kubo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from aleph_cid import CidHasher
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.ipfs.cid import DAG_PB, RAW, cid_codec
from ledger.ipfs.unixfs import (
    CHUNK_SIZE,
    MAX_LINKS,
    DagBuilder,
    cid_of_bytes,
    cid_of_stream,
    decode_node,
    iter_blocks,
    raw_cid,
)


def kubo_cid(data: bytes) -> str:
    hasher = CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    return hasher.finalize()


def random_bytes(size: int, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.mark.parametrize(
    "size",
    [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 3 * CHUNK_SIZE + 17, MAX_LINKS * CHUNK_SIZE],
    ids=["empty", "1-byte", "chunk-1", "one-chunk", "one-chunk+1", "three-chunks+17", "174-chunks"],
)
def test_cid_equals_kubo(size: int) -> None:
    data = random_bytes(size)
    assert cid_of_bytes(data) == kubo_cid(data)


def test_second_dag_level_over_40_mb_equals_kubo() -> None:
    data = random_bytes(MAX_LINKS * CHUNK_SIZE + 1)  # 174 chunks + 1 byte: a second level, 45.6 MB
    assert len(data) > 40 * 1024 * 1024
    expected = kubo_cid(data)
    assert cid_of_bytes(data) == expected
    assert cid_of_stream(io.BytesIO(data)) == expected
    root = decode_node(expected, [block for cid, block in iter_blocks([data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)]) if cid == expected][0])
    assert [link.filesize for link in root.links] == [MAX_LINKS * CHUNK_SIZE, 1]


def test_known_kubo_cids() -> None:
    assert cid_of_bytes(b"") == "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    assert cid_of_bytes(b"hello world") == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert cid_of_bytes(bytes(1024 * 1024)) == "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"


def test_one_chunk_is_a_raw_block_and_more_is_dag_pb() -> None:
    assert cid_codec(cid_of_bytes(bytes(CHUNK_SIZE))) == RAW
    assert cid_codec(cid_of_bytes(bytes(CHUNK_SIZE + 1))) == DAG_PB


def test_every_block_hashes_to_its_cid_and_the_root_comes_last() -> None:
    data = random_bytes(5 * CHUNK_SIZE + 3)
    blocks = list(iter_blocks(data[i : i + CHUNK_SIZE] for i in range(0, len(data), CHUNK_SIZE)))
    assert blocks[-1][0] == cid_of_bytes(data)
    assert len(blocks) == 7  # six leaves and one parent
    node = decode_node(blocks[-1][0], blocks[-1][1])
    assert node.filesize == len(data)
    assert [link.cid for link in node.links] == [cid for cid, _ in blocks[:-1]]


def test_third_level_groups_174_parents_per_node() -> None:
    """174 × 174 + 1 leaves need a third level: a full second-level node, then one holding one leaf."""
    builder = DagBuilder()
    leaf = raw_cid(b"x")
    parents = []
    for _ in range(MAX_LINKS * MAX_LINKS + 1):
        parents += builder.push_leaf(leaf, 1)
    root, last = builder.finish()
    blocks = dict(parents + last)
    top = decode_node(root, blocks[root])
    assert [link.filesize for link in top.links] == [MAX_LINKS * MAX_LINKS, 1]
    lone = decode_node(top.links[1].cid, blocks[top.links[1].cid])
    assert len(lone.links) == 1 and cid_codec(lone.links[0].cid) == DAG_PB


@settings(max_examples=40, deadline=None)
@given(size=st.integers(min_value=0, max_value=4 * CHUNK_SIZE), seed=st.integers(min_value=0, max_value=2**16))
def test_any_small_size_equals_kubo(size: int, seed: int) -> None:
    data = random_bytes(size, seed)
    assert cid_of_bytes(data) == kubo_cid(data)
