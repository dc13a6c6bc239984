"""The two public documents of a secure round, their canonical bytes and strict parsers.

An **advertisement** is what a party publishes before the submission deadline: its round public
key, and for each neighbour (share holder) the share index, the share of its round seed encrypted
to that holder's registered key, and a commitment to the share. A **reveal** is what a surviving
holder publishes after the deadline: the shares it holds of the dropouts' round seeds, in the clear.

Both are canonical JSON (``ledger.canonical_json``), bytes as ``0x``-prefixed lowercase hex::

    {"kind": "fedledger-secagg-advertisement", "version": 1,
     "chain_id": 1, "contract": "0x…", "round_id": 7, "party": "0x…",
     "round_public_key": "0x<64 hex>",
     "shares": [{"holder": "0x…", "index": 1, "encrypted_share": "0x<128 hex>",
                 "commitment": "0x<64 hex>"}, …]}            # ascending holder order

    {"kind": "fedledger-secagg-reveal", "version": 1,
     "chain_id": 1, "contract": "0x…", "round_id": 7, "party": "0x…",
     "shares": [{"owner": "0x…", "index": 3, "share": "0x<32 hex>"}, …]}   # ascending owner order

``from_bytes`` accepts only what ``to_bytes`` writes (so one document has one byte string, and one
CID), and only for the round the caller expects. These checks are about form; whether an
advertisement fits the round's graph, or a revealed share its commitment, is checked in
``ledger.secagg.shares``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.canonical_json import canonical_json
from ledger.errors import InvalidInputError
from ledger.secagg.context import RoundContext, address_order, parse_address
from ledger.secagg.errors import MalformedDocumentError
from ledger.types import Address

ADVERTISEMENT_KIND = "fedledger-secagg-advertisement"
REVEAL_KIND = "fedledger-secagg-reveal"
VERSION = 1
PUBLIC_KEY_SIZE = 32
SHARE_SIZE = 16
ENCRYPTED_SHARE_SIZE = 32 + SHARE_SIZE + 16  # HPKE enc, the share, the AEAD tag
COMMITMENT_SIZE = 32
MAX_SHARES = 1 << 16
MAX_DOCUMENT_BYTES = 64 << 20
_HEX = re.compile(r"0x[0-9a-f]*")


@dataclass(frozen=True)
class ShareSlot:
    """One share a party dealt: to whom, its index, its encryption to the holder, its commitment."""

    holder: Address
    index: int
    encrypted_share: bytes
    commitment: bytes


@dataclass(frozen=True)
class Advertisement:
    """A party's advertisement for one round (see the module docstring)."""

    context: RoundContext
    party: Address
    round_public_key: bytes
    shares: tuple[ShareSlot, ...]

    def slot_of(self, holder: str) -> ShareSlot | None:
        """The slot dealt to ``holder``, or None."""
        return next((slot for slot in self.shares if slot.holder == holder), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": ADVERTISEMENT_KIND,
            "version": VERSION,
            **_context_fields(self.context),
            "party": self.party,
            "round_public_key": _hex(self.round_public_key),
            "shares": [
                {"holder": s.holder, "index": s.index, "encrypted_share": _hex(s.encrypted_share),
                 "commitment": _hex(s.commitment)}
                for s in self.shares
            ],
        }

    def to_bytes(self) -> bytes:
        """The canonical bytes: what is pinned, and what the CID on chain names."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, *, context: RoundContext) -> Advertisement:
        """Parse ``data`` strictly as an advertisement for ``context``; MalformedDocumentError otherwise."""
        document = _load(data, ADVERTISEMENT_KIND, context, "advertisement")
        _keys(document, {"kind", "version", "chain_id", "contract", "round_id", "party", "round_public_key",
                         "shares"}, "advertisement")
        party = _address(document["party"], "advertisement's party")
        key = _bytes(document["round_public_key"], PUBLIC_KEY_SIZE, "advertisement's round public key")
        slots = []
        for entry in _list(document["shares"], "advertisement's shares"):
            _keys(entry, {"holder", "index", "encrypted_share", "commitment"}, "advertisement's share entry")
            slots.append(ShareSlot(
                holder=_address(entry["holder"], "share holder"),
                index=_index(entry["index"]),
                encrypted_share=_bytes(entry["encrypted_share"], ENCRYPTED_SHARE_SIZE, "encrypted share"),
                commitment=_bytes(entry["commitment"], COMMITMENT_SIZE, "share commitment"),
            ))
        _ascending([s.holder for s in slots], "advertisement's shares (by holder)")
        advertisement = cls(context, party, key, tuple(slots))
        _canonical(advertisement.to_bytes(), data, "advertisement")
        return advertisement


@dataclass(frozen=True)
class RevealedShare:
    """One share of a dropout's round seed, in the clear."""

    owner: Address
    index: int
    share: bytes


