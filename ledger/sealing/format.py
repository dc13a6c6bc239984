"""The sealed-update byte format: its layout, its one canonical encoding, and a strict parser.

Version 1, every integer unsigned big-endian, every field fixed width::

    offset       size     field
    0            8        magic b"\\x89FEDSEAL"
    8            1        format version: 1
    9            32       chain id
    41           20       contract address
    61           32       round id
    93           20       sender: the participant whose update this is
    113          8        plaintext length L
    121          2        recipient count n, at least 1
    123          132 * n  recipients, in ascending address order, no address twice, each
                            address (20) | X25519 public key (32) |
                            wrapped content key (80: HPKE enc 32 | sealed key 32 | tag 16)
    H = 123+132n 12       payload nonce
    H + 12       L + 16   payload: ChaCha20-Poly1305 ciphertext of the update, then its tag

Bytes ``[0, H)`` are the header; ``ledger.sealing.envelope`` explains what each piece of
cryptography binds. Version 1 fixes the suite: HPKE (RFC 9180) base mode with
DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and ChaCha20-Poly1305 wraps the content key;
ChaCha20-Poly1305 carries the payload. Another suite would be another version.

Not a safetensors file, by construction: safetensors starts with its JSON header's length as a
little-endian u64, then ``{``. Read that way the magic is 5.49e18 bytes, and byte 8 is 0x01.

Canonical: the same fields give the same bytes, and ``decode`` accepts only what ``encode``
writes (recipients sorted and unique, lengths exact, nothing after the payload), so no two byte
strings are the same envelope.
"""

from __future__ import annotations

from dataclasses import dataclass

from eth_utils import to_canonical_address, to_checksum_address

from ledger.chain.connection import parse_address
from ledger.errors import InvalidInputError
from ledger.sealing.errors import (
    NotSealedError,
    TamperedEnvelopeError,
    TruncatedEnvelopeError,
    UnknownSealVersionError,
)
from ledger.types import Address

MAGIC = b"\x89FEDSEAL"
VERSION = 1
PUBLIC_KEY_SIZE = 32
WRAPPED_KEY_SIZE = 80  # HPKE enc (32) + the 32-byte content key + Poly1305 tag (16)
NONCE_SIZE = 12
TAG_SIZE = 16
FIXED_SIZE = len(MAGIC) + 1 + 32 + 20 + 32 + 20 + 8 + 2
SLOT_SIZE = 20 + PUBLIC_KEY_SIZE + WRAPPED_KEY_SIZE
MAX_RECIPIENTS = 0xFFFF
_UINT256 = 1 << 256


