"""`fedledger model init`: the genesis model is pinned, and the same seed gives the same CID."""

import subprocess
import sys

from ledger.ipfs.store import EmbeddedStore
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.models import model_layout


def fedledger(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from node.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=120)


def test_model_init_pins_a_loadable_genesis_model_deterministically(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    first = fedledger("model", "init", "--model", "mlp", "--seed", "7", "-w", str(workspace.root))
    again = fedledger("model", "init", "--model", "mlp", "--seed", "7", "-w", str(workspace.root))
    other = fedledger("model", "init", "--model", "mlp", "--seed", "8", "-w", str(workspace.root))
    assert first.returncode == again.returncode == other.returncode == 0, first.stderr
    cid = first.stdout.strip()
    assert cid == again.stdout.strip() != other.stdout.strip()
    arrays, metadata = from_safetensors(EmbeddedStore(workspace.store_dir).get(cid), layout=model_layout("mlp"))
    assert metadata["model"] == "mlp" and metadata["round"] == 0
    assert cid in EmbeddedStore(workspace.store_dir).pins()


def test_model_init_refuses_an_unknown_model_and_pins_nothing(tmp_path):
    workspace = Workspace.init(tmp_path / "fed")
    result = fedledger("model", "init", "--model", "resnet", "-w", str(workspace.root))
    assert result.returncode != 0
    assert "resnet" in result.stderr and "mlp" in result.stderr
    assert result.stdout == ""
    assert EmbeddedStore(workspace.store_dir).pins() == []
