"""The manifest at the head of every task bundle: what the task is and the hash of each of its files.

It is canonical JSON (``ledger.canonical_json``), so the same task gives the same bytes on every
machine, and :meth:`TaskManifest.from_json` reads it strictly: it comes from strangers.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from ledger.canonical_json import canonical_json
from node.tasks.errors import TaskError
from node.tasks.spec import check_dependencies_list, check_module_name, check_name, check_settings

MANIFEST_NAME = "fedledger-task.json"
FORMAT_VERSION = 1
_KEYS = {"dependencies", "files", "format", "module", "name", "settings"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_MAX_PATH_BYTES = 255


@dataclass(frozen=True)
class FileEntry:
    """One packed file's sha256 (lowercase hex) and size in bytes."""

    sha256: str
    size: int


@dataclass(frozen=True)
class TaskManifest:
    """A bundle's description of its task: identity, declared settings and dependencies, and its files."""

    name: str
    module: str
    settings: dict[str, int | float] = field(default_factory=dict)
    dependencies: tuple[str, ...] = ()
    files: dict[str, FileEntry] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    def to_document(self) -> dict[str, Any]:
        """The manifest as plain JSON values."""
        return {
            "format": self.format,
            "name": self.name,
            "module": self.module,
            "settings": dict(self.settings),
            "dependencies": list(self.dependencies),
            "files": {path: {"sha256": entry.sha256, "size": entry.size} for path, entry in sorted(self.files.items())},
        }

    def to_json(self) -> bytes:
        """The manifest's canonical JSON bytes, exactly as they are packed."""
        return canonical_json(self.to_document())

    @classmethod
    def from_json(cls, data: bytes, *, source: str = "this bundle") -> TaskManifest:
        """The manifest in ``data``, checked field by field; TaskError "... is not a fedledger task bundle (...)"."""

        def refuse(why: str) -> TaskError:
            return TaskError(f"{source} is not a fedledger task bundle ({why}); pack the task again with 'fedledger task pack'.")

        try:
            document = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as error:
            raise refuse(f"its {MANIFEST_NAME} is not JSON: {error}") from error
        if not isinstance(document, dict) or set(document) != _KEYS:
            keys = sorted(document) if isinstance(document, dict) else type(document).__name__
            raise refuse(f"its {MANIFEST_NAME} has fields {keys}, not {sorted(_KEYS)}")
        if document["format"] != FORMAT_VERSION or isinstance(document["format"], bool):
            raise refuse(f"its format is {document['format']!r}; this fedledger reads format {FORMAT_VERSION}")
        try:
            name = check_name(document["name"], where="its name")
            module = check_module_name(document["module"], task=name)
            settings = check_settings(document["settings"], task=name, where="its settings")
            dependencies = check_dependencies_list(document["dependencies"], task=name)
        except TaskError as error:
            raise refuse(str(error).rstrip(".")) from error
        files = document["files"]
        if not isinstance(files, dict):
            raise refuse("its files field is not an object")
        entries: dict[str, FileEntry] = {}
        for path, entry in files.items():
            problem = path_problem(path)
            if problem:
                raise refuse(f"its manifest lists {path!r}, {problem}")
            if (
                not isinstance(entry, dict)
                or set(entry) != {"sha256", "size"}
                or not isinstance(entry["sha256"], str)
                or not _SHA256.match(entry["sha256"])
                or isinstance(entry["size"], bool)
                or not isinstance(entry["size"], int)
                or entry["size"] < 0
            ):
                raise refuse(f"its manifest entry for {path!r} is not {{sha256: 64 hex digits, size: bytes}}")
            entries[path] = FileEntry(sha256=entry["sha256"], size=entry["size"])
        manifest = cls(name=name, module=module, settings=settings, dependencies=dependencies, files=entries)
        if manifest.to_json() != bytes(data):
            raise refuse(f"its {MANIFEST_NAME} is not in canonical form")
        return manifest


def path_problem(path: object) -> str | None:
    """Why ``path`` cannot name a file of a task (None when it can): relative POSIX paths inside the folder only."""
    if not isinstance(path, str) or not path:
        return "which is not a file name"
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return "an absolute path"
    parts = path.split("/")
    if ".." in parts:
        return "a path that climbs out of the folder with '..'"
    if any(part in ("", ".") for part in parts):
        return "a path with an empty or '.' component"
    if "\\" in path or any(ord(char) < 32 or ord(char) == 127 for char in path):
        return "a path with a backslash or a control character"
    try:
        encoded = path.encode("utf-8")
    except UnicodeEncodeError:
        return "a path that is not valid UTF-8"
    if len(encoded) > _MAX_PATH_BYTES:
        return f"a path longer than {_MAX_PATH_BYTES} bytes"
    if path == MANIFEST_NAME:
        return f"the reserved name {MANIFEST_NAME}"
    return None
