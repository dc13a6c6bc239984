"""Commands: ``round open``, ``cancel``, ``abort`` and ``status`` — training rounds (``round watch`` is in services_cmd).

Also the round configuration document (``round_config``) that ``coordinator run`` builds too.
"""

from __future__ import annotations

import hashlib
import json as json_module
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ledger.ipfs.cid import parse_cid
from ledger.contract_constants import MAX_ROUND_DURATION
from ledger.errors import InvalidInputError
from ledger.ipfs.store import open_store
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

# The chain modules (web3) cost a second to import: commands import them when they run.
if TYPE_CHECKING:
    from ledger.chain.federation import FederationClient
    from ledger.ipfs.store import ContentStore
    from node.round_config import DpSettings, TaskRef


def round_config(
    config: Path | None, strategy: str | None, model: str, max_samples: int | None = None, seal_to: str | None = None,
    dp: DpSettings | None = None,
) -> bytes:
    """The round configuration document's canonical bytes, from a file or built from a strategy name.

    Either way the model and strategy are checked here, so a typo fails before anything is pinned
    or sent rather than when the parties train or the aggregator aggregates.
    """
    from node.model_layouts import MODEL_NAMES
    from node.round_config import RoundConfig
    from node.strategies import make_strategy, strategy_from_params

    if config is not None and strategy is not None:
        raise InvalidInputError("give either --config FILE or --strategy NAME, not both.")
    if config is not None:
        if not config.is_file():
            raise InvalidInputError(f"no round configuration file at {config}; check the path given to --config.")
        document = RoundConfig.from_bytes(config.read_bytes())
        strategy_from_params(document.strategy)
    else:
        document = RoundConfig(model=model, strategy=make_strategy(strategy or "fedavg").params())
    if max_samples is not None:
        document = replace(document, max_samples=max_samples)
    if seal_to is not None:
        document = replace(document, seal_to=tuple(part for part in seal_to.split(",") if part.strip()))
    if dp is not None:
        document = replace(document, dp=dp)
    if document.task is None and document.model not in MODEL_NAMES:  # a task round's model is the task's name
        raise InvalidInputError(f"unknown model {document.model!r}; choose one of {', '.join(MODEL_NAMES)}.")
    return document.to_bytes()


