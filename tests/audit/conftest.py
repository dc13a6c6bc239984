"""Audit fixtures: real ledgers built by the demo loop, and ways to tamper with copies of them.

- ``anvil_ledger``: one honest ledger (3 parties, 2 rounds, 1 epoch) on the session anvil; tests
  that change it take ``chain`` (snapshot/revert) and work on ``ledger_copy`` (their own copy of
  the workspace, store included, without an index).
- ``memory_ledger``: the same on the in-process chain, for library-level tests.
- ``fedledger``: the installed console script in a subprocess; ``cli``: the same app in-process
  (typer's runner: no interpreter start-up, same exit codes and streams).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain.federation import FederationClient
from ledger.chain.in_process_chain import in_process_web3
from ledger.ipfs.store import EmbeddedStore
from ledger.weights import from_safetensors, max_blob_bytes, to_safetensors
from ledger.workspace import Workspace
from node.aggregator import aggregate_updates, global_model_bytes
from node.demo import DemoOptions, party_account, run_demo
from node.models import model_layout
from node.update_metrics import metrics_hash
from node.receipt import Receipt
from node.round_config import RoundConfig, TrainingSettings, config_cid
from node.strategies import strategy_from_params

OPTIONS = DemoOptions(participants=3, rounds=2, training=TrainingSettings(epochs=1, batch_size=64, lr=0.05))


@dataclass(frozen=True)
class Ledger:
    """A workspace holding a demo ledger, and the keys that made it."""

    root: Path
    w3: Web3
    admin: LocalAccount
    parties: list[LocalAccount]

    @property
    def workspace(self) -> Workspace:
        return Workspace.load(self.root)

    @property
    def store(self) -> EmbeddedStore:
        return EmbeddedStore(self.workspace.store_dir)

    def federation(self, account: LocalAccount | None = None) -> FederationClient:
        deployment = self.workspace.config["deployment"]
        return FederationClient(self.w3, deployment["address"], account=account or self.admin,
                                from_block=int(deployment["block"]))


def build_ledger(root: Path, w3: Web3, rpc: str) -> Ledger:
    workspace = Workspace.init(root, rpc=rpc)
    run_demo(OPTIONS, w3=w3, workspace=workspace)
    admin = party_account(OPTIONS.seed, 0)
    parties = [party_account(OPTIONS.seed, i + 1) for i in range(OPTIONS.participants)]
    return Ledger(root, w3, admin, parties)


@pytest.fixture(scope="session")
def anvil_ledger(anvil: Any, anvil_w3: Web3, tmp_path_factory: pytest.TempPathFactory) -> Ledger:
    return build_ledger(tmp_path_factory.mktemp("audit") / "honest", anvil_w3, anvil.rpc_url)


@pytest.fixture
def ledger_copy(anvil_ledger: Ledger, chain: Any, tmp_path: Path) -> Ledger:
    """A private copy of the honest anvil ledger's workspace; chain changes are reverted after the test."""
    root = tmp_path / "ws"
    shutil.copytree(anvil_ledger.root, root, ignore=shutil.ignore_patterns("audit.sqlite"))
    return replace(anvil_ledger, root=root)


@pytest.fixture(scope="session")
def memory_ledger_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[], Ledger]:
    def build() -> Ledger:
        w3 = in_process_web3()
        return build_ledger(tmp_path_factory.mktemp("memory") / "ws", w3, "memory")

    return build


# ---------------------------------------------------------------- tampering


def open_extra_round(ledger: Ledger, *, oversized: int | None = None) -> tuple[int, list[Any]]:
    """Open a third round on the last global model and have every party submit a (synthetic) update.

    ``oversized``: the party (1-based) whose blob is instead one byte more than any update of the model.
    """
    admin = ledger.federation()
    last = admin.round(admin.round_count())
    config = RoundConfig.from_bytes(ledger.store.get(config_cid(last.config_hash)))
    arrays, _ = from_safetensors(ledger.store.get(last.global_cid), layout=model_layout(config.model))
    deadline = int(ledger.w3.eth.get_block("latest")["timestamp"]) + 3600
    round_id, _ = admin.open_round(base_cid=last.global_cid, deadline=deadline, min_updates=len(ledger.parties),
                                   config_hash=last.config_hash)
    for number, party in enumerate(ledger.parties, start=1):
        metrics = {"accuracy": 0.5 + number / 10, "loss": 1.0 / number}
        update = {name: (value + 0.01 * number).astype(value.dtype) for name, value in arrays.items()}
        blob = to_safetensors(update, metadata={"model": config.model, "participant": party.address, "round": round_id,
                                                "base_cid": last.global_cid, "samples": 100 * number, "metrics": metrics})
        if number == oversized:
            blob = bytes(max_blob_bytes(model_layout(config.model)) + 1)
        cid = ledger.store.add_bytes(blob)
        ledger.federation(party).submit_update(round_id, cid=cid, samples=100 * number, metrics_hash=metrics_hash(metrics))
    return round_id, admin.submissions(round_id)


def honest_aggregate(ledger: Ledger, round_id: int) -> tuple[bytes, Receipt, RoundConfig]:
    admin = ledger.federation()
    info = admin.round(round_id)
    config = RoundConfig.from_bytes(ledger.store.get(config_cid(info.config_hash)))
    blob, receipt = aggregate_updates(store=ledger.store, info=info, config=config,
                                      strategy=strategy_from_params(config.strategy),
                                      submissions=admin.submissions(round_id))
    return blob, receipt, config


def finalize(ledger: Ledger, round_id: int, blob: bytes, receipt: Receipt) -> tuple[str, str]:
    """Pin ``blob`` and ``receipt`` (its global CID filled in) and finalize the round with them."""
    global_cid = ledger.store.add_bytes(blob)
    receipt = replace(receipt, global_cid=global_cid)
    receipt_cid = ledger.store.add_bytes(receipt.to_bytes())
    ledger.federation().finalize_round(round_id, global_cid=global_cid, receipt_cid=receipt_cid)
    return global_cid, receipt_cid


def not_the_aggregate(blob: bytes, config: RoundConfig, round_id: int, base_cid: str) -> bytes:
    arrays, _ = from_safetensors(blob, layout=model_layout(config.model))
    skewed = {name: (value * np.float32(1.5)).astype(value.dtype) for name, value in arrays.items()}
    return global_model_bytes(skewed, model=config.model, round_id=round_id, base_cid=base_cid)


def flip_byte(store_root: Path, cid: str) -> Path:
    """Flip one byte in the middle of the embedded store's block file of ``cid``."""
    (path,) = list((store_root / "blocks").glob(f"*/{cid}"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(data))
    return path
