"""Commands: ``node train`` — a participant's part of a round, on its own data and with its own key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from ledger.errors import InvalidInputError, LedgerError
from ledger.fixed_point import micros_to_epsilon
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import (
    TASK_TIMEOUT_S,
    CompileOption,
    JsonOption,
    RpcOption,
    TaskTimeoutOption,
    VerboseOption,
    WorkersOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import MaxFeeOption
from node.data import Dataset, digits_validation, load_digits_split, load_local_data
from node.services.lock import service_lock

if TYPE_CHECKING:
    from ledger.chain.federation import FederationClient, RoundInfo
    from ledger.ipfs.store import ContentStore
    from node.journal import Journal
    from node.participant import TaskInputs
    from node.round_config import RoundConfig
    from node.secure.party import PostMessage
    from node.secure.settings import SecureRound

# The party's data and how its rounds run: the options of `node train` and `node run` alike.
DataOption = Annotated[str | None, typer.Option("--data", metavar="PATH", help="Local training data: .npz (arrays x, y) or CSV (64 features, then the label); in a task round, any path the task reads (a file or a folder), passed as given.")]
ShardOption = Annotated[int | None, typer.Option("--shard", help="Train on this shard of the bundled digits set (0-based)…")]
OfOption = Annotated[int | None, typer.Option("--of", help="…split this many ways.")]
NonIidOption = Annotated[float | None, typer.Option("--non-iid", help="Dirichlet alpha for a non-IID digits split (default IID).")]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the digits split (in a task round: the seed its load_data gets).")]
PartyKeyOption = Annotated[str | None, typer.Option("--key", help="The party's key: a name under [keys] or a keystore file (default $FEDLEDGER_PRIVATE_KEY).")]
DeviceOption = Annotated[str | None, typer.Option("--device", help="cpu, cuda, cuda:N or mps (default: the best available).")]

NO_DATA = (
    "no training data given; pass --data FILE (your .npz or CSV) "
    "or --shard I --of N to train on shard I of the bundled digits set split N ways."
)


def party_data(data: Path | None, shard: int | None, of: int | None, non_iid: float | None, seed: int) -> Dataset:
    """The party's local training data: its own file, or one shard of the bundled digits set."""
    if data is not None:
        if shard is not None or of is not None:
            raise InvalidInputError("give either --data FILE or --shard I --of N, not both.")
        return load_local_data(data)
    if shard is None or of is None:
        raise InvalidInputError(NO_DATA)
    if not 0 <= shard < of:
        raise InvalidInputError(f"--shard must be between 0 and {of - 1} for --of {of}, not {shard}.")
    shards, _ = load_digits_split(parties=of, seed=seed, non_iid_alpha=non_iid)
    return shards[shard]


def task_round_config(workspace: Workspace, rpc: str | None, round_id: int) -> RoundConfig | None:
    """The round's config when it trains a task, else None: also when anything goes wrong reading it, since
    the built-in path then meets the same problem and says it exactly as it always has, in its order."""
    from ledger.chain.connection import open_federation, workspace_rpc
    from node.participant import fetch_round_config

    try:
        federation = open_federation(workspace, rpc=workspace_rpc(workspace, rpc))
        config = fetch_round_config(open_store(workspace), federation.round(round_id).config_hash)
    except LedgerError:
        return None
    return config if config.task is not None else None


def check_task_arguments(shard: int | None, of: int | None, non_iid: float | None) -> None:
    """A task round's --shard/--of (both or neither, in range); --non-iid splits only the bundled digits."""
    if non_iid is not None:
        raise InvalidInputError(
            "--non-iid splits the bundled digits set, but this round trains a task, which reads the party's data "
            "with its own load_data; drop --non-iid (give --data PATH, and --shard I --of N if the task shards it)."
        )
    if (shard is None) != (of is None):
        raise InvalidInputError("give both --shard I and --of N, or neither.")
    if shard is not None and of is not None and not 0 <= shard < of:
        raise InvalidInputError(f"--shard must be between 0 and {of - 1} for --of {of}, not {shard}.")


def task_inputs(
    workspace: Workspace, *, data: str | None, shard: int | None, of: int | None, non_iid: float | None, seed: int,
    timeout_s: float, verbose: bool, device: str | None, compile_model: bool = False, workers: int = 0,
) -> TaskInputs:
    """What the party gives a task round, from its options (checked first: ``check_task_arguments``)."""
    from node.participant import TaskInputs
    from node.tasks.rounds import task_cache

    check_task_arguments(shard, of, non_iid)
    return TaskInputs(
        cache_root=task_cache(workspace), data_path=data, partition=shard, partitions=of, data_seed=seed,
        timeout_s=timeout_s, verbose=verbose, device=device, compile_model=compile_model, workers=workers,
    )


