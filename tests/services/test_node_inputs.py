"""A node builds the party's built-in data only when a built-in round needs it, and a file that does not
load settles that round with its sentence instead of stopping the node (``node run`` with a --data that
only a task reads). One anvil, the steps in this process, as in test_steps."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.cli.train_cmd import party_data
from node.data import Dataset
from node.services.metrics import ServiceMetrics
from node.services.participant_service import NodeService
from tests.services.test_steps import Setup, setup  # noqa: F401 - the fixture

pytestmark = pytest.mark.anvil


def test_built_in_data_is_loaded_when_a_built_in_round_needs_it_and_a_bad_file_settles_only_that_round(
    setup: Setup, tmp_path: Path  # noqa: F811 - the fixture imported above
) -> None:
    task_csv = tmp_path / "breast.csv"  # a task's file: 31 columns, not the 64 features of the built-in model
    task_csv.write_text(",".join(f"f{i}" for i in range(30)) + ",label\n" + ",".join(["0.5"] * 30) + ",1\n")
    calls: list[str] = []

    def loader(index: int, path: Path | None) -> Dataset:
        calls.append(f"party {index}")
        return party_data(path, None, None, None, 0) if path is not None else setup.shards[index]

    def node(index: int, path: Path | None) -> NodeService:
        return NodeService(federation=setup.admin.with_account(setup.parties[index]), store=setup.store,
                           data=lambda: loader(index, path), journal_dir=setup.journal, log=setup.log("node"),
                           metrics=ServiceMetrics("node"))

    bad, good = node(0, task_csv), node(1, None)
    bad.start()
    bad.step()  # nothing open: nothing read
    [started] = setup.events("started")
    assert "it reads its data when a round needs it" in started["message"] and calls == []

    round_id = setup.open_round(min_updates=1)
    bad.step()
    bad.step()  # settled: not read again for this round
    [warned] = setup.events("cannot-take-part")
    assert warned["level"] == "warning" and warned["round"] == round_id
    assert warned["message"] == (f"round {round_id}: cannot take part: data file {task_csv} has rows of [31] columns; "
                                 "each row needs 64 features then the label (no index column).")
    assert calls == ["party 0"] and not setup.admin.has_submitted(round_id, setup.parties[0].address)

    good.step()
    good.step()
    [submitted] = setup.events("submitted")
    assert submitted["round"] == round_id and submitted["samples"] == len(setup.shards[1])
    assert calls == ["party 0", "party 1"]
    assert setup.admin.has_submitted(round_id, setup.parties[1].address)
