"""One step of a service, decided on the chain as it stands ``[chain] confirmations`` blocks below its head.

Every service's step reads a settled view (``ledger.chain.finality.settled``) and decides on it. A read
that fails because a reorganization replaced the settled block in the middle of the step is no reason
to stop the service: the step is decided again, from a new view, at the next poll. Any other error,
and a transient one (left to the loop's backoff), goes up as it is.
"""

from __future__ import annotations

from collections.abc import Callable

from web3.exceptions import Web3Exception

from ledger.chain.federation import FederationClient
from ledger.chain.finality import chain_moved, settled
from ledger.errors import LedgerError
from node.services.backoff import is_transient
from node.services.log import ServiceLog


def step_on_settled_view(federation: FederationClient, log: ServiceLog, step: Callable[[FederationClient], bool]) -> bool:
    """``step`` run on the settled view of ``federation``; False (not done) when the chain moved under it."""
    view = None
    try:
        view = settled(federation)  # with [chain] confirmations = N: the chain N blocks below its head
        return step(view)
    except (LedgerError, Web3Exception) as error:
        if is_transient(error) or not chain_moved(view, error):
            raise
        log.info("chain-moved", f"the chain reorganized during this step ({error}); deciding again at the next one.")
        return False
