"""Commands: ``task new|pack|show`` — a party's own model, data and training code as a task bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ledger.ipfs.store import open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace
from node.cli._common import JsonOption, WorkdirOption, console, handle_errors, print_json, stdout
from node.tasks.builtin import BUILTIN_TASKS, builtin_bundle, builtin_names, resolve_task
from node.tasks.bundle import DEFAULT_MAX_BYTES, pack_task, read_bundle
from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest
from node.tasks.spec import effective_settings
from node.tasks.template import write_example

MaxMibOption = Annotated[int, typer.Option("--max-mib", min=1, help="Refuse a bundle larger than this many MiB.")]


def register(app: typer.Typer) -> None:
    """Add the ``task`` group to the app."""
    task_app = typer.Typer(help="Tasks: your own model, data and training code, packed for a federation.",
                           no_args_is_help=True)
    app.add_typer(task_app, name="task")

    @task_app.command("new")
    @handle_errors
    def new(
        folder: Annotated[Path, typer.Argument(help="A new or empty folder for the task.")],
        name: Annotated[str | None, typer.Option("--name", help="The task's name (default: from the folder's name).")] = None,
        example: Annotated[str, typer.Option(
            "--example", help="tabular (an MLP on CSV files; the default), images (a 1.4M-parameter CNN on 32x32 RGB "
            ".npz files) or finetune (a frozen backbone with low-rank adapters)."
        )] = "tabular",
        json: JsonOption = False,
    ) -> None:
        """Write a working task (a small MLP on CSV data, or scikit-learn's breast-cancer data) to start from."""
        written = write_example(folder, example, name=name)
        chosen = _declared_name(folder / "pyproject.toml")
        console.print(
            f"Wrote task [bold]{escape(chosen)}[/] in {escape(str(folder))}: "
            f"{', '.join(escape(path.name) for path in written)}. Pack it with: fedledger task pack {escape(str(folder))}",
            highlight=False,
        )
        if json:
            print_json({"folder": str(folder), "name": chosen, "files": [path.name for path in written]})

    @task_app.command("pack")
    @handle_errors
    def pack(
        folder: Annotated[Path, typer.Argument(help="The task's folder (holding its pyproject.toml).")],
        max_mib: MaxMibOption = DEFAULT_MAX_BYTES // 2**20,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Pack the task into a deterministic bundle, pin it to the workspace's store, print its CID."""
        workspace = Workspace.find(workdir)
        data = pack_task(folder, max_bytes=max_mib * 2**20)
        manifest, _ = read_bundle(data, max_bytes=max_mib * 2**20)
        cid = open_store(workspace).add_bytes(data, pin=True)
        console.print(
            f"Task {escape(manifest.name)} ({len(manifest.files)} files, {len(data)} bytes): {cid}",
            soft_wrap=True, highlight=False,
        )
        if json:
            print_json({"cid": cid, "name": manifest.name, "module": manifest.module,
                        "files": len(manifest.files), "bytes": len(data)})
        else:
            typer.echo(cid)

    @task_app.command("show")
    @handle_errors
    def show(
        target: Annotated[str, typer.Argument(
            metavar="CID_OR_DIR", help="A task bundle's CID, a task's folder, or a built-in task (mlp or cnn).")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print a task's manifest (each file's sha256 and size) and its declared settings.

        A built-in task's name (mlp, cnn) shows the bundle that ships with fedledger, with the CID that
        `agreement publish --task mlp` names; no workspace is needed for it, nor for a folder.
        """
        folder = Path(target)
        if folder.is_dir():
            data, source = pack_task(folder), "folder"
        elif target in BUILTIN_TASKS:
            data, source = builtin_bundle(target), "built-in"
        else:
            try:
                cid = resolve_task(target)
            except TaskError:
                raise TaskError(
                    f"{target!r} is neither a task folder, a task bundle's CID nor a built-in task; give the folder of a "
                    f"task, the CID that 'fedledger task pack' printed, or a built-in task: {builtin_names()}."
                ) from None
            data = open_store(Workspace.find(workdir)).get(cid, max_bytes=DEFAULT_MAX_BYTES)
            source = "store"
        manifest, _ = read_bundle(data, source=f"bundle {target}" if source != "folder" else f"the bundle of {target}")
        document = _describe(manifest, cid=cid_of_bytes(data), size=len(data), source=source)
        if json:
            print_json(document)
        else:
            _print(document)


def _declared_name(pyproject: Path) -> str:
    from node.tasks.spec import read_spec

    return read_spec(pyproject.parent).name


def _describe(manifest: TaskManifest, *, cid: str, size: int, source: str) -> dict[str, Any]:
    document = manifest.to_document()
    return {
        **document,
        "cid": cid,
        "bytes": size,
        "source": source,
        "effective_settings": effective_settings(manifest.settings, None, task=manifest.name),
    }


def _print(document: dict[str, Any]) -> None:
    settings = document["settings"]
    effective = document["effective_settings"]
    lines = [
        f"[bold]task[/]          {escape(document['name'])} (module {escape(document['module'])}, format {document['format']})",
        f"[bold]cid[/]           {document['cid']}" + (" (not pinned: packed from the folder)" if document["source"] == "folder" else ""),
        f"[bold]bytes[/]         {document['bytes']}",
        "[bold]settings[/]      " + ", ".join(
            f"{key}={effective[key]}" + ("" if key in settings else " (default)") for key in sorted(effective)
        ),
        "[bold]dependencies[/]  " + (escape(", ".join(document["dependencies"])) or "none declared"),
    ]
    for line in lines:
        stdout.print(line, highlight=False, soft_wrap=True)
    # Plain aligned lines, not a table: a table fits the terminal's width by cutting the hashes short,
    # and a hash is only worth showing whole (to compare with `sha256sum`).
    files = document["files"]
    path_width = max((len(path) for path in files), default=4)
    size_width = max((len(str(entry["size"])) for entry in files.values()), default=4)
    stdout.print(f"[bold]{'file'.ljust(path_width)}  {'size'.rjust(size_width)}  sha256[/]", highlight=False, soft_wrap=True)
    for path, entry in files.items():
        stdout.print(f"{escape(path.ljust(path_width))}  {str(entry['size']).rjust(size_width)}  {entry['sha256']}",
                     highlight=False, soft_wrap=True)
