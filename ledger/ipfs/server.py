"""The embedded store behind Kubo's RPC API, answering as Kubo answers.

``fedledger ipfs serve`` runs this so several processes (or machines) share one store without a
Kubo install, so that IPFS clients written for Kubo (ipfshttpclient, the JS ``kubo-rpc-client``,
curl) work against it unchanged, and so the ``kubo`` backend is tested over real HTTP.

Kubo's conventions, kept here: HTTP/1.1; every call is POST (OPTIONS answers 204 and other
methods 405, both with ``Allow: OPTIONS, POST``); an unknown path answers ``404 page not
found``; a request Kubo refuses before running it (a missing argument, an option value of the
wrong type) answers 400 text/plain; a command that fails answers 500 with
``{"Message","Code":0,"Type":"error"}``. Options are read and honoured or refused by
:mod:`ledger.ipfs.kubo_rpc`. Any spelling of a CID is accepted; answers spell CIDs as Kubo would
(CIDv0 stays ``Qm…``, ``cid-base`` picks the multibase).

Uploads stream from the socket into the store, so a large body is never held in memory. Reads
(``cat``, ``get``, ``dag/export``) are verified against the CID before the first byte is sent:
content up to 16 MiB is read once and held, larger content is checked in a first pass and
re-checked block by block as it is sent.

Who may call what is Kubo's ``API.Authorizations`` (:mod:`ledger.ipfs.auth`): with authorizations
given, every request first shows a secret allowed its path, else it is answered 403 as Kubo
answers. Header and idle timeouts and a connection cap bound what slow or idle clients can hold
(:mod:`ledger.ipfs.serving`).
"""

from __future__ import annotations

import json
import signal
import tarfile
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ledger.ipfs import kubo_rpc
from ledger.ipfs.auth import DENIED, Authorizations
from ledger.ipfs.car import car_pieces
from ledger.ipfs.cid import RAW, cid_to_bytes, read_cid_version, spell_cid
from ledger.errors import LedgerError, StoreError
from ledger.ipfs.http import BodyError, ChunkedReader, ChunkedWriter, LimitedReader, boundary_of, iter_parts
from ledger.ipfs.identity import PeerIdentity, load_identity
from ledger.ipfs.kubo_rpc import ParseError, Refused, Request
from ledger.ipfs.serving import LimitedHandlerMixin, LimitedServerMixin, ServerLimits, stderr_notes
from ledger.ipfs.store.embedded import EmbeddedStore
from ledger.types import Cid
from ledger.ipfs.unixfs import decode_node, hash_stream, walk_dag

KUBO_VERSION = {"Version": "0.29.0", "Commit": "fedledger", "Repo": "15", "System": "amd64/linux", "Golang": "none"}
AGENT_VERSION = "kubo/0.29.0/fedledger"
HOLD_LIMIT = 16 * 1024 * 1024
PROGRESS_STEP = 256 * 1024  # Kubo's progressReaderIncrement
_ALLOW = "OPTIONS, POST"
_EXPOSED = "X-Stream-Output, X-Chunked-Output, X-Content-Length"
REFUSED_BODY_READ = 256 * 1024  # of a refused request's body, read so the client sees the answer (as Go does)


def _json_line(document: Any) -> bytes:
    return (json.dumps(document, separators=(",", ":")) + "\n").encode("utf-8")


def _target(text: str) -> tuple[Cid, int, str]:
    """An ``arg`` path (``/ipfs/CID``, ``CID``, any CID spelling): canonical CID, its version, its text."""
    path = text.strip()
    for prefix in ("/ipfs/", "ipfs/"):
        path = path.removeprefix(prefix)
    path = path.rstrip("/")
    head, _, rest = path.partition("/")
    cid, version = read_cid_version(head)
    if rest:
        raise Refused(f'no link named "{rest.split("/")[0]}" under {head}')
    return cid, version, head


def _held_or_again(make: Callable[[], Iterator[bytes]]) -> tuple[Iterable[bytes], int]:
    """The pieces ``make`` yields, all verified before this returns, and their total size. Up to
    HOLD_LIMIT they are held from that one pass; past it they are dropped and ``make`` runs again
    for the answer (re-checking each block)."""
    held: list[bytes] | None = []
    size = 0
    for piece in make():
        size += len(piece)
        if held is not None:
            held.append(piece)
            if size > HOLD_LIMIT:
                held = None
    return (held if held is not None else make()), size


