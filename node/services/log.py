"""One line per action a service takes: for people on stderr, or (``--log-json``) JSON lines on stdout.

A JSON line carries ``ts`` (ISO 8601, UTC), ``level``, ``service``, ``actor`` (the address it acts
as), ``event`` (a stable name such as ``submitted`` or ``outage``), ``message`` (the human line)
and the event's own fields (``round``, ``cid``, ``gas_used`` …). Nothing else is written to stdout,
so a pipe receives one JSON document per line.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape

_STYLES = {"info": "", "warning": "yellow", "error": "bold red"}


class ServiceLog:
    """The log of one service process."""

    def __init__(
        self,
        service: str,
        *,
        actor: str | None = None,
        json_lines: bool = False,
        human: Console | None = None,
        machine: TextIO | None = None,
    ) -> None:
        self.service = service
        self.actor = actor
        self.json_lines = json_lines
        self._human = human or Console(stderr=True, soft_wrap=True, highlight=False)
        self._machine = machine or sys.stdout

    def info(self, event: str, message: str, **fields: Any) -> None:
        self._emit("info", event, message, fields)

    def warning(self, event: str, message: str, **fields: Any) -> None:
        self._emit("warning", event, message, fields)

    def error(self, event: str, message: str, **fields: Any) -> None:
        self._emit("error", event, message, fields)

    def _emit(self, level: str, event: str, message: str, fields: dict[str, Any]) -> None:
        now = time.time()
        if self.json_lines:
            record = {
                "ts": datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds"),
                "level": level, "service": self.service, "actor": self.actor, "event": event,
                "message": message, **fields,
            }
            self._machine.write(json.dumps(record, sort_keys=True, default=str) + "\n")
            self._machine.flush()
            return
        stamp = datetime.fromtimestamp(now, UTC).strftime("%H:%M:%S")
        who = f" {self.actor[:10]}" if self.actor else ""  # enough to tell parties apart in one terminal
        style = _STYLES[level]
        text = escape(message)
        self._human.print(f"{stamp} {self.service}{who}: " + (f"[{style}]{text}[/]" if style else text))
