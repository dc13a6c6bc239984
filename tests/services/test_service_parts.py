"""The pieces every service shares: which failures are transient, backoff delays, an outage logged
once, the stop flag that SIGTERM sets, the step loop, and the one-service-per-key lock."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from web3.exceptions import Web3RPCError

from ledger.chain.contract_errors import FederationNotParticipant
from ledger.errors import ChainError, ChainUnreachableError, IntegrityError, StoreError
from node.services.backoff import Backoff, Outage, is_transient
from node.services.lock import ServiceLockedError, service_lock
from node.services.log import ServiceLog
from node.services.loop import Retrier, ServiceOutageError, StopFlag, run_service
from node.services.metrics import ServiceMetrics


def json_log() -> tuple[ServiceLog, io.StringIO]:
    out = io.StringIO()
    return ServiceLog("test", actor="0xabc", json_lines=True, machine=out), out


def records(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def wrapped(outer: Exception, inner: BaseException, *, suppress: bool = False) -> Exception:
    """``outer`` raised while handling ``inner`` (``suppress``: as ``raise outer from None`` does)."""
    try:
        try:
            raise inner
        except BaseException:
            if suppress:
                raise outer from None
            raise outer from inner
    except Exception as error:  # noqa: BLE001
        return error


def test_unanswered_nodes_are_transient_and_refusals_are_not() -> None:
    assert is_transient(ChainUnreachableError("the chain node stopped answering"))
    assert is_transient(requests.ConnectTimeout("connect timed out"))
    assert is_transient(wrapped(StoreError("the IPFS API broke off"), requests.ConnectionError("reset")))
    # The node's nonce refusal when another process with the same key sent first: cured by a retry.
    assert is_transient(wrapped(ChainError("the node refused the transaction"), Web3RPCError("nonce too low"), suppress=True))
    assert not is_transient(wrapped(ChainError("the node refused the transaction"), Web3RPCError("insufficient funds"), suppress=True))
    assert not is_transient(FederationNotParticipant("0x" + "11" * 20, "suspended"))
    assert not is_transient(IntegrityError("does not hash to its CID"))
    assert not is_transient(ValueError("a bug"))


def test_backoff_doubles_with_jitter_up_to_its_cap_and_resets() -> None:
    backoff = Backoff(initial_s=0.5, max_s=4.0, rng=random.Random(1))
    delays = [backoff.next() for _ in range(7)]
    for delay, nominal in zip(delays, [0.5, 1, 2, 4, 4, 4, 4]):
        assert nominal / 2 <= delay <= nominal
    backoff.reset()
    assert backoff.next() <= 0.5


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends() -> None:
    log, out = json_log()
    retries: list[int] = []
    now = [100.0]
    outage = Outage(log, on_retry=lambda: retries.append(1), clock=lambda: now[0])
    for _ in range(5):
        outage.failed(ChainUnreachableError("the chain node stopped answering (ConnectionError)."), retry_in_s=1.0)
        now[0] += 2
    outage.recovered()
    outage.recovered()  # nothing more to say
    outage.failed(ChainUnreachableError("again."), retry_in_s=1.0)
    events = records(out)
    assert [e["event"] for e in events] == ["outage", "recovered", "outage"]
    assert "the chain node stopped answering" in events[0]["message"] and events[0]["level"] == "warning"
    assert events[1]["retries"] == 5 and events[1]["outage_s"] == 10.0
    assert len(retries) == 6 and outage.outages == 2


class Steps:
    """A service whose steps fail transiently ``failures`` times, then succeed; complete at ``complete_at``."""

    def __init__(self, *, failures: int = 0, complete_at: int | None = None) -> None:
        self.failures = failures
        self.complete_at = complete_at
        self.calls = 0

    def step(self) -> bool:
        self.calls += 1
        if self.calls <= self.failures:
            raise ChainUnreachableError("the chain node stopped answering (ConnectionError).")
        return self.complete_at is not None and self.calls >= self.complete_at


def retrier(log: ServiceLog, stop: StopFlag | None = None, **options: float) -> Retrier:
    return Retrier(log=log, metrics=ServiceMetrics("test"), stop=stop or StopFlag(),
                   backoff=Backoff(initial_s=0.01, max_s=0.02), **options)


def test_the_loop_retries_transient_failures_until_the_service_completes() -> None:
    log, out = json_log()
    service = Steps(failures=3, complete_at=5)
    r = retrier(log)
    assert run_service(service, log=log, retrier=r, poll_s=0.01) is True
    assert service.calls == 5
    assert [e["event"] for e in records(out)] == ["outage", "recovered"]
    assert r.metrics.registry.get_sample_value("fedledger_retries_total") == 3


def test_once_stops_after_the_first_successful_step() -> None:
    log, _ = json_log()
    service = Steps(failures=1)
    assert run_service(service, log=log, retrier=retrier(log), poll_s=10, once=True) is True
    assert service.calls == 2


def test_an_outage_longer_than_the_limit_gives_up_with_the_cause() -> None:
    log, _ = json_log()
    with pytest.raises(ServiceOutageError, match="gave up after .* the chain node stopped answering"):
        run_service(Steps(failures=10**6), log=log, retrier=retrier(log, max_outage_s=0.1), poll_s=0.01)


def test_a_refusal_is_not_retried() -> None:
    class Refused:
        calls = 0

        def step(self) -> bool:
            self.calls += 1
            raise FederationNotParticipant("0x" + "11" * 20, "suspended")

    log, _ = json_log()
    service = Refused()
    with pytest.raises(FederationNotParticipant, match="suspended"):
        run_service(service, log=log, retrier=retrier(log), poll_s=0.01)
    assert service.calls == 1


def test_sigterm_stops_the_loop_between_steps_and_a_second_signal_at_once() -> None:
    log, out = json_log()
    stop = StopFlag()
    with stop.installed():
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        assert run_service(Steps(), log=log, retrier=retrier(log, stop), poll_s=30) is False
        assert time.monotonic() - started < 5  # woke from its 30 s wait
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
    assert records(out)[-1]["event"] == "stopped" and records(out)[-1]["signal"] == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is not stop._handle  # noqa: SLF001 - handlers restored


def test_one_service_per_key_and_workspace(tmp_path: Path) -> None:
    address = "0x" + "ab" * 20
    with service_lock(tmp_path, role="node", address=address, command="fedledger node run"):
        with pytest.raises(ServiceLockedError, match=rf"another `fedledger node run` with key {address} .*pid {os.getpid()}"):
            with service_lock(tmp_path, role="node", address=address, command="fedledger node run"):
                pass
        with service_lock(tmp_path, role="node", address="0x" + "cd" * 20, command="fedledger node run"):
            pass  # another key
        with service_lock(tmp_path, role="aggregator", address=address, command="fedledger aggregator run"):
            pass  # another role
    with service_lock(tmp_path, role="node", address=address, command="fedledger node run"):
        pass  # released


def test_the_lock_of_a_killed_service_is_free_at_once(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from node.services.lock import service_lock\n"
         f"with service_lock(Path({str(tmp_path)!r}), role='node', address='0xab', command='x'):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ServiceLockedError):
            with service_lock(tmp_path, role="node", address="0xab", command="x"):
                pass
        holder.kill()
        holder.wait(10)
        with service_lock(tmp_path, role="node", address="0xab", command="x"):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()
