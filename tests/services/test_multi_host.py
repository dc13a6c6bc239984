"""A federation across hosts that runs itself through faults (network namespaces; root, as in CI).

Hosts on one bridge: ``chain`` runs anvil and `fedledger ipfs serve --host <its address>`; ``op``
sets the federation up and runs `coordinator run --rounds 3`; ``p1``..``p3`` run `node run` with
the kubo store backend pointed at ``chain``; ``agg`` runs `aggregator run`; ``audit`` verifies at
the end from a workspace of its own. Faults: p2's link goes down once it has submitted to round 1
and comes back once round 2 is finalized; p1 is SIGKILLed while it trains for round 2 and started
again; the aggregator is restarted (SIGTERM: a clean stop) and anvil is restarted from its state
file while round 2 waits for its deadline.

Expected: three finalized rounds, each with at least its minimum; no party submits twice in a
round; p1 and p2 take part again in the last round; `audit verify` passes on the audit host.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.anvil import find_anvil
from ledger.failpoints import HANGPOINT_ENV
from tests.fixtures_cli import FEDLEDGER, clean_env
from tests.services import lan as lan_module
from tests.services.harness import ServiceProcess, shard_files
from tests.services.lan import Lan
from tests.services.lan_setup import AGGREGATOR, COORDINATOR, PARTY_ACCOUNTS, dev_key

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

ROUND_SECONDS = 30
PARTIES = ("p1", "p2", "p3")


REQUIRE_ENV = "REQUIRE_NETNS"
"""Set (to 1) by .ci/run: there the test must run, and a machine without namespaces fails it instead."""


@pytest.fixture
def lan() -> Iterator[Lan]:
    why = lan_module.unavailable()
    if why is not None:
        message = f"the multi-host test needs network namespaces: {why}"
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{message}; {REQUIRE_ENV} is set, so it may not be skipped")
        pytest.skip(message)
    network = Lan()
    try:
        yield network
    finally:
        network.close()


class Anvil:
    """anvil on the chain host, on its address, with a state file: started, stopped, started again."""

    def __init__(self, prefix: list[str], *, host: str, state: Path, log: Path) -> None:
        self.command = [*prefix, str(find_anvil()), "--host", host, "--port", "8545", "--state", str(state), "--silent"]
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=output, stderr=output)

    def stop(self) -> int | None:
        """SIGTERM (anvil writes its state file on the way out) and its exit status."""
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                return process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        return process.wait(30)


def run_on(host: lan_module.Host, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*host.prefix, str(FEDLEDGER), *args], capture_output=True, text=True, env=clean_env(),
                          timeout=timeout, check=False)


def test_a_federation_across_hosts_survives_a_killed_party_a_lost_link_and_restarts(lan: Lan, tmp_path: Path) -> None:
    began = time.monotonic()

    def mark(step: str) -> None:  # the timeline, shown when the test fails
        print(f"{time.monotonic() - began:6.1f} s  {step}", flush=True)

    hosts = {name: lan.add(name) for name in ("chain", "op", *PARTIES, "agg", "audit")}
    chain = hosts["chain"]
    rpc, api = f"http://{chain.address}:8545", f"/ip4/{chain.address}/tcp/5001"
    root, logs = tmp_path / "hosts", tmp_path / "logs"
    (root / "chain").mkdir(parents=True)
    logs.mkdir()
    services: list[ServiceProcess] = []
    anvil = Anvil(chain.prefix, host=chain.address, state=root / "chain" / "anvil.json", log=logs / "anvil.log")

    def services_named(name: str) -> list[ServiceProcess]:
        return [service for service in services if service.name == name]

    def start(name: str, host: str, *args: str, key: int | None = None, extra: dict[str, str] | None = None) -> ServiceProcess:
        env = {"OMP_NUM_THREADS": "1", **({"FEDLEDGER_PRIVATE_KEY": dev_key(key)} if key is not None else {}), **(extra or {})}
        service = ServiceProcess(name, [*args, "--workdir", str(root / host)], env=env, log_dir=logs,
                                 prefix=hosts[host].prefix)
        services.append(service)
        return service

    try:
        anvil.start()
        # --insecure: the bridge is private to this test; a shared network would take --auth-file (see README).
        store = ServiceProcess("ipfs", ["ipfs", "serve", "--host", chain.address, "--port", "5001", "--insecure",
                                        "--repo", str(root / "chain" / "ipfs")], env=None, log_dir=logs, prefix=chain.prefix)
        services.append(store)
        setup = subprocess.run(
            [*hosts["op"].prefix, str(FEDLEDGER.parent / "python"), "-m", "tests.services.lan_setup", str(root), rpc, api,
             *PARTIES, "agg", "audit"],
            capture_output=True, text=True, env=clean_env(), timeout=180, check=False, cwd=Path(__file__).parents[2],
        )
        assert setup.returncode == 0, setup.stderr[-4000:]
        configured = json.loads(setup.stdout.splitlines()[-1])
        address = dict(zip(PARTIES, configured["parties"]))
        mark("federation set up from the operator's host")

        poll = ("--poll-seconds", "0.5", "--log-json")
        shards = [str(path) for path in shard_files(tmp_path / "data", parties=3)]
        party_args = {name: ("--data", shards[i]) for i, name in enumerate(PARTIES)}

        def start_party(name: str, label: str, extra: dict[str, str] | None = None) -> ServiceProcess:
            return start(label, name, "node", "run", *party_args[name], *poll, key=PARTY_ACCOUNTS[PARTIES.index(name)],
                         extra=extra)

        # p1's first process stops as it starts training for round 2 and stays there until it is killed.
        party = {name: start_party(name, name) for name in PARTIES if name != "p1"}
        party["p1"] = start_party("p1", "p1", extra={HANGPOINT_ENV: "participant:training:round-2"})
        aggregator = start("aggregator", "agg", "aggregator", "run", *poll, key=AGGREGATOR)
        coordinator = start("coordinator", "op", "coordinator", "run", "--rounds", "3", "--round-seconds",
                            str(ROUND_SECONDS), "--min-updates", "2", "--config", configured["config"], *poll,
                            key=COORDINATOR)
        for service in (*party.values(), aggregator, coordinator):
            service.wait_for("started", timeout=180)
        mark("services started on their hosts")

        party["p2"].wait_for("submitted", timeout=120, where=lambda r: r["round"] == 1)
        lan.link_down(hosts["p2"])
        mark("p2's link down after its round-1 update")
        first = aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 1)
        assert sorted(first["included"]) == sorted(address.values())

        party["p1"].wait_for("training", timeout=60, where=lambda r: r["round"] == 2)
        party["p1"].kill()
        assert not party["p1"].matching("submitted", lambda r: r["round"] == 2)
        party["p1"] = start_party("p1", "p1-again")
        mark("p1 killed while training for round 2, started again")
        assert party["p1"].wait_for("submitted", timeout=120, where=lambda r: r["round"] == 2)["trained"] is True
        mark("p1 submitted to round 2 after its restart")

        assert aggregator.terminate() == 0
        assert aggregator.events[-1]["event"] == "stopped"
        aggregator = start("aggregator-again", "agg", "aggregator", "run", *poll, key=AGGREGATOR)
        assert anvil.stop() == 0
        anvil.start()
        mark("aggregator and anvil restarted")

        second = aggregator.wait_for("finalized", timeout=120, where=lambda r: r["round"] == 2)
        assert "its deadline passed" in second["message"]
        assert sorted(second["included"]) == sorted([address["p1"], address["p3"]])
        lan.link_up(hosts["p2"])
        mark("round 2 finalized at its deadline without p2; p2's link up")

        assert coordinator.wait_exit(120) == 0
        finalized = coordinator.matching("complete")[0]["rounds"]
        assert len(finalized) == 3
        last = aggregator.wait_for("finalized", timeout=30, where=lambda r: r["round"] == finalized[-1])
        assert sorted(last["included"]) == sorted(address.values())  # the killed and the cut-off party are back
        mark("three rounds finalized")

        outages = [r["event"] for r in party["p2"].events if r["event"] in ("outage", "recovered")]
        assert outages[:2] == ["outage", "recovered"], outages
        for service in services:
            assert "Traceback" not in service.stderr, (service.name, service.stderr[-3000:])
        logs_of = {"p1": [*services_named("p1"), *services_named("p1-again")], "p2": services_named("p2"),
                   "p3": services_named("p3")}
        for name, processes in logs_of.items():  # nobody submitted twice to a round, across restarts
            rounds = [r["round"] for process in processes for r in process.matching("submitted")]
            assert len(rounds) == len(set(rounds)), (name, rounds)
        for record in aggregator.matching("finalized") + [first]:
            assert len(record["included"]) == len(set(record["included"])) >= 2, record

        verified = run_on(hosts["audit"], "audit", "verify", "--json", "--workdir", str(root / "audit"))
        assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
        report = json.loads(verified.stdout)
        assert report["ok"] is True and set(finalized) <= set(report["rounds"])
        mark("audit verify passed on the audit host")
    finally:
        for service in services:
            service.stop()
            service.save_events()
        anvil.stop()
