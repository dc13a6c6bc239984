"""The privacy loss ε of DP-SGD rounds, computed so that a party and an auditor get the same number.

Which accountant, and why: Rényi DP (RDP) as Opacus 1.6.0 implements it (the Sampled Gaussian
Mechanism's RDP, Mironov et al. 2019, converted to (ε, δ) by Balle et al. 2020, Theorem 21).

- The auditor must arrive at the party's figure from the round configs alone. RDP is a closed
  form: per order, a finite sum (integer orders) or a series cut at a fixed threshold (fractional
  orders), in float64 with ``math``/``scipy.special``; no FFT grid, no discretization, no
  randomness. PRV (Opacus' default) and PLD (dp-accounting) are tighter, by about 10 % here, but
  discretize a distribution on a grid whose size and truncation are tuning choices, and two
  implementations agree only to ~0.2 % (FACTS.md): a party and an auditor on different versions
  could disagree by more than the millionth the contract records.
- Composition over rounds is exact in RDP: the per-order RDP of several rounds is the sum of theirs,
  so a party's cumulative ε over the rounds it took part in is one conversion of one sum, whatever
  the rounds' parameters. It is monotone: taking part in another round never lowers it, which is
  what the contract's "cumulative ε never goes down" rule assumes.
- RDP never underestimates: it is an upper bound on the true loss.

Determinism: the orders are fixed here (not Opacus' default list, which a release may change); the
RDP of one step is computed once per (sample_rate, noise_multiplier) and scaled by the integer
total of steps taken with those parameters; the per-order sums use ``math.fsum`` (exactly rounded,
so the order in which rounds are listed does not matter). ``ledger.fixed_point.epsilon_to_micros``
rounds the float up, exactly, to the contract's fixed point. Opacus is pinned to 1.6.0 in pyproject.toml: a different
release could move the last bits, and so a figure, by one millionth.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence

from ledger.contract_constants import EPSILON_SCALE
from ledger.errors import InvalidInputError, LedgerError
from ledger.fixed_point import epsilon_to_micros
from node.round_config import DpSettings

RDP_ORDERS: tuple[float, ...] = (
    tuple(1 + x / 10 for x in range(1, 100)) + tuple(float(a) for a in range(12, 64)) + (64.0, 80.0, 96.0, 128.0, 192.0, 256.0)
)
"""Opacus 1.6's default orders (1.1 .. 10.9 by tenths, 12 .. 63), plus larger ones for strongly noised rounds."""
MAX_UINT64 = 2**64 - 1
MAX_NOISE_MULTIPLIER = 10_000.0


class PrivacyBudgetExceededError(LedgerError):
    """Taking part in the next round would bring a party's cumulative ε past the agreement's budget."""


def round_epsilon(dp: DpSettings, delta: float) -> float:
    """ε at ``delta`` of one round with these DP parameters (the same for every party of the round)."""
    return cumulative_epsilon([dp], delta)


def cumulative_epsilon(rounds: Iterable[DpSettings], delta: float) -> float:
    """ε at ``delta`` of taking part in all of ``rounds`` (RDP composition); 0.0 for no rounds."""
    _check_delta(delta)
    steps: Counter[tuple[float, float]] = Counter()
    for dp in rounds:
        steps[(dp.sample_rate, dp.noise_multiplier)] += dp.steps
    if not steps:
        return 0.0
    per_step = {key: _rdp_per_step(*key) for key in steps}
    rdp = [math.fsum(per_step[key][i] * steps[key] for key in steps) for i in range(len(RDP_ORDERS))]
    from opacus.accountants.analysis.rdp import get_privacy_spent

    with warnings.catch_warnings():
        # "Optimal order is the largest/smallest alpha": the bound is still valid, only looser.
        warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
        epsilon, _ = get_privacy_spent(orders=list(RDP_ORDERS), rdp=rdp, delta=delta)
    return float(epsilon)


def _check_delta(delta: float) -> None:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
        raise InvalidInputError(f"δ must be a number strictly between 0 and 1, not {delta!r}; give a probability such as 1e-5.")


@functools.lru_cache(maxsize=256)
def _rdp_per_step(sample_rate: float, noise_multiplier: float) -> tuple[float, ...]:
    from opacus.accountants.analysis.rdp import compute_rdp

    values = compute_rdp(q=sample_rate, noise_multiplier=noise_multiplier, steps=1, orders=list(RDP_ORDERS))
    return tuple(float(v) for v in values)


def check_budget(taken: Sequence[DpSettings], next_round: DpSettings, *, delta: float, budget_micros: int) -> int:
    """The cumulative ε (millionths) a party declares after ``next_round``, or PrivacyBudgetExceededError.

    ``taken`` lists the DP parameters of every earlier round the party took part in; call this
    before training, so a round that would overspend costs neither training nor a transaction.
    """
    if isinstance(budget_micros, bool) or not isinstance(budget_micros, int) or not 0 <= budget_micros <= MAX_UINT64:
        raise InvalidInputError(f"the ε budget must be an integer count of millionths from 0 to {MAX_UINT64}, not {budget_micros!r}.")
    before = epsilon_to_micros(cumulative_epsilon(taken, delta))
    after = epsilon_to_micros(cumulative_epsilon([*taken, next_round], delta))
    if after > budget_micros:
        raise PrivacyBudgetExceededError(
            f"taking part in this round would bring this party's cumulative ε from {before / EPSILON_SCALE:.6f} "
            f"to {after / EPSILON_SCALE:.6f}, past the agreement's budget of {budget_micros / EPSILON_SCALE:.6f} "
            f"(δ = {delta:g}); sit this round out, or ask governance for an agreement with a larger budget."
        )
    return after


def noise_multiplier_for(target_epsilon: float, *, sample_rate: float, steps: int, rounds: int = 1, delta: float) -> float:
    """The smallest noise multiplier, to 3 decimals, whose ``rounds`` rounds of ``steps`` steps spend at most ``target_epsilon``."""
    if not 0 < target_epsilon < math.inf:
        raise InvalidInputError(f"the target ε must be a positive finite number, not {target_epsilon!r}.")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise InvalidInputError(f"the number of rounds must be an integer >= 1, not {rounds!r}.")

    def fits(thousandths: int) -> bool:
        dp = DpSettings(noise_multiplier=thousandths / 1000, max_grad_norm=1.0, sample_rate=sample_rate, steps=steps)
        return cumulative_epsilon([dp] * rounds, delta) <= target_epsilon

    # Bracket low < high (in thousandths) with fits(high) and not fits(low) by doubling from 1.0, then
    # bisect: ε falls as the noise grows, so the answer is the least grid point that fits.
    largest = round(MAX_NOISE_MULTIPLIER * 1000)
    low, high = 0, 1000
    while not fits(high):
        if high == largest:
            raise InvalidInputError(
                f"no noise multiplier up to {MAX_NOISE_MULTIPLIER:g} keeps {rounds} rounds of {steps} steps at sample "
                f"rate {sample_rate:g} within ε = {target_epsilon:g}; take fewer steps or rounds, or a lower sample rate."
            )
        low, high = high, min(2 * high, largest)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    return high / 1000
