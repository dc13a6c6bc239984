"""Commands: ``participant join``, ``relay``, ``approve``, ``suspend``, ``reinstate``, ``revoke`` and ``list`` — membership."""

from __future__ import annotations

import json as jsonlib
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import KeyOption, MaxFeeOption, chain, governed, jsonable, reader, report_tx

DEFAULT_JOIN_VALIDITY_S = 3600


def register(app: typer.Typer) -> None:
    """Add the ``participant`` group to the app."""
    participant_app = typer.Typer(help="Join the federation and govern its membership.", no_args_is_help=True)
    app.add_typer(participant_app, name="participant")

    @participant_app.command("join")
    @handle_errors
    def participant_join(
        key: Annotated[
            str | None,
            typer.Option("--key", help="The joining party's key: a name under \\[keys] or a keystore file (default: $FEDLEDGER_PRIVATE_KEY)."),
        ] = None,
        relay: Annotated[bool, typer.Option("--relay", help="Only sign: print the signature JSON for someone else to submit with `participant relay`.")] = False,
        valid_for: Annotated[int, typer.Option(min=1, help="Seconds the signature stays valid.")] = DEFAULT_JOIN_VALIDITY_S,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Accept the current agreement: sign it (EIP-712) with the party's own key and submit, or --relay."""
        from ledger.chain.connection import chain_now, open_federation, require_gas_money
        from ledger.chain.keys import load_account

        workspace, w3, url = chain(workdir, rpc)
        federation = open_federation(workspace, w3=w3, rpc=url)
        party = load_account(workspace, key)
        version = federation.agreement().version
        deadline = chain_now(w3) + valid_for
        signature = federation.sign_join(party, version=version, deadline=deadline)
        document = {
            "participant": party.address, "version": version, "deadline": deadline,
            "signature": "0x" + signature.hex(), "contract": federation.address, "chain_id": federation.chain_id,
        }
        if relay:
            print_json(document)
            console.print(f"Signed agreement version {version} for {party.address}; submit with `fedledger participant relay FILE`.", highlight=False)
            return
        require_gas_money(w3, party.address)
        tx = federation.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)
        status = federation.participant(party.address).status
        standing = {
            "admitted": "still admitted",
            "suspended": f"suspended: the admin can reinstate it with `fedledger participant reinstate {party.address}`",
        }.get(status, f"pending: the admin approves it with `fedledger participant approve {party.address}`")
        report_tx(f"{party.address} accepted agreement version {version} ({standing})", tx, json, {**document, "status": status})

    @participant_app.command("relay")
    @handle_errors
    def participant_relay(
        signature_file: Annotated[Path, typer.Argument(help="The JSON printed by `participant join --relay`.")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Submit another party's join signature, paying the gas with --key."""
        from web3 import Web3

        from ledger.chain.connection import parse_address

        try:
            signed = jsonlib.loads(signature_file.read_text(encoding="utf-8"))
            participant = parse_address(signed["participant"])
            version, deadline = int(signed["version"]), int(signed["deadline"])
            signature = bytes(Web3.to_bytes(hexstr=signed["signature"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise InvalidInputError(
                f"{signature_file} is not a join signature ({error.__class__.__name__}); "
                "give the JSON printed by `fedledger participant join --relay`."
            ) from None
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.join(participant, version=version, deadline=deadline, signature=signature)
        report_tx(f"Relayed the join of {participant} (agreement version {version})", tx, json, {"participant": participant})

    def _governance_command(action: str, past: str) -> None:
        @participant_app.command(action)
        @handle_errors
        def command(
            address: Annotated[str, typer.Argument(help="The participant's address (0x…).")],
            rpc: RpcOption = None,
            key: KeyOption = None,
            max_fee_gwei: MaxFeeOption = None,
            workdir: WorkdirOption = None,
            json: JsonOption = False,
        ) -> None:
            from ledger.chain.connection import parse_address

            participant = parse_address(address)
            _, federation = governed(workdir, rpc, key, max_fee_gwei)
            tx = getattr(federation, action)(participant)
            report_tx(f"{participant} {past}", tx, json, {"participant": participant, "action": action})

        command.__doc__ = f"Governance: {action} a participant (signed by --key, default the admin key)."

    for action, past in (("approve", "admitted"), ("suspend", "suspended"), ("reinstate", "reinstated"), ("revoke", "revoked for good")):
        _governance_command(action, past)

    @participant_app.command("list")
    @handle_errors
    def participant_list(rpc: RpcOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """List every address that ever joined, with its status and accepted agreement version."""
        participants = reader(workdir, rpc).participants()
        if json:
            print_json([jsonable(asdict(p)) for p in participants])
            return
        if not participants:
            console.print("Nobody has joined yet.")
        for p in participants:
            console.print(f"{p.address}  {p.status:<9}  accepted version {p.accepted_version}", highlight=False)
