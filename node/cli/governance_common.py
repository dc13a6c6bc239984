"""What the governance command modules share: the ``--key`` option, chain access, reporting a transaction.

Each command resolves the workspace, connects to its chain, checks the recorded deployment
(ledger.chain.connection.open_federation) and calls one FederationClient method. Governance transactions are
signed by ``--key`` (a name under ``[keys]`` or a keystore file), else ``$FEDLEDGER_PRIVATE_KEY``, else
``[keys] admin``, else, on a local dev chain, its first funded account: the more explicit setting wins
(ledger.chain.connection.signing_account).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ledger.workspace import Workspace
from node.cli._common import console, print_json

# The chain and key modules (web3, eth-account) cost a second to import: commands import them when
# they run, so that `--help`, `init`, `ipfs` and `chain` start fast.
if TYPE_CHECKING:
    from web3 import Web3

    from ledger.chain.federation import FederationClient, TxResult

MaxFeeOption = Annotated[
    float | None,
    typer.Option("--max-fee-gwei", min=0.000000001,
                 help="Refuse to send a transaction whose max fee per gas would exceed this many gwei (default: \\[chain] max_fee_gwei, else no cap)."),
]
KeyOption = Annotated[
    str | None,
    typer.Option("--key", help="Signing key: a name under \\[keys] or a keystore file (password from $FEDLEDGER_KEY_PASSWORD or a prompt)."),
]


def _tx_doc(tx: TxResult) -> dict[str, Any]:
    return {"tx_hash": tx.tx_hash, "block": tx.block, "gas_used": tx.gas_used}


def jsonable(value: Any) -> Any:
    """Dataclass documents with bytes as 0x-hex, ready for print_json."""
    if isinstance(value, dict):
        return {name: jsonable(item) for name, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    return value


def chain(workdir: Path | None, rpc: str | None) -> tuple[Workspace, Web3, str]:
    """The workspace and a connection to its chain, after checking a deployment is recorded."""
    from ledger.chain.connection import connect, recorded_deployment, workspace_rpc

    workspace = Workspace.find(workdir)
    recorded_deployment(workspace)
    url = workspace_rpc(workspace, rpc)
    return workspace, connect(url), url


def governed(
    workdir: Path | None, rpc: str | None, key: str | None, max_fee_gwei: float | None = None
) -> tuple[Workspace, FederationClient]:
    """The workspace and its Federation with the governance signer attached (checked for gas money),
    sending under ``--max-fee-gwei`` (else ``[chain] max_fee_gwei``)."""
    from ledger.chain.connection import open_federation, require_gas_money, signing_account

    workspace, w3, url = chain(workdir, rpc)
    federation = open_federation(workspace, w3=w3, rpc=url, max_fee_gwei=max_fee_gwei)
    signer = signing_account(workspace, key, w3=w3, rpc=url)
    require_gas_money(w3, signer.address)
    return workspace, federation.with_account(signer)


def reader(workdir: Path | None, rpc: str | None) -> FederationClient:
    from ledger.chain.connection import open_federation

    workspace, w3, url = chain(workdir, rpc)
    return open_federation(workspace, w3=w3, rpc=url)


def report_tx(what: str, tx: TxResult, json: bool, extra: dict[str, Any] | None = None) -> None:
    if json:
        print_json({**(extra or {}), **_tx_doc(tx)})
    console.print(f"{what} (block {tx.block}, gas {tx.gas_used}, tx {tx.tx_hash}).", soft_wrap=True, highlight=False)