@dataclass(frozen=True)
class SecureParty:
    """What a party's own step of a secure round works with (``node advertise``, ``node reveal``)."""

    workspace: Workspace
    federation: FederationClient
    store: ContentStore
    info: RoundInfo
    settings: SecureRound
    journal: Journal
    post: PostMessage | None = None  # None: the party posts itself; else through its relay

    @property
    def address(self) -> str:
        assert self.federation.account is not None
        return self.federation.account.address


def secure_party(
    workdir: Path | None, rpc: str | None, key: str | None, max_fee_gwei: float | None, round_id: int, *, does: str,
    relay: str | None = None,
) -> SecureParty:
    """The party's workspace, signing client, store, round, journal and (with ``relay``, checked first) the relay
    that posts its messages; InvalidInputError naming what only a secure round's parties ``does`` when
    ``round_id`` is not a secure round."""
    from ledger.chain.connection import open_federation, workspace_rpc
    from ledger.chain.keys import load_account
    from node.journal import Journal
    from node.participant import fetch_round_config

    if relay is not None:  # a mistyped URL is told before anything is loaded (the relay client only then)
        from node.relay_client import check_relay_url, checked_relay

        check_relay_url(relay)
    workspace = Workspace.find(workdir)
    account = load_account(workspace, key)
    federation = open_federation(workspace, account=account, rpc=workspace_rpc(workspace, rpc), max_fee_gwei=max_fee_gwei)
    post = None if relay is None else checked_relay(relay, federation).post_round_message
    store = open_store(workspace)
    info = federation.round(round_id)
    config = fetch_round_config(store, info.config_hash)
    if config.secure is None:
        raise InvalidInputError(f"round {round_id} is not a secure round; only a secure round's parties {does}.")
    journal = Journal(workspace.journal_dir, role="participant", actor=account.address, round_id=round_id)
    return SecureParty(workspace, federation, store, info, config.secure, journal, post)


RelayOption = Annotated[str | None, typer.Option("--relay", help="URL of a `fedledger relay serve`: sign and have the relay send it (the party needs no ether).")]


