"""Deploy the Federation contract and record where it lives in the workspace.

``[deployment]`` in fedledger.toml is the one place every later command reads the contract
from, so it is written only after the deployment transaction is mined, atomically, and never
over a recorded deployment that may still be in use unless the user says ``--force``. Every refusal
comes before the transaction is sent, including a workspace whose fedledger.toml cannot be written;
should the write still fail after the deployment was mined, the error says where the contract is
and the lines to record it by hand.

Before sending, the compiler metadata (contracts/build/Federation.metadata.json: settings, compiler
version, every source's text) is pinned to the workspace's store and its CID recorded as
``[deployment] metadata_cid``, so anyone with the ledger's store can rebuild the bytecode and check
it against the code at the address (ledger/chain/code_check.py, ``fedledger contract verify``).
"""

from __future__ import annotations

import json
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.chain.connection import (
    MEMORY,
    connect,
    require_gas_money,
    signing_account,
    workspace_rpc,
)
from ledger.chain.code_check import METADATA_DOCUMENT
from ledger.contract_constants import DEFAULT_ADMIN_DELAY
from ledger.errors import ConfigError, DeploymentError, InvalidInputError
from ledger.chain.federation import FederationClient, load_artifact
from ledger.ipfs.store import ContentStore, open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace


def _refuse_to_replace(w3: Web3, workspace: Workspace) -> None:
    """DeploymentError when ``[deployment]`` names a contract that may still be in use.

    That is a contract with code on this chain, or one on another chain (which cannot be checked
    from here). A record on this chain whose code is gone (a chain restarted without its state)
    may be replaced silently: nothing is lost.
    """
    recorded = workspace.config.get("deployment") or {}
    address, chain_id = recorded.get("address"), recorded.get("chain_id")
    if not address or chain_id is None:
        return
    current = w3.eth.chain_id
    try:
        same_chain = int(chain_id) == current
        live = same_chain and bool(w3.eth.get_code(Web3.to_checksum_address(address)))
    except (ValueError, TypeError):
        return  # a malformed record protects nothing
    if live:
        raise DeploymentError(
            f"a Federation is already deployed at {address} on chain id {current} and recorded in "
            f"{workspace.config_path}; keep using it, or pass --force to deploy a new one and record that instead."
        )
    if not same_chain:
        raise DeploymentError(
            f"{workspace.config_path} records a Federation at {address} on chain id {chain_id}, but this chain "
            f"has id {current}; point --rpc at that chain, or pass --force to deploy here and replace the record."
        )


def _record(address: str, chain_id: int, block: int, metadata_cid: str) -> dict[str, Any]:
    """The ``[deployment]`` section fedledger.toml keeps."""
    return {
        "address": address,
        "chain_id": int(chain_id),
        "block": int(block),
        "sources_sha256": load_artifact().get("sourcesSha256", ""),
        "metadata_cid": metadata_cid,
    }


def _metadata_document() -> bytes:
    if not METADATA_DOCUMENT.is_file():
        raise ConfigError(f"{METADATA_DOCUMENT} is missing; run `python -m deploy.compile` in the repository.")
    return METADATA_DOCUMENT.read_bytes()


def pin_metadata(store: ContentStore) -> str:
    """Pin the compiler metadata document (sources included) to ``store``; its CID."""
    return str(store.add_bytes(_metadata_document()))


def deploy_federation(
    workspace: Workspace,
    *,
    rpc: str | None = None,
    account: LocalAccount | None = None,
    key: str | None = None,
    force: bool = False,
    w3: Web3 | None = None,
    admin_delay: int = DEFAULT_ADMIN_DELAY,
    store: ContentStore | None = None,
) -> dict[str, Any]:
    """Deploy Federation with ``account`` (else the key ``key``, see ledger.chain.connection.signing_account) and record it.

    Returns the recorded document: address, chain_id, block, tx_hash, gas_used, deployer, rpc,
    the compiled sources' sha256 and the CID of the compiler metadata pinned to ``store`` (else
    the workspace's store). The deployer holds the admin, coordinator and aggregator
    roles; a new admin must wait ``admin_delay`` seconds after being proposed before accepting.
    """
    url = workspace_rpc(workspace, rpc)
    if url == MEMORY and w3 is None:
        raise InvalidInputError(
            "the in-process chain ('memory') lives only as long as one command, so a deployment on it could not "
            "be used later; start a chain with `fedledger chain up` (or use `fedledger demo --chain memory`)."
        )
    w3 = w3 if w3 is not None else connect(url)
    if not force:
        _refuse_to_replace(w3, workspace)
    if account is None:
        account = signing_account(workspace, key, w3=w3, rpc=url)
    require_gas_money(w3, account.address)
    # A deployment that cannot be recorded is lost to every later command: before sending, check
    # that fedledger.toml can take a record as long as the real one.
    chain = {**workspace.config.get("chain", {}), **({"rpc": url} if rpc is not None else {})}
    metadata_cid = str(cid_of_bytes(_metadata_document()))  # the CID the store will give it
    placeholder = _record("0x" + "0" * 40, w3.eth.chain_id, 2**63, metadata_cid)
    workspace.require_writable({**workspace.config, "chain": chain, "deployment": placeholder})
    pinned = pin_metadata(store if store is not None else open_store(workspace))
    if pinned != metadata_cid:
        raise ConfigError(f"the store answered CID {pinned} for the compiler metadata, not {metadata_cid}; "
                          "point [store] at an IPFS node that adds with --cid-version=1 (Kubo does).")
    client, tx = FederationClient.deploy(w3, account=account, admin_delay=admin_delay)
    record = _record(client.address, client.chain_id, tx.block, metadata_cid)
    workspace.config["deployment"] = dict(record)
    if rpc is not None:
        workspace.set("chain", "rpc", url)
    try:
        workspace.save()
    except OSError as error:
        raise DeploymentError(_unrecorded(workspace, record, tx.tx_hash, rpc=url if rpc is not None else None,
                                          why=error.strerror or str(error))) from error
    return {**record, "tx_hash": tx.tx_hash, "gas_used": tx.gas_used, "deployer": account.address, "rpc": url}


def _unrecorded(workspace: Workspace, record: dict[str, Any], tx_hash: str, *, rpc: str | None, why: str) -> str:
    """The sentence for a deployment that was mined but could not be recorded: where it is, and the lines
    of fedledger.toml that record it by hand (the probe before sending makes this rare: the disk filled,
    or the folder turned read-only, in between)."""
    lines = ", ".join(f"{name} = {json.dumps(value)}" for name, value in record.items())
    chain = f" and under [chain] the line rpc = {json.dumps(rpc)}" if rpc is not None else ""
    return (
        f"the Federation was deployed at {record['address']} on chain id {record['chain_id']} (block {record['block']}, "
        f"transaction {tx_hash}), but {workspace.config_path} could not be written ({why}); make it writable and "
        f"put these lines under [deployment] in it by hand: {lines}{chain} (deploying again would make another contract)."
    )
