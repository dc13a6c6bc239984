"""A party that never holds ether takes part in a round through `fedledger relay serve`, on a real
anvil: it joins by a relayed signature, trains with `node train --relay URL` (a separate process
of the installed console script, as is the relay), the round is aggregated, and `audit verify`
passes and names the relayer (as does `audit updates`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from eth_account import Account
from web3 import Web3

from ledger.workspace import Workspace
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import Outcome, ok
from tests.round.conftest import make_federation
from tests.services.harness import ServiceProcess, shard_files

pytestmark = [pytest.mark.anvil, pytest.mark.slow]

PASSWORD = "relay tests password"


def test_a_party_without_ether_takes_part_through_the_relay_and_the_audit_names_the_relayer(
    chain: TestChain, tmp_path: Path, fedledger: Callable[..., Outcome], cli: Callable[..., Outcome]
) -> None:
    rpc = chain.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    federation = make_federation(tmp_path, rpc=rpc)
    w = federation.w
    key_env = {"FEDLEDGER_KEY_PASSWORD": PASSWORD}
    relayer = ok(cli("key", "new", "relayer", "--light-kdf", "--json", *w, env=key_env)).json()["address"]
    ok(cli("key", "fund", "relayer", "--amount", "1", *w))

    party = Account.create()
    party_env = {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(party.key)}
    signed = ok(cli("participant", "join", "--relay", *w, env=party_env))
    (tmp_path / "join.json").write_text(signed.stdout)
    ok(cli("participant", "relay", str(tmp_path / "join.json"), *w))
    ok(cli("participant", "approve", party.address, *w))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=1)
    assert chain.w3.eth.get_balance(party.address) == 0

    relay = ServiceProcess("relay", ["relay", "serve", "--key", "relayer", "--port", "0", "--max-wait", "0.2",
                                     "--log-json", *w], env=key_env, log_dir=tmp_path / "logs")
    try:
        url = relay.wait_for("listening", timeout=60)["url"]
        health = requests.get(url + "/health", timeout=10).json()
        assert health["relayer"] == relayer and health["batch_size"] == 64

        [data] = shard_files(tmp_path / "data", parties=1)
        trained = ok(fedledger("node", "train", "--round", str(round_id), "--data", str(data), "--relay", url,
                               "--json", *w, env=party_env, timeout=300))
        update = trained.json()
        assert update["participant"] == party.address and update["relayed_by"] == relayer
        receipt = chain.w3.eth.get_transaction_receipt(update["tx_hash"])
        assert receipt["blockNumber"] == update["block"] and receipt["from"] == relayer
        assert f"Relayed by {relayer}" in trained.stderr
        relay.wait_for("relayed", timeout=30, where=lambda r: r["recorded"] == 1)
        assert relay.terminate() == 0  # SIGTERM: a clean stop
        assert relay.wait_for("stopped", timeout=5)["signal"] == "SIGTERM"
    finally:
        relay.stop()
    assert chain.w3.eth.get_balance(party.address) == 0  # it never paid anything

    aggregated = ok(fedledger("aggregate", "--round", str(round_id), "--json", *w)).json()
    assert [item["participant"] for item in aggregated["included"]] == [party.address]

    verified = ok(cli("audit", "verify", *w))
    assert f"RELAYED round {round_id}: 1 update(s) sent by relayer {relayer}" in verified.stderr
    document = ok(cli("audit", "verify", "--json", *w)).json()
    [membership] = [c for c in document["checks"] if c["check"] == "membership"]
    assert membership["ok"] and membership["relayer"] == relayer and membership["participant"] == party.address
    [row] = ok(cli("audit", "updates", "--json", *w)).json()
    assert row["relayed_by"] == relayer and row["tx_hash"] == update["tx_hash"]
    assert Workspace.load(federation.workspace.root).get("chain", "rpc") == rpc
