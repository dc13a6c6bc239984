"""KuboStore's own checks, against a Kubo RPC API that lies.

``fedledger ipfs serve`` refuses a tampered object itself, so the tests over it never reach the
client's checks. This server does not: it answers ``add`` with a CID it made up and ``cat`` /
``block/get`` with bytes that are not the content's. Every lie must end in IntegrityError.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from ledger.errors import IntegrityError, StoreError
from ledger.ipfs.store import EmbeddedStore, KuboStore
from ledger.ipfs.unixfs import CHUNK_SIZE, cid_of_bytes

Lie = Callable[[bytes], bytes]
MADE_UP_CID = cid_of_bytes(b"what the server claims it stored")


def flip_a_byte(data: bytes) -> bytes:
    altered = bytearray(data)
    altered[len(altered) // 2] ^= 0x01
    return bytes(altered)


LIES: dict[str, Lie] = {
    "one byte flipped": flip_a_byte,
    "cut short": lambda data: data[:-1],
    "other content": lambda data: b"a valid blob, but not the one asked for",
}


class LyingApi:
    """Kubo's RPC wire format on 127.0.0.1 over an honest store, with ``lie`` applied to chosen answers."""

    def __init__(self, store: EmbeddedStore) -> None:
        self.store = store
        self.lie: Lie = lambda data: data
        self.lie_about: set[str] = set()  # CIDs whose cat / block/get answers are altered
        self.break_off = False  # announce the whole answer, send half of it, hang up
        handler = type("Handler", (_LyingHandler,), {"api": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, cid: str, data: bytes) -> bytes:
        return self.lie(data) if cid in self.lie_about else data

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


class _LyingHandler(BaseHTTPRequestHandler):
    api: LyingApi

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        self._drain()
        if url.path == "/api/v0/add":  # stores nothing, names a CID it made up
            self._send(json.dumps({"Name": "file", "Hash": MADE_UP_CID, "Size": "40"}).encode() + b"\n", "application/json")
        elif url.path == "/api/v0/cat":
            cid = query["arg"][0]
            self._send(self.api.answer(cid, self.api.store.get(cid)), "text/plain")
        elif url.path == "/api/v0/block/get":
            cid = query["arg"][0]
            self._send(self.api.answer(cid, self.api.store.read_block(cid)), "text/plain")
        else:
            self.send_error(404)

    def _drain(self) -> None:
        """Read and drop the request body (the uploads are chunked), so the client reads the answer."""
        if "chunked" not in self.headers.get("Transfer-Encoding", ""):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            return
        while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
            self.rfile.read(size + 2)  # the chunk and its CRLF
        self.rfile.readline()  # the CRLF after the last chunk

    def _send(self, payload: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.api.break_off:
            self.wfile.write(payload[: len(payload) // 2])
            self.close_connection = True
            return
        self.wfile.write(payload)


@pytest.fixture
def liar(tmp_path: Path) -> Iterator[LyingApi]:
    api = LyingApi(EmbeddedStore(tmp_path / "honest"))
    try:
        yield api
    finally:
        api.close()


def content(size: int) -> bytes:
    return np.random.default_rng(size).bytes(size)


def test_the_liar_tells_the_truth_when_told_to(liar: LyingApi) -> None:
    """Without a lie the client accepts the answers: the refusals below are the checks, not the server."""
    data = content(3 * CHUNK_SIZE + 9)
    cid = liar.store.add_bytes(data)
    store = KuboStore(liar.url)
    assert store.get(cid) == data
    assert [block for block, _ in store.iter_dag(cid)] == [block for block, _ in liar.store.iter_dag(cid)]


@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("size", [100, 3 * CHUNK_SIZE + 9])  # one raw block; a DAG of four leaves
def test_get_refuses_bytes_that_do_not_hash_to_the_cid(liar: LyingApi, lie: str, size: int) -> None:
    cid = liar.store.add_bytes(content(size))
    liar.lie, liar.lie_about = LIES[lie], {cid}
    with pytest.raises(IntegrityError, match=f"content {cid} from the IPFS API at {liar.url} does not hash to its CID"):
        KuboStore(liar.url).get(cid)


@pytest.mark.parametrize("lie", LIES)
@pytest.mark.parametrize("which", ["root", "last leaf"])
def test_iter_dag_refuses_a_block_that_does_not_hash_to_its_cid(liar: LyingApi, lie: str, which: str) -> None:
    data = content(3 * CHUNK_SIZE + 9)
    cid = liar.store.add_bytes(data)
    target = cid if which == "root" else cid_of_bytes(data[3 * CHUNK_SIZE :])
    liar.lie, liar.lie_about = LIES[lie], {target}
    taken: list[str] = []
    with pytest.raises(IntegrityError, match=f"block {target} of content {cid} .* does not hash to its CID"):
        for block, _ in KuboStore(liar.url).iter_dag(cid):
            taken.append(block)
    assert target not in taken  # nothing is yielded from the lying answer on


@pytest.mark.parametrize("how", ["add_bytes", "add_file"])
def test_add_refuses_a_cid_the_server_made_up(liar: LyingApi, tmp_path: Path, how: str) -> None:
    data = content(CHUNK_SIZE + 1)
    path = tmp_path / "update.bin"
    path.write_bytes(data)
    store = KuboStore(liar.url)
    with pytest.raises(IntegrityError, match=f"named the added content {MADE_UP_CID} but its CID is {cid_of_bytes(data)}"):
        store.add_bytes(data) if how == "add_bytes" else store.add_file(path)


@pytest.mark.parametrize("how", ["get", "iter_dag"])
def test_an_answer_broken_off_midway_is_one_store_error_naming_the_api(liar: LyingApi, how: str) -> None:
    cid = liar.store.add_bytes(content(3 * CHUNK_SIZE + 9))
    liar.break_off = True
    store = KuboStore(liar.url)
    with pytest.raises(StoreError, match=f"the IPFS API at {liar.url} broke off while asked to read .*{cid}.* try again"):
        store.get(cid) if how == "get" else list(store.iter_dag(cid))
