"""Commands: ``ipfs serve|add|cat|pin|export`` — the content store from the command line.

Every command but ``serve`` uses the workspace's store (``[store] backend``: embedded or kubo);
``--ipfs-api ADDR`` talks to a Kubo RPC API instead, and ``--repo DIR`` uses a bare embedded
store with no workspace at all.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from ledger.ipfs.car import export_car
from ledger.ipfs.cid import parse_cid
from ledger.errors import InvalidInputError
from ledger.ipfs.auth import Authorizations, load_authorizations, parse_authorizations
from ledger.ipfs.serving import ServerLimits
from ledger.ipfs.store import ContentStore, EmbeddedStore, KuboStore, open_store, store_auth_from_env
from ledger.types import Cid
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)

RepoOption = Annotated[
    Path | None, typer.Option("--repo", help="Use the embedded store in this folder (no workspace needed).")
]
AUTHORIZATIONS_ENV = "FEDLEDGER_IPFS_AUTHORIZATIONS"
ApiOption = Annotated[
    str | None,
    typer.Option("--ipfs-api", help="Use the Kubo RPC API at this address (/ip4/127.0.0.1/tcp/5001 or http://…)."),
]


def _store_opener(workdir: Path | None, repo: Path | None, api: str | None) -> Callable[[], ContentStore]:
    """Check the options now; open (and for an embedded store, create) the store only when called."""
    if repo is not None and api is not None:
        raise InvalidInputError("--repo and --ipfs-api name two different stores; give only one of them.")
    if repo is not None:
        return lambda: EmbeddedStore(repo)
    if api is not None:
        return lambda: KuboStore(api, auth=store_auth_from_env())
    workspace = Workspace.find(workdir)
    return lambda: open_store(workspace)


def _store(workdir: Path | None, repo: Path | None, api: str | None) -> ContentStore:
    return _store_opener(workdir, repo, api)()


def serve_authorizations(auth_file: Path | None) -> Authorizations | None:
    """The authorizations ``ipfs serve`` enforces: from ``--auth-file`` or ``$FEDLEDGER_IPFS_AUTHORIZATIONS``
    (never from the command line itself), or None for none."""
    from_env = os.environ.get(AUTHORIZATIONS_ENV, "").strip()
    if auth_file is not None and from_env:
        raise InvalidInputError(f"both --auth-file and ${AUTHORIZATIONS_ENV} name authorizations; give only one of them.")
    if auth_file is not None:
        return load_authorizations(auth_file)
    if from_env:
        return parse_authorizations(from_env, source=f"${AUTHORIZATIONS_ENV}")
    return None


def checked_weights(path: Path, model: str | None) -> bytes:
    """The bytes of ``path``, refused unless they are safetensors (fitting ``model``'s layout when given)."""
    # Imported here: torch takes seconds to load, and only this option needs it.
    from ledger.weights import from_safetensors

    layout = None
    if model is not None:
        from node.model_layouts import model_layout

        layout = model_layout(model)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InvalidInputError(f"cannot read {path} ({error.strerror}); give the path of a weights file.") from error
    from_safetensors(data, layout=layout, source=str(path))
    return data


def add_file_checked(
    path: Path, store_opener: Callable[[], ContentStore], *, pin: bool = True, weights: bool = False,
    model: str | None = None,
) -> tuple[Cid, int]:
    """Add a file; with ``weights`` or ``model``, only after it passed the check. Returns (CID, size).

    Every check runs before the store is opened, so a refused file leaves no block in it (and no
    store folder where there was none). Checked weights are stored from the very bytes that were
    checked, not read again: a file changed in between cannot slip past the check.
    """
    if not path.is_file():
        raise InvalidInputError(f"{path} is not a file; give the path of a file to add.")
    if not weights and model is None:
        size = path.stat().st_size
        return store_opener().add_file(path, pin=pin), size
    data = checked_weights(path, model)
    return store_opener().add_bytes(data, pin=pin), len(data)


def register(app: typer.Typer) -> None:
    """Add the ``ipfs`` group to the app."""
    ipfs = typer.Typer(help="The content store: serve it over Kubo's RPC API, add, cat, pin, export.",
                       no_args_is_help=True)
    pin_app = typer.Typer(help="Pin, unpin and list pinned content.", no_args_is_help=True)
    ipfs.add_typer(pin_app, name="pin")
    app.add_typer(ipfs, name="ipfs")

    @ipfs.command("serve")
    @handle_errors
    def serve(
        port: Annotated[int, typer.Option(help="TCP port (0 picks a free one).")] = 5001,
        host: Annotated[str, typer.Option(help="IPv4 address to listen on; 0.0.0.0 serves other machines too.")] = "127.0.0.1",
        auth_file: Annotated[Path | None, typer.Option(
            "--auth-file", help="JSON file of Kubo's API.Authorizations: named secrets, each allowed a list of RPC "
            "paths (or $FEDLEDGER_IPFS_AUTHORIZATIONS).")] = None,
        insecure: Annotated[bool, typer.Option(
            "--insecure", help="Serve a --host other than loopback without authorizations (anyone who reaches "
            "the port may add and unpin).")] = False,
        header_timeout: Annotated[float, typer.Option(help="Seconds a request's headers may take to arrive.")] = ServerLimits.header_timeout_s,
        idle_timeout: Annotated[float, typer.Option(help="Seconds a connection may wait idle, or a request stall.")] = ServerLimits.idle_timeout_s,
        max_connections: Annotated[int, typer.Option(help="Connections served at once; more are answered 503.")] = ServerLimits.max_connections,
        repo: RepoOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Serve the embedded store over the subset of Kubo's RPC API fedledger uses, until Ctrl-C or SIGTERM.

        Without authorizations, like Kubo's RPC API by default, anyone who reaches it can add, pin and
        unpin content (reads are still verified against their CIDs): so a --host other than loopback
        needs --auth-file (or $FEDLEDGER_IPFS_AUTHORIZATIONS), or --insecure to say you mean it.
        """
        from ledger.ipfs.server import serve as run_server

        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise InvalidInputError(f"--host must be an IPv4 address such as 127.0.0.1 or 0.0.0.0, not {host!r}.") from None
        limits = ServerLimits(header_timeout_s=header_timeout, idle_timeout_s=idle_timeout,
                              max_connections=max_connections).checked()
        authorizations = serve_authorizations(auth_file)
        if authorizations is None and not address.is_loopback and not insecure:
            raise InvalidInputError(
                f"--host {host} would let anyone who reaches port {port} add and unpin content; give --auth-file "
                f"(or ${AUTHORIZATIONS_ENV}) with Kubo's API.Authorizations, or add --insecure if a firewall or VPN "
                "already limits who can reach it."
            )
        store = EmbeddedStore(repo if repo is not None else Workspace.find(workdir).store_dir)
        if authorizations is None and not address.is_loopback:
            console.print(f"[yellow]note:[/] serving on {host} without authentication (--insecure); anyone who can "
                          f"reach port {port} can add, pin and unpin content.", soft_wrap=True, highlight=False)

        def ready(multiaddr: str) -> None:
            port_number = multiaddr.rsplit("/", 1)[-1]
            url_host = "127.0.0.1" if address.is_unspecified else host
            access = f", {len(authorizations)} authorization(s)" if authorizations is not None else ""
            sys.stdout.write(f"fedledger ipfs serve: listening on {multiaddr} (http://{url_host}:{port_number}), "
                             f"repo {store.root}{access}\n")
            sys.stdout.flush()

        run_server(store, port=port, host=host, ready=ready, authorizations=authorizations, limits=limits)
        console.print("stopped.")

    @ipfs.command("add")
    @handle_errors
    def add(
        file: Annotated[Path, typer.Argument(help="File to add.")],
        pin: Annotated[bool, typer.Option("--pin/--no-pin", help="Pin the content (default: pin).")] = True,
        weights: Annotated[bool, typer.Option("--weights", help="Refuse the file unless it is safetensors weights.")] = False,
        model: Annotated[str | None, typer.Option(help="Refuse the file unless it holds weights of this model.")] = None,
        repo: RepoOption = None,
        ipfs_api: ApiOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Add a file and print its CID (the one `ipfs add --cid-version=1` gives)."""
        cid, size = add_file_checked(file, _store_opener(workdir, repo, ipfs_api), pin=pin, weights=weights, model=model)
        if json:
            print_json({"cid": cid, "file": str(file), "size": size, "pinned": pin})
        else:
            sys.stdout.write(cid + "\n")

    @ipfs.command("cat")
    @handle_errors
    def cat(
        cid: Annotated[str, typer.Argument(help="CID of the content.")],
        repo: RepoOption = None,
        ipfs_api: ApiOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Write the content's bytes to stdout, after checking them against the CID."""
        cid = parse_cid(cid)
        data = _store(workdir, repo, ipfs_api).get(cid)
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()

    @pin_app.command("add")
    @handle_errors
    def pin_add(cid: str, repo: RepoOption = None, ipfs_api: ApiOption = None, workdir: WorkdirOption = None) -> None:
        """Pin content the store holds."""
        cid = parse_cid(cid)
        _store(workdir, repo, ipfs_api).pin(cid)
        console.print(f"pinned {cid}")

    @pin_app.command("rm")
    @handle_errors
    def pin_rm(cid: str, repo: RepoOption = None, ipfs_api: ApiOption = None, workdir: WorkdirOption = None) -> None:
        """Unpin content."""
        cid = parse_cid(cid)
        _store(workdir, repo, ipfs_api).unpin(cid)
        console.print(f"unpinned {cid}")

    @pin_app.command("ls")
    @handle_errors
    def pin_ls(repo: RepoOption = None, ipfs_api: ApiOption = None, workdir: WorkdirOption = None,
               json: JsonOption = False) -> None:
        """List pinned CIDs, one a line."""
        pins = _store(workdir, repo, ipfs_api).pins()
        if json:
            print_json({"pins": pins})
        else:
            sys.stdout.write("".join(cid + "\n" for cid in pins))

    @ipfs.command("export")
    @handle_errors
    def export(
        cid: Annotated[str, typer.Argument(help="CID of the content.")],
        target: Annotated[Path | None, typer.Argument(metavar="[OUT.car]", help="CAR file to write (or -o).")] = None,
        output: Annotated[Path | None, typer.Option("--output", "-o", help="CAR file to write.")] = None,
        repo: RepoOption = None,
        ipfs_api: ApiOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Write the content's DAG as a CARv1 file, each block once in `ipfs dag export`'s order."""
        cid = parse_cid(cid)
        if (target is None) == (output is None):
            raise InvalidInputError("give the CAR file to write once: `fedledger ipfs export CID OUT.car` or `-o OUT.car`.")
        output = target if output is None else output
        store = _store(workdir, repo, ipfs_api)
        iter_dag = getattr(store, "iter_dag", None)
        if iter_dag is None:
            raise InvalidInputError(f"{store!r} cannot list blocks; export from the embedded store or a Kubo API.")
        size = export_car(cid, iter_dag(cid), output)
        console.print(f"wrote {output} ({size} bytes), root {cid}")
