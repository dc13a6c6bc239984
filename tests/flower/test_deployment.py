"""The example Flower app, then a task bundle as a Flower app, on Flower's Deployment Engine, against a real anvil.

A SuperLink and four SuperNodes run as processes on loopback: three admitted parties, each holding
only its own key, and one party the federation never admitted. Two plain server rounds run; then the
federation goes private (an agreement with an ε budget, which every party signs again, and
encryption keys for the aggregator and an auditor on chain) and a second run of the same app on the
same SuperNodes trains a private, sealed round: DP-SGD in each ClientApp, ε declared, updates
sealed to the two recipients and opened by the ServerApp with the aggregator's key. The ledger then
holds three finalized rounds that `fedledger audit verify --key auditor` recomputes bit for bit, ε
included; the store holds no plaintext update of the sealed round; the outsider, refused by the
contract before anything is pinned, is named in every receipt and recorded nowhere.

The parties train from the base model in the store: the train messages name it by CID and carry no
arrays. The private agreement also names the example app's FAB (as `agreement publish --flower-app`
does), which the private run is; a last run of the same app with one line changed (another FAB hash)
is refused by every party's ClientApp mod before training, and its round is aborted with a receipt
that names each party's refusal. Every SuperNode ran through ``node.flower.supernode``, its idle poll
of the SuperLink capped at 0.2 s (its log says so).

A task bundle then runs as a Flower app on the same SuperLink and SuperNodes (issue 22): the task app
(``node/flower/task_app``) trains one round of a second federation on the same anvil, whose agreement
names the built-in task ``mlp`` (its bundle pinned, as `agreement publish --task mlp` pins it) and
admits two of the three parties. (A second federation, because a federation's Flower runs go on with
one model, and the task's ``digits-mlp`` is not the example app's ``mlp``.) The SuperNodes find their
workspace through a link, which the test re-points to that federation's workspace for this run. The
ServerApp makes the genesis model with the task's ``model()`` (as `model init --task mlp` does), each
admitted party trains in a task process on its shard, the third party and the outsider are refused by
the contract and named in the receipt; the round's config names the task and its declared settings,
every update and the genesis model name it in their metadata, and the audit's task checks pass. The
first federation's audit runs beside that run.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

pytest.importorskip("flwr")

from flwr.cli.build import build_fab_from_disk  # noqa: E402

from deploy.anvil import AnvilProcess  # noqa: E402
from ledger.chain.connection import chain_now  # noqa: E402
from ledger.chain.federation import FederationClient  # noqa: E402
from ledger.chain.keys import PRIVATE_KEY_ENV, create_keystore  # noqa: E402
from ledger.errors import WeightsError  # noqa: E402
from ledger.fixed_point import epsilon_to_micros  # noqa: E402
from ledger.index.index import LedgerIndex  # noqa: E402
from ledger.ipfs.store import EmbeddedStore  # noqa: E402
from ledger.sealing.format import decode  # noqa: E402
from ledger.sealing.keys import CONFIG_TABLE, create_encryption_keyfile  # noqa: E402
from ledger.weights import from_safetensors  # noqa: E402
from ledger.workspace import Workspace  # noqa: E402
from node.audit.verify import verify_ledger  # noqa: E402
from node.demo import KEY_PASSWORD, TERMS, DemoOptions, found_federation  # noqa: E402
from node.flower.demo import flower_run_config  # noqa: E402
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment  # noqa: E402
from node.privacy.accountant import cumulative_epsilon  # noqa: E402
from node.privacy.demo_settings import DELTA, EPSILON_BUDGET, private_demo_settings  # noqa: E402
from node.receipt import Receipt  # noqa: E402
from node.round_config import RoundConfig, TrainingSettings, config_cid  # noqa: E402
from node.tasks.agreement import FlowerApp, agreement_document, fab_sha256  # noqa: E402
from node.tasks.builtin import resolve_task  # noqa: E402
from tests.fixtures_chain import TestChain  # noqa: E402
from tests.fixtures_cli import run_fedledger  # noqa: E402

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PLAIN_ROUNDS = 2
ROUNDS = PLAIN_ROUNDS + 1  # the last one private and sealed
TASK_APP = EXAMPLE_APP.parent / "task_app"


def task_federation(chain: TestChain, rpc: str, root: Path, admin: LocalAccount, parties: list[LocalAccount],
                    outsider: LocalAccount) -> tuple[Workspace, FederationClient, str]:
    """A second federation on the same anvil, in a workspace of its own, whose agreement names the built-in task
    ``mlp`` (its bundle pinned, as `agreement publish --task mlp` pins it) and admits ``parties``; its keys are the
    first federation's admin's and the outsider's. Returns the workspace, the admin's client and the task's CID."""
    workspace = Workspace.init(root, rpc=rpc)
    store = EmbeddedStore(workspace.store_dir)
    federation, deployed = FederationClient.deploy(chain.w3, account=admin)
    for key, value in (("address", federation.address), ("chain_id", federation.chain_id), ("block", deployed.block)):
        workspace.set("deployment", key, value)
    for name, account in (("admin", admin), ("outsider", outsider)):
        create_keystore(workspace.keys_dir / f"{name}.json", KEY_PASSWORD, account.key, iterations=2)
    workspace.set("keys", "admin", "keys/admin.json")
    workspace.save()
    task = resolve_task("mlp", store)
    version, _ = federation.publish_agreement(store.add_bytes(agreement_document(task, store.add_bytes(TERMS, pin=True)),
                                                              pin=True))
    deadline = chain_now(chain.w3) + 600
    for party in parties:
        signature = federation.sign_join(party, version=version, deadline=deadline)
        federation.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)
        federation.approve(party.address)
    return workspace, federation, task


