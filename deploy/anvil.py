"""Start and stop a local anvil node: the native binary from the npm package, by PID.

``node_modules/.bin/anvil`` is a node wrapper that forwards only SIGINT/SIGTERM (a SIGKILL to it
orphans anvil), so the native binary is spawned and signalled directly. SIGTERM makes anvil dump
``--state`` before it exits; SIGKILL would not, so it only follows a timeout.

A PID file is never trusted alone: once anvil has ended (or after a reboot) its PID may belong to
any process, so a process is signalled only when its command line names the anvil binary and the
state file it was started with.

:class:`LocalChainProcess` is what a local dev chain node has in common (a free port, waiting for
its first answer, stopping it by PID, its funded dev accounts); ``deploy.hardhat`` starts the
second EVM implementation fedledger is tested on, Hardhat's node, with it.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from ledger.errors import ChainError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

BINARY_REL = Path("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
HOST = "127.0.0.1"
DEFAULT_PORT = 8545
# The dev mnemonic anvil and Hardhat's node both fund by default (publicly known: local chains only).
DEV_MNEMONIC = "test test test test test test test test test test test junk"


def find_in_node_modules(relative: Path, *, what: str, start: Path | None = None) -> Path:
    """``relative`` (a path under node_modules) in the repository root's or the current folder's
    node_modules, executable; ChainError naming ``what`` and `npm ci` when neither has it."""
    roots = [Path(__file__).resolve().parent.parent, Path.cwd() if start is None else start]
    for root in roots:
        candidate = root / relative
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise ChainError(f"{what} ({relative}) is not installed; run `npm ci` at the repository root.")


def find_anvil(*, start: Path | None = None) -> Path:
    """The native anvil binary under the repository root's or the current folder's node_modules."""
    return find_in_node_modules(BINARY_REL, what="the anvil binary", start=start)


def dev_accounts(count: int = 10) -> list[LocalAccount]:
    """The first ``count`` accounts of :data:`DEV_MNEMONIC` (m/44'/60'/0'/0/i), with their keys."""
    from eth_account import Account  # here: the CLI imports this module, and most commands need no key

    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def rpc_chain_id(url: str, *, timeout: float = 1.0) -> int | None:
    """The chain id answered at ``url``, or None when nothing answers."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(json.loads(response.read())["result"], 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError):
        return None


def _ended(stat: str) -> bool:
    """Whether a /proc/PID/stat line is a zombie's (or a dead task's): only its exit status is left."""
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0): reap it if it is our child, else ask /proc (a detached
    # anvil's parent has gone; whoever adopted it reaps it in its own time).
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        try:
            return not _ended(Path(f"/proc/{pid}/stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            return not Path("/proc/self").is_dir()  # gone where /proc exists; without /proc, kill(0) decides
        except OSError:
            return True
    return done == 0


def stop_pid(pid: int, *, timeout: float = 10.0) -> bool:
    """SIGTERM ``pid`` (anvil dumps its state), SIGKILL it after ``timeout``; False if it was gone.

    It signals whatever holds ``pid``: check first what that is (:func:`inspect_pidfile`).
    """
    if not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    while _alive(pid):
        time.sleep(0.02)
    return True


def process_command(pid: int) -> list[str] | None:
    """The command line (argv) of the live process ``pid``; None when none runs (or only a zombie).

    Read from /proc (Linux, where the anvil binary fedledger runs lives). An empty list means a
    live process whose command line cannot be read (another user's, or no /proc here).
    """
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None if Path("/proc/self").is_dir() or not _alive(pid) else []
    except PermissionError:
        return []
    if _ended(stat):
        _alive(pid)  # reaps it if it is our child
        return None
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return None
    except PermissionError:
        return []
    return [arg.decode(errors="replace") for arg in (argv[:-1] if argv[-1:] == [b""] else argv)]


def is_anvil_on(pid: int, argv: list[str], state: Path | None) -> bool:
    """Whether ``argv`` (process ``pid``'s) runs the anvil binary, with ``--state state`` when given."""
    if not argv or Path(argv[0]).name != "anvil":
        return False
    if state is None:
        return True
    given = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--state"]
    if not given:
        return False
    path = Path(given[-1])
    if not path.is_absolute():
        try:
            path = Path(os.readlink(f"/proc/{pid}/cwd")) / path
        except OSError:
            return False
    return os.path.realpath(path) == os.path.realpath(state)


@dataclass(frozen=True)
class RecordedProcess:
    """What a PID file names.

    ``status``: "none" (no PID file), "anvil" (the anvil it records, alive), "gone" (no process
    holds that PID any more, or the file holds no PID) or "other" (a live process that is not that
    anvil: the PID was reused, e.g. after a reboot). ``command`` is the live process's command line.
    """

    pidfile: Path
    status: Literal["none", "anvil", "gone", "other"]
    pid: int | None = None
    command: str = ""


def inspect_pidfile(pidfile: Path, *, state: Path | None = None) -> RecordedProcess:
    """What ``pidfile`` names: an anvil (on ``state`` when given), a dead PID or another program.

    A PID alone proves nothing (after a reboot, or once anvil has ended, the number may belong to
    any process), so the process's command line must name the anvil binary and the state file.
    """
    pidfile = Path(pidfile)
    try:
        text = pidfile.read_text().strip()
    except FileNotFoundError:
        return RecordedProcess(pidfile, "none")
    try:
        pid = int(text)
    except ValueError:
        return RecordedProcess(pidfile, "gone")
    if pid <= 0:
        return RecordedProcess(pidfile, "gone")
    argv = process_command(pid)
    if argv is None:
        return RecordedProcess(pidfile, "gone", pid)
    command = shlex.join(argv) if argv else "a process whose command line cannot be read"
    return RecordedProcess(pidfile, "anvil" if is_anvil_on(pid, argv, state) else "other", pid, command)


def stop_recorded(pidfile: Path, *, state: Path | None = None, timeout: float = 10.0) -> RecordedProcess:
    """Stop the anvil ``pidfile`` names, only if it is that anvil (see :func:`inspect_pidfile`),
    and remove the file whatever it named: a PID that is not that anvil's is stale."""
    found = inspect_pidfile(pidfile, state=state)
    if found.status == "anvil" and found.pid is not None:
        stop_pid(found.pid, timeout=timeout)
    if found.status != "none":
        found.pidfile.unlink(missing_ok=True)
    return found


def stop_pidfile(pidfile: Path, *, state: Path | None = None, timeout: float = 10.0) -> bool:
    """:func:`stop_recorded`, as a yes or no: whether it stopped an anvil."""
    return stop_recorded(pidfile, state=state, timeout=timeout).status == "anvil"


class LocalChainProcess:
    """One local development chain node on 127.0.0.1: anvil (:class:`AnvilProcess`) or Hardhat's
    (``deploy.hardhat.HardhatProcess``). Subclasses say how it is started (:meth:`command`).

    ``start()`` spawns it (detached from this process's session when ``detach`` is set, so it
    outlives the CLI that started it) and waits until it answers ``eth_chainId``; ``stop()``
    ends it by PID. Usable as a context manager. Both nodes fund the same dev accounts: the first
    ones of the mnemonic :data:`DEV_MNEMONIC` (:meth:`dev_accounts`).
    """

    name = "the chain node"
    start_hint = "check the port"  # what to check when the node exits at start

    def __init__(
        self,
        *,
        port: int | None = None,
        log: Path | None = None,
        detach: bool = False,
        startup_timeout: float = 10.0,
    ) -> None:
        self.port = free_port() if port is None else port
        self.log = log
        self.detach = detach
        self.startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def rpc_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The node's environment; None: this process's."""
        return None

    def working_directory(self) -> Path | None:
        return None

    def _prepare(self) -> None:
        """Run before the node is spawned (e.g. make the state file's folder)."""

    def dev_accounts(self, count: int = 10) -> list[LocalAccount]:
        """The node's first ``count`` funded dev accounts, with their (publicly known) keys."""
        return dev_accounts(count)

    def start(self) -> Self:
        if self._process is not None:
            return self
        if port_in_use(self.port):
            raise ChainError(
                f"port {self.port} on {HOST} is already taken; stop what runs there "
                "(`fedledger chain down`) or pick another port with --port."
            )
        command = self.command()
        self._prepare()
        # Output goes to the log, or to an unlinked temporary file: never a pipe, which would
        # break (EPIPE) once a detached node outlives the process that started it.
        output = open(self.log, "a+b") if self.log is not None else tempfile.TemporaryFile()
        with output:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=self.detach,
                env=self.environment(),
                cwd=self.working_directory(),
            )
            deadline = time.monotonic() + self.startup_timeout
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    self._process = None
                    output.seek(0)
                    lines = output.read()[-4000:].decode(errors="replace").strip().splitlines()
                    why = next((line for line in lines if line.lower().startswith("error")), lines[-1] if lines else "no output")
                    raise ChainError(f"{self.name} exited at start ({why}); {self.start_hint}.")
                if rpc_chain_id(self.rpc_url, timeout=0.5) is not None:
                    return self
                time.sleep(0.02)
        self.stop()
        raise ChainError(f"{self.name} did not answer on {self.rpc_url} within {self.startup_timeout:.0f} s; see its log.")

    def stop(self, *, timeout: float = 10.0) -> None:
        if self._process is None:
            return
        process, self._process = self._process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AnvilProcess(LocalChainProcess):
    """One anvil node on 127.0.0.1 (the native binary, signalled by its PID), with its state in
    ``state`` when given: loaded at start, written when it is stopped."""

    name = "anvil"
    start_hint = "check the port and the --state file"

    def __init__(
        self,
        *,
        port: int | None = None,
        state: Path | None = None,
        chain_id: int | None = None,
        block_time: int | None = None,
        log: Path | None = None,
        detach: bool = False,
        binary: Path | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(port=port, log=log, detach=detach, startup_timeout=startup_timeout)
        self.state = state
        self.chain_id = chain_id
        self.block_time = block_time
        self.binary = binary
        self.extra_args = extra_args

    def command(self) -> list[str]:
        binary = self.binary or find_anvil()
        command = [str(binary), "--host", HOST, "--port", str(self.port), "--silent"]
        if self.state is not None:  # with every block's state, so reads at a past block work after a restart
            command += ["--state", str(self.state), "--preserve-historical-states"]
        if self.chain_id is not None:
            command += ["--chain-id", str(self.chain_id)]
        if self.block_time is not None:
            command += ["--block-time", str(self.block_time)]
        return command + list(self.extra_args)

    def _prepare(self) -> None:
        if self.state is not None:
            Path(self.state).parent.mkdir(parents=True, exist_ok=True)
