"""``flower-supernode`` with a shorter idle poll: ``python -m node.flower.supernode [--poll-interval S] ARGS``.

Flower 1.42.0's SuperNode asks the SuperLink for a message, and when there is none it sleeps a fixed
3 s (``flwr.supernode.start_client_internal``: ``time.sleep(3)``; no flag or variable sets it). Having
just sent its reply a SuperNode always finds none, since the next round opens only once every reply
is in and aggregated, so each round waits up to 3 s per message before a party even sees it.

This launcher runs Flower's own ``flower-supernode`` entry point (every other argument is Flower's,
unchanged) with one change: the ``time`` that module sleeps with is replaced by one whose ``sleep``
never sleeps longer than ``--poll-interval`` (default 0.2 s). That caps every wait of that module: the
idle 3 s, and its two 0.5 s waits (for the ClientApp's reply, for an object's content), which are
local polls of the SuperNode's own state. Nothing else of Flower changes; at 0.2 s an idle SuperNode
sends the SuperLink about five small pull requests a second instead of one every 3 s.

The patch is applied only to the Flower version it was written against (``FLWR_VERSION``), whose
module still sleeps ``time.sleep(3)`` in ``start_client_internal``. On any other version, or if that
module no longer looks as expected, the SuperNode runs as Flower ships it, with a warning on stderr
(it works the same, only slower): a SuperNode never fails to start because of this launcher.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
import time
from collections.abc import Sequence
from types import ModuleType

FLWR_VERSION = "1.42.0"
MODULE = "flwr.supernode.start_client_internal"
IDLE_SLEEP = "time.sleep(3)"  # the line of start_client_internal the patch shortens
POLL_INTERVAL = 0.2


class CappedTime:
    """``time`` whose ``sleep`` sleeps ``min(seconds, cap)``; every other attribute is ``time``'s own."""

    def __init__(self, cap: float, clock: ModuleType = time) -> None:
        if not cap > 0:
            raise ValueError(f"the poll interval must be positive, not {cap!r}.")
        self.cap = cap
        self._time = clock

    def sleep(self, seconds: float) -> None:
        self._time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str) -> object:
        return getattr(self._time, name)


def why_not_patchable(module: ModuleType, version: str) -> str | None:
    """The reason the patch does not apply to ``module`` of flwr ``version``; None when it does."""
    if version != FLWR_VERSION:
        return f"flwr {version} is not flwr {FLWR_VERSION}, the version this launcher knows"
    if getattr(module, "time", None) is not time:
        return f"{MODULE} has no module attribute `time` (the standard library's) to replace"
    function = getattr(module, "start_client_internal", None)
    if function is None or IDLE_SLEEP not in inspect.getsource(function):
        return f"{MODULE}.start_client_internal no longer sleeps `{IDLE_SLEEP}`"
    return None


def patch(poll_interval: float) -> bool:
    """Cap the sleeps of Flower's SuperNode loop at ``poll_interval`` seconds; False (and a warning on stderr,
    nothing changed) when this flwr is not the one the patch was written for."""
    import flwr  # noqa: PLC0415 - the launcher's own import stays light until it runs

    module = importlib.import_module(MODULE)
    if isinstance(module.time, CappedTime):  # patched already: only the cap changes
        module.time.cap = CappedTime(poll_interval).cap
        return True
    reason = why_not_patchable(module, flwr.__version__)
    if reason is not None:
        print(f"node.flower.supernode: {reason}; running the SuperNode as Flower ships it (it polls the SuperLink "
              "every 3 s when idle).", file=sys.stderr, flush=True)
        return False
    module.time = CappedTime(poll_interval)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m node.flower.supernode", add_help=False, allow_abbrev=False,  # --help and the rest: Flower's
        description="flower-supernode, its idle poll of the SuperLink capped at --poll-interval seconds; "
                    "every other argument is flower-supernode's.",
    )
    parser.add_argument("--poll-interval", type=float, default=POLL_INTERVAL, metavar="S",
                        help=f"seconds between a SuperNode's looks for a message (default {POLL_INTERVAL}; Flower's: 3)")
    args, rest = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not args.poll_interval > 0:
        parser.error(f"--poll-interval must be positive, not {args.poll_interval}.")
    if patch(args.poll_interval):
        print(f"node.flower.supernode: flwr {FLWR_VERSION}'s SuperNode, its idle poll capped at {args.poll_interval:g} s",
              file=sys.stderr, flush=True)
    from flwr.supernode.cli import flower_supernode  # noqa: PLC0415

    sys.argv = ["flower-supernode", *rest]
    flower_supernode()


if __name__ == "__main__":
    main()
