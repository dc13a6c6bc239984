"""The workspace: a folder holding ``fedledger.toml`` and everything a federation keeps locally.

Layout (paths relative to the workspace root)::

    fedledger.toml      configuration (see DEFAULT_CONFIG)
    store/              the embedded content store
    keys/               encrypted keystore files
    chain/anvil.json    anvil's persisted state; chain/anvil.pid while it runs
    journal/            participant and aggregator journals (idempotent restarts)
    audit.sqlite        the audit index

Commands find the workspace from the current folder upward, or take ``--workdir DIR``.
Values resolve as: flag, then environment (``FEDLEDGER_*``), then ``fedledger.toml``.
"""

from __future__ import annotations

import copy
import errno
import os
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import tomli_w

from ledger.errors import ConfigError, WorkspaceNotFoundError
from ledger.failpoints import failpoint

CONFIG_NAME = "fedledger.toml"

DEFAULT_CONFIG: dict[str, Any] = {
    "chain": {
        # "memory" is the in-process chain (demo and unit tests only); otherwise an RPC URL.
        "rpc": "http://127.0.0.1:8545",
        "anvil_port": 8545,
        # Transactions (ledger.chain.transactions; README "Running on a real network"). A fee cap,
        # max_fee_gwei = N (gwei per gas; unset: none), refuses a transaction the chain's fees would
        # put over it. One not mined within replace_after_s seconds is replaced with higher fees (or
        # resent if dropped); a command succeeds once its transaction is `confirmations` blocks deep.
        "replace_after_s": 30,
        "confirmations": 0,
    },
    "deployment": {},  # address, chain_id, block: written by `fedledger deploy`
    "store": {
        "backend": "embedded",  # or "kubo"
        "path": "store",
        "api": "/ip4/127.0.0.1/tcp/5001",
    },
    "keys": {},  # role or name -> keystore path relative to the workspace
}

ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "FEDLEDGER_RPC": ("chain", "rpc"),
    "FEDLEDGER_STORE": ("store", "backend"),
    "FEDLEDGER_IPFS_API": ("store", "api"),
    "FEDLEDGER_STORE_AUTH": ("store", "auth"),  # the store's secret: only ever from the environment
}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


_NO_DIR_SYNC = frozenset(getattr(errno, name) for name in ("EINVAL", "ENOTSUP", "EOPNOTSUPP", "EBADF", "EACCES")
                         if hasattr(errno, name))
