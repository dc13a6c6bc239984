"""Task bundles: the same files give the same bytes; a stranger's bundle is read strictly; the cache is reused."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import time
from pathlib import Path

import pytest

from ledger.ipfs.unixfs import cid_of_bytes
from node.tasks import bundle as bundle_module
from node.tasks.builtin import BUILTIN_TASKS, builtin_bundle
from node.tasks.bundle import MANIFEST_NAME, STALE_AFTER_S, manifest_of_folder, pack_task, read_bundle, unpack_task
from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest
from tests.tasks.helpers import BUILTIN_CIDS, write_task

SOURCE = "import torch\n\ndef model():\n    return torch.nn.Linear(4, 2)\n\ndef load_data(path, *, partition, partitions, seed):\n    return None, None\n"


def _task(folder: Path) -> Path:
    """A task with a subpackage, a data folder and every kind of clutter the packer leaves out."""
    write_task(folder, SOURCE, extra='exclude = ["*.csv", "secrets/", "notes/draft-*"]\n')
    (folder / "helpers").mkdir()
    (folder / "helpers" / "__init__.py").write_text("SCALE = 2\n")
    (folder / "helpers" / "weights.bin").write_bytes(bytes(range(256)) * 10)
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.md").write_text("keep me\n")
    (folder / "notes" / "draft-1.md").write_text("leave me out\n")
    for clutter in ("__pycache__/task.cpython-311.pyc", "helpers/__pycache__/x.pyc", ".git/HEAD", ".venv/pyvenv.cfg",
                    "task.egg-info/PKG-INFO", ".pytest_cache/v", "build/lib/task.py", "dist/task.whl", "stray.pyc",
                    ".DS_Store", "data.csv", "secrets/key.txt"):
        path = folder / clutter
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("clutter\n")
    os.symlink("/usr/bin/python3", folder / ".venv" / "python")  # inside a left-out folder: never looked at
    os.symlink("/nowhere", folder / "helpers" / ".venv")  # a left-out name, even as a link
    return folder


def test_same_files_give_the_same_bytes_whatever_their_times_modes_and_walk_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _task(tmp_path / "a")
    data = pack_task(first)
    second = tmp_path / "elsewhere" / "b"
    shutil.copytree(first, second, symlinks=True)
    for index, path in enumerate(sorted(p for p in second.rglob("*") if p.is_file() and not p.is_symlink())):
        os.utime(path, (1_000_000 + index, 2_000_000_000 + index * 7))
        path.chmod(0o755 if index % 2 else 0o600)
    real_scandir = os.scandir

    class Reversed:  # the folder walked in the opposite order
        def __init__(self, path: object) -> None:
            self.entries = list(real_scandir(path))[::-1]

        def __enter__(self) -> list[os.DirEntry[str]]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

    monkeypatch.setattr(bundle_module.os, "scandir", Reversed)
    assert pack_task(second) == data
    monkeypatch.undo()

    manifest, files = read_bundle(data)
    assert sorted(files) == ["helpers/__init__.py", "helpers/weights.bin", "notes/readme.md", "pyproject.toml", "task.py"]
    assert manifest.files["helpers/weights.bin"].size == 2560
    assert manifest.files["task.py"].sha256 == hashlib.sha256(SOURCE.encode()).hexdigest()
    assert manifest == manifest_of_folder(first)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert members[0].name == MANIFEST_NAME and [m.name for m in members[1:]] == sorted(files)
    assert {(m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname, m.type) for m in members} == {(0, 0o644, 0, 0, "", "", tarfile.REGTYPE)}
    # An unpacked bundle packs again to the very same bytes.
    unpacked = unpack_task(data, cid_of_bytes(data), tmp_path / "cache")
    assert pack_task(unpacked) == data


def test_the_builtin_tasks_keep_their_cids() -> None:
    assert {name: cid_of_bytes(builtin_bundle(name)) for name in BUILTIN_TASKS} == BUILTIN_CIDS
    manifest, files = read_bundle(builtin_bundle("cnn"))
    assert (manifest.name, manifest.module, sorted(files)) == ("digits-cnn", "digits_cnn", ["digits_cnn.py", "pyproject.toml"])


@pytest.mark.parametrize("what", ["symlink", "fifo", "oversize", "module-excluded", "long-path"])
def test_what_cannot_be_packed_is_refused_by_name(tmp_path: Path, what: str) -> None:
    folder = write_task(tmp_path / "t", SOURCE)
    limit = bundle_module.DEFAULT_MAX_BYTES
    if what == "symlink":
        (folder / "data").mkdir()
        os.symlink("/etc/passwd", folder / "data" / "users.txt")
        expected = "holds a symbolic link, data/users.txt"
    elif what == "fifo":
        os.mkfifo(folder / "pipe")
        expected = "holds pipe, which is not a regular file"
    elif what == "oversize":
        (folder / "big.bin").write_bytes(b"\0" * 5000)
        limit = 4096
        expected = "is larger than the bundle limit"
    elif what == "module-excluded":
        (folder / "pyproject.toml").write_text((folder / "pyproject.toml").read_text() + 'exclude = ["task.py"]\n')
        expected = "would pack no file of its module 'task' (task.py or task/__init__.py)"
    else:
        (folder / ("x" * 110 + ".py")).write_text("")  # USTAR: at most 100 bytes after the last '/'
        expected = "is too long for a task bundle"
    with pytest.raises(TaskError) as caught:
        pack_task(folder, max_bytes=limit)
    assert expected in str(caught.value), caught.value


def _tar(members: list[tuple[str, bytes]], **fields: object) -> bytes:
    """A tar of ``members`` as fedledger packs one, except for ``fields`` set on every member."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uname, info.gname = len(content), 0o644, "", ""
            for key, value in fields.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_strangers_bundle_is_refused_for_each_kind_of_tampering(tmp_path: Path) -> None:
    data = pack_task(write_task(tmp_path / "t", SOURCE))
    manifest, files = read_bundle(data)
    manifest_bytes = manifest.to_json()
    good = [(MANIFEST_NAME, manifest_bytes), *sorted(files.items())]
    assert _tar(good) == data  # the helper packs as fedledger does: each case below differs in one way

    offset = data.index(b"def model")
    flipped = data[:offset] + bytes([data[offset] ^ 0x20]) + data[offset + 1 :]
    listed_twice = TaskManifest(manifest.name, manifest.module, manifest.settings, manifest.dependencies,
                                {**manifest.files, "../evil.py": manifest.files["task.py"]}).to_json()
    cases = {
        "a byte of task.py": (flipped, "task.py does not match its sha256 in the manifest"),
        "an unlisted file": (_tar([*good, ("zz.py", b"x")]), "it holds zz.py, which its manifest does not list"),
        "a '..' member": (_tar([*good, ("../evil.py", b"x")]), "its member '../evil.py' is a path that climbs out"),
        "an absolute member": (_tar([*good, ("/etc/evil.py", b"x")]), "its member '/etc/evil.py' is an absolute path"),
        "a '..' in the manifest": (_tar([(MANIFEST_NAME, listed_twice), *good[1:]]), "its manifest lists '../evil.py'"),
        "no manifest": (_tar(good[1:]), "its first member is 'pyproject.toml', not the manifest fedledger-task.json"),
        "the manifest last": (_tar([*good[1:], good[0]]), "not the manifest"),
        "a missing file": (_tar(good[:-1]), "its manifest lists task.py, which it does not hold"),
        "a duplicate": (_tar([*good, ("task.py", files["task.py"])]), "it holds 'task.py' twice"),
        "a symlink": (_tar([*good, ("link", b"")], type=tarfile.SYMTYPE, linkname="/etc/passwd"), "is a symbolic link"),
        "a directory": (_tar([*good, ("sub", b"")], type=tarfile.DIRTYPE), "is a directory"),
        "a timestamp": (_tar(good, mtime=1_700_000_000), "not in the canonical form"),
        "an executable": (_tar(good, mode=0o755), "not in the canonical form"),
        "a gzip": (__import__("gzip").compress(data, mtime=0), "not a readable tar archive"),
        "garbage": (b"not a tar at all" * 100, "not a readable tar archive"),
        "trailing bytes": (data + b"\0" * 512 + b"x" * 512, "not in the canonical form"),
        "non-canonical manifest": (_tar([(MANIFEST_NAME, manifest_bytes.replace(b",", b", ", 1)), *good[1:]]),
                                   "not in canonical form"),
    }
    for case, (blob, expected) in cases.items():
        with pytest.raises(TaskError) as caught:
            read_bundle(blob, source="bundle X")
        message = str(caught.value)
        assert message.startswith("bundle X is not a fedledger task bundle ("), (case, message)
        assert expected in message, (case, message)
        assert "\n" not in message, case
    with pytest.raises(TaskError, match="over the limit"):
        read_bundle(data, max_bytes=len(data) - 1)


