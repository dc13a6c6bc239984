"""The embedded store behind the subset of Kubo's RPC API that fedledger uses.

``fedledger ipfs serve`` runs this so several processes (or machines) share one store without
a Kubo install, and so the ``kubo`` backend is tested over real HTTP. It follows Kubo's wire
format for these calls: every call is POST (anything else answers 405); ``add`` takes a
multipart body (field ``file``) and the flags ``cid-version``, ``raw-leaves``, ``chunker``,
``pin``, ``only-hash`` and answers NDJSON ``{"Name","Hash","Size"}`` (Size as a string);
failures answer 500 with Kubo's body ``{"Message","Code":0,"Type":"error"}``. Booleans are
read the way Go's ``strconv.ParseBool`` reads them, so ipfshttpclient's ``True``/``False`` work.

Uploads stream from the socket into the store 256 KiB at a time, so a large body is never held
in memory; reads are verified against the CID before the first byte is sent.
"""

from __future__ import annotations

import json
import re
import signal
import threading
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from ledger.cid import RAW, cid_to_bytes, parse_cid
from ledger.errors import InvalidInputError, LedgerError, StoreError
from ledger.store.embedded import EmbeddedStore
from ledger.types import Cid
from ledger.unixfs import CHUNK_SIZE, cid_of_stream, decode_node

KUBO_VERSION = {"Version": "0.29.0", "Commit": "fedledger", "Repo": "15", "System": "amd64/linux", "Golang": "none"}
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class ApiError(Exception):
    """A request the API refuses; its text becomes Kubo's error Message."""


# -- request bodies -----------------------------------------------------------------------------
class _ChunkedReader:
    """``Transfer-Encoding: chunked`` decoded as a plain binary stream."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._left = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        out = bytearray()
        while not self._done and (size < 0 or len(out) < size):
            if self._left == 0:
                line = self._raw.readline(1024)
                if not line.endswith(b"\n"):
                    raise ApiError("the request body ended early (the client went away mid-upload)")
                try:
                    length = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise ApiError("the request body is not valid chunked encoding") from None
                if length == 0:
                    while self._raw.readline(1024).strip():  # trailers
                        pass
                    self._done = True
                    break
                self._left = length
            want = self._left if size < 0 else min(self._left, size - len(out))
            piece = self._raw.read(want)
            if not piece:
                raise ApiError("the request body ended early")
            out += piece
            self._left -= len(piece)
            if self._left == 0:
                self._raw.readline(16)  # CRLF after each chunk
        return bytes(out)


class _LimitedReader:
    """Exactly ``length`` bytes of a stream (a Content-Length body)."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._raw.read(self._left if size < 0 else min(size, self._left))
        if not data:
            raise ApiError("the request body ended early")
        self._left -= len(data)
        return data


class _PartReader:
    """The body of one multipart part: reads until the next boundary delimiter."""

    def __init__(self, body: Any, boundary: bytes) -> None:
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray()
        self._rest = b""
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        want = CHUNK_SIZE if size < 0 else size
        while not self.ended and len(self._buffer) < want + len(self._delimiter):
            more = self._body.read(max(65536, want))
            if not more:
                raise ApiError("the multipart body has no closing boundary")
            start = max(0, len(self._buffer) - len(self._delimiter) + 1)
            self._buffer += more
            at = self._buffer.find(self._delimiter, start)
            if at >= 0:
                self._rest = bytes(self._buffer[at + len(self._delimiter) :])
                del self._buffer[at:]
                self.ended = True
        out = bytes(self._buffer[:want])
        del self._buffer[:want]
        return out

    def rest(self) -> bytes:
        """What followed the delimiter (``--`` for the last part); valid once ``ended``."""
        return self._rest


def _read_part_headers(body: Any, first: bytes) -> dict[str, str]:
    data = bytearray(first)
    while b"\r\n\r\n" not in data:
        more = body.read(1024)
        if not more or len(data) > 65536:
            raise ApiError("a multipart part has no header end")
        data += more
    head, _, tail = bytes(data).partition(b"\r\n\r\n")
    body.unread(tail)
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return headers


