"""Every `ipfs add` layout we build gives Kubo's CID, checked against two independent implementations:
aleph-cid (Rust, golden-tested against Kubo: plain `ipfs add` CIDv0 and `--cid-version=1`) and the npm
`ipfs-unixfs-importer` (the JS reference importer: also CIDv1 with dag-pb leaves, which ipfshttpclient's
`cid_version=1` asks for, CIDv0 with raw leaves, other chunk sizes and fan-outs)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import aleph_cid
import numpy as np
import pytest

from ledger.ipfs.cid import spell_cid
from ledger.ipfs.unixfs import CHUNK_SIZE, MAX_LINKS, Layout, cid_of_bytes

SCRIPT = Path(__file__).parent / "js" / "importer_cids.mjs"
LAYOUTS = {"v0": Layout(0, False), "v1": Layout(1, True), "v1pb": Layout(1, False), "v0raw": Layout(0, True)}
SIZES = {"empty": 0, "1-byte": 1, "chunk-1": CHUNK_SIZE - 1, "chunk": CHUNK_SIZE, "chunk+1": CHUNK_SIZE + 1,
         "174-chunks-1": MAX_LINKS * CHUNK_SIZE - 1, "174-chunks": MAX_LINKS * CHUNK_SIZE, "174-chunks+1": MAX_LINKS * CHUNK_SIZE + 1}
FIFTY_MB = 50_000_000


def ours(data: bytes, layout: Layout) -> str:
    """Our CID, spelled as Kubo prints it (CIDv0 for a CIDv0 layout whose root is dag-pb)."""
    return spell_cid(cid_of_bytes(data, layout), version=layout.cid_version)


def aleph(data: bytes, version: int) -> str:
    hasher = aleph_cid.CidHasher.for_ipfs() if version == 0 else aleph_cid.CidHasher.for_ipfs_v1_raw_leaves()
    hasher.update(data)
    return hasher.finalize()


def importer(*arguments: str) -> dict[str, dict[str, str]]:
    result = subprocess.run(["node", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def random_bytes(size: int, seed: int) -> bytes:
    return np.random.default_rng(seed).bytes(size)


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
def test_cidv0_and_cidv1_equal_aleph_cid(size: int) -> None:
    data = random_bytes(size, seed=size % 1000)
    assert ours(data, LAYOUTS["v0"]) == aleph(data, 0)
    assert ours(data, LAYOUTS["v1"]) == aleph(data, 1)


def test_every_layout_equals_the_js_importer(tmp_path: Path) -> None:
    files = {}
    for name, size in SIZES.items():
        if size <= CHUNK_SIZE + 1:
            files[name] = tmp_path / name
            files[name].write_bytes(random_bytes(size, seed=size % 1000))
    shaped = tmp_path / "shaped"
    shaped.write_bytes(random_bytes(300_007, seed=3))
    arguments = [str(path) for path in files.values()] + [f"{shaped}@1000@3", f"{shaped}@65536@174"]
    expected = importer(*arguments)
    for path in files.values():
        data = path.read_bytes()
        assert {name: ours(data, layout) for name, layout in LAYOUTS.items()} == expected[str(path)], path.name
    data = shaped.read_bytes()
    for argument, (chunk, links) in zip(arguments[-2:], [(1000, 3), (65536, 174)], strict=True):
        got = {name: ours(data, Layout(layout.cid_version, layout.raw_leaves, chunk, links)) for name, layout in LAYOUTS.items()}
        assert got == expected[argument], argument


@pytest.mark.slow
def test_large_files_equal_both_implementations(tmp_path: Path) -> None:
    """174·256 KiB + 1 (a second DAG level, 45.6 MB) and ~50 MB, in every layout."""
    arguments, contents = [], {}
    for name, size in [("two-levels", MAX_LINKS * CHUNK_SIZE + 1), ("fifty-mb", FIFTY_MB)]:
        path = tmp_path / name
        contents[name] = random_bytes(size, seed=len(name))
        path.write_bytes(contents[name])
        arguments.append(f"{path}@{CHUNK_SIZE}@{MAX_LINKS}@v1pb,v0raw")  # aleph-cid covers v0 and v1
    expected = importer(*arguments)
    for argument, data in zip(arguments, contents.values(), strict=True):
        assert ours(data, LAYOUTS["v0"]) == aleph(data, 0)
        assert ours(data, LAYOUTS["v1"]) == aleph(data, 1)
        assert {name: ours(data, LAYOUTS[name]) for name in ("v1pb", "v0raw")} == expected[argument]
