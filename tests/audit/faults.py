"""Faults an auditor must catch, built on a real chain: rounds that the contract accepts but that break
the ledger's promises, and a lying RPC node that rewrites the event logs it serves.

The contract checks neither a metrics hash, nor a base model, nor a receipt, nor a config hash: any
coordinator, party or aggregator can record nonsense there, and only ``audit verify`` notices. It does
check signatures and membership, so the faults in those come from the node an auditor reads the chain
through: :class:`LyingNode` is a real HTTP JSON-RPC server on 127.0.0.1 in front of anvil whose
``eth_getLogs`` answers pass through a rewrite.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_abi import decode, encode
from eth_utils import to_checksum_address
from web3 import Web3

from ledger.chain.federation import Submission, TxResult, load_artifact
from ledger.weights import from_safetensors, to_safetensors
from node.models import model_layout
from node.update_metrics import metrics_hash
from node.round_config import RoundConfig, config_cid
from tests.audit.conftest import Ledger

Log = dict[str, Any]
"""One log as eth_getLogs serves it (hex strings)."""


# ---------------------------------------------------------------- rounds the contract accepts


def demo_config(ledger: Ledger) -> RoundConfig:
    """The honest config the demo opened its rounds with."""
    return RoundConfig.from_bytes(ledger.store.get(config_cid(ledger.federation().round(1).config_hash)))


def open_round(
    ledger: Ledger, *, base_cid: str | None = None, config_hash: bytes | None = None, min_updates: int | None = None
) -> tuple[int, TxResult]:
    """Open the next round (default: on the latest global model, with the demo's config, every party needed)."""
    admin = ledger.federation()
    rounds = [admin.round(n) for n in range(1, admin.round_count() + 1)]
    latest_global = [info.global_cid for info in rounds if info.global_cid][-1]
    deadline = int(ledger.w3.eth.get_block("latest")["timestamp"]) + 3600
    return admin.open_round(base_cid=base_cid or latest_global, deadline=deadline,
                            min_updates=min_updates or len(ledger.parties),
                            config_hash=config_hash or admin.round(1).config_hash)


def synthetic_update(
    ledger: Ledger, *, round_id: int, base_cid: str, number: int, model: str = "mlp"
) -> tuple[bytes, dict[str, float], int]:
    """Party ``number``'s (1-based) update of ``round_id`` on ``base_cid``: the base shifted a little;
    (blob, metrics, samples). The same arguments give the same bytes, so a round can be computed ahead."""
    arrays, _ = from_safetensors(ledger.store.get(base_cid), layout=model_layout(model))
    metrics = {"accuracy": 0.5 + number / 10, "loss": 1.0 / number}
    samples = 100 * number
    shifted = {name: (value + 0.01 * number).astype(value.dtype) for name, value in arrays.items()}
    blob = to_safetensors(shifted, metadata={"model": model, "participant": ledger.parties[number - 1].address,
                                             "round": round_id, "base_cid": base_cid, "samples": samples,
                                             "metrics": metrics})
    return blob, metrics, samples


def submit_updates(
    ledger: Ledger,
    round_id: int,
    *,
    model: str = "mlp",
    claimed_metrics: dict[int, dict[str, float]] | None = None,
    blobs: dict[int, bytes] | None = None,
    parties: int | None = None,
) -> list[Submission]:
    """Every party (or the first ``parties``) pins a synthetic update and records it; returns the
    submissions in party order.

    ``claimed_metrics``: party number -> the metrics whose hash it records instead of its file's own.
    ``blobs``: party number -> the bytes it pins instead of its update.
    """
    base_cid = ledger.federation().round(round_id).base_cid
    submitters = ledger.parties[:parties]
    for number, party in enumerate(submitters, start=1):
        blob, metrics, samples = synthetic_update(ledger, round_id=round_id, base_cid=base_cid, number=number, model=model)
        blob = (blobs or {}).get(number, blob)
        claimed = (claimed_metrics or {}).get(number, metrics)
        cid = ledger.store.add_bytes(blob)
        ledger.federation(party).submit_update(round_id, cid=cid, samples=samples, metrics_hash=metrics_hash(claimed))
    by_party = {s.participant: s for s in ledger.federation().submissions(round_id)}
    return [by_party[party.address] for party in submitters]


# ---------------------------------------------------------------- a node that lies about logs


def _event_abi(name: str) -> dict[str, Any]:
    (abi,) = [item for item in load_artifact()["abi"] if item["type"] == "event" and item["name"] == name]
    return abi


def event_topic(name: str) -> str:
    """topic0 of the contract's event ``name``, as eth_getLogs writes it."""
    abi = _event_abi(name)
    return Web3.to_hex(Web3.keccak(text=f"{name}({','.join(item['type'] for item in abi['inputs'])})"))


def _topic_address(topic: str) -> str:
    return to_checksum_address("0x" + topic[-40:])


def is_event(log: Log, name: str, participant: str) -> bool:
    """Whether ``log`` is event ``name`` whose first indexed argument is the address ``participant``."""
    topics = log.get("topics") or []
    return len(topics) > 1 and topics[0] == event_topic(name) and _topic_address(topics[1]) == participant


def with_data(log: Log, name: str, **changes: Any) -> Log:
    """``log`` (event ``name``) with some of its non-indexed arguments replaced, re-encoded by the ABI."""
    data_inputs = [item for item in _event_abi(name)["inputs"] if not item["indexed"]]
    types = [item["type"] for item in data_inputs]
    values = dict(zip([item["name"] for item in data_inputs], decode(types, bytes.fromhex(log["data"][2:]))))
    unknown = set(changes) - set(values)
    assert not unknown, f"{name} has no data field {unknown}"
    values.update(changes)
    return {**log, "data": Web3.to_hex(encode(types, [values[item["name"]] for item in data_inputs]))}


def data_field(log: Log, name: str, field: str) -> Any:
    """One non-indexed argument of ``log`` (event ``name``)."""
    data_inputs = [item for item in _event_abi(name)["inputs"] if not item["indexed"]]
    values = decode([item["type"] for item in data_inputs], bytes.fromhex(log["data"][2:]))
    return dict(zip([item["name"] for item in data_inputs], values))[field]


class LyingNode:
    """A JSON-RPC server on 127.0.0.1 that forwards every request to ``upstream`` and passes each
    ``eth_getLogs`` answer through ``rewrite`` (a list of logs in, a list of logs out)."""

    def __init__(self, upstream: str, rewrite: Callable[[list[Log]], list[Log]]) -> None:
        self.upstream = upstream
        self.rewrite = rewrite
        self.rewritten = 0  # eth_getLogs answers that came out different from what the chain said
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                answer = node.forward(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def forward(self, body: bytes) -> bytes:
        request = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            answer = reply.read()
        asked, answered = json.loads(body), json.loads(answer)
        if isinstance(asked, list):
            methods = {item.get("id"): item.get("method") for item in asked}
            answered = [self._lie(methods.get(item.get("id")), item) for item in answered]
        else:
            answered = self._lie(asked.get("method"), answered)
        return json.dumps(answered).encode()

    def _lie(self, method: str | None, answer: dict[str, Any]) -> dict[str, Any]:
        if method != "eth_getLogs" or not isinstance(answer.get("result"), list):
            return answer
        result = self.rewrite(answer["result"])
        self.rewritten += result != answer["result"]
        return {**answer, "result": result}

    def __enter__(self) -> LyingNode:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def lying_node(upstream: str, rewrite: Callable[[list[Log]], list[Log]]) -> Iterator[LyingNode]:
    """A :class:`LyingNode` serving for the duration of the block."""
    with LyingNode(upstream, rewrite) as node:
        yield node
