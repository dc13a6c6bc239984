"""Local training and evaluation: a plain PyTorch loop, seeded, on the best device at hand.

The loop costs what a hand-written one costs: the shard moves to the device once, batches are
index slices of it, shuffling uses a seeded generator, and the loss stays on the device until the
epoch ends (one host sync per epoch, for the progress bar). On CUDA the forward pass runs under
autocast (bf16 where the GPU has it, else fp16 with a gradient scaler); on the CPU it runs in
float32, and the same seed gives the same weights bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from torch import nn
from torch.nn import functional as F

from ledger.errors import InvalidInputError
from ledger.failpoints import trace
from node.data import Dataset

EVAL_BATCH = 4096
MOMENTUM = 0.9


@dataclass(frozen=True)
class TrainResult:
    """How many local samples the update was trained on, and its metrics on that local data."""

    samples: int
    metrics: dict[str, float]


def pick_device(preference: str | None = None) -> torch.device:
    """``preference`` ("cpu", "cuda", "cuda:1", "mps") if it is usable, else CUDA, then MPS, then CPU."""
    if preference is not None:
        try:
            device = torch.device(preference)
        except RuntimeError as error:
            raise InvalidInputError(f"{preference!r} is not a device name; use cpu, cuda, cuda:N or mps.") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInputError(f"device {preference!r} asked for, but no CUDA GPU is usable here; use cpu.")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise InvalidInputError(f"device {preference!r} asked for, but MPS is not available here; use cpu.")
        if device.type not in ("cpu", "cuda", "mps"):
            raise InvalidInputError(f"device {preference!r} is not supported; use cpu, cuda, cuda:N or mps.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The reduced precision the forward pass runs in on ``device``; None for full float32."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class MomentumSGD:
    """``torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)`` on the CPU, step for step and bit for bit (torch's
    single-tensor path there: no dampening, no Nesterov, no weight decay), without ``torch.optim``: creating any
    torch optimizer imports ``torch._dynamo``, about 1.2 s of CPU before the first step in every process that
    trains (each `node train`, each task process), longer than a digits shard takes to train."""

    def __init__(self, params: Iterable[torch.Tensor], *, lr: float, momentum: float = MOMENTUM) -> None:
        self.params = list(params)
        self.lr = lr
        self.momentum = momentum
        self._buffers: list[torch.Tensor | None] = [None] * len(self.params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for param in self.params:
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        for i, param in enumerate(self.params):
            if param.grad is None:
                continue
            buffer = self._buffers[i]
            if buffer is None:
                buffer = self._buffers[i] = param.grad.detach().clone()
            else:
                buffer.mul_(self.momentum).add_(param.grad, alpha=1)
            param.add_(buffer, alpha=-self.lr)


def momentum_sgd(params: Iterable[torch.Tensor], *, lr: float, device: torch.device) -> MomentumSGD | torch.optim.SGD:
    """The optimizer fedledger trains with, SGD with momentum MOMENTUM: MomentumSGD on the CPU, torch's own
    elsewhere (its multi-tensor kernels, and what torch.amp.GradScaler steps)."""
    if device.type == "cpu":
        return MomentumSGD(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM)


def train(
    model: nn.Module,
    data: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place with SGD (momentum 0.9) on ``data``; the model ends where it started.

    Metrics: mean ``loss`` and ``accuracy`` over the last epoch's batches (as the model trained
    through it); measuring them costs no separate pass over the data.
    """
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise InvalidInputError(
            f"training needs epochs >= 1, batch_size >= 1 and lr > 0 (got {epochs}, {batch_size}, {lr}); fix the round's training settings."
        )
    if len(data) == 0:
        raise InvalidInputError("the local data set is empty; point the participant at data with at least one sample.")
    device = pick_device(device if isinstance(device, str) or device is None else str(device))
    home = _device_of(model)
    model.to(device).train()
    x, y = _on_device(data, device)
    n = len(data)
    shuffler = torch.Generator().manual_seed(seed)  # on the CPU: the same order on every device
    optimizer = momentum_sgd(model.parameters(), lr=lr, device=device)
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    autocast = (
        (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype is not None else contextlib.nullcontext
    )
    metrics: dict[str, float] = {}
    trace(f"train seed={seed} samples={n} epochs={epochs}")
    with _progress_bar(progress, epochs) as bar:
        task = bar.add_task("training", total=epochs, loss=float("nan"))
        for epoch in range(epochs):
            last = epoch == epochs - 1
            order = torch.randperm(n, generator=shuffler).to(device)
            losses: list[torch.Tensor] = []
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for start in range(0, n, batch_size):
                index = order[start : start + batch_size]
                target = y[index]
                with autocast():
                    logits = model(x[index])
                    loss = F.cross_entropy(logits, target)
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                    optimizer.step()
                else:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                losses.append(loss.detach())
                if last:
                    correct += (logits.detach().argmax(dim=1) == target).sum()
            # Each batch's mean loss weighted by its size: the epoch's mean loss per sample.
            sizes = torch.tensor([min(batch_size, n - s) for s in range(0, n, batch_size)], device=device)
            metrics["loss"] = float((torch.stack(losses).float() * sizes).sum() / n)
            bar.update(task, advance=1, loss=metrics["loss"], refresh=True)
    metrics["accuracy"] = float(correct) / n
    model.to(home)
    return TrainResult(samples=n, metrics=metrics)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset, *, device: torch.device | str | None = None) -> dict[str, float]:
    """``accuracy`` (0..1) and mean cross-entropy ``loss`` of ``model`` on ``data``, in float32."""
    if len(data) == 0:
        raise InvalidInputError("the evaluation data set is empty; evaluate on at least one sample.")
    device = pick_device(device if isinstance(device, str) or device is None else str(device))
    home = _device_of(model)
    was_training = model.training
    model.to(device).eval()
    x, y = _on_device(data, device)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for start in range(0, len(data), EVAL_BATCH):
        logits = model(x[start : start + EVAL_BATCH]).float()
        target = y[start : start + EVAL_BATCH]
        loss += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
    model.to(home).train(was_training)
    return {"accuracy": float(correct) / len(data), "loss": float(loss) / len(data)}


def _on_device(data: Dataset, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole data set on ``device``, moved once: batches are then index slices, not copies from the host."""
    x = torch.from_numpy(np.ascontiguousarray(data.x, dtype=np.float32)).to(device)
    y = torch.from_numpy(np.ascontiguousarray(data.y, dtype=np.int64)).to(device)
    return x, y


def _device_of(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _progress_bar(enabled: bool, epochs: int) -> Progress:
    """One bar for the run, advanced once per epoch with that epoch's mean loss; on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("epochs  loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        auto_refresh=False,  # redrawn once per epoch: no refresh thread competing with the training threads
    )
