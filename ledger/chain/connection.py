"""Reaching the chain: connect to an RPC URL (or the in-process chain) and open the deployed Federation.

Every check that protects a user from talking to the wrong thing lives here: a malformed URL,
nothing answering, a chain with another id than the recorded deployment, no contract code at
the recorded address. Each ends in a ``ledger.errors`` class with one sentence naming the fix.
"""

from __future__ import annotations

import ipaddress
import time
from urllib.parse import urlsplit

import requests
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, is_checksum_address, to_checksum_address
from web3 import EthereumTesterProvider, HTTPProvider, Web3
from web3.exceptions import Web3Exception

from ledger.errors import (
    ChainError,
    ChainUnreachableError,
    ConfigError,
    DeploymentError,
    InvalidInputError,
    KeyLoadError,
    WrongChainError,
)
from ledger.chain.federation import FederationClient
from ledger.chain.failover import FailoverHTTPProvider
from ledger.chain.in_process_chain import in_process_web3
from ledger.chain.round_trips import cache_chain_id
from ledger.chain.transactions import TxPolicy
from ledger.chain.keys import PRIVATE_KEY_ENV, account_from_env, load_account
from ledger.types import Address
from ledger.workspace import Workspace

MEMORY = "memory"
DEFAULT_TIMEOUT_S = 5.0
ANVIL_CHAIN_ID = 31337
# anvil's first account under its default mnemonic ("test test … junk"): a well-known key that is
# used only when the chain itself is a local anvil that reports this very account as unlocked.
_ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"


def check_rpc_url(rpc: str) -> str:
    """``rpc`` if it is ``memory``, an http(s) URL with a host, or several such URLs separated by commas
    (endpoints of one chain, tried in turn: ``ledger.chain.failover``); InvalidInputError otherwise."""
    rpc = rpc.strip()
    if rpc == MEMORY:
        return rpc
    if "," in rpc:
        urls = [url.strip() for url in rpc.split(",")]
        if MEMORY in urls or len(set(urls)) != len(urls):
            raise InvalidInputError(
                f"{rpc!r} lists endpoints that cannot serve together ('memory', or one URL twice); give distinct "
                "http://HOST:PORT URLs of one chain, separated by commas."
            )
        return ",".join(check_rpc_url(url) for url in urls)
    parts = urlsplit(rpc)
    try:
        well_formed = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:  # a port that is not a number, or out of range
        well_formed = False
    if not well_formed:
        raise InvalidInputError(
            f"{rpc!r} is not an RPC URL; give http://HOST:PORT (for example http://127.0.0.1:8545) or 'memory'."
        )
    return rpc