def go_private(federation, parties, chain: TestChain, workspace: Workspace) -> tuple[str, str]:  # noqa: ANN001
    """An agreement with an ε budget, naming the example app's FAB, that every party signs again, and the
    aggregator's (the admin's) and an auditor's encryption keys registered on chain and kept in the workspace;
    returns the recipients."""
    store = EmbeddedStore(workspace.store_dir)
    fab = build_fab_from_disk(EXAMPLE_APP)  # what `flwr run` builds and names the run by
    app = FlowerApp(sha256=fab_sha256(fab), cid=store.add_bytes(fab, pin=True))
    document = agreement_document(None, store.add_bytes(TERMS, pin=True), flower_app=app)
    version, _ = federation.publish_agreement(store.add_bytes(document, pin=True), epsilon_budget=EPSILON_BUDGET,
                                              delta=DELTA)
    deadline = chain_now(chain.w3) + 600
    for party in parties:
        signature = federation.sign_join(party, version=version, deadline=deadline)
        federation.with_account(party).join(party.address, version=version, deadline=deadline, signature=signature)
    auditor = chain.new_account()
    for name, client in (("aggregator", federation), ("auditor", federation.with_account(auditor))):
        path = workspace.keys_dir / "encryption" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        client.publish_encryption_key(create_encryption_keyfile(path, KEY_PASSWORD, iterations=2**4))
        workspace.set(CONFIG_TABLE, name, str(path.relative_to(workspace.root)))
    workspace.save()
    return federation.account.address, auditor.address


def check_task_round(workspace: Workspace, federation: FederationClient, task: str, *, trained: list[LocalAccount],
                     refused: list[LocalAccount]) -> None:
    """The task app's round trained the task through the task path: its config names the task and its declared
    settings, it started from the task's genesis model, every recorded update names the task, the parties the
    contract refused are named in the receipt, and the audit's task checks pass."""
    store = EmbeddedStore(workspace.store_dir)
    info = federation.round(1)
    assert federation.round_count() == 1 and info.state == "finalized"
    config = RoundConfig.from_bytes(store.get(config_cid(info.config_hash)))
    assert config.model == "digits-mlp" and config.task is not None and config.task.cid == task
    assert (config.training.epochs, config.training.batch_size) == (2, 32)  # the task's own settings
    _, genesis = from_safetensors(store.get(info.base_cid))  # made by the task's model(), as `model init --task` makes it
    assert genesis["task"] == task
    submissions = federation.submissions(1)
    addresses = sorted(party.address.lower() for party in trained)
    assert sorted(s.participant.lower() for s in submissions) == addresses
    for submission in submissions:  # each party trained in its task process, on its own shard of the digits
        _, metadata = from_safetensors(store.get(submission.cid))
        assert metadata["task"] == task and metadata["participant"].lower() == submission.participant.lower(), metadata
    receipt = Receipt.from_bytes(store.get(info.receipt_cid))
    assert sorted(entry.participant.lower() for entry in receipt.included) == addresses
    assert sorted(entry.participant.lower() for entry in receipt.unrecorded) == sorted(a.address.lower() for a in refused)
    assert all("is not an admitted participant" in entry.reason for entry in receipt.unrecorded), receipt.unrecorded
    with LedgerIndex.for_federation(workspace.index_path, federation) as index:
        report = verify_ledger(federation, store, index, progress=False)
    assert report.ok and report.not_recomputed == [], report.failures
    tasks = [(check.round_id, check.ok) for check in report.checks if check.check == "task"]
    assert tasks == [(1, True), (1, True)], tasks  # the config names the agreement's task; so does the global model
    assert [(c.round_id, c.ok) for c in report.checks if c.check == "aggregate"] == [(1, True)]


