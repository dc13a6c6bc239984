"""A Hardhat node (npm ``hardhat`` 2.x, ``deploy.hardhat``) for the tests that run fedledger on a second EVM
implementation besides anvil. ``npm ci`` installs it: a missing Hardhat fails the tests that need it (the
fixture raises), it never skips them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from deploy.hardhat import HardhatProcess


@pytest.fixture(scope="session")
def hardhat() -> Iterator[HardhatProcess]:
    """The session's Hardhat node on 127.0.0.1 at a free port, stopped by PID afterwards. Hardhat has no
    snapshot a test would revert to here (each test deploys its own federation, as a user does)."""
    process = HardhatProcess().start()
    try:
        yield process
    finally:
        process.stop()
