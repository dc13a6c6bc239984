"""``python -m node.flower.supernode``: Flower's SuperNode with its fixed 3 s idle sleep capped.

The patch is written against one flwr version; these tests fail when it no longer applies (an
upgraded flwr, a reworded loop), so whoever upgrades looks again rather than losing the fast poll
silently, and they check that the cap is the interval given and that the deployment uses it.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("flwr")

import flwr  # noqa: E402

from node.flower import deployment, supernode  # noqa: E402
from node.flower.deployment import FlowerDeployment  # noqa: E402

MODULE = importlib.import_module(supernode.MODULE)


@pytest.fixture
def loop_module(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """Flower's SuperNode loop module, its ``time`` put back after the test."""
    monkeypatch.setattr(MODULE, "time", MODULE.time)
    return MODULE


def test_the_patch_applies_to_the_installed_flower_and_caps_the_idle_sleep_at_the_interval(loop_module) -> None:  # noqa: ANN001
    assert supernode.why_not_patchable(loop_module, flwr.__version__) is None, (
        "node.flower.supernode no longer applies to the installed flwr: check its SuperNode loop and update the launcher")
    assert supernode.patch(0.05) is True
    assert isinstance(loop_module.time, supernode.CappedTime) and loop_module.time.cap == 0.05
    started = time.monotonic()
    loop_module.time.sleep(3)  # what start_client_internal sleeps when it pulled no message
    assert time.monotonic() - started < 0.5
    assert loop_module.time.monotonic is time.monotonic  # everything but sleep is time's own
    assert supernode.patch(0.1) is True and loop_module.time.cap == 0.1  # a second patch changes only the cap


def test_another_flower_runs_the_supernode_as_shipped_with_a_warning(
    loop_module, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]  # noqa: ANN001
) -> None:
    monkeypatch.setattr(flwr, "__version__", "1.43.0")
    assert supernode.patch(0.05) is False
    assert loop_module.time is time
    assert "flwr 1.43.0 is not flwr 1.42.0" in capsys.readouterr().err
    # and a loop that no longer sleeps that line, or a module that sleeps with something else than `time`
    reworded = SimpleNamespace(time=time, start_client_internal=lambda: time.sleep(1))
    assert "no longer sleeps `time.sleep(3)`" in supernode.why_not_patchable(reworded, supernode.FLWR_VERSION)
    assert "no module attribute `time`" in supernode.why_not_patchable(sys, supernode.FLWR_VERSION)


def test_the_launcher_runs_flowers_own_entry_point_with_the_other_arguments_and_the_cap(
    loop_module, monkeypatch: pytest.MonkeyPatch  # noqa: ANN001
) -> None:
    seen = {}

    def flower_supernode() -> None:
        seen.update(argv=list(sys.argv), cap=loop_module.time.cap)

    monkeypatch.setattr("flwr.supernode.cli.flower_supernode", flower_supernode)
    monkeypatch.setattr(sys, "argv", sys.argv)
    supernode.main(["--insecure", "--poll-interval", "0.3", "--superlink", "127.0.0.1:9092"])
    assert seen == {"argv": ["flower-supernode", "--insecure", "--superlink", "127.0.0.1:9092"], "cap": 0.3}
    with pytest.raises(SystemExit):
        supernode.main(["--poll-interval", "0"])


def test_the_deployment_starts_its_supernodes_through_the_launcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spawned: list[list[str]] = []
    monkeypatch.setattr(FlowerDeployment, "_spawn", lambda self, name, argv, env=None: (spawned.append(argv), (None, None))[1])
    flower = FlowerDeployment(tmp_path, isolation="subprocess")
    flower.port = 9092
    flower.start_supernode("party1", {"partition-id": 0})
    assert spawned[0][:5] == [sys.executable, "-m", "node.flower.supernode", "--poll-interval", "0.2"]
    stock = FlowerDeployment(tmp_path, isolation="subprocess", poll_interval=None)
    stock.port = 9092
    stock.start_supernode("party1", {"partition-id": 0})
    assert Path(spawned[1][0]).name == "flower-supernode"
    assert flower.env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] == deployment.FLOWER_ENV["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"]
