"""ε and δ as the contract stores them: whole numbers of millionths of ε and of 1e-18 for δ.

Conversions go through ``Decimal(repr(x))`` so that a figure typed as ``4`` or ``1e-5`` maps to
exactly ``4_000_000`` or ``10_000_000_000_000`` units, not to a neighbour of its binary float. A
party's declared loss is the exception: it is an accountant's float, not a typed figure, so it is
rounded up from the float's own exact value (a declaration never under-states what it spent: the
float 0.1 lies just above 1/10 and becomes 100_001). A budget or δ that does not fall on the grid
is refused rather than silently moved.
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

from ledger.contract_constants import DELTA_SCALE, EPSILON_SCALE
from ledger.errors import InvalidInputError

_UINT64 = 2**64


def _units(value: float, scale: int, refusal: str) -> Decimal:
    """``value`` times ``scale``, exactly; InvalidInputError(``refusal``) if it is not a finite number >= 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise InvalidInputError(refusal)
    return Decimal(repr(value)) * scale


def epsilon_to_micros(epsilon: float) -> int:
    """A declared cumulative ε in the contract's units, rounded up from the float's exact value."""
    if not isinstance(epsilon, (int, float)) or isinstance(epsilon, bool) or not 0 <= epsilon < math.inf:
        raise InvalidInputError(
            f"ε must be a finite number >= 0, not {epsilon!r}; a round without noise has no finite ε: "
            "give its dp section a noise_multiplier > 0."
        )
    micros = math.ceil(Fraction(epsilon) * EPSILON_SCALE)
    if micros >= _UINT64:
        raise InvalidInputError(f"ε = {epsilon} is too large for the contract (at most {(_UINT64 - 1) / EPSILON_SCALE:g}).")
    return micros


def budget_to_micros(epsilon_budget: float) -> int:
    """An agreement's ε budget in the contract's units; it must be a whole number of millionths."""
    refusal = (
        f"the ε budget {epsilon_budget!r} must be above 0, below {(_UINT64 - 1) / EPSILON_SCALE:g} and have at "
        "most 6 decimal places (the contract stores millionths); give one such as 8 or 2.5."
    )
    scaled = _units(epsilon_budget, EPSILON_SCALE, refusal)
    if scaled != scaled.to_integral_value() or not 0 < scaled < _UINT64:
        raise InvalidInputError(refusal)
    return int(scaled)


def delta_to_units(delta: float) -> int:
    """An agreement's δ in the contract's units (1e-18); 0 < δ < 1, on the 1e-18 grid."""
    refusal = f"δ = {delta!r} must be above 0 and below 1, a multiple of 1e-18; give one such as 1e-5."
    scaled = _units(delta, DELTA_SCALE, refusal)
    if scaled != scaled.to_integral_value() or not 0 < scaled < DELTA_SCALE:
        raise InvalidInputError(refusal)
    return int(scaled)


def micros_to_epsilon(micros: int) -> float:
    return micros / EPSILON_SCALE


def units_to_delta(units: int) -> float:
    """The δ recorded on chain as a float (exact decimal, then correctly rounded): every party and the auditor use this one."""
    return float(Decimal(units) / DELTA_SCALE)
