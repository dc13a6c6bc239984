"""Who masks with whom (SecAgg+): a k-regular graph over the cohort, drawn afresh for every round.

The graph is a Harary graph (a ring in which each party is joined to the k/2 nearest parties on
each side, plus the party opposite when k is odd), laid over the cohort in an order permuted by
SHA-256 of the round's context (with its beacon, when the caller gives one) and each address.
Bell et al. draw a random graph instead; this one is as unpredictable as its permutation, which is
why a beacon fixed after the cohort should be given (``RoundContext``), and its k-connectivity means
fewer than k dropouts can never split the survivors. Everything it depends on is public and fixed at
the round's opening, so every party computes its own neighbours alone, before anyone advertises,
and the shares it deals in its one advertisement go to the right holders. The order changes with
the round, so no party keeps the same neighbours from round to round.

The graph is over the cohort, not over the parties that advertised: those are known only after
every advertisement is in, and a party's shares must be dealt in its own advertisement. A party
masks with its neighbours that advertised (the *mask graph*); the shares it dealt to a neighbour
that never advertised simply go unused.

Privacy after unmasking rests on the survivors' part of the mask graph: the dropouts' masks are
removed in public, so a survivor with no surviving neighbour is left unmasked, and survivors that
fall into groups no surviving pair links would each have their group's sum published.
``check_unmaskable`` refuses both, and a round where some dropout has fewer surviving share holders
than the threshold, before anyone reveals anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from functools import lru_cache

from ledger.secagg.context import LABEL_GRAPH, RoundContext, address_bytes, address_order, parse_address
from ledger.secagg.errors import (
    ExposedSurvivorError,
    NotInCohortError,
    PartialSumExposedError,
    TooFewSurvivorsError,
)
from ledger.secagg.params import SecureParams
from ledger.types import Address


def ring_order(params: SecureParams, context: RoundContext) -> tuple[Address, ...]:
    """The cohort in this round's ring order: by SHA-256(label, context, beacon, address)."""
    prefix = LABEL_GRAPH + context.encode() + len(context.beacon).to_bytes(1, "big") + context.beacon
    return tuple(sorted(params.cohort, key=lambda a: hashlib.sha256(prefix + address_bytes(a)).digest()))


@lru_cache(maxsize=16)
def _graph(params: SecureParams, context: RoundContext) -> dict[Address, tuple[Address, ...]]:
    order = ring_order(params, context)
    n, k = len(order), params.neighbours
    offsets = set(range(1, k // 2 + 1)) | {n - d for d in range(1, k // 2 + 1)}
    if k % 2:
        offsets.add(n // 2)  # n is even here: SecureParams refuses an odd n x k
    return {
        party: tuple(sorted((order[(i + d) % n] for d in offsets), key=address_order)) for i, party in enumerate(order)
    }


def cohort_member(params: SecureParams, party: str, what: str = "party") -> Address:
    """``party`` checksummed, or NotInCohortError when it is not in the cohort."""
    address = party if isinstance(party, str) and party in params.members else parse_address(party, what)
    if address not in params.members:
        raise NotInCohortError(
            f"{address} is not in this secure round's cohort; only the {len(params.cohort)} parties fixed "
            "at the round's opening take part."
        )
    return address


def neighbours_of(
    params: SecureParams, party: str, context: RoundContext, advertised: Iterable[str] | None = None
) -> tuple[Address, ...]:
    """``party``'s neighbours in ascending address order: all k of them, or those in ``advertised``."""
    neighbours = _graph(params, context)[cohort_member(params, party)]
    if advertised is None:
        return neighbours
    present = {a if isinstance(a, str) and a in params.members else parse_address(a) for a in advertised}
    return tuple(a for a in neighbours if a in present)


def survivor_groups(
    params: SecureParams, context: RoundContext, survivors: Iterable[str]
) -> list[tuple[Address, ...]]:
    """The survivors split into groups joined by surviving pairs (connected components), in address order."""
    alive = sorted({cohort_member(params, s, "survivor") for s in survivors}, key=address_order)
    graph = _graph(params, context)
    alive_set, seen, groups = set(alive), set(), []
    for start in alive:
        if start in seen:
            continue
        seen.add(start)
        group, frontier = [start], [start]
        while frontier:
            for peer in graph[frontier.pop()]:
                if peer in alive_set and peer not in seen:
                    seen.add(peer)
                    group.append(peer)
                    frontier.append(peer)
        groups.append(tuple(sorted(group, key=address_order)))
    return groups


def exposed_survivors(
    params: SecureParams, context: RoundContext, survivors: Iterable[str]
) -> tuple[Address, ...]:
    """The survivors none of whose neighbours survived: unmasking would leave their vectors bare."""
    return tuple(group[0] for group in survivor_groups(params, context, survivors) if len(group) == 1)


def check_unmaskable(
    params: SecureParams, context: RoundContext, advertised: Iterable[str], survivors: Iterable[str]
) -> None:
    """Refuse, with the reason to cancel the round, a round whose unmasking would expose more than the sum.

    Call it once the chain says who submitted and before anyone reveals a share. Raises
    TooFewSurvivorsError (fewer survivors than the threshold, or a dropout with fewer surviving
    share holders than the threshold), ExposedSurvivorError (a survivor with no surviving neighbour)
    or PartialSumExposedError (survivors in groups no surviving pair joins).
    """
    advertised_set = {cohort_member(params, a, "advertised party") for a in advertised}
    alive = {cohort_member(params, s, "survivor") for s in survivors}
    strangers = sorted(alive - advertised_set, key=address_order)
    if strangers:
        raise NotInCohortError(
            f"{', '.join(strangers)} submitted without advertising a round key, so no pair mask hides its "
            "vector; reject its submission."
        )
    if len(alive) < params.threshold:
        raise TooFewSurvivorsError(
            f"only {len(alive)} parties submitted and a secure round needs at least the threshold "
            f"({params.threshold}); cancel the round with that reason.",
            parties=sorted(alive, key=address_order),
        )
    graph = _graph(params, context)
    for dropout in sorted(advertised_set - alive, key=address_order):
        holders = [h for h in graph[dropout] if h in alive]
        if len(holders) < params.threshold:
            raise TooFewSurvivorsError(
                f"{dropout} dropped and only {len(holders)} of its share holders survived, fewer than the "
                f"threshold ({params.threshold}), so its masks cannot be removed; cancel the round with that reason.",
                parties=[dropout],
            )
    exposed = exposed_survivors(params, context, alive)
    if exposed:
        raise ExposedSurvivorError(
            f"every neighbour of {', '.join(exposed)} dropped, so removing their masks would publish "
            f"{'its update' if len(exposed) == 1 else 'their updates'}; cancel the round with that reason "
            "instead of unmasking it.",
            parties=exposed,
        )
    groups = survivor_groups(params, context, alive)
    if len(groups) > 1:
        described = "; ".join(", ".join(g) for g in groups)
        raise PartialSumExposedError(
            f"the survivors fall into {len(groups)} groups that no surviving pair joins ({described}), so "
            "unmasking would publish each group's sum; cancel the round with that reason.",
            parties=[a for g in groups for a in g],
        )
