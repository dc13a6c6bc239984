"""The secure_aggregation section: read strictly, each bad value refused with its own sentence."""

from __future__ import annotations

import pytest

from ledger.errors import InvalidInputError
from ledger.secagg import SecureParams
from ledger.secagg.errors import SecureParamsError
from tests.secagg.conftest import address

COHORT = [address(i) for i in range(5)]


def section(**changes: object) -> dict:
    base = SecureParams(cohort=tuple(COHORT), threshold=3, neighbours=4, max_samples=1000).to_dict()
    base.update(changes)
    return {k: v for k, v in base.items() if v is not ...}


def test_the_section_round_trips_and_keeps_the_cohort_in_ascending_address_order() -> None:
    params = SecureParams(cohort=tuple(reversed(COHORT)), threshold=3, neighbours=4, max_samples=1000)
    assert [a.lower() for a in params.cohort] == sorted(a.lower() for a in COHORT)
    assert SecureParams.from_dict(params.to_dict()) == params
    assert params.to_dict() == {"cohort": list(params.cohort), "threshold": 3, "neighbours": 4, "scale_bits": 16,
                                "clip": 64.0, "max_samples": 1000, "modulus_bits": 64}
    assert params.quantization_bound == 2.0**-17


@pytest.mark.parametrize(
    ("changes", "sentence"),
    [
        ({"colour": "blue"}, "unknown key(s) colour; remove them"),
        ({"threshold": ...}, "lacks threshold; add them"),
        ({"cohort": COHORT[:2]}, "the cohort has 2 parties and secure aggregation needs at least 3"),
        ({"cohort": COHORT + [COHORT[0]]}, f"the cohort names {COHORT[0]} more than once"),
        ({"cohort": ["0x1234"] + COHORT}, "'0x1234' is not an Ethereum address"),
        ({"neighbours": 5}, "neighbours is 5 and must lie between 2 and 4"),
        ({"neighbours": 1}, "neighbours is 1 and must lie between 2 and 4"),
        ({"neighbours": 3}, "no graph gives each of 5 parties exactly 3 neighbours"),
        ({"threshold": 1}, "threshold is 1 and must lie between 2 and neighbours (4)"),
        ({"threshold": 5}, "threshold is 5 and must lie between 2 and neighbours (4)"),
        ({"threshold": True}, "threshold is True, not an integer"),
        ({"threshold": 2.0}, "threshold is 2.0, not an integer"),
        ({"modulus_bits": 32}, "computes modulo 2**64 only; set modulus_bits to 64"),
        ({"scale_bits": 60}, "scale_bits is 60 and must lie between 0 and 48"),
        ({"clip": 0.0}, "clip is 0.0 and must be positive"),
        ({"clip": float("nan")}, "clip is nan, not a finite number"),
        ({"clip": "64"}, "clip is '64', not a finite number"),
        ({"max_samples": 0}, "max_samples is 0 and must be at least 1"),
        ({"max_samples": 10**10, "scale_bits": 24}, "reaches 2**63, so the sum could wrap around"),
    ],
)
def test_each_bad_section_is_refused_with_one_sentence(changes: dict, sentence: str) -> None:
    with pytest.raises(SecureParamsError) as caught:
        SecureParams.from_dict(section(**changes))
    message = str(caught.value)
    assert sentence in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert isinstance(caught.value, InvalidInputError)


def test_a_cohort_not_written_in_canonical_order_or_not_a_table_is_refused() -> None:
    written = section()
    written["cohort"] = list(reversed(written["cohort"]))
    with pytest.raises(SecureParamsError, match="not written in ascending order of checksummed addresses"):
        SecureParams.from_dict(written)
    lower = section()
    lower["cohort"] = [a.lower() for a in lower["cohort"]]
    with pytest.raises(SecureParamsError, match="not written in ascending order of checksummed addresses"):
        SecureParams.from_dict(lower)
    with pytest.raises(SecureParamsError, match="is not a table"):
        SecureParams.from_dict([1, 2])
    with pytest.raises(SecureParamsError, match="cohort is not a list"):
        SecureParams.from_dict(section(cohort=COHORT[0]))


def test_the_overflow_bound_is_exact_at_its_edge() -> None:
    # 5 x max_samples x 64 x 2**16 < 2**63  <=>  max_samples < 2**63 / (5 * 2**22)
    edge = (2**63 - 1) // (5 * 64 * 2**16)
    SecureParams(cohort=tuple(COHORT), threshold=3, neighbours=4, max_samples=edge)
    with pytest.raises(SecureParamsError, match="could wrap around"):
        SecureParams(cohort=tuple(COHORT), threshold=3, neighbours=4, max_samples=edge + 1)
