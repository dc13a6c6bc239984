"""The content store behind Kubo's RPC API (a real ``ipfs daemon`` or ``fedledger ipfs serve``).

The client is ``ipfshttpclient.Client`` built directly: ``ipfshttpclient.connect()`` refuses
every Kubo newer than 0.8. Content is always added with Kubo's CIDv1 defaults (raw leaves,
256 KiB chunks) so this backend and the embedded one name the same bytes alike, and nothing
the API returns is trusted: the CID of every add and the bytes of every read are recomputed
here.

A store whose API asks for a secret (Kubo's ``API.Authorizations``, or ``ipfs serve --auth-file``)
gets it from ``$FEDLEDGER_STORE_AUTH`` (``bearer:TOKEN`` or ``basic:USER:PASSWORD``, as Kubo's own
``--api-auth`` takes it): it is sent as the ``Authorization`` header of every call, and never
written to ``fedledger.toml``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ipfshttpclient
import requests
from ipfshttpclient import exceptions as ipfs_errors

from ledger.ipfs.auth import authorization_header
from ledger.ipfs.cid import cid_to_bytes, parse_cid, read_cid
from ledger.errors import (
    ConfigError,
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    StoreError,
    StoreUnreachableError,
)
from ledger.types import Cid
from ledger.ipfs.unixfs import cid_of_bytes, cid_of_stream, walk_dag

T = TypeVar("T")
_ADD_OPTIONS = {"cid-version": 1, "raw-leaves": True, "chunker": "size-262144"}
_UPLOAD_PIECE = 256 * 1024  # upload pieces (ipfshttpclient sends 8 KiB by default: 13,000 HTTP chunks per 100 MiB)
_NOT_FOUND = ("not found", "not in the store", "no link named", "could not resolve")
_TAMPERED = ("does not hash", "integrity")
AUTH_ENV = "FEDLEDGER_STORE_AUTH"


def store_auth_from_env() -> str | None:
    """The store's secret from ``$FEDLEDGER_STORE_AUTH`` (None when unset or empty)."""
    return os.environ.get(AUTH_ENV, "").strip() or None


def api_multiaddr(api: str) -> str:
    """``/ip4/127.0.0.1/tcp/5001`` stays as it is; ``http://host:port`` becomes its multiaddr."""
    api = api.strip()
    if api.startswith("/"):
        return api
    parts = urlsplit(api if "://" in api else f"http://{api}")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise ConfigError(
            f"{api!r} is not an IPFS API address; give one like /ip4/127.0.0.1/tcp/5001 or http://127.0.0.1:5001."
        )
    host = parts.hostname
    try:
        kind = "ip6" if ipaddress.ip_address(host).version == 6 else "ip4"
    except ValueError:
        kind = "dns"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"/{kind}/{host}/tcp/{port}/{parts.scheme}"


