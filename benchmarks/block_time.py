"""A round's time on a chain that mines every few seconds, with 0 and with N confirmations.

    .venv/bin/python -m benchmarks.block_time [--block-time 2] [--confirmations 0 3] [--parties 2] [--rounds 2]

One anvil started with ``--block-time`` (a block every that many seconds, as a real network mines),
one federation (the demo's: deployed, terms published, the parties admitted). Then, for each
confirmations setting in turn, ``--rounds`` rounds of the digits MLP, the steps of
``fedledger demo`` called in this process: open the round, each party trains and submits, the
aggregator finalizes. Every transaction goes through ``ledger.chain.transactions`` with
``TxPolicy(confirmations=N)``: a command returns once its receipt is N blocks deep. Reported: the
seconds per round, the transactions per round, and the floor those transactions impose (each waits
for the next block, then N more: (1 + N) × block time per transaction, sent one after another).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from deploy.anvil import AnvilProcess, free_port
from ledger.chain.connection import chain_now, connect
from ledger.chain.federation import FederationClient
from ledger.chain.transactions import TxPolicy
from ledger.ipfs.store import EmbeddedStore
from ledger.workspace import Workspace
from node.aggregator import aggregate_round
from node.data import load_digits_split
from node.demo import DemoOptions, found_federation
from node.genesis import genesis_model_bytes
from node.participant import train_and_submit
from node.round_config import RoundConfig, TrainingSettings


def run(block_time: int, confirmations: list[int], parties: int, rounds: int) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="fedledger-block-time-") as scratch:
        root = Path(scratch)
        anvil = AnvilProcess(port=free_port(), state=root / "anvil.json", log=root / "anvil.log",
                             block_time=block_time).start()
        try:
            w3 = connect(anvil.rpc_url)
            workspace = Workspace.init(root / "ws", rpc=anvil.rpc_url)
            store = EmbeddedStore(workspace.store_dir)
            admin, accounts = found_federation(DemoOptions(participants=parties), w3=w3, workspace=workspace,
                                               store=store, track=lambda name, tx: None)
            shards, _ = load_digits_split(parties=parties, seed=0)
            config = RoundConfig(model="mlp", strategy={"name": "fedavg"}, training=TrainingSettings(epochs=1))
            store.add_bytes(config.to_bytes(), pin=True)
            base = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
            results = []
            for depth in confirmations:
                policy = TxPolicy(confirmations=depth, timeout_s=600)
                operator = FederationClient(w3, admin.address, account=admin.account, policy=policy)
                members = [FederationClient(w3, admin.address, account=account, policy=policy) for account in accounts]
                started, sent = time.perf_counter(), 0
                for _ in range(rounds):
                    round_id, _ = operator.open_round(base_cid=base, deadline=chain_now(w3) + 3600,
                                                      min_updates=parties, config_hash=config.config_hash)
                    for member, shard in zip(members, shards):
                        train_and_submit(federation=member, store=store, round_id=round_id, data=shard,
                                         journal_dir=workspace.journal_dir, progress=False)
                    base = aggregate_round(federation=operator, store=store, round_id=round_id,
                                           journal_dir=workspace.journal_dir).global_cid
                    sent += 2 + parties
                per_round = (time.perf_counter() - started) / rounds
                floor = (sent / rounds) * (1 + depth) * block_time
                results.append({"confirmations": depth, "seconds_per_round": per_round,
                                "transactions_per_round": sent / rounds, "floor_seconds": floor})
            return results
        finally:
            anvil.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block-time", type=int, default=2)
    parser.add_argument("--confirmations", type=int, nargs="+", default=[0, 3])
    parser.add_argument("--parties", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    arguments = parser.parse_args()
    rows = run(arguments.block_time, arguments.confirmations, arguments.parties, arguments.rounds)
    print(f"block time {arguments.block_time} s, {arguments.parties} parties, {arguments.rounds} rounds per setting")
    print("| confirmations | s per round | transactions per round | floor (1 + N) x block time x txs | round / floor |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['confirmations']} | {row['seconds_per_round']:.1f} | {row['transactions_per_round']:.0f} | "
              f"{row['floor_seconds']:.0f} | {row['seconds_per_round'] / row['floor_seconds']:.2f} |")


if __name__ == "__main__":
    main()
