"""An agreement that names the code every party runs: the task bundle's CID beside the terms.

``fedledger agreement publish TERMS --task CID`` pins the terms file as before, then pins this
document and records ITS CID on chain as the version's terms CID::

    {"format": "fedledger-agreement/1", "task": TASK_CID, "terms": TERMS_CID}   (canonical JSON)

A party's EIP-712 acceptance covers the terms hash, so it covers the task; a new task is a new
agreement version, which every party must accept again before it may submit (the contract's rule).
An agreement published from a plain terms file (any other bytes) names no task.

``--flower-app FAB_FILE`` adds the Flower App Bundle the parties run on Flower's Deployment Engine:
its sha256 as ``flwr build`` computes it (of the .fab file's bytes, the hash Flower names a run's FAB
by) and the CID it is pinned under, so any party can read the exact code::

    {"flower_app": {"cid": FAB_CID, "sha256": HEX}, "format": "fedledger-agreement/1", "task": TASK_CID, "terms": TERMS_CID}

Either ``task`` or ``flower_app`` may be absent (not both); a document without ``flower_app`` has the
same bytes as before it existed.

Reading is strict about a document that claims the format (a JSON object whose ``format`` starts
with ``fedledger-agreement``): it must be exactly the canonical document of this module, or it is an
error, never "no task". Anything else is plain terms. The read is capped: an agreement document is a
few hundred bytes, so larger content is plain terms and is not read whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ledger.canonical_json import canonical_json
from ledger.errors import ContentTooLargeError, InvalidInputError, MalformedCidError
from ledger.ipfs.cid import parse_cid
from ledger.ipfs.store import ContentStore
from ledger.types import Cid

FORMAT = "fedledger-agreement/1"
FORMAT_PREFIX = "fedledger-agreement"
MAX_DOCUMENT_BYTES = 4096
"""The most bytes read to decide whether terms are an agreement document (one is ~200 bytes)."""
_KEYS = {"format", "task", "terms"}
_OPTIONAL = {"task", "flower_app"}
_FLOWER_APP_KEYS = {"sha256", "cid"}
_HEX = frozenset("0123456789abcdef")


def is_sha256_hex(value: object) -> bool:
    """Whether ``value`` is a sha256 digest as ``flwr build`` prints it: 64 lowercase hex digits."""
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


@dataclass(frozen=True)
class FlowerApp:
    """A Flower App Bundle named by an agreement: the .fab file's sha256 (hex) and the CID it is pinned under."""

    sha256: str
    cid: Cid


def read_flower_app(path: Path) -> bytes:
    """The bytes of the FAB file at ``path``; InvalidInputError (one sentence) when it is not a Flower App Bundle:
    a zip holding ``.info/CONTENT`` (Flower's manifest of file hashes) and ``pyproject.toml``, as ``flwr build`` writes."""
    if not path.is_file():
        raise InvalidInputError(f"no FAB file at {path}; give the .fab file that `flwr build` wrote.")
    data = path.read_bytes()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError) as error:
        raise InvalidInputError(f"{path} is not a Flower App Bundle (not a zip file: {error}); "
                                "give the .fab file that `flwr build` wrote.") from None
    missing = sorted({".info/CONTENT", "pyproject.toml"} - names)
    if missing:
        raise InvalidInputError(f"{path} is a zip file but not a Flower App Bundle (it lacks {', '.join(missing)}); "
                                "give the .fab file that `flwr build` wrote.")
    return data


def fab_sha256(data: bytes) -> str:
    """The FAB's hash as ``flwr build`` computes it (and Flower names a run's FAB by): sha256 of the file's bytes."""
    return hashlib.sha256(bytes(data)).hexdigest()


@dataclass(frozen=True)
class AgreementDocument:
    """What an agreement version names: the task bundle every party runs and the terms file."""

    task: Cid | None
    terms: Cid
    flower_app: FlowerApp | None = None

    def to_bytes(self) -> bytes:
        return agreement_document(self.task, self.terms, flower_app=self.flower_app)


