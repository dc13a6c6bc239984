"""DP-SGD local training with Opacus: per-sample clipping and Gaussian noise, as a round's dp section asks.

The privacy guarantee rests on Opacus' parts, not ours: ``GradSampleModule`` computes each sample's
gradient, ``DPOptimizer`` clips each to ``max_grad_norm``, sums them, adds N(0, (σ·C)²) noise and
scales by the expected batch size, and ``UniformWithReplacementSampler`` draws every batch by
Poisson sampling (each sample joins with probability ``sample_rate``), the sampling the accountant
assumes. Around them the loop is the plain one's: the shard moves to the device once and batches
are index slices of it; it runs in float32 on every device (per-sample norms in reduced precision
would clip the wrong samples).

Randomness must stay secret: an adversary who knows the noise subtracts it. The plain loop's seed
is derived from public facts (address and round), so it is not used here: sampling and noise come
from a fresh 63-bit seed from the OS (``secrets``) unless the caller passes ``seed`` (tests and
benchmarks, which need repeatable runs). Opacus' ``secure_mode`` noise (the floating-point attack
mitigation of Holohan et al.) is on; the generator is torch's Mersenne Twister, since the CSPRNG
generator Opacus offers needs torchcsprng, which cannot be installed here.

No metrics of the private data are returned: a loss or accuracy measured on it is not covered by ε
and would leave the party beside the update. An empty Poisson batch still takes its step (noise
only), as the accounting assumes.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn
from torch.nn import functional as F

from ledger.errors import InvalidInputError
from node.data import Dataset
from node.round_config import DpSettings
from node.training import MOMENTUM, TrainResult, _device_of, _on_device, pick_device

PROGRESS_UPDATES = 20  # the bar is redrawn at most this many times a run


def train_private(
    model: nn.Module,
    data: Dataset,
    *,
    dp: DpSettings,
    lr: float,
    seed: int | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` in place with DP-SGD (SGD, momentum 0.9) for ``dp.steps`` steps; it ends where it started.

    The model keeps no trace of Opacus afterwards (hooks and per-sample gradients are removed).
    """
    if len(data) == 0:
        raise InvalidInputError("the local data set is empty; point the participant at data with at least one sample.")
    device = pick_device(device if isinstance(device, str) or device is None else str(device))
    x, y = _on_device(data, device)

    def batch(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = index.to(device)
        return x[index], y[index]

    dp_sgd(model, samples=len(data), batch=batch, loss=F.cross_entropy, dp=dp, lr=lr, seed=seed, device=device,
           progress=progress)
    return TrainResult(samples=len(data), metrics={})


def dp_sgd(
    model: nn.Module,
    *,
    samples: int,
    batch: Callable[[torch.Tensor], tuple[Any, Any]],
    loss: Callable[[Any, Any], torch.Tensor],
    dp: DpSettings,
    lr: float,
    seed: int | None,
    device: torch.device,
    progress: bool,
) -> None:
    """DP-SGD on ``samples`` samples for ``dp.steps`` steps: ``batch(indices)`` gives a batch's (inputs, targets)
    on ``device`` for a CPU tensor of sample indices, ``loss`` its mean loss. Only parameters with
    ``requires_grad`` train (a frozen backbone stays as it is); the model ends on the device it started on.

    Shared by the built-in models (:func:`train_private`) and any task's model (``node.tasks.loop``).
    """
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    if not lr > 0:
        raise InvalidInputError(f"training needs lr > 0 (got {lr}); fix the round's training settings.")
    seed = secrets.randbits(63) if seed is None else seed
    home = _device_of(model)
    model.to(device).train()
    private = _per_sample(model, GradSampleModule)
    trainable = [parameter for parameter in private.parameters() if parameter.requires_grad]
    optimizer = DPOptimizer(
        torch.optim.SGD(trainable, lr=lr, momentum=MOMENTUM),
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=max(1, int(samples * dp.sample_rate)),
        generator=torch.Generator(device=device).manual_seed(seed),
        secure_mode=True,
    )
    batches = UniformWithReplacementSampler(
        num_samples=samples, sample_rate=dp.sample_rate, steps=dp.steps,
        generator=torch.Generator().manual_seed(seed ^ 0x5A5A5A5A),  # on the CPU: the same batches on every device
    )
    every = max(1, dp.steps // PROGRESS_UPDATES)
    try:
        with _progress_bar(progress) as bar, warnings.catch_warnings():
            # The input needs no gradient, so the full backward hooks Opacus installs fire on module outputs: intended.
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            task = bar.add_task("DP-SGD", total=dp.steps)
            for step, indices in enumerate(batches, start=1):
                optimizer.zero_grad(set_to_none=True)
                if indices:
                    inputs, targets = batch(torch.tensor(indices, dtype=torch.int64))
                    loss(private(inputs), targets).backward()
                else:
                    for parameter in trainable:  # what Opacus' own grad samplers give an empty batch
                        parameter.grad_sample = torch.zeros((0, *parameter.shape), device=device)
                optimizer.step()
                if step % every == 0 or step == dp.steps:
                    bar.update(task, completed=step, refresh=True)
    finally:
        private._close()  # remove the hooks and the per-sample gradients from the caller's model
        for parameter in model.parameters():
            parameter.grad = None
    model.to(home)


def _per_sample(model: nn.Module, wrapper: type) -> nn.Module:
    """``model`` wrapped to compute per-sample gradients; a layer Opacus cannot handle is one sentence."""
    try:
        return wrapper(model)
    except NotImplementedError as error:
        raise InvalidInputError(
            f"this model cannot be trained with DP-SGD ({error}); use a model without batch norm or other buffers."
        ) from error


def _progress_bar(enabled: bool) -> Progress:
    """One bar for the run, advanced by steps; on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        auto_refresh=False,
    )
