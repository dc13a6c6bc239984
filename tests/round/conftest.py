"""Round test helpers: the real console script as a subprocess, typer's runner in-process, and a
federation on anvil set up through the CLI (deploy, agreement, admitted parties, a genesis model,
round configuration documents).

The actors of an end-to-end round (``node train``, ``aggregate``, ``demo``) run as separate processes
of the installed console script; the operator's setup steps, and refusals that a command reaches
before doing any work (tests/round/test_bad_input.py), run in-process through typer's runner (the
same commands, without paying an interpreter and torch start-up for each).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ledger.chain.connection import open_federation
from ledger.chain.federation import FederationClient
from ledger.workspace import Workspace
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import FEDLEDGER, Outcome, clean_env, ok
from tests.fixtures_cli import run_in_process as cli

PASSWORD = "round tests password"
QUICK_TRAINING = TrainingSettings(epochs=1, batch_size=32, lr=0.05)


def ipfs_cat(cid: str, *args: str) -> bytes:
    """The bytes `fedledger ipfs cat CID` writes to stdout."""
    done = subprocess.run([str(FEDLEDGER), "ipfs", "cat", cid, *args], capture_output=True, env=clean_env(), timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the installed console script; collect it with :func:`finish`."""
    return subprocess.Popen(
        [str(FEDLEDGER), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(env)
    )


def finish(process: subprocess.Popen[str], timeout: float = 120) -> Outcome:
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
    return Outcome(process.returncode, stdout, stderr)


@dataclass
class Federation:
    """A workspace whose federation is deployed on anvil, with an agreement and a genesis model."""

    workspace: Workspace
    genesis_cid: str
    tmp: Path
    parties: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {address, env}

    @property
    def w(self) -> tuple[str, str]:
        return ("--workdir", str(self.workspace.root))

    def client(self) -> FederationClient:
        """A read-only client of the deployment, opened from the workspace as the CLI opens it."""
        return open_federation(Workspace.load(self.workspace.root))

    def config_file(self, name: str, *, strategy: str = "fedavg") -> Path:
        """A round configuration document (MLP, one epoch) written to a file for `round open --config`."""
        config = RoundConfig(model="mlp", strategy=make_strategy(strategy).params(), training=QUICK_TRAINING)
        path = self.tmp / f"{name}.json"
        path.write_bytes(config.to_bytes())
        return path

    def open_round(self, *, base_cid: str, min_updates: int, strategy: str = "fedavg", deadline: int = 600) -> int:
        config = self.config_file(f"round-config-{strategy}", strategy=strategy)
        opened = ok(cli(
            "round", "open", "--base-cid", base_cid, "--deadline", str(deadline), "--min-updates", str(min_updates),
            "--config", str(config), "--json", *self.w,
        )).json()
        return int(opened["round_id"])

    def admit(self, name: str, private_key: str) -> str:
        """A party that signs from FEDLEDGER_PRIVATE_KEY joins and is approved; returns its address."""
        env = {"FEDLEDGER_PRIVATE_KEY": private_key}
        address = ok(cli("participant", "join", "--json", *self.w, env=env)).json()["participant"]
        ok(cli("participant", "approve", address, *self.w))
        self.parties[name] = {"address": address, "env": env}
        return address


def make_federation(root: Path, *, rpc: str, store_api: str | None = None) -> Federation:
    """init, (kubo store), deploy, publish an agreement, pin the genesis model — all through the CLI."""
    root.mkdir(parents=True, exist_ok=True)
    ok(cli("init", str(root / "ws"), "--rpc", rpc))
    workspace = Workspace.load(root / "ws")
    if store_api is not None:
        workspace.set("store", "backend", "kubo")
        workspace.set("store", "api", store_api)
        workspace.save()
    w = ("--workdir", str(workspace.root))
    ok(cli("deploy", "--json", *w))
    terms = root / "terms.md"
    terms.write_text("# Terms\nEach party trains on its own data only.\n")
    ok(cli("agreement", "publish", str(terms), *w))
    genesis = ok(cli("model", "init", "--model", "mlp", "--seed", "0", "--json", *w)).json()
    return Federation(workspace=Workspace.load(workspace.root), genesis_cid=genesis["cid"], tmp=root)


@pytest.fixture
def anvil_rpc(chain: TestChain) -> Iterator[str]:
    """The session anvil's URL for one test; the test's chain changes are reverted afterwards."""
    yield chain.w3.provider.endpoint_uri
