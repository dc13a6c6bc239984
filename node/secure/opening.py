"""What ``round open --secure`` (and the demo) write into a round's config: the cohort, the threshold, the key phase.

The cohort is fixed at opening: by default every admitted party that has registered an encryption key
(its shares are encrypted to that key), or the addresses given. The threshold defaults to a majority
of a party's neighbours (and at least 2); each party masks with every other one up to 16 parties
(``neighbours`` = cohort - 1), and with 16 neighbours beyond that (SecAgg+: the cost grows with k,
not with the cohort). The key phase takes the first ``key_window`` seconds of the round.
"""

from __future__ import annotations

from ledger.chain.federation import FederationClient
from ledger.errors import InvalidInputError
from ledger.secagg.params import DEFAULT_CLIP, DEFAULT_SCALE_BITS, MIN_PARTIES, SecureParams
from ledger.types import Address
from node.secure.settings import SecureRound

MAX_FULL_GRAPH = 16


def default_cohort(federation: FederationClient) -> list[Address]:
    """Every admitted party with an encryption key registered on chain."""
    return [p.address for p in federation.participants()
            if p.status == "admitted" and federation.encryption_key(p.address) is not None]


def default_neighbours(parties: int) -> int:
    """Everyone up to ``MAX_FULL_GRAPH + 1`` parties, then ``MAX_FULL_GRAPH`` (made even when ``parties`` is odd)."""
    if parties <= MAX_FULL_GRAPH + 1:
        return parties - 1
    return MAX_FULL_GRAPH


def secure_round(
    federation: FederationClient, *, opens_at: int, deadline: int, max_samples: int, cohort: list[str] | None = None,
    threshold: int | None = None, neighbours: int | None = None, key_window: int | None = None,
    clip: float = DEFAULT_CLIP, scale_bits: int = DEFAULT_SCALE_BITS,
) -> SecureRound:
    """The ``secure_aggregation`` section for a round opened at ``opens_at`` that closes at ``deadline``."""
    members = list(cohort) if cohort is not None else default_cohort(federation)
    if len(members) < MIN_PARTIES:
        raise InvalidInputError(
            f"a secure round needs at least {MIN_PARTIES} parties in its cohort and "
            f"{'the list given has' if cohort is not None else 'only'} {len(members)} "
            f"{'' if cohort is not None else 'admitted part(ies) have an encryption key registered'}; each party runs "
            "`fedledger key new-encryption NAME` and `fedledger key publish-encryption --key NAME --from ITS_KEY` first."
        )
    if cohort is not None:
        lacking = [a for a in members if federation.encryption_key(a) is None]
        if lacking:
            raise InvalidInputError(
                f"{', '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no encryption key registered on chain, "
                "so no share can be encrypted to it; it registers one first (`fedledger key publish-encryption`)."
            )
    k = default_neighbours(len(members)) if neighbours is None else neighbours
    t = max(2, k // 2 + 1) if threshold is None else threshold
    window = (deadline - opens_at) // 2 if key_window is None else key_window
    if not 0 < window < deadline - opens_at:
        raise InvalidInputError(
            f"--key-window {window} must be more than 0 and less than the round's {deadline - opens_at} seconds: the "
            "parties advertise keys in it, then train and submit before the deadline."
        )
    params = SecureParams(cohort=tuple(members), threshold=t, neighbours=k, max_samples=max_samples, clip=clip,
                          scale_bits=scale_bits)
    return SecureRound(params=params, key_deadline=opens_at + window)
