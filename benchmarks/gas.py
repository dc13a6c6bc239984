"""Gas of every Federation operation, measured on a fresh anvil with 64 parties.

    .venv/bin/python -m benchmarks.gas [--parties 64]

Prints a markdown table (gas from the transaction receipts: what the sender pays, base 21,000
included). Direct submission: at most 35,000 on average; a private one (declaring a growing
cumulative ε under an agreement with a budget): goal at most 40,000; a relayed one (a batch of
all parties' signed updates in one transaction): at most 20,000 per update, goal 15,000.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from eth_account import Account
from web3 import Web3

from deploy.anvil import AnvilProcess
from ledger.chain.federation import FederationClient, load_artifact
from ledger.contract_constants import RoundMessageKind

TERMS = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
MODEL = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
UPDATE = "bafybeiggzq4ryi7hscq5hzvzcnk4urnxt3asp37dhgvnjilf7exskximla"
SUBMIT_BUDGET = 35_000
PRIVATE_GOAL = 40_000
RELAYED_BUDGET = 20_000
ECRECOVER_GAS = 3_000  # the precompile's fixed cost (EIP-2929 keeps precompiles warm: the call adds 100)
WARM_CALL_GAS = 100


def submit_breakdown(w3: Web3, tx_hash: str) -> list[tuple[str, int]]:
    """Where the gas of one submission goes, from anvil's step trace and the calldata."""
    data = bytes(w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    steps = w3.provider.make_request("debug_traceTransaction", [tx_hash, {}])["result"]["structLogs"]  # type: ignore[arg-type]
    by_op: dict[str, list[int]] = {}
    for step in steps:
        by_op.setdefault(step["op"], []).append(int(step["gasCost"]))
    sloads = by_op.get("SLOAD", [])
    cold = [g for g in sloads if g >= 2100]
    rows = [
        ("base transaction", 21_000),
        (f"calldata ({len(data)} bytes: {len(data) - zeros} non-zero x16, {zeros} zero x4)", 16 * (len(data) - zeros) + 4 * zeros),
        (f"cold SLOAD x{len(cold)} (round slot, sender's member slot)", sum(cold)),
        (f"warm SLOAD x{len(sloads) - len(cold)} (re-reads of those slots)", sum(sloads) - sum(cold)),
        ("SSTORE (one bit into the warm, non-zero round slot)", sum(by_op.get("SSTORE", []))),
        ("LOG3 (2 indexed topics + 128 data bytes)", sum(by_op.get("LOG3", []))),
        ("KECCAK256 (mapping slots)", sum(by_op.get("KECCAK256", []))),
    ]
    named = {"SLOAD", "SSTORE", "LOG3", "KECCAK256"}
    rows.append(("everything else (dispatch, ABI checks, rule checks, event memory)",
                 sum(sum(v) for k, v in by_op.items() if k not in named)))
    return rows


def relayed_breakdown(w3: Web3, tx_hash: str, items: int) -> list[tuple[str, int]]:
    """Where the gas of a relayed batch goes, per item (the batch's totals over ``items``)."""
    data = bytes(w3.eth.get_transaction(tx_hash)["input"])
    zeros = data.count(0)
    steps = w3.provider.make_request("debug_traceTransaction", [tx_hash, {}])["result"]["structLogs"]  # type: ignore[arg-type]
    by_op: dict[str, int] = {}
    for step in steps:
        if step["depth"] == 1:  # precompiles run no steps of their own
            by_op[step["op"]] = by_op.get(step["op"], 0) + int(step["gasCost"])
    # A STATICCALL step's gasCost is the gas it forwards (most of what is left), not what the
    # precompile uses; the unused part comes back. What each one costs is the warm call plus ecrecover.
    recovers = sum(1 for s in steps if s["op"] == "STATICCALL" and s["depth"] == 1)
    sloads = [int(s["gasCost"]) for s in steps if s["op"] == "SLOAD" and s["depth"] == 1]
    cold = sum(g for g in sloads if g >= 2100)
    rows = [
        ("base transaction (21,000 shared by the batch)", 21_000),
        (f"calldata ({len(data)} bytes: {len(data) - zeros} non-zero x16, {zeros} zero x4)", 16 * (len(data) - zeros) + 4 * zeros),
        (f"ecrecover x{recovers} (STATICCALL to the precompile: {ECRECOVER_GAS:,} + {WARM_CALL_GAS} warm call each)",
         recovers * (ECRECOVER_GAS + WARM_CALL_GAS)),
        ("cold SLOAD (the party's member slot; the round slot once per batch)", cold),
        ("warm SLOAD", sum(sloads) - cold),
        ("SSTORE (round slot once per batch; overflow bitmap words)", by_op.get("SSTORE", 0)),
        ("LOG3 + LOG4 (UpdateSubmitted per item; UpdatesRelayed once)", by_op.get("LOG3", 0) + by_op.get("LOG4", 0)),
        ("KECCAK256 (EIP-712 struct hash, digest, mapping slots)", by_op.get("KECCAK256", 0)),
    ]
    named = {"SLOAD", "SSTORE", "LOG3", "LOG4", "KECCAK256", "STATICCALL"}
    rows.append(("everything else (dispatch, ABI decoding, rule checks, memory)",
                 sum(v for k, v in by_op.items() if k not in named)))
    return [(name, round(total / items)) for name, total in rows]


def measure(parties: int) -> tuple[dict[str, list[int]], list[tuple[str, int]], list[tuple[str, int]]]:
    gas: dict[str, list[int]] = {}
    breakdown: list[tuple[str, int]] = []
    relayed: list[tuple[str, int]] = []

    def record(name: str, used: int) -> None:
        gas.setdefault(name, []).append(used)

    with AnvilProcess(extra_args=("--steps-tracing",)) as node:
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
        for client in clients:  # a secure round's keys and shares: no storage written, one event
            record("postRoundMessage (advertise)", client.post_round_message(round_id, RoundMessageKind.ADVERTISE, TERMS).gas_used)
        for i, client in enumerate(clients):
            result = client.submit_update(round_id, cid=UPDATE, samples=1000 + i, metrics_hash=bytes([i + 1]) * 32)
            record("submitUpdate", result.gas_used)
            if i == parties // 2:
                breakdown = submit_breakdown(w3, result.tx_hash)
                breakdown.append(("total (gasUsed of that submission)", result.gas_used))
        record(f"finalizeRound ({parties} updates)", admin.finalize_round(round_id, global_cid=UPDATE, receipt_cid=TERMS).gas_used)

        relay_round, _ = admin.open_round(base_cid=MODEL, deadline=now + 3600, min_updates=1, config_hash=b"\6" * 32)
        signed = [
            client.sign_update(key, relay_round, cid=UPDATE, samples=1000 + i, metrics_hash=bytes([i + 1]) * 32,
                               deadline=now + 3600)
            for i, (client, key) in enumerate(zip(clients, keys))
        ]
        relayer = admin.with_account(keys[-1])
        for client, key in zip(clients, keys):  # a gasless party's advertisement, posted by the relayer
            message = client.sign_round_message(key, relay_round, kind=RoundMessageKind.ADVERTISE, cid=TERMS,
                                                deadline=now + 3600)
            record("postSignedRoundMessage (advertise, relayed)", relayer.post_signed_round_message(relay_round, message).gas_used)
        outcome = relayer.submit_updates(relay_round, signed)
        assert len(outcome.recorded) == parties, outcome
        record(f"submitUpdates (batch of {parties}, whole tx)", outcome.tx.gas_used)
        record("submitUpdates, per relayed update", round(outcome.tx.gas_used / parties))
        relayed = relayed_breakdown(w3, outcome.tx.tx_hash, parties)
        relayed.append(("total per update (gasUsed / items)", round(outcome.tx.gas_used / parties)))
        record("finalizeRound (relayed round)", admin.finalize_round(relay_round, global_cid=UPDATE, receipt_cid=TERMS).gas_used)
        record("publishEncryptionKey (first)", clients[0].publish_encryption_key(b"\7" * 32).gas_used)
        # a gasless party's key, signed and sent by the relayer: its first, then a rotation (replacing it)
        first = clients[1].sign_encryption_key(keys[1], b"\10" * 32, deadline=now + 9000)
        record("publishSignedEncryptionKey (first, relayed)", relayer.publish_signed_encryption_key(first).gas_used)
        rotation = clients[1].sign_encryption_key(keys[1], b"\11" * 32, deadline=now + 9000)
        record("publishSignedEncryptionKey (rotation, relayed)", relayer.publish_signed_encryption_key(rotation).gas_used)

        stalled, result = admin.open_round(base_cid=MODEL, deadline=now + 7200, min_updates=2, config_hash=b"\2" * 32)
        clients[0].submit_update(stalled, cid=UPDATE, samples=1, metrics_hash=b"\3" * 32)
        w3.provider.make_request("evm_mine", [now + 7201])  # type: ignore[arg-type]
        record("postRoundMessage (reveal, after the deadline)",
               clients[0].post_round_message(stalled, RoundMessageKind.REVEAL, TERMS).gas_used)
        # the same party's reveal signed and posted by a relayer (the contract takes a repeat; readers keep the first)
        message = clients[0].sign_round_message(keys[0], stalled, kind=RoundMessageKind.REVEAL, cid=TERMS,
                                                deadline=now + 9000)
        record("postSignedRoundMessage (reveal, relayed)",
               admin.post_signed_round_message(stalled, message).gas_used)
        record("cancelRound", admin.cancel_round(stalled).gas_used)
        aborted, _ = admin.open_round(base_cid=MODEL, deadline=now + 9000, min_updates=2, config_hash=b"\4" * 32)
        clients[0].submit_update(aborted, cid=UPDATE, samples=1, metrics_hash=b"\5" * 32)
        record("abortRound (reason of 16 bytes)", admin.abort_round(aborted, reason="wrong base model").gas_used)

        record("suspend", admin.suspend(keys[0].address).gas_used)
        record("reinstate", admin.reinstate(keys[0].address).gas_used)
        _, result = admin.publish_agreement(UPDATE, epsilon_budget=8.0, delta=1e-5)
        record("publishAgreement (next version, with a privacy budget)", result.gas_used)
        deadline = now + 10_000
        for key in keys:
            signature = admin.sign_join(key, version=2, deadline=deadline)
            record("join (re-accept, relayed)", admin.join(key.address, version=2, deadline=deadline, signature=signature).gas_used)
        private, result = admin.open_round(base_cid=MODEL, deadline=now + 9000, min_updates=1, config_hash=b"\10" * 32)
        for i, client in enumerate(clients):
            result = client.submit_update(private, cid=UPDATE, samples=1000 + i, metrics_hash=bytes([i + 1]) * 32,
                                          epsilon_micros=1_234_567 + i)
            record("submitUpdate (private: declared ε grows)", result.gas_used)
        record("revoke", admin.revoke(keys[2].address).gas_used)
        record("beginDefaultAdminTransfer", admin.begin_admin_transfer(keys[3].address).gas_used)
    return gas, breakdown, relayed


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
    gas, breakdown, relayed = measure(args.parties)
    compiler = load_artifact()["compiler"]
    print(f"command: .venv/bin/python -m benchmarks.gas --parties {args.parties}")
    print(f"solc {compiler['version']}, settings {compiler['settings']}, anvil (default hardfork)\n")
    print(table(gas))
    submit = gas["submitUpdate"]
    print(
        f"\nsubmitUpdate: first {submit[0]:,}, mean {statistics.fmean(submit):,.0f}, max {max(submit):,} "
        f"(budget {SUBMIT_BUDGET:,}, goal 35,000)\n"
    )
    private = gas["submitUpdate (private: declared ε grows)"]
    per_relayed = gas["submitUpdates, per relayed update"][0]
    print(
        f"private submitUpdate: mean {statistics.fmean(private):,.0f} (goal {PRIVATE_GOAL:,}); relayed: "
        f"{per_relayed:,} per update in a batch of {args.parties} (budget {RELAYED_BUDGET:,}, goal 15,000)\n"
    )
    print("| one submitUpdate, where the gas goes | gas |\n| --- | ---: |")
    for name, used in breakdown:
        print(f"| {name} | {used:,} |")
    print(f"\n| one relayed update in a batch of {args.parties}, where the gas goes | gas |\n| --- | ---: |")
    for name, used in relayed:
        print(f"| {name} | {used:,} |")
    ok = statistics.fmean(submit) <= SUBMIT_BUDGET and per_relayed <= RELAYED_BUDGET
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
