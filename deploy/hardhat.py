"""Start and stop a local Hardhat node (npm ``hardhat`` 2.x, its EDR engine): the second EVM
implementation fedledger's round is tested on besides anvil (tests/chains), so the project does not
lean on anvil's quirks.

``node_modules/.bin/hardhat`` is Hardhat's CLI script itself (a symlink to
``hardhat/internal/cli/bootstrap.js``, which spawns no child): it is run with ``node`` and signalled
by that PID. The node runs ``deploy/hardhat/hardhat.config.js`` (chain id 31337, as anvil; no
compiler: fedledger compiles with npm solc itself) from the repository root, where Hardhat must find
itself installed. It listens on 127.0.0.1 and funds the same dev accounts as anvil (the mnemonic
``test test … junk``, 10000 ether each). Hardhat keeps no state across a restart (no ``--state``).

Hardhat asks for telemetry consent only on a terminal and shows its banner only on a terminal; the
node's output goes to a file, and ``HARDHAT_DISABLE_TELEMETRY_PROMPT`` is set besides, so it never
reaches for the internet.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from deploy.anvil import HOST, LocalChainProcess, find_in_node_modules
from ledger.errors import ChainError

CLI_REL = Path("node_modules/hardhat/internal/cli/bootstrap.js")
CONFIG = Path(__file__).resolve().parent / "hardhat" / "hardhat.config.js"
# What keeps Hardhat quiet and offline: no consent prompt, no telemetry, no survey or banner.
QUIET_ENV = {
    "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true",
    "HARDHAT_HIDE_SOLIDITY_SURVEY_MESSAGE": "true",
    "DO_NOT_TRACK": "1",
}


def find_hardhat(*, start: Path | None = None) -> Path:
    """Hardhat's CLI script under the repository root's or the current folder's node_modules."""
    return find_in_node_modules(CLI_REL, what="Hardhat", start=start)


def find_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ChainError("Node.js (`node`) is not on PATH; Hardhat's node needs Node.js >= 20.")
    return node


class HardhatProcess(LocalChainProcess):
    """One Hardhat node (``hardhat node``) on 127.0.0.1, at a free port unless ``port`` is given.

    ``config``: a Hardhat config file (default ``deploy/hardhat/hardhat.config.js``); ``startup_timeout``
    is longer than anvil's: Node.js loads Hardhat in about a second on an idle machine.
    """

    name = "the Hardhat node"
    start_hint = "check the port and that `npm ci` installed hardhat"

    def __init__(
        self,
        *,
        port: int | None = None,
        config: Path = CONFIG,
        log: Path | None = None,
        detach: bool = False,
        cli: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(port=port, log=log, detach=detach, startup_timeout=startup_timeout)
        self.config = config
        self.cli = cli

    def _cli(self) -> Path:
        if self.cli is None:
            return find_hardhat()
        if not self.cli.is_file():
            raise ChainError(f"Hardhat ({self.cli}) is not installed; run `npm ci` at the repository root.")
        return self.cli

    def command(self) -> list[str]:
        return [find_node(), str(self._cli()), "node", "--config", str(self.config), "--hostname", HOST, "--port", str(self.port)]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **QUIET_ENV}

    def working_directory(self) -> Path:
        """The folder whose node_modules holds Hardhat: it refuses to run unless installed where it starts."""
        return self._cli().parents[len(CLI_REL.parts) - 1]
