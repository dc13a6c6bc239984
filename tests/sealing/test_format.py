"""The sealed-update format: the documented layout, one encoding per envelope, nothing else accepted."""

from __future__ import annotations

import dataclasses
import struct

import pytest
from eth_utils import to_canonical_address

from ledger.errors import InvalidInputError
from ledger.sealing import SealContext, seal
from ledger.sealing.errors import TamperedEnvelopeError
from ledger.sealing.format import FIXED_SIZE, MAGIC, NONCE_SIZE, SLOT_SIZE, TAG_SIZE, decode, encode
from tests.sealing.conftest import Party, directory


def test_the_header_is_laid_out_as_documented(parties: list[Party], context: SealContext) -> None:
    sealed = seal(b"seven b", directory(parties), context=context)
    ordered = sorted(parties, key=lambda party: to_canonical_address(party.address))
    assert sealed[:8] == MAGIC == b"\x89FEDSEAL" and sealed[8] == 1
    assert int.from_bytes(sealed[9:41], "big") == 31337
    assert sealed[41:61] == to_canonical_address(context.contract)
    assert int.from_bytes(sealed[61:93], "big") == 3
    assert sealed[93:113] == to_canonical_address(context.sender)
    assert int.from_bytes(sealed[113:121], "big") == 7 and int.from_bytes(sealed[121:123], "big") == 3
    for number, party in enumerate(ordered):
        slot = sealed[FIXED_SIZE + number * SLOT_SIZE :][:SLOT_SIZE]
        assert slot[:20] == to_canonical_address(party.address) and slot[20:52] == party.public_key
    assert len(sealed) == FIXED_SIZE + 3 * SLOT_SIZE + NONCE_SIZE + 7 + TAG_SIZE


def test_a_safetensors_reader_sees_an_impossible_header_length(parties: list[Party], context: SealContext) -> None:
    sealed = seal(b"update", directory(parties), context=context)
    (header_length,) = struct.unpack("<Q", sealed[:8])
    assert header_length > 5 * 10**18 and sealed[8:9] != b"{"


def test_the_same_fields_give_the_same_bytes(parties: list[Party], context: SealContext) -> None:
    sealed = seal(b"update", directory(parties), context=context)
    envelope = decode(sealed)
    rebuilt = dataclasses.replace(envelope, payload=bytes(envelope.payload))
    assert encode(envelope) == encode(rebuilt) == sealed
    assert decode(encode(rebuilt)) == envelope


def test_recipients_out_of_order_are_not_accepted(parties: list[Party], context: SealContext) -> None:
    sealed = seal(b"update", directory(parties[:2]), context=context)
    first, second = (sealed[FIXED_SIZE + i * SLOT_SIZE :][:SLOT_SIZE] for i in range(2))
    swapped = sealed[:FIXED_SIZE] + second + first + sealed[FIXED_SIZE + 2 * SLOT_SIZE :]
    with pytest.raises(TamperedEnvelopeError, match="not in ascending address order or one appears twice"):
        decode(swapped)
    twice = sealed[:FIXED_SIZE] + first + first + sealed[FIXED_SIZE + 2 * SLOT_SIZE :]
    with pytest.raises(TamperedEnvelopeError, match="not in ascending address order or one appears twice"):
        decode(twice)


def test_an_envelope_naming_no_recipient_is_not_accepted(parties: list[Party], context: SealContext) -> None:
    sealed = seal(b"", directory(parties[:1]), context=context)
    none = sealed[:121] + b"\x00\x00" + sealed[FIXED_SIZE + SLOT_SIZE :]
    with pytest.raises(TamperedEnvelopeError, match="names no recipient"):
        decode(none)


def test_the_encoder_refuses_fields_with_no_canonical_form(parties: list[Party], context: SealContext) -> None:
    envelope = decode(seal(b"update", directory(parties), context=context))
    with pytest.raises(ValueError, match="ascending order"):
        encode(dataclasses.replace(envelope, recipients=envelope.recipients[::-1]))
    with pytest.raises(ValueError, match="plaintext length plus the 16-byte tag"):
        encode(dataclasses.replace(envelope, payload=bytes(envelope.payload)[:-1]))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"round_id": -1}, "round id -1 is not an unsigned 256-bit integer"),
        ({"chain_id": 1 << 256}, "chain id .* is not an unsigned 256-bit integer"),
        ({"sender": "alice"}, "is not an Ethereum address"),
    ],
)
def test_a_malformed_context_is_refused(context: SealContext, fields: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        dataclasses.replace(context, **fields)
