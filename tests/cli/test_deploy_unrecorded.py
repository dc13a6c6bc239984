"""A `deploy` whose fedledger.toml cannot be written after the contract was mined (the disk filled or the
folder turned read-only after deploy's own check) ends with one sentence naming the contract's address,
block and transaction and the lines to record it by hand, not a traceback; those lines, pasted, work.
"""

from __future__ import annotations

import errno
import re
import tomllib
from collections.abc import Callable

import pytest

from deploy.anvil import AnvilProcess
from ledger.workspace import Workspace
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome

pytestmark = pytest.mark.anvil


def test_a_deployment_that_cannot_be_saved_says_where_it_is_and_how_to_record_it(
    cli: Callable[..., Outcome], workspace: Workspace, anvil: AnvilProcess, chain: TestChain,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace.set("chain", "rpc", anvil.rpc_url)
    workspace.save()
    config = workspace.config_path.read_bytes()

    def disk_full(self: Workspace) -> None:  # only deploy's final save: its probe before sending passes
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Workspace, "save", disk_full)
    outcome = cli("deploy", "--workdir", str(workspace.root))
    monkeypatch.undo()

    assert outcome.exit_code == 1 and outcome.stdout == ""
    line = outcome.error_line()  # one line, no traceback
    found = re.search(r"deployed at (0x[0-9a-fA-F]{40}) on chain id (\d+) \(block (\d+), transaction (0x[0-9a-f]{64})\)", line)
    assert found, line
    address, chain_id, block, tx_hash = found.group(1), int(found.group(2)), int(found.group(3)), found.group(4)
    receipt = chain.w3.eth.get_transaction_receipt(tx_hash)
    assert (receipt["contractAddress"], receipt["blockNumber"], chain_id) == (address, block, chain.w3.eth.chain_id)
    assert chain.w3.eth.get_code(address)  # the contract is there, as the sentence says
    assert "No space left on device" in line and str(workspace.config_path) in line
    assert workspace.config_path.read_bytes() == config  # nothing half-written

    # The user does what the sentence says: the lines under [deployment], then the workspace works.
    lines = re.search(r"put these lines under \[deployment\] in it by hand: (.*?) \(deploying again", line)
    assert lines, line
    text = config.decode().replace("[deployment]\n", "[deployment]\n" + lines.group(1).replace(", ", "\n") + "\n")
    recorded = tomllib.loads(text)["deployment"]
    assert (recorded["address"], recorded["chain_id"], recorded["block"]) == (address, chain_id, block)
    workspace.config_path.write_text(text)
    shown = cli("admin", "show", "--json", "--workdir", str(workspace.root))
    assert shown.exit_code == 0, shown.stderr
