"""``atomic_file`` syncs the folder after its rename, so the rename itself survives a power cut.

A file's own fsync writes its bytes, not the folder entry that the rename changed; without the
folder's fsync a crash can bring back the old file (or none) after the command said it saved.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from ledger.workspace import atomic_write_bytes


def _spy_fsync(monkeypatch: pytest.MonkeyPatch, target: Path, *, fail_dirs_with: int | None = None) -> list[tuple[str, bytes | None]]:
    """Record each fsync: ("dir", what ``target`` held then) for a folder's descriptor, ("file", None) else."""
    real = os.fsync
    calls: list[tuple[str, bytes | None]] = []

    def spy(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            assert (info.st_dev, info.st_ino) == (target.parent.stat().st_dev, target.parent.stat().st_ino)
            calls.append(("dir", target.read_bytes() if target.exists() else None))
            if fail_dirs_with is not None:
                raise OSError(fail_dirs_with, os.strerror(fail_dirs_with))
        else:
            calls.append(("file", None))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    return calls


def test_the_folder_is_synced_after_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "fedledger.toml"
    target.write_bytes(b"old")
    calls = _spy_fsync(monkeypatch, target)
    atomic_write_bytes(target, b"new")
    assert calls == [("file", None), ("dir", b"new")]  # the bytes, then the folder once the rename is in it


def test_a_platform_that_cannot_sync_folders_still_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    calls = _spy_fsync(monkeypatch, target, fail_dirs_with=errno.EINVAL)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new" and calls[-1] == ("dir", b"new")

    real_open = os.open

    def no_folders(path: object, flags: int, *args: int) -> int:  # as on Windows: a folder cannot be opened
        if Path(str(path)).is_dir():
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_folders)
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer"


def test_a_disk_error_while_syncing_the_folder_is_not_hidden(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.bin"
    _spy_fsync(monkeypatch, target, fail_dirs_with=errno.EIO)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"new")
    assert caught.value.errno == errno.EIO
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]  # no temporary file left beside it
