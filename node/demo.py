"""``fedledger demo``: the whole loop in one command, on the embedded defaults or a real anvil.

Deploys the contracts, publishes an agreement, has N parties sign it and be admitted, then runs R
rounds (each party trains locally and submits; the aggregator verifies, aggregates and finalizes)
and ends by auditing everything it built. Parties train one after another in this process; the
integration tests run the same steps as separate processes through the CLI.

``private``: the agreement carries a privacy budget (ε = 8 at δ = 1e-5, node.privacy.demo_settings),
every round is a DP-SGD round whose noise keeps all the demo's rounds within it, and updates are
sealed to the aggregator (the admin) and an auditor, each with an X25519 key registered on chain
(derived from the seed, like the demo's signing keys); the audit opens the rounds with the
auditor's key and recomputes every party's ε.

``secure``: every round is a secure one (``node.secure``): each party registers an encryption key
(derived from the seed), advertises its round keys, then submits its update masked so that only the
sum is readable; the aggregator and the audit recompute that sum with no key. With ``private`` too,
the rounds are DP-SGD rounds under the budget, not sealed (the masks already hide every update).
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain.connection import chain_now
from ledger.chain.federation import FederationClient, TxResult
from ledger.fixed_point import micros_to_epsilon
from ledger.sealing.keys import public_key_bytes
from ledger.ipfs.store import ContentStore, EmbeddedStore
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.aggregator import aggregate_round
from node.data import Dataset, load_digits_split
from node.genesis import genesis_model_bytes
from node.journal import Journal
from node.models import build_model, load_arrays, model_layout
from node.participant import ParticipantOutcome, train_and_submit
from node.privacy import demo_settings
from node.round_config import RoundConfig, TrainingSettings, config_cid
from node.secure.opening import secure_round
from node.secure.party import advertise
from node.strategies import make_strategy
from node.training import evaluate

TERMS = b"""fedledger demo federation - terms of participation (v1)
1. Each party trains only on data it holds and never shares raw data.
2. Each party submits at most one model update per round, signed by its own key.
3. Updates, receipts and models are recorded on the ledger and may be audited by anyone.
"""
FUNDING_WEI = Web3.to_wei(10, "ether")
ROUND_SECONDS = 3600
KEY_PASSWORD = "fedledger-demo"
"""The password of the keystores a demo on anvil leaves in its workspace (demo keys, derived from the seed)."""


@dataclass(frozen=True)
class DemoOptions:
    participants: int = 4
    rounds: int = 5
    chain: str = "memory"  # or "anvil"
    workdir: Path | None = None
    strategy: str = "fedavg"
    non_iid_alpha: float | None = None
    model: str = "mlp"
    seed: int = 0
    training: TrainingSettings = field(default_factory=TrainingSettings)
    private: bool = False
    secure: bool = False


@dataclass
class RoundReport:
    round_id: int
    accuracy: float
    loss: float
    accepted: int
    rejected: int
    global_cid: str
    gas: int
    fed_eval_accuracy: float | None = None  # the round's base model, as the parties evaluated it on their own data


@dataclass
class DemoReport:
    workdir: Path
    chain: str
    rounds: list[RoundReport] = field(default_factory=list)
    gas: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    audit_ok: bool = False
    audit_checks: int = 0
    audit_failures: list[str] = field(default_factory=list)
    privacy: dict[str, Any] | None = None  # --private: budget, δ, each party's declared ε, whether sealed
    secure: bool = False  # --secure: every round was securely aggregated

    @property
    def final_accuracy(self) -> float:
        return self.rounds[-1].accuracy if self.rounds else 0.0

    def average_gas(self) -> dict[str, int]:
        return {name: round(sum(values) / len(values)) for name, values in sorted(self.gas.items()) if values}

    def to_json(self) -> dict[str, Any]:
        return {
            "workdir": str(self.workdir),
            "chain": self.chain,
            "rounds": [vars(r) for r in self.rounds],
            "final_accuracy": self.final_accuracy,
            "audit_ok": self.audit_ok,
            "audit_checks": self.audit_checks,
            "audit_failures": self.audit_failures,
            "gas": self.average_gas(),
            **({"privacy": self.privacy} if self.privacy is not None else {}),
            **({"secure": True} if self.secure else {}),
        }


def party_account(seed: int, index: int) -> LocalAccount:
    """A demo party's key, derived from the seed so a rerun gives the same addresses."""
    return Account.from_key(hashlib.sha256(f"fedledger-demo:{seed}:{index}".encode()).digest())


