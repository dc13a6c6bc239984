"""A round whose only update is not in the aggregator's store is not finalized on its base model (the
store may be the one at fault): `aggregate` names the CID and the commands that go on, nothing is
pinned or recorded, and once the blob is added the same command finalizes the round with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from web3 import Web3

from ledger.ipfs.store import open_store
from ledger.ipfs.unixfs import cid_of_bytes
from ledger.weights import from_safetensors, to_safetensors
from node.models import model_layout
from node.update_metrics import metrics_hash
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import make_federation

pytestmark = pytest.mark.anvil


def test_a_round_whose_updates_are_missing_here_waits_for_them(
    anvil_rpc: str, anvil_keys: list[LocalAccount], tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    w = federation.w
    alice = federation.admit("alice", Web3.to_hex(anvil_keys[4].key))
    round_id = federation.open_round(base_cid=federation.genesis_cid, min_updates=1)
    reader = federation.client()
    genesis = open_store(federation.workspace).get(federation.genesis_cid)
    arrays, _ = from_safetensors(genesis, layout=model_layout("mlp"))
    metrics = {"accuracy": 0.5}
    blob = to_safetensors({k: v + 0.01 for k, v in arrays.items()},
                          metadata={"model": "mlp", "participant": alice, "round": round_id, "metrics": metrics})
    cid = cid_of_bytes(blob)  # pinned nowhere this aggregator can read
    reader.with_account(anvil_keys[4]).submit_update(round_id, cid=cid, samples=10, metrics_hash=metrics_hash(metrics))

    refused = cli("aggregate", "--round", str(round_id), *w)
    assert refused.exit_code != 0
    line = refused.error_line()
    assert f"round {round_id} has no usable update, and 1 of its updates are not in this store ({cid})" in line
    assert f"`fedledger aggregate --round {round_id}`" in line and "`fedledger ipfs add FILE`" in line
    assert f"`fedledger round abort {round_id} --reason TEXT`" in line
    assert reader.round(round_id).state == "open"
    assert list(federation.workspace.journal_dir.glob("aggregator-*")) == []

    path = tmp_path / "alice-update.safetensors"
    path.write_bytes(blob)
    assert ok(cli("ipfs", "add", str(path), "--json", *w)).json()["cid"] == cid
    document = ok(cli("aggregate", "--round", str(round_id), "--json", *w)).json()
    assert [(u["participant"], u["cid"]) for u in document["included"]] == [(alice, cid)]
    assert document["unavailable"] == [] and document["rejected"] == []
    assert ok(cli("audit", "verify", "--json", *w)).json()["failed"] == 0
