"""Fixed point modulo 2**64: the quantization bound at its worst, and every bad input refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from ledger.secagg import decode, encode, make_advertisement, masked_from_bytes, masked_to_bytes, masked_vector
from ledger.secagg.errors import InvalidAdvertisementError, MaskedVectorError
from ledger.secagg.masks import CHUNK, apply_pair_mask, keystream
from tests.secagg.conftest import SecureRound, new_round


def test_the_quantization_bound_holds_at_half_steps_and_at_the_extremes() -> None:
    secure = new_round(scale_bits=8, clip=2.0)
    params, step = secure.params, 2.0**-8
    cohort = list(params.cohort)
    # every coordinate half a step off the grid, the same for every party: each rounding error is the
    # largest possible and all of a coordinate's errors have the same sign, so the bound is reached
    updates = {p: (np.arange(-400, 400, dtype=np.float64) * step + step / 2).astype(np.float32) for p in cohort}
    updates[cohort[0]][:10] = np.float32(1e30)  # clipped to +clip
    samples = {p: params.max_samples - i for i, p in enumerate(cohort)}
    total = np.zeros(800, dtype=np.uint64)
    for p in cohort:
        total += encode(updates[p], samples[p], params)
    result = decode(total, sum(samples.values()), params).astype(np.float64)
    clipped = {p: np.clip(u.astype(np.float64), -2.0, 2.0) for p, u in updates.items()}
    reference = sum(samples[p] * clipped[p] for p in cohort) / sum(samples.values())
    error = np.abs(result - reference)
    assert (error <= params.quantization_bound + np.abs(reference) * 2.0**-24).all()
    assert error.max() == params.quantization_bound  # reached exactly: the bound is tight


def test_negative_sums_decode_through_the_wraparound() -> None:
    params = new_round().params
    codes = encode(np.array([-1.0, -64.0, 0.5], dtype=np.float32), 1000, params)
    assert codes.dtype == np.uint64 and codes[0] > 2**63
    total = codes * np.uint64(5)  # five identical parties
    assert decode(total, 5000, params).tolist() == [-1.0, -64.0, 0.5]


@pytest.mark.parametrize(
    ("update", "samples", "sentence"),
    [
        (np.zeros(3, np.float32), 0, "the sample count 0 must be a whole number from 1 to max_samples (1000)"),
        (np.zeros(3, np.float32), 1001, "the sample count 1001 must be a whole number from 1 to max_samples"),
        (np.zeros(3, np.float32), True, "the sample count True must be"),
        (np.zeros(3, np.float32), 2.0, "the sample count 2.0 must be"),
        (np.zeros((3, 2), np.float32), 1, "the update is a 2-dimensional float32 array; give one flat float vector"),
        (np.zeros(3, np.int64), 1, "the update is a 1-dimensional int64 array"),
        (np.array([0.0, np.nan], np.float32), 1, "the update holds NaN or infinity"),
        (np.array([np.inf], np.float32), 1, "the update holds NaN or infinity"),
    ],
)
def test_an_update_that_cannot_be_encoded_is_refused(update: np.ndarray, samples: object, sentence: str) -> None:
    with pytest.raises(MaskedVectorError) as caught:
        encode(update, samples, new_round().params)  # type: ignore[arg-type]
    assert sentence in str(caught.value)


def test_masked_vectors_travel_as_little_endian_words_and_a_wrong_length_is_refused(five: SecureRound) -> None:
    party = five.params.cohort[0]
    vector = masked_vector(np.ones(10, np.float32), 3, five.params, five.context, party=party,
                           seed=five.seeds[party], advertisements=five.advertisements)
    data = masked_to_bytes(vector)
    assert len(data) == 80 and data[:8] == int(vector[0]).to_bytes(8, "little")
    assert masked_from_bytes(data, length=10, party=party).tobytes() == vector.tobytes()
    with pytest.raises(MaskedVectorError, match=f"the masked vector of {party} is 79 bytes and the model's 10 parameters take 80"):
        masked_from_bytes(data[:-1], length=10, party=party)


def test_a_party_masks_only_with_the_seed_it_advertised_and_only_when_a_neighbour_advertised(five: SecureRound) -> None:
    party = five.params.cohort[0]
    with pytest.raises(InvalidAdvertisementError, match="made with this seed"):
        masked_vector(np.ones(4, np.float32), 1, five.params, five.context, party=party, seed=bytes(16),
                      advertisements=five.advertisements)
    alone = {party: five.advertisements[party]}
    with pytest.raises(MaskedVectorError, match=f"none of {party}'s neighbours advertised"):
        masked_vector(np.ones(4, np.float32), 1, five.params, five.context, party=party, seed=five.seeds[party],
                      advertisements=alone)
    ads = dict(five.advertisements)
    peer = five.params.cohort[1]
    ads[peer] = make_advertisement(five.params, five.context, party=peer, seed=bytes(16), long_term_keys=five.registry)
    other = ads[peer]
    ads[peer] = dataclasses.replace(other, shares=other.shares[::-1])
    with pytest.raises(InvalidAdvertisementError, match=f"the advertisement of {peer} deals its shares"):
        masked_vector(np.ones(4, np.float32), 1, five.params, five.context, party=party, seed=five.seeds[party],
                      advertisements=ads)


def test_a_pair_mask_is_chacha20s_keystream_read_as_little_endian_words() -> None:
    """The definition an auditor reimplements: ChaCha20 (RFC 8439 keystream, zero nonce) under the pair key."""
    key = bytes(range(32))
    length = 2 * CHUNK + 5  # crosses the chunk boundaries
    expected = np.frombuffer(Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor().update(
        bytes(8 * length)), dtype="<u8")
    assert keystream(key, length).tobytes() == expected.tobytes()
    vector = np.arange(length, dtype=np.uint64)
    apply_pair_mask(vector, key, add=True)
    assert vector.tobytes() == (np.arange(length, dtype=np.uint64) + expected).tobytes()
    apply_pair_mask(vector, key, add=False)
    assert vector.tobytes() == np.arange(length, dtype=np.uint64).tobytes()
