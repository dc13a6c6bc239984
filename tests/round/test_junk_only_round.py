"""A round whose minimum is met only by junk, on `fedledger chain up`, tried as a new user would:
each error names a command, the test runs exactly that command, and the round ends finalized on
its base model with a receipt that lists the rejection and says no update was usable; `fedledger
audit verify` then passes, and the model's provenance still reaches the genesis model through the
round that left it unchanged. (It used to wedge: `aggregate` said "cancel it", `round cancel`
said "finalize it instead".)

The junk is an update of the wrong model (a CNN in an MLP round) whose metrics match the hash on
chain: unusable for the aggregate, but no false claim by its party. A blob that is not weights at
all is also rejected, and the audit then names its party's metrics hash as unbacked: a finding against
the party, not a failure (tests/audit/test_party_findings.py).
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import free_port, stop_pidfile
from ledger.chain.federation import FederationClient
from ledger.weights import from_safetensors, to_safetensors
from ledger.workspace import Workspace
from node.genesis import genesis_model_bytes
from node.models import model_layout
from node.update_metrics import metrics_hash
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome, ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation, ipfs_cat

pytestmark = pytest.mark.anvil


def named_command(outcome: Outcome) -> list[str]:
    """The `fedledger …` command that a failed command's error line tells the user to run."""
    line = outcome.error_line()
    commands = re.findall(r"`(fedledger [^`]+)`", line)
    assert commands, f"the error names no command: {line}"
    return shlex.split(commands[0])[1:]


def submit(client: FederationClient, store_cli: tuple[str, ...], tmp_path: Path, round_id: int, *,
           arrays: dict, model: str) -> str:
    """The party behind ``client`` pins an update of ``arrays`` (its metadata naming it) and records it."""
    metrics = {"accuracy": 0.5}
    blob = to_safetensors(arrays, metadata={"model": model, "participant": client.account.address,
                                            "round": round_id, "metrics": metrics})
    path = tmp_path / f"update-{round_id}.safetensors"
    path.write_bytes(blob)
    cid = ok(cli("ipfs", "add", str(path), "--json", *store_cli)).json()["cid"]
    client.submit_update(round_id, cid=cid, samples=10, metrics_hash=metrics_hash(metrics))
    return cid


@pytest.mark.slow
def test_a_round_met_only_by_junk_is_finalized_on_its_base_with_the_commands_the_errors_name(
    tmp_path: Path, anvil_keys: list[LocalAccount]
) -> None:
    root = tmp_path / "ws"
    w = ("--workdir", str(root))
    ok(cli("init", str(root)))
    try:
        ok(fedledger("chain", "up", "--port", str(free_port()), "--detach", *w))
        ok(cli("deploy", *w))
        terms = tmp_path / "terms.md"
        terms.write_text("# Terms\nEach party trains on its own data only.\n")
        ok(cli("agreement", "publish", str(terms), *w))
        genesis = ok(cli("model", "init", "--model", "mlp", "--seed", "0", "--json", *w)).json()["cid"]
        federation = Federation(workspace=Workspace.load(root), genesis_cid=genesis, tmp=tmp_path)
        alice_key = anvil_keys[7]  # a dev account: funded on every anvil
        federation.admit("alice", Web3.to_hex(alice_key.key))
        reader = federation.client()
        alice = reader.with_account(alice_key)

        # Round 1: an ordinary update, aggregated.
        first = federation.open_round(base_cid=genesis, min_updates=1)
        arrays, _ = from_safetensors(genesis_model_bytes("mlp", seed=0), layout=model_layout("mlp"))
        submit(alice, w, tmp_path, first, arrays={k: v + 0.01 for k, v in arrays.items()}, model="mlp")
        base = ok(cli("aggregate", "--round", str(first), "--json", *w)).json()["global_cid"]

        # Round 2: Alice's one update is junk, an update of another model.
        round_id = federation.open_round(base_cid=base, min_updates=1, deadline=60)
        cnn, _ = from_safetensors(genesis_model_bytes("cnn", seed=0), layout=model_layout("cnn"))
        junk = submit(alice, w, tmp_path, round_id, arrays=cnn, model="cnn")
        chain = TestChain(reader.w3)
        chain.advance(reader.round(round_id).deadline - chain.now() + 1)

        # The user would close the round: `round cancel` refuses (the minimum was met) and names the way out.
        refused = cli("round", "cancel", str(round_id), *w)
        assert refused.exit_code != 0 and "reached its minimum" in refused.error_line()
        command = named_command(refused)
        assert command == ["aggregate", "--round", str(round_id)]
        finalized = ok(fedledger(*command, "--json", *w))
        document = finalized.json()
        assert document["global_cid"] == base and document["included"] == []
        assert [(r["participant"], r["cid"]) for r in document["rejected"]] == [(alice_key.address, junk)]
        assert "no update was usable: the global model is the round's base model" in finalized.stderr

        info = reader.round(round_id)
        assert (info.state, info.global_cid) == ("finalized", base)
        receipt = json.loads(ipfs_cat(info.receipt_cid, *w))
        assert receipt["outcome"].startswith("no update was usable")
        assert receipt["rejected"][0]["reason"].startswith("invalid weights: ")

        verdict = cli("audit", "verify", "--json", *w)
        assert verdict.exit_code == 0, verdict.stdout
        aggregate = [c for c in verdict.json()["checks"] if c["check"] == "aggregate"]
        assert [c["ok"] for c in aggregate] == [True, True]
        lineage = ok(cli("audit", "provenance", base, "--json", *w)).json()
        assert [step["round_id"] for step in lineage["rounds"]] == [round_id, first]
        assert lineage["genesis_cid"] == genesis and lineage["reaches_genesis"] is True
    finally:
        fedledger("chain", "down", *w)
        stop_pidfile(root / "chain" / "anvil.pid")
