"""The loop every service runs: one step, then a wait, until a signal, ``--once`` or the work is done.

SIGTERM or SIGINT sets a flag that the loop reads between steps and while it waits, so a service
stops cleanly after the step in progress (training included: the step is idempotent, but finishing
it saves redoing it). A second signal stops at once (KeyboardInterrupt), which is safe too: every
step resumes from the chain and the journal.

A transient failure (see ``backoff``) retries the whole step after a backoff delay, reported once
per outage; ``max_outage_s`` bounds how long a service keeps retrying before it gives up.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Protocol, TypeVar

from ledger.errors import LedgerError
from node.services.backoff import Backoff, Outage, describe, is_transient
from node.services.log import ServiceLog
from node.services.metrics import ServiceMetrics

T = TypeVar("T")
_SLICE_S = 0.1  # how often a wait looks at the stop flag


class ServiceOutageError(LedgerError):
    """A transient failure lasted longer than the service was told to keep retrying."""


class StopFlag:
    """Set by SIGTERM or SIGINT (see :meth:`installed`), or by :meth:`set`."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def is_set(self) -> bool:
        return self.reason is not None

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason

    def wait(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> bool:
        """Sleep up to ``seconds``, waking early when the flag is set; returns whether it is set.

        Sleeps in short slices instead of waiting on a threading.Event, which a signal handler
        may not safely set while the main thread waits on it.
        """
        end = clock() + max(0.0, seconds)
        while not self.is_set():
            left = end - clock()
            if left <= 0:
                break
            time.sleep(min(_SLICE_S, left))
        return self.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.is_set():
            raise KeyboardInterrupt
        self.set(signal.Signals(signum).name)

    @contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """SIGTERM and SIGINT set this flag while the block runs; the old handlers come back after."""
        previous = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Service(Protocol):
    """What the loop drives: ``step`` does every piece of work available now."""

    def step(self) -> bool:
        """Do what can be done now; True when the service's work is complete (it may exit)."""
        ...


class Retrier:
    """Tries a call, and after a transient failure waits out a backoff delay, reporting the outage once."""

    def __init__(
        self,
        *,
        log: ServiceLog,
        metrics: ServiceMetrics,
        stop: StopFlag,
        max_outage_s: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.stop = stop
        self.metrics = metrics
        self.max_outage_s = max_outage_s
        self.backoff = backoff or Backoff()
        self.outage = Outage(log, on_retry=metrics.retries.inc)

    def call(self, function: Callable[[], T]) -> tuple[bool, T | None]:
        """``(True, function())``; or ``(False, None)`` after a transient failure and its backoff delay.

        Any other error propagates unchanged; so does a transient one once the outage has lasted
        ``max_outage_s``, as a ServiceOutageError.
        """
        try:
            result = function()
        except Exception as error:  # noqa: BLE001 - only transient failures are retried
            if not is_transient(error):
                raise
            if self.max_outage_s is not None and self.outage.elapsed_s >= self.max_outage_s:
                raise ServiceOutageError(
                    f"gave up after {self.outage.elapsed_s:.0f} s of retries: {describe(error)}"
                ) from None
            delay = self.backoff.next()
            self.outage.failed(error, retry_in_s=delay)
            self.stop.wait(delay)
            return False, None
        self.outage.recovered()
        self.backoff.reset()
        self.metrics.last_success.set(time.time())
        return True, result

    def until_success(self, function: Callable[[], T]) -> T | None:
        """``function()``, retried until it succeeds; None when a signal stopped the retries first."""
        while not self.stop.is_set():
            done, result = self.call(function)
            if done:
                return result
        return None


def run_service(
    service: Service,
    *,
    log: ServiceLog,
    retrier: Retrier,
    poll_s: float,
    once: bool = False,
) -> bool:
    """Step ``service`` until it is complete, ``once`` is done, or the retrier's stop flag is set.

    Returns True when the service finished its work (or, with ``once``, the work open now), False
    when a signal stopped it first. A non-transient error propagates to the caller unchanged.
    """
    stop = retrier.stop
    while not stop.is_set():
        done, complete = retrier.call(service.step)
        if not done:
            continue
        if complete or once:
            return True
        stop.wait(poll_s)
    log.info("stopped", f"stopped on {stop.reason} between steps, with nothing left half-done.",
             signal=stop.reason)
    return False
