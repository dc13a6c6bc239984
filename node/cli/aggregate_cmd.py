"""Commands: ``aggregate`` — verify a round's updates, aggregate them, pin and record the result."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import MaxFeeOption


def register(app: typer.Typer) -> None:
    """Add ``aggregate`` to the app."""

    @app.command("aggregate")
    @handle_errors
    def aggregate(
        round_id: Annotated[int, typer.Option("--round", min=1, help="Round to aggregate and finalize.")],
        strategy: Annotated[str | None, typer.Option("--strategy", help="fedavg, median, trimmed-mean or krum; must match the round's configuration (default: the round's).")] = None,
        key: Annotated[str | None, typer.Option("--key", help="The aggregator's key: a name under [keys] or a keystore file.")] = None,
        encryption_key: Annotated[str | None, typer.Option("--encryption-key", help="Sealed rounds: a recipient's encryption key, a name under [encryption_keys] or its file (default: the workspace's key that a recipient registered on chain).")] = None,
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Aggregate the round's verified updates, pin the global model and receipt, finalize on chain.

        Safe to rerun: aggregation is deterministic and a finalized round is never finalized twice.
        """
        from ledger.chain.connection import (
            open_federation,
            require_gas_money,
            signing_account,
            workspace_rpc,
        )
        from ledger.sealing.recipients import recipient_opener
        from node.aggregator import aggregate_round

        workspace = Workspace.find(workdir)
        url = workspace_rpc(workspace, rpc)
        federation = open_federation(workspace, rpc=url, max_fee_gwei=max_fee_gwei)
        signer = signing_account(workspace, key, w3=federation.w3, rpc=url)
        if not federation.has_role("aggregator", signer.address):  # before any work is done and pinned
            raise InvalidInputError(
                f"{signer.address} lacks the aggregator role; aggregate with the aggregator's key (--key), "
                "or ask the federation admin to grant this one the role."
            )
        require_gas_money(federation.w3, signer.address)
        outcome = aggregate_round(
            federation=federation.with_account(signer), store=open_store(workspace), round_id=round_id,
            journal_dir=workspace.journal_dir, strategy_name=strategy,
            opener_for=lambda round_seal: recipient_opener(workspace, round_seal, encryption_key),
        )
        receipt = outcome.receipt
        for item in receipt.rejected:
            console.print(f"[yellow]rejected[/] {item.participant} {item.cid}: {item.reason}", soft_wrap=True, highlight=False)
        for item in receipt.unavailable:
            console.print(f"[yellow]unavailable[/] {item.participant} {item.cid}: not in this store, left out",
                          soft_wrap=True, highlight=False)
        for note in receipt.notes:
            console.print(f"[cyan]note[/] {note.participant} {note.cid}: {note.note}", soft_wrap=True, highlight=False)
        verb = "Finalized" if outcome.tx is not None else "Already finalized"
        console.print(
            f"{verb} round {round_id} with {receipt.strategy.get('name', '?')}: {receipt.outcome}; "
            f"global model {outcome.global_cid}, receipt {outcome.receipt_cid}.",
            soft_wrap=True, highlight=False,
        )
        if json:
            print_json({
                "round_id": round_id, "global_cid": outcome.global_cid, "receipt_cid": outcome.receipt_cid,
                "included": [vars(i) for i in receipt.included], "rejected": [vars(r) for r in receipt.rejected],
                "unavailable": [vars(u) for u in receipt.unavailable], "notes": [vars(n) for n in receipt.notes],
                "sealed": [vars(u) for u in receipt.sealed],
                "outcome": receipt.outcome, "max_samples": receipt.max_samples,
                "strategy": receipt.strategy, "tx_hash": outcome.tx.tx_hash if outcome.tx else None,
                "gas_used": outcome.tx.gas_used if outcome.tx else None,
            })
