"""When the audit cannot run: one sentence naming cause and fix, exit 2.

The refusals run in-process through typer's runner (``cli``): each is the command's own check
turned into one ``error:`` line and exit code 2, and the runner gives the same exit code and the
same stdout and stderr as the console script, so they are checked as fully without an interpreter
start-up per command. ``test_rpc_flag_overrides_the_workspace_and_an_unreachable_one_is_named``
keeps its successful ``audit rounds --json`` on the installed console script (``fedledger``, a
subprocess): it parses the whole process's stdout as one JSON document, and it keeps the script's
own path covered.
"""

from __future__ import annotations

import shutil

from deploy.anvil import free_port
from ledger.workspace import Workspace


def point_at(root, **deployment) -> None:
    workspace = Workspace.load(root)
    for key, value in deployment.items():
        workspace.set("deployment", key, value)
    workspace.save()


def test_rpc_without_the_deployment_at_the_recorded_address(ledger_copy, cli):
    point_at(ledger_copy.root, address="0x" + "12" * 20)
    outcome = cli("audit", "verify", "--workdir", str(ledger_copy.root))
    assert outcome.exit_code == 2
    assert "no contract code at 0x1212121212121212121212121212121212121212" in outcome.error_line()


def test_wrong_chain(ledger_copy, cli):
    point_at(ledger_copy.root, chain_id=1)
    outcome = cli("audit", "rounds", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 2 and outcome.stdout == ""
    assert "has chain id 31337, but the deployment" in outcome.error_line()
    assert "is on chain id 1;" in outcome.error_line()


def test_rpc_flag_overrides_the_workspace_and_an_unreachable_one_is_named(ledger_copy, anvil, cli, fedledger):
    port = free_port()
    workspace = Workspace.load(ledger_copy.root)
    workspace.set("chain", "rpc", f"http://127.0.0.1:{port}")  # nothing listens there
    workspace.save()
    outcome = cli("audit", "rounds", "--workdir", str(ledger_copy.root), "--json")
    assert outcome.exit_code == 2 and f"127.0.0.1:{port}" in outcome.error_line()
    rounds = fedledger("audit", "rounds", "--workdir", str(ledger_copy.root), "--rpc", anvil.rpc_url, "--json")
    assert rounds.exit_code == 0, rounds.stderr
    assert [row["state"] for row in rounds.json()] == ["finalized", "finalized"]


def test_index_from_another_deployment(anvil_ledger, ledger_copy, chain, cli, tmp_path):
    # The honest ledger's index, copied into a workspace of a second deployment on the same chain.
    assert cli("audit", "rounds", "--workdir", str(anvil_ledger.root), "--json").exit_code == 0
    other = chain.deploy()
    point_at(ledger_copy.root, address=other.address, block=other.from_block)
    shutil.copy(anvil_ledger.root / "audit.sqlite", Workspace.load(ledger_copy.root).index_path)
    outcome = cli("audit", "participants", "--workdir", str(ledger_copy.root))
    assert outcome.exit_code == 2
    line = outcome.error_line()
    assert f"was built for contract {Workspace.load(anvil_ledger.root).config['deployment']['address']}" in line
    assert "delete the file, it is rebuilt from the chain" in line


def test_provenance_of_a_cid_not_in_the_ledger(anvil_ledger, cli):
    stranger = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"  # "hello world"
    outcome = cli("audit", "provenance", stranger, "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 2
    assert f"{stranger} is not a model recorded in this ledger" in outcome.error_line()


def test_malformed_cid_and_unknown_round(anvil_ledger, cli):
    outcome = cli("audit", "provenance", "not-a-cid", "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 2 and "is not a CID fedledger can use" in outcome.error_line()
    outcome = cli("audit", "verify", "--round", "9", "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 2 and "there is no round 9 in this ledger" in outcome.error_line()


def test_no_workspace(tmp_path, cli):
    outcome = cli("audit", "rounds", "--workdir", str(tmp_path / "nowhere"))
    assert outcome.exit_code == 2
    assert outcome.error_line().startswith("error: ")
