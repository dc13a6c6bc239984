"""Every user mistake ends in one sentence naming cause and fix, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deploy.anvil import AnvilProcess, free_port
from ledger.chain.keys import create_keystore
from ledger.workspace import Workspace
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome

SOME_CID = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
SOME_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def refused(outcome: Outcome) -> str:
    assert outcome.exit_code != 0, outcome.stderr
    assert outcome.stdout == ""
    return outcome.error_line()


@pytest.fixture
def deployed_anvil(
    anvil: AnvilProcess, chain: TestChain, workspace: Workspace, cli: Callable[..., Outcome]
) -> Iterator[Workspace]:
    """``workspace`` with a Federation deployed on the session's anvil (reverted after the test)."""
    workspace.set("chain", "rpc", anvil.rpc_url)
    workspace.save()
    assert cli("deploy", "--workdir", str(workspace.root)).exit_code == 0
    yield Workspace.load(workspace.root)


def record_deployment(workspace: Workspace, *, rpc: str, chain_id: int) -> bytes:
    workspace.set("chain", "rpc", rpc)
    workspace.config["deployment"] = {"address": SOME_ADDRESS, "chain_id": chain_id, "block": 1}
    workspace.save()
    return workspace.config_path.read_bytes()


def test_malformed_address_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    before = record_deployment(workspace, rpc="http://127.0.0.1:9", chain_id=31337)
    line = refused(cli("participant", "approve", "0x12345", "--workdir", str(workspace.root)))
    assert "'0x12345' is not an Ethereum address" in line
    assert workspace.config_path.read_bytes() == before


def test_mistyped_checksum_address_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    line = refused(cli("participant", "suspend", SOME_ADDRESS.replace("F", "f", 1), "--workdir", str(workspace.root)))
    assert "wrong checksum" in line


def test_malformed_cid_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    before = record_deployment(workspace, rpc="http://127.0.0.1:9", chain_id=31337)
    line = refused(cli(
        "round", "open", "--base-cid", "QmNotACidV1", "--deadline", "60", "--min-updates", "1",
        "--workdir", str(workspace.root),
    ))
    assert "is not a CID fedledger can use" in line and "CIDv0" in line
    assert workspace.config_path.read_bytes() == before
    assert [path for path in workspace.store_dir.rglob("*") if path.is_file()] == []  # nothing pinned


