"""The services in secure rounds (issue 24), on a real anvil.

Step by step, in this process: the coordinator opens a secure round (cohort and key deadline built at
opening); a node's step never waits for the key phase (it advertises, says once that it waits, and
comes back); an aggregator waits past the deadline for the reveals it needs (said once) and finalizes
once a node, and a node started afresh after it had submitted, have revealed; a round that cannot be
unmasked for good is reported by an aggregator without the admin role and aborted by one with it.

End to end, as plain processes: `coordinator run --secure --rounds 1`, `aggregator run` and three
`node run`; a fourth party advertises and drops out before submitting, one node is SIGKILLed as soon
as it has submitted (before any reveal); the two others reveal, the round is finalized with the
dropout's masks removed, and `fedledger audit verify` passes.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain.connection import open_federation
from ledger.chain.federation import FederationClient
from ledger.chain.transactions import TxPolicy
from ledger.contract_constants import RoundMessageKind
from ledger.errors import InvalidInputError
from ledger.ipfs.store import EmbeddedStore, open_store
from ledger.sealing.keys import new_encryption_key, public_key_bytes
from ledger.secagg.graph import neighbours_of
from ledger.workspace import Workspace
from node.data import load_digits_split
from node.genesis import genesis_model_bytes
from node.journal import Journal
from node.participant import fetch_round_config
from node.receipt import Receipt
from node.round_config import RoundConfig, TrainingSettings, config_cid
from node.secure.board import read_board
from node.secure.opening import secure_round
from node.secure.party import advertise
from node.services.aggregator_service import AggregatorService
from node.services.coordinator_service import CoordinatorService, SecureOptions
from node.services.log import ServiceLog
from node.services.metrics import ServiceMetrics
from node.services.participant_service import NodeService
from node.strategies import make_strategy
from tests.contracts.conftest import Fed, make_fed
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import make_federation
from tests.services.harness import ServiceProcess, mining, shard_files

pytestmark = pytest.mark.anvil

CONFIG = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(),
                     training=TrainingSettings(epochs=1, batch_size=32, lr=0.05))
ROUND_SECONDS = 600


@dataclass
class Secure:
    fed: Fed
    store: EmbeddedStore
    parties: list[tuple[LocalAccount, FederationClient]]
    keys: dict[str, X25519PrivateKey]
    genesis: str
    journal: Path
    out: io.StringIO

    @property
    def chain(self) -> TestChain:
        return self.fed.chain

    def log(self, service: str) -> ServiceLog:
        return ServiceLog(service, json_lines=True, machine=self.out)

    def events(self, event: str, **fields: Any) -> list[dict]:
        records = [json.loads(line) for line in self.out.getvalue().splitlines()]
        return [r for r in records if r["event"] == event and all(r.get(k) == v for k, v in fields.items())]

    def node(self, index: int) -> NodeService:
        account, client = self.parties[index]
        shards, _ = load_digits_split(parties=len(self.parties), seed=0)
        return NodeService(federation=client, store=self.store, data=shards[index], journal_dir=self.journal,
                           log=self.log(f"node{index}"), metrics=ServiceMetrics("node"),
                           encryption_key=lambda: self.keys[account.address])

    def aggregator(self, federation: FederationClient | None = None) -> AggregatorService:
        return AggregatorService(federation=federation or self.fed.admin, store=self.store, journal_dir=self.journal,
                                 log=self.log("aggregator"), metrics=ServiceMetrics("aggregator"))

    def open_round(self, *, min_updates: int, **secure_options: int) -> tuple[int, RoundConfig]:
        """A secure round opened now by the admin on the genesis model: its id and its config (pinned)."""
        admin, now = self.fed.admin, self.chain.now()
        config = replace(CONFIG, secure=secure_round(admin, opens_at=now, deadline=now + ROUND_SECONDS,
                                                     max_samples=CONFIG.max_samples, **secure_options))
        self.store.add_bytes(config.to_bytes(), pin=True)
        round_id, _ = admin.open_round(base_cid=self.genesis, deadline=now + ROUND_SECONDS, min_updates=min_updates,
                                       config_hash=config.config_hash)
        return round_id, config

    def advertise(self, index: int, round_id: int) -> None:
        """Party ``index`` advertises its round keys as its node would, and then never submits."""
        account, client = self.parties[index]
        info = client.round(round_id)
        settings = fetch_round_config(self.store, info.config_hash).secure
        assert settings is not None
        advertise(client, self.store, Journal(self.journal, role="participant", actor=account.address,
                                              round_id=round_id),
                  round_id=round_id, settings=settings, opened_block=info.opened_block)


@pytest.fixture
def secure(chain: TestChain, tmp_path: Path) -> Secure:
    fed = make_fed(chain)
    store = EmbeddedStore(tmp_path / "store")
    parties = [fed.party() for _ in range(4)]
    keys = {account.address: X25519PrivateKey.generate() for account, _ in parties}
    for account, client in parties:
        client.publish_encryption_key(public_key_bytes(keys[account.address]))
    genesis = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
    return Secure(fed, store, parties, keys, genesis, tmp_path / "journal", io.StringIO())


def within(seconds: float, step: Callable[[], object]) -> None:
    """Run ``step`` in a thread and fail if it has not returned after ``seconds``: a step must never block."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            step()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            failure.append(error)
        finally:
            done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(seconds), f"the step did not return within {seconds} s: it blocks"
    if failure:
        raise failure[0]


