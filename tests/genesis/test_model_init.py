"""`fedledger model init`: the genesis model is pinned, and the same seed gives the same CID.

The determinism test compares a run in-process through typer's runner (``cli``) with a run of the
installed console script (``fedledger``, a subprocess): the same seed must give the same CID in two
different processes (another interpreter, another hash seed), and the script's own path stays
covered. The other runs (another seed, an unknown model, the built-in task) are in-process: what they
check is the command's exit code, stdout, stderr and the store, which the runner gives exactly as the
console script does, without an interpreter and torch start-up per run.
"""

import numpy as np

from ledger.ipfs.store import EmbeddedStore
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.genesis import genesis_model_bytes
from node.models import model_layout
from node.tasks.builtin import builtin_bundle
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.tasks.helpers import BUILTIN_CIDS


def test_model_init_pins_a_loadable_genesis_model_deterministically(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    first = cli("model", "init", "--model", "mlp", "--seed", "7", "-w", str(workspace.root))
    again = fedledger("model", "init", "--model", "mlp", "--seed", "7", "-w", str(workspace.root))  # another process
    other = cli("model", "init", "--model", "mlp", "--seed", "8", "-w", str(workspace.root))
    assert first.exit_code == again.exit_code == other.exit_code == 0, first.stderr
    cid = first.stdout.strip()
    assert cid == again.stdout.strip() != other.stdout.strip()
    arrays, metadata = from_safetensors(EmbeddedStore(workspace.store_dir).get(cid), layout=model_layout("mlp"))
    assert metadata["model"] == "mlp" and metadata["round"] == 0
    assert cid in EmbeddedStore(workspace.store_dir).pins()


def test_model_init_refuses_an_unknown_model_and_pins_nothing(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    result = cli("model", "init", "--model", "resnet", "-w", str(workspace.root))
    assert result.exit_code != 0
    assert "resnet" in result.stderr and "mlp" in result.stderr
    assert result.stdout == ""
    assert EmbeddedStore(workspace.store_dir).pins() == []


def test_model_init_of_the_builtin_task_pins_its_bundle_and_a_genesis_naming_it(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    store = EmbeddedStore(workspace.store_dir)
    unknown = cli("model", "init", "--task", "resnet", "-w", str(workspace.root))
    assert unknown.exit_code == 1 and unknown.stdout == "" and store.pins() == []
    assert "'resnet' is neither a task bundle's CID nor a built-in task" in unknown.stderr
    assert "a built-in task: mlp (the digits MLP) or cnn (the digits CNN)." in unknown.stderr

    made = cli("model", "init", "--task", "mlp", "--seed", "0", "--json", "-w", str(workspace.root))
    assert made.exit_code == 0, made.stderr
    genesis = made.json()
    task = BUILTIN_CIDS["mlp"]
    assert (genesis["model"], genesis["task"], genesis["frozen_cid"]) == ("digits-mlp", task, None)
    assert store.get(task) == builtin_bundle("mlp") and {task, genesis["cid"]} <= set(store.pins())
    arrays, metadata = from_safetensors(store.get(genesis["cid"]))
    assert metadata == {"model": "digits-mlp", "task": task, "frozen_cid": "", "round": 0, "base_cid": ""}
    today, _ = from_safetensors(genesis_model_bytes("mlp", seed=0))  # --model mlp's weights, in the task's genesis
    assert sorted(arrays) == sorted(today) and all(np.array_equal(arrays[name], today[name]) for name in today)
