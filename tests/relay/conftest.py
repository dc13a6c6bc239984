"""Relay test helpers: a deployment with an agreement, parties admitted without ever holding ether
(their join signature relayed by the admin), an open round, signed updates, and a relay serving
them over real HTTP in this process (the same Relay and server that `relay serve` runs)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger.ipfs.cid import RAW, cid_from_parts
from ledger.chain.federation import FederationClient, SignedEncryptionKey, SignedRoundMessage, SignedUpdate
from ledger.ipfs.store import ContentStore, EmbeddedStore
from node.services.log import ServiceLog
from node.services.relay_service import (
    KEYS_PATH,
    MESSAGES_PATH,
    PATH,
    Relay,
    key_document,
    make_server,
    message_document,
    request_document,
)
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


    def signed_message(self, party: LocalAccount, kind: int, cid: Cid, *, deadline: int = FAR) -> SignedRoundMessage:
        """``party``'s signed round message of ``kind`` for the open round."""
        return self.admin.sign_round_message(party, self.round_id, kind=kind, cid=cid, deadline=deadline)

    def signed_key(self, party: LocalAccount, public_key: bytes = b"\x55" * 32, *, deadline: int = FAR) -> SignedEncryptionKey:
        """``party``'s signed registration of ``public_key`` (in place of the key it has now)."""
        return self.admin.sign_encryption_key(party, public_key, deadline=deadline)


def make_federation(chain: TestChain) -> Federation:
    admin = chain.deploy()
    admin.publish_agreement(TERMS)
    round_id, _ = admin.open_round(base_cid=BASE, deadline=chain.now() + 3600, min_updates=1, config_hash=CONFIG_HASH)
    return Federation(chain, admin, round_id)


@dataclass
class RelayUnderTest:
    """A running relay, its store, and requests to it."""

    federation: Federation
    store: EmbeddedStore
    relay: Relay
    url: str

    def post(self, document: Any, *, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
        response = requests.post(self.url + PATH, data=raw, json=None if raw is not None else document, timeout=60)
        return response.status_code, response.json()

    def post_message(self, document: Any) -> tuple[int, dict[str, Any]]:
        response = requests.post(self.url + MESSAGES_PATH, json=document, timeout=60)
        return response.status_code, response.json()

    def post_key(self, document: Any) -> tuple[int, dict[str, Any]]:
        response = requests.post(self.url + KEYS_PATH, json=document, timeout=60)
        return response.status_code, response.json()

    def key(self, party: Any, public_key: bytes = b"\x55" * 32, **fields: Any) -> dict[str, Any]:
        """The request registering ``public_key`` as ``party``'s encryption key."""
        return key_document(self.federation.signed_key(party, public_key, **fields))

    def pinned_message(self, party: Any, kind: int, **fields: Any) -> dict[str, Any]:
        """The request for ``party``'s round message of ``kind``, its document pinned in the relay's store."""
        cid = self.store.add_bytes(f"message {kind} of {party.address}".encode())
        return message_document(self.federation.round_id, self.federation.signed_message(party, kind, cid, **fields))

    def pinned(self, party: Any, **fields: Any) -> dict[str, Any]:
        """The request for ``party``'s update, its blob pinned in the relay's store."""
        cid = self.store.add_bytes(f"update of {party.address}".encode())
        return request_document(self.federation.round_id, self.federation.signed(party, cid=cid, **fields))


@contextmanager
def running_relay(federation: Federation, tmp_path: Path, *, batch_size: int = 64, max_wait_s: float = 0.05) -> Iterator[RelayUnderTest]:
    """A relay for ``federation`` (sent by its admin) with its own store, serving on a free port."""
    store = EmbeddedStore(tmp_path / "store")
    with serving_relay(federation.admin, store, batch_size=batch_size, max_wait_s=max_wait_s) as (relay, url):
        yield RelayUnderTest(federation, store, relay, url)


@contextmanager
def serving_relay(relayer: FederationClient, store: ContentStore, *, batch_size: int = 64,
                  max_wait_s: float = 0.05) -> Iterator[tuple[Relay, str]]:
    """The relay `relay serve` runs, sent and paid for by ``relayer``, reading ``store``, on a free port: it and its URL."""
    relay = Relay(federation=relayer, store=store, batch_size=batch_size, max_wait_s=max_wait_s,
                  log=ServiceLog("relay")).start()
    server = make_server(relay, port=0)
    worker = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)  # a quick shutdown
    worker.start()
    try:
        yield relay, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        relay.close()
        server.shutdown()
        server.server_close()
