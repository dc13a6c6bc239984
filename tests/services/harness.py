"""Service processes for tests: the installed console script run with ``--log-json``, its events read live.

A reader thread parses each stdout line as it comes, so a test waits for an event (``wait_for``)
instead of sleeping, and acts on it at once (SIGKILL a party when it starts training). Every wait
has a deadline; a process that exits before the awaited event fails the wait at once with its
stderr. ``stop`` (for finally blocks) ends the process by PID whatever state it is in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from node.data import load_digits_split
from tests.fixtures_cli import FEDLEDGER, clean_env

Record = dict[str, Any]
READER_DRAIN_S = 10.0
"""How long to wait, once a process has exited, for the reader to reach the end of its output."""


class ServiceProcess:
    """One running ``fedledger`` service (``prefix`` runs it elsewhere, e.g. ``ip netns exec NS``)."""

    def __init__(
        self, name: str, args: Sequence[str], *, env: dict[str, str] | None, log_dir: Path, prefix: Sequence[str] = ()
    ) -> None:
        self.name = name
        self.args = list(args)
        log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = log_dir / f"{name}-{time.monotonic_ns()}.err"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in stop()
        self.events: list[Record] = []
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            [*prefix, str(FEDLEDGER), *self.args], stdout=subprocess.PIPE, stderr=self._stderr, text=True,
            env=clean_env(env),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                record = {"event": "not-json", "line": line}
            with self._changed:
                self.events.append(record)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def matching(self, event: str, where: Callable[[Record], bool] = lambda r: True) -> list[Record]:
        with self._changed:
            return [r for r in self.events if r.get("event") == event and where(r)]

    def wait_for(self, event: str, *, timeout: float, where: Callable[[Record], bool] = lambda r: True) -> Record:
        """The first ``event`` record that satisfies ``where``, waiting up to ``timeout`` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.events if r.get("event") == event and where(r)]
                if found:
                    return found[0]
                ended = self.process.poll() is not None and not self._reader.is_alive()
                left = deadline - time.monotonic()
                if ended or left <= 0:
                    why = f"exited with {self.process.returncode}" if ended else f"still running after {timeout:.0f} s"
                    raise AssertionError(
                        f"{self.name} {why} without a {event!r} event\n--- events:\n"
                        + "\n".join(json.dumps(r) for r in self.events[-30:]) + f"\n--- stderr:\n{self.stderr[-4000:]}"
                    )
                self._changed.wait(min(left, 0.5))

    def save_events(self) -> Path:
        """Write the events read so far beside the stderr file (for a look after a failure)."""
        path = self.stderr_path.with_suffix(".jsonl")
        with self._changed:
            path.write_text("".join(json.dumps(r) + "\n" for r in self.events))
        return path

    def wait_exit(self, timeout: float) -> int:
        """The exit status, once the process has exited AND its last lines are in ``events`` (the reader
        thread may still be parsing them when the process is gone)."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name} did not exit within {timeout:.0f} s\n{self.stderr[-4000:]}") from None
        self._reader.join(READER_DRAIN_S)
        return status

    def signal(self, sig: signal.Signals) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then its exit status (a clean stop is 0)."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait_exit(30)

    def stop(self) -> None:
        """End the process by PID, however it is doing (for finally blocks)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._stderr.close()


@contextmanager
def mining(rpc: Callable[[str, list], object], every_s: float = 0.1) -> Iterator[None]:
    """Mine a block every ``every_s`` seconds in the background while the body runs (anvil's automine mines
    only on transactions: a step that waits for its transaction to be N blocks deep needs blocks to come)."""
    done = threading.Event()

    def mine() -> None:
        while not done.wait(every_s):
            rpc("evm_mine", [])

    miner = threading.Thread(target=mine)
    miner.start()
    try:
        yield
    finally:
        done.set()
        miner.join(5)


def shard_files(folder: Path, *, parties: int, seed: int = 0) -> list[Path]:
    """The digits shards ``--shard I --of parties`` trains on, as .npz files: a party given ``--data``
    does not import scikit-learn, which saves seconds of start-up per process on a small machine."""
    folder.mkdir(parents=True, exist_ok=True)
    shards, _ = load_digits_split(parties=parties, seed=seed)
    paths = []
    for index, shard in enumerate(shards):
        path = folder / f"shard-{index}-of-{parties}.npz"
        np.savez(path, x=shard.x, y=shard.y)
        paths.append(path)
    return paths
