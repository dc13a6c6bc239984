"""ε from DP parameters: Opacus' RDP figures, exact composition, order-free, rounded up to the contract's millionths."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from ledger.contract_constants import DELTA_SCALE, EPSILON_SCALE
from ledger.errors import InvalidInputError
from ledger.fixed_point import delta_to_units, epsilon_to_micros as to_micros, units_to_delta
from node.privacy.accountant import (
    PrivacyBudgetExceededError,
    check_budget,
    cumulative_epsilon,
    noise_multiplier_for,
    round_epsilon,
)
from node.round_config import DpSettings

DELTA = 1e-5


def dp(sigma: float = 1.1, rate: float = 0.1, steps: int = 10) -> DpSettings:
    return DpSettings(noise_multiplier=sigma, max_grad_norm=1.0, sample_rate=rate, steps=steps)


def test_figures_agree_with_opacus_rdp_accountant() -> None:
    from opacus.accountants import RDPAccountant

    for sigma, rate, steps in [(1.1, 0.1, 100), (0.8, 0.05, 300), (3.0, 0.2, 40)]:
        reference = RDPAccountant()
        reference.history = [(sigma, rate, steps)]
        assert round_epsilon(dp(sigma, rate, steps), DELTA) == pytest.approx(reference.get_epsilon(DELTA), rel=1e-3)
    assert round_epsilon(dp(1.1, 0.1, 100), DELTA) == pytest.approx(6.6137, abs=1e-4)  # FACTS.md: Opacus RDP 6.614
    assert round_epsilon(dp(1.1, 0.1, 10), DELTA) == pytest.approx(2.8379, abs=1e-4)  # FACTS.md: rdp 2.84


def test_rounds_compose_exactly_and_in_any_order() -> None:
    assert cumulative_epsilon([dp(steps=10)] * 10, DELTA) == round_epsilon(dp(steps=100), DELTA)
    mixed = [dp(1.1, 0.1, 10), dp(2.0, 0.05, 30), dp(0.9, 0.2, 5), dp(1.1, 0.1, 7)]
    spent = cumulative_epsilon(mixed, DELTA)
    assert spent == cumulative_epsilon(list(reversed(mixed)), DELTA)
    assert spent == cumulative_epsilon([mixed[2], mixed[0], mixed[3], mixed[1]], DELTA)
    # Tighter than adding the rounds' ε, never below the largest one.
    singles = [round_epsilon(r, DELTA) for r in mixed]
    assert max(singles) < spent < sum(singles)


def test_cumulative_epsilon_never_goes_down() -> None:
    rounds = [dp(1.1, 0.1, 10), dp(5.0, 0.01, 1), dp(0.9, 0.2, 5), dp(50.0, 0.001, 1)]
    spent = [cumulative_epsilon(rounds[:k], DELTA) for k in range(len(rounds) + 1)]
    assert spent[0] == 0.0 and spent == sorted(spent) and len(set(spent)) == len(spent)


def test_delta_moves_epsilon_the_right_way() -> None:
    assert round_epsilon(dp(), 1e-3) < round_epsilon(dp(), 1e-5) < round_epsilon(dp(), 1e-9)


@pytest.mark.parametrize("delta", [0, 1, 1.5, -1e-5, float("nan"), True])
def test_bad_delta_is_refused(delta: float) -> None:
    with pytest.raises(InvalidInputError, match="δ must be a number strictly between 0 and 1"):
        round_epsilon(dp(), delta)


def test_to_micros_rounds_the_exact_value_up() -> None:
    assert to_micros(0.0) == 0 and to_micros(2.5) == 2_500_000 and to_micros(3) == 3 * EPSILON_SCALE
    assert to_micros(0.1) == 100_001  # the float 0.1 lies just above 1/10
    assert to_micros(math.nextafter(2.5, 0)) == 2_500_000 and to_micros(math.nextafter(2.5, 3)) == 2_500_001
    for value in [round_epsilon(dp(s, 0.1, 10), DELTA) for s in (0.7, 1.1, 2.3, 4.9)]:
        micros = to_micros(value)
        assert micros - 1 < Fraction(value) * EPSILON_SCALE <= micros


@pytest.mark.parametrize("value", [-0.5, float("inf"), float("nan"), 2.0**64, "1.0", None])
def test_to_micros_refuses_what_the_contract_cannot_hold(value: object) -> None:
    with pytest.raises(InvalidInputError, match="ε"):
        to_micros(value)  # type: ignore[arg-type]


def test_delta_units_are_exact_and_round_trip() -> None:
    assert delta_to_units(1e-5) == 10**13
    assert delta_to_units(1e-18) == 1 and delta_to_units(0.5) == DELTA_SCALE // 2
    for delta in (1e-5, 1e-9, 3.7e-7, 0.01):
        assert units_to_delta(delta_to_units(delta)) == delta
        assert units_to_delta(delta_to_units(delta)) == delta_to_units(delta) / DELTA_SCALE  # correctly rounded
    for bad in (0, 1, 1e-19, "1e-5", -1e-5, float("inf")):
        with pytest.raises(InvalidInputError):
            delta_to_units(bad)  # type: ignore[arg-type]


def test_budget_check_refuses_the_round_that_would_overspend() -> None:
    taken = [dp(steps=10)] * 3
    after = to_micros(cumulative_epsilon([*taken, dp(steps=10)], DELTA))
    assert check_budget(taken, dp(steps=10), delta=DELTA, budget_micros=after) == after
    assert check_budget([], dp(steps=10), delta=DELTA, budget_micros=after) == to_micros(round_epsilon(dp(steps=10), DELTA))
    with pytest.raises(PrivacyBudgetExceededError) as refused:
        check_budget(taken, dp(steps=10), delta=DELTA, budget_micros=after - 1)
    message = str(refused.value)
    assert f"to {after / EPSILON_SCALE:.6f}, past the agreement's budget of {(after - 1) / EPSILON_SCALE:.6f}" in message
    assert "sit this round out" in message
    with pytest.raises(InvalidInputError, match="ε budget must be an integer count of millionths"):
        check_budget(taken, dp(), delta=DELTA, budget_micros=-1)


def test_noise_multiplier_for_a_target_is_the_smallest_that_fits() -> None:
    for target in (1.0, 4.0):
        sigma = noise_multiplier_for(target, sample_rate=0.1, steps=20, rounds=5, delta=DELTA)
        assert sigma == round(sigma, 3)
        assert cumulative_epsilon([dp(sigma, 0.1, 20)] * 5, DELTA) <= target
        assert cumulative_epsilon([dp(sigma - 0.001, 0.1, 20)] * 5, DELTA) > target
    with pytest.raises(InvalidInputError, match="no noise multiplier up to 10000 keeps 1 rounds of 1000000 steps"):
        noise_multiplier_for(1e-4, sample_rate=1.0, steps=1_000_000, delta=DELTA)