@dataclass(frozen=True)
class Reveal:
    """A surviving holder's reveal for one round: its shares of the dropouts' round seeds."""

    context: RoundContext
    party: Address
    shares: tuple[RevealedShare, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": REVEAL_KIND,
            "version": VERSION,
            **_context_fields(self.context),
            "party": self.party,
            "shares": [{"owner": s.owner, "index": s.index, "share": _hex(s.share)} for s in self.shares],
        }

    def to_bytes(self) -> bytes:
        """The canonical bytes: what is pinned, and what the CID on chain names."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_bytes(cls, data: bytes, *, context: RoundContext) -> Reveal:
        """Parse ``data`` strictly as a reveal for ``context``; MalformedDocumentError otherwise."""
        document = _load(data, REVEAL_KIND, context, "reveal")
        _keys(document, {"kind", "version", "chain_id", "contract", "round_id", "party", "shares"}, "reveal")
        party = _address(document["party"], "reveal's party")
        shares = []
        for entry in _list(document["shares"], "reveal's shares"):
            _keys(entry, {"owner", "index", "share"}, "reveal's share entry")
            shares.append(RevealedShare(
                owner=_address(entry["owner"], "share owner"),
                index=_index(entry["index"]),
                share=_bytes(entry["share"], SHARE_SIZE, "revealed share"),
            ))
        _ascending([s.owner for s in shares], "reveal's shares (by owner)")
        reveal = cls(context, party, tuple(shares))
        _canonical(reveal.to_bytes(), data, "reveal")
        return reveal


def by_party(advertisements: Mapping[str, Advertisement]) -> dict[Address, Advertisement]:
    """``advertisements`` keyed by checksummed party; InvalidInputError when a key is not its document's party."""
    indexed = {}
    for key, advertisement in advertisements.items():
        if key != advertisement.party and parse_address(key, "advertising party") != advertisement.party:
            raise InvalidInputError(
                f"the advertisement given for {key} is {advertisement.party}'s; key each advertisement by its party."
            )
        indexed[advertisement.party] = advertisement
    return indexed


def _context_fields(context: RoundContext) -> dict[str, Any]:
    return {"chain_id": context.chain_id, "contract": context.contract, "round_id": context.round_id}


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _malformed(what: str, why: str) -> MalformedDocumentError:
    return MalformedDocumentError(
        f"the {what} is malformed ({why}); reject it: its publisher must publish it again as fedledger writes it."
    )


def _load(data: bytes, kind: str, context: RoundContext, what: str) -> dict[str, Any]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _malformed(what, "not bytes")
    if len(data) > MAX_DOCUMENT_BYTES:
        raise _malformed(what, f"{len(data)} bytes, more than {MAX_DOCUMENT_BYTES}")
    try:
        document = json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise _malformed(what, "not UTF-8 JSON") from None
    if not isinstance(document, dict):
        raise _malformed(what, "not a JSON object")
    if document.get("kind") != kind:
        raise _malformed(what, f'its kind is {document.get("kind")!r}, not "{kind}"')
    if document.get("version") != VERSION or isinstance(document.get("version"), bool):
        raise _malformed(what, f"version {document.get('version')!r}; this fedledger reads version {VERSION}")
    found = (document.get("chain_id"), document.get("contract"), document.get("round_id"))
    if found != (context.chain_id, context.contract, context.round_id):
        raise MalformedDocumentError(
            f"the {what} is for round {found[2]!r} of contract {found[1]!r} on chain {found[0]!r}, not for "
            f"{context.describe()}; reject it: a document of one round does not serve another."
        )
    return document


def _keys(entry: object, expected: set[str], what: str) -> None:
    if not isinstance(entry, dict):
        raise _malformed(what, "not a JSON object")
    if set(entry) != expected:
        extra, lacking = sorted(set(entry) - expected), sorted(expected - set(entry))
        raise _malformed(what, "; ".join(filter(None, (
            extra and f"unknown key(s) {', '.join(extra)}", lacking and f"missing {', '.join(lacking)}"))))


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_SHARES:
        raise _malformed(what, f"not a list of at most {MAX_SHARES} entries")
    return value


def _address(value: object, what: str) -> Address:
    try:
        address = parse_address(value, what)
    except InvalidInputError:
        raise _malformed(what, f"{value!r} is not an address") from None
    if address != value:
        raise _malformed(what, f"{value!r} is not written checksummed")
    return address


def _index(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < MAX_SHARES:
        raise _malformed("share index", f"{value!r} is not a whole number from 1 to {MAX_SHARES - 1}")
    return value


def _bytes(value: object, size: int, what: str) -> bytes:
    if not isinstance(value, str) or not _HEX.fullmatch(value) or len(value) != 2 + 2 * size:
        raise _malformed(what, f"not 0x and {2 * size} lowercase hex digits")
    return bytes.fromhex(value[2:])


def _ascending(addresses: list[Address], what: str) -> None:
    raw = [address_order(a) for a in addresses]
    if any(a >= b for a, b in zip(raw, raw[1:])):
        raise _malformed(what, "entries not in strictly ascending address order")


def _canonical(encoded: bytes, data: bytes, what: str) -> None:
    if encoded != bytes(data):
        raise _malformed(what, "not in canonical form: keys sorted, no spaces, entries in ascending address order")