def test_unreachable_rpc_is_named(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    before = record_deployment(workspace, rpc=url, chain_id=31337)
    line = refused(cli("participant", "list", "--workdir", str(workspace.root)))
    assert f"nothing answers at {url}" in line and "fedledger chain up" in line
    assert workspace.config_path.read_bytes() == before


def test_malformed_rpc_url_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    line = refused(cli("deploy", "--rpc", "localhost8545", "--workdir", str(workspace.root)))
    assert "'localhost8545' is not an RPC URL" in line


def test_missing_deployment_says_run_deploy(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    before = workspace.config_path.read_bytes()
    line = refused(cli("round", "status", "--workdir", str(workspace.root)))
    assert f"no deployment recorded in {workspace.config_path}; run `fedledger deploy`" in line
    assert workspace.config_path.read_bytes() == before


@pytest.mark.anvil
def test_deployment_on_another_chain_id_is_refused(
    cli: Callable[..., Outcome], workspace: Workspace, anvil: AnvilProcess
) -> None:
    before = record_deployment(workspace, rpc=anvil.rpc_url, chain_id=11155111)
    line = refused(cli("participant", "list", "--workdir", str(workspace.root)))
    assert "chain id 31337" in line and "chain id 11155111" in line
    assert workspace.config_path.read_bytes() == before


@pytest.mark.anvil
def test_recorded_address_without_code_is_refused(
    cli: Callable[..., Outcome], workspace: Workspace, anvil: AnvilProcess
) -> None:
    record_deployment(workspace, rpc=anvil.rpc_url, chain_id=31337)
    workspace.set("deployment", "address", "0x000000000000000000000000000000000000dEaD")
    workspace.save()
    line = refused(cli("participant", "list", "--workdir", str(workspace.root)))
    assert "no contract code at 0x000000000000000000000000000000000000dEaD" in line


@pytest.mark.anvil
def test_keystore_with_wrong_password_is_refused(
    cli: Callable[..., Outcome], deployed_anvil: Workspace, tmp_path: Path
) -> None:
    keystore = tmp_path / "party.json"
    create_keystore(keystore, "the right one", iterations=2)
    before = deployed_anvil.config_path.read_bytes()
    line = refused(cli(
        "participant", "join", "--key", str(keystore), "--workdir", str(deployed_anvil.root),
        env={"FEDLEDGER_KEY_PASSWORD": "a wrong one"},
    ))
    assert f"wrong password for keystore {keystore.resolve()}" in line and "FEDLEDGER_KEY_PASSWORD" in line
    assert deployed_anvil.config_path.read_bytes() == before


def test_malformed_keystore_file_is_refused(cli: Callable[..., Outcome], workspace: Workspace, tmp_path: Path) -> None:
    bogus = tmp_path / "notakey.json"
    bogus.write_text('{"hello": "world"}')
    line = refused(cli("key", "show", str(bogus), "--workdir", str(workspace.root)))
    assert f"{bogus.resolve()} is not an eth-account keystore" in line


@pytest.mark.anvil
def test_deploy_over_a_live_deployment_needs_force(cli: Callable[..., Outcome], deployed_anvil: Workspace) -> None:
    before = deployed_anvil.config_path.read_bytes()
    first = deployed_anvil.config["deployment"]["address"]
    line = refused(cli("deploy", "--workdir", str(deployed_anvil.root)))
    assert f"already deployed at {first}" in line and "--force" in line
    assert deployed_anvil.config_path.read_bytes() == before

    forced = cli("deploy", "--force", "--json", "--workdir", str(deployed_anvil.root))
    assert forced.exit_code == 0, forced.stderr
    assert forced.json()["address"] != first
    assert Workspace.load(deployed_anvil.root).config["deployment"]["address"] == forced.json()["address"]


@pytest.mark.anvil
def test_chain_up_on_a_taken_port_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    before = workspace.config_path.read_bytes()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused(cli("chain", "up", "--port", str(port), "--detach", "--workdir", str(workspace.root)))
    assert f"port {port} on 127.0.0.1 is already taken" in line and "--port" in line
    assert workspace.config_path.read_bytes() == before
    assert not (workspace.chain_dir / "anvil.pid").exists()


def test_chain_down_with_nothing_running_says_so(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    outcome = cli("chain", "down", "--workdir", str(workspace.root))
    assert outcome.exit_code == 0 and "nothing to stop" in outcome.stderr


@pytest.mark.anvil
def test_deploy_over_a_deployment_recorded_on_another_chain_needs_force(
    cli: Callable[..., Outcome], workspace: Workspace, anvil: AnvilProcess
) -> None:
    before = record_deployment(workspace, rpc=anvil.rpc_url, chain_id=11155111)
    line = refused(cli("deploy", "--workdir", str(workspace.root)))
    assert "chain id 11155111" in line and "id 31337" in line and "--force" in line
    assert workspace.config_path.read_bytes() == before


def test_deploy_on_the_in_process_chain_is_refused(cli: Callable[..., Outcome], workspace: Workspace) -> None:
    before = workspace.config_path.read_bytes()
    line = refused(cli("deploy", "--rpc", "memory", "--workdir", str(workspace.root)))
    assert "lives only as long as one command" in line and "fedledger chain up" in line
    assert workspace.config_path.read_bytes() == before


def test_round_config_with_an_unknown_strategy_is_refused(
    cli: Callable[..., Outcome], workspace: Workspace, tmp_path: Path
) -> None:
    before = record_deployment(workspace, rpc="http://127.0.0.1:9", chain_id=31337)
    config = tmp_path / "round.json"
    config.write_text('{"model": "mlp", "strategy": {"name": "fedmagic"}}')
    line = refused(cli(
        "round", "open", "--base-cid", SOME_CID, "--deadline", "60", "--min-updates", "1",
        "--config", str(config), "--workdir", str(workspace.root),
    ))
    assert "unknown strategy 'fedmagic'" in line
    assert workspace.config_path.read_bytes() == before
    assert [path for path in workspace.store_dir.rglob("*") if path.is_file()] == []