def task_round_config(
    document: bytes, *, config_file: Path | None, federation: FederationClient, store: ContentStore, base_cid: str,
) -> tuple[bytes, TaskRef | None]:
    """``document`` made a task round's when the agreement in force names a task (else as it is).

    The task comes from the agreement version in force, never from the caller: the config gets its
    ``task`` section (the bundle's CID, and the frozen tensors' CID from the base model's metadata),
    ``model`` becomes the task's name, and the training settings default to the task's declared ones
    (keys the --config file's own training section gives win). A config that names a task the
    agreement does not is refused. A private (dp) task round is opened like any other: each party's node
    trains it with fedledger's DP-SGD loop, and refuses it if the task brings its own ``train``.
    """
    from node.round_config import RoundConfig, TaskRef, TrainingSettings
    from node.tasks.agreement import agreement_task
    from node.tasks.rounds import bundle_manifest, check_travelling_dtypes, read_weights
    from node.tasks.spec import effective_settings

    parsed = RoundConfig.from_bytes(document)
    version = federation.agreement_version()
    task = None
    if version > 0:
        terms = federation.terms_cid(version)
        if store.has(terms):
            task = agreement_task(store, terms)
        elif parsed.task is not None:
            raise InvalidInputError(
                f"the round config names task {parsed.task.cid}, but the terms {terms} of agreement version {version} "
                "are not in this workspace's store, so it cannot be checked that they name it; add them to the store "
                "(`fedledger ipfs add FILE`) and open the round again."
            )
        else:
            console.print(
                f"[yellow]note:[/] the terms {terms} of agreement version {version} are not in this workspace's store, "
                "so whether they name a task was not checked; the round is opened as configured.", soft_wrap=True,
            )
    if task is None:
        if parsed.task is not None:
            raise InvalidInputError(
                f"the round config names task {parsed.task.cid}, but the agreement in force "
                f"({'version ' + str(version) if version else 'none is published'}) names no task; publish one that "
                f"does (`fedledger agreement publish TERMS_FILE --task {parsed.task.cid}`) or drop the config's task section."
            )
        return document, None
    if parsed.task is not None and parsed.task.cid != task:
        raise InvalidInputError(
            f"the round config names task {parsed.task.cid}, but agreement version {version} in force names task {task}; "
            "drop the config's task section (`fedledger round open` writes the agreement's)."
        )
    manifest = bundle_manifest(store, task)
    if not store.has(base_cid):
        raise InvalidInputError(
            f"the base model {base_cid} is not in this workspace's store, and a round of task {manifest.name} reads its "
            "frozen tensors' CID from it; add it to the store (`fedledger ipfs add FILE`) or give another --base-cid."
        )
    base, metadata = read_weights(store, base_cid, what="the base model")
    base_task = metadata.get("task")
    if not isinstance(base_task, str) or not base_task:
        raise InvalidInputError(
            f"the base model {base_cid} was not made from a task (its metadata names model {metadata.get('model')!r}), "
            f"but agreement version {version} names task {manifest.name} ({task}); start from the task's genesis "
            f"model (`fedledger model init --task {task}`) or from a global model of its rounds."
        )
    if base_task != task:
        console.print(
            f"[yellow]note:[/] the base model {base_cid} was made by task {base_task}; the parties will load it into "
            f"the model of task {manifest.name} ({task}), which must have the same tensors.", soft_wrap=True,
        )
    check_travelling_dtypes(base, task=manifest.name)
    frozen = metadata.get("frozen_cid") or None
    given: dict = {}
    if config_file is not None:
        raw = json_module.loads(config_file.read_bytes())
        given = raw.get("training") or {} if isinstance(raw, dict) else {}
    settings = effective_settings(manifest.settings, given, task=manifest.name)
    reference = TaskRef(cid=task, frozen_cid=frozen)
    document = replace(parsed, model=manifest.name, task=reference, training=TrainingSettings(**settings)).to_bytes()
    return document, reference


NEW_LINEAGE_ADVICE = (
    "a federation has one lineage, from the base of its round 1, so a round on any other model fails "
    "`fedledger audit verify` (lineage) for good; to start from another model on purpose, found a new federation "
    "(`fedledger init DIR`, then `fedledger deploy` there)"
)


def check_round_base(federation: FederationClient, store: ContentStore, base_cid: str) -> None:
    """Refuse, before anything is pinned or sent, a base model that would make the round unusable or unauditable.

    It must be in this workspace's store (the parties fetch it, the audit checks it), and once a
    round exists it must be the federation's genesis model (round 1's base) or the global model of a
    finalized round: the audit's lineage check accepts nothing else. That it is a weights file is
    checked by :func:`check_base_weights` once the round's model (or task) is known.
    """
    if not store.has(base_cid):
        raise InvalidInputError(
            f"the base model {base_cid} is not in this workspace's store, so the parties could not fetch it and the "
            "audit could not check the round; add it (`fedledger ipfs add FILE`), or give the genesis model "
            "(`fedledger model init` pins one) or a finalized round's global model (`fedledger audit rounds`)."
        )
    count = federation.round_count()
    if count == 0:
        return  # round 1's base is the genesis model
    rounds = [federation.round(number) for number in range(1, count + 1)]
    finalized = [info.global_cid for info in rounds if info.state == "finalized" and info.global_cid]
    if base_cid == rounds[0].base_cid or base_cid in finalized:
        return
    latest = f"; the latest finalized round's is {finalized[-1]}" if finalized else ""
    raise InvalidInputError(
        f"the base model {base_cid} is neither this federation's genesis model ({rounds[0].base_cid}) nor the "
        f"global model of a finalized round{latest}; give one of those, since {NEW_LINEAGE_ADVICE}."
    )


