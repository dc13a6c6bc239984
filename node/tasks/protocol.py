"""What the node and a task process exchange, and nothing else: file names in one request folder.

The node writes ``request.json`` (the operation and its arguments) and the input weights as
safetensors; the task process answers with ``response.json`` plus ``output.safetensors``, or with
``error.json`` (``hook``, ``kind``, ``type``, ``message``, ``traceback``). It rewrites ``hook`` on
entering each hook of the task, so a process stopped for running too long can be named by where it
was. No pickle crosses: weights are safetensors, everything else JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

REQUEST = "request.json"
RESPONSE = "response.json"
ERROR = "error.json"
HOOK = "hook"
BASE = "base.safetensors"
FROZEN = "frozen.safetensors"
OUTPUT = "output.safetensors"
STDOUT = "stdout.log"
STDERR = "stderr.log"

HOOKS = ("import", "model", "load_data", "evaluate", "train")
"""Where a task process can be: importing the task's module, or one of its hooks."""

RAISED = "raised"
"""error.json kind: the task's own code raised; ``type`` and ``message`` are its exception's."""
INVALID = "invalid"
"""error.json kind: the task gave something fedledger cannot use; ``message`` says what, and the fix."""


def metrics_problem(metrics: Any) -> str | None:
    """Why ``metrics`` is not a ``dict[str, float]`` of finite numbers (None when it is)."""
    if not isinstance(metrics, Mapping):
        return f"metrics are a {type(metrics).__name__}, not a dict of names to numbers"
    for name, value in metrics.items():
        if not isinstance(name, str) or not name:
            return f"metric name {name!r} is not a non-empty string"
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            return f"metric {name!r} is {value!r}, not a finite number"
    return None


def samples_problem(samples: Any) -> str | None:
    """Why ``samples`` is not a positive whole number of training samples (None when it is)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        return f"the sample count {samples!r} is not a whole number of at least 1"
    return None
