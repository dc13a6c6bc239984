"""Models by name, each with a fixed tensor layout so an update can be checked before it is used.

A model's state is exchanged as plain float32 numpy arrays keyed by the module's parameter names;
``model_layout(name)`` (node.model_layouts, which needs no torch) is the contract every update for
that model must match.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import torch
from torch import nn

from ledger.errors import InvalidInputError
from ledger.weights import Layout
from node.model_layouts import MLP_HIDDEN, MODEL_NAMES, checked_model_name, model_layout

__all__ = ["MODEL_NAMES", "DigitsCNN", "DigitsMLP", "Layout", "build_model", "load_arrays", "model_layout", "state_arrays"]


class DigitsMLP(nn.Module):
    """64 -> hidden -> 10, ReLU."""

    def __init__(self, *, hidden: int = MLP_HIDDEN) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, hidden)
        self.fc2 = nn.Linear(hidden, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions on the 1x8x8 image, one pooling step, then a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(-1, 1, 8, 8)
        x = torch.relu(self.conv1(x))
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


_BUILDERS: dict[str, Callable[[], nn.Module]] = {"mlp": DigitsMLP, "cnn": DigitsCNN}


def build_model(name: str) -> nn.Module:
    """A fresh model; its initial weights follow ``torch.manual_seed`` set by the caller."""
    return _BUILDERS[checked_model_name(name)]()


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's weights as float32 numpy arrays (copies, on the CPU), keyed by tensor name."""
    return {
        key: value.detach().to("cpu", torch.float32).numpy().copy() for key, value in model.state_dict().items()
    }


def load_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Load weights produced by ``state_arrays`` (same names and shapes) into ``model``, in place."""
    expected = model.state_dict()
    if set(arrays) != set(expected):
        missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
        raise InvalidInputError(
            f"weights do not fit the model: missing tensors {missing}, unexpected tensors {extra}; use weights of the same model."
        )
    tensors = {}
    for key, target in expected.items():
        value = np.asarray(arrays[key])
        if tuple(value.shape) != tuple(target.shape):
            raise InvalidInputError(
                f"weights tensor {key!r} has shape {list(value.shape)}, the model needs {list(target.shape)}; use weights of the same model."
            )
        tensors[key] = torch.from_numpy(np.array(value, dtype=np.float32))
    model.load_state_dict(tensors)
