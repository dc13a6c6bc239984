"""fedledger's training and evaluation loop for any task: what runs when a task brings no ``train``/``evaluate``.

Data comes as a ``torch.utils.data.Dataset`` whose items are ``(input, target)`` pairs, or as an
``(x, y)`` pair of arrays or tensors (floating ``x`` becomes float32, integer ``y`` int64). Training
is SGD with momentum 0.9 under the round's ``epochs``/``batch_size``/``lr``, batches shuffled by a
generator seeded from the round's seed (on the CPU, so the order is the same on every device); the
same seed gives the same weights bit for bit on the CPU. On CUDA the forward pass runs under
autocast (bf16 where the GPU has it, else fp16 with a gradient scaler).

This module runs inside the task process (:mod:`node.tasks.worker`), never in the node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler, SequentialSampler

from node.training import autocast_dtype, momentum_sgd

EVAL_BATCH = 1024

LossFunction = Callable[[Any, Any], torch.Tensor]


class InvalidData(ValueError):
    """The data a task gave cannot be used; the message is a clause naming what and why."""


class PairDataset(Dataset):
    """An ``(x, y)`` pair as a Dataset whose index may be a list: one indexing per batch, not per sample."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.y[index]


def _tensor(value: Any, *, what: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError, RuntimeError) as error:
            raise InvalidData(f"{what} cannot become a tensor ({error})") from error
    if tensor.is_floating_point():
        return tensor.to(torch.float32)
    if tensor.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        return tensor.to(torch.int64)
    return tensor


def as_dataset(data: Any, *, what: str) -> Dataset:
    """``data`` as a Dataset: itself, or a :class:`PairDataset` of an ``(x, y)`` pair."""
    if isinstance(data, Dataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = _tensor(data[0], what=f"{what}'s x"), _tensor(data[1], what=f"{what}'s y")
        if x.ndim == 0 or y.ndim == 0 or x.shape[0] != y.shape[0]:
            raise InvalidData(
                f"{what} pairs x of shape {tuple(x.shape)} with y of shape {tuple(y.shape)}; give one label per sample"
            )
        return PairDataset(x, y)
    raise InvalidData(f"{what} is a {type(data).__name__}, not a torch Dataset or an (x, y) pair of arrays")


def size_of(data: Any) -> int | None:
    """How many samples ``data`` holds, where it says (None for a Dataset without a length)."""
    try:
        return len(as_dataset(data, what="the data"))
    except (TypeError, InvalidData):
        return None


class Shuffled(Sampler[int]):
    """One ``torch.randperm(n, generator)`` per epoch and no other draw (``RandomSampler`` draws a
    second permutation per epoch): the same order as ``node.training``, so a built-in task trains
    bit for bit as ``fedledger node train`` does."""

    def __init__(self, size: int, generator: torch.Generator) -> None:
        self.size, self.generator = size, generator

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=self.generator).tolist())


class IndexBatches(Sampler[torch.Tensor]):
    """A :class:`PairDataset`'s batches as tensors of indices (a tensor indexes a tensor far faster than a
    list does): slices of one ``torch.randperm(n, generator)`` per epoch, the order :class:`Shuffled`
    gives, or of ``arange(n)`` without a generator."""

    def __init__(self, size: int, batch_size: int, generator: torch.Generator | None) -> None:
        self.size, self.batch_size, self.generator = size, batch_size, generator

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.generator is None:
            return iter(torch.arange(self.size).split(self.batch_size))
        return iter(torch.randperm(self.size, generator=self.generator).split(self.batch_size))


