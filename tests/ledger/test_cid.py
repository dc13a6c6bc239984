"""CID text/binary forms: known Kubo CIDs round-trip, anything else is refused with the user's text."""

import hashlib

import pytest

from ledger.ipfs.cid import (
    DAG_PB,
    RAW,
    cid_codec,
    cid_digest,
    cid_from_bytes,
    cid_from_parts,
    cid_to_bytes,
    parse_cid,
)
from ledger.errors import MalformedCidError

HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # Kubo: `hello world`
ZEROS_1MIB = "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"  # Kubo: 1 MiB of zeros


def test_known_cids_round_trip_through_binary_and_parts():
    for cid in (HELLO, ZEROS_1MIB):
        binary = cid_to_bytes(cid)
        assert len(binary) == 36
        assert cid_from_bytes(binary) == cid
        assert cid_from_parts(cid_codec(cid), cid_digest(cid)) == cid


def test_raw_cid_digest_is_the_sha256_of_the_content_and_codecs_differ_by_size():
    assert cid_codec(HELLO) == RAW
    assert cid_digest(HELLO) == hashlib.sha256(b"hello world").digest()
    assert cid_codec(ZEROS_1MIB) == DAG_PB


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG", "CIDv0"),
        ("zdj7WhuEjrB52m1BisYCtmjH1hSKa7yZ3jEZ9JcXaFRD51wVz", "not base32"),
        ("bafxyz", "not a CIDv1"),
        (HELLO.upper(), "not base32"),
        (HELLO[:-1], "invalid base32"),
        (HELLO[:-8], "not a CIDv1"),
    ],
)
def test_malformed_cids_are_refused_naming_the_text_given(text, why):
    with pytest.raises(MalformedCidError) as caught:
        parse_cid(text)
    assert repr(text) in str(caught.value)
    assert why in str(caught.value)


def test_parts_refuse_unknown_codec_and_short_digest():
    with pytest.raises(MalformedCidError, match="codec 0x71"):
        cid_from_parts(0x71, bytes(32))
    with pytest.raises(MalformedCidError, match="32 bytes"):
        cid_from_parts(RAW, bytes(31))
