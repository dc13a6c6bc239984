"""DP-SGD local training: per-sample clipping and noise of the stated size, repeatable only with a given seed,
learns the digits, and leaves the model as a plain module."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ledger.errors import InvalidInputError
from node.data import Dataset, load_digits_split
from node.models import build_model, state_arrays
from node.privacy.dp_training import train_private
from node.round_config import DpSettings
from node.training import evaluate, train

MODERATE = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.05, steps=150)


@pytest.fixture(scope="module")
def split() -> tuple[list[Dataset], Dataset]:
    return load_digits_split(parties=1, seed=0)


def trained(name: str, data: Dataset, dp: DpSettings, *, seed: int | None, lr: float = 0.2) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = build_model(name)
    result = train_private(model, data, dp=dp, lr=lr, seed=seed, device="cpu", progress=False)
    assert result.samples == len(data) and result.metrics == {}  # nothing measured on the private data leaves
    return state_arrays(model)


def moved(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> np.ndarray:
    return np.concatenate([(after[k] - before[k]).ravel() for k in sorted(before)]).astype(np.float64)


def initial(name: str) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    return state_arrays(build_model(name))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_a_given_seed_repeats_and_no_seed_draws_a_fresh_one(split, name: str) -> None:
    shard = split[0][0]
    dp = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.05, steps=5)
    first, again, other = (trained(name, shard, dp, seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not any(np.array_equal(first[k], other[k]) for k in first)
    secret_a, secret_b = trained(name, shard, dp, seed=None), trained(name, shard, dp, seed=None)
    assert not any(np.array_equal(secret_a[k], secret_b[k]) for k in secret_a)


def test_dp_sgd_learns_the_digits(split) -> None:
    shards, test = split
    torch.manual_seed(0)
    model = build_model("mlp")
    train_private(model, shards[0], dp=MODERATE, lr=0.2, seed=1, device="cpu", progress=False)
    accuracy = evaluate(model, test, device="cpu")["accuracy"]
    print(f"mlp, DP-SGD sigma=1.0 C=1.0 q=0.05 150 steps: test accuracy {accuracy:.3f}")
    assert accuracy > 0.8


def test_each_sample_gradient_is_clipped(split) -> None:
    """One full-batch step with negligible noise: the mean of gradients clipped to C moves the weights by <= lr * C."""
    shard, lr, clip = split[0][0], 0.5, 0.01
    full_batch = DpSettings(noise_multiplier=1e-6, max_grad_norm=clip, sample_rate=1.0, steps=1)
    private = np.linalg.norm(moved(initial("mlp"), trained("mlp", shard, full_batch, seed=0, lr=lr)))
    torch.manual_seed(0)
    model = build_model("mlp")
    train(model, shard, epochs=1, batch_size=len(shard), lr=lr, seed=0, device="cpu", progress=False)
    plain = np.linalg.norm(moved(initial("mlp"), state_arrays(model)))
    assert 0 < private <= lr * clip * 1.0001 and plain > 20 * private


def test_noise_has_the_stated_size(split) -> None:
    """With the signal clipped to nothing, a step moves each weight by lr * N(0, (sigma * C / expected batch)^2)."""
    shard, lr, sigma, clip = split[0][0], 1.0, 50.0, 1e-4
    dp = DpSettings(noise_multiplier=sigma, max_grad_norm=clip, sample_rate=1.0, steps=1)
    step = moved(initial("mlp"), trained("mlp", shard, dp, seed=3, lr=lr))
    expected = lr * sigma * clip / len(shard)
    assert step.std() == pytest.approx(expected, rel=0.05) and abs(step.mean()) < 0.1 * expected


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_empty_poisson_batches_still_take_a_noise_step(split, name: str) -> None:
    few = Dataset(x=split[0][0].x[:5], y=split[0][0].y[:5])
    dp = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=1e-9, steps=3)  # every batch is empty
    step = moved(initial(name), trained(name, few, dp, seed=0))
    assert np.all(np.isfinite(step)) and np.count_nonzero(step) == step.size


def test_the_model_is_a_plain_module_afterwards(split) -> None:
    shard = split[0][0]
    torch.manual_seed(0)
    model = build_model("cnn")
    keys = list(model.state_dict())
    train_private(model, shard, dp=DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.05, steps=3),
                  lr=0.1, seed=0, device="cpu", progress=False)
    assert list(model.state_dict()) == keys and model.training
    for module in model.modules():
        assert not module._forward_hooks and not module._backward_hooks and not module._forward_pre_hooks
    for parameter in model.parameters():
        assert parameter.grad is None and not hasattr(parameter, "grad_sample")
    # and it trains without DP exactly as a copy of it does
    copy = build_model("cnn")
    copy.load_state_dict(model.state_dict())
    for m in (model, copy):
        train(m, shard, epochs=1, batch_size=64, lr=0.05, seed=0, device="cpu", progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), copy.state_dict().values(), strict=True))


def test_a_model_dp_sgd_cannot_train_is_refused(split) -> None:
    model = nn.Sequential(nn.Linear(64, 10), nn.BatchNorm1d(10))
    with pytest.raises(InvalidInputError, match="cannot be trained with DP-SGD .* use a model without batch norm"):
        train_private(model, split[0][0], dp=MODERATE, lr=0.1, seed=0, progress=False)
    assert not any(module._forward_hooks or module._backward_hooks for module in model.modules())


def test_bad_settings_and_empty_data_are_refused(split) -> None:
    with pytest.raises(InvalidInputError, match="training needs lr > 0"):
        train_private(build_model("mlp"), split[0][0], dp=MODERATE, lr=0.0, seed=0, progress=False)
    empty = Dataset(x=np.zeros((0, 64), np.float32), y=np.zeros(0, np.int64))
    with pytest.raises(InvalidInputError, match="local data set is empty"):
        train_private(build_model("mlp"), empty, dp=MODERATE, lr=0.1, seed=0, progress=False)


def test_progress_goes_to_stderr_only_when_asked(split, capsys) -> None:
    dp = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.05, steps=4)
    train_private(build_model("mlp"), split[0][0], dp=dp, lr=0.1, seed=0, device="cpu", progress=True)
    shown = capsys.readouterr()
    assert "4/4" in shown.err and "DP-SGD" in shown.err and shown.out == ""
    train_private(build_model("mlp"), split[0][0], dp=dp, lr=0.1, seed=0, device="cpu", progress=False)
    assert capsys.readouterr().err == ""
