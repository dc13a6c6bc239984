"""Nothing made for one round, deployment, chain, party or purpose serves another; a dishonest dealer is named."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ledger.secagg import RoundContext, masked_vector, open_share, recover_round_seed, round_public_key
from ledger.secagg.errors import InconsistentSharesError
from ledger.secagg.masks import pair_key
from ledger.secagg.shares import SUITE, _share_info, round_private_key, share_commitment
from tests.secagg.conftest import CONTRACT, SecureRound, new_round

BASE = RoundContext(chain_id=31337, contract=CONTRACT, round_id=7)
OTHERS = [
    RoundContext(chain_id=1, contract=CONTRACT, round_id=7),
    RoundContext(chain_id=31337, contract="0x" + "22" * 20, round_id=7),
    RoundContext(chain_id=31337, contract=CONTRACT, round_id=8),
]


def test_round_keys_pair_keys_and_commitments_change_with_the_round_the_deployment_and_the_chain() -> None:
    seed, party, peer = bytes(16), "0x" + "aa" * 20, "0x" + "bb" * 20
    peer_key = round_public_key(bytes([1]) * 16, peer, BASE)
    base = (round_public_key(seed, party, BASE),
            pair_key(BASE, round_private_key(seed, party, BASE), party, peer, peer_key),
            share_commitment(BASE, party, peer, 1, bytes(16)))
    for other in OTHERS:
        moved = (round_public_key(seed, party, other),
                 pair_key(other, round_private_key(seed, party, BASE), party, peer, peer_key),
                 share_commitment(other, party, peer, 1, bytes(16)))
        assert all(a != b for a, b in zip(base, moved)), other
    assert round_public_key(seed, peer, BASE) != base[0]  # one seed, two parties: two keys


def test_a_masked_vector_made_for_one_round_does_not_unmask_in_another(five: SecureRound) -> None:
    party = five.params.cohort[0]
    update = np.zeros(64, np.float32)
    here = masked_vector(update, 1, five.params, five.context, party=party, seed=five.seeds[party],
                         advertisements=five.advertisements)
    elsewhere = new_round(round_id=8)
    elsewhere.advertise()
    there = masked_vector(update, 1, elsewhere.params, elsewhere.context, party=party, seed=elsewhere.seeds[party],
                          advertisements=elsewhere.advertisements)
    assert (here != there).all()


def test_a_share_sealed_for_one_round_does_not_open_in_another(five: SecureRound) -> None:
    owner, holder = five.params.cohort[0], five.params.cohort[1]
    moved = dataclasses.replace(five.advertisements[owner], context=OTHERS[2])
    with pytest.raises(InconsistentSharesError):
        open_share(five.params, OTHERS[2], moved, holder=holder, long_term_key=five.long_term[holder])


def test_shares_that_match_their_commitments_but_not_one_polynomial_name_their_dealer(five: SecureRound) -> None:
    owner = five.params.cohort[0]
    honest = five.advertisements[owner]
    bogus = dict(Shamir.split(five.params.threshold, 4, os.urandom(16)))  # shares of another seed for index 1
    slots = []
    for slot in honest.shares:
        if slot.index == 1:
            share = bogus[1]
            info = _share_info(five.context, owner, honest.round_public_key, slot.holder, 1)
            holder_key = five.registry[slot.holder]
            slot = dataclasses.replace(
                slot, encrypted_share=SUITE.encrypt(share, X25519PublicKey.from_public_bytes(holder_key), info=info),
                commitment=share_commitment(five.context, owner, slot.holder, 1, share))
        slots.append(slot)
    dishonest = dataclasses.replace(honest, shares=tuple(slots))
    shares = [(s.holder, *open_share(five.params, five.context, dishonest, holder=s.holder,
                                     long_term_key=five.long_term[s.holder])) for s in slots]
    with pytest.raises(InconsistentSharesError, match=f"{owner} dealt inconsistent shares") as caught:
        recover_round_seed(five.params, five.context, dishonest, shares[:3])
    assert caught.value.owner == owner
    assert recover_round_seed(five.params, five.context, dishonest, shares[1:]) == five.seeds[owner]
