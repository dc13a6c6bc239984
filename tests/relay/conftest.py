"""Relay test helpers: a deployment with an agreement, parties admitted without ever holding ether
(their join signature relayed by the admin), an open round, and signed updates."""

from __future__ import annotations

from dataclasses import dataclass

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger.cid import RAW, cid_from_parts
from ledger.federation import FederationClient, SignedUpdate
from ledger.types import Cid
from tests.fixtures_chain import TestChain

TERMS = cid_from_parts(RAW, b"\x11" * 32)
BASE = cid_from_parts(RAW, b"\x22" * 32)
CONFIG_HASH = b"\x33" * 32
METRICS_HASH = b"\x44" * 32
FAR = 2**40  # a signature deadline no test reaches


@dataclass
class Federation:
    """A deployment (admin = the node's first account) with agreement 1 and round ``round_id`` open."""

    chain: TestChain
    admin: FederationClient
    round_id: int

    def gasless_party(self, *, admit: bool = True) -> LocalAccount:
        """A fresh key that never holds ether; it joins by signature (the admin relays it) and is admitted."""
        party: LocalAccount = Account.create()
        signature = self.admin.sign_join(party, version=1, deadline=FAR)
        self.admin.join(party.address, version=1, deadline=FAR, signature=signature)
        if admit:
            self.admin.approve(party.address)
        assert self.chain.w3.eth.get_balance(party.address) == 0
        return party

    def signed(self, party: LocalAccount, *, cid: Cid | None = None, deadline: int = FAR, samples: int = 10,
               round_id: int | None = None) -> SignedUpdate:
        """``party``'s signed update (by default to the open round, a CID of its own)."""
        return self.admin.sign_update(
            party, self.round_id if round_id is None else round_id, cid=cid or cid_from_parts(RAW, keccak(text=party.address)),
            samples=samples, metrics_hash=METRICS_HASH, deadline=deadline,
        )


def make_federation(chain: TestChain) -> Federation:
    admin = chain.deploy()
    admin.publish_agreement(TERMS)
    round_id, _ = admin.open_round(base_cid=BASE, deadline=chain.now() + 3600, min_updates=1, config_hash=CONFIG_HASH)
    return Federation(chain, admin, round_id)
