"""Task bundles: a task folder as one deterministic tar, read back strictly, cached by CID.

The same files give the same bytes (and so the same CID) on any machine: an uncompressed USTAR tar
whose first member is the manifest (``fedledger-task.json``, canonical JSON), then every file sorted
by its relative POSIX path, each with mtime 0, owner 0:0 and no owner names, mode 0644; directories
are not stored. :func:`read_bundle` accepts only bytes that are exactly such a tar (it packs the
members again and compares), so a bundle has one spelling and nothing in it can hide from the hashes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from ledger.ipfs.cid import parse_cid
from ledger.ipfs.unixfs import cid_of_bytes
from node.tasks.errors import TaskError
from node.tasks.manifest import MANIFEST_NAME, FileEntry, TaskManifest, path_problem
from node.tasks.spec import TaskSpec, module_files, read_spec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "MANIFEST_NAME",
    "TaskManifest",
    "manifest_of_folder",
    "pack_task",
    "read_bundle",
    "unpack_task",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
FILE_MODE = 0o644
STALE_AFTER_S = 3600.0
"""A cache's staging or trash folder untouched this long was left by a process killed mid-unpack."""
_LEFT_OUT_DIRS_ANYWHERE = ("__pycache__", ".git", ".venv", ".pytest_cache", "*.egg-info")
_LEFT_OUT_DIRS_AT_TOP = ("build", "dist")  # setuptools' outputs; a subpackage named build/ is code
_LEFT_OUT_FILES = ("*.pyc", ".DS_Store", ".git")  # .git is a file in worktrees and submodules


