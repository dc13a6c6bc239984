"""After the deadline: survivors reveal their shares of the dropouts' seeds, and anyone recovers them.

The chain, not any server, says who submitted before the deadline, and the contract refuses a
submission after it. So the dropouts (advertised, did not submit) are a public fact, a dropout's
masked vector can never appear later, and revealing its seed exposes nothing: this is why the
second, self-mask layer of Bonawitz et al. (which guards against a server that claims a live party
dropped) is not needed here. ``shares_to_reveal`` still refuses, on its own, to reveal anything
about a party the caller lists as having submitted, and refuses to reveal at all when unmasking
would expose a survivor or more than the sum (``ledger.secagg.graph.check_unmaskable``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.secagg.context import RoundContext, address_order
from ledger.secagg.documents import Advertisement, Reveal, RevealedShare, by_party
from ledger.secagg.errors import (
    InvalidAdvertisementError,
    RevealForSubmitterError,
    TooFewSharesError,
    WrongShareError,
)
from ledger.secagg.graph import check_unmaskable, cohort_member
from ledger.secagg.params import SecureParams
from ledger.secagg.shares import check_revealed_share, open_share, recover_round_seed
from ledger.types import Address


def _parties(params: SecureParams, parties: Iterable[str], what: str) -> list[Address]:
    return sorted({cohort_member(params, p, what) for p in parties}, key=address_order)


def split_round(
    params: SecureParams, advertised: Iterable[str], submitted: Iterable[str], dropouts: Iterable[str]
) -> tuple[list[Address], list[Address]]:
    """(survivors, dropouts), checked: dropouts advertised and did not submit, survivors advertised.

    A dropout that submitted is RevealForSubmitterError: revealing its seed would expose its update.
    """
    advertised_set = set(_parties(params, advertised, "advertised party"))
    survivors = _parties(params, submitted, "submitter")
    dropped = _parties(params, dropouts, "dropout")
    submitters = sorted(set(dropped) & set(survivors), key=address_order)
    if submitters:
        raise RevealForSubmitterError(
            f"{', '.join(submitters)} submitted a masked vector, so no share of its round seed may be revealed: "
            "that would expose its update; reveal only for parties the chain shows did not submit."
        )
    never = [d for d in dropped if d not in advertised_set]
    if never:
        raise InvalidAdvertisementError(
            f"{', '.join(never)} never advertised, so it dealt no shares and added no masks; it is not a dropout "
            "to reveal for."
        )
    missing = [a for a in advertised_set if a not in survivors and a not in dropped]
    if missing:
        raise InvalidAdvertisementError(
            f"{', '.join(sorted(missing, key=address_order))} advertised and is listed neither as a submitter nor as "
            "a dropout; list every advertised party as one or the other, as the chain records them."
        )
    return survivors, dropped


def shares_to_reveal(
    params: SecureParams,
    context: RoundContext,
    *,
    holder: str,
    long_term_key: X25519PrivateKey,
    advertisements: Mapping[str, Advertisement],
    submitted: Iterable[str],
    dropouts: Iterable[str],
) -> Reveal:
    """``holder``'s reveal: its decrypted shares of every dropout that dealt it one.

    ``submitted`` and ``dropouts`` come from the chain's record of the round. Refuses (before
    decrypting anything) a dropout that submitted, and a round that ``check_unmaskable`` refuses.
    """
    me = cohort_member(params, holder, "share holder")
    ads = by_party(advertisements)
    survivors, dropped = split_round(params, ads, submitted, dropouts)
    check_unmaskable(params, context, ads, survivors)
    revealed = []
    for owner in dropped:
        if ads[owner].slot_of(me) is None:
            continue
        index, share = open_share(params, context, ads[owner], holder=me, long_term_key=long_term_key)
        revealed.append(RevealedShare(owner, index, share))
    return Reveal(context, me, tuple(revealed))


@dataclass(frozen=True)
class Recovery:
    """What the reveals gave: each dropout's round seed, and every offence with the holder who committed it.

    ``wrong_shares``: shares that do not match their commitments (that share disregarded).
    ``refused_reveals``: reveals holding a share of a party that is not a dropout, an attempt to
    expose a live party's update (that holder's whole reveal disregarded).
    """

    seeds: dict[Address, bytes]
    wrong_shares: tuple[WrongShareError, ...]
    refused_reveals: tuple[RevealForSubmitterError, ...]
    used: dict[Address, tuple[Address, ...]]  # dropout -> the holders whose valid shares were available

    @property
    def liars(self) -> tuple[Address, ...]:
        """The holders named by any offence, in address order: the receipt names them."""
        named = {Address(e.holder) for e in self.wrong_shares} | {Address(e.holder) for e in self.refused_reveals}
        return tuple(sorted(named, key=address_order))


def recover_dropout_seeds(
    params: SecureParams,
    context: RoundContext,
    *,
    advertisements: Mapping[str, Advertisement],
    dropouts: Iterable[str],
    reveals: Iterable[Reveal],
) -> Recovery:
    """Every dropout's round seed from the published reveals; offences are recorded and named, not fatal.

    A share that fails its commitment is disregarded and recorded (WrongShareError, naming holder
    and owner). A reveal holding a share of a party that is not a dropout is disregarded whole and
    recorded (RevealForSubmitterError, naming holder and owner): its publisher tried to expose a
    live party. So no one can block unmasking by publishing junk. A dropout left with fewer than T
    valid shares is TooFewSharesError, naming the holders whose shares were wrong: the round is
    cancelled with that reason.
    """
    ads = by_party(advertisements)
    dropped = _parties(params, dropouts, "dropout")
    offered: dict[Address, list[tuple[Address, int, bytes]]] = {d: [] for d in dropped}
    wrong: list[WrongShareError] = []
    refused: list[RevealForSubmitterError] = []
    for reveal in sorted(reveals, key=lambda r: address_order(r.party)):
        if reveal.context != context:
            raise InvalidAdvertisementError(
                f"the reveal of {reveal.party} is for {reveal.context.describe()}, not {context.describe()}; reject it."
            )
        holder = cohort_member(params, reveal.party, "revealing party")
        live = next((item.owner for item in reveal.shares if item.owner not in offered), None)
        if live is not None:
            refused.append(RevealForSubmitterError(
                f"{holder} revealed a share of {live}'s round seed, and {live} is not a dropout of "
                f"{context.describe()}; its reveal is disregarded: shares are revealed only for parties that did "
                "not submit.",
                holder=holder, owner=live,
            ))
            continue
        for item in reveal.shares:
            try:
                check_revealed_share(context, ads[item.owner], holder=holder, index=item.index, share=item.share)
            except WrongShareError as error:
                wrong.append(error)
                continue
            offered[item.owner].append((holder, item.index, item.share))
    seeds: dict[Address, bytes] = {}
    for dropout in dropped:
        try:
            seeds[dropout] = recover_round_seed(params, context, ads[dropout], offered[dropout])
        except TooFewSharesError as error:
            liars = sorted({e.holder for e in wrong if e.owner == dropout}, key=address_order)
            if not liars:
                raise
            raise TooFewSharesError(f"{error} (wrong shares came from {', '.join(liars)})") from None
    used = {d: tuple(h for h, _, _ in offered[d]) for d in dropped}
    return Recovery(seeds, tuple(wrong), tuple(refused), used)
