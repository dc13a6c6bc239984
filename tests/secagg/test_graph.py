"""The neighbour graph: k-regular, symmetric, deterministic, new every round; and the cancel reasons."""

from __future__ import annotations

import numpy as np
import pytest
from Crypto.Protocol.SecretSharing import Shamir

from ledger.secagg import (
    Advertisement,
    RoundContext,
    check_advertisement,
    check_unmaskable,
    encode,
    exposed_survivors,
    make_advertisement,
    neighbours_of,
    open_share,
    secure_sum,
    shares_to_reveal,
    survivor_groups,
)
from ledger.secagg.errors import (
    ExposedSurvivorError,
    InvalidAdvertisementError,
    NotInCohortError,
    PartialSumExposedError,
    TooFewSurvivorsError,
)
from ledger.secagg.masks import apply_pair_mask, pair_key
from ledger.secagg.shares import round_private_key
from tests.secagg.conftest import CONTRACT, address, new_round


@pytest.mark.parametrize(("n", "k"), [(5, 4), (6, 3), (10, 4), (11, 6), (40, 7), (40, 39), (101, 14)])
def test_the_graph_is_k_regular_symmetric_and_deterministic(n: int, k: int) -> None:
    secure = new_round(n, threshold=2, neighbours=k)
    graph = {p: neighbours_of(secure.params, p, secure.context) for p in secure.params.cohort}
    for party, peers in graph.items():
        assert len(set(peers)) == k and party not in peers
        assert all(party in graph[peer] for peer in peers)
        assert list(peers) == sorted(peers, key=str.lower)
    again = new_round(n, threshold=2, neighbours=k)
    assert all(neighbours_of(again.params, p, again.context) == graph[p] for p in again.params.cohort)


def test_neighbourhoods_change_from_round_to_round_and_contract_to_contract() -> None:
    secure = new_round(30, threshold=2, neighbours=4)
    party = secure.params.cohort[0]
    seen = {neighbours_of(secure.params, party, RoundContext(31337, CONTRACT, r)) for r in range(1, 6)}
    assert len(seen) == 5
    other = RoundContext(31337, "0x" + "11" * 20, secure.context.round_id)
    assert neighbours_of(secure.params, party, other) != neighbours_of(secure.params, party, secure.context)


def test_neighbours_are_restricted_to_those_that_advertised_when_asked() -> None:
    secure = new_round(10, threshold=2, neighbours=4)
    party = secure.params.cohort[0]
    peers = neighbours_of(secure.params, party, secure.context)
    assert neighbours_of(secure.params, party, secure.context, advertised=peers[1:]) == peers[1:]
    with pytest.raises(NotInCohortError, match="is not in this secure round's cohort"):
        neighbours_of(secure.params, address(500), secure.context)


def ring(n: int = 8):
    """n parties on a ring (k=2, T=2): each masks with its two ring neighbours only."""
    secure = new_round(n, threshold=2, neighbours=2)
    party = secure.params.cohort[0]
    order = [party]
    while len(order) < n:
        order.append(next(p for p in neighbours_of(secure.params, order[-1], secure.context) if p not in order))
    return secure, order


