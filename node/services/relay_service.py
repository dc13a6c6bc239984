"""``fedledger relay serve``: record parties' signed updates on chain in batches, paying their gas.

A party that holds no ether signs its update (EIP-712, ``FederationClient.sign_update``) and POSTs
it here. The relay checks it at once (the request's shape and CID, the blob in the workspace's
store, then the signature, deadline, membership and round through
``FederationClient.check_signed_update``), queues it, and one sender thread sends the queue as
``submitUpdates`` batches of up to ``batch_size`` items, or whatever is queued ``max_wait_s`` after
the oldest item arrived. Each request blocks until its batch is mined (bounded), then gets the
transaction and block, or the contract error that kept its item out (``UpdateRejected``).

The request (``POST /updates``, JSON)::

    {"participant": "0x…", "round": 1, "cid": "bafkrei…", "samples": 120,
     "metrics_hash": "0x<64 hex>", "epsilon_micros": 0, "deadline": 1767225600,
     "signature": "0x<130 hex>"}

Answers: 200 ``{"recorded": true, "tx_hash", "block", "gas_used", "relayer", "round",
"participant", "cid", "item", "batch"}``; a refusal ``{"recorded": false, "error": NAME,
"message": SENTENCE}`` with 400 (malformed request), 422 (the blob or a rule of the contract),
503 (the chain or store failed) or 504 (no receipt in time). ``GET /health``: the relay's settings
and counts. Like every fedledger server it has no authentication and listens on 127.0.0.1 unless
told otherwise.

A secure round's party posts its round messages the same way (``POST /messages``): it signs the
message (EIP-712 ``RoundMessage``, ``FederationClient.sign_round_message``), the relay checks the
document is in its store and simulates ``postSignedRoundMessage`` (the contract judges the
signature, its deadline, who may post the kind and when), then sends it alone, at once, and answers
with the transaction. A message is one per party per round and kind, so it is not batched::

    {"participant": "0x…", "round": 1, "kind": 1, "cid": "bafkrei…", "deadline": 1767225600,
     "signature": "0x<130 hex>"}

answered 200 ``{"posted": true, "tx_hash", "block", "gas_used", "relayer", "round", "participant",
"kind", "cid"}`` or refused as an update is (``"posted": false``).

So does a party registering its encryption key (``POST /keys``; a secure round's cohort is the parties
with a key): it signs the key and the one it replaces (EIP-712 ``EncryptionKey``,
``FederationClient.sign_encryption_key``; ``previous_key`` null: none), the relay simulates
``publishSignedEncryptionKey`` (the contract judges the signature, its deadline, the key it replaces
and the key) and sends it alone, at once::

    {"participant": "0x…", "public_key": "0x<64 hex>", "previous_key": null, "deadline": 1767225600,
     "signature": "0x<130 hex>"}

answered 200 ``{"registered": true, "tx_hash", "block", "gas_used", "relayer", "participant",
"public_key"}`` or refused as an update is (``"registered": false``).

Every update costs the relay a store lookup, a signature check and chain reads, so ``POST /updates``
(and ``POST /messages``, ``POST /keys``) is rate limited before any of them (:class:`RateLimiter`, one budget for all): per client address and for all clients
together, each a bucket of ``rate × BURST_SECONDS`` requests refilled at ``rate`` per second; a
request over either answers 429 ``RateLimited`` with ``Retry-After``. The HTTP server keeps the
header and idle timeouts and the connection cap of :mod:`ledger.ipfs.serving`.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from web3 import Web3

from ledger.chain.connection import parse_address
from ledger.ipfs.cid import parse_cid
from ledger.contract_constants import MAX_BATCH_SIZE
from ledger.errors import ChainError, ContentNotFoundError, ContractRevertError, InvalidInputError, LedgerError, StoreError
from ledger.chain.federation import (
    RECEIPT_TIMEOUT,
    FederationClient,
    SignedEncryptionKey,
    SignedRoundMessage,
    SignedUpdate,
    TxResult,
)
from ledger.ipfs.serving import LimitedHandlerMixin, LimitedServerMixin, ServerLimits, ThrottledNotes
from ledger.ipfs.store import ContentStore
from node.services.log import ServiceLog

PATH = "/updates"
MESSAGES_PATH = "/messages"
KEYS_PATH = "/keys"
HEALTH_PATH = "/health"
MAX_BODY_BYTES = 16 * 1024  # a request is a few hundred bytes
FIELDS = ("participant", "round", "cid", "samples", "metrics_hash", "epsilon_micros", "deadline", "signature")
MESSAGE_FIELDS = ("participant", "round", "kind", "cid", "deadline", "signature")
KEY_FIELDS = ("participant", "public_key", "previous_key", "deadline", "signature")
# The answer's success field, per endpoint: true with the transaction, false with a refusal.
DONE = {PATH: "recorded", MESSAGES_PATH: "posted", KEYS_PATH: "registered"}
BURST_SECONDS = 10.0  # a bucket holds this many seconds' worth of requests
MAX_TRACKED_ADDRESSES = 10_000
# Each waiting party holds its connection until its batch is mined: a higher cap than other servers'.
NOT_FOUND = f"no such endpoint {{!r}}; POST {PATH}, {MESSAGES_PATH} or {KEYS_PATH}, or GET {HEALTH_PATH}."
RELAY_LIMITS = ServerLimits(header_timeout_s=10.0, idle_timeout_s=60.0, max_connections=512)


class RelayTimeoutError(ChainError):
    """The item's batch was not mined within the time a request waits."""


