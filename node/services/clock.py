"""The chain's clock, by which the contract judges every deadline.

Not the wall clock: a chain's clock may lag it (a local chain whose snapshots were reverted, a
test chain set back) or lead it (one moved forward), and a deadline is a block timestamp. A
transaction sent now is judged in the pending block (ledger.chain.federation.next_block), so that
block's timestamp is "now" for every decision a service takes about a deadline; on a restarted
anvil whose latest block is old it is the wall clock, as the next block will be.
"""

from __future__ import annotations

from web3 import Web3

from ledger.chain.federation import FederationClient, next_block
from ledger.chain.finality import SettledFederation


def chain_time(w3: Web3) -> int:
    """The timestamp a transaction sent now would be judged at."""
    return int(w3.eth.get_block(next_block(w3))["timestamp"])


def decision_time(view: FederationClient) -> int:
    """The time a service judges deadlines by: the settled block's timestamp when it waits for
    confirmations (a deadline counts as past only once a block that deep is past it, so every
    submission the round can still get is already in view), else :func:`chain_time`."""
    if isinstance(view, SettledFederation):
        return view.timestamp()
    return chain_time(view.w3)