def test_a_survivor_whose_every_neighbour_dropped_is_exposed_and_the_round_is_refused_before_any_reveal() -> None:
    secure, order = ring()
    secure.advertise()
    lonely, left, right = order[0], order[-1], order[1]
    dropouts = [left, right]
    survivors = [p for p in order if p not in dropouts]
    secure.submit(survivors, 256, np.random.default_rng(3))
    assert exposed_survivors(secure.params, secure.context, survivors) == (lonely,)
    with pytest.raises(ExposedSurvivorError, match=f"every neighbour of {lonely} dropped") as caught:
        check_unmaskable(secure.params, secure.context, order, survivors)
    assert caught.value.parties == (lonely,)
    assert "cancel the round with that reason instead of unmasking it" in str(caught.value)
    holder = survivors[1]
    with pytest.raises(ExposedSurvivorError):
        shares_to_reveal(secure.params, secure.context, holder=holder, long_term_key=secure.long_term[holder],
                         advertisements=secure.advertisements, submitted=survivors, dropouts=dropouts)
    with pytest.raises(ExposedSurvivorError):
        secure_sum(secure.params, secure.context, masked=secure.masked, survivors=survivors, dropouts=dropouts,
                   seeds={d: secure.seeds[d] for d in dropouts}, advertisements=secure.advertisements)
    # What the refusal prevents: had the holders revealed, the public could strip the lonely survivor's masks.
    stripped = secure.masked[lonely].copy()
    for dropout in dropouts:
        shares = [open_share(secure.params, secure.context, secure.advertisements[dropout], holder=h,
                             long_term_key=secure.long_term[h])
                  for h in neighbours_of(secure.params, dropout, secure.context)]
        key = round_private_key(Shamir.combine(shares), dropout, secure.context)
        pair = pair_key(secure.context, key, dropout, lonely, secure.advertisements[lonely].round_public_key)
        apply_pair_mask(stripped, pair, add=lonely.lower() > dropout.lower())
    plain = encode(secure.updates[lonely], secure.samples[lonely], secure.params)
    assert stripped.tobytes() == plain.tobytes()


def test_survivors_split_into_groups_no_pair_joins_are_refused_as_partial_sums() -> None:
    secure, order = ring()
    dropouts = [order[0], order[4]]
    survivors = [p for p in order if p not in dropouts]
    groups = survivor_groups(secure.params, secure.context, survivors)
    assert sorted(map(len, groups)) == [3, 3]
    with pytest.raises(PartialSumExposedError, match="the survivors fall into 2 groups that no surviving pair joins"):
        check_unmaskable(secure.params, secure.context, order, survivors)


def test_too_few_survivors_or_share_holders_cancel_the_round() -> None:
    secure, order = ring()
    with pytest.raises(TooFewSurvivorsError, match=f"{order[1]} dropped and only 1 of its share holders survived"):
        check_unmaskable(secure.params, secure.context, order, [p for p in order if p not in order[1:3]])
    five = new_round()
    cohort = list(five.params.cohort)
    with pytest.raises(TooFewSurvivorsError, match=r"only 2 parties submitted and a secure round needs at least the threshold \(3\)"):
        check_unmaskable(five.params, five.context, cohort, cohort[:2])
    with pytest.raises(NotInCohortError, match="submitted without advertising a round key"):
        check_unmaskable(five.params, five.context, cohort[1:], cohort)


def test_a_beacon_fixed_after_the_cohort_redraws_the_graph_and_nothing_else() -> None:
    secure = new_round(30, threshold=2, neighbours=4)
    party = secure.params.cohort[0]
    plain = neighbours_of(secure.params, party, secure.context)
    beacons = [bytes([i]) * 32 for i in range(5)]
    drawn = {neighbours_of(secure.params, party, RoundContext(31337, CONTRACT, 7, beacon)) for beacon in beacons}
    assert len(drawn) == 5 and plain not in drawn
    assert RoundContext(31337, CONTRACT, 7, beacons[0]).encode() == secure.context.encode()


def test_an_advertisement_dealt_under_another_beacon_is_refused() -> None:
    secure = new_round(12, threshold=2, neighbours=4)
    party = secure.params.cohort[0]
    one, other = (RoundContext(31337, CONTRACT, 7, bytes([b]) * 32) for b in (1, 2))
    assert neighbours_of(secure.params, party, one) != neighbours_of(secure.params, party, other)
    advertisement = make_advertisement(secure.params, one, party=party, seed=bytes(16), long_term_keys=secure.registry)
    check_advertisement(secure.params, one, advertisement)
    moved = Advertisement.from_bytes(advertisement.to_bytes(), context=other)  # the bytes do not carry it...
    with pytest.raises(InvalidAdvertisementError, match="not to its neighbours"):  # ...the holders do
        check_advertisement(secure.params, other, moved)
