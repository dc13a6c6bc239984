"""Transient failures: which ones they are, how long to wait before the next try, and an outage
reported once (when it starts and when it ends) rather than once per retry.

A failure is transient when the chain node or the content store did not answer (refused, timed
out, broke off mid-answer) — anything a restart of that node or a link coming back cures. Every
other error is a fact about the request (a contract refusal, a tampered blob, a bad key) and
retrying would only repeat it, so the caller decides what it means.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import requests
from web3.exceptions import TimeExhausted, Web3RPCError

from ledger.errors import ChainUnreachableError, LedgerError, StoreUnreachableError
from node.services.log import ServiceLog

try:  # ipfshttpclient's own connection errors (KuboStore wraps them, but keep the cause recognisable)
    from ipfshttpclient.exceptions import ConnectionError as _IpfsConnectionError
    from ipfshttpclient.exceptions import ProtocolError as _IpfsProtocolError
    from ipfshttpclient.exceptions import TimeoutError as _IpfsTimeoutError

    _IPFS_TRANSIENT: tuple[type[BaseException], ...] = (_IpfsConnectionError, _IpfsProtocolError, _IpfsTimeoutError)
except ImportError:  # pragma: no cover - ipfshttpclient is a dependency
    _IPFS_TRANSIENT = ()

TRANSIENT: tuple[type[BaseException], ...] = (
    ChainUnreachableError,
    StoreUnreachableError,
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    ConnectionError,  # the built-in: refused, reset, aborted
    TimeoutError,
    TimeExhausted,
    *_IPFS_TRANSIENT,
)


NONCE_CONFLICTS = ("nonce too low", "already known", "replacement transaction underpriced", "nonce has already been used")
"""What a node answers when another process signing with the same key took the nonce first: the
next try reads the pending nonce again and succeeds (every step is idempotent)."""


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it: fedledger wraps connection failures in its own
    sentences) is a node or store that did not answer, or a nonce another sender took first."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen and len(seen) < 16:
        if isinstance(current, TRANSIENT):
            return True
        if isinstance(current, Web3RPCError) and any(phrase in str(current).lower() for phrase in NONCE_CONFLICTS):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def describe(error: BaseException) -> str:
    """One sentence for a transient failure: fedledger's own, or what did not answer and how."""
    if isinstance(error, LedgerError):
        return str(error)
    request = getattr(error, "request", None)
    url = getattr(request, "url", None)
    where = f" at {url.split('?')[0]}" if isinstance(url, str) else ""
    return f"nothing answered{where} ({type(error).__name__})"


@dataclass
class Backoff:
    """Exponential delays with jitter: ``initial_s``, doubling, never above ``max_s``.

    The jitter (each delay drawn from [½, 1] of its nominal value) keeps many parties that lost
    the same node from all asking it again in the same instant when it comes back.
    """

    initial_s: float = 0.5
    max_s: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def next(self) -> float:
        nominal = min(self.max_s, self.initial_s * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return nominal * self.rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self.attempt = 0


class Outage:
    """Counts the retries of one outage and logs it once when it starts and once when it ends."""

    def __init__(
        self, log: ServiceLog, *, on_retry: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self.on_retry = on_retry
        self.clock = clock
        self.since: float | None = None
        self.retries = 0
        self.outages = 0

    @property
    def elapsed_s(self) -> float:
        return 0.0 if self.since is None else self.clock() - self.since

    def failed(self, error: BaseException, *, retry_in_s: float) -> None:
        """Record a transient failure; the first of an outage is logged, the rest only counted."""
        self.on_retry()
        if self.since is None:
            self.since = self.clock()
            self.retries = 1
            self.outages += 1
            self.log.warning(
                "outage", f"{describe(error)} Retrying with backoff (first retry in {retry_in_s:.1f} s); "
                "reported again only when it recovers.", error=type(error).__name__, detail=describe(error),
            )
        else:
            self.retries += 1

    def recovered(self) -> None:
        """Log the end of the outage, if there was one."""
        if self.since is None:
            return
        self.log.info(
            "recovered", f"answering again after {self.elapsed_s:.1f} s and {self.retries} retries.",
            outage_s=round(self.elapsed_s, 3), retries=self.retries,
        )
        self.since = None
        self.retries = 0
