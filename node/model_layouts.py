"""The built-in models' tensor layouts, without torch.

An aggregator, an auditor or `round open` checks weights against these layouts and never runs a
model, so it need not import torch (about 2 s of CPU in every such process). node.models builds the
modules these layouts describe; tests/node/test_models.py checks each layout against its module's
state_dict.
"""

from __future__ import annotations

from ledger.errors import InvalidInputError
from ledger.weights import Layout

MLP_HIDDEN = 64

_LAYOUTS: dict[str, Layout] = {
    "mlp": {
        "fc1.weight": ((MLP_HIDDEN, 64), "float32"),
        "fc1.bias": ((MLP_HIDDEN,), "float32"),
        "fc2.weight": ((10, MLP_HIDDEN), "float32"),
        "fc2.bias": ((10,), "float32"),
    },
    "cnn": {
        "conv1.weight": ((16, 1, 3, 3), "float32"),
        "conv1.bias": ((16,), "float32"),
        "conv2.weight": ((32, 16, 3, 3), "float32"),
        "conv2.bias": ((32,), "float32"),
        "fc.weight": ((10, 32 * 4 * 4), "float32"),
        "fc.bias": ((10,), "float32"),
    },
}
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_LAYOUTS))


def checked_model_name(name: str) -> str:
    """``name`` if it is a built-in model, else InvalidInputError naming the valid ones."""
    if name not in _LAYOUTS:
        raise InvalidInputError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}.")
    return name


def model_layout(name: str) -> Layout:
    """The tensor names, shapes and dtypes that every weights file of this model has."""
    return dict(_LAYOUTS[checked_model_name(name)])