def agreement_document(task_cid: str | None, terms_cid: str, *, flower_app: FlowerApp | None = None) -> bytes:
    """The canonical bytes of the agreement document naming ``task_cid`` (or no task), ``terms_cid`` and the
    Flower App Bundle ``flower_app`` (or none); at least one of the task and the FAB."""
    if task_cid is None and flower_app is None:
        raise InvalidInputError("an agreement document names a task, a Flower app or both; give --task or --flower-app.")
    document: dict[str, object] = {"format": FORMAT, "terms": parse_cid(terms_cid)}
    if task_cid is not None:
        document["task"] = parse_cid(task_cid)
    if flower_app is not None:
        if not is_sha256_hex(flower_app.sha256):
            raise InvalidInputError(f"the Flower app's sha256 {flower_app.sha256!r} is not 64 lowercase hex digits.")
        document["flower_app"] = {"cid": parse_cid(flower_app.cid), "sha256": flower_app.sha256}
    return canonical_json(document)


def parse_agreement(data: bytes, *, source: str = "the agreement document") -> AgreementDocument | None:
    """The document in ``data``; None when ``data`` are plain terms; InvalidInputError when it claims the
    format but is not exactly a canonical agreement document."""
    try:
        document = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(document, dict):
        return None
    claimed = document.get("format")
    if not (isinstance(claimed, str) and claimed.startswith(FORMAT_PREFIX)):
        return None

    def refuse(why: str) -> InvalidInputError:
        return InvalidInputError(
            f"{source} claims to be a fedledger agreement document but {why}; publish the agreement again with "
            "`fedledger agreement publish TERMS_FILE --task TASK_CID` (or --flower-app FAB_FILE)."
        )

    if claimed != FORMAT:
        raise refuse(f"its format is {claimed!r}, and this fedledger reads {FORMAT!r}")
    if not (_KEYS - _OPTIONAL <= set(document) <= _KEYS | _OPTIONAL) or not set(document) & _OPTIONAL:
        raise refuse(f"it has the fields {sorted(document)}, not format, terms and task, flower_app or both")
    try:
        task = parse_cid(document["task"]) if "task" in document else None
        terms = parse_cid(document["terms"])
    except (MalformedCidError, AttributeError, TypeError) as error:
        raise refuse(f"its task or terms is not a CID ({error})") from error
    flower_app = None
    if "flower_app" in document:
        named = document["flower_app"]
        if not isinstance(named, dict) or set(named) != _FLOWER_APP_KEYS:
            raise refuse(f"its flower_app is {named!r}, not an object with exactly the fields cid and sha256")
        if not is_sha256_hex(named["sha256"]):
            raise refuse(f"its flower_app sha256 {named['sha256']!r} is not 64 lowercase hex digits")
        try:
            flower_app = FlowerApp(sha256=named["sha256"], cid=parse_cid(named["cid"]))
        except (MalformedCidError, AttributeError, TypeError) as error:
            raise refuse(f"its flower_app cid is not a CID ({error})") from error
    if agreement_document(task, terms, flower_app=flower_app) != bytes(data):
        raise refuse("it is not in canonical form (sorted keys, no whitespace)")
    return AgreementDocument(task=task, terms=terms, flower_app=flower_app)


def read_agreement(store: ContentStore, terms_cid: str) -> AgreementDocument | None:
    """The agreement document whose CID (on chain, the version's terms) is ``terms_cid``; None for plain terms.

    Reads at most MAX_DOCUMENT_BYTES (larger content is plain terms); the store's ContentNotFoundError
    when it lacks the content, InvalidInputError for a malformed agreement document.
    """
    try:
        data = store.get(terms_cid, max_bytes=MAX_DOCUMENT_BYTES)
    except ContentTooLargeError:
        return None
    return parse_agreement(data, source=f"the terms {terms_cid} of the agreement")


def agreement_task(store: ContentStore, terms_cid: str) -> Cid | None:
    """The task named by the agreement whose terms CID (on chain) is ``terms_cid``; None for plain terms
    (or a document that names only a Flower app). Errors as ``read_agreement``."""
    parsed = read_agreement(store, terms_cid)
    return None if parsed is None else parsed.task
