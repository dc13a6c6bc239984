"""Several RPC endpoints of one chain: a request goes to the current one, and one that does not answer is
left for the next, which must first show that it is the same chain.

``[chain] rpc`` (or ``--rpc``) may name several URLs, comma-separated (or a TOML list). A request
whose endpoint refuses the connection, times out or answers with an HTTP error (5xx, 429) goes to the
next endpoint in turn; the same signed transaction sent again through another endpoint is the same
transaction, so nothing is done twice. Before the first request through an endpoint, and again
whenever the provider comes back to it, the endpoint is checked: its chain id must be the one the
connection started with and, once the federation is opened (``watch_deployment``), the contract's
address must hold code, the same code as on the first endpoint that showed it. An endpoint that fails that check is never used (reads from
two chains never mix) and is named in the error when no endpoint is left.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
from eth_utils import keccak
from web3 import HTTPProvider

from ledger.errors import ChainUnreachableError, WrongChainError

T = TypeVar("T")


class FailoverHTTPProvider(HTTPProvider):
    """An HTTPProvider over ``urls`` of one chain, moving to the next URL when one does not answer."""

    def __init__(self, urls: Sequence[str], *, timeout: float) -> None:
        if len(urls) < 2:
            raise ValueError("a failover provider needs at least two endpoints")
        super().__init__(urls[0], request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
        self.urls = list(urls)
        self.current = 0
        self.chain_id: int | None = None
        self.deployment: tuple[str, bytes | None] | None = None  # address, keccak of its runtime code once seen
        self._checked: set[int] = set()
        self._wrong: dict[int, str] = {}  # endpoint index -> why it is not this chain

    def watch_deployment(self, address: str) -> None:
        """From now on an endpoint must hold the deployment's code at ``address``: code there at all, and the
        same code as the first endpoint that showed it. Every endpoint is checked again, the current one too."""
        self.deployment = (address, None)
        self._checked.clear()

    def make_request(self, method: Any, params: Any) -> Any:
        return self._failover(lambda: super(FailoverHTTPProvider, self).make_request(method, params))

    def make_batch_request(self, requests_: Any) -> Any:
        return self._failover(lambda: super(FailoverHTTPProvider, self).make_batch_request(requests_))

    # -- switching -------------------------------------------------------------------------------
    def _failover(self, send: Callable[[], T]) -> T:
        failures: list[str] = []
        for _ in range(len(self.urls)):
            if self.current not in self._wrong:
                try:
                    if self.current not in self._checked:
                        self._check(self.current)
                    return send()
                except (requests.RequestException, OSError) as error:
                    if self.current not in self._wrong:
                        failures.append(f"{self.urls[self.current]} ({error.__class__.__name__})")
                    self._checked.discard(self.current)  # checked again if it comes back
            self._move_on()
        wrong = [f"{self.urls[i]} ({why})" for i, why in sorted(self._wrong.items())]
        if failures or not wrong:
            raise ChainUnreachableError(
                f"no RPC endpoint answers: {'; '.join(failures + wrong)}; start the chain again or fix [chain] rpc / --rpc."
            )
        raise WrongChainError(f"no RPC endpoint is on this federation's chain: {'; '.join(wrong)}; fix [chain] rpc / --rpc.")

    def _move_on(self) -> None:
        self.current = (self.current + 1) % len(self.urls)
        self.endpoint_uri = self.urls[self.current]

    def _check(self, index: int) -> None:
        """Mark endpoint ``index`` checked, or wrong (never used again) when it is another chain."""
        chain_id = int(self._result(super().make_request("eth_chainId", [])), 16)  # type: ignore[arg-type]
        if self.chain_id is None:
            self.chain_id = chain_id
        if chain_id != self.chain_id:
            self._wrong[index] = f"chain id {chain_id}, not {self.chain_id}"
            raise requests.ConnectionError("another chain")  # move on, as if it did not answer
        if self.deployment is not None:
            address, code_hash = self.deployment
            code = bytes.fromhex(self._result(super().make_request("eth_getCode", [address, "latest"]))[2:])  # type: ignore[arg-type]
            if not code or (code_hash is not None and keccak(code) != code_hash):
                self._wrong[index] = f"{'other' if code else 'no'} code at {address}"
                raise requests.ConnectionError("another deployment")
            self.deployment = (address, keccak(code))
        self._checked.add(index)

    def _result(self, response: Any) -> str:
        if not isinstance(response, dict) or not isinstance(response.get("result"), str):
            raise requests.ConnectionError(f"not a JSON-RPC answer: {str(response)[:100]}")
        return response["result"]
