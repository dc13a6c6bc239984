"""Unmasking: the sum of the survivors' updates from their public masked vectors and the dropouts' seeds.

Summing the survivors' masked vectors cancels every mask between two survivors. What is left are
the masks each survivor added for its neighbours that advertised and then dropped; each is
recomputed from the dropout's recovered round key and the survivor's round public key (the pair
key is symmetric) and taken away. Everything used is public once the reveals are: anyone recomputes
the same uint64 sum, bit for bit, without any key (modular addition does not depend on order; the
loops still run in address order).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.secagg.context import RoundContext, address_order
from ledger.secagg.documents import Advertisement, by_party
from ledger.secagg.encoding import check_samples, decode
from ledger.secagg.errors import InvalidAdvertisementError, MaskedVectorError
from ledger.secagg.graph import check_unmaskable, cohort_member, neighbours_of
from ledger.secagg.masks import CHUNK, WORD, apply_pair_mask, check_masked, pair_key
from ledger.secagg.params import SecureParams
from ledger.secagg.reveal import split_round
from ledger.secagg.shares import check_advertisement, round_private_key
from ledger.types import Address


def secure_sum(
    params: SecureParams,
    context: RoundContext,
    *,
    masked: Mapping[str, npt.NDArray[np.uint64]],
    survivors: list[str] | tuple[str, ...],
    dropouts: list[str] | tuple[str, ...],
    seeds: Mapping[str, bytes],
    advertisements: Mapping[str, Advertisement],
    length: int | None = None,
) -> npt.NDArray[np.uint64]:
    """The uint64 sum of the survivors' encoded updates (``decode`` it with their total sample count).

    ``masked`` holds one masked vector per survivor; ``seeds`` the recovered round seed of every
    dropout (``ledger.secagg.reveal.recover_dropout_seeds``); ``length`` the model's parameter
    count (default: the first vector's). Refuses, one sentence each: a vector of the wrong dtype or
    length, a party outside the cohort or not a survivor, a missing seed or one that does not give
    the advertised key, and a round ``check_unmaskable`` refuses (it must be cancelled instead).
    """
    ads = by_party(advertisements)
    alive, dropped = split_round(params, ads, survivors, dropouts)
    check_unmaskable(params, context, ads, alive)
    vectors = {cohort_member(params, p, "submitter"): v for p, v in masked.items()}
    if sorted(vectors, key=address_order) != alive:
        extra = sorted(set(vectors) - set(alive), key=address_order)
        lacking = sorted(set(alive) - set(vectors), key=address_order)
        raise MaskedVectorError(
            "the masked vectors do not match the survivors ("
            + "; ".join(filter(None, (extra and f"not survivors: {', '.join(extra)}",
                                      lacking and f"missing: {', '.join(lacking)}")))
            + "); give exactly one masked vector per party that submitted."
        )
    expected = len(vectors[alive[0]]) if length is None else length
    for party in alive:
        check_advertisement(params, context, ads[party])
        check_masked(vectors[party], expected, party)
    total = np.zeros(expected, dtype=WORD)
    for party in alive:
        np.add(total, vectors[party], out=total)
    return remove_dropout_masks(params, context, total, survivors=alive, dropouts=dropped, seeds=seeds,
                                advertisements=ads)


def remove_dropout_masks(
    params: SecureParams,
    context: RoundContext,
    total: npt.NDArray[np.uint64],
    *,
    survivors: list[str] | tuple[str, ...],
    dropouts: list[str] | tuple[str, ...],
    seeds: Mapping[str, bytes],
    advertisements: Mapping[str, Advertisement],
) -> npt.NDArray[np.uint64]:
    """Take from ``total`` (the survivors' masked vectors summed modulo 2**64) the masks added for dropouts.

    Works in place and returns ``total``. ``secure_sum`` calls it; a caller that sums the masked
    vectors as it streams them from the store (memory of one model, not one per party) calls it once
    on its sum, after the same ``check_unmaskable`` and ``check_masked`` of each vector.
    """
    ads = by_party(advertisements)
    alive, dropped = split_round(params, ads, survivors, dropouts)
    check_unmaskable(params, context, ads, alive)
    check_masked(total, len(total), "the survivors' sum")
    scratch = np.empty(CHUNK, dtype=WORD)
    alive_set = set(alive)
    recovered = {cohort_member(params, a, "dropout"): seed for a, seed in seeds.items()}
    for dropout in dropped:
        key = _dropout_key(context, dropout, recovered, ads[dropout])
        for survivor in neighbours_of(params, dropout, context):
            if survivor not in alive_set:
                continue
            pair = pair_key(context, key, dropout, survivor, ads[survivor].round_public_key)
            # the survivor added +mask when it is below the dropout in address order: take it away
            apply_pair_mask(total, pair, add=address_order(survivor) > address_order(dropout), scratch=scratch)
    return total


def _dropout_key(
    context: RoundContext, dropout: Address, seeds: Mapping[str, bytes], advertisement: Advertisement
) -> X25519PrivateKey:
    seed = seeds.get(dropout)
    if seed is None:
        raise InvalidAdvertisementError(
            f"no recovered round seed for the dropout {dropout}; recover it from the reveals first."
        )
    key = round_private_key(seed, dropout, context)
    if key.public_key().public_bytes_raw() != advertisement.round_public_key:
        raise InvalidAdvertisementError(
            f"the seed given for {dropout} does not give its advertised round key; recover it from the reveals again."
        )
    return key


def secure_fedavg(
    params: SecureParams,
    context: RoundContext,
    *,
    masked: Mapping[str, npt.NDArray[np.uint64]],
    samples: Mapping[str, int],
    dropouts: list[str] | tuple[str, ...],
    seeds: Mapping[str, bytes],
    advertisements: Mapping[str, Advertisement],
    length: int | None = None,
) -> npt.NDArray[np.float32]:
    """The survivors' FedAvg (weighted by ``samples``, each survivor's public sample count), decoded to float32."""
    survivors = sorted((cohort_member(params, p, "submitter") for p in masked), key=address_order)
    counts = {cohort_member(params, p, "submitter"): n for p, n in samples.items()}
    if set(counts) != set(survivors):
        raise MaskedVectorError("give exactly one sample count per survivor, the count its submission declared.")
    total = secure_sum(params, context, masked=masked, survivors=survivors, dropouts=dropouts, seeds=seeds,
                       advertisements=advertisements, length=length)
    return decode(total, sum(check_samples(counts[p], params) for p in survivors), params)

