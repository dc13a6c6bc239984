"""A whole secure round in memory: the unmasked sum is plain FedAvg of the survivors, to the quantization."""

from __future__ import annotations

import numpy as np
import pytest

from ledger.secagg import (
    check_unmaskable,
    decode,
    encode,
    masked_from_bytes,
    masked_to_bytes,
    neighbours_of,
    recover_dropout_seeds,
    remove_dropout_masks,
    secure_fedavg,
    secure_sum,
    shares_to_reveal,
)
from ledger.secagg.errors import InvalidAdvertisementError, MaskedVectorError, NotInCohortError
from tests.secagg.conftest import SecureRound, address, new_round


def reveals_for(secure: SecureRound, survivors: list, dropouts: list) -> list:
    return [
        shares_to_reveal(secure.params, secure.context, holder=h, long_term_key=secure.long_term[h],
                         advertisements=secure.advertisements, submitted=survivors, dropouts=dropouts)
        for h in survivors
    ]


def unmasked(secure: SecureRound, survivors: list, dropouts: list, reveals: list | None = None) -> np.ndarray:
    recovery = recover_dropout_seeds(
        secure.params, secure.context, advertisements=secure.advertisements, dropouts=dropouts,
        reveals=reveals_for(secure, survivors, dropouts) if reveals is None else reveals,
    )
    return secure_sum(secure.params, secure.context, masked={p: secure.masked[p] for p in survivors},
                      survivors=survivors, dropouts=dropouts, seeds=recovery.seeds,
                      advertisements=secure.advertisements)


def within_bound(secure: SecureRound, result: np.ndarray, reference: np.ndarray) -> bool:
    """The stated bound: 2**-(scale_bits+1) per coordinate, plus the float32 cast's half unit."""
    slack = secure.params.quantization_bound + np.abs(reference) * 2.0**-24
    return bool((np.abs(result.astype(np.float64) - reference) <= slack).all())


def test_five_parties_one_dropout_give_fedavg_of_the_survivors_within_the_quantization_bound(five: SecureRound) -> None:
    rng = np.random.default_rng(5)
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[3], cohort[:3] + cohort[4:]
    five.submit(survivors, 20_000, rng)
    total = unmasked(five, survivors, [dropout])
    result = decode(total, sum(five.samples[p] for p in survivors), five.params)
    reference = five.fedavg(survivors)
    assert result.dtype == np.float32
    assert within_bound(five, result, reference)
    assert np.abs(result - reference).max() > 0  # quantization is real, so the bound is what is tested


def test_the_sum_is_deterministic_whichever_reveals_are_used(five: SecureRound) -> None:
    rng = np.random.default_rng(6)
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[0], cohort[1:]
    five.submit(survivors, 5_000, rng)
    reveals = reveals_for(five, survivors, [dropout])
    first = unmasked(five, survivors, [dropout], reveals)
    again = unmasked(five, survivors, [dropout], reveals[::-1])
    fewer = unmasked(five, survivors, [dropout], reveals[1:])  # 3 holders of 4: still >= T
    assert first.tobytes() == again.tobytes() == fewer.tobytes()
    expected = sum(encode(five.updates[p], five.samples[p], five.params) for p in survivors)
    assert first.tobytes() == np.asarray(expected, dtype=np.uint64).tobytes()


def test_updates_beyond_the_clip_bound_are_clipped_before_averaging() -> None:
    secure = new_round(clip=1.5)
    secure.advertise()
    rng = np.random.default_rng(7)
    cohort = list(secure.params.cohort)
    secure.submit(cohort, 4_000, rng)  # N(0, 2): about half the coordinates lie beyond 1.5
    result = secure_fedavg(secure.params, secure.context, masked=secure.masked, samples=secure.samples,
                           dropouts=[], seeds={}, advertisements=secure.advertisements)
    assert within_bound(secure, result, secure.fedavg(cohort))
    assert np.abs(result).max() <= 1.5