def check_base_weights(store: ContentStore, base_cid: str, document: bytes) -> None:
    """Refuse a built-in round's base that is not a weights file of its model (a task round's base was
    read by :func:`task_round_config`)."""
    from ledger.errors import LedgerError
    from ledger.weights import from_safetensors, max_blob_bytes
    from node.model_layouts import model_layout
    from node.round_config import RoundConfig

    config = RoundConfig.from_bytes(document)
    if config.task is not None:
        return
    layout = model_layout(config.model)
    try:
        from_safetensors(store.get(base_cid, max_bytes=max_blob_bytes(layout)), layout=layout)
    except LedgerError as error:
        raise InvalidInputError(
            f"the base model {base_cid} is not a weights file of model {config.model} ({str(error).rstrip('.')}), so "
            f"no party could train on it; give the genesis model (`fedledger model init --model {config.model}` pins "
            "one) or a finalized round's global model."
        ) from None


def _dp_settings(
    federation: FederationClient, noise: float | None, target_epsilon: float | None, clip: float | None,
    sample_rate: float | None, steps: int | None,
) -> DpSettings | None:
    """The dp section the --dp-* options ask for (None when none is given); defaults from the demo's settings.

    --dp-target-epsilon picks the least noise (to 3 decimals) that keeps this one round within that
    ε at the δ of the agreement in force, so it needs an agreement with a privacy budget.
    """
    from node.privacy import demo_settings
    from node.privacy.accountant import noise_multiplier_for
    from node.round_config import DpSettings

    if noise is None and target_epsilon is None:
        if (clip, sample_rate, steps) != (None, None, None):
            raise InvalidInputError("--dp-clip, --dp-sample-rate and --dp-steps need --dp-noise S or --dp-target-epsilon E.")
        return None
    if noise is not None and target_epsilon is not None:
        raise InvalidInputError("give either --dp-noise S or --dp-target-epsilon E, not both.")
    clip = demo_settings.MAX_GRAD_NORM if clip is None else clip
    sample_rate = demo_settings.SAMPLE_RATE if sample_rate is None else sample_rate
    steps = demo_settings.STEPS if steps is None else steps
    if target_epsilon is not None:
        delta = federation.agreement().delta
        if delta is None:
            raise InvalidInputError(
                "--dp-target-epsilon needs the agreement in force to carry a privacy budget (its δ); publish one with "
                "`fedledger agreement publish TERMS --epsilon-budget E --delta D`, or give --dp-noise S."
            )
        DpSettings(noise_multiplier=1.0, max_grad_norm=clip, sample_rate=sample_rate, steps=steps)  # the other fields' refusals first
        noise = noise_multiplier_for(target_epsilon, sample_rate=sample_rate, steps=steps, delta=delta)
    return DpSettings(noise_multiplier=noise, max_grad_norm=clip, sample_rate=sample_rate, steps=steps)