# -- packing ---------------------------------------------------------------------------------------
def pack_task(folder: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The deterministic bundle of the task in ``folder``; TaskError naming what cannot be packed."""
    folder = Path(folder)
    spec = read_spec(folder)
    files = _collect(folder, spec, max_bytes=max_bytes)
    manifest = _manifest(spec, files)
    data = _tar(manifest.to_json(), files.items())
    if len(data) > max_bytes:
        raise _too_large(spec.name, len(data), max_bytes)
    return data


def manifest_of_folder(folder: Path | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> TaskManifest:
    """The manifest that :func:`pack_task` would put at the head of ``folder``'s bundle."""
    folder = Path(folder)
    spec = read_spec(folder)
    return _manifest(spec, _collect(folder, spec, max_bytes=max_bytes))


def _manifest(spec: TaskSpec, files: dict[str, bytes]) -> TaskManifest:
    return TaskManifest(
        name=spec.name,
        module=spec.module,
        settings=dict(spec.settings),
        dependencies=spec.dependencies,
        files={path: FileEntry(hashlib.sha256(content).hexdigest(), len(content)) for path, content in files.items()},
    )


def _collect(folder: Path, spec: TaskSpec, *, max_bytes: int) -> dict[str, bytes]:
    """Every file the bundle holds, by relative POSIX path, sorted; read without following any link."""
    files: dict[str, bytes] = {}
    total = 0
    for relative, absolute in _walk(folder, "", spec):
        problem = path_problem(relative)
        if problem:
            raise TaskError(f"task {spec.name!r} cannot pack {relative!r}: it is {problem}; rename it or add it to exclude.")
        content = _read_regular(absolute, relative, spec.name)
        total += len(content)
        if total > max_bytes:
            raise _too_large(spec.name, total, max_bytes, at=relative)
        files[relative] = content
    if not any(candidate in files for candidate in module_files(spec.module)):
        first, second = module_files(spec.module)
        raise TaskError(
            f"task {spec.name!r} would pack no file of its module {spec.module!r} ({first} or {second}); "
            "take it out of exclude in [tool.fedledger.task]."
        )
    return dict(sorted(files.items()))


def _walk(root: Path, prefix: str, spec: TaskSpec) -> Iterator[tuple[str, Path]]:
    """(relative path, absolute path) of every file under ``root`` that is not left out; refuses links."""
    with os.scandir(root / prefix if prefix else root) as entries:
        listed = sorted(entries, key=lambda entry: entry.name)
    for entry in listed:
        relative = f"{prefix}{entry.name}"
        is_dir = entry.is_dir(follow_symlinks=False)
        # A link is judged as a folder too: a .venv that links elsewhere is left out like a real one.
        if _left_out(relative, entry.name, is_dir=is_dir, top=not prefix, patterns=spec.exclude) or (
            entry.is_symlink() and _left_out(relative, entry.name, is_dir=True, top=not prefix, patterns=spec.exclude)
        ):
            continue
        if entry.is_symlink():
            raise TaskError(
                f"task {spec.name!r} holds a symbolic link, {relative}; a bundle holds regular files only, "
                "so copy the file it points to in its place or add it to exclude."
            )
        if is_dir:
            yield from _walk(root, f"{relative}/", spec)
        elif entry.is_file(follow_symlinks=False):
            yield relative, Path(entry.path)
        else:
            raise TaskError(
                f"task {spec.name!r} holds {relative}, which is not a regular file (a socket, pipe or device); "
                "remove it or add it to exclude."
            )


def _left_out(relative: str, name: str, *, is_dir: bool, top: bool, patterns: Iterable[str]) -> bool:
    """Whether the packer skips this entry (and, for a folder, everything under it) without a word."""
    if is_dir:
        if any(fnmatch.fnmatchcase(name, rule) for rule in _LEFT_OUT_DIRS_ANYWHERE):
            return True
        if top and name in _LEFT_OUT_DIRS_AT_TOP:
            return True
    elif any(fnmatch.fnmatchcase(name, rule) for rule in _LEFT_OUT_FILES):
        return True
    elif top and name == MANIFEST_NAME:  # an unpacked bundle's manifest: packing makes it anew
        return True
    return any(_matches(pattern, relative, name, is_dir=is_dir) for pattern in patterns)


def _matches(pattern: str, relative: str, name: str, *, is_dir: bool) -> bool:
    """gitignore-like: ``x/`` matches folders only; a pattern with ``/`` matches the path from the
    task's folder, one without matches a name at any depth."""
    dir_only = pattern.endswith("/")
    pattern = pattern.strip("/")
    if dir_only and not is_dir:
        return False
    if "/" in pattern:
        return fnmatch.fnmatchcase(relative, pattern)
    return fnmatch.fnmatchcase(name, pattern)


def _read_regular(path: Path, relative: str, task: str) -> bytes:
    """The bytes of the regular file at ``path``, refusing a link swapped in since the walk."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as error:
        raise TaskError(f"task {task!r} cannot read {relative} ({error.strerror}); make it readable or add it to exclude.") from error
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise TaskError(f"task {task!r} holds {relative}, which is not a regular file; remove it or add it to exclude.")
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(descriptor)


def _too_large(task: str, size: int, limit: int, *, at: str | None = None) -> TaskError:
    where = f" when it reaches {at}" if at else ""
    return TaskError(
        f"task {task!r} is larger than the bundle limit of {limit / 2**20:.0f} MiB ({size / 2**20:.1f} MiB{where}); "
        "add data files and checkpoints to exclude in [tool.fedledger.task], or raise the limit."
    )


def _tar(manifest: bytes, files: Iterable[tuple[str, bytes]]) -> bytes:
    """The canonical tar of ``manifest`` then ``files`` (already sorted)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT, encoding="utf-8", errors="strict") as tar:
        for path, content in [(MANIFEST_NAME, manifest), *files]:
            info = tarfile.TarInfo(path)
            info.size, info.mtime, info.mode = len(content), 0, FILE_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            try:
                tar.addfile(info, io.BytesIO(content))
            except ValueError as error:  # USTAR: a name over 100 bytes that no '/' splits into 155 + 100
                raise TaskError(
                    f"the path {path!r} is too long for a task bundle ({error}); shorten its folder or file names."
                ) from error
    return buffer.getvalue()


