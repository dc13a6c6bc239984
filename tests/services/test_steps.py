"""The services' steps one at a time, in this process, on a real anvil whose clock the test moves
(and sets an hour behind the wall clock, which must change nothing):
what the aggregator does at and after a deadline, how the coordinator reopens a cancelled round
and gives up on one nobody takes part in, how it adopts a round it opened just before a crash,
and how a node settles a round it may not take part in."""

from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from web3.exceptions import BlockNotFound

from ledger.chain.contract_errors import FederationNotParticipant
from ledger.chain.federation import FederationClient
from ledger.chain.finality import ChainMovedError, SettledFederation, chain_moved, settled
from ledger.chain.transactions import TxPolicy
from ledger.errors import InvalidInputError
from ledger.ipfs.store import EmbeddedStore
from node.data import Dataset, load_digits_split
from node.demo import TERMS
from node.genesis import genesis_model_bytes
from node.round_config import RoundConfig, TrainingSettings
from node.services.aggregator_service import AggregatorService
from node.services.clock import chain_time, decision_time
from node.services.coordinator_service import CoordinatorGaveUpError, CoordinatorService, Schedule, schedule_path
from node.services.log import ServiceLog
from node.services.metrics import ServiceMetrics
from node.services.participant_service import NodeService
from node.strategies import make_strategy
from tests.fixtures_chain import TestChain
from tests.services.harness import mining

pytestmark = pytest.mark.anvil

CONFIG = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(), training=TrainingSettings(epochs=1))


@dataclass
class Setup:
    chain: TestChain
    admin: FederationClient
    store: EmbeddedStore
    parties: list[LocalAccount]
    shards: list[Dataset]
    genesis: str
    journal: Path
    out: io.StringIO

    def log(self, service: str) -> ServiceLog:
        return ServiceLog(service, json_lines=True, machine=self.out)

    def events(self, event: str | None = None) -> list[dict]:
        records = [json.loads(line) for line in self.out.getvalue().splitlines()]
        return [r for r in records if event is None or r["event"] == event]

    def aggregator(self) -> AggregatorService:
        return AggregatorService(federation=self.admin, store=self.store, journal_dir=self.journal,
                                 log=self.log("aggregator"), metrics=ServiceMetrics("aggregator"))

    def coordinator(self, *, rounds: int = 1, min_updates: int = 1, max_reopens: int = 3) -> CoordinatorService:
        return CoordinatorService(
            federation=self.admin, store=self.store, journal_dir=self.journal, rounds=rounds, round_seconds=600,
            min_updates=min_updates, config=CONFIG, base_cid=self.genesis, log=self.log("coordinator"),
            metrics=ServiceMetrics("coordinator"), max_reopens=max_reopens,
        )

    def node(self, index: int) -> NodeService:
        return NodeService(federation=self.admin.with_account(self.parties[index]), store=self.store,
                           data=self.shards[index], journal_dir=self.journal, log=self.log("node"),
                           metrics=ServiceMetrics("node"))

    def open_round(self, *, min_updates: int, seconds: int = 600) -> int:
        self.store.add_bytes(CONFIG.to_bytes(), pin=True)
        round_id, _ = self.admin.open_round(base_cid=self.genesis, deadline=self.chain.now() + seconds,
                                            min_updates=min_updates, config_hash=CONFIG.config_hash)
        return round_id

    def past_deadline(self, round_id: int) -> None:
        self.chain.advance(self.admin.round(round_id).deadline - self.chain.now() + 5)


LAG_S = 3600


@pytest.fixture
def setup(chain: TestChain, tmp_path: Path) -> Setup:
    # The chain's clock an hour behind the wall clock, as a local chain's gets after reverted snapshots:
    # every deadline below must be judged by the chain's clock, as the contract judges it.
    chain.rpc("anvil_setTime", [int(time.time()) - LAG_S])
    chain.rpc("evm_mine", [])
    admin = FederationClient.deploy(chain.w3, account=chain.keys[0])[0]
    store = EmbeddedStore(tmp_path / "store")
    version, _ = admin.publish_agreement(store.add_bytes(TERMS, pin=True))
    parties = chain.keys[5:7]
    deadline = chain.now() + 3600
    for party in parties:
        signature = admin.sign_join(party, version=version, deadline=deadline)
        admin.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)
        admin.approve(party.address)
    shards, _ = load_digits_split(parties=4, seed=0)
    genesis = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
    return Setup(chain, admin, store, parties, shards[:2], genesis, tmp_path / "journal", io.StringIO())


