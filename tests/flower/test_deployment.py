"""The example Flower app on Flower's Deployment Engine, against a real anvil and a shared store.

A SuperLink and four SuperNodes run as processes on loopback: three admitted parties, each holding
only its own key, and one party the federation never admitted. Three server rounds later the
ledger holds three finalized rounds that `fedledger audit verify` recomputes bit for bit, and the
outsider's update, refused by the contract, is named in every receipt and recorded nowhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

pytest.importorskip("flwr")

from deploy.anvil import AnvilProcess  # noqa: E402
from ledger.chain.keys import PRIVATE_KEY_ENV, create_keystore  # noqa: E402
from ledger.ipfs.store import EmbeddedStore  # noqa: E402
from ledger.workspace import Workspace  # noqa: E402
from node.demo import KEY_PASSWORD, DemoOptions, found_federation  # noqa: E402
from node.flower.demo import flower_run_config  # noqa: E402
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment  # noqa: E402
from node.receipt import Receipt  # noqa: E402
from node.round_config import TrainingSettings  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.fixtures_cli import run_fedledger  # noqa: E402

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ROUNDS = 3


@pytest.mark.timeout(1200)
def test_three_flower_rounds_are_audited_and_an_unadmitted_supernode_is_refused_and_named(
    anvil: AnvilProcess, chain: TestChain, tmp_path: Path
) -> None:
    workspace = Workspace.init(tmp_path / "federation", rpc=anvil.rpc_url)
    store = EmbeddedStore(workspace.store_dir)
    options = DemoOptions(participants=3, rounds=ROUNDS, chain="anvil", training=TrainingSettings(epochs=1))
    federation, parties = found_federation(options, w3=chain.w3, workspace=workspace, store=store, track=lambda *_: None)
    outsider = chain.new_account()  # funded, never joined nor admitted
    create_keystore(workspace.keys_dir / "outsider.json", KEY_PASSWORD, outsider.key, iterations=2)

    run_config = {**flower_run_config(options), "min-nodes": 4, "min-updates": 3}
    env = {"FEDLEDGER_WORKDIR": str(workspace.root), "FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}
    with FlowerDeployment(tmp_path / "flower", env=env) as flower:
        flower.start_superlink()
        for i, party in enumerate(parties):
            flower.start_supernode(f"party{i + 1}", {"partition-id": i, "num-partitions": 4},
                                   env={PRIVATE_KEY_ENV: Web3.to_hex(party.key)})
        flower.start_supernode("outsider", {"partition-id": 3, "num-partitions": 4, "fedledger-key": "outsider"})
        output = flower.run(EXAMPLE_APP, run_config, timeout=1000)
    assert "ledger round 3 finalized" in output, output

    admitted = sorted(party.address.lower() for party in parties)
    assert federation.round_count() == ROUNDS
    for round_id in range(1, ROUNDS + 1):
        info = federation.round(round_id)
        assert info.state == "finalized"
        assert sorted(s.participant.lower() for s in federation.submissions(round_id)) == admitted
        receipt = Receipt.from_bytes(store.get(info.receipt_cid))
        assert sorted(entry.participant.lower() for entry in receipt.included) == admitted
        assert receipt.rejected == []
        [refused] = receipt.unrecorded
        assert refused.participant == outsider.address
        assert "the contract refused to record it" in refused.reason and "is not an admitted participant" in refused.reason, refused
        assert not store.has(refused.cid)  # refused before anything was pinned
    assert federation.round(2).base_cid == federation.round(1).global_cid  # each round starts from the last result

    verified = run_fedledger("audit", "verify", "--json", "--workdir", str(workspace.root), timeout=300)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    report = verified.json()
    assert report["ok"] is True
    aggregates = [check for check in report["checks"] if check["check"] == "aggregate"]
    assert [check["ok"] for check in aggregates] == [True] * ROUNDS
