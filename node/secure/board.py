"""What the chain and the store say about a secure round: the advertisements that count, the reveals.

Every party, the aggregator and the auditor read the same board, so they agree on who masks with
whom and whose masks must be removed. An advertisement counts when it is its party's first, the
party is in the cohort, the block that recorded it is stamped at or before the key deadline, and its
document is a well-formed advertisement for this round; anything else is listed in ``ignored`` with
the reason. A reveal counts when it is its party's first (the contract takes reveals only after the
deadline and only from parties that submitted); one whose document is damaged is ignored likewise.
A party's later messages of a kind are dropped by ``FederationClient.round_messages`` itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.chain.federation import FederationClient
from ledger.contract_constants import RoundMessageKind
from ledger.errors import ContentTooLargeError, IntegrityError, InvalidInputError
from ledger.ipfs.store import ContentStore
from ledger.secagg.context import RoundContext
from ledger.secagg.documents import MAX_DOCUMENT_BYTES, Advertisement, Reveal
from ledger.secagg.shares import valid_advertisements
from ledger.types import Address
from node.secure.settings import SecureRound


@dataclass(frozen=True)
class PostedDocument:
    """One counted message: its party, the CID of its document, and the block that recorded it."""

    party: Address
    cid: str
    block: int


@dataclass
class RoundBoard:
    """A secure round's public record, as every reader of it sees it."""

    context: RoundContext
    settings: SecureRound
    advertisements: dict[Address, Advertisement] = field(default_factory=dict)
    advertised: dict[Address, PostedDocument] = field(default_factory=dict)
    reveals: dict[Address, Reveal] = field(default_factory=dict)
    revealed: dict[Address, PostedDocument] = field(default_factory=dict)
    ignored: list[tuple[Address, str, str]] = field(default_factory=list)  # (party, cid, why)

    @property
    def all_advertised(self) -> bool:
        """Every cohort member's advertisement is in: nobody else can join the key phase."""
        return set(self.advertisements) == set(self.settings.params.cohort)


def round_context(federation: FederationClient, round_id: int) -> RoundContext:
    """The context every derivation of ``round_id`` is bound to: this chain, this deployment, this round, and
    as the neighbour graph's beacon the hash of the block that opened the round (fixed only after the cohort
    was, so nobody could have ground addresses to land around a victim)."""
    opened = federation.round(round_id).opened_block
    beacon = bytes(federation.w3.eth.get_block(opened)["hash"])
    return RoundContext(chain_id=int(federation.w3.eth.chain_id), contract=federation.address, round_id=round_id,
                        beacon=beacon)


def read_board(federation: FederationClient, store: ContentStore, round_id: int, settings: SecureRound) -> RoundBoard:
    """The round's counted advertisements and reveals, from its messages on chain and their documents in ``store``.

    A document the store does not hold raises ContentNotFoundError (a fact about this store, not the
    party's fault: fetch it and read again)."""
    board = RoundBoard(context=round_context(federation, round_id), settings=settings)
    stamps: dict[int, int] = {}
    candidates: dict[str, tuple[Advertisement, PostedDocument]] = {}
    for message in federation.round_messages(round_id):  # the first per party and kind: a later one never counts
        party = Address(message.party)
        if message.kind == RoundMessageKind.ADVERTISE:
            if message.block_number not in stamps:
                stamps[message.block_number] = int(federation.w3.eth.get_block(message.block_number)["timestamp"])
            if stamps[message.block_number] > settings.key_deadline:
                board.ignored.append((party, message.cid, f"recorded in a block stamped {stamps[message.block_number]}, "
                                                          f"after the key deadline {settings.key_deadline}"))
                continue
            try:
                advertisement = Advertisement.from_bytes(_document(store, message.cid), context=board.context)
            except InvalidInputError as error:
                board.ignored.append((party, message.cid, str(error)))
                continue
            candidates[party] = (advertisement, PostedDocument(party, message.cid, message.block_number))
        else:
            why = _reveal_problem(store, board, message)
            if why is not None:
                board.ignored.append((party, message.cid, why))
    valid, rejected = valid_advertisements(settings.params, board.context, {p: ad for p, (ad, _) in candidates.items()})
    for party, advertisement in valid.items():
        board.advertisements[party] = advertisement
        board.advertised[party] = candidates[party][1]
    for party, why in rejected.items():
        board.ignored.append((Address(party), candidates[party][1].cid, why))
    return board


def _reveal_problem(store: ContentStore, board: RoundBoard, message) -> str | None:  # noqa: ANN001
    party = Address(message.party)
    try:
        reveal = Reveal.from_bytes(_document(store, message.cid), context=board.context)
    except InvalidInputError as error:
        return str(error)
    if reveal.party != party:
        return f"the reveal names {reveal.party}, not its poster"
    board.reveals[party] = reveal
    board.revealed[party] = PostedDocument(party, message.cid, message.block_number)
    return None


def _document(store: ContentStore, cid: str) -> bytes:
    try:
        return store.get(cid, max_bytes=MAX_DOCUMENT_BYTES)
    except ContentTooLargeError:
        raise InvalidInputError(f"the document {cid} is larger than {MAX_DOCUMENT_BYTES} bytes; not read") from None
    except IntegrityError:
        raise InvalidInputError(f"the document {cid} does not hash to its CID (altered in the store)") from None