def test_the_aggregator_waits_for_every_entitled_party_until_the_deadline(setup: Setup) -> None:
    round_id = setup.open_round(min_updates=1)
    aggregator = setup.aggregator()
    setup.node(0).step()  # one of the two entitled parties submits
    aggregator.step()
    assert setup.admin.round(round_id).state == "open"  # the minimum is met, but bob may still submit
    setup.past_deadline(round_id)
    aggregator.step()
    assert setup.admin.round(round_id).state == "finalized"
    [finalized] = setup.events("finalized")
    assert "its deadline passed with 1 of 2 entitled parties" in finalized["message"]
    assert finalized["included"] == [setup.parties[0].address]


def test_the_aggregator_cancels_a_late_round_below_its_minimum_and_nothing_earlier(setup: Setup) -> None:
    round_id = setup.open_round(min_updates=2)
    aggregator = setup.aggregator()
    setup.node(0).step()
    aggregator.step()
    assert setup.admin.round(round_id).state == "open" and not setup.events("cancelled")
    setup.past_deadline(round_id)
    aggregator.step()
    assert setup.admin.round(round_id).state == "cancelled"
    assert "with 1 of its minimum 2 updates" in setup.events("cancelled")[0]["message"]


def test_the_coordinator_reopens_a_cancelled_round_on_its_base_then_finishes(setup: Setup) -> None:
    coordinator = setup.coordinator(rounds=1, min_updates=2)
    assert coordinator.step() is False
    assert setup.admin.round(1).base_cid == setup.genesis
    setup.past_deadline(1)
    coordinator.step()  # cancels the round nobody submitted to
    assert setup.admin.round(1).state == "cancelled"
    coordinator.step()  # and opens it again, on the same base
    reopened = setup.admin.round(2)
    assert (reopened.state, reopened.base_cid, reopened.min_updates) == ("open", setup.genesis, 2)
    assert setup.events("reopening")[0]["round"] == 1

    setup.node(0).step()
    setup.node(1).step()
    setup.aggregator().step()
    assert setup.admin.round(2).state == "finalized"
    assert coordinator.step() is True
    assert setup.events("complete")[0]["rounds"] == [2]
    assert setup.admin.round_count() == 2

    # A restarted coordinator reads its schedule from the journal: the work is done, nothing opens.
    assert setup.coordinator(rounds=1, min_updates=2).step() is True
    assert setup.admin.round_count() == 2