def _batches(
    dataset: Dataset, *, batch_size: int, generator: torch.Generator | None, device: torch.device, workers: int = 0
) -> Iterator[Any]:
    """Batches of ``dataset``, shuffled by ``generator`` when given (the DataLoader itself gets no generator:
    it would draw from it too). ``workers`` DataLoader processes read a map-style Dataset's items (the
    order is the sampler's, so the same with any number); an ``(x, y)`` pair and an IterableDataset
    are read in this process (the pair is indexed once per batch, by this function itself off CUDA;
    a stream would be read once per worker)."""
    pin = device.type == "cuda"
    if isinstance(dataset, IterableDataset):  # streams in its own order: no sampler may touch it
        return iter(DataLoader(dataset, batch_size=batch_size, pin_memory=pin))
    if isinstance(dataset, PairDataset):  # one indexing per batch
        batched = IndexBatches(len(dataset), batch_size, generator)
        if pin:
            return iter(DataLoader(dataset, sampler=batched, batch_size=None, pin_memory=True))
        # Off CUDA, indexed here: the DataLoader's own work per batch (~35 us) was a tenth of a small model's step.
        # Its iterator is still made, over this epoch's batches, for the draw it takes from torch's global generator
        # (its workers' base seed): dropout and the model's other draws see the same stream as through it.
        epoch = list(batched)
        iter(DataLoader(dataset, sampler=epoch, batch_size=None))
        return ((dataset.x[index], dataset.y[index]) for index in epoch)
    if generator is not None:
        sampler: Sampler[int] = Shuffled(len(dataset), generator)  # type: ignore[arg-type]
    else:
        sampler = SequentialSampler(dataset)  # type: ignore[arg-type]
    return iter(DataLoader(dataset, batch_size=batch_size, sampler=sampler, pin_memory=pin, num_workers=workers))


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, Mapping):
        return {key: _to(item, device) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_to(item, device) for item in value)
    return value


def _pair(batch: Any, *, what: str) -> tuple[Any, Any]:
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise InvalidData(f"{what}'s items are {type(batch).__name__}s, not (input, target) pairs")
    return batch[0], batch[1]


def _count(targets: Any) -> int:
    if isinstance(targets, torch.Tensor) and targets.ndim > 0:
        return int(targets.shape[0])
    return len(targets)


def _correct(outputs: Any, targets: Any) -> torch.Tensor | None:
    """How many outputs pick their target class, when this looks like classification (else None)."""
    if (
        isinstance(outputs, torch.Tensor)
        and isinstance(targets, torch.Tensor)
        and outputs.ndim == 2
        and targets.ndim == 1
        and not targets.is_floating_point()
        and outputs.shape[0] == targets.shape[0]
    ):
        return (outputs.detach().argmax(dim=1) == targets).sum()
    return None


