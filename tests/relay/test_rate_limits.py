"""`relay serve` under a flood: per-address and global rate limits (429 with Retry-After) before the
relay asks its store, the signature or the chain anything, and the HTTP limits every fedledger
server keeps (a connection cap, a header timeout, one log line for a client that resets).

The rate limits act before the relay's first check, so these tests give the relay a store that
counts the lookups it is asked (and answers "not here": 422), and no chain at all.
"""

from __future__ import annotations

import http.client
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from io import StringIO
from typing import Any

import pytest
from rich.console import Console

from ledger.ipfs.cid import RAW, cid_from_parts
from ledger.ipfs.serving import ServerLimits
from node.services.log import ServiceLog
from node.services.relay_service import MESSAGES_PATH, PATH, RateLimiter, RateLimits, Relay, RelayServer, make_server

DOCUMENT = {
    "participant": "0x" + "ab" * 20, "round": 1, "cid": cid_from_parts(RAW, b"\x11" * 32), "samples": 1,
    "metrics_hash": "0x" + "00" * 32, "epsilon_micros": 0, "deadline": 2**40, "signature": "0x" + "11" * 65,
}

MESSAGE = {key: DOCUMENT[key] for key in ("participant", "round", "cid", "deadline", "signature")} | {"kind": 1}


class CountingStore:
    """A store that holds nothing and counts how often the relay asked."""

    def __init__(self) -> None:
        self.lookups = 0

    def has(self, cid: str) -> bool:
        self.lookups += 1
        return False


@contextmanager
def relay_server(rate_limits: RateLimits, limits: ServerLimits = ServerLimits()) -> Iterator[tuple[RelayServer, CountingStore, StringIO]]:
    store = CountingStore()
    log_text = StringIO()
    log = ServiceLog("relay", human=Console(file=log_text, width=400, soft_wrap=True, highlight=False))
    relay = Relay(federation=None, store=store, batch_size=4, max_wait_s=0.05, log=log,  # type: ignore[arg-type]
                  rate_limits=rate_limits)
    server = make_server(relay, port=0, limits=limits)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server, store, log_text
    finally:
        server.shutdown()
        server.server_close()


