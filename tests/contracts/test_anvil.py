"""The anvil lifecycle: start on a free port, refuse a taken one, stop by PID, keep state across restarts."""

from __future__ import annotations

from pathlib import Path

import pytest
from web3 import Web3

from deploy.anvil import AnvilProcess, find_anvil, rpc_chain_id, stop_pidfile
from ledger.errors import ChainError
from ledger.chain.federation import FederationClient


def test_a_taken_port_is_refused_with_a_clear_error(anvil: AnvilProcess) -> None:
    with pytest.raises(ChainError, match=f"port {anvil.port} .* already taken"):
        AnvilProcess(port=anvil.port).start()


def test_state_survives_a_restart_and_stop_by_pidfile(tmp_path: Path) -> None:
    state = tmp_path / "anvil-state.json"
    node = AnvilProcess(state=state).start()
    client, _ = FederationClient.deploy(Web3(Web3.HTTPProvider(node.rpc_url)))
    client.publish_encryption_key(bytes(range(1, 33)))  # block 2: block 1's state is no longer the latest
    pidfile = tmp_path / "anvil.pid"
    pidfile.write_text(str(node.pid))
    assert stop_pidfile(pidfile) is True
    node.stop()  # reaps the child
    assert rpc_chain_id(node.rpc_url) is None and not pidfile.exists() and state.is_file()
    with AnvilProcess(state=state, port=node.port) as again:
        w3 = Web3(Web3.HTTPProvider(again.rpc_url))
        restarted = FederationClient(w3, client.address)
        assert restarted.has_role("admin", w3.eth.accounts[0])
        # Past blocks' state too: the audit reads a sealed round's keys as they were at its opening block.
        assert restarted.encryption_key(w3.eth.accounts[0], block=1) is None
        assert restarted.encryption_key(w3.eth.accounts[0]) == bytes(range(1, 33))
    assert stop_pidfile(pidfile) is False


def test_a_missing_binary_says_to_run_npm_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("deploy.anvil.BINARY_REL", Path("node_modules/nowhere/anvil"))
    with pytest.raises(ChainError, match="run `npm ci`"):
        find_anvil(start=tmp_path)


def test_an_unreadable_state_file_is_reported_with_anvils_reason(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text("not json")
    with pytest.raises(ChainError, match="anvil exited at start \\(error: invalid value .*--state"):
        AnvilProcess(state=state).start()