class _Pushback:
    """A stream one can push bytes back onto."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self._pending = b""

    def unread(self, data: bytes) -> None:
        self._pending = data + self._pending

    def read(self, size: int = -1) -> bytes:
        if self._pending:
            out = self._pending if size < 0 else self._pending[:size]
            self._pending = self._pending[len(out) :]
            return out
        return self._body.read(size)


def _at_least_two(body: _Pushback, rest: bytes) -> bytes:
    """What follows a delimiter, at least its first two bytes (``--`` ends the body, CRLF starts a part)."""
    while len(rest) < 2:
        more = body.read(2 - len(rest))
        if not more:
            raise ApiError("the multipart body ended without its closing boundary")
        rest += more
    return rest


def _boundary(content_type: str) -> bytes:
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.startswith("multipart/") or not match:
        raise ApiError("add needs a multipart/form-data body with a file part")
    return match.group(1).encode("latin-1")


# -- the API ------------------------------------------------------------------------------------
def _flag(query: dict[str, list[str]], name: str, default: bool) -> bool:
    values = query.get(name)
    if not values:
        return default
    if values[-1] in _TRUE:
        return True
    if values[-1] in _FALSE:
        return False
    raise ApiError(f'invalid value "{values[-1]}" for boolean option "{name}"')


def _length(query: dict[str, list[str]]) -> int | None:
    """``cat``'s ``length`` parameter; None (no limit) when absent or negative, as in Kubo."""
    if query.get("offset", ["0"])[-1] not in ("", "0"):
        raise ApiError("this store serves cat from offset 0 only")
    text = query.get("length", [""])[-1]
    try:
        value = int(text) if text else -1
    except ValueError:
        raise ApiError(f"length {text!r} is not an integer") from None
    return value if value >= 0 else None


def _first(chunks: Iterator[bytes], limit: int | None) -> Iterator[bytes]:
    """``chunks`` up to ``limit`` bytes in all, reading no block past it."""
    if limit is None:
        yield from chunks
        return
    for chunk in chunks:
        if limit <= 0:
            return
        yield chunk[:limit]
        limit -= len(chunk)


def _arg(query: dict[str, list[str]]) -> Cid:
    values = query.get("arg")
    if not values:
        raise ApiError('argument "arg" is required')
    text = values[0]
    for prefix in ("/ipfs/", "ipfs/"):
        text = text.removeprefix(prefix)
    try:
        return parse_cid(text.rstrip("/"))
    except InvalidInputError as error:
        raise ApiError(str(error)) from error


def dag_size(store: EmbeddedStore, cid: Cid) -> int:
    """Kubo's "Size" of an added file: every block's bytes (the root's Tsize)."""
    data = store.read_block(cid)
    if cid_to_bytes(cid)[1] == RAW:
        return len(data)
    return len(data) + sum(link.tsize for link in decode_node(cid, data).links)


