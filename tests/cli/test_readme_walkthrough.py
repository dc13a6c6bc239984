"""The README's "A federation by hand" runs as a user pastes it, after command 1 (issue 26).

The block is read from README.md by its heading, so the test follows every edit of the text. It runs
under ``bash -e`` (the first failing line ends it) in a folder that stands for the repository's: its
``.venv`` is the repository's, ``fedledger`` is on PATH only once the block activates it, and ``npm``
is a stand-in that records its arguments (a real ``npm ci`` would reinstall the node_modules that
the rest of the suite is using; `chain up` finds anvil in the repository's node_modules, where the
user's own `npm ci` puts it). One substitution: ``chain up`` gets a free ``--port``, since 8545 may
be taken here (by another worker's walk-through, say).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from deploy.anvil import free_port, process_command, stop_pidfile
from tests.fixtures_cli import clean_env

REPO = Path(__file__).resolve().parents[2]
HEADING = "## A federation by hand"
CHAIN_UP = "fedledger chain up --detach"


def readme_block(heading: str) -> str:
    """The first ```bash block of the README section that starts with ``heading``."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    following = text.find("\n## ", start + 1)
    section = text[start : following if following != -1 else len(text)]
    block = re.search(r"^```bash\n(.*?)^```$", section, flags=re.DOTALL | re.MULTILINE)
    assert block is not None, f"no ```bash block under {heading!r} in README.md"
    return block.group(1)


def test_the_walkthrough_block_is_found_by_its_heading() -> None:
    block = readme_block(HEADING)
    assert block.startswith("source .venv/bin/activate") and block.rstrip().endswith("fedledger chain down")


@pytest.mark.slow
@pytest.mark.anvil
def test_a_federation_by_hand_runs_as_pasted_after_command_1(tmp_path: Path) -> None:
    block = readme_block(HEADING)
    assert block.count(CHAIN_UP) == 1, "the walk-through should start anvil once, with `fedledger chain up --detach`"
    port = free_port()
    script = block.replace(CHAIN_UP, f"{CHAIN_UP} --port {port}")

    checkout = tmp_path / "checkout"  # the repository's folder, as the user's shell sees it
    checkout.mkdir()
    (checkout / ".venv").symlink_to(REPO / ".venv", target_is_directory=True)
    stand_ins = tmp_path / "bin"
    stand_ins.mkdir()
    npm_calls = tmp_path / "npm-calls"
    (stand_ins / "npm").write_text(f'#!/bin/sh\necho "$PWD: $*" >> {npm_calls}\n')
    (stand_ins / "npm").chmod(0o755)
    venv_bin = str(REPO / ".venv" / "bin")
    path = os.pathsep.join([str(stand_ins), *(p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin)])
    assert shutil.which("fedledger", path=path) is None, "fedledger is on PATH before the block activates the venv"
    env = {name: value for name, value in clean_env().items() if name != "VIRTUAL_ENV"}
    env.update(PATH=path, OMP_NUM_THREADS="1")

    workspace = checkout / "fed"
    started = time.monotonic()
    try:
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=checkout, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, timeout=240, check=False,
        )
    finally:
        left_running = stop_pidfile(workspace / "chain" / "anvil.pid", state=workspace / "chain" / "anvil.json")
    took = time.monotonic() - started
    output = done.stdout
    assert done.returncode == 0, f"the walk-through stopped (exit {done.returncode}) after {took:.0f} s:\n{output}"
    assert npm_calls.read_text() == f"{checkout}: ci --no-audit --no-fund\n"
    assert re.search(r"^ok \d+ checks on rounds \[1\] \(indexed to block \d+\): all passed$", output, re.MULTILINE), output
    assert "wrote report.html (all checks passed)" in output and (workspace / "report.html").is_file()
    admitted = re.findall(r"^(0x[0-9a-fA-F]{40}) admitted ", output, re.MULTILINE)
    assert len(set(admitted)) == 2, output  # alice and bob, approved by the addresses `key show` printed
    keystores = sorted((workspace / "keys").glob("*.json"))
    assert {"alice.json", "bob.json"} <= {keystore.name for keystore in keystores}, keystores
    for keystore in keystores:  # `key new` as a user types it: the full scrypt cost
        assert json.loads(keystore.read_text())["crypto"]["kdfparams"]["n"] == 2**18, keystore
    assert re.search(r"^Finalized round 1 with median: aggregated 2 of 2 submitted updates", output, re.MULTILINE), output

    # `chain down` stopped the anvil that `chain up` started: nothing was left for the finally to stop
    up = re.search(rf"^anvil answers at http://127\.0\.0\.1:{port} \(pid (\d+)\)", output, re.MULTILINE)
    assert up is not None, output
    anvil_pid = int(up.group(1))
    assert f"Stopped anvil (pid {anvil_pid})" in output
    assert not left_running and process_command(anvil_pid) is None