class KuboStore:
    """Kubo's RPC API at ``api`` (a multiaddr or an http URL)."""

    def __init__(self, api: str, *, timeout: float = 120.0, auth: str | None = None) -> None:
        """``auth``: a Kubo secret (``bearer:TOKEN``, ``basic:USER:PASSWORD``) sent with every call."""
        self.api = api
        headers = {}
        if auth:
            try:
                headers["Authorization"] = authorization_header(auth)
            except ValueError as error:
                raise ConfigError(f"the store secret (${AUTH_ENV}) is not usable: {error}; "
                                  "give bearer:TOKEN or basic:USER:PASSWORD.") from None
        try:
            self._client = ipfshttpclient.Client(api_multiaddr(api), timeout=timeout, chunk_size=_UPLOAD_PIECE,
                                                 headers=headers)
        except ipfs_errors.AddressError as error:
            raise ConfigError(
                f"{api!r} is not an IPFS API address; give one like /ip4/127.0.0.1/tcp/5001 or http://127.0.0.1:5001."
            ) from error

    def __repr__(self) -> str:
        return f"KuboStore({self.api!r})"

    def _call(self, what: str, cid: str | None, call: Callable[[], T]) -> T:
        """Run one API call, turning the client's exceptions into fedledger's sentences."""
        try:
            with warnings.catch_warnings():
                # urllib3 2 warns about a parameter ipfshttpclient 0.7 still passes: noise to users.
                warnings.filterwarnings("ignore", "The 'strict' parameter", FutureWarning)
                return call()
        except (ipfs_errors.ConnectionError, ipfs_errors.TimeoutError) as error:
            raise StoreUnreachableError(
                f"no IPFS API answers at {self.api}; start one with `fedledger ipfs serve` or `ipfs daemon`, "
                "or point --ipfs-api (or store.api in fedledger.toml) at a running one."
            ) from error
        except ipfs_errors.ErrorResponse as error:
            message = str(error.args[0] if error.args else error)
            lowered = message.lower()
            if cid is not None and any(word in lowered for word in _NOT_FOUND):
                raise ContentNotFoundError(
                    f"content {cid} is not in the IPFS store at {self.api}; add it there, or fetch it from the store that pinned it."
                ) from error
            if cid is not None and any(word in lowered for word in _TAMPERED):
                raise IntegrityError(
                    f"content {cid} failed verification at the IPFS store at {self.api} ({message.rstrip('.')}); "
                    "repair that store or add the content again."
                ) from error
            raise StoreError(f"the IPFS API at {self.api} refused to {what}: {message}") from error
        except ipfs_errors.StatusError as error:
            status = getattr(getattr(error.original, "response", None), "status_code", None)
            if status in (401, 403):
                raise StoreError(
                    f"the IPFS API at {self.api} denied access to {what} ({status}); set ${AUTH_ENV} to a secret "
                    "it allows for that (bearer:TOKEN or basic:USER:PASSWORD, as named in its API.Authorizations)."
                ) from error
            raise StoreError(f"the IPFS API at {self.api} failed to {what} ({error}); check that it is a Kubo RPC API.") from error
        except (ipfs_errors.ProtocolError, requests.RequestException) as error:
            # The connection dropped before or during the answer (requests raises the latter itself).
            raise StoreError(
                f"the IPFS API at {self.api} broke off while asked to {what} ({error.args[0] if error.args else error}); "
                "check that it is still running (restart it if it stopped) and try again."
            ) from error
        except ipfs_errors.Error as error:
            raise StoreError(f"the IPFS API at {self.api} failed to {what} ({error}); check that it is a Kubo RPC API.") from error

    def _check_added(self, returned: Any, expected: Cid) -> Cid:
        if returned != expected:
            raise IntegrityError(
                f"the IPFS API at {self.api} named the added content {returned} but its CID is {expected}; "
                "it does not add like `ipfs add --cid-version=1`, use a Kubo daemon or `fedledger ipfs serve`."
            )
        return expected

    # -- ContentStore -----------------------------------------------------------------------
    def add_bytes(self, data: bytes, *, pin: bool = True) -> Cid:
        data = bytes(data)
        options = {**_ADD_OPTIONS, "pin": pin}
        returned = self._call("add content", None, lambda: self._client.add_bytes(data, opts=options))
        return self._check_added(returned, cid_of_bytes(data))

    def add_file(self, path: Path | str, *, pin: bool = True) -> Cid:
        path = Path(path)
        if not path.is_file():
            raise StoreError(f"{path} is not a file; give the path of a file to add.")
        # add() overwrites `opts` with its own keyword defaults (raw-leaves=False): use its keywords.
        response = self._call("add content", None, lambda: self._client.add(
            str(path), cid_version=1, raw_leaves=True, chunker="size-262144", pin=pin))
        with path.open("rb") as stream:
            expected = cid_of_stream(stream)
        return self._check_added(response["Hash"], expected)

    def get(self, cid: str, *, max_bytes: int | None = None) -> bytes:
        cid = parse_cid(cid)
        length = None if max_bytes is None else max_bytes + 1  # one byte more shows it is too large
        data = self._call(f"read {cid}", cid, lambda: self._client.cat(cid, length=length))
        if max_bytes is not None and len(data) > max_bytes:
            raise ContentTooLargeError(
                f"content {cid} at the IPFS API {self.api} is more than the {max_bytes} bytes expected; it was not read."
            )
        if cid_of_bytes(data) != cid:
            raise IntegrityError(
                f"content {cid} from the IPFS API at {self.api} does not hash to its CID; "
                "the store there is damaged or lying, so the bytes were refused."
            )
        return bytes(data)

    def has(self, cid: str) -> bool:
        cid = parse_cid(cid)
        try:
            self._call(f"look up {cid}", cid, lambda: self._client.block.stat(cid, offline=True))
        except ContentNotFoundError:
            return False
        return True

    def pin(self, cid: str) -> None:
        cid = parse_cid(cid)
        self._call(f"pin {cid}", cid, lambda: self._client.pin.add(cid))

    def unpin(self, cid: str) -> None:
        cid = parse_cid(cid)
        try:
            self._call(f"unpin {cid}", cid, lambda: self._client.pin.rm(cid))
        except StoreError as error:
            if "not pinned" in str(error):
                raise ContentNotFoundError(f"{cid} is not pinned at the IPFS API at {self.api}; nothing to unpin.") from error
            raise

    def pins(self) -> list[Cid]:
        listing = self._call("list pins", None, lambda: self._client.pin.ls(type="recursive"))
        # Kubo leaves "Keys" out when nothing is pinned; a CIDv0 pin is listed as Qm…: name it canonically.
        return sorted({read_cid(cid) for cid in dict(listing.get("Keys") or {})})

    def iter_dag(self, cid: str) -> Iterator[tuple[str, bytes]]:
        """Every block of ``cid``'s DAG once via ``block/get``, checked, in ``ipfs dag export``'s order."""
        cid = parse_cid(cid)
        return walk_dag(cid, lambda block: self._checked_block(block, cid))

    def _checked_block(self, block: Cid, root: Cid) -> bytes:
        data = bytes(self._call(f"read block {block}", block, lambda: self._client.block.get(block)))
        if hashlib.sha256(data).digest() != cid_to_bytes(block)[4:]:
            raise IntegrityError(
                f"block {block} of content {root} from the IPFS API at {self.api} does not hash to its CID; "
                "the store there is damaged or lying, so the bytes were refused."
            )
        return data

    def version(self) -> dict[str, Any]:
        """Kubo's version document (also a cheap reachability check)."""
        return dict(self._call("report its version", None, lambda: self._client.version()))
