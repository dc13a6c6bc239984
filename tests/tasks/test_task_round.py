"""Own tasks in a federation's rounds: the agreement names the task, rounds train it, the audit checks it.

One end-to-end test on a real anvil: a task from ``task new`` (its first layer frozen), packed, named
by an agreement, its genesis model pinned, a round opened on it, two parties training from their own
CSV files (real processes), aggregated and audited; with the refusals folded in, each with its
sentence and nothing pinned or sent. The cheap checks (the agreement document, the round config's
task section, float16 aggregation) need no chain.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain.connection import open_federation
from ledger.errors import InvalidInputError
from ledger.index.index import IndexedEvent
from ledger.ipfs.store import ContentStore, open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.aggregator import global_model_bytes
from node.audit.tasks import FED_EVAL_COLUMNS, federated_evaluation
from node.cli._common import TASK_TIMEOUT_S
from node.genesis import genesis_model_bytes
from node.participant import update_bytes
from node.update_metrics import metrics_hash
from node.round_config import DpSettings, RoundConfig, TaskRef, TrainingSettings, config_cid
from node.strategies import Update, make_strategy
from node.tasks.agreement import MAX_DOCUMENT_BYTES, agreement_document, agreement_task, parse_agreement
from node.tasks.builtin import builtin_bundle
from node.tasks.runner import DEFAULT_TIMEOUT_S
from tests.fixtures_chain import TestChain
from tests.round.conftest import finish, start
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.tasks.helpers import BUILTIN_CIDS

TASK_A = "bafkreicwyeelaes42uoeanm6slkwky5dv7butquv77mrigzmnz7ydqn6k4"
TERMS = "bafkreieifrud3usbqb7sjdl5mv3i632yk7vawjyqny3bqmh5xm5o3w4wqi"
FROZEN_TEMPLATE = (
    "    return nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))\n",
    "    net = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, CLASSES))\n"
    "    net[0].requires_grad_(False)  # a frozen first layer: it comes from the genesis model, never travels\n"
    "    return net\n",
)


# -- no chain -----------------------------------------------------------------------------------------
def test_the_agreement_document_is_canonical_and_read_strictly(tmp_path: Path) -> None:
    document = agreement_document(TASK_A, TERMS)
    assert document == (b'{"format":"fedledger-agreement/1","task":"' + TASK_A.encode()
                        + b'","terms":"' + TERMS.encode() + b'"}')
    parsed = parse_agreement(document)
    assert parsed is not None and (parsed.task, parsed.terms) == (TASK_A, TERMS) and parsed.to_bytes() == document
    for plain in (b"# Terms\nEach party trains on its own data.\n", b'{"format": "something else"}', b"[1, 2]", b"\xff\xfe"):
        assert parse_agreement(plain) is None
    claims = {
        b'{"format":"fedledger-agreement/2","task":"%s","terms":"%s"}' % (TASK_A.encode(), TERMS.encode()): "format is",
        b'{"format":"fedledger-agreement/1","task":"%s"}' % TASK_A.encode(): "fields",
        b'{"format":"fedledger-agreement/1","task":"nope","terms":"%s"}' % TERMS.encode(): "not a CID",
        b'{"task":"%s","format":"fedledger-agreement/1","terms":"%s"}' % (TASK_A.encode(), TERMS.encode()): "canonical",
    }
    for data, why in claims.items():
        with pytest.raises(InvalidInputError, match=f"claims to be a fedledger agreement document but .*{why}"):
            parse_agreement(data)
    store = open_store(Workspace.init(tmp_path / "ws"))
    assert agreement_task(store, store.add_bytes(document)) == TASK_A
    assert agreement_task(store, store.add_bytes(b"plain terms")) is None
    assert agreement_task(store, store.add_bytes(b"{" + b" " * MAX_DOCUMENT_BYTES + b"}")) is None  # too large to be one


def test_a_round_config_without_a_task_keeps_its_bytes_and_a_task_section_reads_back() -> None:
    plain = RoundConfig(model="mlp", strategy={"name": "fedavg"})
    assert plain.to_bytes() == (b'{"max_samples":10000,"model":"mlp","strategy":{"name":"fedavg"},'
                                b'"training":{"batch_size":32,"epochs":2,"lr":0.05}}')
    assert RoundConfig.from_bytes(plain.to_bytes()) == plain
    with_task = RoundConfig(model="breast", strategy={"name": "fedavg"}, task=TaskRef(TASK_A, frozen_cid=TERMS))
    assert b'"task":{"cid":"%s","frozen_cid":"%s"}' % (TASK_A.encode(), TERMS.encode()) in with_task.to_bytes()
    assert RoundConfig.from_bytes(with_task.to_bytes()) == with_task
    assert b'"task":{"cid":"%s"}' % TASK_A.encode() in RoundConfig(model="t", strategy={}, task=TaskRef(TASK_A)).to_bytes()
    for bad in ({"cid": TASK_A, "extra": 1}, {"frozen_cid": TERMS}, {"cid": "nope"}, [TASK_A]):
        with pytest.raises(InvalidInputError, match="task"):
            RoundConfig.from_bytes(plain.to_bytes()[:-1] + b',"task":' + repr(bad).replace("'", '"').encode() + b"}")
    # A built-in round's global model keeps exactly its old metadata; a task round's names the task.
    arrays = {"w": np.ones(2, dtype=np.float32)}
    assert from_safetensors(global_model_bytes(arrays, model="mlp", round_id=1, base_cid=TERMS))[1] == {
        "model": "mlp", "round": 1, "base_cid": TERMS}
    assert from_safetensors(global_model_bytes(arrays, model="t", round_id=1, base_cid=TERMS, task=TaskRef(TASK_A)))[1] == {
        "model": "t", "round": 1, "base_cid": TERMS, "task": TASK_A, "frozen_cid": ""}
    assert TASK_TIMEOUT_S == DEFAULT_TIMEOUT_S


def test_the_federated_evaluation_weighs_only_updates_that_bind_and_match_their_hash(tmp_path: Path) -> None:
    store = open_store(Workspace.init(tmp_path / "ws"))
    base = "bafkreieifrud3usbqb7sjdl5mv3i632yk7vawjyqny3bqmh5xm5o3w4wqi"
    row = {"round_id": 3, "base_cid": base}
    arrays = {"w": np.zeros(2, dtype=np.float32)}
    events = []

    def submit(party: int, metrics: dict[str, float], *, recorded: dict[str, float] | None = None, round_id: int = 3,
               base_cid: str = base, named: int | None = None, stored: bool = True) -> None:
        participant = f"0x{party:040x}"
        blob = update_bytes(arrays, model="t", participant=f"0x{named or party:040x}", round_id=round_id,
                            base_cid=base_cid, samples=5, metrics=metrics, task=TASK_A)
        cid = store.add_bytes(blob) if stored else cid_of_bytes(blob)
        events.append(IndexedEvent("UpdateSubmitted", 10 + party, 0, "0x" + "ab" * 32, {
            "roundId": 3, "participant": participant, "cid": cid,
            "metricsHash": "0x" + metrics_hash(recorded or metrics).hex()}))

    submit(1, {"base_accuracy": 0.5, "base_loss": 2.0, "val_samples": 30.0, "accuracy": 0.9})
    submit(2, {"base_accuracy": 0.9, "base_loss": 1.0, "val_samples": 10.0})
    submit(3, {"base_accuracy": 1.0, "base_loss": 0.0, "val_samples": 1e6}, recorded={"base_accuracy": 0.1})
    submit(4, {"base_accuracy": 1.0, "base_loss": 0.0, "val_samples": 1e6}, named=1)  # a copy made for party 1
    submit(5, {"base_accuracy": 1.0, "base_loss": 0.0, "val_samples": 1e6}, round_id=2)
    submit(6, {"base_accuracy": 1.0, "base_loss": 0.0, "val_samples": 1e6}, base_cid=TASK_A)
    submit(7, {"base_accuracy": 1.0, "base_loss": 0.0})
    submit(8, {"loss": 1.0})
    submit(9, {"base_accuracy": 1.0, "base_loss": 0.0, "val_samples": 1e6}, stored=False)
    config = RoundConfig(model="t", strategy={"name": "fedavg"}, task=TaskRef(TASK_A))
    evaluation = federated_evaluation(store, row, config, events).columns()
    assert evaluation == {
        "fed_eval_accuracy": (0.5 * 30 + 0.9 * 10) / 40, "fed_eval_loss": (2.0 * 30 + 1.0 * 10) / 40, "fed_eval_parties": 2,
        "fed_eval_note": "1 update left out: its metrics do not hash to the metrics hash on chain; "
                         "1 update left out: its metadata does not name its submitter; "
                         "1 update left out: its metadata names another round; "
                         "1 update left out: it was made from another base model; "
                         "1 update left out: its metrics give no val_samples to weigh it by; "
                         "1 update left out: its metrics carry no federated evaluation; "
                         "1 update left out: not in this store"}
    sealed = replace(config, seal_to=(f"0x{1:040x}",))
    assert federated_evaluation(store, row, sealed, events[:2]).columns() == {
        "fed_eval_accuracy": None, "fed_eval_loss": None, "fed_eval_parties": 0,
        "fed_eval_note": "2 updates left out: sealed to the round's recipients, not opened without a key"}
    # A claim of more validation samples than the round lets one update count for weighs as max_samples.
    capped = federated_evaluation(store, row, replace(config, max_samples=10), events[:2]).columns()
    assert capped["fed_eval_accuracy"] == (0.5 * 10 + 0.9 * 10) / 20 and capped["fed_eval_parties"] == 2
    built_in = federated_evaluation(store, row, replace(config, task=None), events).columns()
    assert built_in == evaluation  # a built-in round's parties evaluate its base model the same way
    dp = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, steps=5)
    assert federated_evaluation(store, row, replace(config, dp=dp), events).columns() == {
        "fed_eval_accuracy": None, "fed_eval_loss": None, "fed_eval_parties": 0,
        "fed_eval_note": "a private round: parties report no figures measured on their data"}
    assert federated_evaluation(store, row, None, events).columns() == dict.fromkeys(FED_EVAL_COLUMNS)


@pytest.mark.parametrize("strategy", ["fedavg", "median", "trimmed-mean", "krum"])
def test_float16_tensors_aggregate_deterministically_in_their_own_dtype(strategy: str) -> None:
    rng = np.random.default_rng(7)
    base = {"w": rng.standard_normal((6, 5)).astype(np.float16), "b": rng.standard_normal(4).astype(np.float16)}
    updates = [
        Update(f"0x{i + 1:040x}", {k: (v + rng.standard_normal(v.shape) * 0.1).astype(np.float16) for k, v in base.items()}, 10 + i)
        for i in range(5)
    ]
    first = make_strategy(strategy).aggregate(updates, base=base)
    again = make_strategy(strategy).aggregate(list(reversed(updates)), base=base)
    for name in base:
        assert first.arrays[name].dtype == np.float16 and first.arrays[name].tobytes() == again.arrays[name].tobytes()
    if strategy == "fedavg":  # float64 sum of exact float16 -> float64 casts, divided, rounded once to float16
        total = sum(u.samples for u in updates)
        expected = sum(u.arrays["w"].astype(np.float64) * u.samples for u in updates) / total
        assert first.arrays["w"].tobytes() == expected.astype(np.float16).tobytes()


# -- a federation on anvil --------------------------------------------------------------------------------
def deployed_workspace(chain: TestChain, tmp_path: Path) -> tuple[tuple[str, str], Workspace, ContentStore]:
    """A workspace at ``tmp_path/ws`` on the session anvil with the contract deployed: its --workdir
    arguments, the workspace and its store."""
    rpc = chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    ok(cli("init", str(tmp_path / "ws"), "--rpc", rpc))
    w = ("--workdir", str(tmp_path / "ws"))
    ok(cli("deploy", "--json", *w))
    workspace = Workspace.load(tmp_path / "ws")
    return w, workspace, open_store(workspace)


def write_csvs(folder: Path) -> dict[str, Path]:
    """scikit-learn's breast-cancer data in two CSV files with a header row, the label last; and a bad one."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    rows = np.column_stack([data.data, data.target])
    header = ",".join([*(f"f{i}" for i in range(30)), "label"])
    paths = {}
    for name, part in (("alice", rows[::2]), ("bob", rows[1::2])):
        paths[name] = folder / f"{name}.csv"
        np.savetxt(paths[name], part, delimiter=",", header=header, comments="", fmt="%.6g")
    paths["bad"] = folder / "wrong-columns.csv"
    paths["bad"].write_text("age,weight,label\n40,70,0\n50,80,1\n")
    return paths


