"""Commands: ``contract verify`` — is the code at the deployment's address the Federation this fedledger compiles?

The comparison is ledger/chain/code_check.py's (Sourcify's full match: immutables as the
constructor writes them at that address, the compiler metadata hash included). When the workspace
records the compiler metadata that ``fedledger deploy`` pinned (``[deployment] metadata_cid``), the
pinned document is checked too: every source text against its keccak256, and its hash against
the one the code at the address commits to. Exit codes: 0 a full match (and the pinned metadata,
when recorded, is the code's); 1 a mismatch, a partial match or pinned metadata that is not the
code's, both code hashes named; 2 it could not run (no code at the address, no deployment, an
unreachable chain, the pinned metadata missing from the store), with one sentence saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from node.cli._common import CANNOT_RUN, JsonOption, RpcOption, WorkdirOption, check_errors, console, fail, print_json

_errors = check_errors("interrupted; nothing was changed, run the command again.")
"""Any LedgerError means the check could not run: one line on stderr, exit 2."""


def _pinned_metadata(workspace: Any, code: bytes) -> dict[str, Any]:
    """The check of ``[deployment] metadata_cid`` against ``code``: status ok, failed, missing or not recorded."""
    from ledger.chain.code_check import MAX_METADATA_BYTES, verify_metadata_document
    from ledger.errors import ContentNotFoundError, ContentTooLargeError, IntegrityError
    from ledger.ipfs.store import open_store

    cid = ((workspace.config.get("deployment") or {}).get("metadata_cid") if workspace is not None else None) or None
    if cid is None:
        return {"metadata_cid": None, "metadata_check": "not recorded", "metadata_problem": None}
    try:
        document = open_store(workspace).get(str(cid), max_bytes=MAX_METADATA_BYTES)
    except ContentNotFoundError:
        return {"metadata_cid": cid, "metadata_check": "missing", "metadata_problem": f"this store lacks {cid}"}
    except (IntegrityError, ContentTooLargeError) as error:  # an unreachable store is raised: it cannot run
        return {"metadata_cid": cid, "metadata_check": "failed", "metadata_problem": str(error)}
    problem = verify_metadata_document(document, code)
    return {"metadata_cid": cid, "metadata_check": "ok" if problem is None else "failed", "metadata_problem": problem}


def verify_contract(workdir: Path | None, *, address: str | None, rpc: str | None) -> dict[str, Any]:
    """The document ``contract verify --json`` prints; LedgerError when the check cannot run."""
    from ledger.chain.code_check import compare_code
    from ledger.chain.connection import MEMORY, check_deployment, connect, parse_address, workspace_rpc
    from ledger.errors import ConfigError, WorkspaceNotFoundError
    from ledger.workspace import Workspace

    target = parse_address(address) if address is not None else None
    try:
        workspace: Workspace | None = Workspace.find(workdir)
    except WorkspaceNotFoundError:
        if address is None or rpc is None:
            raise
        workspace = None  # --address and --rpc name everything needed
    url = workspace_rpc(workspace, rpc) if workspace is not None else rpc
    if url == MEMORY:
        raise ConfigError(
            "the in-process chain ('memory') ends with each command, so it holds no contract to verify; "
            "pass --rpc URL of the chain the contract lives on."
        )
    w3 = connect(str(url))
    if target is None:
        assert workspace is not None  # found above, or Workspace.find raised
        target = check_deployment(w3, workspace, rpc=str(url))
    match = compare_code(w3, target)
    code = bytes(w3.eth.get_code(match.address, block_identifier=match.block))
    return {**match.to_json(), "sentence": match.sentence(), **_pinned_metadata(workspace, code)}


def register(app: typer.Typer) -> None:
    """Add the ``contract`` group to the app."""
    contract = typer.Typer(
        help="Check the contract at the deployment's address against the one this fedledger compiles.",
        no_args_is_help=True,
    )
    app.add_typer(contract, name="contract")

    @contract.command("verify")
    @_errors
    def verify_cmd(
        address: Annotated[str | None, typer.Option(
            "--address", help="Check the contract at this address (default: the deployment in fedledger.toml).")] = None,
        workdir: WorkdirOption = None,
        rpc: RpcOption = None,
        json: JsonOption = False,
    ) -> None:
        """Is the runtime code at the address the Federation this fedledger compiles (a full match, as Sourcify
        makes: immutables and the compiler metadata hash included)? Also checks the compiler metadata that
        `fedledger deploy` pinned, when fedledger.toml records it. Exit 0 match, 1 mismatch (both code hashes
        named), 2 could not run."""
        document = verify_contract(workdir, address=address, rpc=rpc)
        metadata_failed = document["metadata_check"] == "failed"
        if json:
            print_json({**document, "ok": document["ok"] and document["metadata_check"] in ("ok", "not recorded")})
        else:
            verdict = "[bold green]MATCH[/]" if document["ok"] else "[bold red]MISMATCH[/]"
            console.print(f"{verdict} {document['sentence']} (chain id {document['chain_id']}, block {document['block']})",
                          highlight=False, soft_wrap=True)
            cid = document["metadata_cid"]
            if document["metadata_check"] == "ok":
                console.print(f"pinned compiler metadata {cid}: every source text and the metadata hash this code "
                              "commits to check out; it rebuilds this bytecode", highlight=False, soft_wrap=True)
            elif metadata_failed:
                console.print(f"[bold red]FAIL[/] pinned compiler metadata {cid}: {document['metadata_problem']}",
                              highlight=False, soft_wrap=True)
            elif document["metadata_check"] == "not recorded":
                console.print("no pinned compiler metadata recorded in fedledger.toml ([deployment] metadata_cid, "
                              "written by `fedledger deploy`)", highlight=False, soft_wrap=True)
        if not document["ok"] or metadata_failed:
            raise typer.Exit(1)
        if document["metadata_check"] == "missing":
            raise fail(
                f"the code matches, but the compiler metadata pinned at deployment ({document['metadata_cid']}) is not "
                "in this store; add it (`fedledger ipfs add`) or point [store] at the store that holds it.",
                CANNOT_RUN,
            )
