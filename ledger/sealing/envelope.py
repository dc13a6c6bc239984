"""Seal an update to a round's recipients, and open it with one recipient's key.

The construction (format version 1, layout in ``ledger.sealing.format``):

1. A fresh random 32-byte content key and 12-byte nonce; the update is encrypted once with
   ChaCha20-Poly1305 under that key, its associated data being the whole header.
2. The content key is wrapped to each recipient's X25519 public key with HPKE (RFC 9180, base
   mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305), its ``info`` being a label
   and the SHA-256 of the fixed fields plus every recipient's address and public key.

So the chain id, contract, round id, sender, plaintext length and recipient set are bound twice:
into every wrapped key (a wrapped key cannot be moved into another envelope) and into the payload's
tag (no header byte can change). A reader holds no key but a recipient's; the bytes are opened only
when the context the caller expects, and, if given, the recipients the round names, match.

What it does not do: prove who sealed it. HPKE base mode is anonymous, as public-key encryption
is; attribution comes from the chain, where the sender's own signed transaction records the
envelope's CID. The ``sender`` field makes that record checkable: an envelope copied from another
party, or from another round, names that party or round and is refused.

Library: ``cryptography`` (PyCA), whose HPKE (``cryptography.hazmat.primitives.hpke``) and AEADs
are Rust over OpenSSL; tests/sealing checks its HPKE against RFC 9180's test vector A.2.1 for this
very suite. It is the most closely maintained of the candidates (``pyhpke`` is one person's
pure-Python key schedule over the same primitives; PyNaCl's sealed boxes are not HPKE and take no
context to bind), Flower already depends on it, and its ML-KEM hybrid KEMs are a ready path to a
post-quantum format version. Its HPKE is single-shot and draws each ephemeral
key itself, so two seals of the same update differ, as public-key encryption must (an
equality-revealing seal would let anyone holding the public keys confirm a guessed update).
Because the content key is wrapped rather than the payload, sealing costs about one pass of the
AEAD over the update (benchmarks/sealing.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from eth_utils import to_canonical_address

from ledger.chain.connection import parse_address
from ledger.errors import InvalidInputError
from ledger.sealing.errors import (
    NotARecipientError,
    RecipientMismatchError,
    SealContextMismatchError,
    TamperedEnvelopeError,
    WrongDecryptionKeyError,
)
from ledger.sealing.format import (
    MAX_RECIPIENTS,
    NONCE_SIZE,
    PUBLIC_KEY_SIZE,
    TAG_SIZE,
    RecipientSlot,
    SealContext,
    SealedEnvelope,
    decode,
    encode_header,
    encode_recipient_list,
    envelope_buffer,
)
from ledger.types import Address

SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
MAX_PLAINTEXT = (1 << 31) - 1 - TAG_SIZE  # cryptography's one-shot AEAD takes at most 2**31 - 1 bytes
_WRAP_LABEL = b"fedledger sealed update v1: content key\x00"


def seal(
    plaintext: bytes | bytearray | memoryview, recipients: Mapping[str, bytes], *, context: SealContext
) -> bytearray:
    """The update ``plaintext`` sealed to every ``recipients`` address's 32-byte X25519 public key.

    The result is a fresh buffer that the caller owns: the payload is encrypted straight into it,
    which spares one copy of the whole update (and its page faults) against building ``bytes``.
    Raises InvalidInputError, naming the recipient, for a malformed address or key, a key of all
    zero bytes (what the chain returns for an address that registered none) or a low-order key.
    """
    if len(plaintext) > MAX_PLAINTEXT:
        raise InvalidInputError(
            f"the update is {len(plaintext)} bytes and a sealed update holds at most {MAX_PLAINTEXT}; "
            "make the model smaller or send it unsealed in a round that does not seal."
        )
    pairs = _recipient_pairs(recipients)
    content_key = ChaCha20Poly1305.generate_key()
    info = _wrap_info(context, len(plaintext), pairs)
    slots = tuple(
        RecipientSlot(address=address, public_key=key, wrapped_key=_wrap(content_key, address, key, info))
        for address, key in pairs
    )
    nonce = os.urandom(NONCE_SIZE)
    header = encode_header(SealedEnvelope(context, len(plaintext), slots, nonce, b""))
    sealed, payload = envelope_buffer(header, nonce, len(plaintext))
    ChaCha20Poly1305(content_key).encrypt_into(nonce, plaintext, header, payload)
    return sealed


def unseal(
    sealed: bytes | bytearray | memoryview,
    address: str,
    private_key: X25519PrivateKey,
    *,
    context: SealContext,
    recipients: Mapping[str, bytes] | None = None,
) -> bytes:
    """The plaintext of ``sealed``, opened as recipient ``address`` with its ``private_key``.

    ``context`` is what the caller expects the update to be (its round, contract, chain and
    sender, as the chain records them); ``recipients``, when given, the addresses and registered
    keys the round names, which must be exactly those sealed to. Each failure is one
    ``ledger.sealing.errors`` class with a sentence naming the cause.
    """
    envelope = check_envelope(sealed, context=context, recipients=recipients)
    me = parse_address(address)
    slot = next((slot for slot in envelope.recipients if slot.address == me), None)
    if slot is None:
        raise NotARecipientError(
            f"the update is sealed to {_names(s.address for s in envelope.recipients)}, not to {me}; "
            "open it with a recipient's encryption key."
        )
    if private_key.public_key().public_bytes_raw() != slot.public_key:
        raise WrongDecryptionKeyError(
            f"the encryption key given for {me} is not the one this update was sealed to "
            f"(public key 0x{slot.public_key.hex()}); use the encryption key {me} registered on chain."
        )
    pairs = [(s.address, s.public_key) for s in envelope.recipients]
    try:
        info = _wrap_info(envelope.context, envelope.plaintext_length, pairs)
        content_key = SUITE.decrypt(slot.wrapped_key, private_key, info=info)
    except InvalidTag:
        raise _tampered(f"its content key wrapped for {me} does not open") from None
    try:
        return ChaCha20Poly1305(content_key).decrypt(envelope.nonce, envelope.payload, encode_header(envelope))
    except InvalidTag:
        raise _tampered("its header or payload fails authentication") from None


def check_envelope(
    sealed: bytes | bytearray | memoryview, *, context: SealContext, recipients: Mapping[str, bytes] | None = None
) -> SealedEnvelope:
    """The parsed envelope, after checking, without any key, that it is for ``context`` and ``recipients``.

    What anyone can check of a sealed update: its layout, what it is for, and (when given) that it is
    sealed to exactly the round's recipients' registered keys. Nothing is decrypted or authenticated.
    """
    envelope = decode(sealed)
    _check_context(envelope.context, context)
    if recipients is not None:
        _check_recipients(envelope, _recipient_pairs(recipients))
    return envelope


def _recipient_pairs(recipients: Mapping[str, bytes]) -> list[tuple[Address, bytes]]:
    """Recipients as (checksummed address, public key), in the canonical ascending address order."""
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise InvalidInputError(
            f"an update is sealed to 1 to {MAX_RECIPIENTS} recipients, not {len(recipients)}; name the round's "
            "aggregator (and any auditors) as recipients."
        )
    pairs: dict[Address, bytes] = {}
    for given, key in recipients.items():
        address = parse_address(given)
        if address in pairs:
            raise InvalidInputError(f"{address} is named twice as a recipient; name each recipient once.")
        if not isinstance(key, bytes | bytearray) or len(key) != PUBLIC_KEY_SIZE:
            raise InvalidInputError(
                f"the encryption public key for {address} is not 32 raw bytes; give the key it registered on chain."
            )
        if not any(key):
            raise InvalidInputError(
                f"{address} has no encryption public key (all zero bytes, as the chain answers for an address that "
                "registered none); ask it to run `fedledger key publish-encryption`, or leave it out."
            )
        pairs[address] = bytes(key)
    return sorted(pairs.items(), key=lambda pair: to_canonical_address(pair[0]))


def _wrap(content_key: bytes, address: Address, public_key: bytes, info: bytes) -> bytes:
    try:
        return SUITE.encrypt(content_key, X25519PublicKey.from_public_bytes(public_key), info=info)
    except ValueError:  # X25519 refuses a low-order point: the shared secret would be all zeros
        raise InvalidInputError(
            f"the encryption public key registered for {address} (0x{public_key.hex()}) is not a usable X25519 key; "
            "ask it to publish a key made by `fedledger key new-encryption`."
        ) from None


def _wrap_info(context: SealContext, plaintext_length: int, pairs: list[tuple[Address, bytes]]) -> bytes:
    return _WRAP_LABEL + hashlib.sha256(encode_recipient_list(context, plaintext_length, pairs)).digest()


def _check_context(actual: SealContext, expected: SealContext) -> None:
    if actual == expected:
        return
    differing = [
        name.replace("_", " ")
        for name in ("chain_id", "contract", "round_id", "sender")
        if getattr(actual, name) != getattr(expected, name)
    ]
    raise SealContextMismatchError(
        f"the update was sealed for {actual.describe()}, not for {expected.describe()} (another "
        f"{' and '.join(differing)}); reject it: a sealed update cannot be replayed into another round "
        "or passed off as another party's."
    )


def _check_recipients(envelope: SealedEnvelope, expected: list[tuple[Address, bytes]]) -> None:
    sealed_to = [(s.address, s.public_key) for s in envelope.recipients]
    if sealed_to == expected:
        return
    sealed_addresses = [address for address, _ in sealed_to]
    expected_addresses = [address for address, _ in expected]
    if sealed_addresses != expected_addresses:
        what = f"to {_names(sealed_addresses)} while the round names {_names(expected_addresses)}"
    else:
        keys = dict(expected)
        what = f"to other keys than {_names(a for a, k in sealed_to if keys[a] != k)} registered"
    raise RecipientMismatchError(
        f"the update is sealed {what}; reject it: its sender must seal it to the round's recipients' registered keys."
    )


def _tampered(what: str) -> TamperedEnvelopeError:
    return TamperedEnvelopeError(
        f"the sealed update was altered after sealing: {what}; reject it (its sender must seal it again)."
    )


def _names(addresses: Iterable[str]) -> str:
    return ", ".join(addresses)
