"""A secure round's settings: ``ledger.secagg``'s parameters plus the end of the key phase.

The round config's ``secure_aggregation`` section is ``SecureParams.to_dict()`` with one more key,
``key_deadline`` (unix seconds): an advertisement counts only when the block that recorded it is
stamped at or before it. Every party waits for that moment (or for every cohort member's
advertisement) before it masks, so all of them mask with the same set of peers; the contract
refuses advertisements after the round's own deadline, and the rule for the earlier key deadline is
a fact anyone checks from the blocks' timestamps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.errors import InvalidInputError
from ledger.secagg.params import SECTION, SecureParams

KEY_DEADLINE = "key_deadline"


@dataclass(frozen=True)
class SecureRound:
    """What every party, the aggregator and the auditor of a secure round share."""

    params: SecureParams
    key_deadline: int

    def __post_init__(self) -> None:
        if isinstance(self.key_deadline, bool) or not isinstance(self.key_deadline, int) or self.key_deadline < 1:
            raise InvalidInputError(
                f"the {SECTION} section's {KEY_DEADLINE} is {self.key_deadline!r}, not a unix time in seconds; "
                "open the round with `fedledger round open --secure`, which sets it."
            )

    def to_document(self) -> dict[str, Any]:
        return {**self.params.to_dict(), KEY_DEADLINE: self.key_deadline}

    @classmethod
    def from_document(cls, section: object) -> SecureRound:
        if not isinstance(section, Mapping) or KEY_DEADLINE not in section:
            raise InvalidInputError(
                f"the round config's {SECTION} section has no {KEY_DEADLINE}; open the round with "
                "`fedledger round open --secure`, which writes it."
            )
        rest = {key: value for key, value in section.items() if key != KEY_DEADLINE}
        return cls(params=SecureParams.from_dict(rest), key_deadline=section[KEY_DEADLINE])
