"""A federation that runs itself, as plain processes on loopback: three `node run`, one `aggregator run`,
one `coordinator run --rounds 3` and a `round watch`, on the workspace's own anvil (`chain up`).

Faults on the way: one party is SIGKILLed while it trains for round 2 and started again; the chain
is restarted from its state (`chain down` / `chain up`) meanwhile. Every service reports the outage
once and carries on; no party submits twice; the restarted party takes part in round 2 and 3.
Then a party is suspended mid-run (its node stops and says why), and a round opened by hand is
finalized before its deadline because every party still entitled has submitted.

Refused at start, with the contract's own reason: a key that never joined, and keys without the
aggregator or coordinator role; a second `node run` with a running party's key (the lock).
"""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from deploy.anvil import free_port, stop_pidfile
from ledger.failpoints import HANGPOINT_ENV
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.workspace import Workspace
from tests.fixtures_cli import Outcome, ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import Federation
from tests.services.harness import ServiceProcess, shard_files

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PARTIES = {"alice": 5, "bob": 6, "carol": 7}  # anvil dev accounts: funded on every anvil
COORDINATOR, AGGREGATOR, OUTSIDER = 1, 2, 8


def refused(outcome: Outcome, *phrases: str) -> str:
    assert outcome.exit_code == 1, f"exit {outcome.exit_code}\n{outcome.stderr}"
    line = outcome.error_line(alone=False)
    for phrase in phrases:
        assert phrase in line, line
    return line


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(fedledger_\w+)(?:\{[^}]*\})? (\S+)$", text, re.M)}


