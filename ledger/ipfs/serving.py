"""The limits every fedledger HTTP server keeps: header and idle timeouts, a connection cap, one-line notes.

``http.server`` on its own waits forever for a request's headers and opens a thread for every
connection: 800 sockets that never finish their headers hold 800 threads for as long as their
owner likes. The servers here (``ipfs serve``, ``relay serve``, the ``--metrics-port`` endpoint)
mix in :class:`LimitedServerMixin` and :class:`LimitedHandlerMixin` instead:

- **header timeout**: a request's line and headers must arrive whole within ``header_timeout_s``
  of its first byte (of the connection, for the first request): a client that trickles a byte
  now and then is cut off all the same, as Go's ``ReadHeaderTimeout`` does;
- **idle timeout**: a kept-alive connection waits at most ``idle_timeout_s`` for its next request,
  and a request body (or a client that does not read its answer) may stall at most that long;
- **connection cap**: past ``max_connections`` open connections a new one is answered
  ``503`` with ``Retry-After`` and closed at once, without a thread.

A client that resets its connection, or that a timeout cuts off, is one line in the server's log,
never a Python traceback; such lines are throttled, so a flood cannot flood the log too. A request
handler busy with its own work (the relay waiting for its batch to be mined) is not timed out:
only waiting for the client is.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.errors import InvalidInputError

NOTES_PER_WINDOW = 20
NOTES_WINDOW_S = 10.0


@dataclass(frozen=True)
class ServerLimits:
    """How long a server waits for its clients, and how many it serves at once."""

    header_timeout_s: float = 10.0
    idle_timeout_s: float = 60.0
    max_connections: int = 256

    def checked(self) -> ServerLimits:
        """These limits, or InvalidInputError naming the option to fix."""
        for flag, value in (("--header-timeout", self.header_timeout_s), ("--idle-timeout", self.idle_timeout_s)):
            if not value > 0:
                raise InvalidInputError(f"{flag} must be a number of seconds above 0, not {value}.")
        if self.max_connections < 1:
            raise InvalidInputError(f"--max-connections must be 1 or more, not {self.max_connections}.")
        return self


class ClientTimeoutError(TimeoutError):
    """The client did not send in time; ``message`` is the log's line (empty: close quietly)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ThrottledNotes:
    """One line per call, written by ``write``; past ``per_window`` lines in ``window_s`` the rest are
    counted and named in the next line that is written."""

    def __init__(self, write: Callable[[str], None], *, per_window: int = NOTES_PER_WINDOW,
                 window_s: float = NOTES_WINDOW_S) -> None:
        self._write, self._per_window, self._window_s = write, per_window, window_s
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._written = self._dropped = 0

    def __call__(self, line: str) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._start >= self._window_s:
                if self._dropped:
                    line += f" ({self._dropped} similar line(s) before this one not shown)"
                self._start, self._written, self._dropped = now, 0, 0
            if self._written >= self._per_window:
                self._dropped += 1
                return
            self._written += 1
        try:
            self._write(line)
        except (OSError, ValueError):  # the log itself is gone (closed stderr): nothing to do
            pass


def stderr_notes(prefix: str) -> ThrottledNotes:
    """Notes written to stderr as ``prefix: line``."""

    def write(line: str) -> None:
        sys.stderr.write(f"{prefix}: {line}\n")
        sys.stderr.flush()

    return ThrottledNotes(write)


