"""Gas of every Federation operation, measured on a fresh anvil with 64 parties.

    .venv/bin/python -m benchmarks.gas [--parties 64]

Prints a markdown table (gas from the transaction receipts: what the sender pays, base 21,000
included). Budget for submitting an update: at most 60,000; goal: about 35,000 on average.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from eth_account import Account
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.federation import FederationClient, load_artifact

TERMS = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
UPDATE = "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"
SUBMIT_BUDGET = 60_000


def measure(parties: int) -> dict[str, list[int]]:
    gas: dict[str, list[int]] = {}

    def record(name: str, used: int) -> None:
        gas.setdefault(name, []).append(used)

    with AnvilProcess() as node:
        w3 = Web3(Web3.HTTPProvider(node.rpc_url))
        admin, result = FederationClient.deploy(w3)
        record("deploy", result.gas_used)
        _, result = admin.publish_agreement(TERMS)
        record("publishAgreement", result.gas_used)
        keys = [Account.create() for _ in range(parties)]
        clients = []
        for key in keys:
            w3.provider.make_request("anvil_setBalance", [key.address, hex(10**18)])  # type: ignore[arg-type]
            client = admin.with_account(key)
            deadline = int(w3.eth.get_block("latest")["timestamp"]) + 3600
            signature = client.sign_join(key, version=1, deadline=deadline)
            record("join (first, by the party)", client.join(key.address, version=1, deadline=deadline, signature=signature).gas_used)
            record("approve", admin.approve(key.address).gas_used)
            clients.append(client)
        now = int(w3.eth.get_block("latest")["timestamp"])
        round_id, result = admin.open_round(base_cid=MODEL, deadline=now + 3600, min_updates=parties, config_hash=b"\1" * 32)
        record("openRound", result.gas_used)
        for i, client in enumerate(clients):
            used = client.submit_update(round_id, cid=UPDATE, samples=1000 + i, metrics_hash=bytes([i]) * 32).gas_used
            record("submitUpdate", used)
        record(f"finalizeRound ({parties} updates)", admin.finalize_round(round_id, global_cid=UPDATE, receipt_cid=TERMS).gas_used)

        stalled, result = admin.open_round(base_cid=MODEL, deadline=now + 7200, min_updates=2, config_hash=b"\2" * 32)
        clients[0].submit_update(stalled, cid=UPDATE, samples=1, metrics_hash=b"\3" * 32)
        w3.provider.make_request("evm_mine", [now + 7201])  # type: ignore[arg-type]
        record("cancelRound", admin.cancel_round(stalled).gas_used)

        record("suspend", admin.suspend(keys[0].address).gas_used)
        record("reinstate", admin.reinstate(keys[0].address).gas_used)
        _, result = admin.publish_agreement(UPDATE)
        record("publishAgreement (next version)", result.gas_used)
        deadline = now + 10_000
        signature = admin.sign_join(keys[1], version=2, deadline=deadline)
        record("join (re-accept, relayed)", admin.join(keys[1].address, version=2, deadline=deadline, signature=signature).gas_used)
        record("revoke", admin.revoke(keys[2].address).gas_used)
    return gas


def table(gas: dict[str, list[int]]) -> str:
    lines = ["| operation | n | min | mean | max |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, values in gas.items():
        lines.append(
            f"| {name} | {len(values)} | {min(values):,} | {round(statistics.fmean(values)):,} | {max(values):,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=64)
    args = parser.parse_args(argv)
    gas = measure(args.parties)
    compiler = load_artifact()["compiler"]
    print(f"command: .venv/bin/python -m benchmarks.gas --parties {args.parties}")
    print(f"solc {compiler['version']}, settings {compiler['settings']}, anvil (default hardfork)\n")
    print(table(gas))
    submit = gas["submitUpdate"]
    print(
        f"\nsubmitUpdate: first {submit[0]:,}, mean {statistics.fmean(submit):,.0f}, max {max(submit):,} "
        f"(budget {SUBMIT_BUDGET:,}, goal 35,000)"
    )
    return 0 if max(submit) <= SUBMIT_BUDGET else 1


if __name__ == "__main__":
    sys.exit(main())
