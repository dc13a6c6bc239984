"""Two federated rounds through the real console script, on anvil and a shared `fedledger ipfs serve`.

Three parties with their own keystores train concurrently as separate `node train` processes, one
`aggregate` process finalizes; round 2 starts from round 1's global model. A fourth party that was
never admitted is refused by the contract. Before round 2 is aggregated one party's pinned blob is
altered in the server's repository: the round still finalizes with the other two, and the receipt
names the altered update as rejected with the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from web3 import Web3

from ledger.ipfs.store import open_store
from ledger.weights import from_safetensors
from node.models import model_layout
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_fedledger as fedledger
from tests.fixtures_cli import run_in_process as cli
from tests.fixtures_store import IpfsServer, start_ipfs_server, stop_ipfs_server
from tests.round.conftest import (
    PASSWORD,
    Federation,
    finish,
    ipfs_cat,
    make_federation,
    start,
)

pytestmark = pytest.mark.anvil

PARTIES = ("alice", "bob", "carol")


def add_keystore_party(federation: Federation, name: str) -> str:
    """`key new` + `key fund` + `participant join --key` + `participant approve`; returns the address."""
    env = {"FEDLEDGER_KEY_PASSWORD": f"{PASSWORD} {name}"}
    w = federation.w
    address = ok(cli("key", "new", name, "--light-kdf", "--json", *w, env=env)).json()["address"]
    ok(cli("key", "fund", name, "--amount", "1", *w))
    ok(cli("participant", "join", "--key", name, *w, env=env))
    ok(cli("participant", "approve", address, *w))
    federation.parties[name] = {"address": address, "env": env}
    return address


def train_all(federation: Federation, round_id: int, *, outsider_env: dict[str, str] | None = None) -> dict:
    """Every party's `node train` as its own process, all at once; returns name -> Outcome."""
    processes = {
        name: start(
            "node", "train", "--round", str(round_id), "--key", name, "--shard", str(i), "--of", str(len(PARTIES)),
            "--json", *federation.w, env=federation.parties[name]["env"],
        )
        for i, name in enumerate(PARTIES)
    }
    if outsider_env is not None:
        processes["outsider"] = start(
            "node", "train", "--round", str(round_id), "--shard", "0", "--of", str(len(PARTIES)), "--json",
            *federation.w, env=outsider_env,
        )
    return {name: finish(process) for name, process in processes.items()}


def flip_a_byte(server: IpfsServer, cid: str) -> None:
    """Alter the stored block of a single-block (raw) CID in the server's repository, in place."""
    [block] = list((server.repo / "blocks").glob(f"*/{cid}"))
    data = bytearray(block.read_bytes())
    data[len(data) // 2] ^= 0xFF
    block.write_bytes(bytes(data))


@pytest.fixture
def private_ipfs_server(tmp_path: Path) -> Iterator[IpfsServer]:
    """This test's own `fedledger ipfs serve` (its repo gets tampered with, so it is not the session's)."""
    server, process = start_ipfs_server(tmp_path / "ipfs-repo")
    try:
        yield server
    finally:
        stop_ipfs_server(server, process)


@pytest.mark.slow
def test_two_rounds_with_concurrent_parties_an_outsider_and_a_tampered_blob(
    anvil_rpc: str, private_ipfs_server: IpfsServer, tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc, store_api=private_ipfs_server.api)
    w = federation.w
    addresses = {name: add_keystore_party(federation, name) for name in PARTIES}
    outsider = Account.create()
    Web3(Web3.HTTPProvider(anvil_rpc)).provider.make_request(
        "anvil_setBalance", [outsider.address, hex(10**18)]  # type: ignore[arg-type]
    )

    # Round 1: three admitted parties train concurrently; the never-admitted outsider is refused.
    round_1 = federation.open_round(base_cid=federation.genesis_cid, min_updates=3)
    outcomes = train_all(federation, round_1, outsider_env={"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(outsider.key)})
    refused = outcomes.pop("outsider")
    assert refused.exit_code != 0 and refused.stdout == ""
    line = refused.error_line(alone=False)  # after the "Party …: round N" banner
    assert outsider.address in line and "is not an admitted participant" in line, line
    updates_1 = {name: ok(outcome).json() for name, outcome in outcomes.items()}
    for name, update in updates_1.items():
        assert update["participant"] == addresses[name] and update["trained"] is True
        assert update["tx_hash"] is not None and update["samples"] > 0

    status = ok(cli("round", "status", str(round_1), "--json", *w)).json()
    assert status["submissions"] == 3
    assert {u["participant"] for u in status["updates"]} == set(addresses.values())

    aggregated_1 = ok(fedledger("aggregate", "--round", str(round_1), "--json", *w)).json()
    assert aggregated_1["rejected"] == []
    assert sorted(i["participant"] for i in aggregated_1["included"]) == sorted(addresses.values())
    global_1 = aggregated_1["global_cid"]

    # Round 2 starts from round 1's global model.
    round_2 = federation.open_round(base_cid=global_1, min_updates=3)
    assert ok(cli("round", "status", str(round_2), "--json", *w)).json()["base_cid"] == global_1
    updates_2 = {name: ok(outcome).json() for name, outcome in train_all(federation, round_2).items()}
    blob = open_store(federation.workspace).get(updates_2["alice"]["update_cid"])
    _, metadata = from_safetensors(blob, layout=model_layout("mlp"))
    assert metadata["base_cid"] == global_1 and metadata["round"] == round_2

    # Bob's pinned update is altered in the server's repository before aggregation.
    tampered = updates_2["bob"]["update_cid"]
    flip_a_byte(private_ipfs_server, tampered)
    aggregated_2 = ok(fedledger("aggregate", "--round", str(round_2), "--json", *w))
    document = aggregated_2.json()
    assert sorted(i["participant"] for i in document["included"]) == sorted([addresses["alice"], addresses["carol"]])
    assert [(r["participant"], r["cid"]) for r in document["rejected"]] == [(addresses["bob"], tampered)]
    assert "altered" in document["rejected"][0]["reason"]

    final = ok(cli("round", "status", str(round_2), "--json", *w)).json()
    assert final["state"] == "finalized"
    assert (final["global_cid"], final["receipt_cid"]) == (document["global_cid"], document["receipt_cid"])

    # The receipt, as anyone fetches it from the shared store, names the rejected update and why.
    receipt = json.loads(ipfs_cat(final["receipt_cid"], *w))
    assert receipt["round_id"] == round_2 and receipt["base_cid"] == global_1
    assert receipt["global_cid"] == final["global_cid"]
    assert [(r["participant"], r["cid"]) for r in receipt["rejected"]] == [(addresses["bob"], tampered)]
    assert "does not hash to its CID" in receipt["rejected"][0]["reason"]
    assert {i["participant"] for i in receipt["included"]} == {addresses["alice"], addresses["carol"]}