def keep_keys(workspace: Workspace, accounts: dict[str, LocalAccount]) -> None:
    """Each account as an encrypted keystore ``keys/NAME.json`` (password KEY_PASSWORD), recorded under ``[keys]``:
    ``admin`` then signs governance by default, as for any workspace. The keys come from a public seed and the
    password is published, so the files use the light scrypt cost: the default would protect nothing and cost
    about a second in every process that loads one."""
    from ledger.chain.keys import LIGHT_SCRYPT_N, create_keystore

    for name, account in accounts.items():
        path = workspace.keys_dir / f"{name}.json"
        create_keystore(path, KEY_PASSWORD, account.key, iterations=LIGHT_SCRYPT_N)
        workspace.set("keys", name, str(path.relative_to(workspace.root)))
    workspace.save()


def demo_encryption_key(seed: int, name: str) -> X25519PrivateKey:
    """A demo recipient's X25519 key, derived from the seed like the demo's signing keys."""
    return X25519PrivateKey.from_private_bytes(hashlib.sha256(f"fedledger-demo-encryption:{seed}:{name}".encode()).digest())


def fund(w3: Web3, accounts: list[LocalAccount]) -> None:
    """Give each demo key gas money from the chain's first unlocked development account."""
    faucet = w3.eth.accounts[0]
    for account in accounts:
        tx = w3.eth.send_transaction({"from": faucet, "to": account.address, "value": FUNDING_WEI})
        w3.eth.wait_for_transaction_receipt(tx)


def found_federation(
    options: DemoOptions,
    *,
    w3: Web3,
    workspace: Workspace,
    store: ContentStore,
    track: Callable[[str, TxResult | None], object],
) -> tuple[FederationClient, list[LocalAccount]]:
    """Deploy, record the deployment in ``workspace``, publish the demo terms and admit the parties.

    Returns the admin's client and the parties' keys; ``track`` sees every transaction by name.
    """
    admin = party_account(options.seed, 0)
    parties = [party_account(options.seed, i + 1) for i in range(options.participants)]
    fund(w3, [admin, *parties])

    federation, deploy_tx = FederationClient.deploy(w3, account=admin)
    track("deploy", deploy_tx)
    workspace.set("deployment", "address", federation.address)
    workspace.set("deployment", "chain_id", federation.chain_id)
    workspace.set("deployment", "block", deploy_tx.block)
    workspace.save()
    if options.chain == "anvil":  # a chain that outlives the demo: keep its keys, so the federation can go on
        keep_keys(workspace, {"admin": admin, **{f"party{i + 1}": party for i, party in enumerate(parties)}})

    budget = {"epsilon_budget": demo_settings.EPSILON_BUDGET, "delta": demo_settings.DELTA} if options.private else {}
    version, tx = federation.publish_agreement(store.add_bytes(TERMS, pin=True), **budget)
    track("publish_agreement", tx)
    deadline = chain_now(w3) + ROUND_SECONDS
    for party in parties:
        signature = federation.sign_join(party, version=version, deadline=deadline)
        track("join", federation.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature))
        track("approve", federation.approve(party.address))
    return federation, parties