def connect(rpc: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> Web3:
    """A Web3 on ``rpc``: ``memory`` is a fresh in-process chain, anything else an HTTP JSON-RPC URL.

    Asks the node for its chain id once, so an unreachable URL fails here, with a sentence,
    rather than at the first transaction; that answer is kept for the connection's life
    (``ledger.chain.round_trips.cache_chain_id``), so web3 does not ask again before every call.
    """
    rpc = check_rpc_url(rpc)
    if rpc == MEMORY:
        return in_process_web3()
    if "," in rpc:  # endpoints of one chain, each checked to be it before it is used
        provider: HTTPProvider = FailoverHTTPProvider(rpc.split(","), timeout=timeout)
    else:
        provider = HTTPProvider(rpc, request_kwargs={"timeout": timeout}, exception_retry_configuration=None)
    w3 = cache_chain_id(Web3(provider))  # the probe's answer serves every later chain id check
    try:
        w3.eth.chain_id  # noqa: B018 - the probe
    except ChainError:
        raise
    except (requests.RequestException, OSError) as error:
        raise ChainUnreachableError(
            f"nothing answers at {rpc} ({error.__class__.__name__}); "
            "start a chain with `fedledger chain up` or check --rpc."
        ) from None
    except (Web3Exception, ValueError) as error:
        raise ChainUnreachableError(
            f"{rpc} answers but not as an Ethereum JSON-RPC node ({error.__class__.__name__}); check --rpc."
        ) from None
    return w3


def chain_now(w3: Web3) -> int:
    """The earliest timestamp the next block can carry: deadlines are counted from it.

    The latest block's timestamp alone can be hours old on an idle or restarted local chain (anvil
    stamps a new block with the wall clock), which would make a fresh deadline already past.
    """
    return max(int(w3.eth.get_block("latest")["timestamp"]), int(time.time()))


def parse_address(text: str) -> Address:
    """A user-given address, checksummed; InvalidInputError when malformed or mis-checksummed."""
    candidate = text.strip() if isinstance(text, str) else text
    if not isinstance(candidate, str) or not candidate.startswith("0x") or not is_address(candidate):
        raise InvalidInputError(
            f"{text!r} is not an Ethereum address; give 0x followed by 40 hex digits "
            "(as printed by `fedledger key show` or `fedledger participant list`)."
        )
    digits = candidate[2:]
    mixed_case = digits != digits.lower() and digits != digits.upper()
    if mixed_case and not is_checksum_address(candidate):
        raise InvalidInputError(
            f"{text!r} has a wrong checksum (its upper/lower case letters do not match), so it is probably "
            "mistyped; copy the address again."
        )
    return Address(to_checksum_address(candidate))


def is_local_rpc(rpc: str) -> bool:
    """True for the in-process chain and for URLs on a loopback host (a local testnet)."""
    if rpc == MEMORY:
        return True
    if "," in rpc:
        return all(is_local_rpc(url) for url in rpc.split(","))
    host = urlsplit(rpc).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def dev_account(w3: Web3, rpc: str) -> LocalAccount | None:
    """The chain's first funded dev account as a signing account, on a local dev chain only.

    The in-process chain exposes its keys; a local anvil is recognised by chain id 31337 and its
    default first account. Any other chain gets None: its keys must come from the user.
    """
    if not is_local_rpc(rpc):
        return None
    if isinstance(w3.provider, EthereumTesterProvider):
        return Account.from_key(w3.provider.ethereum_tester.backend.account_keys[0])
    account = Account.from_key(_ANVIL_DEV_KEY)
    try:
        if w3.eth.chain_id == ANVIL_CHAIN_ID and account.address in w3.eth.accounts:
            return account
    except (requests.RequestException, OSError, Web3Exception, ValueError):
        return None
    return None


def workspace_rpc(workspace: Workspace, rpc: str | None = None) -> str:
    """The RPC to use: the flag, else ``$FEDLEDGER_RPC``, else ``[chain] rpc`` (a URL, or a list of URLs of
    one chain, given in TOML as a list or as one comma-separated string)."""
    configured = workspace.get("chain", "rpc")
    if isinstance(configured, list):
        configured = ",".join(str(url) for url in configured)
    return check_rpc_url(rpc or configured)


def recorded_deployment(workspace: Workspace) -> tuple[Address, int]:
    """The ``[deployment]`` address and chain id; DeploymentError when none is recorded."""
    deployment = workspace.config.get("deployment") or {}
    if not deployment.get("address") or deployment.get("chain_id") is None:
        raise DeploymentError(
            f"no deployment recorded in {workspace.config_path}; run `fedledger deploy`."
        )
    try:
        return Address(to_checksum_address(deployment["address"])), int(deployment["chain_id"])
    except (ValueError, TypeError):
        raise DeploymentError(
            f"[deployment] in {workspace.config_path} is malformed (address {deployment.get('address')!r}, "
            f"chain_id {deployment.get('chain_id')!r}); fix it or run `fedledger deploy --force`."
        ) from None


def check_deployment(w3: Web3, workspace: Workspace, *, rpc: str) -> Address:
    """The recorded contract address, after checking the chain id and that code is there."""
    address, chain_id = recorded_deployment(workspace)
    actual = w3.eth.chain_id
    if actual != chain_id:
        raise WrongChainError(
            f"the chain at {rpc} has chain id {actual}, but the deployment in {workspace.config_path} "
            f"is on chain id {chain_id}; point --rpc at that chain or run `fedledger deploy --force`."
        )
    if not w3.eth.get_code(address):
        raise DeploymentError(
            f"no contract code at {address} on chain id {actual} ({rpc}); the chain was reset: restart it with "
            "its saved state (`fedledger chain up`) or run `fedledger deploy --force`."
        )
    return address


def open_federation(
    workspace: Workspace,
    *,
    account: LocalAccount | None = None,
    w3: Web3 | None = None,
    rpc: str | None = None,
    max_fee_gwei: float | None = None,
) -> FederationClient:
    """The workspace's deployed Federation, checked (deployment recorded, same chain, code present),
    sending under the workspace's ``[chain]`` transaction settings (``max_fee_gwei``, here a flag's
    value winning over the file's; ``replace_after_s``; ``confirmations``) with its journal."""
    recorded_deployment(workspace)  # fail before touching the network when nothing is recorded
    policy = TxPolicy.from_settings(workspace.config.get("chain") or {}, journal_dir=workspace.journal_dir,
                                    max_fee_gwei=max_fee_gwei, config=str(workspace.config_path))
    url = workspace_rpc(workspace, rpc)
    if url == MEMORY and w3 is None:
        raise ConfigError(
            "the in-process chain ('memory') ends with each command, so it holds no deployment to open; "
            "start a chain with `fedledger chain up` and deploy there, or pass --rpc URL."
        )
    w3 = w3 if w3 is not None else connect(url)
    if isinstance(w3.provider, FailoverHTTPProvider):  # every endpoint used must hold this very deployment
        w3.provider.watch_deployment(recorded_deployment(workspace)[0])
    address = check_deployment(w3, workspace, rpc=url)
    block = int(workspace.config["deployment"].get("block", 0) or 0)
    return FederationClient(w3, address, account=account, from_block=block, policy=policy)


def signing_account(workspace: Workspace, key: str | None, *, w3: Web3, rpc: str) -> LocalAccount:
    """Who signs governance transactions: ``key`` (a [keys] name or keystore file), else
    ``$FEDLEDGER_PRIVATE_KEY``, else the workspace's ``[keys] admin``, else — on a local dev chain
    only — the chain's first funded dev account.

    The more explicit setting wins: ``--key`` is given for this one command, the environment
    variable for this shell or job, ``[keys] admin`` for every command on the workspace. A script
    that sets the variable means that key (and has no terminal on which to ask for the admin
    keystore's password)."""
    if key is not None:
        return load_account(workspace, key)
    from_env = account_from_env()
    if from_env is not None:
        return from_env
    if workspace.config.get("keys", {}).get("admin"):
        return load_account(workspace, "admin")
    account = dev_account(w3, rpc)
    if account is None:
        raise KeyLoadError(
            f"no key to sign with on {rpc}; pass --key NAME (see `fedledger key new`), "
            f"record an admin key under [keys], or set {PRIVATE_KEY_ENV}."
        )
    return account


def require_gas_money(w3: Web3, address: str) -> None:
    """ChainError when ``address`` holds no ether to pay for a transaction."""
    if w3.eth.get_balance(Web3.to_checksum_address(address)) == 0:
        raise ChainError(
            f"{address} holds no ether on chain id {w3.eth.chain_id} to pay for gas; send it some "
            "(on a local chain: `fedledger key fund NAME`) or let a funded account relay."
        )
