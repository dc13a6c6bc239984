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


def fixed_round() -> SecureRound:
    """Five parties with fixed seeds: the masks, and so the statistics below, are the same in every run."""
    secure = new_round()
    for i, party in enumerate(secure.params.cohort):
        secure.seeds[party] = bytes([i + 1]) * 16
        secure.advertisements[party] = make_advertisement(
            secure.params, secure.context, party=party, seed=secure.seeds[party], long_term_keys=secure.registry
        )
    return secure


def uniformity(words: np.ndarray) -> tuple[float, float, float]:
    """Chi-square p-value of the byte frequencies, KS p-value of the words as uniform on [0, 1), their mean."""
    counts = np.bincount(words.view(np.uint8), minlength=256)
    chi2 = stats.chisquare(counts).pvalue
    unit = (words >> np.uint64(11)).astype(np.float64) / 2.0**53
    return chi2, stats.kstest(unit, "uniform").pvalue, float(unit.mean())


def test_a_masked_zero_update_and_a_masked_real_update_are_indistinguishable() -> None:
    secure = fixed_round()
    party = secure.params.cohort[2]
    real = np.random.default_rng(11).normal(0.0, 2.0, WORDS).astype(np.float32)
    zero = np.zeros(WORDS, dtype=np.float32)
    masked = {
        name: masked_vector(update, 500, secure.params, secure.context, party=party, seed=secure.seeds[party],
                            advertisements=secure.advertisements)
        for name, update in (("zero", zero), ("real", real))
    }
    for words in masked.values():
        chi2, ks, mean = uniformity(words)
        assert chi2 > 1e-4 and ks > 1e-4  # uniform
        assert abs(mean - 0.5) < 5 / np.sqrt(12 * WORDS)  # 5 standard deviations
    two_sample = stats.ks_2samp((masked["zero"] >> np.uint64(11)).astype(np.float64),
                                (masked["real"] >> np.uint64(11)).astype(np.float64))
    assert two_sample.pvalue > 1e-4
    # the same tests do tell the unmasked encodings apart at once: they have the power to see a difference
    plain_zero, plain_real = encode(zero, 500, secure.params), encode(real, 500, secure.params)
    assert uniformity(plain_real)[0] < 1e-12 and uniformity(plain_zero)[0] < 1e-12
    assert stats.ks_2samp(plain_zero.astype(np.float64), plain_real.astype(np.float64)).pvalue < 1e-12


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
    with pytest.raises(RevealForSubmitterError, match=f"{cohort[3]} is not a dropout"):
        recover_dropout_seeds(five.params, five.context, advertisements=five.advertisements, dropouts=[],
                              reveals=[rogue])


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
