"""``fedledger demo --engine flower``: the demo federation, trained by the example Flower app on
Flower's Deployment Engine.

The same federation as the plain demo (deployed on an anvil kept in the workspace, the same terms,
parties and keys), but its rounds are driven by a SuperLink and one SuperNode per party, each a
process of its own beside its party's long-lived ClientApp process (``node.flower.deployment``),
started by ``flwr run``: the ServerApp opens and finalizes the ledger rounds with the admin key,
each SuperNode records its party's update with that party's key. The report
is read back from the chain and the store afterwards, then the ledger is audited as in the plain demo.

``private`` (``demo --engine flower --private``): as the plain demo's, every round is a DP-SGD round
within the agreement's budget, trained in each party's ClientApp by ``record_private_update``, and
sealed to the aggregator (the admin) and an auditor; their encryption keys are kept in the workspace
(``keys/encryption/``, password ``KEY_PASSWORD``), so that the ServerApp opens the updates with the
aggregator's and ``fedledger audit verify --key auditor`` recomputes the rounds afterwards.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.index.queries import rounds, updates
from ledger.chain.federation import FederationClient, TxResult
from ledger.index.index import LedgerIndex
from ledger.chain.keys import LIGHT_SCRYPT_N, PRIVATE_KEY_ENV
from ledger.fixed_point import micros_to_epsilon
from ledger.sealing.keys import CONFIG_TABLE, create_encryption_keyfile
from ledger.ipfs.store import ContentStore, EmbeddedStore
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.data import Dataset, load_digits_split
from node.demo import KEY_PASSWORD, DemoOptions, DemoReport, RoundReport, audit, found_federation, register_recipients
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment
from node.models import build_model, load_arrays, model_layout
from node.privacy import demo_settings
from node.receipt import Receipt
from node.round_config import DpSettings
from node.training import evaluate

RUN_TIMEOUT_S = 1800


def flower_run_config(options: DemoOptions) -> dict[str, object]:
    """The example app's run config for these demo options."""
    return {
        "num-server-rounds": options.rounds, "model": options.model, "strategy": options.strategy,
        "epochs": options.training.epochs, "batch-size": options.training.batch_size, "lr": options.training.lr,
        "seed": options.seed, "non-iid-alpha": options.non_iid_alpha or 0.0, "min-nodes": options.participants, "min-updates": options.participants,
    }


def private_run_config(dp: DpSettings, *, seal_to: tuple[str, ...], encryption_key: str) -> dict[str, object]:
    """The example app's run config for private rounds with ``dp``, sealed to ``seal_to`` and opened with the
    workspace's encryption key ``encryption_key``."""
    return {"dp-noise": dp.noise_multiplier, "dp-clip": dp.max_grad_norm, "dp-sample-rate": dp.sample_rate,
            "dp-steps": dp.steps, "seal-to": ",".join(seal_to), "fedledger-encryption-key": encryption_key}


def keep_encryption_keys(workspace: Workspace, keys: dict[str, X25519PrivateKey]) -> None:
    """Each key as an encrypted key file ``keys/encryption/NAME.json`` (password KEY_PASSWORD), under ``[encryption_keys]``;
    at the light scrypt cost, as the demo's keystores (their keys come from the public seed)."""
    for name, key in keys.items():
        path = workspace.keys_dir / "encryption" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        create_encryption_keyfile(path, KEY_PASSWORD, key, iterations=LIGHT_SCRYPT_N)
        workspace.set(CONFIG_TABLE, name, str(path.relative_to(workspace.root)))
    workspace.save()


