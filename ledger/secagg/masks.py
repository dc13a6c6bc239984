"""Pairwise masks and the masked vector a party publishes.

For two parties i and j that are neighbours and both advertised, the pair key is
HKDF-SHA256(X25519(round_sk_i, round_pk_j), info = label, context, the two addresses and their
round public keys in ascending address order): both compute it, no one else can until one of the
two round seeds is recovered. It keys ChaCha20 (``cryptography``; a zero nonce, since each key
serves one mask of one round) whose keystream, read as little-endian uint64 words, is the mask.
The party lower in address order adds it, the higher subtracts it, so every pair's masks cancel
in the sum modulo 2**64, and each vector alone is its encoding plus a uniformly random word per
coordinate from each pair: uniform modulo 2**64 to anyone lacking a pair key.

The masked vector's bytes are its words in little-endian order, 8 bytes per parameter
(``masked_to_bytes`` / ``masked_from_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ledger.secagg.context import (
    LABEL_PAIR_MASK,
    RoundContext,
    address_bytes,
    address_order,
    derive,
)
from ledger.secagg.documents import Advertisement, by_party
from ledger.secagg.encoding import encode
from ledger.secagg.errors import InvalidAdvertisementError, MaskedVectorError
from ledger.secagg.graph import cohort_member, neighbours_of
from ledger.secagg.params import SecureParams
from ledger.secagg.shares import check_advertisement, round_private_key, usable_public_key

WORD = np.dtype("<u8")
CHUNK = 1 << 15  # words of keystream made and added at a time
_NONCE = bytes(16)
_ZEROS = bytes(8 * CHUNK)


def pair_key(
    context: RoundContext, own_key: X25519PrivateKey, own: str, peer: str, peer_round_public_key: bytes
) -> bytes:
    """The 32-byte key of the pair (own, peer), from one side's round private key and the other's public key."""
    own_public = own_key.public_key().public_bytes_raw()
    shared = own_key.exchange(usable_public_key(peer_round_public_key, f"the round public key of {peer}"))
    ends = sorted([(address_order(own), address_bytes(own), own_public),
                   (address_order(peer), address_bytes(peer), peer_round_public_key)])
    return derive(shared, LABEL_PAIR_MASK, context, *(part for _, address, key in ends for part in (address, key)))


def keystream(key: bytes, length: int) -> npt.NDArray[np.uint64]:
    """``length`` uint64 words of ChaCha20 keystream under ``key``: the mask of the pair ``key`` belongs to."""
    words = np.zeros(length, dtype=WORD)
    view = memoryview(words).cast("B")
    Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor().update_into(view, view)
    return words


def apply_pair_mask(
    vector: npt.NDArray[np.uint64], key: bytes, *, add: bool, scratch: npt.NDArray[np.uint64] | None = None
) -> None:
    """Add (or subtract) the mask under ``key`` to ``vector`` in place, modulo 2**64.

    The keystream is made and added a chunk at a time (``CHUNK`` words, 256 KiB, in the CPU's cache)
    instead of as a whole second vector: the same words, and about half the memory traffic.
    ``scratch``, when given, is a buffer of at least ``CHUNK`` words the caller reuses across masks.
    """
    buffer = np.empty(CHUNK, dtype=WORD) if scratch is None or len(scratch) < CHUNK else scratch
    zeros = memoryview(_ZEROS)
    encryptor = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
    operation = np.add if add else np.subtract
    for start in range(0, len(vector), CHUNK):
        part = vector[start:start + CHUNK]
        words = buffer[: len(part)]
        encryptor.update_into(zeros[: 8 * len(part)], memoryview(words).cast("B"))
        operation(part, words, out=part)


def masked_vector(
    update: npt.ArrayLike,
    samples: int,
    params: SecureParams,
    context: RoundContext,
    *,
    party: str,
    seed: bytes,
    advertisements: Mapping[str, Advertisement],
) -> npt.NDArray[np.uint64]:
    """``party``'s update, encoded (``ledger.secagg.encoding.encode``) and masked with every advertised neighbour.

    ``advertisements`` are the round's advertisements as published before the deadline (``party``'s
    own among them). Refuses when ``party`` has no advertised neighbour: its vector would be bare.
    """
    me = cohort_member(params, party)
    ads = by_party(advertisements)
    own_key = round_private_key(seed, me, context)
    mine = ads.get(me)
    if mine is None or mine.round_public_key != own_key.public_key().public_bytes_raw():
        raise InvalidAdvertisementError(
            f"{me} has no advertisement for {context.describe()} made with this seed; a party masks only with the "
            "seed of the advertisement it published."
        )
    peers = neighbours_of(params, me, context, advertised=ads)
    if not peers:
        raise MaskedVectorError(
            f"none of {me}'s neighbours advertised, so no mask would hide its update; do not submit in this round."
        )
    vector = encode(update, samples, params)
    scratch = np.empty(CHUNK, dtype=WORD)
    for peer in peers:
        check_advertisement(params, context, ads[peer])
        key = pair_key(context, own_key, me, peer, ads[peer].round_public_key)
        apply_pair_mask(vector, key, add=address_order(me) < address_order(peer), scratch=scratch)
    return vector


def check_masked(vector: object, length: int, party: str) -> npt.NDArray[np.uint64]:
    """``vector`` if it is a flat uint64 vector of ``length`` words; MaskedVectorError naming ``party`` otherwise."""
    if not isinstance(vector, np.ndarray) or vector.dtype != np.uint64 or vector.ndim != 1:
        kind = f"a {vector.ndim}-dimensional {vector.dtype} array" if isinstance(vector, np.ndarray) else type(vector).__name__
        raise MaskedVectorError(
            f"the masked vector of {party} is {kind}, not a flat vector of uint64 words (modulo 2**64); reject it."
        )
    if len(vector) != length:
        raise MaskedVectorError(
            f"the masked vector of {party} has {len(vector)} words and the model has {length} parameters; reject it."
        )
    return vector


def masked_to_bytes(vector: npt.NDArray[np.uint64]) -> bytes:
    """The masked vector's bytes: little-endian uint64 words."""
    return np.ascontiguousarray(vector, dtype=WORD).tobytes()


def masked_from_bytes(data: bytes, *, length: int, party: str) -> npt.NDArray[np.uint64]:
    """The masked vector stored as ``data``; MaskedVectorError naming ``party`` when it is not ``length`` words."""
    if len(data) != 8 * length:
        raise MaskedVectorError(
            f"the masked vector of {party} is {len(data)} bytes and the model's {length} parameters take "
            f"{8 * length} (8 bytes each, modulo 2**64); reject it."
        )
    return np.frombuffer(data, dtype=WORD).astype(np.uint64)
