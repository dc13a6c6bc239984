"""Local training: repeatable on the CPU, learns the digits, reports metrics, shows progress."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from ledger.errors import InvalidInputError
from node.data import load_digits_split
from node.models import build_model, state_arrays
from node.training import MOMENTUM, MomentumSGD, TrainResult, evaluate, pick_device, train


@pytest.fixture(scope="module")
def split():
    return load_digits_split(parties=5, seed=0)


def _trained(name: str, shard, *, seed: int, epochs: int = 2) -> tuple[torch.nn.Module, TrainResult]:
    torch.manual_seed(0)
    model = build_model(name)
    result = train(model, shard, epochs=epochs, batch_size=32, lr=0.05, seed=seed, device="cpu", progress=False)
    return model, result


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_same_seed_gives_identical_weights(split, name):
    shards, _ = split
    first = state_arrays(_trained(name, shards[0], seed=5)[0])
    again = state_arrays(_trained(name, shards[0], seed=5)[0])
    other = state_arrays(_trained(name, shards[0], seed=6)[0])
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not all(np.array_equal(first[k], other[k]) for k in first)


def test_training_learns_the_digits(split):
    shards, test = split
    model, result = _trained("mlp", shards[0], seed=1, epochs=8)
    scores = evaluate(model, test, device="cpu")
    print(f"mlp, 8 epochs on {result.samples} samples: test accuracy {scores['accuracy']:.3f}")
    assert scores["accuracy"] > 0.8
    assert result.samples == len(shards[0])
    assert set(result.metrics) == {"accuracy", "loss"}
    assert result.metrics["accuracy"] > 0.8 and all(np.isfinite(v) for v in result.metrics.values())


def test_model_stays_on_its_device_and_mode(split):
    shards, test = split
    model, _ = _trained("mlp", shards[1], seed=0, epochs=1)
    model.eval()
    evaluate(model, test)
    assert next(model.parameters()).device.type == "cpu" and not model.training


def test_progress_goes_to_stderr_only_when_asked(split, capsys):
    shards, _ = split
    train(build_model("mlp"), shards[0], epochs=2, batch_size=64, lr=0.05, seed=0, device="cpu", progress=True)
    shown = capsys.readouterr()
    assert "2/2" in shown.err and shown.out == ""
    train(build_model("mlp"), shards[0], epochs=2, batch_size=64, lr=0.05, seed=0, device="cpu", progress=False)
    assert capsys.readouterr().err == ""


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device().type == expected
    with pytest.raises(InvalidInputError, match="not a device name"):
        pick_device("gpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="no CUDA GPU"):
            pick_device("cuda")


def test_bad_training_settings_are_refused(split):
    shards, _ = split
    with pytest.raises(InvalidInputError, match="epochs >= 1"):
        train(build_model("mlp"), shards[0], epochs=0, batch_size=32, lr=0.1, seed=0, progress=False)


def test_momentum_sgd_steps_as_torchs_sgd_bit_for_bit_on_the_cpu() -> None:
    """node.training's optimizer on the CPU against torch.optim.SGD with the same momentum: the same weights after
    every step, a parameter left without a gradient for a step included (torch skips it and keeps its buffer)."""
    torch.manual_seed(0)
    ours, theirs = build_model("cnn"), build_model("cnn")
    theirs.load_state_dict(ours.state_dict())
    optimizers = [MomentumSGD(ours.parameters(), lr=0.07), torch.optim.SGD(theirs.parameters(), lr=0.07, momentum=MOMENTUM)]
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for step in range(6):
        for model, optimizer in zip((ours, theirs), optimizers, strict=True):
            optimizer.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x * (step + 1)), y).backward()
            if step == 3:
                next(model.parameters()).grad = None  # a frozen step for the first layer
            optimizer.step()
        mine, torchs = state_arrays(ours), state_arrays(theirs)
        assert all(np.array_equal(mine[k], torchs[k]) for k in mine), f"step {step}"
    assert not np.array_equal(state_arrays(build_model("cnn"))["conv1.weight"], mine["conv1.weight"])


def test_a_party_process_trains_on_the_digits_without_importing_sklearn_or_torch_dynamo() -> None:
    """Every party process loads the digits and trains: importing scikit-learn for the digits (with scipy.stats)
    cost about 2 s of CPU, and creating a torch optimizer imports torch._dynamo, about 1.2 s more."""
    check = (
        "import sys; from node.data import load_digits_split; from node.models import build_model; "
        "from node.training import train; shards, _ = load_digits_split(parties=4, seed=0); "
        "train(build_model('mlp'), shards[0], epochs=1, batch_size=32, lr=0.05, seed=0, device='cpu', progress=False); "
        "loaded = sorted(m for m in sys.modules if m.startswith(('sklearn', 'torch._dynamo'))); assert not loaded, loaded[:3]"
    )
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
