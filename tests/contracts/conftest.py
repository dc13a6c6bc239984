"""Helpers for the contract tests: a federation with an agreement, parties that joined or were admitted."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from eth_account.signers.local import LocalAccount

from ledger.chain.federation import FederationClient
from tests.fixtures_chain import TestChain

TERMS = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
TERMS_2 = "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"
MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
UPDATE = TERMS_2
METRICS = bytes(range(32))
CONFIG = b"\x11" * 32


@dataclass
class Fed:
    """A deployed federation seen by its admin, with the chain it runs on."""

    chain: TestChain
    admin: FederationClient

    def party(self, *, join: bool = True, approve: bool = True) -> tuple[LocalAccount, FederationClient]:
        """A new funded key; joined under the current agreement and admitted unless told otherwise."""
        account = self.chain.new_account()
        if join:
            self.join(account)
            if approve:
                self.admin.approve(account.address)
        return account, self.admin.with_account(account)

    def join(self, account: LocalAccount, *, version: int | None = None) -> None:
        version = self.admin.agreement_version() if version is None else version
        deadline = self.chain.now() + 3600
        signature = self.admin.sign_join(account, version=version, deadline=deadline)
        self.admin.join(account.address, version=version, deadline=deadline, signature=signature)

    def open_round(self, *, seconds: int = 600, min_updates: int = 1) -> int:
        round_id, _ = self.admin.open_round(
            base_cid=MODEL, deadline=self.chain.now() + seconds, min_updates=min_updates, config_hash=CONFIG
        )
        return round_id


def make_fed(chain: TestChain) -> Fed:
    admin = chain.deploy()
    admin.publish_agreement(TERMS)
    return Fed(chain, admin)


@pytest.fixture
def fed(chain: TestChain) -> Fed:
    return make_fed(chain)


def submit(client: FederationClient, round_id: int) -> None:
    client.submit_update(round_id, cid=UPDATE, samples=100, metrics_hash=METRICS)