def test_services_run_three_rounds_through_a_killed_party_and_a_chain_restart(
    tmp_path: Path, anvil_keys: list[LocalAccount]
) -> None:
    root = tmp_path / "ws"
    w = ("--workdir", str(root))
    env = {i: {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(anvil_keys[i].key)} for i in range(10)}
    address = {name: anvil_keys[i].address for name, i in PARTIES.items()}
    logs = tmp_path / "logs"
    services: list[ServiceProcess] = []
    began = time.monotonic()

    def mark(step: str) -> None:  # the timeline, shown when the test fails
        print(f"{time.monotonic() - began:6.1f} s  {step}", flush=True)

    def start(name: str, *args: str, key: int | None = None, hang: str | None = None) -> ServiceProcess:
        # One torch thread each: six processes share two cores, and oversubscribed threads only spin.
        extra = {**env.get(key, {}), "OMP_NUM_THREADS": "1", **({HANGPOINT_ENV: hang} if hang else {})}  # type: ignore[call-overload]
        service = ServiceProcess(name, [*args, "--log-json", *w], env=extra, log_dir=logs)
        services.append(service)
        return service

    ok(cli("init", str(root)))
    port = str(free_port())
    try:
        ok(fedledger("chain", "up", "--port", port, "--detach", *w))
        ok(cli("deploy", *w))
        (tmp_path / "terms.md").write_text("# Terms\nEach party trains on its own data only.\n")
        ok(cli("agreement", "publish", str(tmp_path / "terms.md"), *w))
        federation = Federation(workspace=Workspace.load(root), genesis_cid="", tmp=tmp_path)
        for name, i in PARTIES.items():
            federation.admit(name, env[i]["FEDLEDGER_PRIVATE_KEY"])
        ok(cli("admin", "grant", "coordinator", anvil_keys[COORDINATOR].address, *w))
        ok(cli("admin", "grant", "aggregator", anvil_keys[AGGREGATOR].address, *w))
        config = federation.config_file("quick")  # MLP, one epoch
        mark("federation set up")

        # Refused at start, each with the contract's own sentence (in-process: no start-up to pay).
        outsider = anvil_keys[OUTSIDER].address
        refused(cli("node", "run", "--once", "--shard", "0", "--of", "3", *w, env=env[OUTSIDER]),
                f"{outsider} is not an admitted participant (it is none)")
        refused(cli("aggregator", "run", "--once", *w, env=env[OUTSIDER]), f"{outsider} lacks the aggregator role")
        refused(cli("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1", *w,
                    env=env[OUTSIDER]), f"{outsider} lacks the coordinator role")
        nowhere = cid_of_bytes(b"a model no store holds")
        rounds_before = federation.client().round_count()
        refused(cli("coordinator", "run", "--rounds", "1", "--round-seconds", "60", "--min-updates", "1",
                    "--base-cid", nowhere, *w), f"the base model {nowhere} is not in this workspace's store")
        assert federation.client().round_count() == rounds_before  # nothing opened

        poll = ("--poll-seconds", "0.5")
        shards = [str(path) for path in shard_files(tmp_path / "data", parties=3)]
        aggregator = start("aggregator", "aggregator", "run", *poll, key=AGGREGATOR)
        # alice's first process stops as it starts training for round 2 and stays there until it is killed.
        alice = start("alice", "node", "run", "--data", shards[0], *poll, key=PARTIES["alice"],
                      hang="participant:training:round-2")
        bob = start("bob", "node", "run", "--data", shards[1], *poll, "--metrics-port", "0", key=PARTIES["bob"])
        carol = start("carol", "node", "run", "--data", shards[2], *poll, key=PARTIES["carol"])
        watch = start("watch", "round", "watch", "--until-finalized", "4", "--interval", "0.5")
        coordinator = start("coordinator", "coordinator", "run", "--rounds", "3", "--round-seconds", "90",
                            "--min-updates", "2", "--config", str(config), *poll, key=COORDINATOR)
        for service in (aggregator, alice, bob, carol, coordinator):
            service.wait_for("started", timeout=120)
        mark("services started")

        refused(cli("node", "run", "--once", "--shard", "0", "--of", "3", *w, env=env[PARTIES["alice"]]),
                f"another `fedledger node run` with key {address['alice']} already runs on this workspace")

        first = aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 1)
        assert sorted(first["included"]) == sorted(address.values())
        mark("round 1 finalized")

        # Round 2: alice is killed while it trains, and started again; the chain restarts meanwhile.
        alice.wait_for("training", timeout=60, where=lambda r: r["round"] == 2)
        alice.kill()
        mark("alice killed while training for round 2")
        assert not alice.matching("submitted", lambda r: r["round"] == 2)
        alice = start("alice-again", "node", "run", "--data", shards[0], *poll, key=PARTIES["alice"])
        ok(fedledger("chain", "down", *w))
        ok(fedledger("chain", "up", "--port", port, "--detach", *w))
        mark("chain restarted")
        again = alice.wait_for("submitted", timeout=120, where=lambda r: r["round"] == 2)
        assert again["trained"] is True  # nothing had been pinned when it was killed
        mark("alice submitted round 2 after its restart")
        assert sorted(aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 2)["included"]) \
            == sorted(address.values())

        third = aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 3)
        assert sorted(third["included"]) == sorted(address.values())
        assert coordinator.wait_exit(60) == 0
        assert coordinator.matching("complete")[0]["rounds"] == [1, 2, 3]
        mark("coordinator done")

        for service in (aggregator, bob, carol, coordinator):  # each saw the chain go away, once
            outages = [r["event"] for r in service.events if r["event"] in ("outage", "recovered")]
            assert outages == ["outage", "recovered"], (service.name, outages)
            assert "Traceback" not in service.stderr, service.stderr

        # Carol is suspended mid-run: her node stops and says why.
        ok(cli("participant", "suspend", address["carol"], *w))
        assert carol.wait_exit(60) == 1
        reason = f"{address['carol']} is not an admitted participant (it is suspended); ask the federation admin to reinstate it."
        assert carol.matching("failed")[0]["message"] == reason
        assert carol.stderr.strip().splitlines()[-1] == f"error: {reason}"
        mark("carol stopped when suspended")

        # A round opened by hand with a long deadline is finalized as soon as both parties still
        # entitled to submit have submitted.
        global_3 = federation.client().round(3).global_cid
        assert federation.open_round(base_cid=global_3, min_updates=1, deadline=600) == 4
        fourth = aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 4)
        assert "all 2 entitled parties have submitted" in fourth["message"]
        assert sorted(fourth["included"]) == sorted([address["alice"], address["bob"]])
        mark("round 4 finalized")

        assert watch.wait_exit(60) == 0
        followed = {r["round"]: r["event"] for r in watch.events if r["event"] in ("round", "finalized")}
        assert set(followed) == {1, 2, 3, 4}

        # Bob counts a submission when its receipt reaches him, which can be after the aggregator
        # has seen it on chain and finalized: his own event for round 4 comes first.
        bob.wait_for("submitted", timeout=60, where=lambda r: r["round"] == 4)
        metrics = scrape(bob.wait_for("metrics", timeout=1)["url"])
        assert metrics["fedledger_submissions_total"] == 4
        assert metrics["fedledger_rounds_seen_total"] == 4
        assert metrics["fedledger_retries_total"] >= 1
        assert metrics["fedledger_gas_used_total"] > 4 * 30_000

        for service in (aggregator, alice, bob):  # SIGTERM: a clean stop between steps
            assert service.terminate() == 0, service.stderr
            assert service.events[-1]["event"] == "stopped"

        ok(cli("node", "run", "--once", "--shard", "1", "--of", "3", *w, env=env[PARTIES["bob"]]))  # nothing open

        client = federation.client()
        for round_id, expected in ((1, 3), (2, 3), (3, 3), (4, 2)):
            submitters = [s.participant for s in client.submissions(round_id)]
            assert len(submitters) == len(set(submitters)) == expected, (round_id, submitters)
            assert client.round(round_id).state == "finalized"
        ok(cli("audit", "verify", *w))
    finally:
        for service in services:
            service.stop()
            service.save_events()
        fedledger("chain", "down", *w)
        stop_pidfile(root / "chain" / "anvil.pid")
