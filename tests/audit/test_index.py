"""The audit index on a real anvil: incremental, reorg-aware, adaptive batches, bound to one deployment."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from web3 import Web3

from ledger.index.queries import replay
from ledger.ipfs.cid import RAW, cid_from_parts
from ledger.errors import AuditIndexError
from ledger.index.index import LedgerIndex
from node.audit.verify import recover_join_signer


def terms(text: str) -> str:
    return cid_from_parts(RAW, hashlib.sha256(text.encode()).digest())


def versions(index: LedgerIndex) -> list[tuple[int, str]]:
    return [(e.args["version"], e.args["terms_cid"]) for e in index.events("AgreementPublished")]


def test_index_resumes_from_the_last_indexed_block(federation, tmp_path):
    federation.publish_agreement(terms("v1"))
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        first = index.sync()
        assert first.from_block == federation.from_block and first.events > 0
    federation.publish_agreement(terms("v2"))
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        second = index.sync()
        assert second.from_block == first.to_block + 1
        assert second.events == 1 and second.reorg_from is None
        assert versions(index) == [(1, terms("v1")), (2, terms("v2"))]
        assert index.sync().events == 0


def test_reorg_is_noticed_and_the_changed_blocks_are_read_again(chain, federation, tmp_path):
    federation.publish_agreement(terms("v1"))
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        index.sync()
        fork = chain.snapshot()
        federation.publish_agreement(terms("v2 that will vanish"))
        federation.publish_agreement(terms("v3 that will vanish"))
        before = index.sync()
        assert [v for v, _ in versions(index)] == [1, 2, 3]

        # The chain drops two blocks and grows another history at the same heights.
        chain.revert(fork)
        federation.publish_agreement(terms("v2 on the new branch"))
        chain.advance(1)
        chain.advance(1)

        after = index.sync()
        assert after.reorg_from is not None and after.reorg_from <= before.to_block
        assert versions(index) == [(1, terms("v1")), (2, terms("v2 on the new branch"))]
        tip = chain.w3.eth.get_block("latest")
        assert index.last_block == tip["number"]


def test_reorg_to_a_shorter_chain_is_noticed(chain, federation, tmp_path):
    federation.publish_agreement(terms("v1"))
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        fork = chain.snapshot()
        federation.publish_agreement(terms("gone"))
        index.sync()
        chain.revert(fork)
        result = index.sync()
        assert result.reorg_from is not None
        assert versions(index) == [(1, terms("v1"))]


def test_reorg_between_reading_logs_and_the_last_block_leaves_no_orphaned_event(chain, federation, tmp_path, monkeypatch):
    """The chain reorganizes after a batch's logs were read and before its last block's hash is:
    the old fork's event must not stay in the index under a last block that matches the new fork."""
    federation.publish_agreement(terms("v1"))
    fork = chain.snapshot()
    federation.publish_agreement(terms("v2 that will vanish"))
    chain.advance(1)  # the batch's last block lies above the vanishing event's
    height = chain.w3.eth.block_number
    read_logs = LedgerIndex._get_logs
    reorganized = []

    def logs_then_reorg(self, first, last):
        logs = read_logs(self, first, last)
        if not reorganized:  # once: a new branch of empty blocks, as long as the old one
            reorganized.append(True)
            chain.revert(fork)
            chain.advance(1)
            chain.advance(1)
            assert chain.w3.eth.block_number == height
        return logs

    monkeypatch.setattr(LedgerIndex, "_get_logs", logs_then_reorg)
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        index.sync(to_block=height)
        assert reorganized
        assert versions(index) == [(1, terms("v1"))]
        assert index.sync().reorg_from is None  # and nothing is left for a later sync to notice


class _RangeLimitedRpc(BaseHTTPRequestHandler):
    """A JSON-RPC front for anvil that refuses eth_getLogs over more than ``limit`` blocks, as hosted nodes do."""

    upstream = ""
    limit = 4
    refused = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        call = json.loads(body)
        if call.get("method") == "eth_getLogs":
            params = call["params"][0]
            span = int(params["toBlock"], 16) - int(params["fromBlock"], 16) + 1
            if span > self.limit:
                type(self).refused += 1
                reply = {"jsonrpc": "2.0", "id": call["id"],
                         "error": {"code": -32005, "message": f"query exceeds max block range {self.limit}"}}
                return self._send(json.dumps(reply).encode())
        request = urllib.request.Request(self.upstream, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            self._send(response.read())

    def _send(self, payload: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def limited_rpc(anvil) -> Iterator[str]:
    handler = type("Handler", (_RangeLimitedRpc,), {"upstream": anvil.rpc_url, "refused": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_batches_shrink_when_the_node_refuses_a_range_and_grow_back(chain, federation, limited_rpc, tmp_path):
    for number in range(6):
        federation.publish_agreement(terms(f"v{number}"))
        chain.advance(1)
    direct = LedgerIndex.for_federation(tmp_path / "direct.sqlite", federation)
    direct.sync()
    w3 = Web3(Web3.HTTPProvider(limited_rpc))
    limited = LedgerIndex(tmp_path / "limited.sqlite", w3=w3, address=federation.address,
                          chain_id=federation.chain_id, start_block=federation.from_block, batch_size=64)
    result = limited.sync()
    assert result.refused >= 4  # 64 -> 32 -> 16 -> 8 -> 4, and again after each growth
    assert result.batches >= 3
    assert limited.events() == direct.events()
    direct.close()
    limited.close()


def test_index_of_another_deployment_is_refused(chain, federation, tmp_path):
    path = tmp_path / "index.sqlite"
    LedgerIndex.for_federation(path, federation).close()
    other = chain.deploy()
    with pytest.raises(AuditIndexError, match=f"built for contract {federation.address}.*delete the file"):
        LedgerIndex.for_federation(path, other)
    with pytest.raises(AuditIndexError, match="chain id 1\\b|on chain id"):
        LedgerIndex(path, w3=chain.w3, address=federation.address, chain_id=1)


def test_a_file_that_is_not_an_index_is_refused(federation, tmp_path):
    path = tmp_path / "index.sqlite"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(AuditIndexError, match="is not a fedledger audit index"):
        LedgerIndex.for_federation(path, federation)


def test_membership_replay_and_join_signatures_from_the_index(chain, federation, tmp_path):
    federation.publish_agreement(terms("v1"))
    party, stranger = chain.new_account(), chain.new_account()
    deadline = chain.now() + 600
    federation.join(party.address, version=1, deadline=deadline,
                    signature=federation.sign_join(party, version=1, deadline=deadline))
    federation.approve(party.address)
    federation.suspend(party.address)
    with LedgerIndex.for_federation(tmp_path / "index.sqlite", federation) as index:
        index.sync()
        states = [(event.name, membership.members.get(party.address) and membership.members[party.address].status)
                  for event, membership in replay(index)]
        # Each event comes with the membership just before it.
        assert states[1:] == [("ParticipantJoined", None), ("ParticipantAdmitted", "pending"),
                              ("ParticipantSuspended", "admitted")]
        (join,) = index.events("ParticipantJoined")
        assert recover_join_signer(federation, join, terms("v1")) == party.address
        forged = federation.sign_join(stranger, version=1, deadline=deadline)
        tampered = replace(join, args={**join.args, "signature": Web3.to_hex(forged)})  # another key signed
        assert recover_join_signer(federation, tampered, terms("v1")) != party.address
        assert recover_join_signer(federation, join, terms("v2")) != party.address
