"""Shared fixtures and the suite's scheduling. Area fixtures live in tests/fixtures_*.py, loaded as plugins.

The suite runs on pytest-xdist workers (``-n auto``: one more than the cores, at most 4), so:
- every process the tests start trains on ONE thread (``OMP_NUM_THREADS=1``, set before torch is
  imported, inherited by every subprocess; ``torch.set_num_threads(1)`` here). The models are tiny:
  on a 2-core machine running two workers, torch's default of a thread per core made each worker's
  threads spin against the other's, and training steps took up to 200 times longer;
- the tests marked ``slow`` run first, dealt to the head of every worker's block, so that the longest
  ones start at once on every worker instead of running one after another on one worker and keeping
  the run going alone at its end.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

pytest_plugins: list[str] = ["tests.fixtures_chain", "tests.fixtures_store", "tests.fixtures_cli"]


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than there are cores (at most 4). The end-to-end tests spend much of their
    time waiting on the processes they start (anvil, parties, servers), so one worker per core left a core
    idle part of the time: 8 min 16 s quiet with two workers on 2 cores (1.4 cores busy on average)."""
    return min((os.cpu_count() or 1) + 1, 4)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow tests first, and on xdist workers at the head of every worker's block (see ``worker_blocks``)."""
    slow = [item for item in items if item.get_closest_marker("slow") is not None]
    fast = [item for item in items if item.get_closest_marker("slow") is None]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    items[:] = worker_blocks(slow, fast, workers) if workers > 1 else slow + fast


def worker_blocks(slow: list, fast: list, workers: int) -> list:
    """The collection in the order that starts every worker on its share of the slow tests.

    ``--dist=worksteal`` hands each worker a contiguous block of the collection (sizes as its
    check_schedule deals them: the pending count over the workers still to serve) and an idle worker
    steals from the END of another's block. With every slow test at the front of the collection they all
    sat in the first worker's block and ran one after another there, the last of them alone at the end of
    the run; dealt round-robin to the blocks' heads, each worker starts on its own slow tests and the
    fast ones fill in behind them, to be stolen.
    """
    total, heads = len(slow) + len(fast), [slow[i::workers] for i in range(workers)]
    ordered: list = []
    rest = list(fast)
    for worker, head in enumerate(heads):
        size = (total - len(ordered)) // (workers - worker)
        take = max(0, size - len(head))
        ordered += head + rest[:take]
        del rest[:take]
    return ordered + rest
