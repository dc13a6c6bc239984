"""A refused `fedledger deploy` sends nothing: for each way deploy can refuse, on a real anvil, the
would-be deployer's nonce (pending transactions included) and the block number are the same after
the refusal as before, and fedledger.toml is unchanged. The error message alone would not show a
deployment that went out before the refusal."""

from __future__ import annotations

import resource
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.chain.keys import create_keystore
from ledger.workspace import Workspace
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import FEDLEDGER, Outcome, clean_env

pytestmark = pytest.mark.anvil

DEV_ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"  # anvil's first dev account: deploy's default signer
SOME_ADDRESS = "0x5FbDB2315678afecb367f032d93F642f64180aa3"


def chain_position(w3: Web3, *senders: str) -> tuple[int, ...]:
    """The block number and each sender's nonce counting pending transactions: what a sent deployment moves."""
    return (int(w3.eth.block_number), *(int(w3.eth.get_transaction_count(s, "pending")) for s in senders))


def refused_sending_nothing(
    cli: Callable[..., Outcome], workspace: Workspace, w3: Web3, *args: str,
    senders: tuple[str, ...] = (DEV_ACCOUNT,), env: dict[str, str] | None = None,
) -> str:
    """Run `deploy ARGS` in ``workspace``; assert it failed and that nothing reached the chain or the file."""
    before, config = chain_position(w3, *senders), workspace.config_path.read_bytes()
    outcome = cli("deploy", *args, "--workdir", str(workspace.root), env=env)
    assert outcome.exit_code != 0, outcome.stderr
    assert outcome.stdout == ""
    assert chain_position(w3, *senders) == before, "a refused deploy sent a transaction"
    assert workspace.config_path.read_bytes() == config
    return " ".join(outcome.stderr.split())


@pytest.fixture
def on_anvil(anvil: AnvilProcess, chain: TestChain, workspace: Workspace) -> Iterator[Workspace]:
    """``workspace`` pointed at the session's anvil (every chain change reverted afterwards)."""
    workspace.set("chain", "rpc", anvil.rpc_url)
    workspace.save()
    yield Workspace.load(workspace.root)


def test_deploy_over_a_live_deployment_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    assert cli("deploy", "--workdir", str(on_anvil.root)).exit_code == 0
    assert chain.w3.eth.get_transaction_count(DEV_ACCOUNT) >= 1  # the deployer has sent before
    message = refused_sending_nothing(cli, Workspace.load(on_anvil.root), chain.w3)
    assert "already deployed at" in message and "--force" in message


def test_deploy_over_a_record_on_another_chain_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    on_anvil.config["deployment"] = {"address": SOME_ADDRESS, "chain_id": 11155111, "block": 1}
    on_anvil.save()
    message = refused_sending_nothing(cli, on_anvil, chain.w3)
    assert "chain id 11155111" in message and "--force" in message


def test_deploy_with_a_key_that_does_not_exist_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    message = refused_sending_nothing(cli, on_anvil, chain.w3, "--key", "nobody")
    assert "no key named 'nobody'" in message


def test_deploy_with_a_wrong_keystore_password_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain, tmp_path: Path
) -> None:
    keystore = tmp_path / "admin.json"
    address = create_keystore(keystore, "the right one", iterations=2)
    chain.rpc("anvil_setBalance", [address, hex(10**18)])
    message = refused_sending_nothing(
        cli, on_anvil, chain.w3, "--key", str(keystore), senders=(DEV_ACCOUNT, address),
        env={"FEDLEDGER_KEY_PASSWORD": "a wrong one"},
    )
    assert "wrong password for keystore" in message


def test_deploy_from_an_account_without_ether_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    broke = Account.create()
    message = refused_sending_nothing(
        cli, on_anvil, chain.w3, senders=(DEV_ACCOUNT, broke.address),
        env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(broke.key)},
    )
    assert f"{broke.address} holds no ether" in message


def test_deploy_with_an_admin_delay_out_of_range_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    for delay in ("-1", str(2**48)):
        refused_sending_nothing(cli, on_anvil, chain.w3, "--admin-delay", delay)


def test_deploy_on_the_in_process_chain_or_a_malformed_url_sends_nothing(
    cli: Callable[..., Outcome], on_anvil: Workspace, chain: TestChain
) -> None:
    """The workspace's chain is the anvil: a mistyped --rpc must not fall back to it."""
    assert "lives only as long as one command" in refused_sending_nothing(cli, on_anvil, chain.w3, "--rpc", "memory")
    assert "is not an RPC URL" in refused_sending_nothing(cli, on_anvil, chain.w3, "--rpc", "localhost8545")


def test_deploy_without_a_key_on_a_chain_that_is_not_a_dev_chain_sends_nothing(
    cli: Callable[..., Outcome], workspace: Workspace
) -> None:
    """Only anvil's own chain id (31337) lends its first dev account; elsewhere a key must be given."""
    with AnvilProcess(chain_id=1337) as other:
        w3 = Web3(Web3.HTTPProvider(other.rpc_url))
        message = refused_sending_nothing(cli, workspace, w3, "--rpc", other.rpc_url, senders=(DEV_ACCOUNT,))
    assert f"no key to sign with on {other.rpc_url}" in message


def test_deploy_into_a_workspace_that_cannot_be_written_sends_nothing(on_anvil: Workspace, chain: TestChain) -> None:
    """A contract deployed but not recorded is lost to every later command: a workspace whose
    fedledger.toml cannot be rewritten (here a file-size limit, as a full disk or a read-only
    folder would) is refused before the deployment is sent."""
    before, config = chain_position(chain.w3, DEV_ACCOUNT), on_anvil.config_path.read_bytes()

    def small_files_only() -> None:  # writes past 64 bytes fail with EFBIG (Python ignores SIGXFSZ)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    done = subprocess.run(
        [str(FEDLEDGER), "deploy", "--workdir", str(on_anvil.root)], capture_output=True, text=True,
        env=clean_env(), preexec_fn=small_files_only, timeout=120, check=False,
    )
    outcome = Outcome(done.returncode, done.stdout, done.stderr)
    assert outcome.exit_code == 1, outcome.stderr
    assert f"cannot write {on_anvil.config_path}" in outcome.error_line() and "so nothing was done" in outcome.stderr
    assert chain_position(chain.w3, DEV_ACCOUNT) == before, "a refused deploy sent a transaction"
    assert on_anvil.config_path.read_bytes() == config
    assert sorted(p.name for p in on_anvil.root.iterdir() if p.is_file()) == ["fedledger.toml"]  # no scratch file left