def register(app: typer.Typer) -> None:
    """Add the ``node`` group (``node train``) to the app."""
    node_app = typer.Typer(help="Participant node: train locally and record the update.", no_args_is_help=True)
    app.add_typer(node_app, name="node")

    @node_app.command("train")
    @handle_errors
    def train(
        round_id: Annotated[int, typer.Option("--round", min=1, help="Round to take part in.")],
        key: PartyKeyOption = None,
        data: DataOption = None,
        shard: ShardOption = None,
        of: OfOption = None,
        non_iid: NonIidOption = None,
        seed: SeedOption = 0,
        device: DeviceOption = None,
        relay: Annotated[str | None, typer.Option("--relay", help="URL of a `fedledger relay serve`: sign the update (in a secure round, the advertisement too) and have the relay send it (the party needs no ether).")] = None,
        task_timeout: TaskTimeoutOption = TASK_TIMEOUT_S,
        verbose: VerboseOption = False,
        compile_model: CompileOption = False,
        workers: WorkersOption = 0,
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Fetch the round's base model, train on local data, pin the update and record it on chain.

        Safe to rerun: a party that already submitted is told so, and an update already pinned by an
        interrupted run is submitted without training again. A round whose config has a dp section is
        trained with DP-SGD, after checking (before any training) that the party's cumulative ε stays
        within its budget on chain; the update then declares that ε.

        A round whose config names a task (opened under an agreement that names it) runs that task, and
        only if it is the task of the agreement in force, which the party accepted: the bundle is fetched
        by CID and checked, and its code runs in a process of its own that holds no key, reading --data
        (and --shard/--of) with its load_data. A task that fails leaves nothing pinned and nothing sent.
        """
        from ledger.chain.connection import open_federation, require_gas_money, workspace_rpc
        from ledger.chain.keys import load_account
        from node.participant import train_and_submit
        from node.training import pick_device

        if relay is not None:  # a mistyped URL is told before anything is loaded
            from node.relay_client import check_relay_url

            check_relay_url(relay)
        workspace = Workspace.find(workdir)
        task_config = task_round_config(workspace, rpc, round_id)
        local: Dataset | None = None
        inputs: TaskInputs | None = None
        if task_config is None:
            local = party_data(None if data is None else Path(data), shard, of, non_iid, seed)
        else:
            inputs = task_inputs(workspace, data=data, shard=shard, of=of, non_iid=non_iid, seed=seed,
                                 timeout_s=task_timeout, verbose=verbose, device=device,
                                 compile_model=compile_model, workers=workers)
        chosen = pick_device(device)
        account = load_account(workspace, key)
        # One key submits from one process: a `node run` with this key on this workspace holds the same lock.
        with service_lock(workspace.journal_dir, role="node", address=account.address, command="fedledger node train"):
            federation = open_federation(workspace, account=account, rpc=workspace_rpc(workspace, rpc),
                                         max_fee_gwei=max_fee_gwei)
            submit = post = None
            store = open_store(workspace)
            if relay is None:
                require_gas_money(federation.w3, account.address)
            else:  # the party signs, the relay pays: checked before any training
                from node.relay_client import checked_relay

                relay_client = checked_relay(relay, federation)
                submit, post = relay_client.submit_update, relay_client.post_round_message  # a secure round's advertisement too
            if local is not None:
                console.print(f"Party {account.address}: round {round_id}, {len(local)} local samples, device {chosen}.")
            else:
                assert task_config is not None and task_config.task is not None
                console.print(
                    f"Party {account.address}: round {round_id}, task {task_config.model} ({task_config.task.cid}), "
                    f"data {escape(data) if data is not None else 'none given'}, device {chosen}.", soft_wrap=True, highlight=False,
                )
            outcome = train_and_submit(
                federation=federation, store=store, round_id=round_id, data=local,
                journal_dir=workspace.journal_dir, device=chosen, progress=not json, submit=submit, task=inputs,
                validation=None if local is None else digits_validation(seed), post=post,
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

    @node_app.command("advertise")
    @handle_errors
    def advertise_keys(
        round_id: Annotated[int, typer.Option("--round", min=1, help="The secure round, in its key phase.")],
        key: PartyKeyOption = None,
        relay: RelayOption = None,
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """A secure round's first step alone: post this party's round keys and encrypted shares (once).

        `node train` does it too, then waits for the key phase to end (every party advertised, or the key
        deadline passed); advertising first lets parties that take turns on one machine train one after another.
        """
        from node.secure.party import advertise

        party = secure_party(workdir, rpc, key, max_fee_gwei, round_id, does="advertise keys", relay=relay)
        cid = advertise(party.federation, party.store, party.journal, round_id=round_id, settings=party.settings,
                        opened_block=party.info.opened_block, post=party.post)
        console.print(f"Round {round_id}: {party.address} advertised its round keys: {cid}.", soft_wrap=True, highlight=False)
        if json:
            print_json({"round_id": round_id, "participant": party.address, "advertisement_cid": cid})

    @node_app.command("reveal")
    @handle_errors
    def reveal(
        round_id: Annotated[int, typer.Option("--round", min=1, help="The secure round whose deadline has passed.")],
        key: PartyKeyOption = None,
        encryption_key: Annotated[str | None, typer.Option("--encryption-key", help="The party's encryption key, a name under [encryption_keys] or its file (default: the workspace's key whose public half this party registered on chain).")] = None,
        relay: RelayOption = None,
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """A secure round, after its deadline: publish the shares this party holds of each neighbour that
        advertised keys but did not submit, so the aggregator (and anyone) can remove that party's masks.

        Never a share of a party that submitted. Nothing to do (and nothing sent) when no neighbour dropped out.
        """
        from node.secure.party import own_encryption_key
        from node.secure.party import reveal as reveal_shares

        party = secure_party(workdir, rpc, key, max_fee_gwei, round_id, does="reveal shares", relay=relay)
        private_key = own_encryption_key(party.workspace, party.federation, encryption_key)
        cid = reveal_shares(party.federation, party.store, party.journal, round_id=round_id, settings=party.settings,
                            long_term_key=private_key, post=party.post)
        if cid is None:
            console.print(f"Round {round_id}: no neighbour of {party.address} dropped out; nothing to reveal.", highlight=False)
        else:
            console.print(f"Round {round_id}: revealed the shares {party.address} holds of its dropped-out neighbours: {cid}.",
                          soft_wrap=True, highlight=False)
        if json:
            print_json({"round_id": round_id, "participant": party.address, "reveal_cid": cid})