def post_from(server: RelayServer, source: str, *, path: str = PATH) -> tuple[int, str | None, dict[str, Any]]:
    """POST the update (or, to MESSAGES_PATH, a round message) from the loopback address ``source``: (status,
    Retry-After, answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10, source_address=(source, 0))
    document = DOCUMENT if path == PATH else MESSAGE
    try:
        connection.request("POST", path, body=json.dumps(document).encode(), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.getheader("Retry-After"), json.loads(response.read())
    finally:
        connection.close()


def test_one_address_over_its_rate_is_answered_429_before_any_check_and_others_still_pass() -> None:
    with relay_server(RateLimits(per_address=0.5, total=100, per_address_burst=3)) as (server, store, _):
        answers = [post_from(server, "127.0.0.1") for _ in range(5)]
        assert [status for status, _, _ in answers] == [422, 422, 422, 429, 429]
        assert [answer["error"] for _, _, answer in answers[:3]] == ["ContentNotFoundError"] * 3
        status, retry_after, answer = answers[3]
        assert retry_after is not None and 1 <= int(retry_after) <= 2
        assert answer == {"recorded": False, "error": "RateLimited", "message": "this address has sent more updates "
                          f"than the relay's --rate-limit allows; send it again in {retry_after} s."}
        assert store.lookups == 3  # the refused two cost the relay nothing
        assert post_from(server, "127.0.0.2")[0] == 422  # another address has its own share
        assert store.lookups == 4
        assert server.RequestHandlerClass.relay.counts.rate_limited == 2  # type: ignore[attr-defined]


def test_round_messages_and_updates_share_one_address_budget() -> None:
    with relay_server(RateLimits(per_address=0.5, total=100, per_address_burst=3)) as (server, store, _):
        paths = [PATH, MESSAGES_PATH, PATH, MESSAGES_PATH]
        answers = [post_from(server, "127.0.0.1", path=path) for path in paths]
        assert [status for status, _, _ in answers] == [422, 422, 422, 429]
        assert answers[1][2]["posted"] is False and answers[1][2]["error"] == "ContentNotFoundError"
        assert answers[3][2]["posted"] is False and answers[3][2]["error"] == "RateLimited"
        assert store.lookups == 3


def test_all_addresses_together_over_the_global_rate_are_answered_429() -> None:
    with relay_server(RateLimits(per_address=100, total=0.5, total_burst=3)) as (server, store, _):
        assert [post_from(server, source)[0] for source in ("127.0.0.1", "127.0.0.2", "127.0.0.1")] == [422] * 3
        status, retry_after, answer = post_from(server, "127.0.0.3")
        assert (status, answer["error"]) == (429, "RateLimited") and retry_after is not None
        assert "--global-rate-limit" in answer["message"]
        assert store.lookups == 3


def test_the_buckets_refill_at_their_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(RateLimits(per_address=2, total=1000, per_address_burst=2), clock=lambda: now[0])
    assert [limiter.wait_for("a")[0] for _ in range(3)] == [0, 0, 0.5]
    now[0] = 0.5
    assert limiter.wait_for("a") == (0, "")
    assert limiter.wait_for("a") == (0.5, "address")
    now[0] = 10.0  # a long pause refills to the burst, not beyond it
    assert [limiter.wait_for("a")[0] for _ in range(3)] == [0, 0, 0.5]
    with pytest.raises(Exception, match="--rate-limit must be a number of requests per second above 0"):
        RateLimiter(RateLimits(per_address=0))


def test_the_relays_server_caps_connections_times_out_headers_and_logs_a_reset_in_one_line(capfd: pytest.CaptureFixture[str]) -> None:
    limits = ServerLimits(header_timeout_s=0.5, idle_timeout_s=0.5, max_connections=3)
    with relay_server(RateLimits(), limits) as (server, _, log_text), ExitStack() as stack:
        port = server.server_address[1]
        socks = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5)) for _ in range(6)]
        for sock in socks:
            sock.sendall(b"POST /updates HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        for sock in socks:
            sock.settimeout(2)
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < 1.0 and server.turned_away == 3
        rude = socket.create_connection(("127.0.0.1", port), timeout=5)
        rude.sendall(b"POST /updates HTTP/1.1\r\n")
        time.sleep(0.1)
        rude.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rude.close()
        deadline = time.monotonic() + 3
        while "reset the connection" not in log_text.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    lines = log_text.getvalue().splitlines()
    assert sum("did not send its request headers within 0.5 s" in line for line in lines) == 3
    assert sum("turned away" in line for line in lines) == 3
    assert sum("reset the connection" in line for line in lines) == 1
    assert "Traceback" not in capfd.readouterr().err


def test_the_party_side_waits_out_a_429_as_retry_after_says_then_gets_the_relays_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    from node import relay_client
    from node.relay_client import RelayClient

    with relay_server(RateLimits(per_address=1, total=100, per_address_burst=1)) as (server, store, _):
        client = RelayClient(f"http://127.0.0.1:{server.server_address[1]}", federation=None, account=None)  # type: ignore[arg-type]
        assert client._request("POST", PATH, timeout=5, body=DOCUMENT)[0] == 422  # the burst's one request
        started = time.monotonic()
        status, answer = client._request("POST", PATH, timeout=5, body=DOCUMENT)  # 429, Retry-After 1, then again
        assert status == 422 and time.monotonic() - started >= 0.9 and store.lookups == 2, answer
        monkeypatch.setattr(relay_client, "MAX_RATE_LIMITED_WAIT_S", 0.5)  # a wait over the bound is not taken
        status, answer = client._request("POST", PATH, timeout=5, body=DOCUMENT)
        assert status == 429 and answer["error"] == "RateLimited" and store.lookups == 2