# -- reading ---------------------------------------------------------------------------------------
def read_bundle(
    data: bytes, *, source: str = "this bundle", max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[TaskManifest, dict[str, bytes]]:
    """The manifest and files of bundle ``data``, every byte checked; TaskError "... is not a fedledger task bundle (...)"."""
    data = bytes(data)

    def refuse(why: str) -> TaskError:
        return TaskError(f"{source} is not a fedledger task bundle ({why}); pack the task again with 'fedledger task pack'.")

    if len(data) > max_bytes:
        raise refuse(f"it has {len(data)} bytes, over the limit of {max_bytes}")
    members = _members(data, refuse)
    if not members or members[0][0] != MANIFEST_NAME:
        first = repr(members[0][0]) if members else "nothing"
        raise refuse(f"its first member is {first}, not the manifest {MANIFEST_NAME}")
    manifest = TaskManifest.from_json(members[0][1], source=source)
    files = dict(members[1:])
    for path in files:
        if path not in manifest.files:
            raise refuse(f"it holds {path}, which its manifest does not list")
    for path, entry in manifest.files.items():
        if path not in files:
            raise refuse(f"its manifest lists {path}, which it does not hold")
        content = files[path]
        if len(content) != entry.size:
            raise refuse(f"{path} has {len(content)} bytes but its manifest says {entry.size}")
        if hashlib.sha256(content).hexdigest() != entry.sha256:
            raise refuse(f"{path} does not match its sha256 in the manifest: it was altered")
    if _tar(members[0][1], sorted(files.items())) != data:
        raise refuse("it is not in the canonical form fedledger packs: its order, times, modes or owners differ")
    return manifest, files


def _members(data: bytes, refuse) -> list[tuple[str, bytes]]:  # noqa: ANN001 - a local closure
    """Every member's name and bytes, in order; refuses anything but plain, uniquely named files."""
    members: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:", encoding="utf-8", errors="strict") as tar:
            for member in tar:
                name = member.name
                if not member.isreg():
                    kind = ("a symbolic link" if member.issym() else "a hard link" if member.islnk()
                            else "a directory" if member.isdir() else "a special file")
                    raise refuse(f"its member {name!r} is {kind}, not a regular file")
                problem = path_problem(name) if name != MANIFEST_NAME else None
                if problem:
                    raise refuse(f"its member {name!r} is {problem}")
                folded = name.casefold()
                if folded in seen:
                    raise refuse(f"it holds {name!r} twice (names are compared ignoring case)")
                seen.add(folded)
                handle = tar.extractfile(member)
                members.append((name, handle.read() if handle is not None else b""))
    except TaskError:
        raise
    except (tarfile.TarError, EOFError, ValueError, UnicodeError, OSError) as error:
        raise refuse(f"it is not a readable tar archive: {error}") from error
    names = sorted(seen)
    for shorter, longer in zip(names, names[1:]):
        if longer.startswith(shorter + "/"):
            raise refuse(f"{shorter!r} is both a file and a folder in it")
    return members


# -- the cache -------------------------------------------------------------------------------------
def unpack_task(data: bytes, cid: str, cache_root: Path | str) -> Path:
    """The folder ``cache_root/<cid>`` holding bundle ``data``, verified; extracted once, atomically.

    ``data`` must hash to ``cid`` (the cache is keyed by it). A folder already there is reused when its
    manifest and every listed file still match; one that does not (edited by hand, half-deleted) is
    replaced. Files a run left beside them (``__pycache__``, outputs) do not count.
    """
    data = bytes(data)
    cid = parse_cid(cid)
    if cid_of_bytes(data) != cid:
        raise TaskError(f"the bytes given for task bundle {cid} hash to {cid_of_bytes(data)}; fetch the bundle by its CID again.")
    manifest, files = read_bundle(data, source=f"bundle {cid}")
    cache_root = Path(cache_root)
    cache_root.mkdir(parents=True, exist_ok=True)
    _sweep(cache_root, cid)
    final = cache_root / cid
    if final.exists():
        if _intact(final, manifest):
            return final
        _discard(final, cache_root)
    staging = Path(tempfile.mkdtemp(prefix=f".{cid}.", suffix=".partial", dir=cache_root))
    try:
        for path, content in [(MANIFEST_NAME, manifest.to_json()), *files.items()]:
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(content)
        try:
            os.rename(staging, final)
        except OSError:  # another process finished first: keep its copy if it is sound
            if final.exists() and _intact(final, manifest):
                return final
            raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def _sweep(cache_root: Path, cid: str) -> None:
    """Remove the staging and trash folders of bundle ``cid`` that a process killed mid-unpack left behind:
    those untouched for STALE_AFTER_S (a live unpack, by another process, is seconds old)."""
    cutoff = time.time() - STALE_AFTER_S
    for leftover in cache_root.glob(f".{cid}.*"):
        try:
            if leftover.suffix in (".partial", ".stale") and leftover.stat().st_mtime < cutoff:
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError:  # gone meanwhile
            continue


def _intact(folder: Path, manifest: TaskManifest) -> bool:
    """Whether ``folder`` holds this manifest and every file it lists, byte for byte."""
    try:
        if (folder / MANIFEST_NAME).read_bytes() != manifest.to_json():
            return False
        for path, entry in manifest.files.items():
            target = folder / path
            if target.is_symlink() or not target.is_file() or target.stat().st_size != entry.size:
                return False
            if hashlib.sha256(target.read_bytes()).hexdigest() != entry.sha256:
                return False
    except OSError:
        return False
    return True


def _discard(folder: Path, cache_root: Path) -> None:
    """Move a damaged cache folder out of the way first (one rename), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".stale", dir=cache_root))
    os.rename(folder, trash / "old")
    shutil.rmtree(trash, ignore_errors=True)
