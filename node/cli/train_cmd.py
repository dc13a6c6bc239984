"""Commands: ``node train`` — a participant's part of a round, on its own data and with its own key."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ledger.errors import InvalidInputError
from ledger.fixed_point import micros_to_epsilon
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
from node.data import Dataset, load_digits_split, load_local_data


def party_data(data: Path | None, shard: int | None, of: int | None, non_iid: float | None, seed: int) -> Dataset:
    """The party's local training data: its own file, or one shard of the bundled digits set."""
    if data is not None:
        if shard is not None or of is not None:
            raise InvalidInputError("give either --data FILE or --shard I --of N, not both.")
        return load_local_data(data)
    if shard is None or of is None:
        raise InvalidInputError(
            "no training data given; pass --data FILE (your .npz or CSV) "
            "or --shard I --of N to train on shard I of the bundled digits set split N ways."
        )
    if not 0 <= shard < of:
        raise InvalidInputError(f"--shard must be between 0 and {of - 1} for --of {of}, not {shard}.")
    shards, _ = load_digits_split(parties=of, seed=seed, non_iid_alpha=non_iid)
    return shards[shard]


def register(app: typer.Typer) -> None:
    """Add the ``node`` group (``node train``) to the app."""
    node_app = typer.Typer(help="Participant node: train locally and record the update.", no_args_is_help=True)
    app.add_typer(node_app, name="node")

    @node_app.command("train")
    @handle_errors
    def train(
        round_id: Annotated[int, typer.Option("--round", min=1, help="Round to take part in.")],
        key: Annotated[str | None, typer.Option("--key", help="The party's key: a name under [keys] or a keystore file (default $FEDLEDGER_PRIVATE_KEY).")] = None,
        data: Annotated[Path | None, typer.Option("--data", help="Local training data: .npz (arrays x, y) or CSV (64 features, then the label).")] = None,
        shard: Annotated[int | None, typer.Option("--shard", help="Train on this shard of the bundled digits set (0-based)…")] = None,
        of: Annotated[int | None, typer.Option("--of", help="…split this many ways.")] = None,
        non_iid: Annotated[float | None, typer.Option("--non-iid", help="Dirichlet alpha for a non-IID digits split (default IID).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the digits split.")] = 0,
        device: Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or mps (default: the best available).")] = None,
        relay: Annotated[str | None, typer.Option("--relay", help="URL of a `fedledger relay serve`: sign the update and have the relay send it (the party needs no ether).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Fetch the round's base model, train on local data, pin the update and record it on chain.

        Safe to rerun: a party that already submitted is told so, and an update already pinned by an
        interrupted run is submitted without training again. A round whose config has a dp section is
        trained with DP-SGD, after checking (before any training) that the party's cumulative ε stays
        within its budget on chain; the update then declares that ε.
        """
        from ledger.chain.connection import open_federation, require_gas_money, workspace_rpc
        from ledger.chain.keys import load_account
        from node.participant import train_and_submit
        from node.training import pick_device

        if relay is not None:  # a mistyped URL is told before anything is loaded
            from node.relay_client import check_relay_url

            check_relay_url(relay)
        workspace = Workspace.find(workdir)
        local = party_data(data, shard, of, non_iid, seed)
        chosen = pick_device(device)
        account = load_account(workspace, key)
        federation = open_federation(workspace, account=account, rpc=workspace_rpc(workspace, rpc))
        submit = None
        if relay is None:
            require_gas_money(federation.w3, account.address)
        else:  # the party signs, the relay pays: checked before any training
            from node.relay_client import RelayClient

            relay_client = RelayClient(relay, federation=federation, account=account)
            relay_client.check()
            submit = relay_client.submit_update
        store = open_store(workspace)
        console.print(f"Party {account.address}: round {round_id}, {len(local)} local samples, device {chosen}.")
        outcome = train_and_submit(
            federation=federation, store=store, round_id=round_id, data=local,
            journal_dir=workspace.journal_dir, device=chosen, progress=not json, submit=submit,
        )
        if outcome.tx is None:
            console.print(f"Already submitted {outcome.update_cid} to round {round_id}; nothing to do.")
        else:
            how = "trained and pinned" if outcome.trained else "reused the update pinned by an earlier run:"
            console.print(
                f"Submitted to round {round_id}: {how} {outcome.update_cid} "
                f"({outcome.samples} samples; block {outcome.tx.block}, gas {outcome.tx.gas_used}).",
                soft_wrap=True, highlight=False,
            )
            if getattr(outcome.tx, "relayer", None):
                console.print(f"Relayed by {outcome.tx.relayer} in transaction {outcome.tx.tx_hash}.", highlight=False)
        if outcome.epsilon_micros:
            console.print(f"Declared cumulative ε = {micros_to_epsilon(outcome.epsilon_micros):.6f}.", highlight=False)
        if json:
            print_json({
                "round_id": round_id, "participant": outcome.participant, "update_cid": outcome.update_cid,
                "epsilon": micros_to_epsilon(outcome.epsilon_micros),
                "samples": outcome.samples, "metrics": outcome.metrics, "trained": outcome.trained,
                "tx_hash": outcome.tx.tx_hash if outcome.tx else None,
                "gas_used": outcome.tx.gas_used if outcome.tx else None,
                "block": outcome.tx.block if outcome.tx else None,
                "relayed_by": getattr(outcome.tx, "relayer", None),
            })
