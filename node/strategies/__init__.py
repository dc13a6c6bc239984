"""Aggregation strategies (one per file) and the registry that builds them by name."""

from node.strategies.base import AggregateResult, Arrays, Strategy, Update
from node.strategies.clipping import NormClipping
from node.strategies.fedavg import FedAvg
from node.strategies.krum import Krum
from node.strategies.median import Median
from node.strategies.registry import STRATEGY_NAMES, make_strategy, strategy_from_params
from node.strategies.trimmed_mean import TrimmedMean

__all__ = [
    "STRATEGY_NAMES",
    "AggregateResult",
    "Arrays",
    "FedAvg",
    "Krum",
    "Median",
    "NormClipping",
    "Strategy",
    "TrimmedMean",
    "Update",
    "make_strategy",
    "strategy_from_params",
]
