"""hangpoint: a process stops at the named point and stays alive until killed; elsewhere it passes."""

from __future__ import annotations

import os
import subprocess
import sys

from ledger.failpoints import HANGPOINT_ENV

SCRIPT = "from ledger.failpoints import hangpoint; hangpoint('participant:training:round-2'); print('passed')"


def run(env_value: str | None) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if key != HANGPOINT_ENV}
    if env_value is not None:
        env[HANGPOINT_ENV] = env_value
    return subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, text=True)


def test_a_named_hangpoint_holds_the_process_until_it_is_killed_and_any_other_name_passes() -> None:
    held, other, unset = run("participant:training:round-2"), run("participant:training:round-3"), run(None)
    try:
        assert other.communicate(timeout=30)[0] == "passed\n" and unset.communicate(timeout=30)[0] == "passed\n"
        try:
            held.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            pass
        assert held.poll() is None  # still there, well after the others finished
    finally:
        held.kill()
    assert held.wait(timeout=10) != 0 and held.stdout is not None and held.stdout.read() == ""
