"""The kubo backend end to end over HTTP against a real ``fedledger ipfs serve`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import ipfshttpclient
import numpy as np
import pytest

from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    MalformedCidError,
    StoreError,
    StoreUnreachableError,
)
from ledger.failpoints import FAILPOINT_ENV, FAILPOINT_EXIT
from ledger.ipfs.store import ContentStore, EmbeddedStore, KuboStore, open_store
from ledger.ipfs.unixfs import CHUNK_SIZE, cid_of_bytes
from ledger.workspace import Workspace
from tests.fixtures_store import (
    IpfsServer,
    assert_no_partial_object,
    damage_block,
    run_fedledger,
    start_ipfs_server,
    stop_ipfs_server,
    visible_blocks,
)


def random_bytes(size: int, seed: int = 5) -> bytes:
    return np.random.default_rng(seed).bytes(size)


def test_kubo_store_is_a_content_store(kubo_store: KuboStore) -> None:
    assert isinstance(kubo_store, ContentStore)


@pytest.mark.parametrize("size", [0, 11, CHUNK_SIZE + 1])
def test_add_and_cat_give_kubo_cids_and_the_same_bytes(kubo_store: KuboStore, size: int) -> None:
    data = random_bytes(size)
    cid = kubo_store.add_bytes(data)
    assert cid == cid_of_bytes(data)
    assert kubo_store.has(cid)
    assert kubo_store.get(cid) == data


def test_pin_unpin_and_list(kubo_store: KuboStore) -> None:
    cid = kubo_store.add_bytes(b"pin me over http", pin=False)
    assert cid not in kubo_store.pins()
    kubo_store.pin(cid)
    assert cid in kubo_store.pins()
    kubo_store.unpin(cid)
    assert cid not in kubo_store.pins()
    with pytest.raises(ContentNotFoundError, match=cid):
        kubo_store.unpin(cid)


def test_fifty_megabyte_file_round_trip(kubo_store: KuboStore, ipfs_server: IpfsServer, tmp_path: Path) -> None:
    data = random_bytes(50 * 1024 * 1024)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    cid = kubo_store.add_file(path)
    assert cid == cid_of_bytes(data)
    assert kubo_store.get(cid) == data
    assert EmbeddedStore(ipfs_server.repo).get(cid) == data  # the server stored it as the embedded store would


def test_tampered_object_is_refused_naming_the_cid(kubo_store: KuboStore, ipfs_server: IpfsServer) -> None:
    data = random_bytes(2 * CHUNK_SIZE + 7, seed=99)
    cid = kubo_store.add_bytes(data)
    leaf = cid_of_bytes(data[CHUNK_SIZE : 2 * CHUNK_SIZE])
    served = EmbeddedStore(ipfs_server.repo)
    damage_block(served, leaf, 123)
    with pytest.raises(IntegrityError, match=cid):
        kubo_store.get(cid)
    with pytest.raises(ContentNotFoundError, match=leaf):  # the damaged copy was set aside
        list(kubo_store.iter_dag(cid))
    assert kubo_store.add_bytes(data) == cid  # adding again writes the leaf anew
    assert kubo_store.get(cid) == data


def test_content_over_max_bytes_is_refused_and_cat_honours_length(kubo_store: KuboStore, ipfs_server: IpfsServer) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 7)
    cid = kubo_store.add_bytes(data)
    assert kubo_store.get(cid, max_bytes=len(data)) == data
    with pytest.raises(ContentTooLargeError, match=f"content {cid} at the IPFS API .* is more than the {CHUNK_SIZE} bytes"):
        kubo_store.get(cid, max_bytes=CHUNK_SIZE)
    client = ipfshttpclient.Client(ipfs_server.api)
    assert client.cat(cid, length=CHUNK_SIZE + 3) == data[: CHUNK_SIZE + 3]
    assert client.cat(cid, length=0) == b""


def test_missing_object_is_not_found_naming_the_cid(kubo_store: KuboStore) -> None:
    absent = cid_of_bytes(b"not on the server")
    assert not kubo_store.has(absent)
    with pytest.raises(ContentNotFoundError, match=absent):
        kubo_store.get(absent)


def test_malformed_cid_is_refused_before_any_request(kubo_store: KuboStore) -> None:
    with pytest.raises(MalformedCidError):
        kubo_store.get("bafy-not-a-cid")


def test_unreachable_address_names_the_address_and_how_to_start_one() -> None:
    store = KuboStore("http://127.0.0.1:9")
    with pytest.raises(StoreUnreachableError, match=r"127\.0\.0\.1:9.*fedledger ipfs serve.*ipfs daemon"):
        store.get(cid_of_bytes(b"x"))


def test_open_store_picks_kubo_from_the_workspace(tmp_path: Path, ipfs_server: IpfsServer) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.set("store", "backend", "kubo")
    workspace.set("store", "api", ipfs_server.url)
    store = open_store(workspace)
    assert isinstance(store, KuboStore)
    assert store.get(store.add_bytes(b"via url")) == b"via url"


def test_serve_refuses_a_busy_port_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server, process = start_ipfs_server(tmp_path / "repo")
    busy = run_fedledger("ipfs", "serve", "--port", server.url.rsplit(":", 1)[1], "--repo", str(tmp_path / "other"))
    assert busy.returncode != 0
    assert b"cannot listen on 127.0.0.1" in busy.stderr and b"choose another --port" in busy.stderr
    os.kill(server.pid, signal.SIGTERM)
    assert process.wait(10) == 0
    for stream in (process.stdout, process.stderr):
        stream.close()  # type: ignore[union-attr]


UPLOADER = textwrap.dedent(
    """
    import sys, time, requests
    def body():
        yield b'--b\\r\\nContent-Disposition: form-data; name="file"; filename="big"\\r\\n\\r\\n'
        for number in range(136):  # 34 MiB: the server commits four 8 MiB batches before the kill
            yield bytes([number]) * 262144
        print("sent", flush=True)
        time.sleep(60)
        yield b"never"
    requests.post(sys.argv[1] + "/api/v0/add?cid-version=1", data=body(),
                  headers={"Content-Type": "multipart/form-data; boundary=b"})
    """
)


def wait_for(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


def test_client_killed_mid_upload_leaves_committed_leaves_only_and_no_partial_object(tmp_path: Path) -> None:
    server, process = start_ipfs_server(tmp_path / "repo")  # its own repo: other tests tamper the shared one
    try:
        store = KuboStore(server.api)
        kept = store.add_bytes(b"added before")
        served = EmbeddedStore(server.repo)
        existing = visible_blocks(served)
        leaves = [cid_of_bytes(bytes([number]) * 262144) for number in range(136)]
        uploader = subprocess.Popen([sys.executable, "-c", UPLOADER, server.url], stdout=subprocess.PIPE)
        assert uploader.stdout is not None and uploader.stdout.readline() == b"sent\n"
        # The kill comes after the server committed its first batch, so the commit is reached.
        assert wait_for(lambda: len(visible_blocks(served) - existing) >= 128)
        os.kill(uploader.pid, signal.SIGKILL)
        uploader.wait(10)
        uploader.stdout.close()

        # The server notices the closed socket and drops the temp files of the unfinished batch.
        assert wait_for(lambda: not any((server.repo / "tmp").iterdir()), 10)
        assert visible_blocks(served) - existing == set(leaves[:128])  # no later leaf, no parent, no root
        assert_no_partial_object(served)
        assert store.pins() == [kept]
        assert store.get(kept) == b"added before"
    finally:
        stop_ipfs_server(server, process)


@pytest.mark.parametrize("failpoint", ["store:before-commit", "store:before-root-commit"])
def test_server_killed_inside_a_commit_exposes_no_partial_object_and_a_rerun_completes(
    tmp_path: Path, failpoint: str
) -> None:
    repo = tmp_path / "repo"
    kept = EmbeddedStore(repo).add_bytes(b"added before")
    existing = visible_blocks(EmbeddedStore(repo))
    data = random_bytes(4 * CHUNK_SIZE + 7, seed=31)  # five leaves and a root: one batch
    cid = cid_of_bytes(data)

    server, process = start_ipfs_server(repo, env={FAILPOINT_ENV: failpoint})
    try:
        with pytest.raises(StoreError, match=f"the IPFS API at {server.api} broke off while asked to add content"):
            KuboStore(server.api).add_bytes(data)
        assert process.wait(10) == FAILPOINT_EXIT
    finally:
        stop_ipfs_server(server, process)
    assert visible_blocks(EmbeddedStore(repo)) - existing == set()  # one batch: durable in its pack, not indexed
    assert any((repo / "packs").iterdir())  # the kill came after the pack was written, not before
    assert_no_partial_object(EmbeddedStore(repo))

    server, process = start_ipfs_server(repo)
    try:
        store = KuboStore(server.api)
        assert not store.has(cid)
        with pytest.raises(ContentNotFoundError, match=cid):
            store.get(cid)
        assert store.pins() == [kept]
        assert store.add_bytes(data) == cid
        assert store.get(cid) == data
        assert store.pins() == sorted([kept, cid])
    finally:
        stop_ipfs_server(server, process)
    assert_no_partial_object(EmbeddedStore(repo))
