"""The operator's setup of the multi-host test, run on the operator's host (``ip netns exec``):

    python -m tests.services.lan_setup ROOT RPC IPFS_API HOST...

Waits for the chain and the store on the chain host to answer, then, through the CLI (in this one
process, so the setup pays one interpreter start-up): a workspace ROOT/op on that chain and store,
deploy, agreement, the parties (anvil dev accounts 5, 6, 7) joined and approved, the coordinator
(dev account 1) and aggregator (dev account 2) roles granted, a one-epoch round configuration. Each
other HOST gets its own workspace ROOT/HOST pointing at the same deployment and store. Prints one
JSON document: the parties' addresses and the config file.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from eth_account import Account

from deploy.anvil import rpc_chain_id
from ledger.workspace import Workspace
from node.round_config import RoundConfig, TrainingSettings
from node.strategies import make_strategy
from tests.fixtures_chain import DEV_MNEMONIC
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli

PARTY_ACCOUNTS = (5, 6, 7)
COORDINATOR, AGGREGATOR = 1, 2


def dev_key(index: int) -> str:
    Account.enable_unaudited_hdwallet_features()
    account = Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}")
    return "0x" + bytes(account.key).hex()


def wait_until(what: str, answers: object, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not answers():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def store_answers(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(f"{api_url}/api/v0/version", method="POST"), timeout=2):
            return True
    except OSError:
        return False


def main(root: Path, rpc: str, ipfs_api: str, hosts: list[str]) -> None:
    host, port = ipfs_api.split("/")[2], ipfs_api.split("/")[4]
    wait_until(f"the chain at {rpc}", lambda: rpc_chain_id(rpc) is not None)
    wait_until(f"the store at {ipfs_api}", lambda: store_answers(f"http://{host}:{port}"))

    op = root / "op"
    ok(cli("init", str(op), "--rpc", rpc))
    workspace = Workspace.load(op)
    workspace.set("store", "backend", "kubo")
    workspace.set("store", "api", ipfs_api)
    workspace.save()
    w = ("--workdir", str(op))
    admin = {"FEDLEDGER_PRIVATE_KEY": dev_key(0)}
    ok(cli("deploy", *w, env=admin))
    terms = root / "terms.md"
    terms.write_text("# Terms\nEach party trains on its own data only.\n")
    ok(cli("agreement", "publish", str(terms), *w, env=admin))
    parties = []
    for index in PARTY_ACCOUNTS:
        joined = ok(cli("participant", "join", "--json", *w, env={"FEDLEDGER_PRIVATE_KEY": dev_key(index)})).json()
        ok(cli("participant", "approve", joined["participant"], *w, env=admin))
        parties.append(joined["participant"])
    for role, index in (("coordinator", COORDINATOR), ("aggregator", AGGREGATOR)):
        address = Account.from_key(dev_key(index)).address
        ok(cli("admin", "grant", role, address, *w, env=admin))
    config = root / "quick.json"
    config.write_bytes(RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(),
                                   training=TrainingSettings(epochs=1)).to_bytes())

    recorded = Workspace.load(op).config
    for name in hosts:
        other = Workspace.init(root / name, rpc=rpc)
        other.config["store"] = dict(recorded["store"])
        other.config["deployment"] = dict(recorded["deployment"])
        other.save()
    print(json.dumps({"parties": parties, "config": str(config)}), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:])
