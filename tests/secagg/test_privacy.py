"""What the public record says about an update: nothing from a masked vector, nothing from T-1 shares."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from Crypto.Protocol.SecretSharing import Shamir
from scipy import stats

from ledger.secagg import (
    Reveal,
    RevealedShare,
    check_revealed_share,
    encode,
    make_advertisement,
    masked_vector,
    open_share,
    recover_dropout_seeds,
    recover_round_seed,
    round_public_key,
    shares_to_reveal,
)
from ledger.secagg.errors import (
    InconsistentSharesError,
    RevealForSubmitterError,
    TooFewSharesError,
    WrongShareError,
)
from tests.secagg.conftest import SecureRound, new_round

WORDS = 1 << 16


def fixed_round(first_seed: int = 1) -> SecureRound:
    """Five parties with fixed seeds: the masks, and so the statistics below, are the same in every run."""
    secure = new_round()
    for i, party in enumerate(secure.params.cohort):
        secure.seeds[party] = bytes([first_seed + i]) * 16
        secure.advertisements[party] = make_advertisement(
            secure.params, secure.context, party=party, seed=secure.seeds[party], long_term_keys=secure.registry
        )
    return secure


def low_words(words: np.ndarray) -> np.ndarray:
    """The low 32 bits of each word, on [0, 1): where an update's fixed-point codes live (|code| < 2**31 here)."""
    return (words & np.uint64(0xFFFFFFFF)).astype(np.float64) / 2.0**32


def uniformity(words: np.ndarray) -> tuple[float, float, float]:
    """Chi-square p-value of the byte frequencies, KS p-value of the low halves as uniform, their mean."""
    counts = np.bincount(words.view(np.uint8), minlength=256)
    chi2 = stats.chisquare(counts).pvalue
    unit = low_words(words)
    return chi2, stats.kstest(unit, "uniform").pvalue, float(unit.mean())


def test_a_masked_zero_update_and_a_masked_real_update_are_indistinguishable() -> None:
    """Each masked as it would be in a round of its own (other seeds): one vector, one set of masks."""
    real = np.random.default_rng(11).normal(0.0, 2.0, WORDS).astype(np.float32)
    zero = np.zeros(WORDS, dtype=np.float32)
    masked = {}
    for name, update, first_seed in (("zero", zero, 1), ("real", real, 101)):
        secure = fixed_round(first_seed)
        party = secure.params.cohort[2]
        masked[name] = masked_vector(update, 500, secure.params, secure.context, party=party,
                                     seed=secure.seeds[party], advertisements=secure.advertisements)
    for words in masked.values():
        chi2, ks, mean = uniformity(words)
        assert chi2 > 1e-4 and ks > 1e-4  # uniform bytes, uniform low halves
        assert abs(mean - 0.5) < 5 / np.sqrt(12 * WORDS)  # within 5 standard deviations
    assert stats.ks_2samp(low_words(masked["zero"]), low_words(masked["real"])).pvalue > 1e-4
    zero_bytes = np.bincount(masked["zero"].view(np.uint8), minlength=256)
    real_bytes = np.bincount(masked["real"].view(np.uint8), minlength=256)
    assert stats.chi2_contingency(np.stack([zero_bytes, real_bytes])).pvalue > 1e-4
    # the same tests tell the unmasked encodings apart at once: they have the power to see a difference
    secure = fixed_round()
    plain_zero, plain_real = encode(zero, 500, secure.params), encode(real, 500, secure.params)
    assert uniformity(plain_real)[0] < 1e-12 and uniformity(plain_zero)[0] < 1e-12
    assert stats.ks_2samp(low_words(plain_zero), low_words(plain_real)).pvalue < 1e-12


def test_threshold_minus_one_shares_say_nothing_and_recovery_refuses_them(five: SecureRound) -> None:
    owner, holders = five.params.cohort[0], five.params.cohort[1:]
    advertisement = five.advertisements[owner]
    shares = [(h, *open_share(five.params, five.context, advertisement, holder=h, long_term_key=five.long_term[h]))
              for h in holders]
    too_few = shares[: five.params.threshold - 1]
    with pytest.raises(TooFewSharesError, match=f"only 2 valid share\\(s\\) of {owner}'s round seed were revealed and 3"):
        recover_round_seed(five.params, five.context, advertisement, too_few)
    guessed = Shamir.combine([(index, share) for _, index, share in too_few])
    assert guessed != five.seeds[owner]
    assert round_public_key(guessed, owner, five.context) != advertisement.round_public_key
    assert recover_round_seed(five.params, five.context, advertisement, shares[1:4]) == five.seeds[owner]