def run_parties(
    workspace: Workspace, run_config: dict[str, object], *, parties: list[LocalAccount], timeout: float = RUN_TIMEOUT_S
) -> str:
    """Run the example app with one SuperNode per party, each holding only its own key (in its
    environment, ``FEDLEDGER_PRIVATE_KEY``), and the ServerApp signing with ``[keys] admin``;
    returns the output of ``flwr run``."""
    env = {"FEDLEDGER_WORKDIR": str(workspace.root), "FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}
    with FlowerDeployment(workspace.root / "flower", env=env) as flower:
        flower.start_superlink()
        for i, party in enumerate(parties):
            flower.start_supernode(f"party{i + 1}", {"partition-id": i, "num-partitions": len(parties)},
                                   env={PRIVATE_KEY_ENV: Web3.to_hex(party.key)})
        return flower.run(EXAMPLE_APP, run_config, timeout=timeout)


def ledger_report(
    report: DemoReport, *, federation: FederationClient, store: ContentStore, model: str, test_set: Dataset
) -> None:
    """Add a row per finalized round to ``report``, read from the chain and the store, with its gas."""
    w3: Web3 = federation.w3

    def gas(tx_hash: str | None) -> int:
        return int(w3.eth.get_transaction_receipt(tx_hash)["gasUsed"]) if tx_hash else 0

    with LedgerIndex.for_federation(":memory:", federation) as index:
        index.sync()
        table = rounds(index)
        recorded = {row["round_id"]: updates(index, round_id=row["round_id"]) for row in table}
    for row in table:
        if row["state"] != "finalized":
            continue
        spent = {"open_round": gas(row["opened_tx"]), "finalize_round": gas(row["closed_tx"])}
        submitted = [gas(update["tx_hash"]) for update in recorded[row["round_id"]]]
        for name, value in spent.items():
            report.gas[name].append(value)
        report.gas["submit_update"].extend(submitted)
        receipt = Receipt.from_bytes(store.get(row["receipt_cid"]))
        network = build_model(model)
        arrays, _ = from_safetensors(store.get(row["global_cid"]), layout=model_layout(model))
        load_arrays(network, arrays)
        scores = evaluate(network, test_set)
        report.rounds.append(RoundReport(
            round_id=row["round_id"], accuracy=float(scores["accuracy"]), loss=float(scores["loss"]),
            accepted=len(receipt.included), rejected=len(receipt.rejected) + len(receipt.unrecorded),
            global_cid=row["global_cid"], gas=sum(spent.values()) + sum(submitted),
        ))


def run_flower_demo(
    options: DemoOptions, *, workspace: Workspace, on_round: Callable[[RoundReport], None] | None = None
) -> DemoReport:
    """The demo on anvil (kept in the workspace) with its rounds run by the example Flower app."""
    from deploy.anvil import AnvilProcess
    from ledger.chain.connection import connect

    options = replace(options, chain="anvil")  # the Flower processes share the chain: it must be a node
    anvil = AnvilProcess(state=workspace.chain_dir / "anvil.json").start()
    try:
        workspace.set("chain", "rpc", anvil.rpc_url)
        workspace.set("chain", "anvil_port", anvil.port)
        workspace.save()
        report = DemoReport(workdir=workspace.root, chain="anvil")
        store = EmbeddedStore(workspace.store_dir)

        def track(name: str, tx: TxResult | None) -> None:
            if tx is not None:
                report.gas[name].append(tx.gas_used)

        w3 = connect(anvil.rpc_url)
        federation, parties = found_federation(options, w3=w3, workspace=workspace, store=store, track=track)
        run_config = flower_run_config(options)
        auditor_key = None
        if options.private:
            dp, training = demo_settings.private_demo_settings(options.rounds)
            aggregator_key, auditor_key, seal_to = register_recipients(options, w3=w3, federation=federation, track=track)
            keep_encryption_keys(workspace, {"aggregator": aggregator_key, "auditor": auditor_key})
            run_config.update(private_run_config(dp, seal_to=seal_to, encryption_key="aggregator"),
                              epochs=training.epochs, **{"batch-size": training.batch_size, "lr": training.lr})
        run_parties(workspace, run_config, parties=parties)
        _, test_set = load_digits_split(parties=options.participants, seed=options.seed, non_iid_alpha=options.non_iid_alpha)
        ledger_report(report, federation=federation, store=store, model=options.model, test_set=test_set)
        for row in report.rounds:
            if on_round is not None:
                on_round(row)
        audit(report, federation=federation, store=store, workspace=workspace, decryption_key=auditor_key)
        if options.private:
            report.privacy = {
                "epsilon_budget": demo_settings.EPSILON_BUDGET, "delta": demo_settings.DELTA,
                "epsilon_spent": {party.address: micros_to_epsilon(federation.privacy(party.address)[0]) for party in parties},
                "sealed": True,
            }
        return report
    finally:
        anvil.stop()