def test_a_round_finalized_while_the_coordinator_looks_completes_the_schedule(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    coordinator = setup.coordinator(rounds=1)
    coordinator.step()
    setup.node(0).step()
    read = setup.admin.round
    finalized_once: list[int] = []

    def read_then_finalize(round_id: int) -> object:
        info = read(round_id)  # open when read ...
        if not finalized_once:
            finalized_once.append(round_id)
            setup.aggregator().step()  # ... and finalized right after (the deadline is not needed: min 1)
        return info

    setup.past_deadline(1)  # so the aggregator finalizes with one of two entitled parties
    monkeypatch.setattr(setup.admin, "round", read_then_finalize)
    assert coordinator.step() is True  # counted as the last round, not a base to open one more on
    assert setup.admin.round_count() == 1


def test_the_coordinator_gives_up_when_rounds_keep_being_cancelled(setup: Setup) -> None:
    coordinator = setup.coordinator(rounds=1, max_reopens=1)
    coordinator.step()
    for round_id in (1, 2):
        setup.past_deadline(round_id)
        coordinator.step()  # cancel
        if round_id == 1:
            coordinator.step()  # reopen
    with pytest.raises(CoordinatorGaveUpError, match="cancelled below its minimum of 1 updates, 2 times in a row"):
        coordinator.step()
    assert setup.admin.round_count() == 2


def test_the_coordinator_adopts_the_round_it_opened_just_before_a_crash(setup: Setup) -> None:
    # What a crash right after the open transaction leaves: the intent in the journal, the round on chain.
    Schedule(rounds=[], pending={"base": setup.genesis, "config_hash": CONFIG.config_hash.hex(), "after": 0}).save(
        schedule_path(setup.journal, setup.admin))
    setup.open_round(min_updates=1)
    restarted = setup.coordinator(rounds=2)
    restarted.step()
    assert setup.admin.round_count() == 1  # adopted, not opened again
    assert Schedule.load(restarted.path).rounds == [1]
    assert setup.events("adopted")[0]["round"] == 1


def test_a_node_settles_a_round_it_may_not_take_part_in_and_stops_when_suspended(setup: Setup) -> None:
    round_id = setup.open_round(min_updates=1, seconds=60)
    setup.past_deadline(round_id)
    node = setup.node(0)
    node.step()
    node.step()  # settled: not looked at again
    [skipped] = setup.events("not-taking-part")
    assert skipped["round"] == round_id and "stopped taking updates at its deadline" in skipped["message"]
    assert not setup.admin.has_submitted(round_id, setup.parties[0].address)

    setup.admin.suspend(setup.parties[0].address)
    with pytest.raises(FederationNotParticipant, match="is not an admitted participant \\(it is suspended\\)"):
        node.step()


def test_with_confirmations_a_service_sees_the_chain_that_many_blocks_under_its_head(setup: Setup) -> None:
    """The settled view (ledger.chain.finality): reads at ``head - N``, logs above it left out, deadlines
    judged by that block's time; with N = 0 the client itself, as before."""
    admin, w3 = setup.admin, setup.chain.w3
    assert settled(admin) is admin and decision_time(admin) == chain_time(w3)
    reader = FederationClient(w3, admin.address, from_block=admin.from_block, policy=TxPolicy(confirmations=2))
    round_id = setup.open_round(min_updates=1)
    opened = w3.eth.block_number
    view = settled(reader)
    assert isinstance(view, SettledFederation) and view.block == opened - 2
    assert (view.round_count(), view.open_round_ids()) == (0, [])
    with pytest.raises(InvalidInputError, match=f"there is no round {round_id}"):
        view.round(round_id)

    setup.node(0).step()  # submits (node's client: no confirmations), one block
    setup.chain.rpc("evm_mine", [])
    view = settled(reader)
    assert view.block == opened and view.open_round_ids() == [round_id]
    assert view.round(round_id).submissions == 0 and view.submissions(round_id) == []
    assert not view.has_submitted(round_id, setup.parties[0].address)
    assert reader.has_submitted(round_id, setup.parties[0].address)  # the client itself reads the latest block
    assert decision_time(view) == w3.eth.get_block(opened)["timestamp"]

    setup.chain.rpc("evm_mine", [])
    view = settled(reader)
    assert view.round(round_id).submissions == 1 and len(view.submissions(round_id)) == 1
    assert view.has_submitted(round_id, setup.parties[0].address)
    assert not chain_moved(view) and not chain_moved(admin)
    setup.chain.rpc("anvil_reorg", [3, []])  # replaces the view's block: a step that reads on decides again
    assert chain_moved(view)
    assert not settled(reader).has_submitted(round_id, setup.parties[0].address)


def test_with_confirmations_the_aggregator_judges_a_deadline_by_the_settled_block(setup: Setup) -> None:
    """A round below its minimum is cancelled once a block 2 deep is past its deadline, not when the head is."""
    round_id = setup.open_round(min_updates=2)
    setup.past_deadline(round_id)  # the head is past the deadline; the blocks under it are not
    deep = FederationClient(setup.chain.w3, setup.admin.address, account=setup.chain.keys[0],
                            from_block=setup.admin.from_block, policy=TxPolicy(confirmations=2, timeout_s=10))
    aggregator = AggregatorService(federation=deep, store=setup.store, journal_dir=setup.journal,
                                   log=setup.log("aggregator"), metrics=ServiceMetrics("aggregator"))
    for _ in range(2):
        aggregator.step()
        assert setup.admin.round(round_id).state == "open"
        setup.chain.rpc("evm_mine", [])
    with mining(setup.chain.rpc):  # the cancellation waits 2 blocks deep
        aggregator.step()
    assert setup.admin.round(round_id).state == "cancelled"
    assert [r["round"] for r in setup.events("cancelled")] == [round_id]


def reorganizing_on_first_call(monkeypatch: pytest.MonkeyPatch, chain: TestChain, cls: type, name: str, depth: int) -> None:
    """Make ``cls.name`` replace the last ``depth`` blocks just before its first call: the chain moves mid-step."""
    original = getattr(cls, name)
    done: list[bool] = []

    def moved_first(self: object, *args: object, **kwargs: object) -> object:
        if not done:
            done.append(True)
            chain.rpc("anvil_reorg", [depth, []])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, name, moved_first)


