"""Ledger overhead of a federated round: all the round's wall time except training.

    .venv/bin/python -m benchmarks.ledger_overhead [--parties 4 16] [--rounds 2] [--epochs 1]

For each party count it runs rounds on a fresh anvil (and, for comparison, on the in-process
chain), with in-process actors: the coordinator opens the round, every party calls
``train_and_submit`` in turn (fetch and verify the base model, train, pin, submit), the aggregator
calls ``aggregate_round`` (read events, check membership at each submission's block, fetch and
verify every blob, aggregate, pin model and receipt, finalize). The round's wall time runs from
``open_round`` to the finalize receipt; training time is the time spent inside
``node.training.train`` (wrapped with a timer); overhead = round - training. The content store is
the embedded one in a temporary workspace. A warm-up round (not reported) pays the one-time
imports and caches first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from web3 import Web3

import node.participant
from deploy.anvil import AnvilProcess
from ledger.chain.connection import connect
from ledger.chain.federation import FederationClient
from ledger.ipfs.store import EmbeddedStore
from node.aggregator import aggregate_round
from node.data import load_digits_split
from node.demo import TERMS, fund, party_account
from node.genesis import genesis_model_bytes
from node.participant import train_and_submit
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy

ROUND_SECONDS = 3600


@dataclass
class RoundTiming:
    chain: str
    parties: int
    round_s: float
    training_s: float

    @property
    def overhead_s(self) -> float:
        return self.round_s - self.training_s


class TrainingClock:
    """Wraps ``node.participant.train`` so every second spent training is counted."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._original: Callable[..., Any] = node.participant.train

    def __enter__(self) -> Self:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return self._original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        node.participant.train = timed  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        node.participant.train = self._original  # type: ignore[assignment]


@contextmanager
def chain_w3(kind: str) -> Iterator[Web3]:
    if kind == "memory":
        yield connect("memory")
        return
    with AnvilProcess() as anvil:
        yield Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 60}))


def run_rounds(kind: str, *, parties: int, rounds: int, epochs: int) -> list[RoundTiming]:
    """A federation of ``parties`` on chain ``kind``; one warm-up round, then ``rounds`` timed ones."""
    root = Path(tempfile.mkdtemp(prefix="fedledger-overhead-"))
    try:
        with chain_w3(kind) as w3:
            store = EmbeddedStore(root / "store")
            admin = party_account(1, 0)
            members = [party_account(1, i + 1) for i in range(parties)]
            fund(w3, [admin, *members])
            federation, _ = FederationClient.deploy(w3, account=admin)
            version, _ = federation.publish_agreement(store.add_bytes(TERMS, pin=True))
            deadline = int(w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
            for member in members:
                signature = federation.sign_join(member, version=version, deadline=deadline)
                federation.with_account(member).join(member.address, version=version, deadline=deadline, signature=signature)
                federation.approve(member.address)
            shards, _ = load_digits_split(parties=parties, seed=0, non_iid_alpha=None)
            config = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(),
                                 training=TrainingSettings(epochs=epochs))
            store.add_bytes(config.to_bytes(), pin=True)
            base = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
            clients = [federation.with_account(member) for member in members]

            timings = []
            for index in range(rounds + 1):
                with TrainingClock() as clock:
                    start = time.perf_counter()
                    closes = int(w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
                    round_id, _ = federation.open_round(base_cid=base, deadline=closes, min_updates=parties,
                                                        config_hash=config.config_hash)
                    for client, shard in zip(clients, shards):
                        train_and_submit(federation=client, store=store, round_id=round_id, data=shard,
                                         journal_dir=root / "journal", progress=False)
                    outcome = aggregate_round(federation=federation, store=store, round_id=round_id,
                                              journal_dir=root / "journal")
                    elapsed = time.perf_counter() - start
                assert len(outcome.receipt.included) == parties, outcome.receipt
                base = outcome.global_cid
                if index > 0:  # round 0 is the warm-up
                    timings.append(RoundTiming(kind, parties, elapsed, clock.seconds))
            return timings
    finally:
        shutil.rmtree(root, ignore_errors=True)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per setting (after one warm-up round)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--chains", nargs="+", default=["anvil", "memory"], choices=["anvil", "memory"])
    args = parser.parse_args(argv)

    print("command: .venv/bin/python -m benchmarks.ledger_overhead " + " ".join(argv if argv is not None else sys.argv[1:]))
    print(f"MLP on digits, FedAvg, {args.epochs} epoch(s), embedded store; mean of {args.rounds} round(s) after a warm-up\n")
    print("| chain | parties | round time (s) | training (s) | overhead (s) | overhead per party (s) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for kind in args.chains:
        for parties in args.parties:
            timings = run_rounds(kind, parties=parties, rounds=args.rounds, epochs=args.epochs)
            round_s = mean([t.round_s for t in timings])
            training_s = mean([t.training_s for t in timings])
            overhead_s = round_s - training_s
            print(f"| {kind} | {parties} | {round_s:.2f} | {training_s:.2f} | {overhead_s:.2f} | {overhead_s / parties:.3f} |",
                  flush=True)


if __name__ == "__main__":
    main()