def test_secure_round_steps_advertise_without_blocking_then_reveal_and_finalize(secure: Secure) -> None:
    coordinator = CoordinatorService(
        federation=secure.fed.admin, store=secure.store, journal_dir=secure.journal, rounds=1,
        round_seconds=ROUND_SECONDS, min_updates=3, config=CONFIG, base_cid=secure.genesis,
        log=secure.log("coordinator"), metrics=ServiceMetrics("coordinator"), secure=SecureOptions(),
    )
    coordinator.start()
    opened_at = secure.chain.now()
    assert coordinator.step() is False
    round_id = coordinator.schedule.rounds[-1]
    info = secure.fed.admin.round(round_id)
    settings = fetch_round_config(secure.store, info.config_hash).secure
    assert settings is not None  # built at opening: every admitted party with a key, half the round to advertise
    assert set(settings.params.cohort) == {a.address for a, _ in secure.parties}
    assert abs(settings.key_deadline - (info.deadline - ROUND_SECONDS // 2)) <= 1 and info.deadline >= opened_at
    assert secure.events("opened")[0]["key_deadline"] == settings.key_deadline

    nodes = [secure.node(i) for i in range(3)]
    for node in nodes:  # one look at the key phase, no wait: the fourth party has not advertised
        node.start()
        within(30, node.step)
        within(30, node.step)
    assert len(secure.events("advertised")) == 3
    assert len(secure.events("waiting-for-key-phase")) == 3  # said once per node
    assert secure.fed.admin.round(round_id).submissions == 0
    secure.advertise(3, round_id)  # the dropout: advertised, never submits
    for node in nodes:
        node.step()
    assert [e["round"] for e in secure.events("submitted")] == [round_id] * 3

    aggregator = secure.aggregator()
    aggregator.start()
    aggregator.step()  # the minimum is met, but the dropout advertised and may still submit until the deadline
    assert secure.fed.admin.round(round_id).state == "open"
    for node in nodes:
        node.step()
    assert not secure.events("revealed") and not secure.events("nothing-to-reveal")  # not before the deadline

    secure.chain.advance(info.deadline - secure.chain.now() + 5)
    aggregator.step()
    aggregator.step()
    waiting = secure.events("secure-waiting")
    assert len(waiting) == 1 and "cannot be unmasked yet" in waiting[0]["message"]  # said once
    assert secure.fed.admin.round(round_id).state == "open"

    nodes[0].step()
    nodes[0].step()
    (first,) = secure.events("revealed")  # once
    dropout = secure.parties[3][0].address
    board = read_board(secure.fed.admin, secure.store, round_id, settings)
    assert set(neighbours_of(settings.params, dropout, board.context)) == {a.address for a, _ in secure.parties[:3]}
    assert first["cid"] == str(board.revealed[secure.parties[0][0].address].cid)
    aggregator.step()  # one share of the dropout's seed of the two needed
    assert secure.fed.admin.round(round_id).state == "open" and len(secure.events("secure-waiting")) == 1

    restarted = secure.node(1)  # a node started again after it submitted reveals then
    restarted.start()
    restarted.step()
    assert len(secure.events("revealed")) == 2 and secure.events("already-submitted", round=round_id)
    aggregator.step()
    final = secure.fed.admin.round(round_id)
    assert final.state == "finalized"
    receipt = Receipt.from_bytes(secure.store.get(final.receipt_cid))
    assert [d.participant for d in receipt.dropouts] == [dropout]
    assert sorted(r.participant for r in receipt.reveals) == sorted(a.address for a, _ in secure.parties[:2])
    assert sorted(u.participant for u in receipt.included) == sorted(a.address for a, _ in secure.parties[:3])
    (finalized,) = secure.events("finalized")
    assert finalized["dropouts"] == [dropout] and "deadline passed" in finalized["message"]
    assert coordinator.step() is True


def test_a_secure_round_that_cannot_be_unmasked_is_reported_then_aborted_by_an_admin(secure: Secure) -> None:
    admin = secure.fed.admin
    round_id, config = secure.open_round(min_updates=1)
    for index in range(4):
        secure.advertise(index, round_id)
    junk = secure.store.add_bytes(b"not a masked vector", pin=True)  # a survivor's vector nobody can use
    for _, client in secure.parties[:3]:
        client.submit_update(round_id, cid=junk, samples=10, metrics_hash=bytes(32))
    secure.chain.advance(ROUND_SECONDS + 5)

    keyless = NodeService(federation=secure.parties[0][1], store=secure.store, journal_dir=secure.journal,
                          log=secure.log("node0"), metrics=ServiceMetrics("node"))  # no encryption key: said once
    keyless.step()
    keyless.step()
    (cannot,) = secure.events("cannot-reveal")
    assert "given no encryption key" in cannot["message"] and not secure.events("revealed")

    plain = secure.chain.new_account()
    admin.grant_role("aggregator", plain.address)
    reporter = secure.aggregator(admin.with_account(plain))
    reporter.step()
    reporter.step()
    (report,) = secure.events("cannot-unmask")  # once
    assert "leaving it out would take revealing its masks" in report["message"]
    assert "lacks the admin role, so the round stays open" in report["message"]
    assert admin.round(round_id).state == "open"

    secure.aggregator().step()  # the admin's key holds the aggregator role too
    (aborted,) = secure.events("aborted")
    assert admin.round(round_id).state == "cancelled"  # an aborted round is closed as cancelled, its reason on record
    assert aborted["reason"] == report["reason"]


PARTIES = {"alice": 5, "bob": 6, "carol": 7, "dave": 8}  # anvil dev accounts; dave drops out, carol is killed
COORDINATOR, AGGREGATOR = 1, 2
PASSWORD = "secure-services"


@pytest.mark.slow
def test_services_finalize_a_secure_round_through_a_dropout_and_a_party_killed_before_its_reveal(
    chain: TestChain, anvil_keys: list[LocalAccount], tmp_path: Path,
) -> None:
    began = time.monotonic()

    def mark(step: str) -> None:  # the timeline, shown when the test fails
        print(f"{time.monotonic() - began:6.1f} s  {step}", flush=True)

    federation = make_federation(tmp_path / "fed", rpc=chain.w3.provider.endpoint_uri)
    w = federation.w
    workspace = federation.workspace
    env = {i: {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(anvil_keys[i].key), "FEDLEDGER_KEY_PASSWORD": PASSWORD}
           for i in (*PARTIES.values(), COORDINATOR, AGGREGATOR)}
    address = {name: anvil_keys[i].address for name, i in PARTIES.items()}
    for name, i in PARTIES.items():  # admitted, with an encryption key registered on chain
        federation.admit(name, env[i]["FEDLEDGER_PRIVATE_KEY"])
        new_encryption_key(Workspace.load(workspace.root), f"{name}-enc", password=PASSWORD, iterations=1 << 12)
        ok(cli("key", "publish-encryption", "--key", f"{name}-enc", *w, env=env[i]))
    ok(cli("admin", "grant", "coordinator", anvil_keys[COORDINATOR].address, *w))
    ok(cli("admin", "grant", "aggregator", anvil_keys[AGGREGATOR].address, *w))
    config = federation.config_file("quick")  # MLP, one epoch
    shards = [str(path) for path in shard_files(tmp_path / "data", parties=len(PARTIES))]
    mark("federation set up")

    services: list[ServiceProcess] = []

    def start(name: str, *args: str, key: int) -> ServiceProcess:
        service = ServiceProcess(name, [*args, "--poll-seconds", "0.3", "--log-json", *w],
                                 env={**env[key], "OMP_NUM_THREADS": "1"}, log_dir=tmp_path / "logs")
        services.append(service)
        return service

    try:
        aggregator = start("aggregator", "aggregator", "run", key=AGGREGATOR)
        nodes = {name: start(name, "node", "run", "--data", shards[n], key=PARTIES[name])
                 for n, name in enumerate(("alice", "bob", "carol"))}
        coordinator = start("coordinator", "coordinator", "run", "--secure", "--rounds", "1", "--round-seconds", "300",
                            "--min-updates", "2", "--config", str(config), key=COORDINATOR)
        opened = coordinator.wait_for("opened", timeout=60)
        round_id = opened["round"]
        assert sorted(opened["cohort"]) == sorted(address.values())
        mark(f"round {round_id} opened, secure")

        # dave advertises its round keys, as its node would, and then drops out: it never submits
        dave = open_federation(workspace, account=anvil_keys[PARTIES["dave"]])
        store = open_store(workspace)
        info = dave.round(round_id)
        settings = fetch_round_config(store, info.config_hash).secure
        assert settings is not None
        advertise(dave, store, Journal(tmp_path / "dave-journal", role="participant", actor=address["dave"],
                                       round_id=round_id),
                  round_id=round_id, settings=settings, opened_block=info.opened_block)

        nodes["carol"].wait_for("submitted", timeout=90, where=lambda r: r["round"] == round_id)
        nodes["carol"].kill()  # submitted, and killed long before the deadline, so before any reveal
        mark("carol killed after submitting")
        for name in ("alice", "bob"):
            nodes[name].wait_for("submitted", timeout=90, where=lambda r: r["round"] == round_id)
        assert chain.now() <= info.deadline
        assert federation.client().round(round_id).state == "open"  # dave advertised and may still submit
        chain.advance(info.deadline - chain.now() + 1)  # past the deadline: dave is a dropout
        mark("past the deadline")

        revealed = {name: nodes[name].wait_for("revealed", timeout=60, where=lambda r: r["round"] == round_id)
                    for name in ("alice", "bob")}
        finalized = aggregator.wait_for("finalized", timeout=60, where=lambda r: r["round"] == round_id)
        assert coordinator.wait_exit(60) == 0
        mark("round finalized, coordinator done")
        assert sorted(finalized["included"]) == sorted(address[n] for n in ("alice", "bob", "carol"))
        assert finalized["dropouts"] == [address["dave"]]

        client = federation.client()
        receipt = Receipt.from_bytes(store.get(client.round(round_id).receipt_cid))
        assert [d.participant for d in receipt.dropouts] == [address["dave"]]
        assert {r.participant: r.cid for r in receipt.reveals} == {address[n]: revealed[n]["cid"] for n in revealed}
        assert receipt.wrong_reveals == []
        for name in ("alice", "bob"):  # one reveal each, none from the killed party
            assert len(nodes[name].matching("revealed")) == 1
        assert not nodes["carol"].matching("revealed")
        for service in (aggregator, nodes["alice"], nodes["bob"]):
            assert service.terminate() == 0, service.stderr
            assert "Traceback" not in service.stderr, service.stderr
        ok(cli("audit", "verify", *w))
        mark("audit verified")
    finally:
        for service in services:
            service.stop()
            service.save_events()


def test_a_secure_round_everyone_who_advertised_submitted_to_is_finalized_before_its_deadline(secure: Secure) -> None:
    """Party 3 never advertises; once a block is stamped past the key deadline the three others mask with
    one another, and with all three in the round is final: the aggregator does not wait for the deadline.
    In a second round, finalized after its deadline, a node with no dropped-out neighbour reveals nothing, and
    an aggregator whose store lacks an advertisement waits for it instead of giving the round up."""
    admin = secure.fed.admin
    nodes = [secure.node(i) for i in range(3)]
    aggregator = secure.aggregator()
    for round_number, early in ((1, True), (2, False)):
        round_id, config = secure.open_round(min_updates=2)
        for node in nodes:
            node.step()
        assert admin.round(round_id).submissions == 0
        secure.chain.advance(ROUND_SECONDS // 2 + 5)  # a block stamped past the key deadline, before the deadline
        for node in nodes:
            node.step()
        assert admin.round(round_id).submissions == 3
        if not early:
            secure.chain.advance(ROUND_SECONDS)
            nodes[0].step()
            assert secure.events("nothing-to-reveal", round=round_id)
            # An aggregator whose store lacks one party's advertisement waits for it (said once), then aggregates.
            board = read_board(admin, secure.store, round_id, config.secure)
            held, *rest = [str(doc.cid) for doc in board.advertised.values()]
            own = EmbeddedStore(secure.journal.parent / "aggregator-store")
            for cid in (config_cid(config.config_hash), secure.genesis, *rest,
                        *(s.cid for s in admin.submissions(round_id))):
                own.add_bytes(secure.store.get(cid), pin=True)
            aggregator = AggregatorService(federation=admin, store=own, journal_dir=secure.journal,
                                           log=secure.log("aggregator"), metrics=ServiceMetrics("aggregator"))
            aggregator.step()
            aggregator.step()
            (waiting,) = secure.events("secure-waiting", round=round_id)
            assert held in waiting["message"] and admin.round(round_id).state == "open"
            own.add_bytes(secure.store.get(held), pin=True)
        aggregator.step()
        info = admin.round(round_id)
        assert info.state == "finalized", round_number
        (finalized,) = secure.events("finalized", round=round_id)
        assert ("every party that advertised keys has submitted" in finalized["message"]) == early
        assert finalized["dropouts"] == [] and (secure.chain.now() <= info.deadline) == early


def test_a_round_whose_unmasking_would_expose_a_survivor_is_refused_by_the_node_and_the_aggregator(
    secure: Secure,
) -> None:
    """Four parties on a ring (two neighbours each): the two that submit are opposite corners, so every
    neighbour of each dropped out. No reveal is posted, and the aggregator aborts instead of waiting for one."""
    admin = secure.fed.admin
    round_id, config = secure.open_round(min_updates=2, neighbours=2, threshold=2)
    board = read_board(admin, secure.store, round_id, config.secure)
    first = secure.parties[0][0].address
    ring = neighbours_of(config.secure.params, first, board.context)
    opposite = next(i for i, (a, _) in enumerate(secure.parties) if a.address not in (first, *ring))
    survivors = [secure.node(0), secure.node(opposite)]
    for index, (account, _) in enumerate(secure.parties):
        if account.address in ring:
            secure.advertise(index, round_id)  # and drop out
    for node in [*survivors, survivors[0]]:  # the first to advertise waits for the second: one more step
        node.step()
    assert admin.round(round_id).submissions == 2
    secure.chain.advance(ROUND_SECONDS + 5)
    survivors[0].step()
    (refused,) = secure.events("cannot-reveal")
    assert "removing their masks would publish" in refused["message"]
    assert not read_board(admin, secure.store, round_id, config.secure).revealed

    aggregator = secure.aggregator()
    aggregator.step()
    assert not secure.events("secure-waiting")
    (aborted,) = secure.events("aborted")
    assert "removing their masks would publish" in aborted["reason"]
    assert admin.round(round_id).state == "cancelled"


def test_with_confirmations_a_node_reveals_once_a_settled_block_is_past_the_deadline(secure: Secure) -> None:
    """With ``confirmations = 2`` the deadline is judged by the block 2 under the head: the head past it
    is not enough (a submission not yet 2 deep could still be in the round); then the node reveals once
    (a reveal not 2 deep in time is tried again at the next step, and found on chain, not posted twice)."""
    admin = secure.fed.admin
    round_id, config = secure.open_round(min_updates=2)
    secure.advertise(3, round_id)  # the dropout
    nodes = [secure.node(i) for i in range(3)]
    for node in [*nodes, nodes[0], nodes[1]]:  # the first two wait once for the third's advertisement
        node.step()
    assert admin.round(round_id).submissions == 3
    secure.chain.advance(ROUND_SECONDS + 5)  # the head is past the deadline; the blocks under it are not

    account, _ = secure.parties[0]
    deep = FederationClient(secure.chain.w3, admin.address, account=account, from_block=admin.from_block,
                            policy=TxPolicy(confirmations=2, timeout_s=2))
    node = NodeService(federation=deep, store=secure.store, journal_dir=secure.journal, log=secure.log("deep"),
                       metrics=ServiceMetrics("node"), encryption_key=lambda: secure.keys[account.address])
    for _ in range(2):
        node.step()
        assert not read_board(admin, secure.store, round_id, config.secure).revealed  # nothing posted
        assert not secure.events("reveal-retry") and not secure.events("cannot-reveal")
        secure.chain.rpc("evm_mine", [])
    node.step()  # the deadline is 2 deep now; nothing mines, so the reveal is not 2 deep in time: tried again
    (retry,) = secure.events("reveal-retry")
    assert "was not mined and 2 blocks deep within 2 s" in retry["message"] and not secure.events("revealed")
    with mining(secure.chain.rpc):  # the reveal waits 2 blocks deep
        node.step()
        node.step()
    (revealed,) = secure.events("revealed")
    assert revealed["round"] == round_id
    assert account.address in read_board(admin, secure.store, round_id, config.secure).revealed
    posted = [log for log in admin._logs("RoundMessagePosted", roundId=round_id)  # every one, not the first only
              if int(log["args"]["kind"]) == RoundMessageKind.REVEAL]
    assert len(posted) == 1


def test_the_secure_coordinator_needs_a_cohort_at_start_and_waits_for_one_later(secure: Secure) -> None:
    """Refused at start, with round open --secure's sentence, when fewer than 3 admitted parties have a key;
    a cohort that shrinks later only delays the next opening (said once)."""
    admin = secure.fed.admin

    def coordinator() -> CoordinatorService:
        return CoordinatorService(
            federation=admin, store=secure.store, journal_dir=secure.journal, rounds=1, round_seconds=ROUND_SECONDS,
            min_updates=2, config=CONFIG, base_cid=secure.genesis, log=secure.log("coordinator"),
            metrics=ServiceMetrics("coordinator"), secure=SecureOptions(key_window=60),
        )

    late = coordinator()
    late.start()  # four parties with keys now
    for account, _ in secure.parties[:2]:
        admin.suspend(account.address)
    with pytest.raises(InvalidInputError, match="a secure round needs at least 3 parties in its cohort"):
        coordinator().start()
    late.step()
    late.step()
    (cannot,) = secure.events("cannot-open")
    assert "needs at least 3 parties" in cannot["message"] and admin.round_count() == 0
    admin.reinstate(secure.parties[0][0].address)
    late.step()
    (opened,) = secure.events("opened")
    assert len(opened["cohort"]) == 3 and opened["key_deadline"] == opened["deadline"] - ROUND_SECONDS + 60


def test_while_its_key_phase_is_open_a_secure_round_is_not_final_though_every_advertiser_submitted(
    secure: Secure,
) -> None:
    """Three parties advertise and submit at once, not waiting for the fourth (junk, as a rogue party may):
    before the key deadline the fourth may still advertise, so the aggregator does nothing early; once a
    block is past it, the round is final and judged (here: aborted, its vectors unusable)."""
    admin = secure.fed.admin
    round_id, config = secure.open_round(min_updates=1)
    junk = secure.store.add_bytes(b"submitted during the key phase", pin=True)
    for index in range(3):
        secure.advertise(index, round_id)
        secure.parties[index][1].submit_update(round_id, cid=junk, samples=10, metrics_hash=bytes(32))
    aggregator = secure.aggregator()
    aggregator.step()
    aggregator.step()
    assert admin.round(round_id).state == "open"
    assert not secure.events("secure-waiting") and not secure.events("aborted")
    secure.chain.advance(ROUND_SECONDS // 2 + 5)  # past the key deadline, before the deadline
    aggregator.step()
    (aborted,) = secure.events("aborted")
    assert "is not a masked update" in aborted["reason"] or "leaving it out" in aborted["reason"]
