"""Indexing speed against plain ``eth_getLogs``, and ``verify`` time per round, on anvil.

    .venv/bin/python -m benchmarks.index [--events 50000] [--parties 100] [--verify-rounds 3]

Part 1 fills a fresh anvil with about ``--events`` Federation events cheaply: ``--parties``
parties join and are admitted, then rounds are opened and every party submits to each (anvil
signs for impersonated senders; transactions go in JSON-RPC batches, several hundred per block).
The same logs are then fetched with plain ``eth_getLogs`` (raw JSON and through web3.py) and
indexed by ``LedgerIndex.sync`` (decode + SQLite + block hashes), in the same run.

Part 2 builds a small real ledger with the demo loop (4 parties, trained updates, FedAvg) and
times ``verify_ledger`` for each round alone and for the whole ledger.

Prints a markdown table.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from eth_abi import encode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.ipfs.cid import RAW, cid_from_parts
from ledger.chain.federation import FederationClient
from ledger.index.index import LedgerIndex

SUBMIT = function_signature_to_4byte_selector("submitUpdate(uint256,uint8,bytes32,uint64,bytes32,uint64)")
OPEN = function_signature_to_4byte_selector("openRound(uint8,bytes32,uint64,uint32,bytes32)")
PER_BLOCK = 250
GAS = 100_000  # a block holds what its 30M gas limit allows by gas *limit*: 300 of these


def rpc_batch(url: str, calls: list[tuple[str, list]]) -> list:
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    replies = requests.post(url, json=body, timeout=300).json()
    errors = [r["error"] for r in replies if "error" in r]
    if errors:
        raise RuntimeError(f"{len(errors)} calls failed, first: {errors[0]}")
    return [r["result"] for r in sorted(replies, key=lambda r: r["id"])]


def send_all(url: str, txs: list[dict]) -> None:
    """Send ``txs`` from impersonated accounts, PER_BLOCK per mined block."""
    for start in range(0, len(txs), PER_BLOCK):
        chunk = txs[start : start + PER_BLOCK]
        rpc_batch(url, [("eth_sendTransaction", [tx]) for tx in chunk] + [("evm_mine", [])])
    while int(rpc_batch(url, [("txpool_status", [])])[0]["pending"], 16) > 0:
        rpc_batch(url, [("evm_mine", [])])


def fill(anvil_url: str, w3: Web3, *, events: int, parties: int) -> tuple[FederationClient, int]:
    federation, _ = FederationClient.deploy(w3)
    federation.publish_agreement(cid_from_parts(RAW, hashlib.sha256(b"terms").digest()))
    keys = [Account.from_key(hashlib.sha256(f"bench:{i}".encode()).digest()) for i in range(parties)]
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + 10**7
    for key in keys:
        federation.join(key.address, version=1, deadline=deadline, signature=federation.sign_join(key, version=1, deadline=deadline))
        federation.approve(key.address)
    rpc_batch(anvil_url, [("anvil_autoImpersonateAccount", [True]), ("evm_setAutomine", [False])]
              + [("anvil_setBalance", [k.address, hex(10**21)]) for k in keys])
    admin = federation.sender
    rounds = max(1, (events - 3 * parties) // (parties + 1))
    nonce = w3.eth.get_transaction_count(admin)
    first_round = federation.round_count() + 1
    opens = []
    for r in range(rounds):
        data = OPEN + encode(["uint8", "bytes32", "uint64", "uint32", "bytes32"],
                             [RAW, hashlib.sha256(b"base").digest(), deadline, parties, hashlib.sha256(b"config").digest()])
        opens.append({"from": admin, "to": federation.address, "data": Web3.to_hex(data), "gas": hex(GAS), "nonce": hex(nonce + r)})
    send_all(anvil_url, opens)
    submits = []
    for r in range(rounds):
        for p, key in enumerate(keys):
            digest = hashlib.sha256(f"{r}:{p}".encode()).digest()
            data = SUBMIT + encode(["uint256", "uint8", "bytes32", "uint64", "bytes32", "uint64"],
                                   [first_round + r, RAW, digest, 100 + p, digest, 0])
            submits.append({"from": key.address, "to": federation.address, "data": Web3.to_hex(data), "gas": hex(GAS), "nonce": hex(r)})
    send_all(anvil_url, submits)
    rpc_batch(anvil_url, [("evm_setAutomine", [True])])
    assert federation.round_count() == first_round - 1 + rounds, "some openRound transactions failed"
    assert all(federation.has_submitted(first_round + rounds - 1, key.address) for key in keys), "submissions failed"
    return federation, rounds


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def index_part(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    with AnvilProcess() as anvil:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 300}))
        (federation, rounds), fill_s = timed(lambda: fill(anvil.rpc_url, w3, events=args.events, parties=args.parties))
        head = w3.eth.block_number
        span = {"address": federation.address, "fromBlock": hex(federation.from_block), "toBlock": hex(head)}
        raw, raw_s = timed(lambda: w3.provider.make_request("eth_getLogs", [span])["result"])
        typed, typed_s = timed(lambda: w3.eth.get_logs({**span, "fromBlock": federation.from_block, "toBlock": head}))
        with tempfile.TemporaryDirectory() as folder, LedgerIndex.for_federation(Path(folder) / "index.sqlite", federation) as index:
            sync, sync_s = timed(index.sync)
            _, again_s = timed(index.sync)
            assert sync.events == len(raw) == len(typed), (sync.events, len(raw), len(typed))
            size = (Path(folder) / "index.sqlite").stat().st_size
        rows += [
            ("ledger filled", f"{len(raw):,} events ({args.parties} parties, {rounds} rounds) in {head - federation.from_block + 1:,} blocks, {fill_s:.1f} s"),
            ("plain eth_getLogs, raw JSON, one call", f"{raw_s:.2f} s"),
            ("plain eth_getLogs via web3.py (decoded log dicts), one call", f"{typed_s:.2f} s"),
            (f"LedgerIndex.sync from empty ({sync.batches} batches, decode + SQLite + block hashes)",
             f"{sync_s:.2f} s ({len(raw) / sync_s:,.0f} events/s), index {size / 1e6:.1f} MB"),
            ("ratio sync / plain eth_getLogs (raw JSON; web3.py)", f"{sync_s / raw_s:.1f}x; {sync_s / typed_s:.1f}x"),
            ("LedgerIndex.sync again, nothing new (reorg check + head)", f"{again_s * 1000:.0f} ms"),
        ]


def verify_part(args: argparse.Namespace, rows: list[tuple[str, str]]) -> None:
    from ledger.ipfs.store import EmbeddedStore
    from ledger.workspace import Workspace
    from node.audit.verify import verify_ledger
    from node.demo import DemoOptions, run_demo
    from node.round_config import TrainingSettings

    with AnvilProcess() as anvil, tempfile.TemporaryDirectory() as folder:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))
        workspace = Workspace.init(Path(folder) / "ws", rpc=anvil.rpc_url)
        options = DemoOptions(participants=4, rounds=args.verify_rounds, chain="anvil", training=TrainingSettings(epochs=1))
        run_demo(options, w3=w3, workspace=workspace)
        deployment = workspace.config["deployment"]
        federation = FederationClient(w3, deployment["address"], from_block=int(deployment["block"]))
        store = EmbeddedStore(workspace.store_dir)
        with LedgerIndex.for_federation(workspace.index_path, federation) as index:
            index.sync()
            per_round = []
            for round_id in range(1, args.verify_rounds + 1):
                report, seconds = timed(
                    lambda rid=round_id: verify_ledger(federation, store, index, round_id=rid, progress=False)
                )
                assert report.ok, report.failures
                per_round.append(seconds)
            whole, whole_s = timed(lambda: verify_ledger(federation, store, index, progress=False))
            assert whole.ok
    rows += [
        ("verify one round (4 parties, MLP, FedAvg; blobs + signatures + recompute)",
         ", ".join(f"{s * 1000:.0f} ms" for s in per_round) + f" (rounds 1..{args.verify_rounds})"),
        (f"verify whole ledger ({args.verify_rounds} rounds, {len(whole.checks)} checks)", f"{whole_s * 1000:.0f} ms"),
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--parties", type=int, default=100)
    parser.add_argument("--verify-rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rows: list[tuple[str, str]] = []
    index_part(args, rows)
    verify_part(args, rows)
    print(f"`{' '.join([os.path.basename(sys.executable), '-m', 'benchmarks.index', *sys.argv[1:]])}` "
          f"({os.cpu_count()} CPUs)\n")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
