"""Run a user's task in a separate process that holds no key, and check everything it hands back.

The node signs and submits; the task process (``python -m node.tasks.worker``) only builds the model,
reads the party's data and trains. It starts from a fresh interpreter (nothing of the node's memory),
with no inherited file descriptors, in an environment cleaned of every ``FEDLEDGER_*`` variable and of
anything named like a secret (KEY, PASSWORD, SECRET, TOKEN, MNEMONIC, PRIVATE), with the task's folder
as its working folder and first on ``PYTHONPATH``. Weights cross as safetensors files and everything
else as JSON in a private temporary folder: no pickle, in either direction.

What this isolation does not give: the task runs as the same user, so it can read whatever that user
can (the workspace's encrypted key files included, though not the password that unlocks them, which
only the node holds). A separate user or a container around the worker is where a stronger sandbox fits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ledger.errors import WeightsError
from ledger.weights import from_safetensors, layout_of, to_safetensors
from node.tasks.errors import TaskError
from node.tasks.manifest import TaskManifest
from node.tasks.protocol import (
    BASE,
    ERROR,
    FROZEN,
    HOOK,
    HOOKS,
    INVALID,
    OUTPUT,
    RAISED,
    REQUEST,
    RESPONSE,
    STDERR,
    STDOUT,
    metrics_problem,
    samples_problem,
)
from node.tasks.spec import effective_settings
from node.training import pick_device

DEFAULT_TIMEOUT_S = 3600.0
SECRET_WORDS = ("KEY", "PASSWORD", "SECRET", "TOKEN", "MNEMONIC", "PRIVATE")
_SHADOWING = ("node", "ledger", "deploy")  # fedledger's own packages: a task folder must not hide them
_LINE_LIMIT = 500


@dataclass(frozen=True)
class GenesisResult:
    """A task's freshly initialised model: every tensor of its state, and the names of those that train."""

    arrays: dict[str, np.ndarray]
    trainable: tuple[str, ...]

    def trainable_arrays(self) -> dict[str, np.ndarray]:
        """The tensors that travel each round (parameters that train, and buffers)."""
        return {name: self.arrays[name] for name in self.trainable}

    def frozen_arrays(self) -> dict[str, np.ndarray]:
        """The parameters with ``requires_grad=False``: they come from the genesis model and never travel."""
        trainable = set(self.trainable)
        return {name: value for name, value in self.arrays.items() if name not in trainable}


@dataclass(frozen=True)
class TrainOutcome:
    """A party's trained tensors (the trainable ones only), its sample count and its metrics."""

    arrays: dict[str, np.ndarray]
    samples: int
    metrics: dict[str, float]


def is_secret_name(name: str) -> bool:
    """Whether an environment variable of this name must not reach a task process."""
    upper = name.upper()
    return upper.startswith("FEDLEDGER_") or any(word in upper for word in SECRET_WORDS)