def test_a_wrong_revealed_share_is_caught_and_its_publisher_named(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[1], [p for p in cohort if p != cohort[1]]
    five.submit(survivors, 64, np.random.default_rng(12))
    reveals = [shares_to_reveal(five.params, five.context, holder=h, long_term_key=five.long_term[h],
                                advertisements=five.advertisements, submitted=survivors, dropouts=[dropout])
               for h in survivors]
    liar = reveals[2]
    item = liar.shares[0]
    lie = dataclasses.replace(item, share=bytes(b ^ 1 for b in item.share))
    reveals[2] = dataclasses.replace(liar, shares=(lie,))
    with pytest.raises(WrongShareError, match=f"{liar.party} revealed a share of {dropout}'s round seed") as caught:
        check_revealed_share(five.context, five.advertisements[dropout], holder=liar.party, index=lie.index,
                             share=lie.share)
    assert (caught.value.holder, caught.value.owner) == (liar.party, dropout)
    recovery = recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements,
                                     dropouts=[dropout], reveals=reveals)
    assert recovery.seeds[dropout] == five.seeds[dropout]  # three honest holders remain: T = 3
    assert recovery.liars == (liar.party,)
    assert liar.party not in recovery.used[dropout]
    with pytest.raises(TooFewSharesError, match=f"wrong shares came from {liar.party}"):
        recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements,
                              dropouts=[dropout], reveals=[r for r in reveals if r.party != reveals[0].party])


def test_no_reveal_is_ever_made_or_accepted_for_a_party_that_submitted(five: SecureRound) -> None:
    cohort = list(five.params.cohort)
    survivors = cohort
    holder = cohort[0]
    with pytest.raises(RevealForSubmitterError, match=f"{cohort[3]} submitted a masked vector, so no share"):
        shares_to_reveal(five.params, five.context, holder=holder, long_term_key=five.long_term[holder],
                         advertisements=five.advertisements, submitted=survivors, dropouts=[cohort[3]])
    index, share = open_share(five.params, five.context, five.advertisements[cohort[3]], holder=holder,
                              long_term_key=five.long_term[holder])
    rogue = Reveal(five.context, holder, (RevealedShare(cohort[3], index, share),))
    recovery = recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements, dropouts=[],
                                     reveals=[rogue])
    assert recovery.seeds == {} and recovery.liars == (holder,)
    (refusal,) = recovery.refused_reveals
    assert (refusal.holder, refusal.owner) == (holder, cohort[3])
    assert f"{cohort[3]} is not a dropout" in str(refusal) and "its reveal is disregarded" in str(refusal)


def test_a_share_dealt_wrong_names_its_owner_not_its_holder(five: SecureRound) -> None:
    owner, holder = five.params.cohort[0], five.params.cohort[1]
    advertisement = five.advertisements[owner]
    slot = advertisement.slot_of(holder)
    broken = dataclasses.replace(slot, commitment=bytes(32))
    tampered = dataclasses.replace(advertisement, shares=tuple(broken if s is slot else s for s in advertisement.shares))
    with pytest.raises(InconsistentSharesError, match=f"the share {owner} dealt to {holder} does not open") as caught:
        open_share(five.params, five.context, tampered, holder=holder, long_term_key=five.long_term[holder])
    assert caught.value.owner == owner
    other = five.params.cohort[2]
    with pytest.raises(InconsistentSharesError):  # another holder's key does not open it either
        open_share(five.params, five.context, advertisement, holder=holder, long_term_key=five.long_term[other])


def test_a_reveal_that_also_exposes_a_submitter_is_disregarded_whole_and_the_round_still_recovers(
    five: SecureRound,
) -> None:
    cohort = list(five.params.cohort)
    dropout, survivors = cohort[4], cohort[:4]
    reveals = [shares_to_reveal(five.params, five.context, holder=h, long_term_key=five.long_term[h],
                                advertisements=five.advertisements, submitted=survivors, dropouts=[dropout])
               for h in survivors]
    rogue_holder, victim = survivors[0], survivors[1]
    index, share = open_share(five.params, five.context, five.advertisements[victim], holder=rogue_holder,
                              long_term_key=five.long_term[rogue_holder])
    reveals[0] = dataclasses.replace(reveals[0], shares=tuple(sorted(
        (*reveals[0].shares, RevealedShare(victim, index, share)), key=lambda s: s.owner.lower())))
    recovery = recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements,
                                     dropouts=[dropout], reveals=reveals)
    assert recovery.seeds[dropout] == five.seeds[dropout]
    assert recovery.liars == (rogue_holder,) and rogue_holder not in recovery.used[dropout]
    assert recovery.refused_reveals[0].owner == victim
