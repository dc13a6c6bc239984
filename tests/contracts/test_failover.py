"""Several RPC endpoints of one chain: a command goes on through the next when one stops answering, and an
endpoint on another chain (or with other code at the federation's address) is never read from."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from ledger.chain.connection import check_rpc_url, open_federation
from ledger.errors import InvalidInputError
from ledger.workspace import Workspace
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli


class Endpoint:
    """An HTTP endpoint on 127.0.0.1 that forwards JSON-RPC to ``target`` (or answers ``canned`` itself),
    counting the methods it was asked, until ``stop()``: then its port refuses connections."""

    def __init__(self, target: str | None = None, canned: dict[str, str] | None = None) -> None:
        self.methods: list[str] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = json.loads(body)
                for item in request if isinstance(request, list) else [request]:
                    endpoint.methods.append(item["method"])
                if target is not None:
                    answer = requests.post(target, data=body, headers={"Content-Type": "application/json"}, timeout=10).content
                else:
                    answer = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": (canned or {})[request["method"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoints(chain: TestChain) -> Iterator[list[Endpoint]]:
    anvil = chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    started = [Endpoint(anvil), Endpoint(anvil), Endpoint(canned={"eth_chainId": hex(31337), "eth_getCode": "0x"})]
    yield started
    for endpoint in started:
        try:
            endpoint.stop()
        except OSError:
            pass


def test_a_federation_goes_on_through_the_next_endpoint_and_never_reads_another_chain(
    endpoints: list[Endpoint], tmp_path: Path
) -> None:
    first, second, impostor = endpoints
    ws = tmp_path / "ws"
    w = ("--workdir", str(ws))
    ok(cli("init", str(ws), "--rpc", f"{first.url},{impostor.url},{second.url}"))
    ok(cli("deploy", *w))
    terms = tmp_path / "terms.txt"
    terms.write_text("one\n")
    ok(cli("agreement", "publish", str(terms), *w))
    assert "eth_sendRawTransaction" in first.methods and second.methods == [] and impostor.methods == []

    # The first endpoint goes away mid-federation: the impostor (same chain id, no contract at the address)
    # is checked and skipped; the second endpoint, checked too, carries the next transaction and reads.
    first.stop()
    terms.write_text("two\n")
    ok(cli("agreement", "publish", str(terms), *w))
    federation = open_federation(Workspace.load(ws))
    assert federation.agreement_version() == 2
    assert "eth_sendRawTransaction" in second.methods
    assert set(impostor.methods) <= {"eth_chainId", "eth_getCode"}  # asked only who it is, never read from

    # With no endpoint of this chain left, one sentence names each endpoint and why.
    second.stop()
    refused = cli("agreement", "show", *w)
    line = refused.error_line()
    assert refused.exit_code != 0 and "no RPC endpoint answers" in line, line
    assert f"{first.url} (ConnectionError)" in line and f"{second.url} (ConnectionError)" in line
    assert f"{impostor.url} (no code at" in line


def test_an_endpoint_list_is_checked_url_by_url() -> None:
    assert check_rpc_url(" http://127.0.0.1:1, http://127.0.0.1:2 ") == "http://127.0.0.1:1,http://127.0.0.1:2"
    for bad in ("http://127.0.0.1:1,memory", "http://127.0.0.1:1,http://127.0.0.1:1", "http://127.0.0.1:1,ftp://x"):
        with pytest.raises(InvalidInputError):
            check_rpc_url(bad)