@pytest.mark.timeout(1200)
def test_flower_rounds_plain_then_private_and_sealed_are_audited_and_an_unadmitted_supernode_is_refused_and_named(
    anvil: AnvilProcess, chain: TestChain, tmp_path: Path
) -> None:
    workspace = Workspace.init(tmp_path / "federation", rpc=anvil.rpc_url)
    store = EmbeddedStore(workspace.store_dir)
    options = DemoOptions(participants=3, rounds=PLAIN_ROUNDS, chain="anvil", training=TrainingSettings(epochs=1))
    federation, parties = found_federation(options, w3=chain.w3, workspace=workspace, store=store, track=lambda *_: None)
    outsider = chain.new_account()  # funded, never joined nor admitted
    create_keystore(workspace.keys_dir / "outsider.json", KEY_PASSWORD, outsider.key, iterations=2)

    run_config = {**flower_run_config(options), "min-nodes": 4, "min-updates": 3}
    dp, _ = private_demo_settings(1)
    # The SuperLink and SuperNodes find their workspace through a link: the last run, of the task app, re-points it.
    workdir = tmp_path / "workdir"
    workdir.symlink_to(workspace.root, target_is_directory=True)
    env = {"FEDLEDGER_WORKDIR": str(workdir), "FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}
    with FlowerDeployment(tmp_path / "flower", env=env) as flower:
        flower.start_superlink()
        for i, party in enumerate(parties):
            flower.start_supernode(f"party{i + 1}", {"partition-id": i, "num-partitions": 4},
                                   env={PRIVATE_KEY_ENV: Web3.to_hex(party.key)})
        flower.start_supernode("outsider", {"partition-id": 3, "num-partitions": 4, "fedledger-key": "outsider"})
        output = flower.run(EXAMPLE_APP, run_config, timeout=1000)
        assert f"ledger round {PLAIN_ROUNDS} finalized" in output, output

        aggregator, auditor = go_private(federation, parties, chain, workspace)
        private = {**run_config, "num-server-rounds": 1, "dp-noise": dp.noise_multiplier, "dp-clip": dp.max_grad_norm,
                   "dp-sample-rate": dp.sample_rate, "dp-steps": dp.steps, "seal-to": f"{aggregator},{auditor}",
                   "fedledger-encryption-key": "aggregator"}
        output = flower.run(EXAMPLE_APP, private, timeout=600)
        assert f"ledger round {ROUNDS} finalized" in output, output

        # The same app with one line added, another FAB hash than the agreed one; a line that would make the
        # train handler fail, so only the mod, before any training, can answer with the party's refusal.
        changed = tmp_path / "changed_app"
        shutil.copytree(EXAMPLE_APP, changed, ignore=shutil.ignore_patterns("__pycache__"))
        with (changed / "fedledger_digits" / "client_app.py").open("a", encoding="utf-8") as source:
            source.write("load_digits_split = None  # a line no party agreed to\n")
        output = flower.run(changed, private, timeout=300)
        assert f"ledger round {ROUNDS + 1} aborted" in output, output
        # That federation's ledger is complete: its audit runs beside the task app's run.
        auditing = ThreadPoolExecutor(max_workers=1)
        audit = auditing.submit(run_fedledger, "audit", "verify", "--json", "--key", "auditor", "--workdir",
                                str(workspace.root), env={"FEDLEDGER_KEY_PASSWORD": KEY_PASSWORD}, timeout=300)

        # The task app, one round on the same SuperNodes, of a federation whose agreement names the built-in task
        # mlp and admits two of the parties (another federation: the example app's rounds are of another model).
        task_workspace, task_ledger, task = task_federation(chain, anvil.rpc_url, tmp_path / "task-federation",
                                                            federation.account, parties[:2], outsider)
        workdir.unlink()
        workdir.symlink_to(task_workspace.root, target_is_directory=True)
        output = flower.run(TASK_APP, {"num-server-rounds": 1, "min-nodes": 4, "min-updates": 2, "seed": 0}, timeout=300)
        assert "ledger round 1 finalized" in output, output
    check_task_round(task_workspace, task_ledger, task, trained=parties[:2], refused=[parties[2], outsider])

    admitted = sorted(party.address.lower() for party in parties)
    assert federation.round_count() == ROUNDS + 1
    # Every party, the outsider too, refused the changed app's run before training; the abort names the receipt
    # that names each refusal, and nothing of that round was recorded.
    assert federation.round(ROUNDS + 1).state != "finalized" and federation.submissions(ROUNDS + 1) == []
    [aborted] = federation.contract.events.RoundAborted().get_logs(from_block=0)
    assert aborted["args"]["roundId"] == ROUNDS + 1
    reason = aborted["args"]["reason"]
    assert "; receipt " in reason, f"the abort names no receipt of the refusals: {reason}"
    receipt = Receipt.from_bytes(store.get(reason.split("; receipt ")[1].split()[0]))
    agreed, other = fab_sha256(build_fab_from_disk(EXAMPLE_APP)), fab_sha256(build_fab_from_disk(changed))
    assert sorted(entry.participant.lower() for entry in receipt.unrecorded) == sorted([*admitted, outsider.address.lower()])
    for entry in receipt.unrecorded:
        assert entry.cid == "" and entry.reason.startswith("the party refused the run: run "), entry
        assert f"runs the Flower app with sha256 {other}, but agreement version" in entry.reason, entry
        assert f"names {agreed}" in entry.reason, entry
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
        assert not refused.cid or not store.has(refused.cid)  # refused before anything was pinned (or trained)
        if round_id > 1:  # each round starts from the last result, across the two runs too
            assert info.base_cid == federation.round(round_id - 1).global_cid
    # Each party declared the ε the accountant gives for one round of these settings; the sealed round's
    # receipt committed to every plaintext it opened.
    epsilon = epsilon_to_micros(cumulative_epsilon([dp], DELTA))
    assert {s.participant.lower(): s.epsilon_micros for s in federation.submissions(ROUNDS)} == dict.fromkeys(admitted, epsilon)
    assert all(federation.privacy(party.address)[0] == epsilon for party in parties)
    assert len(Receipt.from_bytes(store.get(federation.round(ROUNDS).receipt_cid)).sealed) == len(parties)
    # A reader without a key finds no plaintext update of the sealed round: its updates are envelopes to the two
    # recipients, and no blob in the store is a weights file naming that round.
    for submission in federation.submissions(ROUNDS):
        envelope = decode(store.get(submission.cid))
        assert (envelope.context.round_id, envelope.context.sender) == (ROUNDS, submission.participant)
        assert sorted(slot.address for slot in envelope.recipients) == sorted([aggregator, auditor])
    for cid in store.pins():
        try:
            _, metadata = from_safetensors(store.get(cid))
        except (WeightsError, ValueError):
            continue
        assert not ("participant" in metadata and metadata.get("round") == ROUNDS), f"plaintext update {cid} in the store"

    verified = audit.result()
    auditing.shutdown()
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    report = verified.json()
    assert report["ok"] is True and report["not_recomputed"] == []
    aggregates = [check for check in report["checks"] if check["check"] == "aggregate"]
    assert [(check["round_id"], check["ok"]) for check in aggregates] == [(r, True) for r in range(1, ROUNDS + 1)]
    privacy = [check for check in report["checks"] if check["check"] == "privacy" and check["round_id"] == ROUNDS]
    assert len(privacy) == len(parties) and all(check["ok"] for check in privacy), privacy
    for name in ("party1", "party2", "party3", "outsider"):  # every SuperNode polled its SuperLink every 0.2 s, not 3 s
        assert "its idle poll capped at 0.2 s" in (tmp_path / "flower" / "logs" / f"{name}.log").read_text(), name
