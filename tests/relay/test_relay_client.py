"""The party's relay client against a real relay (in-process HTTP server, real anvil): the answer as a
transaction with its relayer, a refusal as one sentence with the error's name, a relay of another
deployment or an endpoint that is no relay refused before anything is signed."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ledger.contract_constants import RoundMessageKind
from ledger.ipfs.cid import RAW, cid_from_parts
from node.relay_client import RelayClient, RelayedTx, RelayError, RelayRefusedError
from tests.fixtures_chain import TestChain
from tests.relay.conftest import METRICS_HASH, make_federation, running_relay

pytestmark = pytest.mark.anvil


def test_the_client_gets_the_transaction_and_the_relayer_or_the_named_refusal(chain: TestChain, tmp_path: Path) -> None:
    federation = make_federation(chain)
    with running_relay(federation, tmp_path) as relayed:
        party = federation.gasless_party()
        client = RelayClient(relayed.url + "/", federation=federation.admin, account=party)
        assert client.check()["relayer"] == federation.admin.sender
        cid = relayed.store.add_bytes(b"the party's update")
        tx = client.submit_update(federation.round_id, cid=cid, samples=5, metrics_hash=METRICS_HASH)
        assert isinstance(tx, RelayedTx) and tx.relayer == federation.admin.sender and tx.block > 0
        assert federation.admin.has_submitted(federation.round_id, party.address)

        with pytest.raises(RelayRefusedError) as refused:  # the same update again
            client.submit_update(federation.round_id, cid=cid, samples=5, metrics_hash=METRICS_HASH)
        assert refused.value.reason == "FederationAlreadySubmitted"
        assert str(refused.value).startswith(f"the relay at {relayed.url} did not record the update (FederationAlreadySubmitted): ")

        with pytest.raises(RelayRefusedError) as missing:
            client.submit_update(federation.round_id, cid=cid_from_parts(RAW, b"\x99" * 32), samples=5, metrics_hash=METRICS_HASH)
        assert missing.value.reason == "ContentNotFoundError"

        keys = relayed.store.add_bytes(b"the party's round keys")  # a secure round's messages: the same client
        posted = client.post_round_message(federation.round_id, RoundMessageKind.ADVERTISE, keys)
        assert isinstance(posted, RelayedTx) and posted.relayer == federation.admin.sender
        [message] = federation.admin.round_messages(federation.round_id)
        assert (message.party, message.cid, message.tx_hash) == (party.address, keys, posted.tx_hash)
        with pytest.raises(RelayRefusedError) as early:
            client.post_round_message(federation.round_id, RoundMessageKind.REVEAL, keys)
        assert early.value.reason == "FederationRevealBeforeDeadline"
        assert str(early.value).startswith(f"the relay at {relayed.url} did not post the round message "
                                           "(FederationRevealBeforeDeadline): ")


def test_a_relay_of_another_deployment_is_refused_before_signing(chain: TestChain, tmp_path: Path) -> None:
    ours, theirs = make_federation(chain), make_federation(chain)
    with running_relay(theirs, tmp_path) as relayed:
        client = RelayClient(relayed.url, federation=ours.admin, account=ours.gasless_party())
        with pytest.raises(RelayError, match=f"relays for contract {theirs.admin.address} .* not this workspace's {ours.admin.address}"):
            client.check()


class _NotARelay(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


def test_an_endpoint_that_is_not_a_relay_is_refused(chain: TestChain) -> None:
    federation = make_federation(chain)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotARelay)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = RelayClient(f"http://127.0.0.1:{server.server_address[1]}", federation=federation.admin,
                             account=federation.gasless_party())
        with pytest.raises(RelayError, match="without JSON, so it is not a fedledger relay"):
            client.check()
    finally:
        server.shutdown()
        server.server_close()