"""fsync errors that mean "this file system or platform does not sync folders", not a failed disk."""


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A handle whose bytes replace ``path`` durably when the block ends, and are dropped if it raises.

    Readers see the old file or the new one, never a part: the bytes go to a temporary file beside
    ``path``, which is renamed over it once they are on disk. A crash before the rename (the
    failpoint ``atomic-file:before-rename``) leaves the old file whole. After the rename the folder
    itself is synced, so that the rename, too, survives a power cut (see ``fsync_dir``).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        failpoint("atomic-file:before-rename")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Sync ``folder``'s entries (a rename in it) to disk; a no-op where folders cannot be opened or synced.

    POSIX keeps a rename in the folder's metadata, which a file's own fsync does not write. Windows
    cannot open a folder with ``os.open`` and some file systems refuse to sync one (EINVAL): the
    rename has happened and readers see it, so those are skipped rather than failing the write.
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(folder, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in _NO_DIR_SYNC:
            raise  # EIO and the like: the disk failed, which the caller must hear of
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    with atomic_file(path) as handle:
        handle.write(data)


@dataclass
class Workspace:
    """A federation's local folder and its configuration."""

    root: Path
    config: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULT_CONFIG))

    # -- finding and making -------------------------------------------------------------
    @classmethod
    def init(cls, root: Path | str, *, rpc: str | None = None) -> Workspace:
        """Create a new workspace in ``root``; refuses one that already has a configuration."""
        root = Path(root).resolve()
        if (root / CONFIG_NAME).exists():
            raise ConfigError(
                f"{root} already holds a fedledger workspace ({CONFIG_NAME}); "
                "use it as it is, or choose an empty folder."
            )
        if root.exists() and not root.is_dir():
            raise ConfigError(f"{root} is a file, not a folder; choose a folder path for the workspace.")
        workspace = cls(root=root)
        if rpc is not None:
            workspace.config["chain"]["rpc"] = rpc
        for sub in ("store", "keys", "chain", "journal"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        workspace.save()
        return workspace

    @classmethod
    def load(cls, root: Path | str) -> Workspace:
        root = Path(root).resolve()
        path = root / CONFIG_NAME
        if not path.is_file():
            raise WorkspaceNotFoundError(
                f"{root} is not a fedledger workspace (no {CONFIG_NAME}); "
                f"create one with `fedledger init {root}` or pass --workdir."
            )
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path} is not valid TOML ({error}); fix or restore the file.") from error
        return cls(root=root, config=_merge(DEFAULT_CONFIG, data))

    @classmethod
    def find(cls, workdir: Path | str | None = None, *, start: Path | str | None = None) -> Workspace:
        """The workspace at ``workdir`` (or ``$FEDLEDGER_WORKDIR``), else the nearest one above ``start``."""
        explicit = workdir or os.environ.get("FEDLEDGER_WORKDIR")
        if explicit:
            return cls.load(explicit)
        here = Path(start or Path.cwd()).resolve()
        for folder in (here, *here.parents):
            if (folder / CONFIG_NAME).is_file():
                return cls.load(folder)
        raise WorkspaceNotFoundError(
            f"no fedledger workspace in {here} or any folder above it; "
            "create one with `fedledger init DIR` or pass --workdir DIR."
        )

    # -- reading and writing ------------------------------------------------------------
    def save(self) -> None:
        """Write ``fedledger.toml`` atomically."""
        atomic_write_bytes(self.config_path, tomli_w.dumps(self.config).encode("utf-8"))

    def require_writable(self, config: dict[str, Any] | None = None) -> None:
        """ConfigError unless ``save()`` could write ``config`` (default: the current one) now.

        The bytes go to a scratch file beside fedledger.toml, synced and deleted; a read-only folder,
        a full disk or a size limit shows here. Call it before an act whose result must be recorded
        and cannot be taken back (a deployment): afterwards it is too late to refuse.
        """
        data = tomli_w.dumps(self.config if config is None else config).encode("utf-8")
        scratch: str | None = None
        try:
            fd, scratch = tempfile.mkstemp(dir=self.root, prefix=f".{CONFIG_NAME}.", suffix=".probe")
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as error:
            raise ConfigError(
                f"cannot write {self.config_path} ({error.strerror or error}), so nothing was done; make the "
                "workspace folder writable or free disk space, then run the command again."
            ) from error
        finally:
            if scratch is not None:
                Path(scratch).unlink(missing_ok=True)

    def get(self, section: str, key: str, default: Any = None) -> Any:
        """A setting, with ``FEDLEDGER_*`` environment variables taking precedence over the file."""
        for env, (env_section, env_key) in ENV_OVERRIDES.items():
            if (env_section, env_key) == (section, key) and os.environ.get(env):
                return os.environ[env]
        return self.config.get(section, {}).get(key, default)

    def set(self, section: str, key: str, value: Any) -> None:
        self.config.setdefault(section, {})[key] = value

    def path(self, relative: str | Path) -> Path:
        """A path inside the workspace (absolute paths are kept as they are)."""
        candidate = Path(relative)
        return candidate if candidate.is_absolute() else self.root / candidate

    @property
    def config_path(self) -> Path:
        return self.root / CONFIG_NAME

    @property
    def store_dir(self) -> Path:
        return self.path(self.get("store", "path", "store"))

    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    @property
    def chain_dir(self) -> Path:
        return self.root / "chain"

    @property
    def journal_dir(self) -> Path:
        return self.root / "journal"

    @property
    def index_path(self) -> Path:
        return self.root / "audit.sqlite"