class _Handler(BaseHTTPRequestHandler):
    server_version = "fedledger-ipfs"
    store: EmbeddedStore  # set on the subclass made by make_server
    quiet = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    # Kubo answers every method but POST with 405.
    def _not_allowed(self) -> None:
        self._send_error(HTTPStatus.METHOD_NOT_ALLOWED, f"method {self.command} not allowed; the RPC API takes POST")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_HEAD = _not_allowed

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query, keep_blank_values=True)
        route = _ROUTES.get(url.path.rstrip("/"))
        if route is None:
            self._drain()
            self._send_error(HTTPStatus.NOT_FOUND, f"{url.path} is not an endpoint of this API")
            return
        try:
            try:
                route(self, query)
            except (ApiError, LedgerError) as error:
                self._drain()
                self._send_error(HTTPStatus.INTERNAL_SERVER_ERROR, str(error))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer

    # -- plumbing ---------------------------------------------------------------------------
    def _body(self) -> Any:
        if getattr(self, "_body_stream", None) is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self._body_stream: Any = _ChunkedReader(self.rfile)
            else:
                self._body_stream = _LimitedReader(self.rfile, int(self.headers.get("Content-Length") or 0))
        return self._body_stream

    def _drain(self) -> None:
        """Read what is left of the request body, so the client sees the answer, not a reset."""
        try:
            body = self._body()
            while body.read(1 << 20):
                pass
        except (ApiError, ValueError, OSError):
            self.close_connection = True

    def _send_error(self, status: HTTPStatus, message: str) -> None:
        self._send_json({"Message": message, "Code": 0, "Type": "error"}, status)

    def _send_json(self, document: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = (json.dumps(document) + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_stream(self, chunks: Iterator[bytes], length: int) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(length))
        self.send_header("X-Content-Length", str(length))
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(chunk)

    # -- endpoints --------------------------------------------------------------------------
    def add(self, query: dict[str, list[str]]) -> None:
        if query.get("cid-version", [""])[-1] != "1":
            raise ApiError("this store adds with cid-version=1 only (ipfs add --cid-version=1); pass cid-version=1")
        if not _flag(query, "raw-leaves", True):
            raise ApiError("this store adds with raw leaves only; pass raw-leaves=true (the CIDv1 default)")
        if query.get("chunker", ["size-262144"])[-1] not in ("size-262144", ""):
            raise ApiError("this store chunks with size-262144 only (Kubo's default); leave chunker unset")
        if _flag(query, "wrap-with-directory", False) or _flag(query, "trickle", False):
            raise ApiError("this store adds single files with the balanced layout only; drop wrap-with-directory and trickle")
        pin, only_hash = _flag(query, "pin", True), _flag(query, "only-hash", False)
        body = _Pushback(self._body())
        boundary = _boundary(self.headers.get("Content-Type", ""))
        lines: list[dict[str, str]] = []
        # Preamble up to the first delimiter, then parts until the closing "--".
        opener = _PartReader(body, boundary)
        body.unread(b"\r\n")  # the first delimiter has no leading CRLF
        while opener.read(65536):
            pass
        rest = _at_least_two(body, opener.rest())
        while not rest.startswith(b"--"):
            headers = _read_part_headers(body, rest)
            part = _PartReader(body, boundary)
            disposition = headers.get("content-disposition", "")
            if "directory" in headers.get("content-type", ""):
                raise ApiError("this store adds single files only, not directories")
            name_match = re.search(r'filename="([^"]*)"', disposition)
            if only_hash:
                cid = cid_of_stream(part)  # type: ignore[arg-type]
                size = None
            else:
                cid = self.store.add_stream(part, pin=pin)  # type: ignore[arg-type]
                size = dag_size(self.store, cid)
            while part.read(65536):
                pass
            lines.append({"Name": name_match.group(1) if name_match else cid, "Hash": cid,
                          "Size": str(size if size is not None else 0)})
            rest = _at_least_two(body, part.rest())
        self._drain()
        if not lines:
            raise ApiError("add needs a multipart/form-data body with a file part")
        payload = "".join(json.dumps(line) + "\n" for line in lines).encode("utf-8")
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def cat(self, query: dict[str, list[str]]) -> None:
        """The content, or its first ``length`` bytes (Kubo's "maximum number of bytes to read")."""
        cid = _arg(query)
        limit = _length(query)
        self._drain()
        length = sum(len(chunk) for chunk in _first(self.store.iter_content(cid), limit))  # verify before answering
        self._send_stream(_first(self.store.iter_content(cid), limit), length)

    def block_get(self, query: dict[str, list[str]]) -> None:
        cid = _arg(query)
        self._drain()
        data = self.store.read_block(cid)
        self._send_stream(iter([data]), len(data))

    def block_stat(self, query: dict[str, list[str]]) -> None:
        cid = _arg(query)
        self._drain()
        if not self.store.has(cid):
            raise ApiError(f"block {cid} was not found locally (offline)")
        self._send_json({"Key": cid, "Size": self.store.block_path(cid).stat().st_size})

    def pin_add(self, query: dict[str, list[str]]) -> None:
        cid = _arg(query)
        self._drain()
        self.store.pin(cid)
        self._send_json({"Pins": [cid]})

    def pin_rm(self, query: dict[str, list[str]]) -> None:
        cid = _arg(query)
        self._drain()
        if cid not in self.store.pins():
            raise ApiError(f"{cid} is not pinned or pinned indirectly")
        self.store.unpin(cid)
        self._send_json({"Pins": [cid]})

    def pin_ls(self, query: dict[str, list[str]]) -> None:
        self._drain()
        pins = self.store.pins()
        if query.get("arg"):
            wanted = _arg(query)
            if wanted not in pins:
                raise ApiError(f"path '{wanted}' is not pinned")
            pins = [wanted]
        self._send_json({"Keys": {cid: {"Type": "recursive"} for cid in pins}})

    def version(self, query: dict[str, list[str]]) -> None:
        self._drain()
        self._send_json(KUBO_VERSION)


_ROUTES: dict[str, Callable[[_Handler, dict[str, list[str]]], None]] = {
    "/api/v0/add": _Handler.add,
    "/api/v0/cat": _Handler.cat,
    "/api/v0/block/get": _Handler.block_get,
    "/api/v0/block/stat": _Handler.block_stat,
    "/api/v0/pin/add": _Handler.pin_add,
    "/api/v0/pin/rm": _Handler.pin_rm,
    "/api/v0/pin/ls": _Handler.pin_ls,
    "/api/v0/version": _Handler.version,
}


def make_server(store: EmbeddedStore, *, port: int = 5001, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (port 0 picks a free one); call ``serve_forever`` to run it."""
    handler = type("Handler", (_Handler,), {"store": store})
    try:
        server = ThreadingHTTPServer((host, port), handler)
    except OSError as error:
        raise StoreError(
            f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or stop what uses it."
        ) from error
    server.daemon_threads = True
    return server


def serve(
    store: EmbeddedStore, *, port: int = 5001, host: str = "127.0.0.1", ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGTERM or SIGINT; ``ready`` gets the listening multiaddr once it accepts."""
    server = make_server(store, port=port, host=host)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    worker = threading.Thread(target=server.serve_forever, name="ipfs-api", daemon=True)
    worker.start()
    try:
        if ready is not None:
            ready(f"/ip4/{host}/tcp/{server.server_address[1]}")
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
