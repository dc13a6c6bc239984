"""Multibase: the one-character prefix that says how a CIDv1 text is spelled, and the bases behind it.

Kubo prints CIDv1 in base32 (``b…``) and accepts any multibase on input; ``cid-base=NAME``
picks another for output. These are the bases Kubo names, less the exotic ones (base2, base8,
base256emoji, identity) that no client here sends. Each base decodes strictly, as go-multibase
does: ``b`` is lowercase base32, ``B`` uppercase.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

BASE58_BTC = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_BASE58_FLICKR = "123456789abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class MultibaseError(ValueError):
    """A text that no supported multibase decodes; the message says why."""


def encode_base_x(data: bytes, alphabet: str) -> str:
    """Big-number base conversion (base58, base36, base10): each leading zero byte is the alphabet's first letter."""
    number = int.from_bytes(data, "big")
    digits = []
    while number:
        number, rest = divmod(number, len(alphabet))
        digits.append(alphabet[rest])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return alphabet[0] * zeros + "".join(reversed(digits))


def decode_base_x(text: str, alphabet: str) -> bytes:
    number = 0
    for char in text:
        value = alphabet.find(char)
        if value < 0:
            raise MultibaseError(f"{char!r} is not a digit of this base")
        number = number * len(alphabet) + value
    zeros = len(text) - len(text.lstrip(alphabet[0]))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def _rfc4648(encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes], *, pad: bool, upper: bool,
             block: int) -> tuple[Callable[[bytes], str], Callable[[str], bytes]]:
    """Encoder and strict decoder for one RFC 4648 alphabet (with or without padding, one letter case)."""

    def enc(data: bytes) -> str:
        text = encode(data).decode("ascii")
        text = text if pad else text.rstrip("=")
        return text if upper else text.lower()

    def dec(text: str) -> bytes:
        if text != (text.upper() if upper else text.lower()):
            raise MultibaseError("letters of the wrong case for this prefix")
        if not pad:
            if "=" in text:
                raise MultibaseError("padding where this base has none")
            text += "=" * (-len(text) % block)
        try:
            return decode(text.upper().encode("ascii"))
        except (binascii.Error, ValueError) as error:
            raise MultibaseError(str(error)) from None

    return enc, dec


def _base64(urlsafe: bool, pad: bool) -> tuple[Callable[[bytes], str], Callable[[str], bytes]]:
    def enc(data: bytes) -> str:
        text = (base64.urlsafe_b64encode if urlsafe else base64.b64encode)(data).decode("ascii")
        return text if pad else text.rstrip("=")

    def dec(text: str) -> bytes:
        if not pad:
            if "=" in text:
                raise MultibaseError("padding where this base has none")
            text += "=" * (-len(text) % 4)
        try:
            return base64.b64decode(text, altchars=b"-_" if urlsafe else None, validate=True)
        except (binascii.Error, ValueError) as error:
            raise MultibaseError(str(error)) from None

    return enc, dec


def _hex(upper: bool) -> tuple[Callable[[bytes], str], Callable[[str], bytes]]:
    def dec(text: str) -> bytes:
        if text != (text.upper() if upper else text.lower()):
            raise MultibaseError("letters of the wrong case for this prefix")
        try:
            return bytes.fromhex(text)
        except ValueError as error:
            raise MultibaseError(str(error)) from None

    return (lambda data: data.hex().upper() if upper else data.hex()), dec


def _base_x(alphabet: str, upper: bool = False) -> tuple[Callable[[bytes], str], Callable[[str], bytes]]:
    def enc(data: bytes) -> str:
        text = encode_base_x(data, alphabet)
        return text.upper() if upper else text

    def dec(text: str) -> bytes:
        if upper:
            if text != text.upper():
                raise MultibaseError("letters of the wrong case for this prefix")
            text = text.lower()
        return decode_base_x(text, alphabet)

    return enc, dec


@dataclass(frozen=True)
class Base:
    """One multibase: its name (as in ``cid-base=``), prefix character, encoder and decoder."""

    name: str
    prefix: str
    encode: Callable[[bytes], str]
    decode: Callable[[str], bytes]


def _bases() -> dict[str, Base]:
    b32 = (base64.b32encode, base64.b32decode)
    b32hex = (base64.b32hexencode, base64.b32hexdecode)
    table = [
        ("base10", "9", *_base_x("0123456789")),
        ("base16", "f", *_hex(False)),
        ("base16upper", "F", *_hex(True)),
        ("base32", "b", *_rfc4648(*b32, pad=False, upper=False, block=8)),
        ("base32upper", "B", *_rfc4648(*b32, pad=False, upper=True, block=8)),
        ("base32pad", "c", *_rfc4648(*b32, pad=True, upper=False, block=8)),
        ("base32padupper", "C", *_rfc4648(*b32, pad=True, upper=True, block=8)),
        ("base32hex", "v", *_rfc4648(*b32hex, pad=False, upper=False, block=8)),
        ("base32hexupper", "V", *_rfc4648(*b32hex, pad=False, upper=True, block=8)),
        ("base32hexpad", "t", *_rfc4648(*b32hex, pad=True, upper=False, block=8)),
        ("base32hexpadupper", "T", *_rfc4648(*b32hex, pad=True, upper=True, block=8)),
        ("base36", "k", *_base_x(_BASE36)),
        ("base36upper", "K", *_base_x(_BASE36, upper=True)),
        ("base58btc", "z", *_base_x(BASE58_BTC)),
        ("base58flickr", "Z", *_base_x(_BASE58_FLICKR)),
        ("base64", "m", *_base64(urlsafe=False, pad=False)),
        ("base64pad", "M", *_base64(urlsafe=False, pad=True)),
        ("base64url", "u", *_base64(urlsafe=True, pad=False)),
        ("base64urlpad", "U", *_base64(urlsafe=True, pad=True)),
    ]
    return {name: Base(name, prefix, enc, dec) for name, prefix, enc, dec in table}


BASES = _bases()
_BY_PREFIX = {base.prefix: base for base in BASES.values()}


def base_named(name: str) -> Base:
    """The base called ``name`` or whose prefix is ``name`` (as go-multibase's ``EncoderByName`` reads
    Kubo's ``cid-base``); MultibaseError in go-multibase's words, naming the ones served here."""
    base = _BY_PREFIX.get(name) if len(name) == 1 else BASES.get(name)
    if base is None:
        raise MultibaseError(f"unsupported multibase encoding: {name} (this server spells {', '.join(sorted(BASES))})")
    return base


def encode(name: str, data: bytes) -> str:
    """``data`` spelled in the base called ``name``, prefix included."""
    base = base_named(name)
    return base.prefix + base.encode(data)


def decode(text: str) -> tuple[Base, bytes]:
    """The base a prefixed text is spelled in, and the bytes it spells."""
    if not text:
        raise MultibaseError("empty")
    base = _BY_PREFIX.get(text[0])
    if base is None:
        raise MultibaseError(f"{text[0]!r} is not the prefix of a multibase this server knows")
    return base, base.decode(text[1:])
