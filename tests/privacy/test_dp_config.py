"""The round config's dp section: canonical bytes (the hash goes on chain), every bad value one sentence."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.errors import InvalidInputError
from ledger.workspace import Workspace
from node.round_config import DpSettings, RoundConfig
from tests.fixtures_cli import Outcome

GOOD = {"noise_multiplier": 1.1, "max_grad_norm": 1.0, "sample_rate": 0.1, "steps": 20, "accountant": "rdp"}
PLAIN = RoundConfig(model="mlp", strategy={"name": "fedavg"})


def config_bytes(dp: object) -> bytes:
    return json.dumps({"model": "mlp", "strategy": {"name": "fedavg"}, "dp": dp}).encode()


def test_a_config_without_dp_keeps_its_bytes_and_hash() -> None:
    assert PLAIN.to_bytes() == (
        b'{"max_samples":10000,"model":"mlp","strategy":{"name":"fedavg"},'
        b'"training":{"batch_size":32,"epochs":2,"lr":0.05}}'
    )
    assert RoundConfig.from_bytes(PLAIN.to_bytes()).dp is None


def test_dp_section_round_trips_canonically() -> None:
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"}, dp=DpSettings(**GOOD))
    data = config.to_bytes()
    assert b'"dp":{"accountant":"rdp","max_grad_norm":1.0,"noise_multiplier":1.1,"sample_rate":0.1,"steps":20}' in data
    again = RoundConfig.from_bytes(data)
    assert again == config and again.to_bytes() == data
    assert config.config_hash != PLAIN.config_hash


def test_integers_and_floats_give_the_same_hash() -> None:
    as_ints = DpSettings(noise_multiplier=1, max_grad_norm=2, sample_rate=1, steps=5)
    as_floats = DpSettings(noise_multiplier=1.0, max_grad_norm=2.0, sample_rate=1.0, steps=5)
    configs = [RoundConfig(model="mlp", strategy={"name": "fedavg"}, dp=dp) for dp in (as_ints, as_floats)]
    assert configs[0].to_bytes() == configs[1].to_bytes()
    parsed = RoundConfig.from_bytes(config_bytes({"noise_multiplier": 1, "max_grad_norm": 2, "sample_rate": 1, "steps": 5}))
    assert parsed.config_hash == configs[1].config_hash


def test_accountant_defaults_to_rdp() -> None:
    parsed = RoundConfig.from_bytes(config_bytes({k: v for k, v in GOOD.items() if k != "accountant"}))
    assert parsed.dp == DpSettings(**GOOD)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("noise_multiplier", 0, "noise_multiplier must be a positive finite number, not 0"),
        ("noise_multiplier", -1.0, "noise_multiplier must be a positive finite number, not -1.0"),
        ("noise_multiplier", "1.1", "noise_multiplier must be a positive finite number, not '1.1'"),
        ("noise_multiplier", True, "noise_multiplier must be a positive finite number, not True"),
        ("max_grad_norm", 0.0, "max_grad_norm must be a positive finite number, not 0.0"),
        ("sample_rate", 0, "sample_rate must be a number in (0, 1], not 0"),
        ("sample_rate", 1.5, "sample_rate must be a number in (0, 1], not 1.5"),
        ("steps", 0, "steps must be an integer from 1 to 1000000, not 0"),
        ("steps", 2.5, "steps must be an integer from 1 to 1000000, not 2.5"),
        ("steps", 10**7, "steps must be an integer from 1 to 1000000, not 10000000"),
        ("accountant", "prv", "accountant must be one of rdp, not 'prv'"),
    ],
)
def test_bad_dp_values_are_refused_with_the_field_named(field: str, value: object, expected: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        RoundConfig.from_bytes(config_bytes({**GOOD, field: value}))
    assert expected in str(refused.value) and str(refused.value).endswith(".")


def test_infinite_noise_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="noise_multiplier must be a positive finite number, not inf"):
        DpSettings(noise_multiplier=float("inf"), max_grad_norm=1.0, sample_rate=0.1, steps=1)
    with pytest.raises(InvalidInputError, match="not nan"):
        DpSettings(noise_multiplier=1.0, max_grad_norm=float("nan"), sample_rate=0.1, steps=1)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ([1, 2], "dp section must be a JSON object, not list"),
        ({**GOOD, "sigma": 1.0}, "has unknown fields ['sigma'] and lacks []"),
        ({k: v for k, v in GOOD.items() if k != "steps"}, "has unknown fields [] and lacks ['steps']"),
    ],
)
def test_malformed_dp_sections_are_refused(section: object, expected: str) -> None:
    with pytest.raises(InvalidInputError) as refused:
        RoundConfig.from_bytes(config_bytes(section))
    assert expected in str(refused.value)


def test_round_open_refuses_a_bad_dp_section_before_anything_is_recorded(
    cli: Callable[..., Outcome], tmp_path: Path
) -> None:
    workspace = Workspace.init(tmp_path / "ws")
    workspace.set("chain", "rpc", "http://127.0.0.1:9")
    workspace.config["deployment"] = {"address": "0x5FbDB2315678afecb367f032d93F642f64180aa3", "chain_id": 31337, "block": 1}
    workspace.save()
    before = workspace.config_path.read_bytes()
    config = tmp_path / "round.json"
    config.write_bytes(config_bytes({**GOOD, "sample_rate": 2}))
    outcome = cli(
        "round", "open", "--base-cid", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        "--deadline", "60", "--min-updates", "1", "--config", str(config), "--workdir", str(workspace.root),
    )
    assert outcome.exit_code != 0 and outcome.stdout == ""
    assert "the dp section's sample_rate must be a number in (0, 1], not 2" in outcome.error_line()
    assert workspace.config_path.read_bytes() == before
    assert [path for path in workspace.store_dir.rglob("*") if path.is_file()] == []
