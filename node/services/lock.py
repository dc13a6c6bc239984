"""One running service per role, key and workspace: an exclusive ``flock`` on a file in the journal folder.

The kernel drops the lock when its process ends, however it ends (SIGKILL and power cuts
included), so a crashed service never leaves a stale lock behind; the file itself stays and
only records the PID and command of its last holder, for the message. Commands that must not
submit for one key at once share a role (``node run`` and ``node train``: role ``node``), and the
refusal names the command that holds the lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ledger.errors import LedgerError


class ServiceLockedError(LedgerError):
    """Another process already runs this service with this key on this workspace."""


def lock_path(journal_dir: Path, role: str, address: str) -> Path:
    return Path(journal_dir) / f"{role}-run-{address.lower()}.lock"


@contextmanager
def service_lock(journal_dir: Path, *, role: str, address: str, command: str) -> Iterator[Path]:
    """Hold the lock of ``role`` for ``address`` while the block runs; ServiceLockedError if it is held."""
    path = lock_path(journal_dir, role, address)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, holder_command = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
            raise ServiceLockedError(
                f"another `{holder_command or command}` with key {address} already runs on this workspace "
                f"(pid {pid or 'unknown'}, lock "
                f"{path}); two must not submit for one key: stop that one first, or use another key or workspace."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {command}\n".encode(), 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the lock
