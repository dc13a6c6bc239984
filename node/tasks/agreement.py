"""An agreement that names the code every party runs: the task bundle's CID beside the terms.

``fedledger agreement publish TERMS --task CID`` pins the terms file as before, then pins this
document and records ITS CID on chain as the version's terms CID::

    {"format": "fedledger-agreement/1", "task": TASK_CID, "terms": TERMS_CID}   (canonical JSON)

A party's EIP-712 acceptance covers the terms hash, so it covers the task; a new task is a new
agreement version, which every party must accept again before it may submit (the contract's rule).
An agreement published from a plain terms file (any other bytes) names no task.

Reading is strict about a document that claims the format (a JSON object whose ``format`` starts
with ``fedledger-agreement``): it must be exactly the canonical document of this module, or it is an
error, never "no task". Anything else is plain terms. The read is capped: an agreement document is a
few hundred bytes, so larger content is plain terms and is not read whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

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


@dataclass(frozen=True)
class AgreementDocument:
    """What an agreement version names: the task bundle every party runs and the terms file."""

    task: Cid
    terms: Cid

    def to_bytes(self) -> bytes:
        return agreement_document(self.task, self.terms)


def agreement_document(task_cid: str, terms_cid: str) -> bytes:
    """The canonical bytes of the agreement document naming ``task_cid`` and ``terms_cid``."""
    return canonical_json({"format": FORMAT, "task": parse_cid(task_cid), "terms": parse_cid(terms_cid)})


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
            "`fedledger agreement publish TERMS_FILE --task TASK_CID`."
        )

    if claimed != FORMAT:
        raise refuse(f"its format is {claimed!r}, and this fedledger reads {FORMAT!r}")
    if set(document) != _KEYS:
        raise refuse(f"it has the fields {sorted(document)}, not {sorted(_KEYS)}")
    try:
        task, terms = parse_cid(document["task"]), parse_cid(document["terms"])
    except (MalformedCidError, AttributeError, TypeError) as error:
        raise refuse(f"its task or terms is not a CID ({error})") from error
    if agreement_document(task, terms) != bytes(data):
        raise refuse("it is not in canonical form (sorted keys, no whitespace)")
    return AgreementDocument(task=task, terms=terms)


def agreement_task(store: ContentStore, terms_cid: str) -> Cid | None:
    """The task named by the agreement whose terms CID (on chain) is ``terms_cid``; None for plain terms.

    Reads at most MAX_DOCUMENT_BYTES (larger content is plain terms); the store's ContentNotFoundError
    when it lacks the content, InvalidInputError for a malformed agreement document.
    """
    try:
        data = store.get(terms_cid, max_bytes=MAX_DOCUMENT_BYTES)
    except ContentTooLargeError:
        return None
    parsed = parse_agreement(data, source=f"the terms {terms_cid} of the agreement")
    return None if parsed is None else parsed.task
