"""Commands: ``deploy``, ``key``, ``agreement``, ``participant`` and ``round`` — governing a federation.

Each command resolves the workspace, connects to its chain, checks the recorded deployment
(ledger.chain.connection.open_federation) and calls one FederationClient method. Governance transactions are
signed by ``--key`` (a name under ``[keys]`` or a keystore file), else ``[keys] admin``, else
``$FEDLEDGER_PRIVATE_KEY``, else, on a local dev chain, its first funded account.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.ipfs.cid import parse_cid
from ledger.contract_constants import DEFAULT_ADMIN_DELAY, MAX_ROUND_DURATION
from ledger.errors import ChainError, InvalidInputError
from ledger.ipfs.store import open_store
from ledger.utc import utc_text
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)

# The chain and key modules (web3, eth-account) cost a second to import: commands import them when
# they run, so that `--help`, `init`, `ipfs` and `chain` start fast.
if TYPE_CHECKING:
    from web3 import Web3

    from ledger.chain.federation import FederationClient, TxResult
    from node.round_config import DpSettings

KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Signing key: a name under \\[keys] or a keystore file (password from $FEDLEDGER_KEY_PASSWORD or a prompt)."),
]
DEFAULT_JOIN_VALIDITY_S = 3600


def _tx_doc(tx: TxResult) -> dict[str, Any]:
    return {"tx_hash": tx.tx_hash, "block": tx.block, "gas_used": tx.gas_used}


def _jsonable(value: Any) -> Any:
    """Dataclass documents with bytes as 0x-hex, ready for print_json."""
    if isinstance(value, dict):
        return {name: _jsonable(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def _chain(workdir: Path | None, rpc: str | None) -> tuple[Workspace, Web3, str]:
    """The workspace and a connection to its chain, after checking a deployment is recorded."""
    from ledger.chain.connection import connect, recorded_deployment, workspace_rpc

    workspace = Workspace.find(workdir)
    recorded_deployment(workspace)
    url = workspace_rpc(workspace, rpc)
    return workspace, connect(url), url


def _governed(workdir: Path | None, rpc: str | None, key: str | None) -> tuple[Workspace, FederationClient]:
    """The workspace and its Federation with the governance signer attached (checked for gas money)."""
    from ledger.chain.connection import open_federation, require_gas_money, signing_account

    workspace, w3, url = _chain(workdir, rpc)
    federation = open_federation(workspace, w3=w3, rpc=url)
    signer = signing_account(workspace, key, w3=w3, rpc=url)
    require_gas_money(w3, signer.address)
    return workspace, federation.with_account(signer)


def _reader(workdir: Path | None, rpc: str | None) -> FederationClient:
    from ledger.chain.connection import open_federation

    workspace, w3, url = _chain(workdir, rpc)
    return open_federation(workspace, w3=w3, rpc=url)


def _report_tx(what: str, tx: TxResult, json: bool, extra: dict[str, Any] | None = None) -> None:
    if json:
        print_json({**(extra or {}), **_tx_doc(tx)})
    console.print(f"{what} (block {tx.block}, gas {tx.gas_used}, tx {tx.tx_hash}).", soft_wrap=True, highlight=False)


def _round_config(
    config: Path | None, strategy: str | None, model: str, max_samples: int | None = None, seal_to: str | None = None,
    dp: DpSettings | None = None,
) -> bytes:
    """The round configuration document's canonical bytes, from a file or built from a strategy name.

    Either way the model and strategy are checked here, so a typo fails before anything is pinned
    or sent rather than when the parties train or the aggregator aggregates.
    """
    from node.models import MODEL_NAMES
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
    if document.model not in MODEL_NAMES:
        raise InvalidInputError(f"unknown model {document.model!r}; choose one of {', '.join(MODEL_NAMES)}.")
    return document.to_bytes()


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


def _operational_role(role: str) -> str:
    if role not in ("coordinator", "aggregator"):
        raise InvalidInputError(
            f"{role!r} is not a role that is granted; use coordinator or aggregator "
            "(the admin role moves with `fedledger admin transfer`)."
        )
    return role


def register(app: typer.Typer) -> None:
    """Add ``deploy`` and the ``key``, ``agreement``, ``participant`` and ``round`` groups to the app."""
    key_app = typer.Typer(help="Create and inspect encrypted keystore files in the workspace.", no_args_is_help=True)
    agreement_app = typer.Typer(help="Publish and read the federation's agreement (terms) versions.", no_args_is_help=True)
    participant_app = typer.Typer(help="Join the federation and govern its membership.", no_args_is_help=True)
    round_app = typer.Typer(help="Open training rounds, follow them, cancel one that missed its minimum.", no_args_is_help=True)
    admin_app = typer.Typer(help="See the federation admin; hand the role over in two steps, after the delay.", no_args_is_help=True)
    app.add_typer(key_app, name="key")
    app.add_typer(agreement_app, name="agreement")
    app.add_typer(participant_app, name="participant")
    app.add_typer(round_app, name="round")
    app.add_typer(admin_app, name="admin")

    # ------------------------------------------------------------------ deploy
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

    # ------------------------------------------------------------------ keys
    @key_app.command("new")
    @handle_errors
    def key_new(
        name: Annotated[str, typer.Argument(help="Key name; the keystore is written to keys/NAME.json.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Make a new key, encrypted with $FEDLEDGER_KEY_PASSWORD (or a prompted password); print its address."""
        from ledger.chain.keys import new_key, read_password

        workspace = Workspace.find(workdir)
        address = new_key(workspace, name, password=read_password(f"the new key {name!r}", confirm=True))
        if json:
            print_json({"name": name, "address": address})
        console.print(f"Key [bold]{name}[/] is {address}.", highlight=False)

    @key_app.command("show")
    @handle_errors
    def key_show(
        name: Annotated[str, typer.Argument(help="A name under \\[keys] or a keystore file.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print a key's address (read from its keystore without decrypting it)."""
        from ledger.chain.keys import key_path, keystore_address

        workspace = Workspace.find(workdir)
        address = keystore_address(key_path(workspace, name))
        if json:
            print_json({"name": name, "address": address})
        console.print(f"Key [bold]{name}[/] is {address}.", highlight=False)

    @key_app.command("new-encryption")
    @handle_errors
    def key_new_encryption(
        name: Annotated[str, typer.Argument(help="Key name; the key is written to keys/encryption/NAME.json.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Make a new X25519 encryption key (for sealed updates), encrypted with $FEDLEDGER_KEY_PASSWORD or a prompt."""
        from ledger.chain.keys import read_password
        from ledger.sealing.keys import new_encryption_key

        workspace = Workspace.find(workdir)
        public = new_encryption_key(workspace, name, password=read_password(f"the new encryption key {name!r}", confirm=True))
        if json:
            print_json({"name": name, "public_key": "0x" + public.hex()})
        console.print(f"Encryption key [bold]{name}[/] has public key 0x{public.hex()}; register it with "
                      f"`fedledger key publish-encryption --key {name} --from SIGNER`.", highlight=False, soft_wrap=True)

    @key_app.command("publish-encryption")
    @handle_errors
    def key_publish_encryption(
        key: Annotated[str, typer.Option("--key", help="The encryption key: a name under \\[encryption_keys] or its file.")],
        signer: Annotated[str | None, typer.Option(
            "--from", help="The account it is registered for: a name under \\[keys] or a keystore file (default as for governance: \\[keys] admin, $FEDLEDGER_PRIVATE_KEY, a local chain's dev account).",
        )] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Register an encryption key's public half on chain for the --from account (rounds then seal to it)."""
        from ledger.chain.connection import open_federation, require_gas_money, signing_account
        from ledger.sealing.keys import encryption_key_path, read_encryption_public_key

        workspace, w3, url = _chain(workdir, rpc)
        public = read_encryption_public_key(encryption_key_path(workspace, key))  # no password: only the public half
        account = signing_account(workspace, signer, w3=w3, rpc=url)
        require_gas_money(w3, account.address)
        tx = open_federation(workspace, w3=w3, rpc=url).with_account(account).publish_encryption_key(public)
        _report_tx(f"{account.address} registered encryption key 0x{public.hex()}", tx, json,
                   {"account": account.address, "public_key": "0x" + public.hex()})

    @key_app.command("fund")
    @handle_errors
    def key_fund(
        name: Annotated[str, typer.Argument(help="A name under \\[keys], a keystore file, or an address.")],
        amount: Annotated[float, typer.Option(min=0.0, help="Ether to send.")] = 10.0,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Send ether from a local anvil's first dev account to a key (local dev chains only)."""
        from web3 import Web3

        from ledger.chain.connection import connect, dev_account, parse_address, workspace_rpc
        from ledger.chain.keys import key_path, keystore_address

        workspace = Workspace.find(workdir)
        address = parse_address(name) if name.startswith("0x") else keystore_address(key_path(workspace, name))
        url = workspace_rpc(workspace, rpc)
        w3 = connect(url)
        source = dev_account(w3, url)
        if source is None:
            raise ChainError(f"{url} is not a local dev chain with a funded dev account; fund {address} from a wallet instead.")
        tx_hash = w3.eth.send_transaction({"from": source.address, "to": address, "value": Web3.to_wei(amount, "ether")})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        balance = Web3.from_wei(w3.eth.get_balance(address), "ether")
        if json:
            print_json({"address": address, "tx_hash": Web3.to_hex(tx_hash), "block": receipt["blockNumber"], "balance_ether": str(balance)})
        console.print(f"Sent {amount} ether to {address}; it now holds {balance} ether.", highlight=False)

    # ------------------------------------------------------------------ agreements
    @agreement_app.command("publish")
    @handle_errors
    def agreement_publish(
        terms_file: Annotated[Path, typer.Argument(help="The terms document (any file); it is added to the content store.")],
        epsilon_budget: Annotated[float | None, typer.Option(
            "--epsilon-budget", help="Each party's privacy budget ε over all private rounds (> 0, at most 6 decimals); needs --delta.",
        )] = None,
        delta: Annotated[float | None, typer.Option(
            "--delta", help="The δ every party's ε is stated at (0 < δ < 1, e.g. 1e-5); needs --epsilon-budget.",
        )] = None,
        rpc: RpcOption = None,
        key: KeyOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Add the terms document to the content store and publish its CID as the next agreement version.

        With --epsilon-budget and --delta the version carries a privacy budget: a party that accepts it
        may declare a cumulative ε of at most the budget over the private rounds it takes part in.
        """
        from ledger.fixed_point import budget_to_micros, delta_to_units

        if (epsilon_budget is None) != (delta is None):
            raise InvalidInputError("a privacy budget needs both --epsilon-budget E and --delta D; give both, or neither.")
        if epsilon_budget is not None and delta is not None:  # checked before anything is pinned or sent
            budget_to_micros(epsilon_budget)
            delta_to_units(delta)
        if not terms_file.is_file():
            raise InvalidInputError(f"no terms file at {terms_file}; give the path of the agreement document.")
        workspace, federation = _governed(workdir, rpc, key)
        cid = open_store(workspace).add_file(terms_file, pin=True)
        version, tx = federation.publish_agreement(cid, epsilon_budget=epsilon_budget, delta=delta)
        budget = "" if epsilon_budget is None else f", privacy budget ε = {epsilon_budget:g} at δ = {delta:g}"
        _report_tx(f"Published agreement version {version}, terms {cid}{budget}", tx, json,
                   {"version": version, "terms_cid": cid, "epsilon_budget": epsilon_budget, "delta": delta})

    @agreement_app.command("show")
    @handle_errors
    def agreement_show(
        version: Annotated[int | None, typer.Argument(min=1, help="Agreement version (default: the current one).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print an agreement version and the CID of its terms."""
        info = _reader(workdir, rpc).agreement(version)
        if json:
            print_json(_jsonable({**asdict(info), "epsilon_budget": info.epsilon_budget, "delta": info.delta}))
        budget = "no privacy budget" if info.epsilon_budget is None else f"privacy budget ε = {info.epsilon_budget:g} at δ = {info.delta:g}"
        console.print(f"Agreement version {info.version}: terms {info.terms_cid}, {budget} (block {info.block}).",
                      soft_wrap=True, highlight=False)

    # ------------------------------------------------------------------ membership
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

        workspace, w3, url = _chain(workdir, rpc)
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
        _report_tx(f"{party.address} accepted agreement version {version} ({standing})", tx, json, {**document, "status": status})

    @participant_app.command("relay")
    @handle_errors
    def participant_relay(
        signature_file: Annotated[Path, typer.Argument(help="The JSON printed by `participant join --relay`.")],
        rpc: RpcOption = None,
        key: KeyOption = None,
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
        _, federation = _governed(workdir, rpc, key)
        tx = federation.join(participant, version=version, deadline=deadline, signature=signature)
        _report_tx(f"Relayed the join of {participant} (agreement version {version})", tx, json, {"participant": participant})

    def _governance_command(action: str, past: str) -> None:
        @participant_app.command(action)
        @handle_errors
        def command(
            address: Annotated[str, typer.Argument(help="The participant's address (0x…).")],
            rpc: RpcOption = None,
            key: KeyOption = None,
            workdir: WorkdirOption = None,
            json: JsonOption = False,
        ) -> None:
            from ledger.chain.connection import parse_address

            participant = parse_address(address)
            _, federation = _governed(workdir, rpc, key)
            tx = getattr(federation, action)(participant)
            _report_tx(f"{participant} {past}", tx, json, {"participant": participant, "action": action})

        command.__doc__ = f"Governance: {action} a participant (signed by --key, default the admin key)."

    for action, past in (("approve", "admitted"), ("suspend", "suspended"), ("reinstate", "reinstated"), ("revoke", "revoked for good")):
        _governance_command(action, past)

    @participant_app.command("list")
    @handle_errors
    def participant_list(rpc: RpcOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """List every address that ever joined, with its status and accepted agreement version."""
        participants = _reader(workdir, rpc).participants()
        if json:
            print_json([_jsonable(asdict(p)) for p in participants])
            return
        if not participants:
            console.print("Nobody has joined yet.")
        for p in participants:
            console.print(f"{p.address}  {p.status:<9}  accepted version {p.accepted_version}", highlight=False)

    # ------------------------------------------------------------------ rounds
    @round_app.command("open")
    @handle_errors
    def round_open(
        base_cid: Annotated[str, typer.Option("--base-cid", help="CID of the model the round starts from.")],
        deadline: Annotated[int, typer.Option(
            "--deadline", min=1, max=MAX_ROUND_DURATION,
            help="Seconds from now (chain time) until submissions close; at most 30 days (2592000).",
        )],
        min_updates: Annotated[int, typer.Option("--min-updates", min=1, help="Updates needed before the round can be finalized.")],
        config: Annotated[Path | None, typer.Option("--config", help="Round configuration JSON file.")] = None,
        strategy: Annotated[str | None, typer.Option("--strategy", help="Build the configuration from a strategy name (default fedavg).")] = None,
        model: Annotated[str, typer.Option("--model", help="Model name for a configuration built from --strategy.")] = "mlp",
        max_samples: Annotated[int | None, typer.Option("--max-samples", help="The most samples one party's update may count for in the weights (default 10000; 1 weighs every update equally); overrides the config file's.")] = None,
        seal_to: Annotated[str | None, typer.Option("--seal-to", help="Seal the round's updates to these addresses (ADDR[,ADDR...]: the aggregator, any auditors), each with an encryption key registered on chain; overrides the config file's.")] = None,
        dp_noise: Annotated[float | None, typer.Option("--dp-noise", help="Make the round private (DP-SGD) with this noise multiplier σ; overrides the config file's dp section.")] = None,
        dp_target_epsilon: Annotated[float | None, typer.Option("--dp-target-epsilon", help="Make the round private with the least noise that keeps this one round within ε (at the agreement's δ).")] = None,
        dp_clip: Annotated[float | None, typer.Option("--dp-clip", help="Per-sample gradient clipping norm of a private round (default 1.0).")] = None,
        dp_sample_rate: Annotated[float | None, typer.Option("--dp-sample-rate", help="Poisson sampling rate of a private round's batches (default 0.2).")] = None,
        dp_steps: Annotated[int | None, typer.Option("--dp-steps", help="DP-SGD steps each party takes in a private round (default 20).")] = None,
        rpc: RpcOption = None,
        key: KeyOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Open a round: pins the round configuration and records its sha256 with the base model CID."""
        from ledger.chain.connection import chain_now
        from node.round_config import RoundConfig

        cid = parse_cid(base_cid)
        _round_config(config, strategy, model, max_samples, seal_to)  # a bad config is refused before the chain is asked
        workspace, federation = _governed(workdir, rpc, key)
        dp = _dp_settings(federation, dp_noise, dp_target_epsilon, dp_clip, dp_sample_rate, dp_steps)
        document = _round_config(config, strategy, model, max_samples, seal_to, dp)
        recipients = RoundConfig.from_bytes(document).seal_to
        if recipients is not None:  # refused now, before anything is pinned, rather than when parties seal
            from ledger.sealing.recipients import registered_keys

            registered_keys(federation, recipients)
        store = open_store(workspace)
        config_cid = store.add_bytes(document, pin=True)
        if not store.has(cid):
            console.print(f"[yellow]note:[/] the base model {cid} is not in this workspace's store; parties must be able to fetch it.", soft_wrap=True)
        closes = chain_now(federation.w3) + deadline
        round_id, tx = federation.open_round(
            base_cid=cid, deadline=closes, min_updates=min_updates, config_hash=hashlib.sha256(document).digest()
        )
        _report_tx(
            f"Opened round {round_id} on {cid}, closing at {utc_text(closes)}", tx, json,
            {"round_id": round_id, "base_cid": cid, "deadline": closes, "min_updates": min_updates, "config_cid": config_cid},
        )

    @round_app.command("cancel")
    @handle_errors
    def round_cancel(
        round_id: Annotated[int, typer.Argument(min=1, help="The round to cancel.")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Cancel a round whose deadline passed with fewer updates than its minimum (coordinator or aggregator)."""
        _, federation = _governed(workdir, rpc, key)
        tx = federation.cancel_round(round_id)
        _report_tx(f"Cancelled round {round_id}", tx, json, {"round_id": round_id})

    @round_app.command("abort")
    @handle_errors
    def round_abort(
        round_id: Annotated[int, typer.Argument(min=1, help="The open round to close.")],
        reason: Annotated[str, typer.Option("--reason", help="Why, for the record (kept in the RoundAborted event).")],
        rpc: RpcOption = None,
        key: KeyOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Close an open round now, whatever its deadline and submissions, with a recorded reason (admin)."""
        _, federation = _governed(workdir, rpc, key)
        tx = federation.abort_round(round_id, reason=reason)
        _report_tx(f"Aborted round {round_id}", tx, json, {"round_id": round_id, "reason": reason.strip()})

    # ------------------------------------------------------------------ admin
    @admin_app.command("show")
    @handle_errors
    def admin_show(rpc: RpcOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """The admin, any proposed successor and when it may accept, and the transfer delay."""
        info = _reader(workdir, rpc).admin()
        if json:
            print_json(_jsonable(asdict(info)))
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
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Propose a new admin (the current admin); it accepts with `fedledger admin accept` after the delay."""
        _, federation = _governed(workdir, rpc, key)
        tx = federation.begin_admin_transfer(new_admin)
        info = federation.admin()
        _report_tx(f"Proposed {info.pending} as admin, who may accept after {utc_text(info.accept_after)}", tx, json,
                   {"pending": info.pending, "accept_after": info.accept_after})

    @admin_app.command("accept")
    @handle_errors
    def admin_accept(rpc: RpcOption = None, key: KeyOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Take the admin role as the proposed admin, once the delay has passed."""
        _, federation = _governed(workdir, rpc, key)
        tx = federation.accept_admin_transfer()
        _report_tx(f"{federation.sender} is now the admin", tx, json, {"admin": federation.sender})

    def _role_command(action: str, summary: str, done: str) -> None:
        @admin_app.command(action, help=f"{summary} (the admin).")
        @handle_errors
        def command(
            role: Annotated[str, typer.Argument(help="coordinator (opens rounds) or aggregator (finalizes them).")],
            address: Annotated[str, typer.Argument(help="The account.")],
            rpc: RpcOption = None, key: KeyOption = None, workdir: WorkdirOption = None, json: JsonOption = False,
        ) -> None:
            _, federation = _governed(workdir, rpc, key)
            tx = getattr(federation, f"{action}_role")(_operational_role(role), address)
            _report_tx(done.format(role=role, address=address), tx, json, {"role": role, "account": address})

    _role_command("grant", "Give an account the coordinator or aggregator role", "Granted the {role} role to {address}")
    _role_command("revoke", "Take the coordinator or aggregator role from an account", "Revoked the {role} role of {address}")

    @admin_app.command("cancel")
    @handle_errors
    def admin_cancel(rpc: RpcOption = None, key: KeyOption = None, workdir: WorkdirOption = None, json: JsonOption = False) -> None:
        """Withdraw a pending admin proposal (the current admin)."""
        _, federation = _governed(workdir, rpc, key)
        tx = federation.cancel_admin_transfer()
        _report_tx("Withdrew the admin proposal", tx, json)

    @round_app.command("status")
    @handle_errors
    def round_status(
        round_id: Annotated[int | None, typer.Argument(min=1, help="Round number (default: the latest).")] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Show a round: state, deadline, submissions so far, and the global model once finalized."""
        federation = _reader(workdir, rpc)
        if round_id is None:
            round_id = federation.round_count()
            if round_id == 0:
                raise InvalidInputError("no round has been opened yet; open one with `fedledger round open`.")
        info = federation.round(round_id)
        submissions = federation.submissions(round_id)
        if json:
            print_json({**_jsonable(asdict(info)), "updates": [_jsonable(asdict(s)) for s in submissions]})
            return
        console.print(
            f"Round {info.round_id}: [bold]{info.state}[/], base {info.base_cid}, closes at {utc_text(info.deadline)}, "
            f"{info.submissions}/{info.min_updates} updates", soft_wrap=True, highlight=False,
        )
        for s in submissions:
            console.print(f"  {s.participant}  {s.cid}  {s.samples} samples (block {s.block})", soft_wrap=True, highlight=False)
        if info.global_cid:
            console.print(f"  global model {info.global_cid}, receipt {info.receipt_cid}", soft_wrap=True, highlight=False)
