"""Models by name: fixed layouts, seeded initialisation, weights as numpy arrays."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ledger.errors import InvalidInputError
from node.models import (
    MODEL_NAMES,
    build_model,
    load_arrays,
    model_layout,
    state_arrays,
)


def test_model_names():
    assert MODEL_NAMES == ("cnn", "mlp")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_layout_matches_the_built_model_and_forward_takes_flat_digits(name):
    torch.manual_seed(0)
    model = build_model(name)
    arrays = state_arrays(model)
    assert {k: (a.shape, a.dtype.name) for k, a in arrays.items()} == model_layout(name)
    assert model(torch.zeros(5, 64)).shape == (5, 10)


def test_the_aggregator_and_the_auditor_check_layouts_without_importing_torch():
    """Their processes never run a model, so importing torch (~2 s of CPU each) would buy nothing."""
    script = (
        "import sys; import node.aggregator, node.audit.verify, node.services.aggregator_service, node.cli.round_cmd;"
        "from node.model_layouts import model_layout; print(sorted(model_layout('cnn')), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True, text=True).stdout.strip()
    assert out == f"{sorted(model_layout('cnn'))} False"


def test_mlp_layout_is_fixed():
    assert model_layout("mlp") == {
        "fc1.weight": ((64, 64), "float32"),
        "fc1.bias": ((64,), "float32"),
        "fc2.weight": ((10, 64), "float32"),
        "fc2.bias": ((10,), "float32"),
    }


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_initialisation_follows_the_torch_seed(name):
    torch.manual_seed(4)
    first = state_arrays(build_model(name))
    torch.manual_seed(4)
    again = state_arrays(build_model(name))
    other = state_arrays(build_model(name))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)


def test_arrays_round_trip_into_another_model():
    torch.manual_seed(1)
    source = build_model("cnn")
    target = build_model("cnn")
    load_arrays(target, state_arrays(source))
    x = torch.rand(3, 64)
    assert torch.equal(source(x), target(x))


def test_arrays_of_another_shape_or_name_are_refused():
    model = build_model("mlp")
    arrays = state_arrays(model)
    with pytest.raises(InvalidInputError, match="shape"):
        load_arrays(model, {**arrays, "fc2.bias": np.zeros(11, np.float32)})
    with pytest.raises(InvalidInputError, match="missing tensors"):
        load_arrays(model, {k: v for k, v in arrays.items() if k != "fc2.bias"})


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(InvalidInputError, match="cnn, mlp"):
        build_model("resnet")
    with pytest.raises(InvalidInputError, match="unknown model"):
        model_layout("resnet")
