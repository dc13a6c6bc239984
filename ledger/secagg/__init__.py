"""Secure aggregation: the aggregator, and anyone else, learns only the sum of the survivors' updates.

The pure cryptographic core of issue 24 (no chain, no store): Bonawitz et al. 2017 with SecAgg+'s
neighbourhoods (Bell et al. 2020), the ledger being the broadcast channel. One round:

1. Opening: the round config's ``secure_aggregation`` section (``SecureParams``) fixes the cohort,
   the threshold T, the neighbourhood size k, the fixed-point scale and clip; with the round
   context (``RoundContext``: chain, contract, round) it fixes each party's k neighbours
   (``graph.neighbours_of``).
2. Advertising, before the deadline: each party draws a round seed, derives its round X25519 key,
   Shamir-shares the seed T-of-k among its neighbours, encrypted to their long-term keys registered
   on chain, and publishes an ``Advertisement`` (``shares.make_advertisement``).
   Every reader keeps the same advertisements (``shares.valid_advertisements``): a rejected one counts
   as none.
3. Submitting, before the deadline: its update, clipped, in fixed point, weighted, plus a pairwise
   mask with each neighbour that advertised (``masks.masked_vector``): public, and uniform to anyone
   who holds neither end's round key.
4. After the deadline the chain says who submitted. ``graph.check_unmaskable`` cancels a round
   whose unmasking would expose a survivor (all its neighbours dropped), a partial sum, or could not
   complete; otherwise every surviving neighbour of each dropout publishes a ``Reveal`` of its
   shares (``reveal.shares_to_reveal``), each checkable against the dropout's commitments.
5. Anyone recovers the dropouts' seeds (``reveal.recover_dropout_seeds``, wrong shares named),
   removes their masks from the sum of the masked vectors (``unmask.secure_sum``) and decodes
   (``encoding.decode``): FedAvg of the survivors' clipped updates to within 2**-(scale_bits+1).

No self-mask: in the original protocol a second mask (shared like the seed, revealed for survivors)
protects a party that a lying server declares dropped and whose late vector then arrives. Here
who submitted is a fact on chain, the contract refuses late submissions, and a reveal is made only
for parties the chain shows did not submit; so a dropout's vector never appears and a survivor's
seed is never revealed, which is what the second mask was for.

What it protects against: anyone holding the public record (masked vectors, advertisements,
reveals) and fewer than T of a party's neighbours learns nothing about its update beyond the
survivors' sum. What it does not: T or more colluding neighbours of a party recover its round seed
and, with its public masked vector, its update; the sum itself is public (and, in a small round,
the sum less one's own update says much about the others'); a party can submit a wrong (but
clipped) update, which secure aggregation hides as well as it hides an honest one.
"""

from ledger.secagg.context import RoundContext
from ledger.secagg.documents import Advertisement, Reveal, RevealedShare, ShareSlot
from ledger.secagg.encoding import decode, encode
from ledger.secagg.graph import check_unmaskable, exposed_survivors, neighbours_of, survivor_groups
from ledger.secagg.masks import masked_from_bytes, masked_to_bytes, masked_vector
from ledger.secagg.params import SecureParams
from ledger.secagg.reveal import Recovery, recover_dropout_seeds, shares_to_reveal
from ledger.secagg.shares import (
    check_advertisement,
    check_revealed_share,
    make_advertisement,
    new_round_seed,
    open_share,
    recover_round_seed,
    round_public_key,
    valid_advertisements,
)
from ledger.secagg.unmask import remove_dropout_masks, secure_fedavg, secure_sum

__all__ = [
    "Advertisement", "Recovery", "Reveal", "RevealedShare", "RoundContext", "SecureParams", "ShareSlot",
    "check_advertisement", "check_revealed_share", "check_unmaskable", "decode", "encode", "exposed_survivors",
    "make_advertisement", "masked_from_bytes", "masked_to_bytes", "masked_vector", "neighbours_of",
    "new_round_seed", "open_share", "recover_dropout_seeds", "recover_round_seed", "remove_dropout_masks", "round_public_key",
    "secure_fedavg", "secure_sum", "shares_to_reveal", "survivor_groups", "valid_advertisements",
]