def test_a_step_that_a_reorg_interrupts_decides_again_instead_of_settling_or_stopping(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With confirmations, a round listed as open and then gone (a reorg removed its opening while the
    step ran) neither stops the aggregator nor is settled by a node: the next step decides again."""
    w3, admin = setup.chain.w3, setup.admin
    round_id = setup.open_round(min_updates=1)
    for _ in range(2):
        setup.chain.rpc("evm_mine", [])  # the opening 2 blocks deep: in both services' settled view
    depth = w3.eth.block_number - admin.round(round_id).opened_block + 1  # from the opening up
    policy = TxPolicy(confirmations=2, timeout_s=10)

    aggregator = AggregatorService(
        federation=FederationClient(w3, admin.address, account=setup.chain.keys[0], from_block=admin.from_block, policy=policy),
        store=setup.store, journal_dir=setup.journal, log=setup.log("aggregator"), metrics=ServiceMetrics("aggregator"))
    with monkeypatch.context() as patch:
        reorganizing_on_first_call(patch, setup.chain, SettledFederation, "round", depth)
        assert aggregator.step() is False  # "there is no round 1", read after the reorg: not a reason to stop
    assert [e["event"] for e in setup.events()] == ["chain-moved"]

    round_id = setup.open_round(min_updates=1)  # round 1 again: the reorg took the first opening
    for _ in range(2):
        setup.chain.rpc("evm_mine", [])
    depth = w3.eth.block_number - admin.round(round_id).opened_block + 1
    party = FederationClient(w3, admin.address, account=setup.parties[0], from_block=admin.from_block, policy=policy)
    node = NodeService(federation=party, store=setup.store, data=setup.shards[0], journal_dir=setup.journal,
                       log=setup.log("node"), metrics=ServiceMetrics("node"))
    with monkeypatch.context() as patch:
        reorganizing_on_first_call(patch, setup.chain, FederationClient, "has_submitted", depth)
        node.step()
    assert round_id not in node.settled  # so a round opened again under the same id is taken part in
    assert setup.events()[-1]["event"] == "chain-moved"


def test_with_confirmations_the_coordinator_waits_for_its_round_deep_and_drops_one_a_reorg_removed(setup: Setup) -> None:
    """A round of the schedule on chain but not yet 2 deep is waited for (not opened again, not dropped);
    one whose opening a reorg removed leaves the schedule, to be opened again."""
    Schedule(rounds=[1]).save(schedule_path(setup.journal, setup.admin))  # as if this coordinator had opened it
    setup.open_round(min_updates=1)  # at the head: 0 blocks deep
    admin = setup.admin
    deep = FederationClient(setup.chain.w3, admin.address, account=setup.chain.keys[0], from_block=admin.from_block,
                            policy=TxPolicy(confirmations=2, timeout_s=10))
    coordinator = CoordinatorService(
        federation=deep, store=setup.store, journal_dir=setup.journal, rounds=1, round_seconds=600, min_updates=1,
        config=CONFIG, base_cid=setup.genesis, log=setup.log("coordinator"), metrics=ServiceMetrics("coordinator"))
    assert coordinator.step() is False
    assert (admin.round_count(), coordinator.schedule.rounds, setup.events()) == (1, [1], [])
    setup.chain.rpc("anvil_reorg", [3, []])  # the opening is gone
    assert coordinator.step() is False
    [reorganized] = setup.events("reorganized")
    assert reorganized["rounds"] == [1] and Schedule.load(coordinator.path).rounds == []


def test_a_settled_block_not_found_mid_reorg_is_asked_for_again_then_the_step_waits(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node in the middle of a reorganization may name a head whose blocks it then cannot find."""
    w3, admin = setup.chain.w3, setup.admin
    reader = FederationClient(w3, admin.address, account=setup.chain.keys[0], from_block=admin.from_block,
                              policy=TxPolicy(confirmations=2))
    eth = type(w3.eth)
    original, missing = eth.get_block, [1]

    def get_block(self: Any, block_identifier: Any, *args: Any, **kwargs: Any) -> Any:
        if missing and isinstance(block_identifier, int):
            missing.pop()
            raise BlockNotFound(f"Block with id: {block_identifier!r} not found.")
        return original(self, block_identifier, *args, **kwargs)

    monkeypatch.setattr(eth, "get_block", get_block)
    assert isinstance(settled(reader), SettledFederation) and not missing  # asked again
    missing.extend([1] * 5)
    with pytest.raises(ChainMovedError):
        settled(reader)
    missing.extend([1] * 5)
    aggregator = AggregatorService(federation=reader, store=setup.store, journal_dir=setup.journal,
                                   log=setup.log("aggregator"), metrics=ServiceMetrics("aggregator"))
    assert aggregator.step() is False  # not a reason to stop: decided again at the next step
    assert [e["event"] for e in setup.events()] == ["chain-moved"]