def run_demo(
    options: DemoOptions,
    *,
    w3: Web3,
    workspace: Workspace,
    on_round: Callable[[RoundReport], None] | None = None,
    progress: bool = False,
) -> DemoReport:
    """Run the federation end to end on ``w3`` in ``workspace`` and audit it."""
    report = DemoReport(workdir=workspace.root, chain=options.chain)
    store = EmbeddedStore(workspace.store_dir)

    def track(name: str, tx: TxResult | None) -> TxResult | None:
        if tx is not None:
            report.gas[name].append(tx.gas_used)
        return tx

    federation, parties = found_federation(options, w3=w3, workspace=workspace, store=store, track=track)

    shards, test_set = load_digits_split(parties=options.participants, seed=options.seed, non_iid_alpha=options.non_iid_alpha)
    validations = split_validation(test_set, options.participants)
    strategy = make_strategy(options.strategy)
    config = RoundConfig(model=options.model, strategy=strategy.params(), training=options.training)
    aggregator_key = auditor_key = None
    if options.private:
        dp, training = demo_settings.private_demo_settings(options.rounds)
        config = replace(config, training=training, dp=dp)
        if not options.secure:
            aggregator_key, auditor_key, seal_to = register_recipients(options, w3=w3, federation=federation, track=track)
            config = replace(config, seal_to=seal_to)
    party_keys: dict[str, X25519PrivateKey] = {}
    if options.secure:
        party_keys = register_party_keys(options, parties, federation=federation, track=track)
    assert store.add_bytes(config.to_bytes(), pin=True) == config_cid(config.config_hash)
    base_cid = store.add_bytes(genesis_model_bytes(options.model, seed=options.seed), pin=True)

    for _ in range(options.rounds):
        opens_at = chain_now(w3)
        deadline = opens_at + ROUND_SECONDS
        opened = config
        if options.secure:  # the cohort and the key deadline are the round's own
            opened = replace(config, secure=secure_round(federation, opens_at=opens_at, deadline=deadline,
                                                         max_samples=config.max_samples, cohort=list(party_keys)))
            store.add_bytes(opened.to_bytes(), pin=True)
        round_id, tx = federation.open_round(
            base_cid=base_cid, deadline=deadline, min_updates=options.participants, config_hash=opened.config_hash
        )
        track("open_round", tx)
        round_gas = tx.gas_used
        if opened.secure is not None:  # every party advertises before any masks: nobody waits for the key deadline
            info = federation.round(round_id)
            for party in parties:
                journal = Journal(workspace.journal_dir, role="participant", actor=party.address, round_id=round_id)
                advertise(federation.with_account(party), store, journal, round_id=round_id, settings=opened.secure,
                          opened_block=info.opened_block)
        outcomes = []
        for party, shard, validation in zip(parties, shards, validations):
            outcome = train_and_submit(
                federation=federation.with_account(party), store=store, round_id=round_id, data=shard,
                journal_dir=workspace.journal_dir, progress=progress, validation=validation,
            )
            outcomes.append(outcome)
            track("submit_update", outcome.tx)
            round_gas += outcome.tx.gas_used if outcome.tx else 0
        aggregated = aggregate_round(
            federation=federation, store=store, round_id=round_id, journal_dir=workspace.journal_dir,
            opener_for=None if aggregator_key is None else lambda round_seal: round_seal.opener(aggregator_key),
        )
        track("finalize_round", aggregated.tx)
        round_gas += aggregated.tx.gas_used if aggregated.tx else 0

        model = build_model(options.model)
        arrays, _ = from_safetensors(store.get(aggregated.global_cid), layout=model_layout(options.model))
        load_arrays(model, arrays)
        scores = evaluate(model, test_set)
        row = RoundReport(
            round_id=round_id, accuracy=float(scores["accuracy"]), loss=float(scores["loss"]),
            accepted=len(aggregated.receipt.included), rejected=len(aggregated.receipt.rejected),
            global_cid=aggregated.global_cid, gas=round_gas, fed_eval_accuracy=federated_accuracy(outcomes),
        )
        report.rounds.append(row)
        if on_round is not None:
            on_round(row)
        base_cid = aggregated.global_cid

    audit(report, federation=federation, store=store, workspace=workspace, decryption_key=auditor_key)
    if options.private:
        report.privacy = {
            "epsilon_budget": demo_settings.EPSILON_BUDGET, "delta": demo_settings.DELTA,
            "epsilon_spent": {party.address: micros_to_epsilon(federation.privacy(party.address)[0]) for party in parties},
            "sealed": config.seal_to is not None,
        }
    report.secure = options.secure
    return report