@dataclass(frozen=True)
class SealContext:
    """What a sealed update is for: the round of the deployment it belongs to, and whose it is.

    Addresses are checksummed on construction; a malformed one is InvalidInputError.
    """

    chain_id: int
    contract: Address
    round_id: int
    sender: Address

    def __post_init__(self) -> None:
        for name in ("chain_id", "round_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256:
                raise InvalidInputError(f"the {name.replace('_', ' ')} {value!r} is not an unsigned 256-bit integer.")
        object.__setattr__(self, "contract", parse_address(self.contract))
        object.__setattr__(self, "sender", parse_address(self.sender))

    def describe(self) -> str:
        return f"round {self.round_id} of contract {self.contract} on chain {self.chain_id}, sender {self.sender}"

    def encode(self) -> bytes:
        return (
            self.chain_id.to_bytes(32, "big")
            + to_canonical_address(self.contract)
            + self.round_id.to_bytes(32, "big")
            + to_canonical_address(self.sender)
        )


@dataclass(frozen=True)
class RecipientSlot:
    """One recipient's entry: who, the public key the content key was wrapped to, and the wrapped key."""

    address: Address
    public_key: bytes
    wrapped_key: bytes


@dataclass(frozen=True)
class SealedEnvelope:
    """The fields of a sealed update; ``payload`` is the ciphertext followed by its tag."""

    context: SealContext
    plaintext_length: int
    recipients: tuple[RecipientSlot, ...]
    nonce: bytes
    payload: bytes | memoryview


def encode_recipient_list(context: SealContext, plaintext_length: int, pairs: list[tuple[Address, bytes]]) -> bytes:
    """The fixed fields and each recipient's address and public key, without the wrapped keys.

    This is what the wrapped keys are bound to (they cannot be part of their own binding).
    """
    return _fixed_fields(context, plaintext_length, len(pairs)) + b"".join(
        to_canonical_address(address) + public_key for address, public_key in pairs
    )


def encode_header(envelope: SealedEnvelope) -> bytes:
    """Bytes ``[0, H)``: everything before the nonce, the payload's associated data."""
    return _fixed_fields(envelope.context, envelope.plaintext_length, len(envelope.recipients)) + b"".join(
        to_canonical_address(slot.address) + slot.public_key + slot.wrapped_key for slot in envelope.recipients
    )


def encode(envelope: SealedEnvelope) -> bytes:
    """The envelope's one byte encoding (see the module docstring for the layout)."""
    _check_fields(envelope)
    buffer, payload = envelope_buffer(encode_header(envelope), envelope.nonce, envelope.plaintext_length)
    payload[:] = envelope.payload
    return bytes(buffer)


def envelope_size(plaintext_length: int, recipient_count: int) -> int:
    """The length of the envelope of a ``plaintext_length``-byte update sealed to ``recipient_count`` recipients."""
    return FIXED_SIZE + recipient_count * SLOT_SIZE + NONCE_SIZE + plaintext_length + TAG_SIZE


def envelope_buffer(header: bytes, nonce: bytes, plaintext_length: int) -> tuple[bytearray, memoryview]:
    """A whole envelope's buffer with ``header`` and ``nonce`` in place, and a view of its payload slot.

    Lets the sealer encrypt straight into the envelope instead of copying the payload into it.
    """
    buffer = bytearray(len(header) + NONCE_SIZE + plaintext_length + TAG_SIZE)
    buffer[: len(header)] = header
    buffer[len(header) : len(header) + NONCE_SIZE] = nonce
    return buffer, memoryview(buffer)[len(header) + NONCE_SIZE :]


def decode(data: bytes | bytearray | memoryview) -> SealedEnvelope:
    """Parse a sealed update, refusing anything ``encode`` would not have written.

    The payload is a view into ``data``, not a copy. Nothing is decrypted or authenticated here.
    """
    view = memoryview(data)
    if len(view) < len(MAGIC) or view[: len(MAGIC)] != MAGIC:
        looks_plain = len(view) > 8 and view[8:9] == b"{"
        raise NotSealedError(
            "the bytes are not a sealed update"
            + (" but what looks like a plaintext safetensors file" if looks_plain else " (no FEDSEAL prefix)")
            + "; the round expects updates sealed to its recipients, so reject this one or give the sealed object."
        )
    if len(view) == len(MAGIC):
        raise TruncatedEnvelopeError(_cut_short(len(view), FIXED_SIZE))
    version = view[len(MAGIC)]
    if version != VERSION:
        raise UnknownSealVersionError(
            f"the update is sealed in format version {version}, and this fedledger reads only version {VERSION}; "
            "open it with the fedledger release that wrote it, or upgrade fedledger."
        )
    if len(view) < FIXED_SIZE:
        raise TruncatedEnvelopeError(_cut_short(len(view), FIXED_SIZE))
    at = len(MAGIC) + 1
    chain_id = int.from_bytes(view[at : at + 32], "big")
    contract = to_checksum_address(bytes(view[at + 32 : at + 52]))
    round_id = int.from_bytes(view[at + 52 : at + 84], "big")
    sender = to_checksum_address(bytes(view[at + 84 : at + 104]))
    plaintext_length = int.from_bytes(view[at + 104 : at + 112], "big")
    count = int.from_bytes(view[at + 112 : at + 114], "big")
    if count == 0:
        raise TamperedEnvelopeError(
            "the sealed update names no recipient, which no sealer writes: its bytes were altered; "
            "reject it (its sender must seal it again)."
        )
    header_size = FIXED_SIZE + count * SLOT_SIZE
    expected = header_size + NONCE_SIZE + plaintext_length + TAG_SIZE
    if len(view) != expected:
        raise TruncatedEnvelopeError(_cut_short(len(view), expected))
    slots = []
    for start in range(FIXED_SIZE, header_size, SLOT_SIZE):
        key_at = start + 20
        slots.append(
            RecipientSlot(
                address=Address(to_checksum_address(bytes(view[start:key_at]))),
                public_key=bytes(view[key_at : key_at + PUBLIC_KEY_SIZE]),
                wrapped_key=bytes(view[key_at + PUBLIC_KEY_SIZE : start + SLOT_SIZE]),
            )
        )
    envelope = SealedEnvelope(
        context=SealContext(chain_id=chain_id, contract=Address(contract), round_id=round_id, sender=Address(sender)),
        plaintext_length=plaintext_length,
        recipients=tuple(slots),
        nonce=bytes(view[header_size : header_size + NONCE_SIZE]),
        payload=view[header_size + NONCE_SIZE :],
    )
    addresses = [to_canonical_address(slot.address) for slot in slots]
    if any(a >= b for a, b in zip(addresses, addresses[1:])):
        raise TamperedEnvelopeError(
            "the sealed update's recipients are not in ascending address order or one appears twice, "
            "which no sealer writes: its bytes were altered; reject it (its sender must seal it again)."
        )
    return envelope


def _fixed_fields(context: SealContext, plaintext_length: int, count: int) -> bytes:
    return (
        MAGIC
        + bytes([VERSION])
        + context.encode()
        + plaintext_length.to_bytes(8, "big")
        + count.to_bytes(2, "big")
    )


def _check_fields(envelope: SealedEnvelope) -> None:
    """Refuse fields that have no canonical encoding (a programming error, not a user's)."""
    addresses = [to_canonical_address(slot.address) for slot in envelope.recipients]
    if not 1 <= len(addresses) <= MAX_RECIPIENTS or addresses != sorted(set(addresses)):
        raise ValueError("recipients must be 1 to 65535 distinct addresses in ascending order")
    if any(len(s.public_key) != PUBLIC_KEY_SIZE or len(s.wrapped_key) != WRAPPED_KEY_SIZE for s in envelope.recipients):
        raise ValueError("a recipient's public key must be 32 bytes and its wrapped key 80")
    if len(envelope.nonce) != NONCE_SIZE or len(envelope.payload) != envelope.plaintext_length + TAG_SIZE:
        raise ValueError("the nonce must be 12 bytes and the payload the plaintext length plus the 16-byte tag")


def _cut_short(actual: int, expected: int) -> str:
    how = "cut short" if actual < expected else "padded with extra bytes"
    return (
        f"the sealed update is {actual} bytes but its header calls for {expected}: it was {how}; "
        "fetch it again by its CID, and reject it if the stored object is the same."
    )