def test_the_cache_extracts_once_reuses_a_sound_folder_and_replaces_a_damaged_one(tmp_path: Path) -> None:
    data = pack_task(_task(tmp_path / "t"))
    cid = cid_of_bytes(data)
    cache = tmp_path / "cache"
    folder = unpack_task(data, cid, cache)
    assert folder == cache / cid and (folder / "helpers" / "weights.bin").stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in cache.iterdir()) == [cid]  # no temporary folder left beside it
    marker = (folder / "task.py").stat().st_ino
    (folder / "__pycache__").mkdir()  # what a run leaves behind does not count
    assert unpack_task(data, cid, cache) == folder and (folder / "task.py").stat().st_ino == marker

    (folder / "task.py").write_text("import os; os.system('rm -rf ~')\n")  # edited by hand
    assert unpack_task(data, cid, cache) == folder
    assert (folder / "task.py").read_text() == SOURCE and not (folder / "__pycache__").exists()
    assert sorted(p.name for p in cache.iterdir()) == [cid]

    other = pack_task(write_task(tmp_path / "u", SOURCE + "# another version\n"))
    with pytest.raises(TaskError, match=f"the bytes given for task bundle {cid} hash to {cid_of_bytes(other)}"):
        unpack_task(other, cid, cache)


def test_folders_left_by_an_unpack_killed_midway_are_swept_once_stale(tmp_path: Path) -> None:
    data = pack_task(_task(tmp_path / "t"))
    cid = cid_of_bytes(data)
    cache = tmp_path / "cache"
    cache.mkdir()
    stale_staging, stale_trash, live = cache / f".{cid}.a1.partial", cache / f".{cid}.b2.stale", cache / f".{cid}.c3.partial"
    others = cache / ".bafkreiothertask.d4.partial"
    for folder in (stale_staging, stale_trash, live, others):
        (folder / "half").mkdir(parents=True)
    old = time.time() - STALE_AFTER_S - 60
    for folder in (stale_staging, stale_trash, others):
        os.utime(folder, (old, old))
    unpack_task(data, cid, cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([cid, live.name, others.name])  # only this bundle's stale ones
