"""Commands: ``node run``, ``aggregator run``, ``coordinator run`` and ``round watch`` — the long-lived services.

Each command loads its key, takes the service lock, connects (retrying while the chain does not
answer), checks at once that the key may do its job (the contract's own reason if not), then runs
the service's steps (node.services) until its work is done, ``--once`` is done, or SIGTERM/SIGINT.
``node run`` and ``round watch`` join the ``node`` and ``round`` groups that other modules define.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.contract_constants import MAX_ROUND_DURATION
from ledger.errors import InvalidInputError, LedgerError
from ledger.ipfs.store import open_store
from ledger.workspace import Workspace
from node.cli._common import (
    TASK_TIMEOUT_S,
    CompileOption,
    RpcOption,
    TaskTimeoutOption,
    VerboseOption,
    WorkdirOption,
    WorkersOption,
    console,
    handle_errors,
)
from node.cli.governance_common import MaxFeeOption
from node.cli.train_cmd import DataOption, DeviceOption, NonIidOption, OfOption, SeedOption, ShardOption
from node.services.lock import service_lock

# The services' modules import web3 and prometheus-client: commands import them when they run, so
# that every other command (and --help) starts as fast as before.
if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ledger.chain.federation import FederationClient
    from node.services.log import ServiceLog
    from node.services.loop import Retrier, Service, StopFlag
    from node.services.metrics import ServiceMetrics

ONCE_MAX_OUTAGE_S = 60.0

KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Signing key: a name under \\[keys] or a keystore file (password from $FEDLEDGER_KEY_PASSWORD or a prompt)."),
]
PollOption = Annotated[float, typer.Option("--poll-seconds", min=0.1, help="Seconds between two looks at the chain.")]
MaxOutageOption = Annotated[
    float | None,
    typer.Option("--max-outage", min=1.0, help="Give up (exit 1) after this many seconds of chain or store outage "
                 f"(default: never; {ONCE_MAX_OUTAGE_S:.0f} with --once)."),
]
LogJsonOption = Annotated[bool, typer.Option("--log-json", help="Log one JSON object per line on stdout instead of lines for people on stderr.")]
MetricsPortOption = Annotated[int | None, typer.Option("--metrics-port", min=0, max=65535, help="Serve Prometheus metrics on this port (0: a free one).")]
MetricsHostOption = Annotated[str, typer.Option("--metrics-host", help="Address the metrics endpoint listens on.")]


def existing_group(app: typer.Typer, name: str) -> typer.Typer:
    """The sub-app another module registered as ``name`` (so this module can add commands to it)."""
    for group in app.registered_groups:
        if group.name == name and group.typer_instance is not None:
            return group.typer_instance
    raise RuntimeError(f"no command group {name!r} is registered; register services_cmd after it")


@dataclass
class Runtime:
    """What every service command sets up before its service runs."""

    log: ServiceLog
    metrics: ServiceMetrics
    stop: StopFlag
    retrier: Retrier


@contextmanager
def service_runtime(
    service: str, *, actor: str | None, log_json: bool, max_outage: float | None, metrics_port: int | None,
    metrics_host: str,
) -> Iterator[Runtime]:
    """Log, metrics (served when a port is given), the signal flag and the retrier of one service process.

    A fatal error is logged as a ``failed`` event in JSON mode (people get the CLI's error line).
    """
    from node.services.log import ServiceLog
    from node.services.loop import Retrier, StopFlag
    from node.services.metrics import ServiceMetrics

    log = ServiceLog(service, actor=actor, json_lines=log_json)
    metrics = ServiceMetrics(service, actor=actor)
    stop = StopFlag()
    with stop.installed():
        server = None
        if metrics_port is not None:
            server = metrics.serve(metrics_port, host=metrics_host)
            url = f"http://{metrics_host}:{server.server_port}/metrics"
            log.info("metrics", f"Prometheus metrics at {url}.", url=url, port=server.server_port)
        try:
            yield Runtime(log, metrics, stop, Retrier(log=log, metrics=metrics, stop=stop, max_outage_s=max_outage))
        except LedgerError as error:
            if log_json:
                log.error("failed", str(error), error=type(error).__name__)
            raise
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()


def federation_connector(
    workspace: Workspace, rpc: str | None, account: LocalAccount | None = None, max_fee_gwei: float | None = None
) -> Callable[[], FederationClient]:
    """A call that opens the workspace's federation (for a retrier: services start before their chain)."""
    from ledger.chain.connection import open_federation, workspace_rpc

    url = workspace_rpc(workspace, rpc)
    return lambda: open_federation(workspace, account=account, rpc=url, max_fee_gwei=max_fee_gwei)


@contextmanager
def _signed_in(
    runtime: Runtime, workspace: Workspace, *, rpc: str | None, key: str | None, role: str, max_fee_gwei: float | None = None
) -> Iterator[FederationClient | None]:
    """The federation seen through the service's key, held under its one-service-per-key lock;
    None when the service was stopped before the chain answered."""
    from ledger.chain.connection import signing_account, workspace_rpc

    url = workspace_rpc(workspace, rpc)
    reader = runtime.retrier.until_success(federation_connector(workspace, url, max_fee_gwei=max_fee_gwei))
    if reader is None:
        log_stopped_early(runtime)
        yield None
        return
    signer = signing_account(workspace, key, w3=reader.w3, rpc=url)
    runtime.log.actor = signer.address
    runtime.metrics.set_actor(signer.address)
    with service_lock(workspace.journal_dir, role=role, address=signer.address, command=f"fedledger {role} run"):
        yield reader.with_account(signer)


def _require_role(federation: FederationClient, role: str) -> None:
    """The contract's own refusal (AccessControlUnauthorizedAccount) when the sender lacks ``role``."""
    from ledger.chain.contract_errors import AccessControlUnauthorizedAccount

    if not federation.has_role(role, federation.sender):
        raise AccessControlUnauthorizedAccount(federation.sender, role)


def log_stopped_early(runtime: Runtime) -> None:
    """Log that the service was stopped (a signal) before its chain first answered."""
    runtime.log.info("stopped", f"stopped on {runtime.stop.reason} before starting.", signal=runtime.stop.reason)


def _run(runtime: Runtime, service: Service, *, poll: float, once: bool, start: Callable[[], None]) -> None:
    """``start()`` (retried while the chain does not answer), then the service's steps."""
    from node.services.loop import run_service

    if not runtime.retrier.until_success(lambda: start() or True):
        log_stopped_early(runtime)
        return
    run_service(service, log=runtime.log, retrier=runtime.retrier, poll_s=poll, once=once)


def register(app: typer.Typer) -> None:
    """Add ``node run``, ``round watch`` and the ``aggregator`` and ``coordinator`` groups to the app."""
    node_app = existing_group(app, "node")
    round_app = existing_group(app, "round")
    aggregator_app = typer.Typer(help="The aggregator service: finalize rounds as soon as they may be.", no_args_is_help=True)
    coordinator_app = typer.Typer(help="The coordinator service: open rounds until enough are finalized.", no_args_is_help=True)
    app.add_typer(aggregator_app, name="aggregator")
    app.add_typer(coordinator_app, name="coordinator")

    @node_app.command("run")
    @handle_errors
    def node_run(
        key: KeyOption = None,
        data: DataOption = None,
        shard: ShardOption = None,
        of: OfOption = None,
        non_iid: NonIidOption = None,
        seed: SeedOption = 0,
        device: DeviceOption = None,
        task_timeout: TaskTimeoutOption = TASK_TIMEOUT_S,
        verbose: VerboseOption = False,
        compile_model: CompileOption = False,
        workers: WorkersOption = 0,
        once: Annotated[bool, typer.Option("--once", help="Take part in the rounds open now, then exit.")] = False,
        encryption_key: Annotated[str | None, typer.Option("--encryption-key", help="Secure rounds: the party's encryption key, a name under [encryption_keys] or its file, that decrypts the shares it reveals (default: the workspace's key whose public half this party registered on chain).")] = None,
        poll: PollOption = 2.0,
        max_outage: MaxOutageOption = None,
        log_json: LogJsonOption = False,
        metrics_port: MetricsPortOption = None,
        metrics_host: MetricsHostOption = "127.0.0.1",
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """A party's node: train on local data and submit to every open round it may, then wait for the next.

        Each round gets what `node train` would give it. A built-in round trains on --data FILE or
        --shard I --of N of the bundled digits, loaded when the first built-in round needs it, not at
        start: a --data that only a task reads (a CSV of other columns, a folder) does not stop the
        node, and a file that does not load settles each built-in round with its sentence, logged as a
        warning. A round whose config names a task runs that task (the agreement's, as `node train`
        checks) in a keyless process: its load_data gets --data as given, --shard/--of as partition
        and partitions and --seed, bounded by --task-timeout; a task that fails settles that round with
        its sentence, logged as a warning, nothing pinned or sent, and the node goes on. Giving no data
        at all (neither --data nor --shard/--of) is refused at start.

        A secure round never holds the node: it advertises its round keys, takes part once the key phase
        is over (looking again at each poll), and after the round's deadline reveals the shares it holds
        of its dropped-out neighbours, once, with its encryption key (--encryption-key, loaded at start).

        Safe to stop and start again: it resumes from the chain and the journal, and never submits
        twice. One `node run` per key and workspace (a lock).
        """
        from ledger.chain.connection import require_gas_money
        from ledger.chain.keys import load_account
        from node.cli.train_cmd import NO_DATA, check_task_arguments, party_data, task_inputs
        from node.data import digits_validation
        from node.secure.party import own_encryption_key
        from node.services.participant_service import NodeService
        from node.training import pick_device

        workspace = Workspace.find(workdir)
        check_task_arguments(shard, of, None)  # both or neither, in range: for a round of either kind
        if data is None and shard is None:
            raise InvalidInputError(NO_DATA)
        chosen = pick_device(device)
        account = load_account(workspace, key)
        with service_lock(workspace.journal_dir, role="node", address=account.address, command="fedledger node run"), \
                service_runtime("node", actor=account.address, log_json=log_json, metrics_port=metrics_port,
                                metrics_host=metrics_host,
                                max_outage=ONCE_MAX_OUTAGE_S if once and max_outage is None else max_outage) as rt:
            federation = rt.retrier.until_success(federation_connector(workspace, rpc, account, max_fee_gwei))
            if federation is None:
                log_stopped_early(rt)
                return
            service = NodeService(
                federation=federation, store=open_store(workspace),
                data=lambda: party_data(None if data is None else Path(data), shard, of, non_iid, seed),
                task=lambda: task_inputs(workspace, data=data, shard=shard, of=of, non_iid=non_iid, seed=seed,
                                         timeout_s=task_timeout, verbose=verbose, device=device,
                                         compile_model=compile_model, workers=workers),
                validation=digits_validation(seed),
                journal_dir=workspace.journal_dir, log=rt.log, metrics=rt.metrics, device=chosen,
                encryption_key=lambda: own_encryption_key(workspace, federation, encryption_key),
            )

            def start() -> None:
                require_gas_money(federation.w3, account.address)
                service.start()
                # The encryption key is read now (a password prompt, if any, while someone is there): given by
                # name it must be the registered one; by default, only a party with a key registered needs one.
                if encryption_key is not None or federation.encryption_key(account.address) is not None:
                    try:
                        service.load_encryption_key()
                    except LedgerError as problem:
                        if encryption_key is not None:
                            raise
                        rt.log.warning("no-encryption-key", f"{problem} Until then this node cannot reveal in a "
                                       "secure round.")

            _run(rt, service, poll=poll, once=once, start=start)

    @aggregator_app.command("run")
    @handle_errors
    def aggregator_run(
        key: KeyOption = None,
        once: Annotated[bool, typer.Option("--once", help="Finalize or cancel what is due now, then exit.")] = False,
        poll: PollOption = 2.0,
        max_outage: MaxOutageOption = None,
        log_json: LogJsonOption = False,
        metrics_port: MetricsPortOption = None,
        metrics_host: MetricsHostOption = "127.0.0.1",
        encryption_key: Annotated[str | None, typer.Option("--encryption-key", help="Sealed rounds: a recipient's encryption key, a name under [encryption_keys] or its file (default: the workspace's key that a recipient registered on chain).")] = None,
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Finalize each open round once it holds its minimum and every entitled party has submitted or
        its deadline has passed; cancel a round whose deadline passed below its minimum."""
        from ledger.chain.connection import require_gas_money
        from ledger.sealing.recipients import recipient_opener
        from node.services.aggregator_service import AggregatorService

        workspace = Workspace.find(workdir)
        max_outage = ONCE_MAX_OUTAGE_S if once and max_outage is None else max_outage
        with service_runtime("aggregator", actor=None, log_json=log_json, metrics_port=metrics_port,
                             metrics_host=metrics_host, max_outage=max_outage) as rt, \
                _signed_in(rt, workspace, rpc=rpc, key=key, role="aggregator", max_fee_gwei=max_fee_gwei) as federation:
            if federation is not None:
                service = AggregatorService(
                    federation=federation, store=open_store(workspace), journal_dir=workspace.journal_dir,
                    log=rt.log, metrics=rt.metrics,
                    opener_for=lambda round_seal: recipient_opener(workspace, round_seal, encryption_key),
                )

                def start() -> None:
                    _require_role(federation, "aggregator")
                    require_gas_money(federation.w3, federation.sender)
                    service.start()

                try:
                    _run(rt, service, poll=poll, once=once, start=start)
                finally:
                    service.close()

    @coordinator_app.command("run")
    @handle_errors
    def coordinator_run(
        rounds: Annotated[int, typer.Option("--rounds", min=1, help="Stop (exit 0) once this many rounds of the schedule are finalized.")],
        round_seconds: Annotated[int, typer.Option("--round-seconds", min=1, max=MAX_ROUND_DURATION, help="Each round's deadline, in seconds from its opening (at most 30 days).")],
        min_updates: Annotated[int, typer.Option("--min-updates", min=1, help="Updates each round needs before it can be finalized.")],
        strategy: Annotated[str | None, typer.Option("--strategy", help="fedavg, median, trimmed-mean or krum (default fedavg).")] = None,
        model: Annotated[str, typer.Option("--model", help="Model name for a configuration built from --strategy.")] = "mlp",
        config: Annotated[Path | None, typer.Option("--config", help="Round configuration JSON file, instead of --strategy/--model.")] = None,
        max_samples: Annotated[int | None, typer.Option("--max-samples", help="The most samples one update may count for (default 10000).")] = None,
        base_cid: Annotated[str | None, typer.Option("--base-cid", help="Model round 1 starts from (default: the seeded genesis model of --model).")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the genesis model (as `fedledger model init --seed`).")] = 0,
        max_reopens: Annotated[int, typer.Option("--max-reopens", min=0, help="Give up (exit 1) after a round was cancelled and reopened this many times in a row.")] = 3,
        secure: Annotated[bool, typer.Option("--secure", help="Open secure rounds (FedAvg only): each round's cohort is the parties admitted at its opening with an encryption key registered on chain.")] = False,
        threshold: Annotated[int | None, typer.Option("--threshold", help="Secure rounds: shares needed to remove a dropout's masks (default: a majority of a party's neighbours).")] = None,
        neighbours: Annotated[int | None, typer.Option("--neighbours", help="Secure rounds: peers each party masks with (default: all, up to 17 parties; 16 beyond).")] = None,
        key_window: Annotated[int | None, typer.Option("--key-window", min=1, help="Secure rounds: seconds from each opening in which the parties advertise keys (default: half the round).")] = None,
        key: KeyOption = None,
        poll: PollOption = 2.0,
        max_outage: MaxOutageOption = None,
        log_json: LogJsonOption = False,
        metrics_port: MetricsPortOption = None,
        metrics_host: MetricsHostOption = "127.0.0.1",
        rpc: RpcOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Open round 1 on the base model, each next round on the last global model, reopen a cancelled
        round on its base; exit 0 once --rounds rounds are finalized. Resumes its schedule after a restart.

        Under an agreement that names a task, the rounds train that task: give --base-cid (the task's genesis
        model, `fedledger model init --task CID`, or a global model of its rounds).

        With --secure each round is a secure one (as `round open --secure`), its cohort and key deadline fixed
        at its opening; the parties' `node run` advertise, mask and reveal, `aggregator run` unmasks."""
        from ledger.ipfs.cid import parse_cid
        from ledger.chain.connection import require_gas_money
        from node.cli.round_cmd import round_config as round_config_bytes
        from node.cli.round_cmd import check_round_base, task_round_config
        from node.round_config import RoundConfig
        from node.services.coordinator_service import CoordinatorService, SecureOptions

        workspace = Workspace.find(workdir)
        if not secure and (threshold, neighbours, key_window) != (None, None, None):
            raise InvalidInputError("--threshold, --neighbours and --key-window are a secure round's; add --secure.")
        if key_window is not None and key_window >= round_seconds:
            raise InvalidInputError(f"--key-window {key_window} must be less than --round-seconds {round_seconds}: the "
                                    "parties advertise keys in it, then train and submit before the deadline.")
        document = RoundConfig.from_bytes(round_config_bytes(config, strategy, model, max_samples))
        if secure:
            from node.round_config import check_secure_strategy

            check_secure_strategy(document.strategy)
        given_base = parse_cid(base_cid) if base_cid is not None else None
        store = open_store(workspace)
        with service_runtime("coordinator", actor=None, log_json=log_json, metrics_port=metrics_port,
                             metrics_host=metrics_host, max_outage=max_outage) as rt, \
                _signed_in(rt, workspace, rpc=rpc, key=key, role="coordinator", max_fee_gwei=max_fee_gwei) as federation:
            if federation is not None:

                def pin_base() -> str:
                    if given_base is not None:
                        return given_base
                    from node.genesis import genesis_model_bytes

                    return store.add_bytes(genesis_model_bytes(document.model, seed=seed), pin=True)

                base = rt.retrier.until_success(pin_base)
                if base is None:
                    log_stopped_early(rt)
                    return
                check_round_base(federation, store, base)  # as `round open`: one the audit would reject is refused
                # Under an agreement that names a task, every round trains that task (as `round open` writes it).
                task_document, task = task_round_config(document.to_bytes(), config_file=config, federation=federation,
                                                        store=store, base_cid=base)
                if task is not None and secure:
                    raise InvalidInputError("secure rounds of a task are not built yet; run the coordinator without "
                                            "--secure under an agreement that names a task.")
                if task is not None:
                    document = RoundConfig.from_bytes(task_document)
                    rt.log.info("task", f"the agreement in force names task {document.model} ({task.cid}): every "
                                        "round of this schedule trains it.", task=task.cid)
                service = CoordinatorService(
                    federation=federation, store=store, journal_dir=workspace.journal_dir, rounds=rounds,
                    round_seconds=round_seconds, min_updates=min_updates, config=document, base_cid=base,
                    log=rt.log, metrics=rt.metrics, max_reopens=max_reopens,
                    secure=SecureOptions(threshold=threshold, neighbours=neighbours, key_window=key_window) if secure else None,
                )

                def start() -> None:
                    _require_role(federation, "coordinator")
                    require_gas_money(federation.w3, federation.sender)
                    service.start()

                _run(rt, service, poll=poll, once=False, start=start)

    @round_app.command("watch")
    @handle_errors
    def round_watch(
        interval: Annotated[float, typer.Option("--interval", min=0.1, help="Seconds between two looks at the chain.")] = 2.0,
        until_finalized: Annotated[int | None, typer.Option("--until-finalized", min=1, help="Exit 0 once this many rounds are finalized.")] = None,
        history: Annotated[int, typer.Option("--history", min=0, help="Rounds shown from before the watch started.")] = 10,
        max_outage: MaxOutageOption = None,
        log_json: LogJsonOption = False,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
    ) -> None:
        """Follow the federation live: a line whenever a round opens, gets an update, is finalized or closes."""
        from node.services.loop import run_service
        from node.services.watch import RoundWatcher

        workspace = Workspace.find(workdir)
        with service_runtime("watch", actor=None, log_json=log_json, metrics_port=None, metrics_host="127.0.0.1",
                             max_outage=max_outage) as rt:
            federation = rt.retrier.until_success(federation_connector(workspace, rpc))
            if federation is None:
                log_stopped_early(rt)
                return
            if not log_json:
                console.print(f"Watching Federation {federation.address} (Ctrl-C to stop).", highlight=False)
            watcher = RoundWatcher(federation, log=rt.log, until_finalized=until_finalized, history=history)
            run_service(watcher, log=rt.log, retrier=rt.retrier, poll_s=interval)
