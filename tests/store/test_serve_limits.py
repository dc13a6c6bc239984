"""What slow, idle or rude clients can hold of `fedledger ipfs serve` (and the metrics endpoint).

Each test runs the server in this process on 127.0.0.1 with small limits (a cap of 5 connections,
timeouts under a second) and a bounded number of raw sockets, so it takes about a second.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from ledger.ipfs.server import StoreServer, make_server
from ledger.ipfs.serving import ServerLimits
from ledger.ipfs.store import EmbeddedStore
from node.services.metrics import ServiceMetrics

LIMITS = ServerLimits(header_timeout_s=0.6, idle_timeout_s=0.6, max_connections=5)
PARTIAL = b"POST /api/v0/version HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # headers never finished


@contextmanager
def served(tmp_path: Path, limits: ServerLimits = LIMITS) -> Iterator[tuple[StoreServer, list[str]]]:
    notes: list[str] = []
    server = make_server(EmbeddedStore(tmp_path / "repo"), port=0, limits=limits, note=notes.append)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield server, notes
    finally:
        server.shutdown()
        server.server_close()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds; None if it stayed open."""
    sock.settimeout(within)
    received = b""
    try:
        while piece := sock.recv(4096):
            received += piece
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def wait_until(condition, timeout: float = 3.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def version_ok(port: int) -> bool:
    return requests.post(f"http://127.0.0.1:{port}/api/v0/version", timeout=5).json()["Version"] == "0.29.0"


def test_twenty_slow_sockets_hold_at_most_the_cap_and_only_until_the_header_timeout(tmp_path: Path) -> None:
    with served(tmp_path) as (server, notes), ExitStack() as stack:
        port = server.server_address[1]
        socks = [stack.enter_context(connect(port)) for _ in range(20)]
        for sock in socks:
            sock.sendall(PARTIAL)
        assert wait_until(lambda: server.turned_away == 15)
        assert server.open_connections == 5
        started = time.monotonic()
        # One of the held five trickles a header line now and then, each well inside the timeout: cut off all the same.
        first = {sock: closed_by_server(sock, 0.05) for sock in socks}
        held = [sock for sock, answer in first.items() if answer is None]
        assert len(held) == 5
        answers = [answer for answer in first.values() if answer is not None]
        assert all(answer == b"" or answer.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") for answer in answers)
        assert any(answers)  # (a close with unread bytes may reset one before its 503 is read)
        try:
            for _ in range(15):  # a header line every 0.1 s, for 1.5 s unless cut off
                held[0].sendall(b"X-Slow: 1\r\n")
                time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass
        for sock in held:
            assert closed_by_server(sock, 2) is not None
        assert time.monotonic() - started < 1.0  # the header timeout (0.6 s) from the connection, trickle or not
        assert wait_until(lambda: server.open_connections == 0)
        assert version_ok(port)
    assert sum("did not send its request headers within 0.6 s" in line for line in notes) == 5
    assert sum("turned away" in line for line in notes) == 15
    assert not any("Traceback" in line for line in notes)


def test_an_idle_connection_and_a_stalled_upload_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with served(tmp_path) as (server, notes), ExitStack() as stack:
        port = server.server_address[1]
        idle = stack.enter_context(connect(port))
        idle.sendall(b"POST /api/v0/version HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        stalled = stack.enter_context(connect(port))
        stalled.sendall(b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\nab")
        started = time.monotonic()
        answered = closed_by_server(idle, 3)
        assert answered is not None and answered.startswith(b"HTTP/1.1 200 OK")  # answered, then closed once idle
        assert closed_by_server(stalled, 3) is not None
        assert 0.5 < time.monotonic() - started < 1.8
        assert wait_until(lambda: server.open_connections == 0)
    assert any("sent nothing for 0.6 s in the middle of its request" in line for line in notes)
    assert not any("reset" in line for line in notes)


@pytest.mark.parametrize("stage", ["headers", "body"])
def test_a_client_that_resets_is_one_line_not_a_traceback(tmp_path: Path, stage: str, capfd: pytest.CaptureFixture[str]) -> None:
    limits = ServerLimits(header_timeout_s=5, idle_timeout_s=5, max_connections=5)
    with served(tmp_path, limits) as (server, notes):
        sock = connect(server.server_address[1])
        if stage == "headers":
            sock.sendall(PARTIAL)
        else:
            sock.sendall(b"POST /api/v0/add HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                         b"Content-Length: 100000\r\n\r\n--b\r\nContent-Disposition: form-data; name=file; filename=f\r\n\r\n")
        time.sleep(0.1)  # the server is reading
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        assert wait_until(lambda: server.open_connections == 0)
        assert version_ok(server.server_address[1])
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err and "Exception occurred" not in captured.err
    if stage == "headers":
        assert len(notes) == 1 and "reset the connection before its answer was complete" in notes[0], notes
    else:  # the add handler ends the request itself: not even a line
        assert len(notes) <= 1


def test_the_metrics_endpoint_keeps_the_same_limits() -> None:
    notes: list[str] = []
    server = ServiceMetrics("node").serve(0, limits=ServerLimits(header_timeout_s=0.5, idle_timeout_s=0.5, max_connections=2),
                                          note=notes.append)
    try:
        with ExitStack() as stack:
            socks = [stack.enter_context(connect(server.server_port)) for _ in range(4)]
            for sock in socks:
                sock.sendall(b"GET /metrics HTTP/1.1\r\n")
            assert wait_until(lambda: server.turned_away == 2)  # type: ignore[attr-defined]
            started = time.monotonic()
            for sock in socks:
                assert closed_by_server(sock, 2) is not None
            assert time.monotonic() - started < 1.2
        assert wait_until(lambda: server.open_connections == 0)  # type: ignore[attr-defined]
        assert "fedledger_rounds_seen_total" in requests.get(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert sum("did not send its request headers" in line for line in notes) == 2
