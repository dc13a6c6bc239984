"""A secure round's parameters: the round config's ``secure_aggregation`` section, read strictly.

The section (``SecureParams.to_dict``)::

    {"cohort": ["0x…", …],      # the parties who may take part, ascending address order, fixed at opening
     "threshold": T,            # shares of a dropout's round seed needed to remove its masks
     "neighbours": k,           # each party masks with k peers (SecAgg+); len(cohort) - 1 means all
     "scale_bits": 16,          # fixed-point fraction bits
     "clip": 64.0,              # each coordinate is clipped to [-clip, clip] before encoding
     "max_samples": N,          # the largest sample count a party may weight its update by
     "modulus_bits": 64}        # arithmetic modulo 2**64 (numpy uint64)

Why the checks: the weighted, fixed-point sum of every party's update must fit in a signed 64-bit
integer, or the sum wraps and decodes to garbage (hence the bound on cohort × max_samples × clip ×
2**scale_bits); a neighbour graph in which every party has exactly k neighbours exists only when
len(cohort) × k is even; a threshold below 2 would let any one neighbour recover a party's round
seed alone, and one above k could never be met.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from ledger.errors import InvalidInputError
from ledger.secagg.context import address_order, parse_address
from ledger.secagg.errors import SecureParamsError
from ledger.types import Address

SECTION = "secure_aggregation"
DEFAULT_SCALE_BITS = 16
DEFAULT_CLIP = 64.0
MODULUS_BITS = 64
MIN_PARTIES = 3
_MAX_SCALE_BITS = 48
_KEYS = ("cohort", "threshold", "neighbours", "scale_bits", "clip", "max_samples", "modulus_bits")
_REQUIRED = ("cohort", "threshold", "neighbours", "max_samples")


@dataclass(frozen=True, kw_only=True)
class SecureParams:
    """The parameters every party, the aggregator and the auditor of a secure round share.

    ``cohort`` is stored as a tuple of checksummed addresses in ascending numeric order (any order is accepted here;
    ``from_dict`` demands the canonical order). Every invalid value raises SecureParamsError with
    one sentence naming the cause and the fix.
    """

    cohort: tuple[Address, ...]
    threshold: int
    neighbours: int
    max_samples: int
    scale_bits: int = DEFAULT_SCALE_BITS
    clip: float = DEFAULT_CLIP
    modulus_bits: int = MODULUS_BITS

    def __post_init__(self) -> None:
        if isinstance(self.cohort, (str, bytes)) or not isinstance(self.cohort, (tuple, list)):
            raise SecureParamsError("the cohort must be a list of addresses; list the parties who may take part.")
        try:
            cohort = tuple(sorted((parse_address(a, "cohort address") for a in self.cohort), key=address_order))
        except SecureParamsError:
            raise
        except InvalidInputError as error:
            raise SecureParamsError(str(error)) from None
        object.__setattr__(self, "cohort", cohort)
        repeated = sorted((a for a, count in Counter(cohort).items() if count > 1), key=address_order)
        if repeated:
            raise SecureParamsError(f"the cohort names {', '.join(repeated)} more than once; list each party once.")
        for name in ("threshold", "neighbours", "max_samples", "scale_bits", "modulus_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise SecureParamsError(f"{name} is {value!r}, not an integer; give a whole number.")
        if isinstance(self.clip, bool) or not isinstance(self.clip, (int, float)) or not math.isfinite(self.clip):
            raise SecureParamsError(f"clip is {self.clip!r}, not a finite number; give a positive bound such as 64.0.")
        object.__setattr__(self, "clip", float(self.clip))
        n, k, t = len(cohort), self.neighbours, self.threshold
        if n < MIN_PARTIES:
            raise SecureParamsError(
                f"the cohort has {n} parties and secure aggregation needs at least {MIN_PARTIES} "
                "(with 2, each party's update is the sum minus the other's); add parties or run a plain round."
            )
        if not 2 <= k < n:
            raise SecureParamsError(
                f"neighbours is {k} and must lie between 2 and {n - 1} (the cohort size minus one, which means all); "
                "choose k in that range."
            )
        if n * k % 2:
            raise SecureParamsError(
                f"no graph gives each of {n} parties exactly {k} neighbours ({n} x {k} is odd); "
                f"choose an even number of neighbours, such as {k - 1} or {k + 1}."
            )
        if not 2 <= t <= k:
            raise SecureParamsError(
                f"threshold is {t} and must lie between 2 and neighbours ({k}): below 2 one neighbour alone "
                "recovers a party's masks, above k they never can; choose T in that range (more than k/2 is usual)."
            )
        if self.modulus_bits != MODULUS_BITS:
            raise SecureParamsError(
                f"modulus_bits is {self.modulus_bits} and this fedledger computes modulo 2**{MODULUS_BITS} only; "
                f"set modulus_bits to {MODULUS_BITS}."
            )
        if not 0 <= self.scale_bits <= _MAX_SCALE_BITS:
            raise SecureParamsError(
                f"scale_bits is {self.scale_bits} and must lie between 0 and {_MAX_SCALE_BITS}; 16 is usual."
            )
        if not self.clip > 0:
            raise SecureParamsError(f"clip is {self.clip} and must be positive; give a bound such as 64.0.")
        if self.max_samples < 1:
            raise SecureParamsError(f"max_samples is {self.max_samples} and must be at least 1.")
        if n * self.max_samples * self.largest_code >= 1 << (MODULUS_BITS - 1):
            raise SecureParamsError(
                f"{n} parties x max_samples {self.max_samples} x clip {self.clip:g} x 2**{self.scale_bits} reaches "
                f"2**63, so the sum could wrap around; lower max_samples, clip or scale_bits."
            )

    @cached_property
    def members(self) -> frozenset[Address]:
        """The cohort as a set, for quick membership tests."""
        return frozenset(self.cohort)

    @property
    def largest_code(self) -> int:
        """The largest magnitude one coordinate's fixed-point code takes: round(clip * 2**scale_bits)."""
        return math.ceil(self.clip * (1 << self.scale_bits))

    @property
    def quantization_bound(self) -> float:
        """Per coordinate, |secure aggregate - FedAvg of the clipped updates| <= this, before the float32 cast."""
        return 2.0 ** -(self.scale_bits + 1)

    def to_dict(self) -> dict[str, Any]:
        """The round config's ``secure_aggregation`` section."""
        return {
            "cohort": list(self.cohort),
            "threshold": self.threshold,
            "neighbours": self.neighbours,
            "scale_bits": self.scale_bits,
            "clip": self.clip,
            "max_samples": self.max_samples,
            "modulus_bits": self.modulus_bits,
        }

    @classmethod
    def from_dict(cls, section: object) -> SecureParams:
        """Read a ``secure_aggregation`` section strictly: unknown or missing keys and bad values refused."""
        if not isinstance(section, Mapping):
            raise SecureParamsError(f"the {SECTION} section is not a table; give its keys {', '.join(_KEYS)}.")
        unknown = sorted(str(key) for key in section if key not in _KEYS)
        if unknown:
            raise SecureParamsError(
                f"the {SECTION} section has unknown key(s) {', '.join(unknown)}; remove them "
                f"(known: {', '.join(_KEYS)})."
            )
        missing = [key for key in _REQUIRED if key not in section]
        if missing:
            raise SecureParamsError(f"the {SECTION} section lacks {', '.join(missing)}; add them.")
        cohort = section["cohort"]
        if not isinstance(cohort, (list, tuple)):
            raise SecureParamsError(f"the {SECTION} cohort is not a list of addresses; list the parties.")
        params = cls(**{key: section[key] for key in _KEYS if key in section})
        if [str(a) for a in cohort] != list(params.cohort):
            raise SecureParamsError(
                f"the {SECTION} cohort is not written in ascending order of checksummed addresses; "
                "write it as SecureParams.to_dict does, so that every reader hashes the same config."
            )
        return params
