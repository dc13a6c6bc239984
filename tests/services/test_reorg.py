"""Reorganizations deeper than the confirmations, under running services (issue 25).

A federation with ``[chain] confirmations = 2`` runs two rounds as plain processes (two `node run`,
`aggregator run`, `coordinator run --rounds 2`) on an anvil of its own, mined by automine and by this
test (an ``evm_mine`` every 0.1 s; paused around each reorg, and while it mines block by block).
Bob's node is held (SIGSTOP) until step 1 is done, so that round 1 waits for him. Two ``anvil_reorg``
calls, each at least 3 blocks deep and with a replacement transaction, take away what the services
had already seen settled:

1. alice's round-1 submission, as soon as her node reports it (2 blocks deep): the node notices that
   its update is gone and records the same update again, without training;
2. round 1's finalization and the opening of round 2, as soon as the coordinator reports round 2
   opened: the aggregator finalizes round 1 again (the same global model), the coordinator opens
   round 2 again, once.

The services decide on the chain 2 blocks below its head. Mined one block at a time, bob's update,
round 1's finalization, and the finalization sent again after the second reorg are each left alone
(no transaction from the aggregator, then from the coordinator) until they are 2 blocks deep; on
the final chain each round is finalized at least 2 blocks after its last submission, and round 2
opened at least 2 blocks after round 1's finalization. The workspace's audit index, synced before
and after each reorg, rewinds (its block hashes no longer match); in the end each round holds
exactly one update per party and `fedledger audit verify` passes.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.index.index import LedgerIndex
from ledger.workspace import Workspace
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import make_federation
from tests.services.harness import ServiceProcess, shard_files

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

DEPTH = 2  # [chain] confirmations
PARTIES = {"alice": 5, "bob": 6}  # anvil dev accounts
COORDINATOR, AGGREGATOR, BYSTANDER = 1, 2, 9


class Miner:
    """Mines a block every ``interval`` seconds on top of automine; :meth:`paused` stops all mining
    (automine included), so a test can reorganize and look before any service acts again."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.interval = interval
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(self.interval):
            with self.lock:
                self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    @contextmanager
    def paused(self) -> Iterator[None]:
        with self.lock:
            self.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
            try:
                yield
            finally:
                self.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]

    def stop(self) -> None:
        self.done.set()
        self.thread.join(5)


def reorg_from(w3: Web3, first: int, bystander: str) -> int:
    """Replace every block from ``first`` to the head (at least 3) by new ones, one holding a bystander's
    transfer; returns the depth."""
    depth = max(3, int(w3.eth.block_number) - first + 1)
    transfer = {"from": bystander, "to": bystander, "value": "0x1"}
    answer = w3.provider.make_request("anvil_reorg", [depth, [[transfer, 0]]])  # type: ignore[arg-type]
    assert "error" not in answer, answer
    return depth


def sent(w3: Web3, sender: str) -> int:
    """How many transactions ``sender`` has sent, the pool's included."""
    return int(w3.eth.get_transaction_count(sender, "pending"))  # type: ignore[arg-type]


def shallow_blocks_change_nothing(w3: Web3, sender: str, watched: str, *, what: str, quiet_s: float = 0.5) -> None:
    """With mining paused: wait for ``sender``'s transaction in the pool, mine it, and mine until it is
    DEPTH - 1 blocks deep, checking after each block that ``watched`` has sent nothing since this began;
    then mine the block that makes it DEPTH deep."""
    before = sent(w3, watched)
    deadline = time.monotonic() + 60
    while sent(w3, sender) == int(w3.eth.get_transaction_count(sender, "latest")):  # type: ignore[arg-type]
        assert time.monotonic() < deadline, f"{what} was never sent"
        assert sent(w3, watched) == before, f"{watched} acted before {what} was even sent"
        time.sleep(0.05)
    for deep in range(DEPTH):
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
        time.sleep(quiet_s)
        assert sent(w3, watched) == before, f"{watched} acted on {what} only {deep} block(s) deep"
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def block_of(w3: Web3, tx_hash: str) -> int:
    return int(w3.eth.get_transaction_receipt(tx_hash)["blockNumber"])  # type: ignore[arg-type]