def task_environment(folder: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a task process gets: ``environ`` (default: this process's) without secrets,
    the task folder first on ``PYTHONPATH``, no bytecode written into the (cached) task folder."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not is_secret_name(name)}
    package_root = str(Path(__file__).resolve().parents[2])  # where node/ lives, for a run from a source tree
    paths = [str(folder), *(env["PYTHONPATH"].split(os.pathsep) if env.get("PYTHONPATH") else []), package_root]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"  # the last line of stderr is there even if the process is killed
    env["PYTHONHASHSEED"] = "0"
    return env


class TaskRunner:
    """Runs the hooks of the task unpacked in ``folder`` (described by ``manifest``), one process per call.

    ``timeout_s`` bounds each call; ``verbose`` appends the task's own traceback and output to its
    errors; ``device`` ("cpu", "cuda", …) overrides the automatic choice (CUDA, then MPS, then CPU);
    ``compile_model`` has fedledger's loop train through ``torch.compile``; ``workers`` is the number of
    DataLoader processes reading a map-style Dataset (0: read in the task process).
    """

    def __init__(
        self,
        folder: Path | str,
        manifest: TaskManifest,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        verbose: bool = False,
        device: str | None = None,
        compile_model: bool = False,
        workers: int = 0,
    ) -> None:
        if workers < 0:
            raise TaskError(f"workers must be 0 or more (got {workers}); give the number of DataLoader processes.")
        self.folder = Path(folder).resolve()
        self.compile_model, self.workers = compile_model, workers
        self.manifest = manifest
        self.timeout_s = float(timeout_s)
        self.verbose = verbose
        self.device = None if device is None else str(pick_device(device))  # refused here if it is not usable
        self.name = manifest.name
        if not self.folder.is_dir():
            raise TaskError(f"task {self.name!r}: {self.folder} is not a folder; unpack the task's bundle first.")
        for package in _SHADOWING:
            if (self.folder / package).exists() or (self.folder / f"{package}.py").exists():
                raise TaskError(
                    f"task {self.name!r} holds {package}, which would hide fedledger's own package of that name "
                    "from the task process; rename it."
                )

    # -- operations ------------------------------------------------------------------------------
    def genesis(self, seed: int) -> GenesisResult:
        """The task's model as ``model()`` builds it after ``torch.manual_seed(seed)``."""
        response, output = self._run({"operation": "genesis", "seed": int(seed)}, {})
        arrays = self._arrays(output, "model")
        trainable = response.get("trainable")
        if (
            not isinstance(trainable, list)
            or not all(isinstance(name, str) and name in arrays for name in trainable)
            or len(set(trainable)) != len(trainable)
            or not trainable
        ):
            raise TaskError(f"task {self.name!r}: the task process named trainable tensors that its model does not hold; "
                            "run the task again, and report it if it persists.")
        return GenesisResult(arrays=arrays, trainable=tuple(trainable))

    def train(
        self,
        base: Mapping[str, np.ndarray],
        frozen: Mapping[str, np.ndarray],
        *,
        data_path: str | Path | None,
        partition: int | None,
        partitions: int | None,
        seed: int,
        settings: Mapping[str, Any] | None = None,
        data_seed: int | None = None,
        dp: Mapping[str, Any] | None = None,
    ) -> TrainOutcome:
        """Evaluate ``base`` on the party's validation split, train it on its training split; the trainable
        tensors (same layout as ``base``), the sample count, and ``base_*``, ``val_samples`` and training metrics.

        ``seed`` seeds model building and training; ``load_data`` gets ``data_seed`` (default ``seed``):
        a split that every party must draw alike needs a seed they share, training one of its own.
        ``settings`` override the task's declared settings, which override fedledger's defaults. ``dp`` (a
        round's dp section as a dict) trains with DP-SGD in fedledger's loop and measures nothing.
        """
        overlap = sorted(set(base) & set(frozen))
        if overlap:
            raise TaskError(f"task {self.name!r}: tensor {overlap[0]!r} is given both as trainable and as frozen; "
                            "pass each tensor of the genesis model once.")
        if not base:
            raise TaskError(f"task {self.name!r}: the base model holds no tensor; train from the task's genesis model.")
        request = {
            "operation": "train",
            "seed": int(seed),
            "data_seed": int(seed if data_seed is None else data_seed),
            "data_path": _data_path(data_path),
            "partition": partition,
            "partitions": partitions,
            "settings": effective_settings(self.manifest.settings, settings, task=self.name),
            "dp": None if dp is None else dict(dp),
            "compile": self.compile_model,
            "workers": self.workers,
        }
        inputs = {BASE: to_safetensors(dict(base)), FROZEN: to_safetensors(dict(frozen))}
        response, output = self._run(request, inputs)
        arrays = self._arrays(output, "train")
        self._check_layout(arrays, base)
        samples, metrics = response.get("samples"), response.get("metrics")
        problem = samples_problem(samples) or metrics_problem(metrics)
        if problem:
            raise TaskError(f"task {self.name!r}: train answered {problem}; return (samples, metrics) from the task's train.")
        return TrainOutcome(arrays=arrays, samples=int(samples), metrics={k: float(v) for k, v in sorted(metrics.items())})

    # -- the process -----------------------------------------------------------------------------
    def _run(self, request: dict[str, Any], inputs: Mapping[str, bytes]) -> tuple[dict[str, Any], bytes]:
        """Start the worker on ``request``, wait for it (killing its process group past the limit), and
        return its response and output weights; TaskError for every way it can fail."""
        request = {**request, "module": self.manifest.module, "task": self.name, "device": self.device}
        with tempfile.TemporaryDirectory(prefix="fedledger-task-") as scratch:
            exchange = Path(scratch)
            for name, data in inputs.items():
                (exchange / name).write_bytes(data)
            (exchange / REQUEST).write_text(json.dumps(request, sort_keys=True), encoding="utf-8")
            with open(exchange / STDOUT, "wb") as out, open(exchange / STDERR, "wb") as err:
                process = subprocess.Popen(
                    [sys.executable, "-m", "node.tasks.worker", str(exchange)],
                    cwd=self.folder,
                    env=task_environment(self.folder),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    close_fds=True,
                    start_new_session=True,  # its own process group: a stop reaches every child it made
                )
                try:
                    finished = _wait_unreaped(process, self.timeout_s)
                finally:
                    # The worker is a zombie or still running, so its group id cannot have been reused:
                    # this stops it and anything it left behind (DataLoader workers, its own children).
                    code = _kill_group(process)
                if not finished:
                    raise self._timed_out(exchange)
            self._echo_output(exchange)
            if (exchange / ERROR).is_file():
                raise self._task_failed(exchange)
            if code != 0 or not (exchange / RESPONSE).is_file() or not (exchange / OUTPUT).is_file():
                raise self._died(exchange, code)
            try:
                response = json.loads((exchange / RESPONSE).read_text(encoding="utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                raise TaskError(f"task {self.name!r}: its process answered with a response that is not JSON ({error}); "
                                "run it again with --verbose.") from error
            if not isinstance(response, dict):
                raise TaskError(f"task {self.name!r}: its process answered with a response that is not a JSON object; "
                                "run it again with --verbose.")
            return response, (exchange / OUTPUT).read_bytes()

    def _hook_of(self, exchange: Path) -> str | None:
        try:
            hook = (exchange / HOOK).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        return hook if hook in HOOKS else None

    def _timed_out(self, exchange: Path) -> TaskError:
        hook = self._hook_of(exchange)
        where = f" in {_hook_words(hook)}" if hook else ""
        return TaskError(
            f"task {self.name!r} ran past its limit of {self.timeout_s:g} s{where} and was stopped; "
            "make it faster or raise the limit."
        )

    def _task_failed(self, exchange: Path) -> TaskError:
        try:
            error = json.loads((exchange / ERROR).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            error = None
        if not isinstance(error, dict):
            return TaskError(f"task {self.name!r}: its process reported an error it could not describe; run it again with --verbose.")
        hook = error.get("hook") if error.get("hook") in HOOKS else "an unknown hook"
        message = _one_line(error.get("message")).rstrip(".")
        kind = error.get("kind")
        if kind == INVALID:
            text = f"task {self.name!r}: {message}."
        else:
            type_name = _one_line(error.get("type")) or "an exception"
            detail = f"{type_name}: {message}" if message else type_name
            hint = "" if self.verbose else " (--verbose shows its traceback)"
            text = f"task {self.name!r}: {hook} raised {detail}; {_fix_for(hook)}{hint}."
        if self.verbose and kind == RAISED and isinstance(error.get("traceback"), str):
            text += "\n" + error["traceback"].rstrip()
        return TaskError(text)

    def _died(self, exchange: Path, code: int) -> TaskError:
        hook = self._hook_of(exchange)
        where = f" in {_hook_words(hook)}" if hook else ""
        last = _last_line(exchange / STDERR)
        how = f"was killed by signal {-code} ({_signal_name(-code)})" if code < 0 else f"exited with code {code}"
        said = f" (its last error line: {last})" if last else ""
        return TaskError(
            f"task {self.name!r}: its process {how}{where} without an answer{said}; "
            "run it again with --verbose to see its output."
        )

    def _echo_output(self, exchange: Path) -> None:
        """With ``verbose``, the task's own output, on this process's stderr (stdout stays for --json)."""
        if not self.verbose:
            return
        for name in (STDOUT, STDERR):
            text = (exchange / name).read_text(encoding="utf-8", errors="replace")
            if text:
                sys.stderr.write(text if text.endswith("\n") else text + "\n")

    # -- checking what came back -----------------------------------------------------------------
    def _arrays(self, output: bytes, hook: str) -> dict[str, np.ndarray]:
        try:
            arrays, _ = from_safetensors(output, source=f"the tensors task {self.name!r} returned from {hook}")
        except WeightsError as error:
            raise TaskError(f"task {self.name!r}: {error}") from error
        return arrays

    def _check_layout(self, arrays: Mapping[str, np.ndarray], base: Mapping[str, np.ndarray]) -> None:
        """Refuse trained tensors whose names, shapes or dtypes differ from the base model's."""
        got, expected = layout_of(arrays), layout_of(base)
        fix = "a task must keep its model's layout (tensor names, shapes, dtypes) from round to round"
        for name in sorted(expected):
            if name not in got:
                raise TaskError(f"task {self.name!r}: train returned no tensor {name!r}, which the base model has; {fix}.")
        for name in sorted(got):
            if name not in expected:
                raise TaskError(f"task {self.name!r}: train returned tensor {name!r}, which the base model does not have; {fix}.")
            if got[name][0] != expected[name][0]:
                raise TaskError(
                    f"task {self.name!r}: train returned tensor {name!r} of shape {got[name][0]} where the base model has "
                    f"{expected[name][0]}; {fix}."
                )
            if got[name][1] != expected[name][1]:
                raise TaskError(
                    f"task {self.name!r}: train returned tensor {name!r} as {got[name][1]} where the base model has "
                    f"{expected[name][1]}; {fix}."
                )


def _data_path(data_path: str | Path | None) -> str | None:
    """The party's ``--data`` as the task process sees it: relative paths that exist here made absolute
    (the task runs in its own folder); anything else passed as given (a task may read URLs or names)."""
    if data_path is None:
        return None
    path = Path(data_path)
    if not path.is_absolute() and path.exists():
        return str(path.resolve())
    return str(data_path)


def _wait_unreaped(process: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the worker to exit, without reaping it; whether it exited."""
    deadline = time.monotonic() + timeout_s
    pause = 0.005
    while True:
        if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)


def _kill_group(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL the process group the worker leads (it and every child it made), then reap the worker;
    its exit status (negative: the signal that ended it)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return process.wait()


def _fix_for(hook: str) -> str:
    """Who fixes a hook that raised: load_data fails as often on the party's data as on the task's code."""
    if hook == "load_data":
        return "check the data given to it (--data, --shard/--of) or fix the task's load_data"
    return f"fix the task's {_hook_words(hook, bare=True)}"


def _hook_words(hook: str, *, bare: bool = False) -> str:
    if hook == "import":
        return "its module's import" if not bare else "module"
    return hook if bare else f"{hook}()"


def _one_line(text: Any) -> str:
    if not isinstance(text, str):
        return ""
    flat = " ".join(text.split())
    return flat if len(flat) <= _LINE_LIMIT else flat[: _LINE_LIMIT - 1] + "…"


def _last_line(path: Path) -> str:
    try:
        lines = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return _one_line(lines[-1]) if lines else ""


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"
