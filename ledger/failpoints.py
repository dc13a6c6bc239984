"""Named crash points, so tests can kill an actor at an exact step and prove it recovers.

Setting ``FEDLEDGER_FAILPOINT=<name>`` in a process's environment makes ``failpoint(name)`` end
that process at once with exit status 99, as a power cut would: no cleanup, no flush beyond what
was already written. Unset (always, outside tests) it does nothing.
"""

from __future__ import annotations

import os

FAILPOINT_ENV = "FEDLEDGER_FAILPOINT"
FAILPOINT_EXIT = 99


def failpoint(name: str) -> None:
    """Die here if the environment names this point."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os._exit(FAILPOINT_EXIT)