def request_document(round_id: int, update: SignedUpdate) -> dict[str, Any]:
    """The JSON a party POSTs for ``update`` to ``round_id``."""
    return {
        "participant": update.participant, "round": round_id, "cid": update.cid, "samples": update.samples,
        "metrics_hash": Web3.to_hex(update.metrics_hash), "epsilon_micros": update.epsilon_micros,
        "deadline": update.deadline, "signature": Web3.to_hex(update.signature),
    }


def message_document(round_id: int, message: SignedRoundMessage) -> dict[str, Any]:
    """The JSON a party POSTs to have ``message`` posted for ``round_id``."""
    return {
        "participant": message.participant, "round": round_id, "kind": int(message.kind), "cid": message.cid,
        "deadline": message.deadline, "signature": Web3.to_hex(message.signature),
    }


def key_document(signed: SignedEncryptionKey) -> dict[str, Any]:
    """The JSON a party POSTs to have its encryption key registered."""
    return {
        "participant": signed.participant, "public_key": Web3.to_hex(signed.public_key),
        "previous_key": None if signed.previous_key is None else Web3.to_hex(signed.previous_key),
        "deadline": signed.deadline, "signature": Web3.to_hex(signed.signature),
    }


def _whole(document: dict[str, Any], name: str, *, bits: int) -> int:
    """A JSON integer field that fits the contract's ``uint<bits>``."""
    value = document[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**bits:
        raise InvalidInputError(
            f"the field {name!r} must be a whole number from 0 to 2^{bits}-1, not {value!r}; fix the request."
        )
    return value


def _hex(document: dict[str, Any], name: str, *, length: int) -> bytes:
    value = document[name]
    try:
        if not isinstance(value, str) or not value.startswith("0x"):
            raise ValueError
        raw = bytes.fromhex(value[2:])
    except ValueError:
        raw = None
    if raw is None or len(raw) != length:
        raise InvalidInputError(
            f"the field {name!r} must be 0x and {2 * length} hex digits ({length} bytes), not {value!r}; fix the request."
        )
    return raw


def _document(body: bytes, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON object of a request body with every one of ``fields`` and a CID text; InvalidInputError else."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInputError("the request body is not JSON; POST one JSON object with the fields " + ", ".join(fields) + ".") from None
    if not isinstance(document, dict):
        raise InvalidInputError("the request body must be one JSON object with the fields " + ", ".join(fields) + ".")
    missing = [name for name in fields if name not in document]
    if missing:
        raise InvalidInputError(f"the request lacks the field(s) {', '.join(missing)}; send all of " + ", ".join(fields) + ".")
    if "cid" in fields and not isinstance(document["cid"], str):
        raise InvalidInputError(f"the field 'cid' must be a CID text, not {document['cid']!r}; fix the request.")
    return document


def parse_message_request(body: bytes) -> tuple[int, SignedRoundMessage]:
    """The round and signed round message a ``POST /messages`` body carries; InvalidInputError naming what is wrong."""
    document = _document(body, MESSAGE_FIELDS)
    message = SignedRoundMessage(
        participant=parse_address(document["participant"]),
        kind=_whole(document, "kind", bits=8),
        cid=parse_cid(document["cid"]),
        deadline=_whole(document, "deadline", bits=256),
        signature=_hex(document, "signature", length=65),
    )
    return _whole(document, "round", bits=256), message


def parse_key_request(body: bytes) -> SignedEncryptionKey:
    """The signed encryption key a ``POST /keys`` body carries; InvalidInputError naming what is wrong."""
    document = _document(body, KEY_FIELDS)
    return SignedEncryptionKey(
        participant=parse_address(document["participant"]),
        public_key=_hex(document, "public_key", length=32),
        previous_key=None if document["previous_key"] is None else _hex(document, "previous_key", length=32),
        deadline=_whole(document, "deadline", bits=256),
        signature=_hex(document, "signature", length=65),
    )


def parse_request(body: bytes) -> tuple[int, SignedUpdate]:
    """The round and signed update a request body carries; InvalidInputError naming what is wrong."""
    document = _document(body, FIELDS)
    update = SignedUpdate(
        participant=parse_address(document["participant"]),
        cid=parse_cid(document["cid"]),
        samples=_whole(document, "samples", bits=64),
        metrics_hash=_hex(document, "metrics_hash", length=32),
        epsilon_micros=_whole(document, "epsilon_micros", bits=64),
        deadline=_whole(document, "deadline", bits=256),
        signature=_hex(document, "signature", length=65),
    )
    return _whole(document, "round", bits=256), update


@dataclass
class _Item:
    """One queued update and, once its batch is mined, what became of it."""

    round_id: int
    update: SignedUpdate
    queued_at: float
    done: threading.Event = field(default_factory=threading.Event)
    answer: dict[str, Any] | None = None
    error: LedgerError | None = None


@dataclass
class RelayCounts:
    batches: int = 0
    recorded: int = 0
    rejected: int = 0  # at check time and by the contract
    gas_used: int = 0  # updates' batches, round messages and keys
    rate_limited: int = 0
    messages: int = 0  # round messages posted
    messages_refused: int = 0
    keys: int = 0  # encryption keys registered
    keys_refused: int = 0


@dataclass(frozen=True)
class RateLimits:
    """Requests per second allowed from one client address and from all together, and the bursts."""

    per_address: float = 10.0
    total: float = 100.0
    per_address_burst: float | None = None  # None: per_address × BURST_SECONDS
    total_burst: float | None = None

    def checked(self) -> RateLimits:
        for flag, value in (("--rate-limit", self.per_address), ("--global-rate-limit", self.total)):
            if not value > 0:
                raise InvalidInputError(f"{flag} must be a number of requests per second above 0, not {value}.")
        return self


class _Bucket:
    """A token bucket: ``burst`` requests at once, refilled at ``rate`` a second."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, burst: float, now: float) -> None:
        self.tokens, self.stamp = burst, now

    def take(self, rate: float, burst: float, now: float) -> float:
        """0 if a request may pass now (and count it), else the seconds until one may."""
        self.tokens = min(burst, self.tokens + (now - self.stamp) * rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / rate


class RateLimiter:
    """Per client address and global token buckets; :meth:`wait_for` says whether a request may pass."""

    def __init__(self, limits: RateLimits, *, clock: Any = time.monotonic) -> None:
        self.limits = limits.checked()
        self._address_burst = limits.per_address_burst or max(1.0, limits.per_address * BURST_SECONDS)
        self._total_burst = limits.total_burst or max(1.0, limits.total * BURST_SECONDS)
        self._clock = clock
        self._lock = threading.Lock()
        self._total = _Bucket(self._total_burst, clock())
        self._addresses: dict[str, _Bucket] = {}

    def wait_for(self, address: str) -> tuple[float, str]:
        """(0, "") when a request from ``address`` may pass now (it is counted); else the seconds to
        wait and which limit it met ("address" or "global")."""
        with self._lock:
            now = self._clock()
            bucket = self._addresses.get(address)
            if bucket is None:
                if len(self._addresses) >= MAX_TRACKED_ADDRESSES:
                    self._forget_idle(now)
                bucket = self._addresses[address] = _Bucket(self._address_burst, now)
            # Peek at the global bucket first: a request refused globally does not use up its address's share.
            self._total.tokens = min(self._total_burst, self._total.tokens + (now - self._total.stamp) * self.limits.total)
            self._total.stamp = now
            if self._total.tokens < 1:
                return (1 - self._total.tokens) / self.limits.total, "global"
            wait = bucket.take(self.limits.per_address, self._address_burst, now)
            if wait:
                return wait, "address"
            self._total.tokens -= 1
            return 0.0, ""

    def _forget_idle(self, now: float) -> None:
        """Drop addresses whose bucket has refilled (they are as new); if none has, drop them all."""
        rate, burst = self.limits.per_address, self._address_burst
        self._addresses = {address: bucket for address, bucket in self._addresses.items()
                           if bucket.tokens + (now - bucket.stamp) * rate < burst}
        if len(self._addresses) >= MAX_TRACKED_ADDRESSES:
            self._addresses.clear()


class Relay:
    """The queue and the sender thread; :meth:`submit` is what one request does."""

    def __init__(
        self,
        *,
        federation: FederationClient,
        store: ContentStore,
        batch_size: int,
        max_wait_s: float,
        log: ServiceLog,
        rate_limits: RateLimits = RateLimits(),
    ) -> None:
        check_batch_size(batch_size)
        if max_wait_s < 0:
            raise InvalidInputError(f"--max-wait must be 0 seconds or more, not {max_wait_s}.")
        self.federation = federation
        self.store = store
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.log = log
        self.counts = RelayCounts()
        self.limiter = RateLimiter(rate_limits)
        self._queue: list[_Item] = []
        self._changed = threading.Condition()
        self._closing = False
        self._sender = threading.Thread(target=self._send_loop, name="relay-sender", daemon=True)

    @property
    def answer_timeout_s(self) -> float:
        """How long a request waits for its batch: the batching wait, then a receipt, with a margin."""
        return self.max_wait_s + RECEIPT_TIMEOUT + 30

    def start(self) -> Relay:
        self._sender.start()
        return self

    def close(self) -> None:
        """Send what is queued, then stop the sender."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self._sender.is_alive():
            self._sender.join(self.answer_timeout_s)

    def status(self) -> dict[str, Any]:
        with self._changed:
            queued = len(self._queue)
        return {
            "status": "ok", "relayer": self.federation.sender, "contract": self.federation.address,
            "chain_id": self.federation.chain_id, "batch_size": self.batch_size, "max_wait": self.max_wait_s,
            "queued": queued, "batches": self.counts.batches, "recorded": self.counts.recorded,
            "rejected": self.counts.rejected, "gas_used": self.counts.gas_used,
            "rate_limited": self.counts.rate_limited, "messages": self.counts.messages,
            "messages_refused": self.counts.messages_refused, "keys": self.counts.keys,
            "keys_refused": self.counts.keys_refused, "rate_limit": self.limiter.limits.per_address,
            "global_rate_limit": self.limiter.limits.total,
        }

    def submit(self, round_id: int, update: SignedUpdate) -> dict[str, Any]:
        """Check, queue and wait for ``update``; the answer when recorded, else the LedgerError why not."""
        try:
            self._check(round_id, update)
        except LedgerError:
            with self._changed:
                self.counts.rejected += 1
            raise
        item = _Item(round_id, update, time.monotonic())
        with self._changed:
            if self._closing:
                raise ChainError("the relay is shutting down; send the update again to a running relay.")
            self._queue.append(item)
            self._changed.notify_all()
        if not item.done.wait(self.answer_timeout_s):
            raise RelayTimeoutError(
                f"the batch holding this update was not mined within {self.answer_timeout_s:.0f} s; check the "
                "chain, then ask the relay again (an update already recorded is refused as FederationAlreadySubmitted)."
            )
        if item.error is not None:
            raise item.error
        assert item.answer is not None
        return item.answer

    def _check(self, round_id: int, update: SignedUpdate) -> None:
        error = self._not_in_store(update.cid, what="update", readers="the aggregator")
        if error is not None:
            raise error
        error = self.federation.check_signed_update(round_id, update)
        if error is not None:
            raise error

    def post_message(self, round_id: int, message: SignedRoundMessage) -> dict[str, Any]:
        """Check ``message`` (its document in the store; then the contract's own verdict on the signature,
        its deadline, who and when, simulated: nothing is sent for a refused one) and post it alone, now;
        the answer, else the LedgerError why not. Messages are not batched: one per party, round and kind."""

        def check() -> LedgerError | None:
            missing = self._not_in_store(message.cid, what="document", readers="the round's parties and the aggregator")
            return missing or self.federation.check_signed_round_message(round_id, message)

        tx = self._send_alone(check, lambda: self.federation.post_signed_round_message(round_id, message),
                              what="message", counter="messages")
        self.log.info("posted", f"round {round_id}: posted {message.participant}'s round message of kind {message.kind} "
                      f"({message.cid}) in block {tx.block} ({tx.tx_hash}, gas {tx.gas_used}).", round=round_id,
                      participant=message.participant, kind=int(message.kind), tx_hash=tx.tx_hash, block=tx.block,
                      gas_used=tx.gas_used)
        return {
            "posted": True, "round": round_id, "participant": message.participant, "kind": int(message.kind),
            "cid": message.cid, "tx_hash": tx.tx_hash, "block": tx.block, "gas_used": tx.gas_used,
            "relayer": self.federation.sender,
        }

    def register_key(self, signed: SignedEncryptionKey) -> dict[str, Any]:
        """Check ``signed`` (the contract's own verdict on the signature, its deadline, the key it replaces and
        the key, simulated: nothing is sent for a refused one) and send it alone, now; the answer, else the
        LedgerError why not."""
        tx = self._send_alone(lambda: self.federation.check_signed_encryption_key(signed),
                              lambda: self.federation.publish_signed_encryption_key(signed), what="key", counter="keys")
        key = Web3.to_hex(signed.public_key)
        self.log.info("registered", f"registered {signed.participant}'s encryption key {key} in block {tx.block} "
                      f"({tx.tx_hash}, gas {tx.gas_used}).", participant=signed.participant, public_key=key,
                      tx_hash=tx.tx_hash, block=tx.block, gas_used=tx.gas_used)
        return {
            "registered": True, "participant": signed.participant, "public_key": key, "tx_hash": tx.tx_hash,
            "block": tx.block, "gas_used": tx.gas_used, "relayer": self.federation.sender,
        }

    def _not_in_store(self, cid: str, *, what: str, readers: str) -> ContentNotFoundError | None:
        """The refusal of a request naming content the relay's store lacks (its readers could not fetch it)."""
        if self.store.has(cid):
            return None
        return ContentNotFoundError(
            f"the {what} {cid} is not in the relay's store, so {readers} could not fetch it; "
            "pin it to the federation's store (`fedledger ipfs add`) before asking the relay."
        )

    def _send_alone(
        self, check: Callable[[], LedgerError | None], send: Callable[[], TxResult], *, what: str, counter: str,
    ) -> TxResult:
        """``check()`` (a refusal: raised, nothing sent), then ``send()`` at once, unless the relay is closing;
        counted under ``counter`` (sent) or ``counter``_refused."""
        try:
            error = check()
            if error is not None:
                raise error
            with self._changed:  # the relayer's nonces are safe: its client takes each under a per-address lock
                if self._closing:
                    raise ChainError(f"the relay is shutting down; send the {what} again to a running relay.")
            tx = send()
        except LedgerError:
            with self._changed:
                setattr(self.counts, f"{counter}_refused", getattr(self.counts, f"{counter}_refused") + 1)
            raise
        with self._changed:
            setattr(self.counts, counter, getattr(self.counts, counter) + 1)
            self.counts.gas_used += tx.gas_used
        return tx

    # ---------------------------------------------------------------- the sender thread

    def _next_batch(self) -> list[_Item] | None:
        """Wait for a batch to be due and take it off the queue (None: closing with nothing left).

        A batch holds items of one round (``submitUpdates`` takes one round id): the oldest item's
        round, up to ``batch_size`` of its items, due when that many are queued, when the oldest has
        waited ``max_wait_s``, or at close.
        """
        with self._changed:
            while True:
                if self._queue:
                    round_id = self._queue[0].round_id
                    same = [item for item in self._queue if item.round_id == round_id][: self.batch_size]
                    waited = time.monotonic() - self._queue[0].queued_at
                    if len(same) >= self.batch_size or waited >= self.max_wait_s or self._closing:
                        taken = {id(item) for item in same}
                        self._queue = [item for item in self._queue if id(item) not in taken]
                        return same
                    self._changed.wait(self.max_wait_s - waited)
                elif self._closing:
                    return None
                else:
                    self._changed.wait()

    def _send_loop(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._send(batch)

    def _send(self, batch: list[_Item]) -> None:
        round_id = batch[0].round_id
        try:
            outcome = self.federation.submit_updates(round_id, [item.update for item in batch])
        except LedgerError as error:  # the whole batch reverted (round closed, deadline passed) or the chain failed
            self.log.warning("batch-failed", f"the batch of {len(batch)} update(s) to round {round_id} was not "
                             f"recorded: {error}", round=round_id, items=len(batch), error=type(error).__name__)
            self._fail(batch, error)
            return
        except Exception as error:  # noqa: BLE001 - every waiting party gets an answer, and the sender goes on
            self.log.error("batch-failed", f"the relay failed to send a batch to round {round_id}: {error!r}",
                           round=round_id, items=len(batch), error=type(error).__name__)
            self._fail(batch, ChainError(f"the relay failed to send the batch ({type(error).__name__}); ask again later."))
            return
        self._answer(batch, outcome.tx, outcome.results)

    def _fail(self, batch: list[_Item], error: LedgerError) -> None:
        with self._changed:
            self.counts.rejected += len(batch)
        for item in batch:
            item.error = error
            item.done.set()

    def _answer(self, batch: list[_Item], tx: TxResult, results: list[tuple[int, Any, ContractRevertError | None]]) -> None:
        round_id = batch[0].round_id
        recorded = sum(error is None for _, _, error in results)
        with self._changed:
            self.counts.batches += 1
            self.counts.recorded += recorded
            self.counts.rejected += len(batch) - recorded
            self.counts.gas_used += tx.gas_used
        self.log.info(
            "relayed", f"round {round_id}: {recorded} of {len(batch)} update(s) recorded in block {tx.block} "
            f"({tx.tx_hash}, gas {tx.gas_used}).", round=round_id, recorded=recorded, rejected=len(batch) - recorded,
            tx_hash=tx.tx_hash, block=tx.block, gas_used=tx.gas_used,
        )
        for (index, participant, error), item in zip(results, batch):
            if error is not None:
                self.log.warning("skipped", f"the contract skipped {participant}'s update to round {round_id}: {error}",
                                 round=round_id, participant=participant, error=type(error).__name__)
                item.error = error
            else:
                item.answer = {
                    "recorded": True, "round": round_id, "participant": participant, "cid": item.update.cid,
                    "tx_hash": tx.tx_hash, "block": tx.block, "gas_used": tx.gas_used,
                    "relayer": self.federation.sender, "item": index, "batch": len(batch),
                }
            item.done.set()


def check_batch_size(batch_size: int) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise InvalidInputError(
            f"--batch-size must be from 1 to {MAX_BATCH_SIZE} (the contract's MAX_BATCH_SIZE), not {batch_size}."
        )


def _status_code(error: LedgerError) -> int:
    if isinstance(error, InvalidInputError):
        return 400
    if isinstance(error, RelayTimeoutError):
        return 504
    if isinstance(error, (ContractRevertError, ContentNotFoundError)):
        return 422
    if isinstance(error, (ChainError, StoreError)):
        return 503
    return 422


class _Handler(LimitedHandlerMixin, BaseHTTPRequestHandler):
    relay: Relay
    server_version = "fedledger-relay"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the service log says what matters
        pass

    def _reply(self, status: int, document: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _refuse(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        done = DONE.get(self.path.rstrip("/"), "recorded")
        self._reply(status, {done: False, "error": error, "message": message}, headers)

    def _rate_limited(self) -> bool:
        """Whether the request is over a rate limit; if so, answered 429 with Retry-After."""
        wait, which = self.relay.limiter.wait_for(str(self.client_address[0]))
        if not wait:
            return False
        with self.relay._changed:
            self.relay.counts.rate_limited += 1
        seconds = max(1, math.ceil(wait))
        whose = ("this address has sent more updates than the relay's --rate-limit allows" if which == "address"
                 else "the relay is taking more updates than its --global-rate-limit allows")
        self._refuse(429, "RateLimited", f"{whose}; send it again in {seconds} s.", {"Retry-After": str(seconds)})
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") == HEALTH_PATH:
            self._reply(200, self.relay.status())
        else:
            self._refuse(404, "NotFound", NOT_FOUND.format(self.path))

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.rstrip("/")
        if path not in DONE:
            self._refuse(404, "NotFound", NOT_FOUND.format(self.path))
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._refuse(411, "LengthRequired", "the request has no Content-Length; send the JSON body with its length.")
            return
        if not 0 < length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._refuse(413, "RequestTooLarge", f"the request body must be 1 to {MAX_BODY_BYTES} bytes, not {length}.")
            return
        body = self.rfile.read(length)
        if self._rate_limited():  # before the store, the signature and the chain are asked anything
            return
        participant, what = "?", {PATH: "update", MESSAGES_PATH: "round message", KEYS_PATH: "encryption key"}[path]
        try:
            if path == PATH:
                round_id, update = parse_request(body)
                participant = update.participant
                answer = self.relay.submit(round_id, update)
            elif path == MESSAGES_PATH:
                round_id, message = parse_message_request(body)
                participant = message.participant
                answer = self.relay.post_message(round_id, message)
            else:
                signed = parse_key_request(body)
                participant = signed.participant
                answer = self.relay.register_key(signed)
        except LedgerError as error:
            self.relay.log.info("refused", f"refused the {what} of {participant}: {error}", participant=participant,
                                error=type(error).__name__)
            self._refuse(_status_code(error), type(error).__name__, str(error))
            return
        self._reply(200, answer)


class RelayServer(LimitedServerMixin, ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with the limits of :mod:`ledger.ipfs.serving`."""

    daemon_threads = True


def make_server(relay: Relay, *, port: int, host: str = "127.0.0.1", limits: ServerLimits = RELAY_LIMITS) -> RelayServer:
    """The relay's HTTP server bound to ``host:port`` (0: a free port); run ``serve_forever``. Its notes
    (a client that reset or timed out, one turned away) go to the relay's log, one line each."""
    limits = limits.checked()
    handler = type("Handler", (_Handler,), {"relay": relay})
    try:
        server = RelayServer((host, port), handler)
    except OSError as error:
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); choose another --port (0 picks a free one) "
            "or stop what uses it."
        ) from None
    server.init_limits(limits, ThrottledNotes(lambda line: relay.log.warning("connection", line)))
    return server
