"""JSON-RPC requests per submission, by method, and a round's time behind an endpoint with latency.

    .venv/bin/python -m benchmarks.round_trips [--parties 10] [--delay-ms 50] [--json FILE]

On a fresh anvil with the embedded store in a temporary folder, in-process actors, the digits MLP
(one epoch on one of ``--parties`` digits shards):

- setup (not measured): the parties join and are admitted (as ``benchmarks.scale`` does it);
- requests: every actor is a fresh connection, as ``fedledger node train`` makes one: its requests
  are counted at the wire (``ledger.chain.round_trips.RequestCounter``; a JSON-RPC batch is one
  HTTP round trip carrying several requests), first what opening the federation costs (the probe
  ``connect`` sends, ``open_federation``, and for a direct party ``require_gas_money``), then
  ``train_and_submit`` alone, by method. A direct submission sends its own transaction; a relayed one signs the update
  and posts it to a relay (``fedledger relay serve``'s ``Relay`` and server, in this process),
  whose own requests per item are counted on its connection; its batch's transaction is shared;
- time: two direct rounds and two relayed rounds, each one straight to anvil and one through a
  local HTTP proxy that waits ``--delay-ms`` before forwarding each request (a remote endpoint's
  round trip). Round time = the coordinator's ``openRound``, every party's ``train_and_submit``
  and the aggregator's ``aggregate_round``, minus the time inside ``node.training.train``. The
  undelayed round is the baseline of the same process: the ratio is what the latency costs.

Prints markdown tables; ``--json`` writes the numbers (``--compare FILE`` prints the before/after
table of two such files).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from benchmarks.ledger_overhead import TrainingClock
from benchmarks.scale import admit, shared_training
from deploy.anvil import AnvilProcess
from ledger.chain.connection import open_federation, require_gas_money
from ledger.chain.federation import FederationClient
from ledger.chain.round_trips import RequestCount, RequestCounter
from ledger.ipfs.store import EmbeddedStore
from ledger.workspace import Workspace
from node.aggregator import aggregate_round
from node.data import load_digits_split
from node.demo import TERMS
from node.genesis import genesis_model_bytes
from node.participant import train_and_submit
from node.relay_client import RelayClient
from node.round_config import RoundConfig, TrainingSettings
from node.services.log import ServiceLog
from node.services.relay_service import Relay, make_server
from node.strategies import make_strategy

ROUND_SECONDS = 3 * 3600


class DelayingProxy:
    """A local HTTP proxy in front of one JSON-RPC endpoint that waits ``delay_s`` before forwarding
    each request (as a remote endpoint's round trip would), and counts what passes (batches once)."""

    def __init__(self, upstream: str, delay_s: float) -> None:
        self.upstream = upstream
        self.delay_s = delay_s
        self.requests = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint serves
            disable_nagle_algorithm = True  # headers and body are written apart: no 40 ms delayed-ACK wait

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy._lock:
                    proxy.requests += 1
                time.sleep(proxy.delay_s)
                answer = proxy._session().post(proxy.upstream, data=body, headers={"Content-Type": "application/json"},
                                               timeout=300)
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def __enter__(self) -> DelayingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def opened(counter: RequestCounter, url: str, workspace: Workspace, account: LocalAccount | None,
           *, direct: bool = False) -> tuple[FederationClient, RequestCount]:
    """A client on a fresh connection, opened as ``fedledger node train`` opens it: ``connect``'s
    chain id probe, ``open_federation`` (``check_deployment``) and, for a party that sends its own
    transaction (``direct``), ``require_gas_money``."""
    w3 = counter.web3(url, timeout=300)
    with counter.measure() as cost:
        w3.eth.chain_id  # noqa: B018 - connect's probe
        client = open_federation(workspace, account=account, w3=w3, rpc=url)
        if direct and account is not None:
            require_gas_money(w3, account.address)
    return client, cost


@contextmanager
def running_relay(federation: FederationClient, root: Path, store: EmbeddedStore) -> Iterator[str]:
    relay = Relay(federation=federation, store=store, batch_size=64, max_wait_s=0.0, log=ServiceLog("relay")).start()
    server = make_server(relay, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        relay.close()
        server.shutdown()
        server.server_close()


def _step(count: RequestCount) -> dict[str, Any]:
    return {"by_method": dict(count.by_method), "round_trips": count.round_trips}


def one_round(*, url: str, workspace: Workspace, store: EmbeddedStore, keys: list[LocalAccount], shards: list[Any],
              base: str, config: RoundConfig, root: Path, relayed: bool) -> dict[str, Any]:
    """A round with every party on its own counted connection to ``url``; counts and the ledger time."""
    counter = RequestCounter()
    coordinator, _ = opened(counter, url, workspace, None)
    out: dict[str, Any] = {}
    with shared_training(), TrainingClock() as clock:
        start = time.perf_counter()
        closes = int(coordinator.w3.eth.get_block("latest")["timestamp"]) + ROUND_SECONDS
        with counter.measure() as opening:
            round_id, _ = coordinator.open_round(base_cid=base, deadline=closes, min_updates=1, config_hash=config.config_hash)
        parties, opens, relay_side = [], [], []
        relay_counter = RequestCounter()
        relayer, _ = opened(relay_counter, url, workspace, None)
        with running_relay(relayer, root, store) if relayed else nullcontext("") as relay_url:
            for i, key in enumerate(keys):
                client, opening_cost = opened(counter, url, workspace, key, direct=not relayed)
                submit = None
                if relayed:
                    party_relay = RelayClient(relay_url, federation=client, account=key)
                    party_relay.check()  # HTTP to the relay, no JSON-RPC
                    submit = party_relay.submit_update
                before_relay = relay_counter.now()
                with counter.measure() as cost:
                    train_and_submit(federation=client, store=store, round_id=round_id, data=shards[i % len(shards)],
                                     journal_dir=root / "journal" / str(i), progress=False, submit=submit)
                parties.append(cost)
                opens.append(opening_cost)
                relay_side.append(relay_counter.now() - before_relay)
        aggregator, _ = opened(counter, url, workspace, None)
        with counter.measure() as aggregating:
            outcome = aggregate_round(federation=aggregator, store=store, round_id=round_id, journal_dir=root / "journal" / "aggregator")
        out["ledger_s"] = time.perf_counter() - start - clock.seconds
    assert len(outcome.receipt.included) == len(keys), outcome.receipt
    out["round_id"] = round_id
    out["first_party"] = _step(parties[0])
    out["per_party"] = [p.total for p in parties]
    out["per_party_round_trips"] = [p.round_trips for p in parties]
    out["opening_federation"] = _step(opens[0])
    out["relay_per_item"] = [r.total for r in relay_side]
    out["relay_first_item"] = _step(relay_side[0])
    out["open_round"] = _step(opening)
    out["aggregate"] = _step(aggregating)
    out["round_trips_total"] = counter.now().round_trips + relay_counter.now().round_trips
    return out


def measure(parties: int, delay_ms: float) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="fedledger-round-trips-"))
    results: dict[str, Any] = {"parties": parties, "delay_ms": delay_ms}
    try:
        with AnvilProcess() as anvil:
            w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 300}))
            store = EmbeddedStore(root / "store")
            admin, _ = FederationClient.deploy(w3)
            admin.publish_agreement(store.add_bytes(TERMS, pin=True))
            keys = [Account.from_key(bytes([7]) * 31 + bytes([i + 1])) for i in range(4 * parties)]
            admit(anvil.rpc_url, admin, keys)
            shards, _ = load_digits_split(parties=parties, seed=0)
            config = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(), training=TrainingSettings(epochs=1))
            store.add_bytes(config.to_bytes(), pin=True)
            base = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
            workspace = Workspace.init(root / "workspace", rpc=anvil.rpc_url)
            workspace.set("deployment", "address", admin.address)
            workspace.set("deployment", "chain_id", admin.chain_id)
            workspace.set("deployment", "block", admin.from_block)
            common = dict(workspace=workspace, store=store, shards=shards, base=base, config=config, root=root)
            with DelayingProxy(anvil.rpc_url, delay_ms / 1000) as proxy:
                plan = [("direct", False, anvil.rpc_url), ("direct, delayed", False, proxy.url),
                        ("relayed", True, anvil.rpc_url), ("relayed, delayed", True, proxy.url)]
                for n, (name, relayed, url) in enumerate(plan):
                    results[name] = one_round(url=url, keys=keys[n * parties : (n + 1) * parties], relayed=relayed, **common)
                    print(f"{name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
                results["proxy_requests"] = proxy.requests
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def _methods(counts: dict[str, int]) -> str:
    return ", ".join(f"{m} {n}" for m, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


STEPS = (
    ("opening the federation (`connect`, `check_deployment`; a direct party adds `require_gas_money`)", "direct", "opening_federation"),
    ("direct submission (`train_and_submit`)", "direct", "first_party"),
    ("relayed submission, the party (`train_and_submit`, submit = the relay)", "relayed", "first_party"),
    ("relayed submission, the relay per item (a batch of one)", "relayed", "relay_first_item"),
    ("openRound (coordinator)", "direct", "open_round"),
    ("aggregate_round", "direct", "aggregate"),
)


def report(results: dict[str, Any], command: str) -> str:
    lines = [f"command: `{command}` ({os.cpu_count()} CPUs; {results['parties']} parties per round, "
             f"{results['delay_ms']:g} ms added per request)", ""]
    lines += ["| step (a fresh connection) | JSON-RPC requests | HTTP round trips | by method |", "| --- | ---: | ---: | --- |"]
    for label, key, column in STEPS:
        step = results[key][column]
        lines.append(f"| {label} | {sum(step['by_method'].values())} | {step['round_trips']} | {_methods(step['by_method'])} |")
    lines += ["", "| round | per party: requests / round trips (min–max) | ledger time, straight to anvil (s) | "
              f"through the proxy, +{results['delay_ms']:g} ms (s) | ratio |", "| --- | --- | ---: | ---: | ---: |"]
    for name in ("direct", "relayed"):
        fast, slow = results[name], results[f"{name}, delayed"]
        spread, trips = fast["per_party"] + slow["per_party"], fast["per_party_round_trips"] + slow["per_party_round_trips"]
        lines.append(f"| {name} | {min(spread)}–{max(spread)} / {min(trips)}–{max(trips)} | {fast['ledger_s']:.2f} | "
                     f"{slow['ledger_s']:.2f} | x{slow['ledger_s'] / fast['ledger_s']:.1f} |")
    return "\n".join(lines)


def compare(before: dict[str, Any], after: dict[str, Any]) -> str:
    lines = ["| step | requests before → after | round trips before → after | ratio (round trips) | after, by method |",
             "| --- | ---: | ---: | ---: | --- |"]
    for label, key, column in STEPS:
        b, a = before[key][column], after[key][column]
        lines.append(f"| {label} | {sum(b['by_method'].values())} → {sum(a['by_method'].values())} | "
                     f"{b['round_trips']} → {a['round_trips']} | x{a['round_trips'] / max(1, b['round_trips']):.2f} | "
                     f"{_methods(a['by_method'])} |")
    for name in ("direct", "direct, delayed", "relayed", "relayed, delayed"):
        b, a = before[name]["ledger_s"], after[name]["ledger_s"]
        lines.append(f"| round time, {name} (s) | {b:.2f} | {a:.2f} | x{a / b:.2f} | |")
    lines.append("")
    lines.append("before, by method: " + "; ".join(f"{label.split(' (')[0]}: {_methods(before[key][column]['by_method'])}"
                                                   for label, key, column in STEPS[1:4]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=10)
    parser.add_argument("--delay-ms", type=float, default=50.0)
    parser.add_argument("--json", type=Path, help="write the numbers to this file")
    parser.add_argument("--compare", type=Path, nargs=2, metavar=("BEFORE", "AFTER"), help="print before/after of two --json files")
    args = parser.parse_args(argv)
    if args.compare:
        before, after = (json.loads(p.read_text(encoding="utf-8")) for p in args.compare)
        print(compare(before, after))
        return
    torch.set_num_threads(1)
    command = " ".join([os.path.basename(sys.executable), "-m", "benchmarks.round_trips", *(argv if argv is not None else sys.argv[1:])])
    results = measure(args.parties, args.delay_ms)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(report(results, command))


if __name__ == "__main__":
    main()
