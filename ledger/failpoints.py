"""Named crash points, so tests can kill an actor at an exact step and prove it recovers.

Setting ``FEDLEDGER_FAILPOINT=<name>`` in a process's environment makes ``failpoint(name)`` end
that process at once with exit status 99, as a power cut would: no cleanup, no flush beyond what
was already written. Unset (always, outside tests) it does nothing.

``FEDLEDGER_HANGPOINT=<name>`` makes ``hangpoint(name)`` stop that process there, alive and doing
nothing, until it is killed: a test that kills an actor "in the middle of" a step kills it at that
point for sure, instead of racing the step (a fast machine finished a training before the kill).

``FEDLEDGER_TRACE=<file>`` makes ``trace(event)`` append one line to that file, so a test can count
what a process really did (how often it trained) from outside the code under test.
"""

from __future__ import annotations

import os
import time

FAILPOINT_ENV = "FEDLEDGER_FAILPOINT"
FAILPOINT_EXIT = 99
HANGPOINT_ENV = "FEDLEDGER_HANGPOINT"
TRACE_ENV = "FEDLEDGER_TRACE"


def failpoint(name: str) -> None:
    """Die here if the environment names this point."""
    if os.environ.get(FAILPOINT_ENV) == name:
        os._exit(FAILPOINT_EXIT)


def hangpoint(name: str) -> None:
    """Wait here until killed if the environment names this point."""
    if os.environ.get(HANGPOINT_ENV) == name:
        while True:
            time.sleep(3600)


def trace(event: str) -> None:
    """Append the line ``event`` to ``$FEDLEDGER_TRACE`` if it is set (one write: whole lines, even
    when several processes share the file)."""
    path = os.environ.get(TRACE_ENV)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event}\n".encode())
        finally:
            os.close(fd)