class _Progress:
    """A part body that reports how much of it was read, as Kubo's progressReader does."""

    def __init__(self, body: Any, name: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self._body, self._name, self._emit = body, name, emit
        self._read = self._reported = 0
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        data = self._body.read(size)
        self._read += len(data)
        if (self._read - self._reported >= PROGRESS_STEP or not data) and not self._ended:
            self._ended = not data
            self._reported = self._read
            self._emit({"Name": self._name, "Bytes": self._read} if self._read else {"Name": self._name})
        return data


class _Handler(LimitedHandlerMixin, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fedledger-ipfs"
    store: EmbeddedStore  # set on the subclass made by make_server
    identity: PeerIdentity
    authorizations: Authorizations | None = None  # None: everyone may call everything, as Kubo without any
    quiet = True

    def log_message(self, format: str, *args: Any) -> None:
        if not self.quiet:
            super().log_message(format, *args)

    # -- methods ----------------------------------------------------------------------------
    def do_OPTIONS(self) -> None:
        self._begin()
        if not self._authorized():
            return
        self._drain()
        self.send_response(HTTPStatus.NO_CONTENT)
        self.send_header("Allow", _ALLOW)
        self.end_headers()

    def _not_allowed(self) -> None:
        self._begin()
        if not self._authorized():
            return
        self._drain()
        if not urlsplit(self.path).path.startswith("/api/v0/"):
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        self._send_text(HTTPStatus.METHOD_NOT_ALLOWED, "405 - Method Not Allowed", {"Allow": _ALLOW})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = _not_allowed

    def do_POST(self) -> None:
        self._begin()
        if not self._authorized():
            return
        url = urlsplit(self.path)
        found = _route(url.path)
        if found is None:
            self._drain()
            self._send_text(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        name, path_args = found
        try:
            try:
                request = kubo_rpc.parse(name, parse_qs(url.query, keep_blank_values=True), path_args)
                file_arg = kubo_rpc.COMMANDS[name].file_arg
                if file_arg and boundary_of(self.headers.get("Content-Type", "")) is None:
                    raise ParseError(f"file argument '{file_arg}' is required")
            except ParseError as error:
                self._drain()
                self._send_text(HTTPStatus.BAD_REQUEST, str(error))
                return
            try:
                kubo_rpc.check_encoding(request)
                _ENDPOINTS[name](self, request)
            except (Refused, LedgerError, BodyError) as error:
                self._drain()
                self._fail(str(error))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to answer

    # -- plumbing ---------------------------------------------------------------------------
    def _begin(self) -> None:
        """Per request (a connection carries several): no body stream yet, no answer started."""
        self._body_stream: Any = None
        self._stream: ChunkedWriter | None = None

    def _body(self) -> Any:
        if self._body_stream is None:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self._body_stream = ChunkedReader(self.rfile)  # type: ignore[arg-type]
            else:
                self._body_stream = LimitedReader(self.rfile, int(self.headers.get("Content-Length") or 0))  # type: ignore[arg-type]
        return self._body_stream

    def _authorized(self) -> bool:
        """Whether the request's secret allows its path; if not, answered 403 as Kubo answers."""
        if self.authorizations is None:
            return True
        try:
            if self.authorizations.allows(self.headers.get("Authorization"), urlsplit(self.path).path):
                return True
            self._drain(limit=REFUSED_BODY_READ)  # a refused client may not make the server read its upload
            self._send_text(HTTPStatus.FORBIDDEN, DENIED)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        return False

    def _drain(self, *, limit: int | None = None) -> None:
        """Read what is left of the request body, so the client sees the answer, not a reset; past
        ``limit`` bytes, stop and close the connection after the answer instead."""
        try:
            body = self._body()
            read = 0
            while piece := body.read(1 << 20 if limit is None else min(1 << 16, limit - read + 1)):
                read += len(piece)
                if limit is not None and read > limit:
                    self.close_connection = True
                    return
        except (BodyError, ValueError, OSError):
            self.close_connection = True

    def _send_text(self, status: HTTPStatus, message: str, headers: dict[str, str] | None = None) -> None:
        """Go's ``http.Error``: the message and a newline, as text/plain."""
        body = (message + "\n").encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("X-Content-Type-Options", "nosniff")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, message: str) -> None:
        if self._stream is not None:  # the answer has begun: Kubo's error trailer ends it
            self._stream.close(message)
            self._stream = None
            self.close_connection = True
            return
        self._send_json({"Message": message, "Code": 0, "Type": "error"}, HTTPStatus.INTERNAL_SERVER_ERROR)

    def _send_json(self, document: Any, status: HTTPStatus = HTTPStatus.OK) -> None:
        body = _json_line(document)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Access-Control-Expose-Headers", _EXPOSED)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_stream(self, content_type: str, extra: dict[str, str]) -> ChunkedWriter:
        """Begin a chunked answer (its length unknown), as Kubo's response emitter does."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Access-Control-Expose-Headers", _EXPOSED)
        self.send_header("Trailer", "X-Stream-Error")
        self.send_header("Transfer-Encoding", "chunked")
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self._stream = ChunkedWriter(self.wfile)  # type: ignore[arg-type]
        return self._stream

    def _end_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _lines(self, *, before_body_ends: bool = False) -> Callable[[dict[str, Any]], None]:
        """An emitter of NDJSON lines: the answer starts with the first line."""

        def emit(document: dict[str, Any]) -> None:
            if self._stream is None:
                extra = {"X-Chunked-Output": "1"}
                if before_body_ends:  # Kubo too: answering before the body is read ends the connection
                    extra["Connection"] = "close"
                    self.close_connection = True
                self._start_stream("application/json", extra)
            assert self._stream is not None
            self._stream.write(_json_line(document))

        return emit

    def _send_bytes(self, pieces: Iterable[bytes], length: int, content_type: str = "text/plain") -> None:
        """A verified byte stream of known length (Kubo's ``X-Stream-Output``)."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Access-Control-Expose-Headers", _EXPOSED)
        self.send_header("X-Stream-Output", "1")
        self.send_header("X-Content-Length", str(length))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        sent = 0
        try:
            for piece in pieces:
                self.wfile.write(piece)
                sent += len(piece)
        except LedgerError:  # changed on disk since the first pass: cut the answer short, never send bad bytes
            self.close_connection = True
            return
        if sent != length:
            self.close_connection = True

    # -- endpoints --------------------------------------------------------------------------
    def add(self, request: Request) -> None:
        plan = kubo_rpc.plan_add(request)
        boundary = boundary_of(self.headers.get("Content-Type", ""))
        assert boundary is not None
        emit = self._lines(before_body_ends=plan.progress)
        added = 0
        for part in iter_parts(self._body(), boundary):
            if part.is_directory:
                raise Refused("this store adds single files only, not directories; add each file on its own.")
            body: Any = _Progress(part.body, part.filename, emit) if plan.progress else part.body
            if plan.only_hash:
                root = hash_stream(body, plan.layout)
            else:
                root = self.store.import_stream(body, layout=plan.layout, pin=False)
                if plan.pin:
                    self.store.pin(root.cid, spelled=spell_cid(root.cid, version=root.version))
            added += 1
            if not plan.silent:
                emit({"Name": part.filename or spell_cid(root.cid, version=root.version),
                      "Hash": plan.encoder.spell(root.cid, root.version), "Size": str(root.tsize)})
        self._drain()
        if not added:
            raise Refused("expected a file argument")
        if self._stream is None:  # silent: an empty answer
            self._start_stream("application/json", {"X-Chunked-Output": "1"})
        self._end_stream()

    def cat(self, request: Request) -> None:
        """The content of each path in turn, from ``offset`` for at most ``length`` bytes (as Kubo reads them)."""
        offset, length = kubo_rpc.plan_range(request)
        self._drain()
        segments: list[tuple[Cid, int, int]] = []
        total = 0
        targets = [_target(arg)[0] for arg in request.args] if length != 0 else []
        for cid in targets:
            size = self.store.content_size(cid)
            if offset > size:
                offset -= size
                continue
            count = size - offset
            if length is not None and total + count >= length:
                segments.append((cid, offset, length - total))
                break
            segments.append((cid, offset, count))
            total += count
            offset = 0

        def pieces() -> Iterator[bytes]:
            for cid, start, count in segments:
                yield from self.store.iter_content(cid, offset=start, length=count)

        held, size = _held_or_again(pieces)
        self._send_bytes(held, size)

    def get(self, request: Request) -> None:
        """A tar of the file named as given (gzip'd on request), or with ``compress`` alone the gzip'd file."""
        archive, level = kubo_rpc.plan_get(request)
        cid, _, name = _target(request.args[0])
        self._drain()
        held, size = _held_or_again(lambda: self.store.iter_content(cid))
        pieces: Iterable[bytes] = held
        if archive:
            pieces = _tar(name, size, held)
        if level:
            pieces = _gzip(pieces, level)
        stream = self._start_stream("text/plain", {"X-Stream-Output": "1", "X-Content-Length": str(size)})
        for piece in pieces:
            stream.write(piece)
        self._end_stream()

    def dag_export(self, request: Request) -> None:
        """The DAG as a CARv1, each block once in ``ipfs dag export``'s order, CIDs as the DAG links them."""
        cid, version, _ = _target(request.args[0])
        self._drain()
        root = spell_cid(cid, version=version)

        def pieces() -> Iterator[bytes]:
            return car_pieces(root, walk_dag(cid, lambda block: self.store.read_block(block, root=cid), root_version=version))

        held, size = _held_or_again(pieces)
        self._send_bytes(held, size, "application/vnd.ipld.car")

    def block_get(self, request: Request) -> None:
        cid, _, _ = _target(request.args[0])
        self._drain()
        data = self.store.read_block(cid)
        self._send_bytes([data], len(data))

    def block_stat(self, request: Request) -> None:
        cid, version, _ = _target(request.args[0])
        encoder = kubo_rpc.cid_encoder(request)
        self._drain()
        if not self.store.has(cid):
            raise Refused(f"block {cid} was not found locally (offline)")
        self._send_json({"Key": encoder.spell(cid, version), "Size": self.store.block_size(cid)})

    def pin_add(self, request: Request) -> None:
        """Pin each path once its whole DAG is here and checked (Kubo pins only what it holds whole)."""
        kubo_rpc.plan_pin_add(request)
        encoder = kubo_rpc.cid_encoder(request)
        self._drain()
        targets = [_target(arg) for arg in request.args]
        nodes = size = 0
        for cid, _, _ in targets:
            for _, data in walk_dag(cid, lambda block, root=cid: self.store.read_block(block, root=root)):
                nodes, size = nodes + 1, size + len(data)
        for cid, version, _ in targets:
            self.store.pin(cid, spelled=spell_cid(cid, version=version))
        pins = [encoder.spell(cid, version) for cid, version, _ in targets]
        if not request.value("progress"):
            self._send_json({"Pins": pins})
            return
        emit = self._lines()
        emit({"Progress": nodes, "Bytes": size})
        emit({"Pins": pins})
        self._end_stream()

    def pin_rm(self, request: Request) -> None:
        encoder = kubo_rpc.cid_encoder(request)
        self._drain()
        targets = [_target(arg) for arg in request.args]
        pinned = set(self.store.pins())
        for cid, _, text in targets:
            if cid not in pinned:
                raise Refused(f"{text} is not pinned or pinned indirectly")
            if not request.value("recursive"):
                raise Refused(f"{text} is pinned recursively")
        for cid, _, _ in targets:
            self.store.unpin(cid)
        self._send_json({"Pins": [encoder.spell(cid, version) for cid, version, _ in targets]})

    def pin_ls(self, request: Request) -> None:
        kind = kubo_rpc.plan_pin_ls(request)
        encoder = kubo_rpc.cid_encoder(request)
        self._drain()
        entries = [] if request.value("name") else _pin_entries(self.store, kind, request.args, encoder)
        if request.value("stream"):
            emit = self._lines()
            for cid_text, pin_type in entries:
                emit({"Cid": cid_text, "Type": pin_type})
            if self._stream is None:
                self._start_stream("application/json", {"X-Chunked-Output": "1"})
            self._end_stream()
            return
        keys = {cid_text: {"Type": pin_type, "Name": ""} for cid_text, pin_type in entries}
        self._send_json({"Keys": keys} if keys else {})  # Kubo leaves an empty Keys out

    def id(self, request: Request) -> None:
        self._drain()
        base = str(request.value("peerid-base"))
        try:
            own = self.identity.peer_id(base)
        except ValueError as error:
            raise Refused(str(error)) from None
        if request.args and request.args[0] not in (own, self.identity.peer_id()):
            raise Refused("'ipfs id' cannot query information on remote peers without a running daemon; "
                          "if you only want to convert --peerid-base, pass --offline option")
        self._send_json({"ID": own, "PublicKey": self.identity.public_key_text, "Addresses": [],
                         "AgentVersion": AGENT_VERSION, "Protocols": []})

    def version(self, request: Request) -> None:
        self._drain()
        self._send_json(KUBO_VERSION)


def _pin_entries(store: EmbeddedStore, kind: str, args: list[str], encoder: kubo_rpc.CidEncoder) -> list[tuple[str, str]]:
    """(CID as spelled, pin type) for ``pin/ls``: recursive pins first, then what they hold (indirect)."""
    pins = store.pin_spellings()
    recursive = [(encoder.spell(cid, read_cid_version(spelled)[1]), "recursive") for cid, spelled in pins.items()]
    if not args and kind == "recursive":
        return recursive
    held: dict[Cid, tuple[int, Cid]] = {}  # block -> (its link version, the pin holding it)
    for root in pins:
        for cid, version in _dag_members(store, root):
            if cid not in pins:
                held.setdefault(cid, (version, root))
    if not args:
        indirect = [(encoder.spell(cid, version), "indirect") for cid, (version, _) in sorted(held.items())]
        return {"all": recursive + indirect, "indirect": indirect, "direct": []}[kind]
    entries = []
    for arg in args:
        cid, version, text = _target(arg)
        if cid in pins and kind in ("recursive", "all"):
            entries.append((encoder.spell(cid, version), "recursive"))
        elif cid in held and kind in ("indirect", "all"):
            root = held[cid][1]
            entries.append((encoder.spell(cid, version), f"indirect through {encoder.spell(root, read_cid_version(pins[root])[1])}"))
        else:
            raise Refused(f"path '{arg}' is not pinned")
    return entries


def _dag_members(store: EmbeddedStore, root: Cid) -> Iterator[tuple[Cid, int]]:
    """Every block under ``root`` with the version it is linked by; only dag-pb blocks are read."""
    stack, seen = [root], {root}
    while stack:
        cid = stack.pop()
        if cid_to_bytes(cid)[1] == RAW:
            continue
        for link in decode_node(cid, store.read_block(cid, root=root)).links:
            if link.cid not in seen:
                seen.add(link.cid)
                stack.append(link.cid)
                yield link.cid, link.version


def _tar(name: str, size: int, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """One regular file in a tar stream, as Kubo's tar writer lays it out (mode 0644, two zero blocks at the end)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    yield info.tobuf(tarfile.PAX_FORMAT)
    yield from pieces
    yield b"\0" * (-size % tarfile.BLOCKSIZE) + b"\0" * (2 * tarfile.BLOCKSIZE)


def _gzip(pieces: Iterable[bytes], level: int) -> Iterator[bytes]:
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    for piece in pieces:
        yield compressor.compress(piece)
    yield compressor.flush()


_ENDPOINTS: dict[str, Callable[[_Handler, Request], None]] = {
    "add": _Handler.add,
    "cat": _Handler.cat,
    "get": _Handler.get,
    "dag/export": _Handler.dag_export,
    "block/get": _Handler.block_get,
    "block/stat": _Handler.block_stat,
    "pin/add": _Handler.pin_add,
    "pin/rm": _Handler.pin_rm,
    "pin/ls": _Handler.pin_ls,
    "id": _Handler.id,
    "version": _Handler.version,
}


def _route(path: str) -> tuple[str, list[str]] | None:
    """The command a path names, and a trailing path argument (``/api/v0/cat/CID``, as Kubo allows)."""
    if not path.startswith("/api/v0/"):
        return None
    name = path.removeprefix("/api/v0/").rstrip("/")
    if name in _ENDPOINTS:
        return name, []
    parent, _, last = name.rpartition("/")
    if parent in _ENDPOINTS and kubo_rpc.COMMANDS[parent].args:
        return parent, [last]
    return None


class StoreServer(LimitedServerMixin, ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with the limits of :mod:`ledger.ipfs.serving`."""

    daemon_threads = True


def make_server(
    store: EmbeddedStore,
    *,
    port: int = 5001,
    host: str = "127.0.0.1",
    authorizations: Authorizations | None = None,
    limits: ServerLimits = ServerLimits(),
    note: Callable[[str], None] | None = None,
) -> StoreServer:
    """A server bound to ``host:port`` (port 0 picks a free one); call ``serve_forever`` to run it.

    ``authorizations``: who may call what (None: anyone, everything); ``limits``: its timeouts and
    connection cap; ``note``: where its one-line notes go (stderr by default).
    """
    limits = limits.checked()
    handler = type("Handler", (_Handler,), {"store": store, "identity": load_identity(store.root),
                                           "authorizations": authorizations})
    try:
        server = StoreServer((host, port), handler)
    except OSError as error:
        raise StoreError(
            f"cannot listen on {host}:{port} ({error.strerror}); choose another --port or stop what uses it."
        ) from error
    server.init_limits(limits, note or stderr_notes("fedledger ipfs serve"))
    return server


def serve(
    store: EmbeddedStore,
    *,
    port: int = 5001,
    host: str = "127.0.0.1",
    ready: Callable[[str], None] | None = None,
    authorizations: Authorizations | None = None,
    limits: ServerLimits = ServerLimits(),
) -> None:
    """Serve until SIGTERM or SIGINT; ``ready`` gets the listening multiaddr once it accepts."""
    server = make_server(store, port=port, host=host, authorizations=authorizations, limits=limits)
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
