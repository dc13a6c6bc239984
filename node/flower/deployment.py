"""Flower's Deployment Engine as real processes on loopback: a SuperLink, SuperNodes, ``flwr run``.

Each SuperNode runs with ``--isolation process`` beside a long-lived ClientApp process of its own
(``node.flower.warm_clientapp``, with the SuperNode's environment), so a message costs its work, not
a fresh interpreter importing torch and web3 as Flower's default ``subprocess`` isolation does;
``isolation="subprocess"`` keeps Flower's default (the benchmark's comparison). Each SuperNode runs
through ``node.flower.supernode``, which caps flwr 1.42.0's fixed 3 s idle sleep at ``poll_interval``
(0.2 s; ``poll_interval=None``: Flower's ``flower-supernode`` as shipped), and every ``flower-superexec``
(the SuperLink's, which starts each run's ServerApp) looks for work every 0.2 s instead of 1 s
(``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``, Flower's own setting).

Every process gets a private ``FLWR_HOME``, Flower's telemetry and update check switched off, and
no runtime dependency installation (the app runs in this environment, offline). A SuperLink or
SuperNode starts its ``flower-superexec`` in a session of its own, which outlives it for seconds
after SIGTERM: stopping therefore notes every descendant of the processes started here (PID and
start time, read from /proc) before signalling, and ends those still alive afterwards by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from deploy.anvil import HOST, free_port
from ledger.errors import LedgerError
from node.flower.supernode import POLL_INTERVAL

FLOWER_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "FLWR_DISABLE_UPDATE_CHECK": "1",
    "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
    "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
}
EXAMPLE_APP = Path(__file__).resolve().parent / "example_app"
CONNECTION = "fedledger-local"
_BIN = Path(sys.executable).parent
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_RAISED = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): (.+)$")  # the last line of a traceback: its sentence


class FlowerRunError(LedgerError):
    """A Flower process did not start, or the run did not finish."""


def toml_config(values: Mapping[str, object]) -> str:
    """``key=value`` pairs as Flower's --node-config / --run-config take them (strings quoted)."""
    return " ".join(f"{key}={json.dumps(value)}" for key, value in values.items())


def _wait_for_port(port: int, process: subprocess.Popen, *, what: str, log: Path, timeout: float,
                   started: float | None = None) -> None:
    """Until ``process`` listens on ``port``, ``timeout`` seconds from ``started`` (default: now) at most."""
    deadline = (time.monotonic() if started is None else started) + timeout
    while True:
        if process.poll() is not None:
            raise FlowerRunError(f"{what} exited with status {process.returncode} while starting; see {log}.")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((HOST, port)) == 0:
                return
        if time.monotonic() >= deadline:
            raise FlowerRunError(f"{what} did not listen on {HOST}:{port} within {timeout:.0f} s; see {log}.")
        time.sleep(0.1)


ISOLATIONS = ("process", "subprocess")