@pytest.mark.anvil
@pytest.mark.slow
def test_a_task_round_from_task_new_to_audit_verify_with_its_refusals(
    chain: TestChain, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    w, workspace, store = deployed_workspace(chain, tmp_path)

    # The task: the template, its first layer frozen; packed and pinned.
    ok(cli("task", "new", str(tmp_path / "breast"), "--name", "breast"))
    source = tmp_path / "breast" / "task.py"
    assert FROZEN_TEMPLATE[0] in source.read_text()
    source.write_text(source.read_text().replace(*FROZEN_TEMPLATE))
    task = ok(cli("task", "pack", str(tmp_path / "breast"), "--json", *w)).json()["cid"]
    terms = tmp_path / "terms.md"
    terms.write_text("# Terms\nEach party trains on its own records only, with the task named here.\n")

    # An agreement naming a task this store lacks, or content that is no bundle: refused, nothing published.
    missing = cli("agreement", "publish", str(terms), "--task", TASK_A, *w)
    assert missing.exit_code == 1 and f"task bundle {TASK_A} is not in this workspace's store" in missing.error_line()
    not_a_bundle = store.add_bytes(b"just some bytes", pin=True)
    refused = cli("agreement", "publish", str(terms), "--task", not_a_bundle, *w)
    assert refused.exit_code == 1 and "is not a fedledger task bundle" in refused.error_line()
    admin = open_federation(workspace).with_account(anvil_keys[0])
    assert admin.agreement_version() == 0

    published = ok(cli("agreement", "publish", str(terms), "--task", task, "--json", *w)).json()
    assert (published["version"], published["task"], published["task_name"]) == (1, task, "breast")
    assert store.get(published["terms_cid"]) == agreement_document(task, published["terms_file_cid"])
    shown = ok(cli("agreement", "show", "--json", *w)).json()
    assert (shown["terms_cid"], shown["task"]) == (published["terms_cid"], task)

    parties = {}
    for name, account in (("alice", anvil_keys[4]), ("bob", anvil_keys[5]), ("carol", anvil_keys[6])):
        env = {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(account.key)}
        address = ok(cli("participant", "join", "--json", *w, env=env)).json()["participant"]
        ok(cli("participant", "approve", address, *w))
        parties[name] = {"address": address, "env": env, "account": account}

    # The genesis model: trainable tensors only, the frozen ones in their own file.
    both = cli("model", "init", "--model", "mlp", "--task", task, *w)
    assert both.exit_code == 1 and "either --model NAME or --task CID, not both" in both.error_line()
    genesis = ok(cli("model", "init", "--task", task, "--seed", "0", "--json", *w)).json()
    assert (genesis["model"], genesis["task"], genesis["seed"]) == ("breast", task, 0) and genesis["frozen_cid"]
    base_arrays, base_metadata = from_safetensors(store.get(genesis["cid"]))
    trainable = ["2.bias", "2.weight"]
    assert sorted(base_arrays) == trainable
    assert base_metadata == {"model": "breast", "task": task, "frozen_cid": genesis["frozen_cid"], "round": 0, "base_cid": ""}
    frozen_arrays, frozen_metadata = from_safetensors(store.get(genesis["frozen_cid"]))
    assert sorted(frozen_arrays) == ["0.bias", "0.weight"] and frozen_metadata["task"] == task
    assert (workspace.root / "tasks" / task / "task.py").read_text() == source.read_text()

    # Rounds that cannot train the agreement's task are refused before anything is pinned or recorded.
    mlp = store.add_bytes(genesis_model_bytes("mlp", seed=0))
    pins = store.pins()
    built_in = cli("round", "open", "--base-cid", mlp, "--deadline", "600", "--min-updates", "2", *w)
    assert built_in.exit_code == 1 and f"the base model {mlp} was not made from a task" in built_in.error_line()
    assert f"`fedledger model init --task {task}`" in built_in.error_line()
    assert store.pins() == pins and admin.round_count() == 0

    # The round: its config names the agreement's task, the model is the task's, training its declared settings.
    opened = ok(cli("round", "open", "--base-cid", genesis["cid"], "--deadline", "600", "--min-updates", "2", "--json", *w)).json()
    assert (opened["task"], opened["frozen_cid"], opened["model"]) == (task, genesis["frozen_cid"], "breast")
    config = RoundConfig.from_bytes(store.get(opened["config_cid"]))
    assert config.task == TaskRef(task, genesis["frozen_cid"]) and config.model == "breast"
    assert config.training == TrainingSettings(epochs=5, batch_size=32, lr=0.05)

    csvs = write_csvs(tmp_path)
    alice, bob, carol = parties["alice"], parties["bob"], parties["carol"]
    client = open_federation(workspace)

    def nothing_pinned_or_sent(round_id: int, pins: list[str]) -> None:
        assert store.pins() == pins
        assert not client.has_submitted(round_id, alice["address"])
        journal = workspace.journal_dir / f"participant-{alice['address'].lower()}-round-{round_id}.json"
        assert not journal.exists() or "update_cid" not in journal.read_text()

    # A file the task's load_data cannot read: one sentence naming the task and the hook.
    pins = store.pins()
    bad = cli("node", "train", "--round", "1", "--data", str(csvs["bad"]), *w, env=alice["env"])
    line = bad.error_line(alone=False)  # after the "Party …: round 1, task breast" banner
    assert bad.exit_code == 1 and "task 'breast': load_data raised ValueError" in line and "3 columns" in line, line
    nothing_pinned_or_sent(1, pins)

    # The same file under bob's node (`node run`): the task's sentence as a warning, the round settled, the node
    # exits 0 (--once); the file is never read as the built-in digits (it would not load as those either).
    failed = ok(cli("node", "run", "--once", "--data", str(csvs["bad"]), "--log-json", *w, env=bob["env"]))
    events = {event["event"]: event for event in map(json.loads, failed.stdout.splitlines())}
    assert "it reads its data when a round needs it" in events["started"]["message"]
    warned = events["task-failed"]
    assert (warned["level"], warned["round"]) == ("warning", 1) and "submitted" not in events
    assert warned["message"].startswith("round 1: cannot take part: task 'breast': load_data raised ValueError")
    assert "3 columns" in warned["message"], warned["message"]
    assert store.pins() == pins and not client.has_submitted(1, bob["address"])

    # Code changed in the unpacked cache (by anyone who can write the workspace) never runs: the cache is checked
    # against the bundle's manifest and unpacked again from the bundle the agreement names.
    cached = workspace.root / "tasks" / task / "task.py"
    cached.write_text(cached.read_text() + "\nraise SystemExit('tampered code ran')\n")

    # Two parties train from their own CSV files, at the same time, as separate processes: alice with `node train`,
    # bob with his node (`node run --once`), which gives the task the same --data, --seed and --task-timeout.
    processes = {
        "alice": start("node", "train", "--round", "1", "--data", str(csvs["alice"]), "--json", *w, env=alice["env"]),
        "bob": start("node", "run", "--once", "--data", str(csvs["bob"]), "--seed", "0", "--task-timeout", "600",
                     "--log-json", *w, env=bob["env"]),
    }
    trained = {"alice": ok(finish(processes["alice"], timeout=180)).json()}
    assert cached.read_text() == source.read_text()  # the bundle's code, not the tampered copy, ran
    node_log = [json.loads(line) for line in ok(finish(processes["bob"], timeout=180)).stdout.splitlines()]
    assert [e["event"] for e in node_log] == ["started", "training", "submitted"], node_log
    assert node_log[1]["message"] == f"round 1: fetching task breast ({task}) and running it on data {csvs['bob']}."
    submitted = node_log[2]
    assert submitted["round"] == 1 and submitted["actor"] == bob["address"]
    assert [s.cid for s in client.submissions(1) if s.participant == bob["address"]] == [submitted["cid"]]  # on chain
    trained["bob"] = {"trained": submitted["trained"], "samples": submitted["samples"], "participant": submitted["actor"],
                      "update_cid": submitted["cid"], "metrics": from_safetensors(store.get(submitted["cid"]))[1]["metrics"]}
    for name, outcome in trained.items():
        assert outcome["trained"] and outcome["samples"] == 228 and outcome["participant"] == parties[name]["address"]
        assert {"base_accuracy", "base_loss", "val_samples", "accuracy", "loss"} <= set(outcome["metrics"])
        update, metadata = from_safetensors(store.get(outcome["update_cid"]))
        assert sorted(update) == trainable  # only the trainable tensors travel
        assert (metadata["task"], metadata["participant"], metadata["round"]) == (task, parties[name]["address"], 1)

    # A third party's update of another layout: on chain, but rejected by the aggregator in the receipt.
    wrong = {"2.weight": np.zeros((2, 16), dtype=np.float32), "2.bias": np.zeros(2, dtype=np.float32)}
    metrics = {"loss": 1.0}
    wrong_cid = store.add_bytes(update_bytes(wrong, model="breast", participant=carol["address"], round_id=1,
                                             base_cid=genesis["cid"], samples=100, metrics=metrics, task=task))
    client.with_account(carol["account"]).submit_update(1, cid=wrong_cid, samples=100, metrics_hash=metrics_hash(metrics))

    aggregated = ok(cli("aggregate", "--round", "1", "--json", *w)).json()
    assert sorted(i["participant"] for i in aggregated["included"]) == sorted([alice["address"], bob["address"]])
    [rejected] = aggregated["rejected"]
    assert rejected["participant"] == carol["address"] and "tensor '2.weight'" in rejected["reason"]
    assert "shape (2, 16) but the model expects (2, 32)" in rejected["reason"]
    global_arrays, global_metadata = from_safetensors(store.get(aggregated["global_cid"]))
    assert sorted(global_arrays) == trainable and all(a.dtype == np.float32 for a in global_arrays.values())
    assert global_metadata == {"model": "breast", "round": 1, "base_cid": genesis["cid"], "task": task,
                               "frozen_cid": genesis["frozen_cid"]}
    verified = cli("audit", "verify", "--json", *w)
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    assert verified.json()["failed"] == 0
    assert [(c["round_id"], c["ok"], c["cid"]) for c in verified.json()["checks"] if c["check"] == "task"] == [
        (1, True, task), (1, True, aggregated["global_cid"])]  # the agreement's task, named by the global model

    # A private round of the task: alice's task process trains it with fedledger's DP-SGD loop (the plain loop
    # would report loss and accuracy), and the update carries no metrics. The agreement has no privacy budget, so
    # no epsilon is declared (the accounting of a budget does not depend on the task: tests/privacy).
    private = ok(cli("round", "open", "--base-cid", aggregated["global_cid"], "--deadline", "600", "--min-updates", "1",
                     "--dp-noise", "1.0", "--dp-steps", "5", "--json", *w)).json()
    private_round = private["round_id"]
    assert RoundConfig.from_bytes(store.get(private["config_cid"])).dp is not None
    spent = ok(cli("node", "train", "--round", str(private_round), "--data", str(csvs["alice"]), "--json", *w,
                   env=alice["env"])).json()
    assert spent["trained"] and spent["metrics"] == {} and spent["epsilon"] == 0 and spent["samples"] == 228
    update, metadata = from_safetensors(store.get(spent["update_cid"]))
    assert metadata["metrics"] == {} and sorted(update) == trainable
    assert any(not np.array_equal(update[name], global_arrays[name]) for name in trainable)

    # The coordinator's rounds train the agreement's task too: its config is the one `round open` writes.
    coordinator = start("coordinator", "run", "--rounds", "1", "--round-seconds", "600", "--min-updates", "2",
                        "--base-cid", aggregated["global_cid"], "--log-json", *w, env={})
    try:
        logged = []
        for line in coordinator.stdout or ():  # until it says it opened its round (or it ends)
            logged.append(json.loads(line))
            if logged[-1]["event"] == "opened":
                break
    finally:
        coordinator.terminate()
        finish(coordinator, timeout=180)
    assert [e["event"] for e in logged] == ["task", "started", "opened"], logged
    assert logged[0]["task"] == task
    scheduled = logged[-1]["round"]
    scheduled_config = RoundConfig.from_bytes(store.get(config_cid(admin.round(scheduled).config_hash)))
    assert (scheduled_config.task, scheduled_config.model) == (TaskRef(task, genesis["frozen_cid"]), "breast")
    assert scheduled_config.training == config.training

    # Round 2, opened by hand with a config naming a task that is not the agreement's: the party refuses it.
    ok(cli("task", "new", str(tmp_path / "other"), "--name", "other"))
    other_task = ok(cli("task", "pack", str(tmp_path / "other"), "--json", *w)).json()["cid"]
    forged = RoundConfig(model="other", strategy={"name": "fedavg"}, task=TaskRef(other_task)).to_bytes()
    store.add_bytes(forged, pin=True)
    round_2, _ = admin.open_round(base_cid=aggregated["global_cid"], deadline=chain.now() + 600, min_updates=1,
                                  config_hash=hashlib.sha256(forged).digest())
    pins = store.pins()
    refused = cli("node", "train", "--round", str(round_2), "--data", str(csvs["alice"]), *w, env=alice["env"])
    line = refused.error_line(alone=False)
    assert refused.exit_code == 1 and f"round {round_2} names task {other_task}" in line, line
    assert f"agreement version 1 in force, the one this party accepted, names task {task}" in line
    nothing_pinned_or_sent(round_2, pins)

    # A new agreement version naming the other task: the party has not accepted it, so the contract refuses.
    ok(cli("agreement", "publish", str(terms), "--task", other_task, *w))
    pins = store.pins()
    stale = cli("node", "train", "--round", str(round_2), "--data", str(csvs["alice"]), *w, env=alice["env"])
    line = stale.error_line(alone=False)
    assert stale.exit_code == 1 and f"{alice['address']} accepted agreement version 1 but version 2 is in force" in line
    nothing_pinned_or_sent(round_2, pins)

    # Once it accepts version 2, it runs that task; its model (nothing frozen) does not fit round 1's global model.
    ok(cli("participant", "join", *w, env=alice["env"]))
    misfit = cli("node", "train", "--round", str(round_2), "--data", str(csvs["alice"]), *w, env=alice["env"])
    line = misfit.error_line(alone=False)
    assert misfit.exit_code == 1 and "task 'other'" in line and "model() has tensor '0.bias'" in line, line
    nothing_pinned_or_sent(round_2, pins)

    round_3, _ = admin.open_round(base_cid=aggregated["global_cid"], deadline=chain.now() + 600, min_updates=1,
                                  config_hash=hashlib.sha256(forged).digest())

    # The audit of own tasks. Round 3 finalized by hand with a global model that names round 1's task, not its
    # config's; round 4 a built-in round opened under agreement v2, which names a task.
    alice_client = client.with_account(alice["account"])
    crafted = store.add_bytes(update_bytes(global_arrays, model="other", participant=alice["address"], round_id=round_3,
                                           base_cid=aggregated["global_cid"], samples=10, metrics=metrics, task=other_task))
    alice_client.submit_update(round_3, cid=crafted, samples=10, metrics_hash=metrics_hash(metrics))
    stray_global = store.add_bytes(global_model_bytes(global_arrays, model="other", round_id=round_3,
                                                      base_cid=aggregated["global_cid"], task=TaskRef(task, genesis["frozen_cid"])))
    admin.finalize_round(round_3, global_cid=stray_global, receipt_cid=store.add_bytes(b"{}"))
    built_in_config = RoundConfig(model="mlp", strategy={"name": "fedavg"}).to_bytes()
    store.add_bytes(built_in_config, pin=True)
    round_4, _ = admin.open_round(base_cid=aggregated["global_cid"], deadline=chain.now() + 600, min_updates=1,
                                  config_hash=hashlib.sha256(built_in_config).digest())

    # audit rounds: each round's task and agreement version; round 1's federated evaluation is the parties' own
    # evaluations of the genesis model weighed by their validation samples (carol's update carries none).
    rows = {row["round_id"]: row for row in ok(cli("audit", "rounds", "--json", *w)).json()}
    assert [(rows[r]["task_cid"], rows[r]["agreement_version"]) for r in (1, round_2, round_3, round_4)] == [
        (task, 1), (other_task, 1), (other_task, 2), (None, 2)]
    evaluations = [from_safetensors(store.get(trained[name]["update_cid"]))[1]["metrics"] for name in ("alice", "bob")]
    assert all(m["base_accuracy"] == trained[name]["metrics"]["base_accuracy"] for m, name in zip(evaluations, ("alice", "bob")))
    weights = sum(m["val_samples"] for m in evaluations)
    assert rows[1]["fed_eval_accuracy"] == sum(m["base_accuracy"] * m["val_samples"] for m in evaluations) / weights
    assert rows[1]["fed_eval_loss"] == sum(m["base_loss"] * m["val_samples"] for m in evaluations) / weights
    assert 0 < rows[1]["fed_eval_accuracy"] < 1 and rows[1]["fed_eval_parties"] == 2
    assert rows[1]["fed_eval_note"] == "1 update left out: its metrics carry no federated evaluation"
    assert (rows[round_2]["fed_eval_accuracy"], rows[round_2]["fed_eval_parties"]) == (None, 0)
    assert [rows[round_4][k] for k in ("fed_eval_accuracy", "fed_eval_loss", "fed_eval_parties")] == [None, None, 0]

    # audit provenance names the task of every global model on the way back to the genesis model.
    lineage = ok(cli("audit", "provenance", stray_global, "--json", *w)).json()
    assert [(s["round_id"], s["task_cid"]) for s in lineage["rounds"]] == [(round_3, other_task), (1, task)]

    # audit verify fails each round that does not train its agreement's task, one line naming both CIDs.
    verdict = cli("audit", "verify", *w)
    assert verdict.exit_code == 1
    failed = [line for line in verdict.stderr.splitlines() if line.startswith("FAIL task:")]
    assert failed == [
        f"FAIL task: round {round_2} config names task {other_task}, but agreement v1 in force at its opening names "
        f"task {task} (round {round_2}, block {rows[round_2]['opened_block']}, "
        f"tx {rows[round_2]['opened_tx']}, cid {rows[round_2]['config_cid']})",
        f"FAIL task: round {round_3} global model names task '{task}' (frozen tensors '{genesis['frozen_cid']}') in "
        f"its metadata, but its config names task {other_task} (frozen tensors None) (round {round_3}, "
        f"block {rows[round_3]['closed_block']}, tx {rows[round_3]['closed_tx']}, cid {stray_global})",
        f"FAIL task: round {round_4} config names no task (a built-in round of model 'mlp'), but agreement v2 in "
        f"force at its opening names task {other_task} (round {round_4}, block {rows[round_4]['opened_block']}, "
        f"tx {rows[round_4]['opened_tx']}, cid {rows[round_4]['config_cid']})",
    ], verdict.stderr
    passed = [(c["round_id"], c["cid"]) for c in cli("audit", "verify", "--json", *w).json()["checks"]
              if c["check"] == "task" and c["ok"]]
    assert passed == [(1, task), (1, aggregated["global_cid"]), (private_round, task), (scheduled, task),
                      (round_3, other_task)]

    # The report: the rounds table with each round's task and its federated evaluation.
    page = tmp_path / "report.html"
    story = {row["round_id"]: row for row in ok(cli("audit", "report", "--json", "--html", str(page), *w)).json()["rounds"]}
    assert {k: story[1][k] for k in ("task_cid", "fed_eval_accuracy", "fed_eval_loss", "fed_eval_parties")} == {
        k: rows[1][k] for k in ("task_cid", "fed_eval_accuracy", "fed_eval_loss", "fed_eval_parties")}
    rounds_table = page.read_text().split('<table id="rounds">')[1].split("</table>")[0]
    assert "<th>fed_<wbr>eval_<wbr>accuracy</th>" in rounds_table and f"<td>{rows[1]['fed_eval_accuracy']:.4f}</td>" in rounds_table
    assert f"<code class='h' title='{other_task}'>" in rounds_table and "id='federated-evaluation'" in page.read_text()

    # A task whose model() raises, named by agreement v3 and accepted: node train names the task and the hook,
    # and nothing is pinned or sent (the runner's own tests cover the other hooks' crashes and hangs).
    ok(cli("task", "new", str(tmp_path / "broken"), "--name", "broken"))
    broken_source = tmp_path / "broken" / "task.py"
    broken_source.write_text(broken_source.read_text().replace(
        '    """A fresh MLP: FEATURES -> HIDDEN -> CLASSES."""\n',
        '    """A fresh MLP: FEATURES -> HIDDEN -> CLASSES."""\n    raise RuntimeError("no weights for this model")\n'))
    broken_task = ok(cli("task", "pack", str(tmp_path / "broken"), "--json", *w)).json()["cid"]
    ok(cli("agreement", "publish", str(terms), "--task", broken_task, *w))
    ok(cli("participant", "join", *w, env=alice["env"]))
    broken_config = RoundConfig(model="broken", strategy={"name": "fedavg"}, task=TaskRef(broken_task)).to_bytes()
    store.add_bytes(broken_config, pin=True)
    round_5, _ = admin.open_round(base_cid=aggregated["global_cid"], deadline=chain.now() + 600, min_updates=1,
                                  config_hash=hashlib.sha256(broken_config).digest())
    pins = store.pins()
    raised = cli("node", "train", "--round", str(round_5), "--data", str(csvs["alice"]), *w, env=alice["env"])
    line = raised.error_line(alone=False)
    assert raised.exit_code == 1 and "task 'broken': model raised RuntimeError: no weights for this model" in line, line
    nothing_pinned_or_sent(round_5, pins)

    # The built-in digits task by its short name: its shipped bundle pinned here and its CID named on chain, as for a
    # packed task; a name that is neither a CID nor a built-in task is refused with the built-in names, nothing sent.
    version, pins = admin.agreement_version(), store.pins()
    unknown = cli("agreement", "publish", str(terms), "--task", "resnet", *w)
    assert unknown.exit_code == 1 and "'resnet' is neither a task bundle's CID nor a built-in task" in unknown.error_line()
    assert "a built-in task: mlp (the digits MLP) or cnn (the digits CNN)." in unknown.error_line()
    assert admin.agreement_version() == version and store.pins() == pins
    digits = ok(cli("agreement", "publish", str(terms), "--task", "mlp", "--json", *w)).json()
    assert (digits["version"], digits["task"], digits["task_name"]) == (version + 1, BUILTIN_CIDS["mlp"], "digits-mlp")
    assert store.get(BUILTIN_CIDS["mlp"]) == builtin_bundle("mlp") and BUILTIN_CIDS["mlp"] in store.pins()
    assert agreement_task(store, admin.terms_cid(version + 1)) == BUILTIN_CIDS["mlp"]
