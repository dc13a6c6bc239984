"""Advertisements and reveals: canonical bytes, and a strict parser that refuses any damage."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ledger.secagg import (
    Advertisement,
    Reveal,
    RoundContext,
    check_advertisement,
    shares_to_reveal,
    valid_advertisements,
)
from ledger.secagg.errors import InvalidAdvertisementError, MalformedDocumentError
from tests.secagg.conftest import CONTRACT, SecureRound


def a_reveal(five: SecureRound) -> Reveal:
    cohort = list(five.params.cohort)
    survivors = cohort[:2] + cohort[3:]
    return shares_to_reveal(five.params, five.context, holder=cohort[0], long_term_key=five.long_term[cohort[0]],
                            advertisements=five.advertisements, submitted=survivors, dropouts=[cohort[2]])


def test_advertisements_and_reveals_round_trip_through_their_canonical_bytes(five: SecureRound) -> None:
    for advertisement in five.advertisements.values():
        data = advertisement.to_bytes()
        assert Advertisement.from_bytes(data, context=five.context) == advertisement
        check_advertisement(five.params, five.context, advertisement)
    reveal = a_reveal(five)
    assert len(reveal.shares) == 1
    assert Reveal.from_bytes(reveal.to_bytes(), context=five.context) == reveal


def edits(data: bytes) -> list[tuple[str, bytes]]:
    """Damaged variants of a canonical document, each with what must be named."""
    document = json.loads(data)
    out = [("not UTF-8 JSON", data[:-1]), ("not UTF-8 JSON", b"\xff" + data), ("not a JSON object", b"[]")]

    def variant(why: str, change) -> None:
        copy = json.loads(data)
        change(copy)
        out.append((why, json.dumps(copy, sort_keys=True, separators=(",", ":")).encode()))

    variant("unknown key(s) extra", lambda d: d.update(extra=1))
    variant("missing party", lambda d: d.pop("party"))
    variant("its kind is", lambda d: d.update(kind="fedledger-secagg-other"))
    variant("version 2", lambda d: d.update(version=2))
    variant("is for round 8", lambda d: d.update(round_id=8))
    variant("is not written checksummed", lambda d: d.update(party=d["party"].lower()))
    variant("is not an address", lambda d: d.update(party="0x12"))
    entry = "encrypted_share" if "round_public_key" in document else "share"
    variant("lowercase hex digits", lambda d: d["shares"][0].update({entry: d["shares"][0][entry].upper().replace("0X", "0x")}))
    variant("lowercase hex digits", lambda d: d["shares"][0].update({entry: d["shares"][0][entry][:-2]}))
    variant("is not a whole number", lambda d: d["shares"][0].update(index=0))
    variant("is not a whole number", lambda d: d["shares"][0].update(index=True))
    variant("not a list", lambda d: d.update(shares={}))
    if len(document["shares"]) > 1:
        variant("strictly ascending address order", lambda d: d["shares"].reverse())
    out.append(("not in canonical form", json.dumps(document, sort_keys=True, indent=1).encode()))
    out.append(("not in canonical form", data.replace(b'{"', b'{"party":"' + document["party"].encode() + b'","', 1)))
    return out


def test_damaged_advertisements_are_refused_with_what_is_wrong(five: SecureRound) -> None:
    data = next(iter(five.advertisements.values())).to_bytes()
    for why, damaged in edits(data):
        with pytest.raises(MalformedDocumentError, match="reject it") as caught:
            Advertisement.from_bytes(damaged, context=five.context)
        assert why in str(caught.value), (why, str(caught.value))


def test_damaged_reveals_are_refused_with_what_is_wrong(five: SecureRound) -> None:
    data = a_reveal(five).to_bytes()
    for why, damaged in edits(data):
        with pytest.raises(MalformedDocumentError, match="reject it") as caught:
            Reveal.from_bytes(damaged, context=five.context)
        assert why in str(caught.value), (why, str(caught.value))


def test_a_document_of_another_round_serves_nothing(five: SecureRound) -> None:
    advertisement = next(iter(five.advertisements.values()))
    other = RoundContext(five.context.chain_id, CONTRACT, five.context.round_id + 1)
    with pytest.raises(MalformedDocumentError, match=f"not for {other.describe()}"):
        Advertisement.from_bytes(advertisement.to_bytes(), context=other)
    with pytest.raises(InvalidAdvertisementError, match="reject it"):
        check_advertisement(five.params, other, advertisement)


def test_an_advertisement_that_deals_to_other_holders_is_refused(five: SecureRound) -> None:
    advertisement = next(iter(five.advertisements.values()))
    first, second = advertisement.shares[:2]
    swapped = dataclasses.replace(advertisement, shares=(dataclasses.replace(first, index=2),
                                                         dataclasses.replace(second, index=1),
                                                         *advertisement.shares[2:]))
    with pytest.raises(InvalidAdvertisementError, match="not to its neighbours"):
        check_advertisement(five.params, five.context, swapped)
    dropped = dataclasses.replace(advertisement, shares=advertisement.shares[1:])
    with pytest.raises(InvalidAdvertisementError, match="not to its neighbours"):
        check_advertisement(five.params, five.context, dropped)
    low_order = dataclasses.replace(advertisement, round_public_key=bytes(32))
    with pytest.raises(InvalidAdvertisementError, match="not a 32-byte X25519 public key"):
        check_advertisement(five.params, five.context, low_order)
    low_order = dataclasses.replace(advertisement, round_public_key=(1).to_bytes(32, "little"))
    with pytest.raises(InvalidAdvertisementError, match="low-order X25519 point"):
        check_advertisement(five.params, five.context, low_order)


def test_every_reader_sorts_the_published_advertisements_into_valid_and_rejected_alike(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    published = dict(five.advertisements)
    published[cohort[1]] = dataclasses.replace(published[cohort[1]], shares=published[cohort[1]].shares[1:])
    published[cohort[2]] = published[cohort[3]]  # someone else's document under cohort[2]'s name
    valid, rejected = valid_advertisements(five.params, five.context, published)
    assert sorted(valid) == sorted([cohort[0], cohort[3], cohort[4]])
    assert "not to its neighbours" in rejected[cohort[1]]
    assert f"the advertisement published for {cohort[2]} is {cohort[3]}'s" in rejected[cohort[2]]
