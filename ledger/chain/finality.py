"""The settled view: the chain as it stood ``[chain] confirmations`` blocks below its head.

A long-lived service decides on what the chain says (which rounds are open, who submitted, whether a
round was finalized, whether a deadline has passed). On a chain that reorganizes, an event only a
block or two deep may yet vanish; with ``confirmations = N`` the services decide on the state at block
``head - N`` and so act on an event only once it is N blocks deep, the same depth at which a command's
own transaction counts as done (``ledger.chain.transactions``).

Why a block number and not the ``finalized`` tag: the number follows the one setting a workspace
already has, means the same on every EVM chain (a proof-of-authority chain or Hardhat has no finality
gadget; anvil answers ``finalized`` with a block 64 below its head whatever it is told), and costs one
``eth_blockNumber`` per step. With ``confirmations = 0`` :func:`settled` hands back the client itself:
every read at the latest block, no extra request, as before.

:class:`SettledFederation` is a ``FederationClient`` whose reads are pinned: contract views are called
at the settled block, and event logs above it are left out. It sends nothing itself: services act
through the ordinary client, whose idempotent steps check the latest block again.
"""

from __future__ import annotations

import time
from typing import Any

from web3.exceptions import BlockNotFound

from ledger.chain.federation import FederationClient
from ledger.errors import ChainError


class SettledFederation(FederationClient):
    """``client``'s deployment as it stood at ``block`` (reads only; see the module docstring).

    ``block_hash`` is the hash that block had when the view was made: :meth:`moved` tells whether a
    reorganization has since replaced it, so that a service whose reads failed half-way through a
    step (a round listed as open and then not found) decides again instead of acting on the failure."""

    def __init__(self, client: FederationClient, block: int, *, block_hash: bytes | None = None,
                 timestamp: int | None = None) -> None:
        self.__dict__.update(client.__dict__)  # same connection, contract, caches (events never change once mined)
        self.latest = client
        self.block = int(block)
        self.block_hash = block_hash
        self._timestamp = timestamp

    def _call(self, name: str, *args: Any, block: int | str = "latest") -> Any:
        return super()._call(name, *args, block=self.block if block == "latest" else block)

    def _logs(self, event: str, **filters: Any) -> list[Any]:
        return [log for log in super()._logs(event, **filters) if int(log["blockNumber"]) <= self.block]

    def submission_status(self, round_id: int, participant: str) -> Any:  # its batch reads the latest block
        raise NotImplementedError("a settled view answers has_submitted and round, not submission_status")

    def timestamp(self) -> int:
        """The settled block's timestamp: a deadline is past, for a decision, once this is beyond it."""
        if self._timestamp is None:
            self._timestamp = int(self.w3.eth.get_block(self.block)["timestamp"])
        return self._timestamp

    def moved(self) -> bool:
        """Whether the chain's block at this height is no longer the one this view was made on."""
        if self.block_hash is None:
            return False
        try:
            return bytes(self.w3.eth.get_block(self.block)["hash"]) != self.block_hash
        except BlockNotFound:
            return True


def settled_block(client: FederationClient) -> int | None:
    """The block ``client.policy.confirmations`` below the head (never before the deployment), None at 0."""
    depth = client.policy.confirmations
    if depth <= 0:
        return None
    return max(int(client.w3.eth.block_number) - depth, client.from_block)


class ChainMovedError(ChainError):
    """The chain kept changing under a read (a reorganization under way): decide again at the next step."""


def settled(client: FederationClient, *, tries: int = 5) -> FederationClient:
    """The view a service decides on: ``client`` itself with no confirmations, else a SettledFederation
    (two requests: the head's number, then that block's hash and time). A block that is not found
    between the two (a node in the middle of a reorganization) is asked for again from a new head."""
    for _ in range(tries):
        number = settled_block(client)
        if number is None:
            return client
        try:
            block = client.w3.eth.get_block(number)
        except BlockNotFound:
            time.sleep(0.05)
            continue
        return SettledFederation(client, number, block_hash=bytes(block["hash"]), timestamp=int(block["timestamp"]))
    raise ChainMovedError(f"the chain's block {number} was not found {tries} times in a row after the node named a "
                          "head above it: it is reorganizing.")


def chain_moved(view: FederationClient | None, error: BaseException | None = None) -> bool:
    """Whether a reorganization replaced the block ``view`` reads at (never, for a client at the latest
    block), or ``error`` says the chain was reorganizing (no view could be made: ``view`` None)."""
    if isinstance(error, ChainMovedError):
        return True
    return isinstance(view, SettledFederation) and view.moved()
