"""Round trips to the chain node: the chain id asked once per connection, and a count of requests by method.

A real endpoint is tens to hundreds of milliseconds away and each HTTP request to it is one round
trip. Reads that a step needs at the same moment go together as one JSON-RPC batch
(:func:`json_rpc_batch`; the in-process chain, or a node that refuses batches, gets them one by
one instead). web3's validation asks the node for its chain id before every ``eth_call`` and
``eth_estimateGas``; :func:`cache_chain_id` answers those from the first reply. A connection's
chain id cannot change while it is open (a node that restarts under the same URL on another chain
is caught where it matters: ``check_deployment`` when a command opens the federation, and the node
itself, which refuses a transaction signed for another chain id).

The number of requests a step sends is its floor in time. :class:`RequestCounter` counts
at the wire: a ``requests.Session`` that an ``HTTPProvider`` posts through (its public ``session``
argument), so what web3 answers from its own cache is not counted and a JSON-RPC batch is one
round trip carrying several methods.

    counter = RequestCounter()
    w3 = counter.web3(url)
    with counter.measure() as step:
        ...  # anything that uses w3
    step.by_method   # Counter({"eth_call": 3, "eth_chainId": 1, ...})
    step.round_trips # HTTP requests (a batch counts once)

A receipt asked for before its block is mined is answered ``null``; such a request is counted as
:data:`NOT_MINED_YET`, not as ``eth_getTransactionReceipt``: how many there are is the chain's block
time over the poll interval (on anvil's automine, a race with the miner), not the client's design.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import requests
from web3 import HTTPProvider, Web3
from web3.middleware import Web3Middleware
from web3.types import RPCEndpoint, RPCResponse

CHAIN_ID = RPCEndpoint("eth_chainId")
RECEIPT = "eth_getTransactionReceipt"
NOT_MINED_YET = "eth_getTransactionReceipt (not mined yet)"
_MIDDLEWARE_NAME = "fedledger_chain_id_cache"


class _ChainIdCache:
    """The first successful ``eth_chainId`` answer of one Web3, shared by the middleware instances
    web3 builds from this factory (it builds a new one whenever the middleware stack changes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.response: RPCResponse | None = None

    def __call__(self, w3: Any) -> _ChainIdMiddleware:
        return _ChainIdMiddleware(w3, self)


class _ChainIdMiddleware(Web3Middleware):
    def __init__(self, w3: Any, cache: _ChainIdCache) -> None:
        super().__init__(w3)
        self._cache = cache

    def wrap_make_request(self, make_request: Any) -> Any:
        cache = self._cache

        def middleware(method: RPCEndpoint, params: Any) -> RPCResponse:
            if method != CHAIN_ID:
                return make_request(method, params)
            with cache.lock:
                if cache.response is None:
                    response = make_request(method, params)
                    if "error" in response or response.get("result") is None:
                        return response  # not cached: the next call asks again
                    cache.response = response
                return dict(cache.response)  # type: ignore[return-value]

        return middleware


def json_rpc_batch(w3: Web3, calls: list[tuple[str, list[Any]]]) -> list[RPCResponse] | None:
    """The node's raw answers to ``calls`` sent as one JSON-RPC batch (one round trip), in order.

    None where this connection cannot batch: not an HTTP provider (the in-process chain), or a node
    that refuses batches or answers them incompletely; the caller then makes the same reads one by
    one. Only for reads: a batch bypasses web3's middleware, and an item may fail alone (each answer
    carries its own ``error``). A connection that fails raises as any request would.
    """
    provider = w3.provider
    if not isinstance(provider, HTTPProvider) or not calls:
        return None
    try:
        answers = provider.make_batch_request([(RPCEndpoint(method), params) for method, params in calls])
    except requests.HTTPError:  # some endpoints answer a batch with an HTTP error
        return None
    if not isinstance(answers, list) or len(answers) != len(calls):
        return None
    return list(answers)


def cache_chain_id(w3: Web3) -> Web3:
    """Answer ``w3``'s ``eth_chainId`` requests from the node's first answer (idempotent; returns ``w3``).

    The outermost middleware, so web3's own per-call validation, which asks again through the
    whole stack, is answered from it too. An error answer is not kept.
    """
    if _MIDDLEWARE_NAME not in w3.middleware_onion:
        w3.middleware_onion.add(_ChainIdCache(), name=_MIDDLEWARE_NAME)
    return w3


@dataclass
class RequestCount:
    """Requests by JSON-RPC method, and the HTTP round trips that carried them."""

    by_method: Counter[str] = field(default_factory=Counter)
    round_trips: int = 0

    @property
    def total(self) -> int:
        """JSON-RPC requests (each item of a batch counts)."""
        return sum(self.by_method.values())

    def __sub__(self, earlier: RequestCount) -> RequestCount:
        methods = Counter(self.by_method)
        methods.subtract(earlier.by_method)
        return RequestCount(+methods, self.round_trips - earlier.round_trips)

    def table(self) -> str:
        """``method n, method n`` by count, then name (for logs and benchmark tables)."""
        return ", ".join(f"{method} {n}" for method, n in sorted(self.by_method.items(), key=lambda kv: (-kv[1], kv[0])))


class _CountingSession(requests.Session):
    def __init__(self, counter: RequestCounter) -> None:
        super().__init__()
        self._counter = counter

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:  # noqa: A002
        body = data if data is not None else json
        response = super().post(url, data=data, json=json, **kwargs)
        self._counter._record(body, response)
        return response


class RequestCounter:
    """A running count of the JSON-RPC requests sent through its session (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = RequestCount()

    def session(self) -> requests.Session:
        """A session to give ``HTTPProvider(url, session=...)``: every request it posts is counted."""
        return _CountingSession(self)

    def web3(self, url: str, *, timeout: float = 30.0, chain_id_cache: bool = True) -> Web3:
        """A Web3 on ``url`` whose requests this counter counts (``chain_id_cache``: as
        ``ledger.chain.connection.connect`` builds it, asking the chain id once)."""
        w3 = Web3(HTTPProvider(url, request_kwargs={"timeout": timeout}, session=self.session(),
                               exception_retry_configuration=None))
        if chain_id_cache:
            cache_chain_id(w3)
        return w3

    def now(self) -> RequestCount:
        """The count so far (a copy)."""
        with self._lock:
            return RequestCount(Counter(self._count.by_method), self._count.round_trips)

    @contextmanager
    def measure(self) -> Iterator[RequestCount]:
        """The requests sent inside the block (filled in when it ends)."""
        start = self.now()
        step = RequestCount()
        try:
            yield step
        finally:
            done = self.now() - start
            step.by_method, step.round_trips = done.by_method, done.round_trips

    def _record(self, body: Any, response: requests.Response) -> None:
        try:
            document = json.loads(body) if isinstance(body, (bytes, bytearray, str)) else body
        except ValueError:
            document = None
        calls = document if isinstance(document, list) else [document]
        methods = [str(call.get("method", "?")) if isinstance(call, dict) else "?" for call in calls]
        if methods == [RECEIPT] and _answered_null(response):
            methods = [NOT_MINED_YET]
        with self._lock:
            self._count.round_trips += 1
            self._count.by_method.update(methods)


def _answered_null(response: requests.Response) -> bool:
    """Whether a single JSON-RPC request was answered with a ``null`` result (no error)."""
    try:
        answer = response.json()
    except ValueError:
        return False
    return isinstance(answer, dict) and "result" in answer and answer["result"] is None
