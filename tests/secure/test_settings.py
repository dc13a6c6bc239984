"""A secure round's config section and the flat vector its parties mask: read strictly, refused in one sentence."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from ledger.errors import InvalidInputError
from ledger.secagg.params import SecureParams
from node.round_config import RoundConfig
from node.secure.layout import flatten, unflatten
from node.secure.settings import SecureRound
from node.strategies import make_strategy

COHORT = ("0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, "0x" + "44" * 20)


def _secure(max_samples: int = 10_000) -> SecureRound:
    params = SecureParams(cohort=COHORT, threshold=2, neighbours=3, max_samples=max_samples)
    return SecureRound(params=params, key_deadline=1_700_000_000)


def _config(**changes) -> RoundConfig:
    return RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(), **changes)


def test_the_section_round_trips_and_a_plain_config_keeps_its_bytes() -> None:
    secure = _config(secure=_secure())
    document = json.loads(secure.to_bytes())
    assert document["secure_aggregation"]["key_deadline"] == 1_700_000_000
    assert document["secure_aggregation"]["threshold"] == 2
    assert RoundConfig.from_bytes(secure.to_bytes()) == secure
    assert "secure_aggregation" not in json.loads(_config().to_bytes())
    assert secure.config_hash != _config().config_hash


@pytest.mark.parametrize(("change", "words"), [
    ({"strategy": make_strategy("krum").params()}, "FedAvg only"),
    ({"seal_to": ("0x" + "55" * 20,)}, "drop --seal-to"),
    ({"max_samples": 500}, "give the same figure"),
])
def test_a_secure_round_that_cannot_be_one_is_refused(change: dict, words: str) -> None:
    with pytest.raises(InvalidInputError, match=words):
        replace(_config(secure=_secure()), **change)


def test_a_section_without_its_key_deadline_or_with_unknown_keys_is_refused() -> None:
    document = json.loads(_config(secure=_secure()).to_bytes())
    del document["secure_aggregation"]["key_deadline"]
    with pytest.raises(InvalidInputError, match="no key_deadline"):
        RoundConfig.from_bytes(json.dumps(document).encode())
    document["secure_aggregation"].update(key_deadline=5, colour="blue")
    with pytest.raises(InvalidInputError, match="unknown key"):
        RoundConfig.from_bytes(json.dumps(document).encode())


def test_the_flat_vector_round_trips_in_the_layouts_order_and_refuses_integer_tensors() -> None:
    arrays = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), dtype=np.float32)}
    layout = {name: (a.shape, "float32") for name, a in arrays.items()}
    vector = flatten(arrays, layout)
    assert vector.tolist() == [1, 1, 1, 1, 0, 1, 2]  # "a" before "b", whatever the dict order
    back = unflatten(vector, layout)
    assert all(np.array_equal(back[name], arrays[name]) and back[name].dtype == np.float32 for name in arrays)
    with pytest.raises(InvalidInputError, match="floating-point tensors only"):
        flatten({"steps": np.zeros(1, dtype=np.int64)}, {"steps": ((1,), "int64")})
