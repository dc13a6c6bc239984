"""Commands: ``admin show``, ``transfer``, ``accept``, ``grant``, ``revoke`` and ``cancel`` — the admin and operational roles."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from ledger.utc import utc_text
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import KeyOption, MaxFeeOption, governed, jsonable, reader, report_tx


def _operational_role(role: str) -> str:
    if role not in ("coordinator", "aggregator"):
        raise InvalidInputError(
            f"{role!r} is not a role that is granted; use coordinator or aggregator "
            "(the admin role moves with `fedledger admin transfer`)."
        )
    return role


def register(app: typer.Typer) -> None:
    """Add the ``admin`` group to the app."""
    admin_app = typer.Typer(help="See the federation admin; hand the role over in two steps, after the delay.", no_args_is_help=True)
    app.add_typer(admin_app, name="admin")

    @admin_app.command("show")
    @handle_errors
    def admin_show(rpc: RpcOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """The admin, any proposed successor and when it may accept, and the transfer delay."""
        info = reader(workdir, rpc).admin()
        if json:
            print_json(jsonable(asdict(info)))
            return
        console.print(f"Admin {info.admin}; a transfer waits {info.delay} s before it can be accepted.", highlight=False, soft_wrap=True)
        if info.pending:
            console.print(f"  proposed: {info.pending}, may accept after {utc_text(info.accept_after)}", highlight=False, soft_wrap=True)

    @admin_app.command("transfer")
    @handle_errors
    def admin_transfer(
        new_admin: Annotated[str, typer.Argument(help="Address of the next admin (e.g. a multisig or timelock contract).")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Propose a new admin (the current admin); it accepts with `fedledger admin accept` after the delay."""
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.begin_admin_transfer(new_admin)
        info = federation.admin()
        report_tx(f"Proposed {info.pending} as admin, who may accept after {utc_text(info.accept_after)}", tx, json,
                  {"pending": info.pending, "accept_after": info.accept_after})

    @admin_app.command("accept")
    @handle_errors
    def admin_accept(rpc: RpcOption = None, key: KeyOption = None, max_fee_gwei: MaxFeeOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Take the admin role as the proposed admin, once the delay has passed."""
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.accept_admin_transfer()
        report_tx(f"{federation.sender} is now the admin", tx, json, {"admin": federation.sender})

    def _role_command(action: str, summary: str, done: str) -> None:
        @admin_app.command(action, help=f"{summary} (the admin).")
        @handle_errors
        def command(
            role: Annotated[str, typer.Argument(help="coordinator (opens rounds) or aggregator (finalizes them).")],
            address: Annotated[str, typer.Argument(help="The account.")],
            rpc: RpcOption = None, key: KeyOption = None, max_fee_gwei: MaxFeeOption = None, workdir: WorkdirOption = None, json: JsonOption = False,
        ) -> None:
            _, federation = governed(workdir, rpc, key, max_fee_gwei)
            tx = getattr(federation, f"{action}_role")(_operational_role(role), address)
            report_tx(done.format(role=role, address=address), tx, json, {"role": role, "account": address})

    _role_command("grant", "Give an account the coordinator or aggregator role", "Granted the {role} role to {address}")
    _role_command("revoke", "Take the coordinator or aggregator role from an account", "Revoked the {role} role of {address}")

    @admin_app.command("cancel")
    @handle_errors
    def admin_cancel(rpc: RpcOption = None, key: KeyOption = None, max_fee_gwei: MaxFeeOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Withdraw a pending admin proposal (the current admin)."""
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.cancel_admin_transfer()
        report_tx("Withdrew the admin proposal", tx, json)