def test_a_sparse_neighbourhood_round_with_two_dropouts_unmasks_exactly() -> None:
    secure = new_round(12, threshold=3, neighbours=4)
    secure.advertise()
    cohort = list(secure.params.cohort)
    dropouts = [cohort[1], cohort[7]]
    survivors = [p for p in cohort if p not in dropouts]
    check_unmaskable(secure.params, secure.context, cohort, survivors)
    assert all(len(neighbours_of(secure.params, p, secure.context)) == 4 for p in cohort)
    secure.submit(survivors, 3_000, np.random.default_rng(8))
    total = unmasked(secure, survivors, dropouts)
    expected = sum(encode(secure.updates[p], secure.samples[p], secure.params) for p in survivors)
    assert total.tobytes() == np.asarray(expected, dtype=np.uint64).tobytes()


def test_a_party_that_never_advertised_is_neither_masked_with_nor_a_dropout() -> None:
    secure = new_round(6, threshold=2, neighbours=4)
    cohort = list(secure.params.cohort)
    silent = cohort[2]
    secure.advertise([p for p in cohort if p != silent])
    survivors = [p for p in cohort if p != silent]
    secure.submit(survivors, 1_000, np.random.default_rng(9))
    total = secure_sum(secure.params, secure.context, masked=secure.masked, survivors=survivors, dropouts=[],
                       seeds={}, advertisements=secure.advertisements)
    expected = sum(encode(secure.updates[p], secure.samples[p], secure.params) for p in survivors)
    assert total.tobytes() == np.asarray(expected, dtype=np.uint64).tobytes()


def test_masked_vectors_of_the_wrong_length_dtype_or_party_are_refused(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    five.submit(cohort, 100, np.random.default_rng(10))
    args = dict(survivors=cohort, dropouts=[], seeds={}, advertisements=five.advertisements)
    short = dict(five.masked, **{cohort[1]: five.masked[cohort[1]][:-1]})
    with pytest.raises(MaskedVectorError, match=f"masked vector of {cohort[1]} has 99 words and the model has 100"):
        secure_sum(five.params, five.context, masked=short, **args)
    floats = dict(five.masked, **{cohort[2]: five.masked[cohort[2]].astype(np.float64)})
    with pytest.raises(MaskedVectorError, match=f"masked vector of {cohort[2]} is a 1-dimensional float64 array"):
        secure_sum(five.params, five.context, masked=floats, **args)
    signed = dict(five.masked, **{cohort[0]: five.masked[cohort[0]].view(np.int64)})
    with pytest.raises(MaskedVectorError, match="not a flat vector of uint64 words"):
        secure_sum(five.params, five.context, masked=signed, **args)
    stranger = address(99)
    with pytest.raises(NotInCohortError, match=f"{stranger} is not in this secure round's cohort"):
        secure_sum(five.params, five.context, masked=dict(five.masked, **{stranger: five.masked[cohort[0]]}),
                   **dict(args, survivors=cohort + [stranger]))
    missing = {p: v for p, v in five.masked.items() if p != cohort[4]}
    with pytest.raises(MaskedVectorError, match=f"missing: {cohort[4]}"):
        secure_sum(five.params, five.context, masked=missing, **args)


def test_a_streamed_sum_unmasks_to_the_same_words_as_secure_sum(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[2], cohort[:2] + cohort[3:]
    five.submit(survivors, 2_000, np.random.default_rng(13))
    recovery = recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements,
                                     dropouts=[dropout], reveals=reveals_for(five, survivors, [dropout]))
    streamed = np.zeros(2_000, dtype=np.uint64)
    for party in survivors:  # as an aggregator reading one masked vector at a time from the store
        streamed += masked_from_bytes(masked_to_bytes(five.masked[party]), length=2_000, party=party)
    remove_dropout_masks(five.params, five.context, streamed, survivors=survivors, dropouts=[dropout],
                         seeds=recovery.seeds, advertisements=five.advertisements)
    assert streamed.tobytes() == unmasked(five, survivors, [dropout]).tobytes()


def test_a_seed_that_does_not_give_the_dropouts_advertised_key_is_refused(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[0], cohort[1:]
    five.submit(survivors, 16, np.random.default_rng(14))
    masked = {p: five.masked[p] for p in survivors}
    for seeds, sentence in (({dropout: bytes(16)}, "does not give its advertised round key"),
                            ({}, f"no recovered round seed for the dropout {dropout}")):
        with pytest.raises(InvalidAdvertisementError, match=sentence):
            secure_sum(five.params, five.context, masked=masked, survivors=survivors, dropouts=[dropout],
                       seeds=seeds, advertisements=five.advertisements)
