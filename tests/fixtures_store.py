"""Store fixtures: a real ``fedledger ipfs serve`` process, and a way to run the console script.

``ipfs_server`` starts the installed console script on a free port (``--port 0``: the server
picks one and prints it), waits for its "listening on" line, and stops it by PID at the end of
the session. Other areas may use it for a Kubo-compatible API: ``ipfs_server.api`` is the
multiaddr to give ``KuboStore`` or ``--ipfs-api``; ``ipfs_server.repo`` is its store folder.
``visible_blocks`` and ``assert_no_partial_object`` inspect an embedded store after a crash;
``stored_copy``, ``damage_block`` and ``lose_block`` find, alter and remove a block where the
store keeps it (its own file under ``blocks/``, or a stretch of a pack named by ``index.sqlite``),
reading the on-disk format directly rather than through the code under test.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.ipfs.cid import RAW, cid_digest, cid_to_bytes
from ledger.ipfs.store import EmbeddedStore, KuboStore
from ledger.ipfs.unixfs import decode_node


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


def start_ipfs_server(
    repo: Path, *, timeout: float = 30, env: Mapping[str, str] | None = None
) -> tuple[IpfsServer, subprocess.Popen[bytes]]:
    """Start ``fedledger ipfs serve --port 0 --repo repo`` and wait until it listens; ``env`` adds variables."""
    process = subprocess.Popen(
        [*fedledger_command(), "ipfs", "serve", "--port", "0", "--repo", str(repo)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1", **(env or {})},
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


def _index_rows(store: EmbeddedStore) -> dict[str, tuple[str, int, int]]:
    with closing(sqlite3.connect(store.root / "index.sqlite")) as db:
        return {cid: (pack, offset, size) for cid, pack, offset, size in db.execute("SELECT * FROM blocks")}


def visible_blocks(store: EmbeddedStore) -> set[str]:
    """The CIDs of every block a reader of the store can see."""
    files = {path.name for path in (store.root / "blocks").rglob("*") if path.is_file()}
    return files | set(_index_rows(store))


def stored_copy(store: EmbeddedStore, cid: str) -> tuple[Path, int, int]:
    """Where the store keeps block ``cid``: a file, the offset of the block in it and its length."""
    path = store.block_path(cid)
    if path.is_file():
        return path, 0, path.stat().st_size
    pack, offset, size = _index_rows(store)[cid]
    return store.root / "packs" / f"{pack}.pack", offset, size


def read_stored(store: EmbeddedStore, cid: str) -> bytes:
    path, offset, size = stored_copy(store, cid)
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


def damage_block(store: EmbeddedStore, cid: str, at: int = 0) -> bytes:
    """Flip byte ``at`` of block ``cid`` where it is stored; returns the block's bytes before."""
    path, offset, _ = stored_copy(store, cid)
    before = read_stored(store, cid)
    with open(path, "r+b") as handle:
        handle.seek(offset + at)
        handle.write(bytes([before[at] ^ 0xFF]))
    return before


def lose_block(store: EmbeddedStore, cid: str) -> None:
    """Remove block ``cid`` from the store, as a lost file or a dropped index row would."""
    path = store.block_path(cid)
    if path.is_file():
        path.unlink()
        return
    with closing(sqlite3.connect(store.root / "index.sqlite")) as db, db:
        db.execute("DELETE FROM blocks WHERE cid = ?", (cid,))


def assert_no_partial_object(store: EmbeddedStore) -> None:
    """Every visible block is whole, and every visible parent's children are visible too."""
    for name in visible_blocks(store):
        data = read_stored(store, name)
        assert hashlib.sha256(data).digest() == cid_digest(name), f"block {name} is not whole"
        if cid_to_bytes(name)[1] != RAW:
            for link in decode_node(name, data).links:
                assert store.has(link.cid), f"{name} is visible but its child {link.cid} is not"
