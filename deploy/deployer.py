"""Deploy the Federation contract and record where it lives in the workspace.

``[deployment]`` in fedledger.toml is the one place every later command reads the contract
from, so it is written only after the deployment transaction is mined, atomically, and never
over a recorded deployment that still has code on the chain unless the user says ``--force``.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain import connect, require_gas_money, signing_account, workspace_rpc
from ledger.errors import DeploymentError
from ledger.workspace import Workspace


def _live_recorded_address(w3: Web3, workspace: Workspace) -> str | None:
    """The recorded contract address when it is on this chain and still has code, else None."""
    recorded = workspace.config.get("deployment") or {}
    address, chain_id = recorded.get("address"), recorded.get("chain_id")
    if not address or chain_id is None:
        return None
    try:
        if int(chain_id) != w3.eth.chain_id:
            return None
        return address if w3.eth.get_code(Web3.to_checksum_address(address)) else None
    except (ValueError, TypeError):
        return None


def deploy_federation(
    workspace: Workspace,
    *,
    rpc: str | None = None,
    account: LocalAccount | None = None,
    key: str | None = None,
    force: bool = False,
    w3: Web3 | None = None,
) -> dict[str, Any]:
    """Deploy Federation with ``account`` (else the key ``key``, see ledger.chain.signing_account) and record it.

    Returns the recorded document: address, chain_id, block, tx_hash, gas_used, deployer, rpc
    and the compiled sources' sha256. The deployer holds the admin, coordinator and aggregator
    roles.
    """
    from deploy.compile import load_artifact
    from ledger.federation import FederationClient

    url = workspace_rpc(workspace, rpc)
    w3 = w3 if w3 is not None else connect(url)
    existing = _live_recorded_address(w3, workspace)
    if existing and not force:
        raise DeploymentError(
            f"a Federation is already deployed at {existing} on chain id {w3.eth.chain_id} and recorded in "
            f"{workspace.config_path}; keep using it, or pass --force to deploy a new one and record that instead."
        )
    if account is None:
        account = signing_account(workspace, key, w3=w3, rpc=url)
    require_gas_money(w3, account.address)
    client, tx = FederationClient.deploy(w3, account=account)
    record: dict[str, Any] = {
        "address": client.address,
        "chain_id": client.chain_id,
        "block": tx.block,
        "sources_sha256": load_artifact().get("sourcesSha256", ""),
    }
    workspace.config["deployment"] = dict(record)
    if rpc is not None:
        workspace.set("chain", "rpc", url)
    workspace.save()
    return {**record, "tx_hash": tx.tx_hash, "gas_used": tx.gas_used, "deployer": account.address, "rpc": url}