def test_services_recover_from_reorgs_that_remove_a_submission_and_a_finalization(
    tmp_path: Path, anvil_keys: list[LocalAccount]
) -> None:
    began = time.monotonic()

    def mark(step: str) -> None:  # the timeline, shown when the test fails
        print(f"{time.monotonic() - began:6.1f} s  {step}", flush=True)

    env = {i: {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(anvil_keys[i].key), "OMP_NUM_THREADS": "1"} for i in range(10)}
    address = {name: anvil_keys[i].address for name, i in PARTIES.items()}
    services: list[ServiceProcess] = []
    anvil = AnvilProcess().start()
    miner: Miner | None = None
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
        federation = make_federation(tmp_path / "fed", rpc=anvil.rpc_url)
        w = federation.w
        for name, i in PARTIES.items():
            federation.admit(name, env[i]["FEDLEDGER_PRIVATE_KEY"])
        ok(cli("admin", "grant", "coordinator", anvil_keys[COORDINATOR].address, *w))
        ok(cli("admin", "grant", "aggregator", anvil_keys[AGGREGATOR].address, *w))
        workspace = Workspace.load(federation.workspace.root)
        workspace.set("chain", "confirmations", DEPTH)
        workspace.set("chain", "replace_after_s", 2)  # a sender whose transaction a reorg removed resends it soon
        workspace.save()
        client = federation.client()
        assert client.policy.confirmations == DEPTH
        index = LedgerIndex.for_federation(workspace.index_path, client)  # the index `audit` reads
        config = federation.config_file("quick")
        shards = [str(path) for path in shard_files(tmp_path / "data", parties=2)]
        miner = Miner(anvil.rpc_url)
        mark("federation set up")

        def start(name: str, *args: str, key: int) -> ServiceProcess:
            service = ServiceProcess(name, [*args, "--poll-seconds", "0.2", "--log-json", *w], env=env[key],
                                     log_dir=tmp_path / "logs")
            services.append(service)
            return service

        aggregator = start("aggregator", "aggregator", "run", key=AGGREGATOR)
        alice = start("alice", "node", "run", "--data", shards[0], key=PARTIES["alice"])
        bob = start("bob", "node", "run", "--data", shards[1], key=PARTIES["bob"])
        bob.wait_for("started", timeout=60)
        bob.signal(signal.SIGSTOP)  # held until alice's update is gone: round 1 cannot be finalized before
        coordinator = start("coordinator", "coordinator", "run", "--rounds", "2", "--round-seconds", "120",
                            "--min-updates", "2", "--config", str(config), "--base-cid", federation.genesis_cid,
                            key=COORDINATOR)

        # 1. Alice's round-1 update, reported recorded (2 blocks deep), is reorganized away.
        first = alice.wait_for("submitted", timeout=60, where=lambda r: r["round"] == 1)
        with miner.paused():
            assert index.sync().reorg_from is None
            assert [e.args["participant"] for e in index.events("UpdateSubmitted", round_id=1)] == [address["alice"]]
            depth = reorg_from(w3, first["block"], anvil_keys[BYSTANDER].address)
            assert not client.has_submitted(1, address["alice"])
            synced = index.sync()
            assert synced.reorg_from is not None and synced.reorg_from <= first["block"]
            assert index.events("UpdateSubmitted", round_id=1) == []
        mark(f"alice's submission (block {first['block']}) removed by a reorg {depth} deep")
        again = alice.wait_for("submitted", timeout=60, where=lambda r: r["round"] == 1 and r is not first)
        assert alice.matching("reorganized", lambda r: r["round"] == 1)
        assert (again["cid"], again["trained"]) == (first["cid"], False)  # the same update, not trained again
        assert "submitted again the update it had pinned" in again["message"]
        assert len(alice.matching("training", lambda r: r["round"] == 1)) == 1
        mark("alice submitted the same update again")

        # Block by block: the aggregator acts on bob's update, and the coordinator on the finalization,
        # only once it is DEPTH blocks deep.
        with miner.paused():
            bob.signal(signal.SIGCONT)
            shallow_blocks_change_nothing(w3, address["bob"], anvil_keys[AGGREGATOR].address, what="bob's update")
            shallow_blocks_change_nothing(w3, anvil_keys[AGGREGATOR].address, anvil_keys[COORDINATOR].address,
                                          what="round 1's finalization")
        mark("nothing acted on an event less than 2 blocks deep")

        # 2. Round 1's finalization and round 2's opening, both reported, are reorganized away.
        finalized = aggregator.wait_for("finalized", timeout=60, where=lambda r: r["round"] == 1)
        coordinator.wait_for("opened", timeout=60, where=lambda r: r["round"] == 2)
        with miner.paused():
            index.sync()
            final_block = block_of(w3, finalized["tx_hash"])
            depth = reorg_from(w3, final_block, anvil_keys[BYSTANDER].address)
            assert client.round(1).state == "open" and client.round_count() == 1
            synced = index.sync()
            assert synced.reorg_from is not None and synced.reorg_from <= final_block
            assert index.events("RoundFinalized", round_id=1) == []
            shallow_blocks_change_nothing(w3, anvil_keys[AGGREGATOR].address, anvil_keys[COORDINATOR].address,
                                          what="round 1's finalization, sent again")
        mark(f"round 1's finalization (block {final_block}) and round 2's opening removed by a reorg {depth} deep")
        refinalized = aggregator.wait_for("finalized", timeout=60, where=lambda r: r["round"] == 1 and r is not finalized)
        assert refinalized["global_cid"] == finalized["global_cid"]  # deterministic: the same global model
        assert aggregator.matching("reorganized", lambda r: r["round"] == 1)
        assert coordinator.wait_exit(90) == 0
        mark("round 2 finalized; the coordinator is done")
        assert coordinator.matching("reorganized")[0]["rounds"] == [2]
        assert [r["round"] for r in coordinator.matching("opened")] == [1, 2, 2]  # round 2 opened again, once
        assert coordinator.matching("complete")[0]["rounds"] == [1, 2]

        # What stands on chain: one update per party per round, decisions taken 2 blocks deep.
        assert client.round_count() == 2
        index.sync()
        for round_id in (1, 2):
            submitted = client.submissions(round_id)
            assert sorted(s.participant for s in submitted) == sorted(address.values()), round_id
            assert client.round(round_id).state == "finalized"
            closed = index.events("RoundFinalized", round_id=round_id)
            assert closed[0].block >= max(s.block for s in submitted) + DEPTH, round_id
        assert client.round(2).opened_block >= index.events("RoundFinalized", round_id=1)[0].block + DEPTH
        assert client.round(2).base_cid == finalized["global_cid"]
        for service in (aggregator, alice, bob):  # SIGTERM to all, then each exit: a clean stop between steps
            service.signal(signal.SIGTERM)
        for service in (aggregator, alice, bob):
            assert service.wait_exit(60) == 0, service.stderr
        for service in services:
            assert "Traceback" not in service.stderr, (service.name, service.stderr)
        index.close()
        ok(cli("audit", "verify", *w))
        mark("audit verified")
    finally:
        if miner is not None:
            miner.stop()
        for service in services:
            service.stop()
            service.save_events()
        anvil.stop()
