"""Costs as the federation grows: a round of N parties on a real anvil, for N in ``--sizes``.

    .venv/bin/python -m benchmarks.scale [--sizes 10 100 300 1000] [--krum-max 300]

Per size, on a fresh anvil with the embedded store in a temporary folder, in-process actors:

- setup (not measured): N parties join (the admin relays their signatures) and are admitted, sent
  as JSON-RPC batches from impersonated accounts (``benchmarks.index``);
- a direct round: the coordinator opens it, every party runs ``train_and_submit`` (fetch and verify
  the base, train one epoch of the MLP on one of 50 digits shards of about 29 samples, pin, submit
  its own transaction; the first party on a shard trains it and the others on that shard reuse
  its trained weights, so training, which is not what is measured, stays tiny at 1,000 parties), the aggregator runs ``aggregate_round`` (FedAvg; fetch and verify every blob,
  membership at each submission's block, aggregate, pin, finalize). Ledger time = the round's wall
  time minus the time inside ``node.training.train``;
- a relayed round: every party's update from the direct round, re-made for this round (the
  binding metadata names the round), is pinned and signed (EIP-712), the admin relays them in
  batches of up to 256, the aggregator runs ``aggregate_round``. Its ledger time has no training;
- each strategy run alone over the direct round's submissions (``aggregate_updates``: what the
  aggregator and ``audit verify`` run), timed, then run again under ``tracemalloc`` for its peak
  of Python-tracked memory (numpy arrays included). Krum compares every pair of updates, so it is
  run only up to ``--krum-max`` parties;
- the auditor: ``LedgerIndex.sync`` from empty, then ``verify_ledger`` of both rounds.

Gas comes from the receipts. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from benchmarks.index import rpc_batch, send_all
import node.participant
from benchmarks.ledger_overhead import TrainingClock
from deploy.anvil import AnvilProcess
from ledger.chain.federation import FederationClient
from ledger.index.index import LedgerIndex
from ledger.ipfs.store import EmbeddedStore
from ledger.weights import from_safetensors
from node.aggregator import aggregate_round, aggregate_updates
from node.audit.verify import verify_ledger
from node.data import load_digits_split
from node.demo import TERMS
from node.genesis import genesis_model_bytes
from node.participant import train_and_submit, update_bytes
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy, strategy_from_params

ROUND_SECONDS = 3 * 3600
SHARDS = 50  # digits shards; party i trains on shard i mod SHARDS (1,437 samples cannot give 1,000 parties a shard each)
BATCH = 256
GAS = 100_000  # enough for a join or an approval; ``send_all`` puts 250 in a block of 30M gas (by limit)
ADMIT_CHUNK = 100
STRATEGIES: dict[str, dict[str, Any]] = {
    "fedavg": make_strategy("fedavg").params(),
    "median": make_strategy("median").params(),
    "trimmed-mean": make_strategy("trimmed-mean", beta=0.2).params(),
    "krum": make_strategy("krum", f=1, m=3).params(),
}


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


@contextlib.contextmanager
def shared_training() -> Any:
    """``node.participant.train`` trains each shard once; later calls on that shard load its weights."""
    original = node.participant.train
    trained: dict[int, tuple[dict[str, torch.Tensor], Any]] = {}

    def train(model: torch.nn.Module, data: Any, **kwargs: Any) -> Any:
        if id(data) in trained:
            state, result = trained[id(data)]
            model.load_state_dict(state)
            return result
        result = original(model, data, **kwargs)
        trained[id(data)] = ({k: v.clone() for k, v in model.state_dict().items()}, result)
        return result

    node.participant.train = train  # type: ignore[assignment]
    try:
        yield
    finally:
        node.participant.train = original  # type: ignore[assignment]


def admit(url: str, federation: FederationClient, keys: list[LocalAccount]) -> None:
    """Every key joins the current agreement (relayed by the admin) and is admitted; each gets ether."""
    w3, admin = federation.w3, federation.sender
    version = federation.agreement_version()
    deadline = int(w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
    rpc_batch(url, [("evm_setAutomine", [False])] + [("anvil_setBalance", [k.address, hex(10**20)]) for k in keys])
    for first in range(0, len(keys), ADMIT_CHUNK):
        chunk = keys[first : first + ADMIT_CHUNK]
        nonce = w3.eth.get_transaction_count(admin)
        calls = [
            federation.contract.functions.join(
                key.address, version, deadline, federation.sign_join(key, version=version, deadline=deadline)
            )._encode_transaction_data()
            for key in chunk
        ] + [federation.contract.functions.approve(key.address)._encode_transaction_data() for key in chunk]
        send_all(url, [{"from": admin, "to": federation.address, "data": data, "gas": hex(GAS), "nonce": hex(nonce + i)}
                       for i, data in enumerate(calls)])
    rpc_batch(url, [("evm_setAutomine", [True])])
    if federation.participant_count() != len(keys):
        raise RuntimeError(f"{federation.participant_count()} of {len(keys)} parties were admitted")


def receipt_gas(w3: Web3, tx_hashes: list[str]) -> list[int]:
    return [int(w3.eth.get_transaction_receipt(h)["gasUsed"]) for h in tx_hashes]


def open_round(federation: FederationClient, base: str, config: RoundConfig) -> tuple[int, int]:
    closes = int(federation.w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
    round_id, tx = federation.open_round(base_cid=base, deadline=closes, min_updates=1, config_hash=config.config_hash)
    return round_id, tx.gas_used


def measure(size: int, *, krum_max: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fedledger-scale-"))
    out: dict[str, Any] = {"parties": size}
    try:
        with AnvilProcess() as anvil:
            w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 300}))
            store = EmbeddedStore(root / "store")
            federation, _ = FederationClient.deploy(w3)
            federation.publish_agreement(store.add_bytes(TERMS, pin=True))
            keys = [Account.from_key(hashlib.sha256(f"scale:{i}".encode()).digest()) for i in range(size)]
            admit(anvil.rpc_url, federation, keys)
            shards, _ = load_digits_split(parties=min(size, SHARDS), seed=0)
            config = RoundConfig(model="mlp", strategy=STRATEGIES["fedavg"], training=TrainingSettings(epochs=1))
            store.add_bytes(config.to_bytes(), pin=True)
            base = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
            journal = root / "journal"

            # Direct round: every party sends its own transaction.
            with shared_training(), TrainingClock() as clock:
                start = time.perf_counter()
                direct, out["openRound"] = open_round(federation, base, config)
                for i, key in enumerate(keys):
                    train_and_submit(federation=federation.with_account(key), store=store, round_id=direct,
                                     data=shards[i % len(shards)], journal_dir=journal, progress=False)
                outcome = aggregate_round(federation=federation, store=store, round_id=direct, journal_dir=journal)
                out["direct_ledger_s"] = time.perf_counter() - start - clock.seconds
            out["training_s"] = clock.seconds
            assert len(outcome.receipt.included) == size, outcome.receipt
            out["finalizeRound"] = outcome.tx.gas_used  # type: ignore[union-attr]
            submissions = federation.submissions(direct)
            out["direct_gas"] = statistics.fmean(receipt_gas(w3, [s.tx_hash for s in submissions]))

            # Relayed round: the same updates, re-made for this round, signed and sent in batches.
            remade = []
            for s in submissions:
                arrays, metadata = from_safetensors(store.get(s.cid))
                remade.append((s, arrays, metadata))
            start = time.perf_counter()
            relayed, _ = open_round(federation, outcome.global_cid, config)
            deadline = int(w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
            by_address = {key.address: key for key in keys}
            signed = []
            for s, arrays, metadata in remade:
                cid = store.add_bytes(update_bytes(
                    arrays, model="mlp", participant=s.participant, round_id=relayed, base_cid=outcome.global_cid,
                    samples=s.samples, metrics=metadata["metrics"],
                ), pin=True)
                signed.append(federation.sign_update(by_address[s.participant], relayed, cid=cid, samples=s.samples,
                                                     metrics_hash=s.metrics_hash, deadline=deadline))
            batch_gas = []
            for first in range(0, len(signed), BATCH):
                result = federation.submit_updates(relayed, signed[first : first + BATCH])
                assert len(result.recorded) == len(signed[first : first + BATCH]), result
                batch_gas.append(result.tx.gas_used)
            relayed_outcome = aggregate_round(federation=federation, store=store, round_id=relayed, journal_dir=journal)
            out["relayed_ledger_s"] = time.perf_counter() - start
            out["relayed_gas"] = sum(batch_gas) / size
            out["finalizeRound (relayed)"] = relayed_outcome.tx.gas_used  # type: ignore[union-attr]

            # Each strategy over the direct round's updates, as the aggregator and the auditor run it.
            info = federation.round(direct)
            out["strategies"] = {}
            for name, params in STRATEGIES.items():
                if name == "krum" and size > krum_max:
                    continue
                run_config = RoundConfig(model="mlp", strategy=params, training=config.training)

                def run() -> None:
                    aggregate_updates(store=store, info=info, config=run_config, strategy=strategy_from_params(params),
                                      submissions=submissions)

                _, seconds = timed(run)
                tracemalloc.start()
                run()
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                out["strategies"][name] = (seconds, peak)

            # The auditor.
            with LedgerIndex.for_federation(root / "index.sqlite", federation) as index:
                _, out["sync_s"] = timed(index.sync)
                report, out["verify_s"] = timed(lambda: verify_ledger(federation, store, index, progress=False))
                assert report.ok, report.failures
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def growth(values: list[float], sizes: list[int]) -> str:
    """Each size step's ratio of the values, beside that of the sizes: flat, linear or worse."""
    steps = [f"x{b / a:.2f} (x{m / n:.3g})" for a, b, n, m in zip(values, values[1:], sizes, sizes[1:]) if a > 0]
    return ", ".join(steps)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 300, 1000])
    parser.add_argument("--krum-max", type=int, default=300, help="largest size at which Krum (quadratic) is run")
    parser.add_argument("--from-logs", type=Path, nargs="+", help="print the tables of earlier runs' stderr instead of measuring")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a tiny model: threads only add contention on a loaded machine
    command = " ".join([os.path.basename(sys.executable), "-m", "benchmarks.scale", *(argv if argv is not None else sys.argv[1:])])
    results = []
    if args.from_logs:
        for log in args.from_logs:
            lines = log.read_text(encoding="utf-8").splitlines()
            results += [json.loads(line[line.index("{"):]) for line in lines if line.startswith("size ")]
        results.sort(key=lambda r: r["parties"])
    for size in [] if args.from_logs else args.sizes:
        result, seconds = timed(lambda size=size: measure(size, krum_max=args.krum_max))
        print(f"size {size}: {seconds:.0f} s {json.dumps(result)}", file=sys.stderr, flush=True)
        results.append(result)
    sizes = [r["parties"] for r in results]

    print(f"command: `{command}` ({os.cpu_count()} CPUs)\n")
    rows = [
        ("gas per update, direct (mean)", "direct_gas", "{:,.0f}"),
        ("gas per update, relayed (batches of 256)", "relayed_gas", "{:,.0f}"),
        ("openRound gas", "openRound", "{:,}"),
        ("finalizeRound gas (direct round)", "finalizeRound", "{:,}"),
        ("finalizeRound gas (relayed round)", "finalizeRound (relayed)", "{:,}"),
        ("training, all parties (s; not ledger)", "training_s", "{:.1f}"),
        ("ledger time, direct round (s)", "direct_ledger_s", "{:.1f}"),
        ("ledger time, relayed round (s)", "relayed_ledger_s", "{:.1f}"),
        ("audit: index sync from empty (s)", "sync_s", "{:.2f}"),
        ("audit: verify both rounds (s)", "verify_s", "{:.1f}"),
    ]
    print("| measurement | " + " | ".join(f"{n:,} parties" for n in sizes) + " | growth per step (parties) |")
    print("| --- | " + " | ".join("---:" for _ in sizes) + " | --- |")
    for label, key, fmt in rows:
        values = [r[key] for r in results]
        print(f"| {label} | " + " | ".join(fmt.format(v) for v in values) + f" | {growth(values, sizes)} |")
    for label, column, fmt in (("aggregate time (s)", 0, "{:.2f}"), ("aggregate peak memory (MB, tracemalloc)", 1, "{:.1f}")):
        for name in STRATEGIES:
            values = [r["strategies"][name][column] / (1e6 if column else 1) if name in r["strategies"] else None
                      for r in results]
            shown = [v for v in values if v is not None]
            print(f"| {name}: {label} | " + " | ".join("—" if v is None else fmt.format(v) for v in values)
                  + f" | {growth(shown, [n for n, v in zip(sizes, values) if v is not None])} |")


if __name__ == "__main__":
    main()
