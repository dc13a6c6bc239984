"""A fedledger task: fine-tune a frozen pretrained backbone with low-rank adapters (LoRA).

The backbone is an MLP for 8x8 digit images (64 -> 256 -> 256 -> 10) whose pretrained weights ship
in the task folder as ``backbone.safetensors`` (so the bundle's CID covers them, and the genesis
model pins them as the round's frozen tensors). Each linear layer gets a low-rank adapter
``W x + (alpha / rank) * B A x`` with A (rank x in) and B (out x rank, starting at zero, so the
genesis model computes exactly what the backbone does). Only A and B train: every tensor of the
backbone has ``requires_grad=False``, so it is neither sent nor aggregated, and an update holds
the adapters alone.

Put your own backbone at ``backbone.safetensors`` (tensor names as ``BACKBONE_NAMES``); data: a
party's ``.npz`` (x: N x 64, y: N) or scikit-learn's bundled digits split by ``--shard/--of``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import nn

RANK = 4
ALPHA = 8.0
SIZES = (64, 256, 256, 10)
BACKBONE = Path(__file__).resolve().parent / "backbone.safetensors"
BACKBONE_NAMES = tuple(f"layer{i}.{part}" for i in range(len(SIZES) - 1) for part in ("weight", "bias"))
VALIDATION_FRACTION = 0.2

Pair = tuple[torch.Tensor, torch.Tensor]


class LoraLinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank update."""

    def __init__(self, base: nn.Linear, *, rank: int = RANK, alpha: float = ALPHA) -> None:
        super().__init__()
        self.base = base.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / base.in_features**0.5)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))
        self.scale = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale


class AdaptedMlp(nn.Module):
    def __init__(self, backbone: dict[str, torch.Tensor]) -> None:
        super().__init__()
        layers = []
        for i, (fan_in, fan_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
            base = nn.Linear(fan_in, fan_out)
            base.weight.data.copy_(backbone[f"layer{i}.weight"])
            base.bias.data.copy_(backbone[f"layer{i}.bias"])
            layers.append(LoraLinear(base))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def model() -> nn.Module:
    """The backbone from ``backbone.safetensors``, frozen, with fresh adapters on every layer."""
    if not BACKBONE.is_file():
        raise FileNotFoundError(f"{BACKBONE.name} is missing from the task folder; put the pretrained backbone there before packing")
    backbone = load_file(str(BACKBONE))
    shapes = {f"layer{i}.weight": (o, n) for i, (n, o) in enumerate(zip(SIZES[:-1], SIZES[1:]))}
    shapes.update({f"layer{i}.bias": (o,) for i, o in enumerate(SIZES[1:])})
    wrong = sorted(name for name in BACKBONE_NAMES if tuple(backbone.get(name, torch.empty(0)).shape) != shapes[name])
    if wrong:
        raise ValueError(f"{BACKBONE.name} lacks or misshapes {wrong}; it must hold {dict(shapes)}")
    return AdaptedMlp(backbone)


def _read(path: str | None) -> tuple[np.ndarray, np.ndarray]:
    if path is None:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return (np.asarray(digits.data, dtype=np.float32) / 16.0), np.asarray(digits.target, dtype=np.int64)
    with np.load(path, allow_pickle=False) as archive:
        return np.asarray(archive["x"], dtype=np.float32), np.asarray(archive["y"], dtype=np.int64)


def load_data(path: str | None, *, partition: int | None, partitions: int | None, seed: int) -> tuple[Pair, Pair]:
    x, y = _read(path)
    if x.ndim != 2 or x.shape[1] != SIZES[0] or y.shape != (x.shape[0],):
        raise ValueError(f"the data is x {list(x.shape)}, y {list(y.shape)}; this task expects N x {SIZES[0]} and N")
    order = np.random.default_rng(seed).permutation(len(y))
    if partition is not None:
        order = np.array_split(order, partitions)[partition]
    cut = max(1, int(len(order) * VALIDATION_FRACTION))
    validation, train = order[:cut], order[cut:]
    return (torch.from_numpy(x[train]), torch.from_numpy(y[train])), (torch.from_numpy(x[validation]), torch.from_numpy(y[validation]))


def make_backbone(path: Path | str = BACKBONE, *, seed: int = 0, epochs: int = 30) -> Path:
    """Pretrain a backbone on the first half of scikit-learn's digits and save it (for trying the example)."""
    from safetensors.torch import save_file
    from sklearn.datasets import load_digits

    torch.manual_seed(seed)
    digits = load_digits()
    half = len(digits.target) // 2
    x = torch.tensor(digits.data[:half], dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target[:half], dtype=torch.int64)
    layers = [nn.Linear(n, o) for n, o in zip(SIZES[:-1], SIZES[1:])]
    net = nn.Sequential(layers[0], nn.ReLU(), layers[1], nn.ReLU(), layers[2])
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    for _ in range(epochs):
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        optimizer.step()
    tensors = {f"layer{i}.{part}": getattr(layer, part).detach().contiguous() for i, layer in enumerate(layers) for part in ("weight", "bias")}
    save_file(tensors, str(path))
    return Path(path)


if __name__ == "__main__":  # python lora_task.py: write a backbone pretrained on half the digits
    print(f"wrote {make_backbone()}")
