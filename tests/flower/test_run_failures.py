"""A Flower run that cannot start on the ledger fails with the ledger's sentence, not a hang."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("flwr")

from ledger.workspace import Workspace  # noqa: E402
from node.flower.deployment import EXAMPLE_APP, FlowerDeployment, FlowerRunError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_a_serverapp_on_a_workspace_without_a_deployment_fails_the_run_with_the_fix(tmp_path: Path) -> None:
    workspace = Workspace.init(tmp_path / "ws")  # nothing deployed
    with FlowerDeployment(tmp_path / "flower", env={"FEDLEDGER_WORKDIR": str(workspace.root)}) as flower:
        flower.start_superlink()
        with pytest.raises(FlowerRunError, match=r"no deployment recorded in .*fedledger.toml; run `fedledger deploy`"):
            flower.run(EXAMPLE_APP, {"num-server-rounds": 1}, timeout=500)
    assert (tmp_path / "flower" / "logs" / "flwr-run.log").is_file()
