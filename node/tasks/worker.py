"""The task process: ``python -m node.tasks.worker REQUEST_DIR`` runs one operation of a user's task.

It is started by :class:`node.tasks.runner.TaskRunner` with the task's folder as its working folder
and first on ``PYTHONPATH``, in an environment without keys or passwords. It reads the request and
the input weights from ``REQUEST_DIR``, imports the task's module, calls its hooks, and answers with
files (:mod:`node.tasks.protocol`). Everything it answers is checked again by the node: this process
runs a stranger's code and is trusted with nothing.

Operations:
- ``genesis``: ``torch.manual_seed(seed)``, ``model()``; every tensor of its state, and the names of
  those that train (all but parameters with ``requires_grad=False``).
- ``train``: ``model()``, load the frozen and base tensors (together exactly the model's), evaluate
  the base model on the validation split (metrics ``base_*`` and ``val_samples``), train (the task's
  ``train`` or :func:`node.tasks.loop.train`), answer the trainable tensors and the metrics. In a
  private round (the request's ``dp``) it trains with DP-SGD (:func:`node.tasks.loop.train_private`),
  refuses a task with its own ``train`` and a model Opacus rejects before reading any data, and
  measures nothing on the party's data (no metrics: they would not be covered by ε).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from ledger.weights import from_safetensors, to_safetensors
from node.tasks import loop
from node.tasks.protocol import (
    BASE,
    ERROR,
    FROZEN,
    HOOK,
    INVALID,
    OUTPUT,
    RAISED,
    REQUEST,
    RESPONSE,
    metrics_problem,
    samples_problem,
)
from node.training import pick_device

_MESSAGE_LIMIT = 2000


class HookFailure(Exception):
    """A hook raised (``kind`` RAISED) or gave something unusable (``kind`` INVALID)."""

    def __init__(self, hook: str, kind: str, type_name: str, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.hook, self.kind, self.type_name, self.message, self.trace = hook, kind, type_name, message, trace


class Worker:
    """One request: the folder it lives in, its arguments, and the task's module once imported."""

    def __init__(self, request_dir: Path) -> None:
        self.dir = request_dir
        self.request: dict[str, Any] = json.loads((request_dir / REQUEST).read_text(encoding="utf-8"))
        self.module: ModuleType | None = None

    # -- calling the task's code ---------------------------------------------------------------
    def enter(self, hook: str) -> None:
        """Note where this process is, for a node that has to stop it."""
        (self.dir / HOOK).write_text(hook, encoding="utf-8")

    def call(self, hook: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``function(*args, **kwargs)`` as hook ``hook``: any exception becomes a RAISED failure."""
        self.enter(hook)
        try:
            return function(*args, **kwargs)
        except loop.InvalidData as error:
            raise HookFailure(hook, INVALID, "InvalidData", f"{hook}: {error}; fix the data the task gives") from error
        except (Exception, SystemExit) as error:  # a task's sys.exit() is a failure like any other
            raise HookFailure(hook, RAISED, type(error).__name__, str(error), traceback.format_exc()) from error

    def hook(self, name: str, *, required: bool) -> Callable[..., Any] | None:
        """The task module's function ``name`` (None when optional and absent)."""
        if self.module is None:
            module_name = self.request["module"]
            self.module = self.call("import", importlib.import_module, module_name)
        function = getattr(self.module, name, None)
        if function is None and required:
            raise HookFailure(name, INVALID, "MissingHook",
                              f"its module {self.request['module']!r} defines no {name}(); define it (see 'fedledger task new')")
        if function is not None and not callable(function):
            raise HookFailure(name, INVALID, "NotCallable",
                              f"{name} in module {self.request['module']!r} is a {type(function).__name__}, not a function; make it one")
        return function

    def build_model(self) -> nn.Module:
        model = self.call("model", self.hook("model", required=True))
        if not isinstance(model, nn.Module):
            raise HookFailure("model", INVALID, "NotAModule",
                              f"model() returned a {type(model).__name__}, not a torch.nn.Module; return the model")
        return model

    # -- operations ----------------------------------------------------------------------------
    def genesis(self) -> dict[str, Any]:
        torch.manual_seed(int(self.request["seed"]))
        model = self.build_model()
        self.enter("model")
        arrays = state_arrays(model)
        if not arrays:
            raise HookFailure("model", INVALID, "EmptyModel", "model() returned a module without any tensor; give it parameters")
        frozen = frozen_names(model)
        trainable = [name for name in arrays if name not in frozen]
        if not trainable:
            raise HookFailure("model", INVALID, "NothingTrains",
                              "every parameter of model() has requires_grad=False, so nothing would train; unfreeze some")
        (self.dir / OUTPUT).write_bytes(to_safetensors(arrays))
        return {"trainable": trainable}

    def train(self) -> dict[str, Any]:
        request = self.request
        seed = int(request["seed"])
        base, _ = from_safetensors((self.dir / BASE).read_bytes(), source="the base model")
        frozen, _ = from_safetensors((self.dir / FROZEN).read_bytes(), source="the frozen tensors")
        torch.manual_seed(seed)
        model = self.build_model()
        self.enter("model")
        load_into(model, base, frozen)
        dp = request.get("dp")
        own = self.hook("train", required=False)
        if dp is not None:
            self.check_private(model, own_train=own is not None)
        load_data = self.hook("load_data", required=True)
        data = self.call("load_data", load_data, request["data_path"], partition=request["partition"],
                         partitions=request["partitions"], seed=int(request["data_seed"]))
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise HookFailure("load_data", INVALID, "NotAPair",
                              f"load_data returned a {type(data).__name__}, not (train, validation); return a pair of "
                              "Datasets or (x, y) pairs")
        train_data, validation = data
        device = pick_device(request.get("device"))  # the node's choice, else CUDA, then MPS, then the CPU
        loss = self.hook("loss", required=False)
        metrics: dict[str, float] = {}
        workers = int(request.get("workers") or 0)
        if validation is not None and dp is None:  # a private round reports nothing measured on private data
            evaluate = self.hook("evaluate", required=False)
            if evaluate is not None:
                scores = self.call("evaluate", evaluate, model, validation, device=device)
            else:
                scores = self.call("evaluate", loop.evaluate, model, validation, device=device, loss=loss, workers=workers)
            scores = checked_metrics("evaluate", scores)
            metrics.update({f"base_{name}": value for name, value in scores.items()})
            size = loop.size_of(validation)
            if size is not None:
                metrics["val_samples"] = float(size)
        settings = dict(request["settings"])
        torch.manual_seed(seed)
        if dp is not None:
            samples = self.call("train", loop.train_private, model, train_data, dp=dp, settings=settings, device=device,
                                loss=loss)
            trained = {}
        elif own is not None:
            result = self.call("train", own, model, train_data, settings=settings, device=device)
            if not isinstance(result, (tuple, list)) or len(result) != 2:
                raise HookFailure("train", INVALID, "NotAPair",
                                  f"train returned a {type(result).__name__}, not (samples, metrics); return both")
            samples, trained = result
        else:
            samples, trained = self.call("train", loop.train, model, train_data, settings=settings, device=device,
                                         seed=seed, loss=loss, workers=workers,
                                         compile_model=bool(request.get("compile")))
        samples = int(samples) if isinstance(samples, (np.integer,)) else samples
        problem = samples_problem(samples)
        if problem:
            raise HookFailure("train", INVALID, "BadSamples", f"train reported {problem}; return how many samples it trained on")
        trained = checked_metrics("train", trained)
        self.enter("train")
        model.to("cpu")
        state = state_arrays(model)
        (self.dir / OUTPUT).write_bytes(to_safetensors({name: value for name, value in state.items() if name not in frozen}))
        return {"samples": samples, "metrics": {**trained, **metrics}}

    def check_private(self, model: nn.Module, *, own_train: bool) -> None:
        """Refuse, before any data is read, a private round that fedledger's DP-SGD cannot run: a task with its
        own ``train`` (nothing shows that it clips and adds the noise the accountant counts), or a model that
        Opacus' validator rejects (its own words are given)."""
        if own_train:
            raise HookFailure(
                "train", INVALID, "PrivateOwnTrain",
                "the round is private (DP-SGD), but the task defines its own train(), and only fedledger's loop is "
                "known to clip and add the noise that the declared epsilon counts; a private round needs a task "
                "without train(), or open the round without DP",
            )
        self.enter("model")
        from opacus.validators import ModuleValidator

        problems = ModuleValidator.validate(model, strict=False)
        if problems:
            said = "; ".join(str(problem) for problem in problems)
            raise HookFailure(
                "model", INVALID, "NotPrivate",
                f"Opacus cannot train model() with DP-SGD: {said}; change the model (e.g. GroupNorm for BatchNorm) "
                "or open the round without DP",
            )

    def run(self) -> None:
        operation = self.request["operation"]
        if operation == "genesis":
            answer = self.genesis()
        elif operation == "train":
            answer = self.train()
        else:
            raise HookFailure("import", INVALID, "UnknownOperation", f"the node asked for {operation!r}, which this worker does not know")
        write_json(self.dir / RESPONSE, answer)


# -- tensors -------------------------------------------------------------------------------------------
def to_array(name: str, value: Any) -> np.ndarray:
    """A state tensor as a numpy array a safetensors file can carry; bfloat16 becomes float32 (numpy has none)."""
    if not isinstance(value, torch.Tensor):
        raise HookFailure("model", INVALID, "NotATensor",
                          f"the model's state entry {name!r} is a {type(value).__name__}, not a tensor; keep extra state out of state_dict()")
    tensor = value.detach().to("cpu")
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.to(torch.float32)
    try:
        return tensor.contiguous().numpy().copy()
    except TypeError as error:
        raise HookFailure("model", INVALID, "UnsupportedDtype",
                          f"tensor {name!r} has dtype {tensor.dtype}, which fedledger cannot carry; use float32, float16 or bfloat16") from error


def state_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Every tensor of the model's state (parameters and buffers) as numpy arrays."""
    return {name: to_array(name, value) for name, value in model.state_dict().items()}


def frozen_names(model: nn.Module) -> set[str]:
    """Names (every alias of a shared one) of the parameters with ``requires_grad=False``."""
    return {name for name, parameter in model.named_parameters(remove_duplicate=False) if not parameter.requires_grad}


def load_into(model: nn.Module, base: Mapping[str, np.ndarray], frozen: Mapping[str, np.ndarray]) -> None:
    """Load ``frozen`` and ``base`` into ``model``: together they must hold each of its tensors exactly once."""
    expected = model.state_dict()

    def refuse(why: str) -> HookFailure:
        return HookFailure("model", INVALID, "LayoutMismatch", f"{why}; the base model must come from this task's genesis model")

    both = sorted(set(base) & set(frozen))
    if both:
        raise refuse(f"tensor {both[0]!r} is given both as trainable and as frozen")
    given = {**frozen, **base}
    missing = sorted(set(expected) - set(given))
    if missing:
        raise refuse(f"model() has tensor {missing[0]!r}, which neither the base model nor the frozen tensors hold")
    extra = sorted(set(given) - set(expected))
    if extra:
        raise refuse(f"the base model holds tensor {extra[0]!r}, which model() does not have")
    tensors = {}
    for name, target in expected.items():
        value = np.asarray(given[name])
        if tuple(value.shape) != tuple(target.shape):
            raise refuse(f"tensor {name!r} has shape {tuple(value.shape)} in the base model but {tuple(target.shape)} in model()")
        tensors[name] = torch.from_numpy(np.array(value))
    model.load_state_dict(tensors, strict=True)


def checked_metrics(hook: str, metrics: Any) -> dict[str, float]:
    """``metrics`` as plain floats (numpy and 0-d torch numbers accepted), or an INVALID failure."""
    if isinstance(metrics, Mapping):
        plain: dict[Any, Any] = {}
        for name, value in metrics.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                value = value.item()
            elif isinstance(value, np.generic):
                value = value.item()
            plain[name] = value
        metrics = plain
    problem = metrics_problem(metrics)
    if problem:
        raise HookFailure(hook, INVALID, "BadMetrics", f"{hook} returned {problem}; return a dict of names to numbers")
    return {str(name): float(value) for name, value in metrics.items()}


# -- files ---------------------------------------------------------------------------------------------
def write_json(path: Path, document: Any) -> None:
    """Write ``document`` whole, then rename: the node never reads half a file."""
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(document, sort_keys=True), encoding="utf-8")
    os.replace(partial, path)


def write_error(request_dir: Path, failure: HookFailure) -> None:
    write_json(request_dir / ERROR, {
        "hook": failure.hook,
        "kind": failure.kind,
        "type": failure.type_name,
        "message": failure.message[:_MESSAGE_LIMIT],
        "traceback": failure.trace,
    })


def main(argv: list[str] | None = None) -> int:
    """Run the request in ``argv[0]``; exit 0 with response.json, 1 with error.json."""
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m node.tasks.worker REQUEST_DIR", file=sys.stderr)
        return 2
    request_dir = Path(arguments[0])
    try:
        Worker(request_dir).run()
    except HookFailure as failure:
        write_error(request_dir, failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