def _peer(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


class _TimedSocketReader(io.RawIOBase):
    """The connection's bytes, each wait for them bounded by the phase the request is in.

    ``header``: until one deadline (the header timeout after the request began); ``idle``: a
    kept-alive connection waiting for its next request, until the idle deadline (its first byte
    starts the header deadline); ``body``: each wait at most the idle timeout.
    """

    def __init__(self, sock: socket.socket, limits: ServerLimits, peer: str) -> None:
        super().__init__()
        self._sock, self._limits, self._peer = sock, limits, peer
        self._phase = "header"
        self._deadline = time.monotonic() + limits.header_timeout_s
        self._timeout: float | None = None  # as last set on the socket (each set is a system call)

    def readable(self) -> bool:
        return True

    def await_request(self) -> None:
        self._phase = "idle"
        self._deadline = time.monotonic() + self._limits.idle_timeout_s

    def headers_read(self) -> None:
        self._phase = "body"
        self._set_timeout(self._limits.idle_timeout_s)  # also bounds each send of the answer

    def _set_timeout(self, seconds: float) -> None:
        if seconds != self._timeout:
            self._sock.settimeout(seconds)
            self._timeout = seconds

    def _expired(self) -> ClientTimeoutError:
        if self._phase == "header":
            return ClientTimeoutError(f"{self._peer} did not send its request headers within "
                                      f"{self._limits.header_timeout_s:g} s; closed the connection.")
        if self._phase == "idle":
            return ClientTimeoutError("")  # an idle kept-alive connection: closing it is routine
        return ClientTimeoutError(f"{self._peer} sent nothing for {self._limits.idle_timeout_s:g} s in the middle "
                                  "of its request; closed the connection.")

    def readinto(self, buffer: Any) -> int:
        if self._phase == "body":
            wait = self._limits.idle_timeout_s
        else:
            wait = self._deadline - time.monotonic()
            if wait <= 0:
                raise self._expired()
        self._set_timeout(wait)
        try:
            count = self._sock.recv_into(buffer)
        except TimeoutError:
            raise self._expired() from None
        if count and self._phase == "idle":
            self._phase = "header"
            self._deadline = time.monotonic() + self._limits.header_timeout_s
        return count


class LimitedHandlerMixin:
    """Mixed in before a ``BaseHTTPRequestHandler`` subclass: every read from the client is timed."""

    server: Any
    connection: socket.socket
    client_address: Any
    rfile: Any
    rbufsize: int
    # TCP_NODELAY, as Go's servers (Kubo's) set it: http.server writes an answer's headers and its body
    # apart, and Nagle's algorithm then holds the body for the client's delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()  # type: ignore[misc]
        limits: ServerLimits = self.server.limits
        self.rfile.close()  # the plain one setup() made: replaced by one whose every wait is bounded
        self._reader = _TimedSocketReader(self.connection, limits, _peer(self.client_address))
        self.rfile = io.BufferedReader(self._reader, io.DEFAULT_BUFFER_SIZE)
        self._requests_begun = 0

    def handle_one_request(self) -> None:
        if self._requests_begun:
            self._reader.await_request()
        self._requests_begun += 1
        super().handle_one_request()  # type: ignore[misc]

    def parse_request(self) -> bool:
        parsed: bool = super().parse_request()  # type: ignore[misc]
        self._reader.headers_read()
        return parsed

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        expired = next((arg for arg in args if isinstance(arg, ClientTimeoutError)), None)
        if expired is not None:  # http.server's own "Request timed out": the server's one line instead
            if expired.message:
                self.server.note(expired.message)
            return
        super().log_error(format, *args)  # type: ignore[misc]


_BUSY_BODY = b"the server is serving as many connections as it allows; try again shortly.\n"
_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n"
         b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY)


class LimitedServerMixin:
    """Mixed in before ``ThreadingHTTPServer`` (or any ``ThreadingMixIn`` server): the connection cap,
    and one line instead of a traceback for a client that went away or timed out."""

    limits: ServerLimits
    note: Callable[[str], None]
    # socketserver's listen backlog is 5: connections past it wait, unseen, for the kernel to retry their
    # handshake (seconds). A longer queue lets the server see them at once, to serve or turn away.
    request_queue_size = 128

    def init_limits(self, limits: ServerLimits, note: Callable[[str], None]) -> None:
        self.limits = limits.checked()
        self.note = note
        self._connections_lock = threading.Lock()
        self._connections = 0
        self.turned_away = 0

    @property
    def open_connections(self) -> int:
        with self._connections_lock:
            return self._connections

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            full = self._connections >= self.limits.max_connections
            if full:
                self.turned_away += 1
            else:
                self._connections += 1
        if full:
            self._turn_away(request, client_address)
            return
        try:
            super().process_request(request, client_address)  # type: ignore[misc]
        except BaseException:
            with self._connections_lock:
                self._connections -= 1
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)  # type: ignore[misc]
        finally:
            with self._connections_lock:
                self._connections -= 1

    def _turn_away(self, request: socket.socket, client_address: Any) -> None:
        """Answer 503 without a thread and without waiting, then close."""
        try:
            request.setblocking(False)
            try:
                request.recv(65536)  # what already arrived, so the close does not reset the answer away
            except (BlockingIOError, InterruptedError):
                pass
            request.send(_BUSY)
        except OSError:
            pass
        self.shutdown_request(request)  # type: ignore[attr-defined]
        self.note(f"turned away {_peer(client_address)}: {self.limits.max_connections} connections are open, "
                  "the most this server allows (--max-connections).")

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, ClientTimeoutError):
            if error.message:
                self.note(error.message)
            return
        if isinstance(error, (ConnectionError, TimeoutError)):
            what = "reset the connection" if isinstance(error, ConnectionResetError) else f"went away ({type(error).__name__})"
            self.note(f"{_peer(client_address)} {what} before its answer was complete; dropped it.")
            return
        super().handle_error(request, client_address)  # type: ignore[misc]
