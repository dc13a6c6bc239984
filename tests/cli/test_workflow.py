"""The operator's and a party's whole path through the CLI on a real anvil.

The steps that start or stop processes, write keys or record the deployment run the installed
console script in a subprocess; the rest run in-process through typer's runner (the same
commands, without paying an interpreter start-up each).
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.anvil import free_port, rpc_chain_id, stop_pidfile
from ledger.workspace import Workspace
from tests.cli.conftest import PASSWORD
from tests.fixtures_cli import FEDLEDGER, Outcome

pytestmark = pytest.mark.anvil

# anvil's third dev account (default mnemonic): a funded party that signs from the environment.
BOB_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
BOB = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def ok(outcome: Outcome) -> Outcome:
    assert outcome.exit_code == 0, outcome.stderr
    return outcome


@pytest.fixture
def fresh_dir(tmp_path: Path) -> Iterator[Path]:
    """A folder for `fedledger init`; an anvil left running there is stopped by PID afterwards."""
    root = tmp_path / "federation"
    try:
        yield root
    finally:
        stop_pidfile(root / "chain" / "anvil.pid", state=root / "chain" / "anvil.json")


@pytest.mark.slow
def test_governance_workflow_and_its_state_survive_a_chain_restart(
    fedledger: Callable[..., Outcome], cli: Callable[..., Outcome], tmp_path: Path, fresh_dir: Path
) -> None:
    ok(cli("init", str(fresh_dir)))
    workspace = Workspace.load(fresh_dir)
    w = ("--workdir", str(workspace.root))
    env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}
    port = free_port()

    up = ok(fedledger("chain", "up", "--port", str(port), "--detach", "--json", *w)).json()
    assert up["rpc"] == f"http://127.0.0.1:{port}"
    assert Workspace.load(workspace.root).get("chain", "rpc") == up["rpc"]

    deployed = ok(fedledger("deploy", "--json", *w)).json()
    recorded = Workspace.load(workspace.root).config["deployment"]
    assert recorded["address"] == deployed["address"] and recorded["chain_id"] == 31337
    assert recorded["block"] == deployed["block"] >= 1

    new_key = ok(fedledger("key", "new", "alice", "--light-kdf", "--json", *w, env=env))
    alice = new_key.json()["address"]
    assert json.loads((workspace.keys_dir / "alice.json").read_text())["crypto"]["kdfparams"]["n"] == 2**12
    assert alice in new_key.stderr and "PRIVATE" not in new_key.stderr.upper()
    assert Workspace.load(workspace.root).config["keys"] == {"alice": "keys/alice.json"}
    ok(cli("key", "fund", "alice", "--amount", "1", *w))

    terms = tmp_path / "terms.md"
    terms.write_text("# Terms\nData never leaves a party.\n")
    published = ok(cli("agreement", "publish", str(terms), "--json", *w)).json()
    assert published["version"] == 1 and published["terms_cid"].startswith("bafkrei")

    joining = ok(cli("participant", "join", "--key", "alice", "--json", *w, env=env))
    joined = joining.json()
    assert joined["participant"] == alice and joined["version"] == 1 and joined["status"] == "pending"
    assert f"pending: the admin approves it with `fedledger participant approve {alice}`" in joining.stderr
    ok(cli("participant", "approve", alice, *w))

    signed = ok(cli("participant", "join", "--relay", *w, env={"FEDLEDGER_PRIVATE_KEY": BOB_KEY}))
    (tmp_path / "bob.json").write_text(signed.stdout)
    assert signed.json()["participant"] == BOB
    ok(cli("participant", "relay", str(tmp_path / "bob.json"), *w))

    members = {p["address"]: p["status"] for p in ok(cli("participant", "list", "--json", *w)).json()}
    assert members == {alice: "admitted", BOB: "pending"}

    terms.write_text("# Terms\nData never leaves a party. Models are shared under licence X.\n")
    assert ok(cli("agreement", "publish", str(terms), "--json", *w)).json()["version"] == 2
    rejoining = ok(cli("participant", "join", "--key", "alice", "--json", *w, env=env))
    assert rejoining.json()["version"] == 2 and rejoining.json()["status"] == "admitted"
    assert "accepted agreement version 2 (still admitted)" in rejoining.stderr

    genesis = ok(cli("model", "init", "--model", "mlp", "--seed", "0", "--json", *w)).json()["cid"]
    opened = ok(cli(
        "round", "open", "--base-cid", genesis, "--deadline", "600", "--min-updates", "1",
        "--strategy", "median", "--json", *w,
    )).json()
    assert opened["round_id"] == 1
    status = ok(cli("round", "status", "--json", *w)).json()
    assert status["state"] == "open" and status["min_updates"] == 1 and status["deadline"] == opened["deadline"]

    ok(fedledger("chain", "down", *w))
    assert not (workspace.chain_dir / "anvil.pid").exists()
    assert (workspace.chain_dir / "anvil.json").stat().st_size > 0

    ok(fedledger("chain", "up", "--port", str(port), "--detach", *w))
    again = {p["address"]: p["status"] for p in ok(cli("participant", "list", "--json", *w)).json()}
    assert again == members
    assert ok(cli("round", "status", "1", "--json", *w)).json() == status
    ok(fedledger("chain", "down", *w))


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl_c", "sigterm"])
def test_chain_up_in_the_foreground_saves_state_on_ctrl_c(workspace: Workspace, stop_signal: signal.Signals) -> None:
    port = free_port()
    pidfile = workspace.chain_dir / "anvil.pid"
    process = subprocess.Popen(
        [str(FEDLEDGER), "chain", "up", "--port", str(port), "--workdir", str(workspace.root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert process.stderr is not None
        seen = ""
        while "Press Ctrl-C" not in seen:  # the command is up and waiting
            line = process.stderr.readline()
            assert line, seen
            seen += line
        assert pidfile.is_file() and rpc_chain_id(f"http://127.0.0.1:{port}") == 31337
        process.send_signal(stop_signal)
        _, rest = process.communicate(timeout=30)
        stderr = seen + rest
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "saving its state" in stderr
    assert (workspace.chain_dir / "anvil.json").stat().st_size > 0
    assert not pidfile.exists()
    assert rpc_chain_id(f"http://127.0.0.1:{port}", timeout=0.5) is None
