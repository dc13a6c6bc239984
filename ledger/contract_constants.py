"""Numbers the Federation contract fixes, for code that must not import web3 to know them (the CLI)."""

MAX_ROUND_DURATION = 30 * 86_400
"""The contract's MAX_ROUND_DURATION: a round's deadline is at most this many seconds after its opening."""

DEFAULT_ADMIN_DELAY = 86_400
"""Seconds a proposed admin waits before it can accept the role (the contract's constructor argument)."""
