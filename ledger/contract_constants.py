"""Numbers the Federation contract fixes, for code that must not import web3 to know them (the CLI)."""

from enum import IntEnum

MAX_ROUND_DURATION = 30 * 86_400
"""The contract's MAX_ROUND_DURATION: a round's deadline is at most this many seconds after its opening."""

DEFAULT_ADMIN_DELAY = 86_400
"""Seconds a proposed admin waits before it can accept the role (the contract's constructor argument)."""

EPSILON_SCALE = 1_000_000
"""The contract's EPSILON_SCALE: privacy budgets and declared ε are stored in millionths of ε."""

DELTA_SCALE = 10**18
"""The contract's DELTA_SCALE: an agreement's δ is stored in units of 1e-18."""

MAX_BATCH_SIZE = 256
"""The contract's MAX_BATCH_SIZE: the most signed updates one relayed ``submitUpdates`` call takes."""


class RoundMessageKind(IntEnum):
    """The kinds of ``postRoundMessage`` (the contract's private constants ``_ADVERTISE`` and
    ``_REVEAL``): the bulletin board of a secure round. The contract refuses any other number
    (``FederationUnknownMessageKind``)."""

    ADVERTISE = 1
    """A party's per-round keys and encrypted shares: posted while the round takes updates
    (open, up to its deadline second) by a party that may submit to it."""

    REVEAL = 2
    """What removes dropouts' masks: posted after the round's deadline, while it is still open,
    by a party that submitted an update to it."""
