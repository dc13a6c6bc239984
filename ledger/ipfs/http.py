"""The HTTP plumbing under ``fedledger ipfs serve``: request bodies in, chunked answers out.

Bodies are read as streams (``Content-Length`` or ``Transfer-Encoding: chunked``), and a
``multipart/form-data`` body is split into its parts without holding any part in memory, so a
large upload goes from the socket to the store 256 KiB at a time. Answers whose length is not
known in advance (``add``'s NDJSON lines, a tar or CAR stream) go out chunked, with Kubo's
``X-Stream-Error`` trailer when something fails after the first byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, BinaryIO
from urllib.parse import unquote

PART_READ = 256 * 1024


class BodyError(Exception):
    """The request body is cut short or malformed; the text says how."""


class ChunkedReader:
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
                    raise BodyError("the request body ended early (the client went away mid-upload)")
                try:
                    length = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BodyError("the request body is not valid chunked encoding") from None
                if length == 0:
                    while self._raw.readline(1024).strip():  # trailers
                        pass
                    self._done = True
                    break
                self._left = length
            want = self._left if size < 0 else min(self._left, size - len(out))
            piece = self._raw.read(want)
            if not piece:
                raise BodyError("the request body ended early")
            out += piece
            self._left -= len(piece)
            if self._left == 0:
                self._raw.readline(16)  # CRLF after each chunk
        return bytes(out)


class LimitedReader:
    """Exactly ``length`` bytes of a stream (a Content-Length body)."""

    def __init__(self, raw: BinaryIO, length: int) -> None:
        self._raw = raw
        self._left = length

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        data = self._raw.read(self._left if size < 0 else min(size, self._left))
        if not data:
            raise BodyError("the request body ended early")
        self._left -= len(data)
        return data


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


class PartReader:
    """The body of one multipart part: reads until the next boundary delimiter."""

    def __init__(self, body: _Pushback, boundary: bytes) -> None:
        self._body = body
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray()
        self._rest = b""
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        want = PART_READ if size < 0 else size
        while not self.ended and len(self._buffer) < want + len(self._delimiter):
            more = self._body.read(max(65536, want))
            if not more:
                raise BodyError("the multipart body has no closing boundary")
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

    def skip(self) -> None:
        """Read what is left of the part."""
        while self.read(PART_READ):
            pass

    def rest(self) -> bytes:
        """What followed the delimiter (``--`` for the last part); valid once ``ended``."""
        return self._rest


class Part:
    """One part of a multipart body: its headers, its file name (URL-decoded, as Kubo reads it) and body."""

    def __init__(self, headers: dict[str, str], body: PartReader) -> None:
        self.headers = headers
        self.body = body
        match = re.search(r'filename="([^"]*)"', headers.get("content-disposition", ""))
        self.filename = unquote(match.group(1)) if match else ""

    @property
    def is_directory(self) -> bool:
        return "directory" in self.headers.get("content-type", "")


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a ``multipart/form-data`` Content-Type; None for any other body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not (content_type or "").lower().startswith("multipart/form-data") or not match:
        return None
    return match.group(1).encode("latin-1")


def _read_headers(body: _Pushback, first: bytes) -> dict[str, str]:
    data = bytearray(first)
    while b"\r\n\r\n" not in data:
        more = body.read(1024)
        if not more or len(data) > 65536:
            raise BodyError("a multipart part has no header end")
        data += more
    head, _, tail = bytes(data).partition(b"\r\n\r\n")
    body.unread(tail)
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    return headers


def _at_least_two(body: _Pushback, rest: bytes) -> bytes:
    """What follows a delimiter, at least its first two bytes (``--`` ends the body, CRLF starts a part)."""
    while len(rest) < 2:
        more = body.read(2 - len(rest))
        if not more:
            raise BodyError("the multipart body ended without its closing boundary")
        rest += more
    return rest


def iter_parts(raw: Any, boundary: bytes) -> Iterator[Part]:
    """The parts of a multipart body in order; each must be read (or skipped) before the next is asked for."""
    body = _Pushback(raw)
    opener = PartReader(body, boundary)
    body.unread(b"\r\n")  # the first delimiter has no leading CRLF
    opener.skip()  # the preamble
    rest = _at_least_two(body, opener.rest())
    while not rest.startswith(b"--"):
        part = Part(_read_headers(body, rest), PartReader(body, boundary))
        yield part
        part.body.skip()
        rest = _at_least_two(body, part.body.rest())


class ChunkedWriter:
    """Writes an answer body in chunked transfer encoding; ``close`` ends it, with an error trailer if given."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes) -> None:
        if data:
            self._out.write(b"%x\r\n" % len(data) + data + b"\r\n")

    def close(self, error: str | None = None) -> None:
        trailer = b"" if error is None else b"X-Stream-Error: " + error.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"
        self._out.write(b"0\r\n" + trailer + b"\r\n")
        self._out.flush()
