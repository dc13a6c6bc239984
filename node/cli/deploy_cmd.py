"""Commands: ``deploy`` — deploy the Federation contract and record it in the workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.contract_constants import DEFAULT_ADMIN_DELAY
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import KeyOption


def register(app: typer.Typer) -> None:
    """Add the ``deploy`` command to the app."""

    @app.command("deploy")
    @handle_errors
    def deploy(
        rpc: RpcOption = None,
        key: KeyOption = None,
        force: Annotated[bool, typer.Option("--force", help="Deploy anew even though a live deployment is recorded.")] = False,
        admin_delay: Annotated[int, typer.Option(
            "--admin-delay", min=0, max=2**48 - 1,
            help="Seconds a proposed new admin waits before it can accept the role (default one day).",
        )] = DEFAULT_ADMIN_DELAY,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Deploy the Federation contract and record address, chain id and block in fedledger.toml."""
        from deploy.deployer import deploy_federation

        workspace = Workspace.find(workdir)
        record = deploy_federation(workspace, rpc=rpc, key=key, force=force, admin_delay=admin_delay)
        if json:
            print_json(record)
        console.print(
            f"Deployed Federation at [bold]{record['address']}[/] on chain id {record['chain_id']} "
            f"(block {record['block']}, gas {record['gas_used']}); recorded in {workspace.config_path}.",
            soft_wrap=True, highlight=False,
        )