def train(
    model: nn.Module,
    data: Any,
    *,
    settings: Mapping[str, Any],
    device: torch.device,
    seed: int,
    loss: LossFunction | None = None,
    workers: int = 0,
    compile_model: bool = False,
) -> tuple[int, dict[str, float]]:
    """Train ``model`` in place on ``device``; (samples per epoch, last epoch's mean ``loss`` and ``accuracy``).

    ``workers``: DataLoader processes for a map-style Dataset; ``compile_model``: run the forward and
    backward passes through ``torch.compile(model)`` (the same parameters, so the same model is trained;
    its first batches pay for compiling, so it pays on long runs of a large model, not on small ones).
    """
    dataset = as_dataset(data, what="the training data")
    loss_fn = loss or F.cross_entropy
    epochs, batch_size, lr = int(settings["epochs"]), int(settings["batch_size"]), float(settings["lr"])
    model.to(device).train()
    trainable = [parameter for parameter in model.parameters() if parameter.requires_grad]
    if not trainable:
        raise InvalidData("the model has no parameter with requires_grad=True, so there is nothing to train")
    optimizer = momentum_sgd(trainable, lr=lr, device=device)
    forward = torch.compile(model) if compile_model else model
    amp = autocast_dtype(device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    shuffler = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout and any other draw the model makes
    # The last epoch's batch losses, sizes and correct counts, summed once at the end (in float64, batch after
    # batch, as they were summed per step before): per step only the ops that measure, none that accumulate.
    losses: list[torch.Tensor] = []
    counts: list[int] = []
    hits: list[torch.Tensor] = []
    judged = 0
    for epoch in range(epochs):
        last = epoch == epochs - 1  # the metrics are the last epoch's: nothing is measured before it
        for batch in _batches(dataset, batch_size=batch_size, generator=shuffler, device=device, workers=workers):
            inputs, targets = _pair(batch, what="the training data")
            inputs, targets = _to(inputs, device), _to(targets, device)
            with torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext():
                outputs = forward(inputs)
                value = loss_fn(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                value.backward()
                optimizer.step()
            else:
                scaler.scale(value).backward()
                scaler.step(optimizer)
                scaler.update()
            if last:
                count = _count(targets)
                losses.append(value.detach())
                counts.append(count)
                right = _correct(outputs, targets)
                if right is not None:
                    hits.append(right)
                    judged += count
    samples = sum(counts)
    if samples == 0:
        raise InvalidData("the training data holds no samples")
    total = 0.0
    for batch_loss, count in zip(torch.stack(losses).double().reshape(-1).tolist(), counts):  # one read of the device
        total += batch_loss * count
    metrics = {"loss": total / samples}
    if judged == samples:
        metrics["accuracy"] = int(torch.stack(hits).sum()) / samples
    return samples, metrics


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Any, *, device: torch.device, loss: LossFunction | None = None, workers: int = 0
) -> dict[str, float]:
    """Mean ``loss`` (the task's loss, else cross-entropy) and, for classification, ``accuracy``, in float32."""
    dataset = as_dataset(data, what="the validation data")
    loss_fn = loss or F.cross_entropy
    was_training = model.training
    model.to(device).eval()
    samples, judged = 0, 0
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for batch in _batches(dataset, batch_size=EVAL_BATCH, generator=None, device=device, workers=workers):
        inputs, targets = _pair(batch, what="the validation data")
        inputs, targets = _to(inputs, device), _to(targets, device)
        outputs = model(inputs)
        count = _count(targets)
        samples += count
        total += loss_fn(outputs, targets).double() * count
        hits = _correct(outputs, targets)
        if hits is not None:
            correct += hits
            judged += count
    model.train(was_training)
    if samples == 0:
        raise InvalidData("the validation data holds no samples")
    metrics = {"loss": float(total) / samples}
    if judged == samples:
        metrics["accuracy"] = float(correct) / samples
    return metrics


def train_private(
    model: nn.Module,
    data: Any,
    *,
    dp: Mapping[str, Any],
    settings: Mapping[str, Any],
    device: torch.device,
    loss: LossFunction | None = None,
) -> int:
    """Train ``model`` in place with DP-SGD as the round's ``dp`` section asks (the same Opacus steps as the
    built-in models: ``node.privacy.dp_training.dp_sgd``); the number of samples it may draw from.

    Batches are Poisson samples of indices, so the data must be indexable (not an IterableDataset); the
    task's ``loss`` must be a mean over the batch, as Opacus assumes. Its noise is seeded by the OS.
    """
    from torch.utils.data import default_collate

    from node.privacy.dp_training import dp_sgd
    from node.round_config import DpSettings

    dataset = as_dataset(data, what="the training data")
    if isinstance(dataset, IterableDataset):
        raise InvalidData("the training data is an IterableDataset, but DP-SGD draws each batch by sampling indices; "
                          "return a map-style Dataset or an (x, y) pair")
    samples = len(dataset)
    if samples == 0:
        raise InvalidData("the training data holds no samples")
    if isinstance(dataset, PairDataset):  # the whole pair on the device once, batches as index slices
        x, y = dataset.x.to(device), dataset.y.to(device)

        def batch(index: torch.Tensor) -> tuple[Any, Any]:
            index = index.to(device)
            return x[index], y[index]
    else:
        def batch(index: torch.Tensor) -> tuple[Any, Any]:
            items = default_collate([dataset[i] for i in index.tolist()])
            inputs, targets = _pair(items, what="the training data")
            return _to(inputs, device), _to(targets, device)

    dp_sgd(model, samples=samples, batch=batch, loss=loss or F.cross_entropy, dp=DpSettings(**dp),
           lr=float(settings["lr"]), seed=None, device=device, progress=False)
    return samples
