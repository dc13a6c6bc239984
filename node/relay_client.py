"""A party's side of ``fedledger relay serve``: sign the update, POST it, read the relay's answer.

The party's key signs here and never leaves the node; the relay pays the gas. :meth:`RelayClient.
submit_update` has the shape of ``FederationClient.submit_update``, so ``train_and_submit`` takes
it as its ``submit`` step; :meth:`RelayClient.post_round_message` has the shape of
``FederationClient.post_round_message``, so a secure round's ``advertise`` and ``reveal`` take it as
their ``post`` step; :meth:`RelayClient.publish_encryption_key` has the shape of
``FederationClient.publish_encryption_key`` (a secure round's cohort is the parties with a key). Before any training :meth:`RelayClient.check` asks the relay's health
endpoint, so a wrong URL or a relay for another deployment is found before the work, not after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from eth_account.signers.local import LocalAccount

from ledger.errors import InvalidInputError, LedgerError
from ledger.chain.federation import FederationClient, TxResult
from ledger.types import Cid
from node.services.clock import chain_time
from node.services.relay_service import (
    DONE,
    HEALTH_PATH,
    KEYS_PATH,
    MESSAGES_PATH,
    PATH,
    key_document,
    message_document,
    request_document,
)

SIGNATURE_TTL_S = 900  # how long a signed update stays valid (chain seconds)
HEALTH_TIMEOUT_S = 10.0
SUBMIT_MARGIN_S = 180.0  # past the relay's --max-wait: above its own bound on how long a request waits (+150 s)
MAX_RATE_LIMITED_WAIT_S = 30.0  # in all, per request, waiting out the relay's 429 Retry-After before giving up


class RelayError(LedgerError):
    """The relay could not be reached, or answered something that is not a relay's answer."""


class RelayRefusedError(LedgerError):
    """The relay (at check time) or the contract (in the batch) refused the update; ``reason`` is the error's name."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class RelayedTx(TxResult):
    """The transaction that recorded a relayed update, and who sent (and paid for) it."""

    relayer: str = ""


def check_relay_url(url: str) -> str:
    """``url`` without a trailing slash; InvalidInputError unless it is an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except (ValueError, AttributeError):
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise InvalidInputError(
            f"--relay {url!r} is not a relay URL; give http://HOST:PORT as printed by `fedledger relay serve`."
        )
    return url.strip().rstrip("/")


def checked_relay(url: str, federation: FederationClient) -> RelayClient:
    """The relay client of ``federation``'s signing account, checked (it answers, for this deployment) before
    anything is signed."""
    assert federation.account is not None, "a relayed party signs with the federation client's account"
    client = RelayClient(url, federation=federation, account=federation.account)
    client.check()
    return client


