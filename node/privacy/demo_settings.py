"""The DP settings of ``fedledger demo --private``: chosen so the digits demo stays useful.

Each round a party takes 20 DP-SGD steps at sample rate 0.2 (about 72 of its ~360 images a step,
4 epochs' worth a round), clips each gradient to 1.0, and learns at 0.2. The noise is the least
that keeps all of the demo's rounds within a budget of ε = 8 at δ = 1e-5 (σ = 1.536 for 5 rounds).
Among the settings tried (BENCHMARKS.md, "Differential privacy"), these gave the best accuracy at
ε = 8 and stayed near the best at ε = 2; benchmarks/dp_accuracy.py measures them.
"""

from __future__ import annotations

from node.privacy.accountant import noise_multiplier_for
from node.round_config import DpSettings, TrainingSettings

EPSILON_BUDGET = 8.0
DELTA = 1e-5
SAMPLE_RATE = 0.2
STEPS = 20
MAX_GRAD_NORM = 1.0
LR = 0.2


def private_demo_settings(rounds: int, *, epsilon_budget: float = EPSILON_BUDGET, delta: float = DELTA) -> tuple[DpSettings, TrainingSettings]:
    """The dp section and training settings whose ``rounds`` rounds spend at most ``epsilon_budget``."""
    sigma = noise_multiplier_for(epsilon_budget, sample_rate=SAMPLE_RATE, steps=STEPS, rounds=rounds, delta=delta)
    dp = DpSettings(noise_multiplier=sigma, max_grad_norm=MAX_GRAD_NORM, sample_rate=SAMPLE_RATE, steps=STEPS)
    return dp, TrainingSettings(lr=LR)
