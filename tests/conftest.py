"""Shared fixtures and the suite's scheduling. Area fixtures live in tests/fixtures_*.py, loaded as plugins.

The suite runs on pytest-xdist workers (``-n auto``: one more than the cores, at most 4), so:
- every process the tests start trains on ONE thread (``OMP_NUM_THREADS=1``, set before torch is
  imported, inherited by every subprocess; ``torch.set_num_threads(1)`` here). The models are tiny:
  on a 2-core machine running two workers, torch's default of a thread per core made each worker's
  threads spin against the other's, and training steps took up to 200 times longer;
- the tests marked ``slow`` run first, so that the longest ones start at once on every worker
  instead of one of them being handed out last and keeping the run going alone.
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
    """Slow tests first (a stable sort: their order among themselves, and everyone else's, is kept)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
