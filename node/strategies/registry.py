"""Strategies by name, and back from the parameters recorded in a round config or receipt."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ledger.errors import InvalidInputError
from node.strategies.base import Strategy
from node.strategies.clipping import NormClipping
from node.strategies.fedavg import FedAvg
from node.strategies.krum import Krum
from node.strategies.median import Median
from node.strategies.trimmed_mean import TrimmedMean

_FACTORIES: dict[str, Callable[..., Strategy]] = {
    FedAvg.name: FedAvg,
    Median.name: Median,
    TrimmedMean.name: TrimmedMean,
    Krum.name: Krum,
}
_PARAMETERS: dict[str, tuple[str, ...]] = {"fedavg": (), "median": (), "trimmed-mean": ("beta",), "krum": ("f", "m")}
STRATEGY_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def make_strategy(name: str, *, clip_norm: float | None = None, **params: Any) -> Strategy:
    """The strategy ``name`` with ``params``; ``clip_norm`` wraps it in NormClipping."""
    if name not in _FACTORIES:
        raise InvalidInputError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}.")
    unknown = sorted(set(params) - set(_PARAMETERS[name]))
    if unknown:
        accepted = ", ".join((*_PARAMETERS[name], "clip_norm"))
        raise InvalidInputError(f"strategy {name!r} takes no parameter {', '.join(unknown)}; it accepts {accepted}.")
    strategy = _FACTORIES[name](**params)
    return strategy if clip_norm is None else NormClipping(strategy, max_norm=clip_norm)


def strategy_from_params(params: Mapping[str, Any]) -> Strategy:
    """Rebuild the strategy whose ``params()`` gave ``params`` (as recorded in a round config or receipt)."""
    if not isinstance(params, Mapping) or not isinstance(params.get("name"), str):
        raise InvalidInputError(f"strategy parameters {params!r} name no strategy; they need a 'name' key.")
    rest = {key: value for key, value in params.items() if key != "name"}
    return make_strategy(params["name"], **rest)
