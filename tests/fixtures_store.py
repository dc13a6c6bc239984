"""Store fixtures: a real ``fedledger ipfs serve`` process, and a way to run the console script.

``ipfs_server`` starts the installed console script on a free port (``--port 0``: the server
picks one and prints it), waits for its "listening on" line, and stops it by PID at the end of
the session. Other areas may use it for a Kubo-compatible API: ``ipfs_server.api`` is the
multiaddr to give ``KuboStore`` or ``--ipfs-api``; ``ipfs_server.repo`` is its store folder.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.store import KuboStore


def fedledger_command() -> list[str]:
    """The installed console script (next to this interpreter), else ``python -m`` on the entry point."""
    script = Path(sys.executable).parent / "fedledger"
    if script.is_file():
        return [str(script)]
    found = shutil.which("fedledger")
    if found:
        return [found]
    return [sys.executable, "-c", "from node.cli import main; main()"]


def run_fedledger(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run the real console script; stdout as bytes, stderr as bytes."""
    env = {**os.environ, "COLUMNS": "400", "NO_COLOR": "1"}
    env.pop("FEDLEDGER_WORKDIR", None)
    return subprocess.run([*fedledger_command(), *args], cwd=cwd, env=env, capture_output=True, timeout=timeout)


@dataclass(frozen=True)
class IpfsServer:
    """A running ``fedledger ipfs serve``."""

    api: str  # /ip4/127.0.0.1/tcp/PORT
    url: str  # http://127.0.0.1:PORT
    repo: Path
    pid: int


def start_ipfs_server(repo: Path, *, timeout: float = 30) -> tuple[IpfsServer, subprocess.Popen[bytes]]:
    """Start ``fedledger ipfs serve --port 0 --repo repo`` and wait until it listens."""
    process = subprocess.Popen(
        [*fedledger_command(), "ipfs", "serve", "--port", "0", "--repo", str(repo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"},
    )
    line: list[bytes] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    match = re.search(rb"listening on (/ip4/127\.0\.0\.1/tcp/(\d+))", line[0] if line else b"")
    if match is None:
        process.kill()
        _, err = process.communicate(timeout=10)
        raise RuntimeError(f"fedledger ipfs serve did not start: {(line[0] if line else b'')!r} {err.decode(errors='replace')}")
    port = match.group(2).decode()
    return IpfsServer(match.group(1).decode(), f"http://127.0.0.1:{port}", repo, process.pid), process


def stop_ipfs_server(server: IpfsServer, process: subprocess.Popen[bytes]) -> None:
    """SIGTERM by PID, then SIGKILL if it does not stop within 10 s."""
    if process.poll() is None:
        os.kill(server.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(server.pid, signal.SIGKILL)
            process.wait(10)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="session")
def ipfs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsServer]:
    """One ``fedledger ipfs serve`` for the session, on a free port, with its own repo."""
    server, process = start_ipfs_server(tmp_path_factory.mktemp("ipfs-serve-repo"))
    try:
        yield server
    finally:
        stop_ipfs_server(server, process)


@pytest.fixture
def kubo_store(ipfs_server: IpfsServer) -> KuboStore:
    """A KuboStore talking to the session's ``fedledger ipfs serve`` over HTTP."""
    return KuboStore(ipfs_server.api)