class FlowerDeployment:
    """A SuperLink with its SuperNodes under ``home`` (logs in ``home/logs``); a context manager that stops them.

    ``isolation``: ``"process"`` (a long-lived ClientApp process per SuperNode) or ``"subprocess"``
    (Flower's default: the SuperNode starts a ClientApp process per message). ``poll_interval``: seconds
    an idle SuperNode waits before asking the SuperLink again (``node.flower.supernode``); None runs
    Flower's ``flower-supernode`` as shipped (3 s)."""

    def __init__(self, home: Path, *, env: Mapping[str, str] | None = None, isolation: str = "process",
                 poll_interval: float | None = POLL_INTERVAL) -> None:
        if isolation not in ISOLATIONS:
            raise FlowerRunError(f"isolation must be process or subprocess, not {isolation!r}.")
        if poll_interval is not None and not poll_interval > 0:
            raise FlowerRunError(f"poll_interval must be positive seconds or None, not {poll_interval!r}.")
        self.isolation = isolation
        self.poll_interval = poll_interval
        self.home = Path(home)
        (self.home / "logs").mkdir(parents=True, exist_ok=True)
        path = f"{_BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # flower-superexec is found on PATH
        self.env = {**os.environ, **(env or {}), **FLOWER_ENV, "FLWR_HOME": str(self.home), "PATH": path}
        self.port: int | None = None
        self._processes: list[subprocess.Popen] = []
        self._starting: list[tuple[int, subprocess.Popen, str, Path, float, float]] = []  # SuperNodes not yet seen listening
        self._logs: list[IO[bytes]] = []

    def __enter__(self) -> FlowerDeployment:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _spawn(self, name: str, argv: list[str], env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, Path]:
        log = self.home / "logs" / f"{name}.log"
        handle = log.open("ab")
        self._logs.append(handle)
        process = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, env={**self.env, **(env or {})},
                                   cwd=self.home)
        self._processes.append(process)
        return process, log

    def start_superlink(self, *, timeout: float = 60.0) -> int:
        """Start the SuperLink on a free loopback port, record the connection in FLWR_HOME; returns the port."""
        self.port = free_port()
        process, log = self._spawn("superlink", [
            str(_BIN / "flower-superlink"), "--insecure", "--disable-runtime-dependency-installation",
            "--host", HOST, "--port", str(self.port), "--database", str(self.home / "superlink.db"),
        ])
        _wait_for_port(self.port, process, what="the Flower SuperLink", log=log, timeout=timeout)
        (self.home / "config.toml").write_text(
            f'[superlink.{CONNECTION}]\naddress = "{HOST}:{self.port}"\ninsecure = true\n', encoding="utf-8"
        )
        return self.port

    def start_supernode(
        self, name: str, node_config: Mapping[str, object], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> None:
        """Start a SuperNode connected to the SuperLink, and in process isolation its ClientApp process;
        ``env`` is theirs (the party's key, its password). SuperNodes start side by side: ``run`` (or
        ``wait_ready``) waits until each listens, ``timeout`` seconds at most."""
        if self.port is None:
            raise FlowerRunError("start the SuperLink before its SuperNodes.")
        port = free_port()
        launcher = ([str(_BIN / "flower-supernode")] if self.poll_interval is None else
                    [sys.executable, "-m", "node.flower.supernode", "--poll-interval", f"{self.poll_interval:g}"])
        process, log = self._spawn(name, [
            *launcher, "--insecure", "--superlink", f"{HOST}:{self.port}", "--isolation", self.isolation,
            "--host", HOST, "--port", str(port), "--node-config", toml_config(node_config),
        ], env)
        if self.isolation == "process":  # it waits for the SuperNode's Runtime API itself, its imports done meanwhile
            self._spawn(f"{name}-clientapp", [
                sys.executable, "-m", "node.flower.warm_clientapp", "--insecure",
                "--runtime-api-address", f"{HOST}:{port}", "--parent-pid", str(process.pid),
            ], env)
        self._starting.append((port, process, f"the Flower SuperNode {name}", log, time.monotonic(), timeout))

    def wait_ready(self) -> None:
        """Wait until every SuperNode started listens; FlowerRunError naming one that exited or overran."""
        while self._starting:
            port, process, what, log, started, timeout = self._starting.pop(0)
            _wait_for_port(port, process, what=what, log=log, timeout=timeout, started=started)

    def run(self, app: Path, run_config: Mapping[str, object], *, timeout: float) -> str:
        """``flwr run APP --stream`` to its end; returns its output. FlowerRunError when it fails or overruns."""
        self.wait_ready()
        log = self.home / "logs" / "flwr-run.log"
        argv = [str(_BIN / "flwr"), "run", str(app), CONNECTION, "--stream", "--run-config", toml_config(run_config)]
        try:
            done = subprocess.run(argv, env=self.env, cwd=self.home, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as error:
            log.write_text(str(error.stdout or ""), encoding="utf-8")
            raise FlowerRunError(f"`flwr run` did not finish within {timeout:.0f} s; see {log} and {self.home / 'logs'}.") from None
        output = done.stdout + done.stderr
        log.write_text(output, encoding="utf-8")
        if done.returncode != 0 or "ERROR" in output:
            lines = [_ANSI.sub("", line).strip() for line in output.splitlines() if line.strip()]
            raised = [found.group(1) for line in lines if (found := _RAISED.match(line))]
            errors = raised or [line for line in lines if "ERROR" in line] or lines[-1:] or [f"exit status {done.returncode}"]
            raise FlowerRunError(f"the Flower run failed: {errors[0].rstrip('.')}; the whole output is in {log}.")
        return output

    def stop(self, *, grace: float = 10.0) -> None:
        """SIGTERM the processes started here (ClientApp processes and SuperNodes first) and, after ``grace`` seconds, SIGKILL
        whatever of them or of their descendants is still alive."""
        started = {process.pid for process in self._processes}
        tree = [(pid, since) for pid, since in _descendants(started).items() if pid not in started]
        for process in reversed(self._processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for process in reversed(self._processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pid, since in tree:
            _end(pid, since, deadline=deadline)
        self._processes.clear()
        self._starting.clear()
        for handle in self._logs:
            handle.close()
        self._logs.clear()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent PID, start time in clock ticks) of a live process, None when there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return (int(fields[1]), int(fields[19])) if fields[0] not in ("Z", "X") else None


def _descendants(roots: set[int]) -> dict[int, int]:
    """Every live process below ``roots`` (and the roots), as PID -> start time."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[1]
    found: dict[int, int] = {}
    todo = [pid for pid in roots if pid in starts]
    while todo:
        pid = todo.pop()
        found[pid] = starts[pid]
        todo.extend(child for child in parents.get(pid, []) if child not in found)
    return found


def _end(pid: int, since: int, *, deadline: float) -> None:
    """SIGTERM, then SIGKILL at ``deadline``, the process ``pid`` if it is still the one that started at ``since``."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        while (stat := _stat(pid)) is not None and stat[1] == since and time.monotonic() < deadline:
            time.sleep(0.1)
        if (stat := _stat(pid)) is None or stat[1] != since:
            return
        os.kill(pid, signum)
        deadline = time.monotonic() + 2.0