def register_party_keys(
    options: DemoOptions, parties: list[LocalAccount], *, federation: FederationClient,
    track: Callable[[str, TxResult | None], object],
) -> dict[str, X25519PrivateKey]:
    """Each party's encryption key (derived from the seed), registered on chain: a secure round's cohort."""
    keys = {party.address: demo_encryption_key(options.seed, f"party-{index}") for index, party in enumerate(parties)}
    for party in parties:
        track("publish_encryption_key", federation.with_account(party).publish_encryption_key(public_key_bytes(keys[party.address])))
    return keys


def split_validation(test_set: Dataset, parties: int) -> list[Dataset]:
    """Each party's own validation data: its share of the held-out digits. Their sample-weighted federated
    evaluation of a model is then exactly that model's accuracy on the whole held-out set, which the demo
    also measures centrally: the two columns of its table show that no central test set is needed."""
    return [Dataset(x=test_set.x[part], y=test_set.y[part]) for part in np.array_split(np.arange(len(test_set)), parties)]


def federated_accuracy(outcomes: list[ParticipantOutcome]) -> float | None:
    """The parties' ``base_accuracy`` weighted by their ``val_samples`` (None in a private round: no figures)."""
    weighed = [(o.metrics["base_accuracy"], o.metrics["val_samples"]) for o in outcomes
               if "base_accuracy" in o.metrics and o.metrics.get("val_samples", 0) > 0]
    total = sum(samples for _, samples in weighed)
    return sum(accuracy * samples for accuracy, samples in weighed) / total if total else None


def register_recipients(
    options: DemoOptions, *, w3: Web3, federation: FederationClient, track: Callable[[str, TxResult | None], object]
) -> tuple[X25519PrivateKey, X25519PrivateKey, tuple[str, ...]]:
    """The aggregator's (the admin's) and an auditor's encryption keys, registered on chain; the round's seal_to."""
    auditor = party_account(options.seed, options.participants + 1)
    fund(w3, [auditor])
    keys = {"aggregator": demo_encryption_key(options.seed, "aggregator"), "auditor": demo_encryption_key(options.seed, "auditor")}
    for name, client in (("aggregator", federation), ("auditor", federation.with_account(auditor))):
        track("publish_encryption_key", client.publish_encryption_key(public_key_bytes(keys[name])))
    return keys["aggregator"], keys["auditor"], (party_account(options.seed, 0).address, auditor.address)


def audit(
    report: DemoReport, *, federation: FederationClient, store: ContentStore, workspace: Workspace,
    decryption_key: X25519PrivateKey | None = None,
) -> None:
    """Index the ledger the demo built and re-verify every claim in it, as an auditor would."""
    from ledger.index.index import LedgerIndex
    from node.audit.verify import verify_ledger

    index = LedgerIndex.for_federation(workspace.index_path, federation)
    try:
        verdict = verify_ledger(federation, store, index, progress=False, decryption_key=decryption_key)
    finally:
        index.close()
    report.audit_ok = verdict.ok
    report.audit_checks = len(verdict.checks)
    report.audit_failures = [f"round {c.round_id}: {c.check}: {c.what}" for c in verdict.failures]


def default_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="fedledger-demo-"))


def run_demo_on_chain(
    options: DemoOptions,
    *,
    workspace: Workspace,
    on_round: Callable[[RoundReport], None] | None = None,
) -> DemoReport:
    """Run the demo on the chain ``options.chain`` names: the in-process chain, or an anvil whose
    state is kept in the workspace (so `fedledger chain up` reopens it afterwards)."""
    from deploy.anvil import AnvilProcess
    from ledger.chain.connection import connect

    if options.chain == "memory":
        return run_demo(options, w3=connect("memory"), workspace=workspace, on_round=on_round)
    anvil = AnvilProcess(state=workspace.chain_dir / "anvil.json").start()
    try:
        workspace.set("chain", "rpc", anvil.rpc_url)
        workspace.set("chain", "anvil_port", anvil.port)
        workspace.save()
        return run_demo(options, w3=connect(anvil.rpc_url), workspace=workspace, on_round=on_round)
    finally:
        anvil.stop()
