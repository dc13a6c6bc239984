"""`chain up` and `chain down` never trust a PID alone: after anvil ends (or the machine restarts)
the number in chain/anvil.pid may belong to any process, and that process must be left alone."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from web3 import Web3

from deploy.anvil import AnvilProcess, find_anvil, free_port, rpc_chain_id
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated live process (as a reused PID would belong to), killed afterwards."""
    process = subprocess.Popen(["sleep", "300"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def record_pid(workspace: Workspace, pid: int) -> Path:
    pidfile = workspace.chain_dir / "anvil.pid"
    pidfile.write_text(f"{pid}\n")
    return pidfile


def test_chain_down_leaves_an_unrelated_process_alone_and_says_what_it_found(
    cli: Callable[..., Outcome], workspace: Workspace, stranger: subprocess.Popen[bytes]
) -> None:
    pidfile = record_pid(workspace, stranger.pid)
    outcome = cli("chain", "down", "--json", "--workdir", str(workspace.root))
    assert outcome.exit_code == 0, outcome.stderr
    assert stranger.poll() is None  # not signalled
    assert outcome.json() == {"stopped": False, "pid": stranger.pid, "found": "other", "command": "sleep 300"}
    message = " ".join(outcome.stderr.split())
    assert f"{pidfile} named pid {stranger.pid}, but that process is not this workspace's anvil" in message
    assert "(it runs `sleep 300`" in message and "left it running and removed the stale file" in message
    assert f"pgrep -af {workspace.chain_dir / 'anvil.json'}" in message
    assert not pidfile.exists()


@pytest.mark.anvil
def test_chain_down_leaves_another_workspaces_anvil_alone(
    cli: Callable[..., Outcome], workspace: Workspace, tmp_path: Path
) -> None:
    """The anvil binary is not enough: the process must run on this workspace's state file."""
    with AnvilProcess(state=tmp_path / "elsewhere" / "anvil.json") as other:
        assert other.pid is not None
        record_pid(workspace, other.pid)
        outcome = cli("chain", "down", "--workdir", str(workspace.root))
        assert outcome.exit_code == 0, outcome.stderr
        assert "is not this workspace's anvil" in outcome.stderr
        assert rpc_chain_id(other.rpc_url) == 31337  # still answering


def test_chain_down_removes_a_pidfile_whose_process_ended(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    pidfile = record_pid(workspace, ended.pid)
    outcome = cli("chain", "down", "--workdir", str(workspace.root))
    assert outcome.exit_code == 0, outcome.stderr
    message = " ".join(outcome.stderr.split())
    assert f"{pidfile} named pid {ended.pid}, which no longer runs" in message
    assert "removed the stale file, nothing to stop" in message
    assert not pidfile.exists()


@pytest.mark.anvil
def test_chain_up_replaces_a_pidfile_naming_an_unrelated_process(
    fedledger: Callable[..., Outcome], cli: Callable[..., Outcome], workspace: Workspace,
    stranger: subprocess.Popen[bytes],
) -> None:
    pidfile = record_pid(workspace, stranger.pid)
    port = free_port()
    up = fedledger("chain", "up", "--port", str(port), "--detach", "--block-time", "1", "--json",
                   "--workdir", str(workspace.root))
    assert up.exit_code == 0, up.stderr
    anvil_pid = up.json()["pid"]
    assert int(pidfile.read_text()) == anvil_pid != stranger.pid
    w3 = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{port}"))
    first = w3.eth.block_number
    deadline = time.monotonic() + 10
    while w3.eth.block_number == first and time.monotonic() < deadline:  # --block-time: blocks come without transactions
        time.sleep(0.1)
    assert w3.eth.block_number > first

    down = cli("chain", "down", "--json", "--workdir", str(workspace.root))
    assert down.exit_code == 0, down.stderr
    assert down.json()["stopped"] is True and down.json()["pid"] == anvil_pid
    assert rpc_chain_id(f"http://127.0.0.1:{port}", timeout=0.5) is None
    assert stranger.poll() is None


# Starts the command it is given and sleeps without ever reaping it, as an init that reaps late would.
NEGLECTFUL_PARENT = "import subprocess, sys, time; child = subprocess.Popen(sys.argv[1:]); print(child.pid, flush=True); time.sleep(300)"


@pytest.mark.anvil
def test_chain_down_sees_an_ended_anvil_that_nobody_has_reaped_yet(
    cli: Callable[..., Outcome], workspace: Workspace
) -> None:
    """A detached anvil outlives the `chain up` that started it; once it ends it stays a zombie until
    whoever adopted it reaps it. `chain down` must count it as stopped, not wait on it forever."""
    state, port = workspace.chain_dir / "anvil.json", free_port()
    command = [str(find_anvil()), "--host", "127.0.0.1", "--port", str(port), "--silent", "--state", str(state)]
    parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT, *command], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        anvil_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 30
        while rpc_chain_id(f"http://127.0.0.1:{port}", timeout=0.5) is None:
            assert time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.05)
        record_pid(workspace, anvil_pid)
        outcome = cli("chain", "down", "--json", "--workdir", str(workspace.root))
        assert outcome.exit_code == 0, outcome.stderr
        assert outcome.json()["stopped"] is True and outcome.json()["found"] == "anvil"
        assert state.stat().st_size > 0  # it ended on SIGTERM, writing its state
        assert (Path(f"/proc/{anvil_pid}/stat").read_text().rpartition(")")[2].split()[0]) == "Z"  # still unreaped
    finally:
        parent.kill()
        parent.wait()
