"""A Flower ``Grid`` that looks for replies promptly.

Flower 1.42's Deployment Engine grid (``flwr.superlink.grid.http_grid``) pushes a round's messages
and then asks the SuperLink for their replies every 3 s: a round whose last reply arrives just
after a look waits almost 3 s more before it is aggregated, and its next round starts that much
later. ``PromptGrid`` wraps any grid and keeps everything of it but ``send_and_receive``, which
looks every ``poll_seconds`` (0.25 s: one small request to the SuperLink per look, while replies
are due). ``LedgerStrategy.start`` runs its rounds on one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from flwr.app import Message, RecordDict
from flwr.supercore.run import Run
from flwr.serverapp import Grid

POLL_SECONDS = 0.25


class PromptGrid(Grid):
    """``grid`` with replies pulled every ``poll_seconds``; every other call goes to ``grid`` itself."""

    def __init__(self, grid: Grid, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.grid = grid
        self.poll_seconds = poll_seconds

    def set_run(self, run: Run) -> None:
        self.grid.set_run(run)

    @property
    def run(self) -> Run:
        return self.grid.run

    def create_message(  # pylint: disable=too-many-arguments
        self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str, ttl: float | None = None
    ) -> Message:
        return self.grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        return self.grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self.grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self.grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages``, then pull their replies until all came or ``timeout`` seconds passed (None: no limit)."""
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            came = list(self.pull_messages(waiting))
            replies.extend(came)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in came)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            time.sleep(self.poll_seconds)
        return replies
