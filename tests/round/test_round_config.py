"""`fedledger round open --max-samples N`: the cap on what one party's claimed sample count weighs is
part of the round config the chain commits to; a value that is no cap is refused before anything is
recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.ipfs.store import open_store
from node.round_config import DEFAULT_MAX_SAMPLES, RoundConfig
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.round.conftest import make_federation

pytestmark = pytest.mark.anvil


def test_round_open_records_max_samples_in_the_config_and_refuses_a_value_that_is_no_cap(
    anvil_rpc: str, tmp_path: Path
) -> None:
    federation = make_federation(tmp_path, rpc=anvil_rpc)
    w, genesis = federation.w, federation.genesis_cid
    store = open_store(federation.workspace)

    def opened(*args: str) -> RoundConfig:
        document = ok(cli("round", "open", "--base-cid", genesis, "--deadline", "600", "--min-updates", "1", *args,
                          "--json", *w)).json()
        return RoundConfig.from_bytes(store.get(document["config_cid"]))

    assert opened("--strategy", "median").max_samples == DEFAULT_MAX_SAMPLES
    config = opened("--strategy", "median", "--max-samples", "50")
    assert (config.max_samples, config.strategy["name"]) == (50, "median")
    assert opened("--config", str(federation.config_file("mine")), "--max-samples", "1").max_samples == 1

    refused = cli("round", "open", "--base-cid", genesis, "--deadline", "600", "--min-updates", "1",
                  "--max-samples", "0", *w)
    assert refused.exit_code != 0
    assert "max_samples must be an integer from 1 to 18446744073709551615, not 0" in refused.error_line()
    assert federation.client().round_count() == 3
