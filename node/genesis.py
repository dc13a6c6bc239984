"""The genesis model: seeded initial weights that the first round starts from."""

from __future__ import annotations

import torch

from ledger.weights import to_safetensors
from node.models import build_model, state_arrays


def genesis_model_bytes(model: str, *, seed: int) -> bytes:
    """The safetensors bytes of ``model`` freshly initialised under ``seed`` (same seed, same CID)."""
    torch.manual_seed(seed)
    return to_safetensors(state_arrays(build_model(model)), metadata={"model": model, "round": 0, "base_cid": ""})
