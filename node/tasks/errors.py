"""The one error class of user tasks: a task folder, bundle, dependency or hook that cannot be used."""

from __future__ import annotations

from ledger.errors import InvalidInputError


class TaskError(InvalidInputError):
    """A task cannot be packed, read, trusted or run; the message names the task, the hook and the fix."""
