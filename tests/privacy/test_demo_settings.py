"""`fedledger demo --private` settings: all the demo's rounds fit the budget, with the least noise that does."""

from __future__ import annotations

from node.privacy import demo_settings
from node.privacy.accountant import cumulative_epsilon
from node.privacy.demo_settings import private_demo_settings
from node.round_config import DpSettings, RoundConfig


def test_the_demo_rounds_spend_at_most_the_budget() -> None:
    dp, training = private_demo_settings(5)
    assert (dp.noise_multiplier, dp.sample_rate, dp.steps, dp.max_grad_norm, training.lr) == (1.536, 0.2, 20, 1.0, 0.2)
    spent = cumulative_epsilon([dp] * 5, demo_settings.DELTA)
    assert 7.9 < spent <= demo_settings.EPSILON_BUDGET
    more_rounds, _ = private_demo_settings(10)
    assert more_rounds.noise_multiplier > dp.noise_multiplier
    assert cumulative_epsilon([more_rounds] * 10, demo_settings.DELTA) <= demo_settings.EPSILON_BUDGET
    config = RoundConfig(model="mlp", strategy={"name": "fedavg"}, training=training, dp=dp)
    assert RoundConfig.from_bytes(config.to_bytes()).dp == dp


def test_a_tighter_budget_needs_more_noise() -> None:
    tight, _ = private_demo_settings(5, epsilon_budget=2.0)
    assert isinstance(tight, DpSettings) and tight.noise_multiplier > 2.0
    assert cumulative_epsilon([tight] * 5, demo_settings.DELTA) <= 2.0
