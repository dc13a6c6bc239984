"""Who may call which RPC: Kubo's ``API.Authorizations``, for ``fedledger ipfs serve`` and its clients.

The settings are Kubo's own, so one JSON document serves both (paste it into Kubo's config as
``API.Authorizations``, or give it to ``ipfs serve --auth-file``)::

    {"admin":  {"AuthSecret": "bearer:TOKEN", "AllowedPaths": ["/api/v0"]},
     "reader": {"AuthSecret": "basic:auditor:PASSWORD", "AllowedPaths": ["/api/v0/cat", "/api/v0/block/get"]}}

Kubo's semantics, kept: a secret is ``bearer:TOKEN`` (the client sends ``Authorization: Bearer
TOKEN``), ``basic:USER:PASSWORD`` or ``basic:BASE64`` (``Authorization: Basic …``), or a bare
``TOKEN`` (bearer); each name is allowed the RPC paths that start with one of its ``AllowedPaths``
(``/api/v0`` is everything); ``/api/v0/version`` is open to every valid secret; anything else (no
header, an unknown secret, a path not allowed) answers ``403`` with Kubo's sentence. Kubo answers
403 to all three alike (no 401), and so does this server.

Unlike Kubo, the header is compared in constant time (``hmac.compare_digest`` of SHA-256 digests,
so not even the length leaks), against every secret, without stopping at the first match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.errors import ConfigError

DENIED = ("Kubo RPC Access Denied: Please provide a valid authorization token as defined in the "
          "API.Authorizations configuration.")
ALWAYS_ALLOWED = "/api/v0/version"
# What a read-only name needs for everything fedledger and an auditor read (KuboStore's get, has,
# iter_dag and pins; ipfs get and dag export): no add, no pin/add, no pin/rm.
READ_ONLY_PATHS = ("/api/v0/cat", "/api/v0/get", "/api/v0/block/get", "/api/v0/block/stat",
                   "/api/v0/dag/export", "/api/v0/pin/ls", "/api/v0/id")
SHAPE = ('{"NAME": {"AuthSecret": "bearer:TOKEN", "AllowedPaths": ["/api/v0/cat", …]}, …} '
         "(Kubo's API.Authorizations)")


def authorization_header(secret: str) -> str:
    """The ``Authorization`` header a Kubo secret stands for (Kubo's ``ConvertAuthSecret``);
    ValueError for a secret of a type Kubo does not know."""
    if not secret:
        raise ValueError("the secret is empty")
    kind, colon, value = secret.partition(":")
    if not colon:
        return "Bearer " + secret
    if kind == "basic":
        if ":" in value:
            return "Basic " + base64.b64encode(value.encode("utf-8")).decode("ascii")
        return "Basic " + value
    if kind == "bearer":
        return "Bearer " + value
    raise ValueError(f"the secret's type {kind!r} is neither bearer nor basic")


def _digest(header: str) -> bytes:
    return hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True)
class Authorization:
    """One name of ``API.Authorizations``: the header its secret stands for (hashed), and its paths."""

    name: str
    header_digest: bytes
    allowed_paths: tuple[str, ...]


class Authorizations:
    """The names a server accepts; :meth:`allows` is the whole check."""

    def __init__(self, entries: list[Authorization]) -> None:
        if not entries:
            raise ConfigError("the authorizations name no one; give at least one name with its AuthSecret and AllowedPaths.")
        self.entries = tuple(entries)

    def __len__(self) -> int:
        return len(self.entries)

    def match(self, header: str | None) -> Authorization | None:
        """The name whose secret ``header`` carries, compared in constant time against every name."""
        given = _digest(header or "")
        found = None
        for entry in self.entries:  # no early exit: the time does not say which name (or whether one) matched
            if hmac.compare_digest(given, entry.header_digest) and found is None:
                found = entry
        return found if header else None

    def allows(self, header: str | None, path: str) -> bool:
        """Whether a request with this ``Authorization`` header may call ``path`` (Kubo's rule)."""
        entry = self.match(header)
        if entry is None:
            return False
        if path == ALWAYS_ALLOWED:
            return True
        return any(path.startswith(prefix) for prefix in entry.allowed_paths)


def parse_authorizations(text: str, *, source: str) -> Authorizations:
    """The authorizations in ``text``: Kubo's ``API.Authorizations`` object (or a whole Kubo config
    holding one); ConfigError naming ``source`` and what to fix."""
    try:
        document: Any = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"{source} is not JSON ({error}); write it as {SHAPE}.") from None
    if isinstance(document, dict) and isinstance(document.get("API"), dict):
        document = document["API"].get("Authorizations")
    if not isinstance(document, dict) or not document:
        raise ConfigError(f"{source} names no authorizations; write it as {SHAPE}.")
    entries: list[Authorization] = []
    seen: dict[bytes, str] = {}
    for name, scope in document.items():
        if not isinstance(scope, dict) or not isinstance(scope.get("AuthSecret"), str):
            raise ConfigError(f"{source}: {name!r} has no AuthSecret text; give it one, as in {SHAPE}.")
        try:
            header = authorization_header(scope["AuthSecret"])
        except ValueError as error:
            raise ConfigError(f"{source}: {name!r}: {error}; write it as bearer:TOKEN or basic:USER:PASSWORD.") from None
        paths = scope.get("AllowedPaths", [])
        if not isinstance(paths, list) or not all(isinstance(path, str) and path.startswith("/api/v0") for path in paths):
            raise ConfigError(f"{source}: {name!r} needs AllowedPaths, a list of RPC paths each starting "
                              "with /api/v0 (\"/api/v0\" allows every call).")
        digest = _digest(header)
        if digest in seen:
            raise ConfigError(f"{source}: {name!r} and {seen[digest]!r} have the same secret; give each name its own.")
        seen[digest] = name
        entries.append(Authorization(name, digest, tuple(paths)))
    return Authorizations(entries)


def load_authorizations(path: Path) -> Authorizations:
    """The authorizations in the file ``path``, refused if other users may read it."""
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the authorizations file {path} ({reason}); give the path of a JSON file as {SHAPE}.") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the authorizations file {path} holds secrets but others may read it "
                          f"(mode {stat.S_IMODE(mode):o}); run `chmod 600 {path}`.")
    return parse_authorizations(text, source=f"the authorizations file {path}")