class RelayClient:
    """One relay, used by one party (``account``) of one deployment (``federation``)."""

    def __init__(self, url: str, *, federation: FederationClient, account: LocalAccount) -> None:
        self.url = check_relay_url(url)
        self.federation = federation
        self.account = account
        self._submit_timeout_s = SUBMIT_MARGIN_S  # raised by the relay's --max-wait once check() has read it

    def _request(self, method: str, path: str, *, timeout: float, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        """The relay's status and JSON answer; a 429 (rate limited) is waited out as its Retry-After says, up
        to MAX_RATE_LIMITED_WAIT_S in all, then answered as it is (a refusal naming RateLimited)."""
        waited = 0.0
        while True:
            status, answer, retry_after = self._send(method, path, timeout=timeout, body=body)
            if status != 429 or retry_after is None or waited + retry_after > MAX_RATE_LIMITED_WAIT_S:
                return status, answer
            time.sleep(retry_after)
            waited += retry_after

    def _send(
        self, method: str, path: str, *, timeout: float, body: dict[str, Any] | None
    ) -> tuple[int, Any, float | None]:
        try:
            response = requests.request(method, self.url + path, json=body, timeout=timeout)
        except requests.exceptions.Timeout:
            raise RelayError(f"the relay at {self.url} did not answer within {timeout:.0f} s; check that it runs "
                             "and that its chain mines blocks, then run the command again.") from None
        except requests.exceptions.RequestException as error:
            raise RelayError(f"cannot reach the relay at {self.url} ({type(error).__name__}); start it with "
                             "`fedledger relay serve` or check the --relay URL.") from None
        try:
            retry_after: float | None = float(response.headers.get("Retry-After", ""))
        except ValueError:  # absent, or an HTTP date: not waited for
            retry_after = None
        try:
            return response.status_code, response.json(), retry_after
        except ValueError:
            raise RelayError(f"{self.url} answered HTTP {response.status_code} without JSON, so it is not a fedledger "
                             "relay; check the --relay URL.") from None

    def check(self) -> dict[str, Any]:
        """The relay's health, after checking it relays for this party's deployment."""
        status, health = self._request("GET", HEALTH_PATH, timeout=HEALTH_TIMEOUT_S)
        if status != 200 or not isinstance(health, dict) or "contract" not in health:
            raise RelayError(f"{self.url} is not a fedledger relay (GET {HEALTH_PATH} answered HTTP {status}); "
                             "check the --relay URL.")
        if str(health["contract"]).lower() != self.federation.address.lower() or health.get("chain_id") != self.federation.chain_id:
            raise RelayError(
                f"the relay at {self.url} relays for contract {health['contract']} on chain id {health.get('chain_id')}, "
                f"not this workspace's {self.federation.address} on chain id {self.federation.chain_id}; use its own relay."
            )
        max_wait = health.get("max_wait")
        if isinstance(max_wait, (int, float)) and max_wait >= 0:
            self._submit_timeout_s = SUBMIT_MARGIN_S + float(max_wait)
        return health

    def submit_update(
        self, round_id: int, *, cid: Cid, samples: int, metrics_hash: bytes, epsilon_micros: int = 0
    ) -> RelayedTx:
        """Sign the update with the party's key, have the relay record it, return the transaction."""
        signed = self.federation.sign_update(
            self.account, round_id, cid=cid, samples=samples, metrics_hash=metrics_hash,
            epsilon_micros=epsilon_micros, deadline=chain_time(self.federation.w3) + SIGNATURE_TTL_S,
        )
        return self._relayed(PATH, request_document(round_id, signed), what="record the update")

    def post_round_message(self, round_id: int, kind: int, cid: Cid) -> RelayedTx:
        """Sign the round message (a secure round's ADVERTISE or REVEAL: ledger.contract_constants.
        RoundMessageKind) with the party's key, have the relay post it, return the transaction: the shape
        of ``FederationClient.post_round_message``, so node.secure.party takes it as its ``post`` step."""
        signed = self.federation.sign_round_message(
            self.account, round_id, kind=kind, cid=cid, deadline=chain_time(self.federation.w3) + SIGNATURE_TTL_S,
        )
        return self._relayed(MESSAGES_PATH, message_document(round_id, signed), what="post the round message")

    def publish_encryption_key(self, public_key: bytes) -> RelayedTx:
        """Sign the registration of ``public_key`` as the party's encryption key (in place of the key it has
        registered now, if any) with the party's key, have the relay send it, return the transaction: the
        shape of ``FederationClient.publish_encryption_key``."""
        signed = self.federation.sign_encryption_key(
            self.account, public_key, deadline=chain_time(self.federation.w3) + SIGNATURE_TTL_S,
        )
        return self._relayed(KEYS_PATH, key_document(signed), what="register the encryption key")

    def _relayed(self, path: str, document: dict[str, Any], *, what: str) -> RelayedTx:
        """POST ``document`` to ``path`` and read the transaction from the answer (its field DONE[path] true);
        ``what`` the relay did not do, for a refusal's sentence."""
        done = DONE[path]
        status, answer = self._request("POST", path, timeout=self._submit_timeout_s, body=document)
        if not isinstance(answer, dict):
            raise RelayError(f"the relay at {self.url} answered HTTP {status} with something else than a JSON object.")
        if status != 200 or not answer.get(done):
            reason = str(answer.get("error", f"HTTP {status}"))
            raise RelayRefusedError(
                f"the relay at {self.url} did not {what} ({reason}): "
                f"{answer.get('message', 'no reason given')}",
                reason,
            )
        return RelayedTx(str(answer["tx_hash"]), int(answer["block"]), int(answer["gas_used"]), str(answer["relayer"]))
