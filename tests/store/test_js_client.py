"""The JS `kubo-rpc-client` from npm, a Kubo client nobody here wrote, works against `fedledger ipfs serve`
with its defaults: version, id, add (CIDv0 by default, CIDv1, only-hash), progress, cat whole and by
offset/length in several CID spellings, pin add/ls/rm, dag export, and Kubo-shaped errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import aleph_cid
import numpy as np

from ledger.ipfs.car import read_car
from ledger.ipfs.cid import read_cid
from ledger.ipfs.unixfs import CHUNK_SIZE, Layout, cid_of_bytes, hash_stream
from tests.fixtures_store import start_ipfs_server, stop_ipfs_server

SCRIPT = Path(__file__).parent / "js" / "kubo_client.mjs"


def test_kubo_rpc_client_drives_the_server_with_its_defaults(tmp_path: Path) -> None:
    data = np.random.default_rng(21).bytes(3 * CHUNK_SIZE + 5)
    path = tmp_path / "update.bin"
    path.write_bytes(data)
    car = tmp_path / "export.car"
    server, process = start_ipfs_server(tmp_path / "repo")
    try:
        result = subprocess.run(["node", str(SCRIPT), server.url, str(path), str(car)],
                                capture_output=True, text=True, timeout=120)
    finally:
        stop_ipfs_server(server, process)
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout)

    hasher = aleph_cid.CidHasher.for_ipfs()
    hasher.update(data)
    v0 = hasher.finalize()
    v1 = cid_of_bytes(data)
    assert got["version"] == "0.29.0"
    assert got["id"].startswith("16Uiu2HA") and got["idType"] == "secp256k1"  # parsed as a libp2p peer ID
    assert got["addDefault"] == {"cid": v0, "size": hash_stream(path.open("rb"), Layout(0, False)).tsize, "version": 0}
    assert got["progress"]["last"] == len(data) and got["progress"]["calls"] >= 3
    assert got["addV1"]["cid"] == v1
    assert got["onlyHash"]["cid"] == cid_of_bytes(data, Layout(1, False))
    assert got["catWholeLength"] == len(data)
    assert bytes.fromhex(got["catRange"]) == data[262140:262150]
    assert {got["catBase36"], got["catBase58"], got["catUpper"]} == {data[:4].hex()}
    assert got["pinAdd"] == [v0]
    pins = {pin["cid"]: pin["type"] for pin in got["pinLs"]}
    assert pins[v0] == pins[v1] == "recursive"
    assert sum(kind == "indirect" for kind in pins.values()) == 8  # four dag-pb leaves (CIDv0) and four raw leaves
    assert sorted(got["pinLsRecursive"]) == sorted([v0, v1])
    assert got["pinRm"] == [v0] and got["pinLsAfterRm"] == [v1]
    exported = read_car(car)  # every block checked against its CID
    assert exported.roots == [read_cid(v0)] and len(exported.blocks) == 5
    assert "is not in the store" in got["catAbsentError"]
    assert "sha2-256 only" in got["addRefusedError"]