def register(app: typer.Typer) -> None:
    """Add the ``round`` group to the app."""
    round_app = typer.Typer(help="Open training rounds, follow them, cancel one that missed its minimum.", no_args_is_help=True)
    app.add_typer(round_app, name="round")

    @round_app.command("open")
    @handle_errors
    def round_open(
        base_cid: Annotated[str, typer.Option("--base-cid", help="CID of the model the round starts from: in the store, and after round 1 the genesis model (round 1's base) or a finalized round's global model.")],
        deadline: Annotated[int, typer.Option(
            "--deadline", min=1, max=MAX_ROUND_DURATION,
            help="Seconds from now (chain time) until submissions close; at most 30 days (2592000).",
        )],
        min_updates: Annotated[int, typer.Option("--min-updates", min=1, help="Updates needed before the round can be finalized.")],
        config: Annotated[Path | None, typer.Option("--config", help="Round configuration JSON file.")] = None,
        strategy: Annotated[str | None, typer.Option("--strategy", help="Build the configuration from a strategy name (default fedavg).")] = None,
        model: Annotated[str, typer.Option("--model", help="Model name for a configuration built from --strategy (a round under an agreement that names a task trains that task).")] = "mlp",
        max_samples: Annotated[int | None, typer.Option("--max-samples", help="The most samples one party's update may count for in the weights (default 10000; 1 weighs every update equally); overrides the config file's.")] = None,
        seal_to: Annotated[str | None, typer.Option("--seal-to", help="Seal the round's updates to these addresses (ADDR[,ADDR...]: the aggregator, any auditors), each with an encryption key registered on chain; overrides the config file's.")] = None,
        dp_noise: Annotated[float | None, typer.Option("--dp-noise", help="Make the round private (DP-SGD) with this noise multiplier σ; overrides the config file's dp section.")] = None,
        dp_target_epsilon: Annotated[float | None, typer.Option("--dp-target-epsilon", help="Make the round private with the least noise that keeps this one round within ε (at the agreement's δ).")] = None,
        dp_clip: Annotated[float | None, typer.Option("--dp-clip", help="Per-sample gradient clipping norm of a private round (default 1.0).")] = None,
        dp_sample_rate: Annotated[float | None, typer.Option("--dp-sample-rate", help="Poisson sampling rate of a private round's batches (default 0.2).")] = None,
        dp_steps: Annotated[int | None, typer.Option("--dp-steps", help="DP-SGD steps each party takes in a private round (default 20).")] = None,
        secure: Annotated[bool, typer.Option("--secure", help="Make the round a secure one: the parties mask their updates so that nobody, the aggregator included, sees more than their sum (FedAvg only).")] = False,
        cohort: Annotated[str | None, typer.Option("--cohort", help="A secure round's parties (ADDR,ADDR,...; default: every admitted party with a registered encryption key).")] = None,
        threshold: Annotated[int | None, typer.Option("--threshold", help="A secure round's shares needed to remove a dropout's masks (default: a majority of a party's neighbours).")] = None,
        neighbours: Annotated[int | None, typer.Option("--neighbours", help="How many peers each party of a secure round masks with (default: all, up to 17 parties; 16 beyond).")] = None,
        key_window: Annotated[int | None, typer.Option("--key-window", min=1, help="Seconds from now in which a secure round's parties advertise their keys (default: half the round).")] = None,
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Open a round: pins the round configuration and records its sha256 with the base model CID.

        With --secure the parties first advertise keys (until the key deadline), then submit masked
        updates; after the deadline each reveals what removes the masks of those that dropped out
        (`fedledger node reveal`), and the aggregator and any auditor recompute the sum without a key.

        Under an agreement version that names a task (`agreement publish --task`), the round trains that
        task: its config names the task, the model is the task's, and training defaults to its settings.
        A base model outside the federation's lineage, not in the store or not a weights file is refused
        with nothing pinned or sent (`audit verify` would fail such a round for good).
        """
        from ledger.chain.connection import chain_now
        from node.round_config import RoundConfig

        cid = parse_cid(base_cid)
        if not secure and (cohort, threshold, neighbours, key_window) != (None, None, None, None):
            raise InvalidInputError("--cohort, --threshold, --neighbours and --key-window are a secure round's; add --secure.")
        checked = round_config(config, strategy, model, max_samples, seal_to)  # a bad config is refused before the chain is asked
        if secure:
            from node.round_config import check_secure_strategy

            check_secure_strategy(RoundConfig.from_bytes(checked).strategy)
        workspace, federation = governed(workdir, rpc, key, max_fee_gwei)
        dp = _dp_settings(federation, dp_noise, dp_target_epsilon, dp_clip, dp_sample_rate, dp_steps)
        document = round_config(config, strategy, model, max_samples, seal_to, dp)
        now = chain_now(federation.w3)
        if secure:
            from node.secure.opening import secure_round

            plain = RoundConfig.from_bytes(document)
            section = secure_round(
                federation, opens_at=now, deadline=now + deadline, max_samples=plain.max_samples, threshold=threshold,
                cohort=None if cohort is None else [part.strip() for part in cohort.split(",") if part.strip()],
                neighbours=neighbours, key_window=key_window,
            )
            document = replace(plain, secure=section).to_bytes()
        recipients = RoundConfig.from_bytes(document).seal_to
        if recipients is not None:  # refused now, before anything is pinned, rather than when parties seal
            from ledger.sealing.recipients import registered_keys

            registered_keys(federation, recipients)
        store = open_store(workspace)
        check_round_base(federation, store, cid)  # refused before anything is pinned or sent
        document, task = task_round_config(document, config_file=config, federation=federation, store=store, base_cid=cid)
        check_base_weights(store, cid, document)
        if secure and RoundConfig.from_bytes(document).task is not None:
            raise InvalidInputError("secure rounds of a task are not built yet; open the task's round without --secure.")
        config_cid = store.add_bytes(document, pin=True)
        closes = now + deadline
        round_id, tx = federation.open_round(
            base_cid=cid, deadline=closes, min_updates=min_updates, config_hash=hashlib.sha256(document).digest()
        )
        extra: dict = {}
        if secure:
            opened_secure = RoundConfig.from_bytes(document).secure
            assert opened_secure is not None
            extra["secure"] = {"cohort": list(opened_secure.params.cohort), "threshold": opened_secure.params.threshold,
                               "neighbours": opened_secure.params.neighbours, "key_deadline": opened_secure.key_deadline}
            console.print(
                f"Round {round_id} is secure: {len(opened_secure.params.cohort)} parties advertise keys until "
                f"{utc_text(opened_secure.key_deadline)}, each masks with {opened_secure.params.neighbours} peers, and "
                f"{opened_secure.params.threshold} shares remove a dropout's masks.", soft_wrap=True, highlight=False,
            )
        if task is not None:
            opened = RoundConfig.from_bytes(document)
            extra = {"task": task.cid, "frozen_cid": task.frozen_cid, "model": opened.model}
            console.print(
                f"Round {round_id} trains task {opened.model} ({task.cid}), as the agreement in force names; "
                f"training: {opened.training.epochs} epochs, batch size {opened.training.batch_size}, lr {opened.training.lr:g}.",
                soft_wrap=True, highlight=False,
            )
        report_tx(
            f"Opened round {round_id} on {cid}, closing at {utc_text(closes)}", tx, json,
            {"round_id": round_id, "base_cid": cid, "deadline": closes, "min_updates": min_updates, "config_cid": config_cid,
             **extra},
        )

    @round_app.command("cancel")
    @handle_errors
    def round_cancel(
        round_id: Annotated[int, typer.Argument(min=1, help="The round to cancel.")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Cancel a round whose deadline passed with fewer updates than its minimum (coordinator or aggregator)."""
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.cancel_round(round_id)
        report_tx(f"Cancelled round {round_id}", tx, json, {"round_id": round_id})

    @round_app.command("abort")
    @handle_errors
    def round_abort(
        round_id: Annotated[int, typer.Argument(min=1, help="The open round to close.")],
        reason: Annotated[str, typer.Option("--reason", help="Why, for the record (kept in the RoundAborted event).")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        max_fee_gwei: MaxFeeOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Close an open round now, whatever its deadline and submissions, with a recorded reason (admin)."""
        _, federation = governed(workdir, rpc, key, max_fee_gwei)
        tx = federation.abort_round(round_id, reason=reason)
        report_tx(f"Aborted round {round_id}", tx, json, {"round_id": round_id, "reason": reason.strip()})

    @round_app.command("status")
    @handle_errors
    def round_status(
        round_id: Annotated[int | None, typer.Argument(min=1, help="Round number (default: the latest).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Show a round: state, deadline, submissions so far, and the global model once finalized."""
        federation = reader(workdir, rpc)
        if round_id is None:
            round_id = federation.round_count()
            if round_id == 0:
                raise InvalidInputError("no round has been opened yet; open one with `fedledger round open`.")
        info = federation.round(round_id)
        submissions = federation.submissions(round_id)
        if json:
            print_json({**jsonable(asdict(info)), "updates": [jsonable(asdict(s)) for s in submissions]})
            return
        console.print(
            f"Round {info.round_id}: [bold]{info.state}[/], base {info.base_cid}, closes at {utc_text(info.deadline)}, "
            f"{info.submissions}/{info.min_updates} updates", soft_wrap=True, highlight=False,
        )
        for s in submissions:
            console.print(f"  {s.participant}  {s.cid}  {s.samples} samples (block {s.block})", soft_wrap=True, highlight=False)
        if info.global_cid:
            console.print(f"  global model {info.global_cid}, receipt {info.receipt_cid}", soft_wrap=True, highlight=False)
