"""What can go wrong in secure aggregation, one class per cause.

Every class is raised with one complete sentence naming the cause and the fix, under
``InvalidInputError`` (so under the project's root ``LedgerError`` and ``ValueError``): the CLI prints
it as one line, and a service records ``str(error)`` as the reason a round was cancelled or a
party's document rejected. Classes that name a culprit carry it as attributes too, so callers never
parse sentences.
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.errors import InvalidInputError


class SecureAggregationError(InvalidInputError):
    """Root of every failure of the secure aggregation core."""


class SecureParamsError(SecureAggregationError):
    """A round's ``secure_aggregation`` section is malformed or its values cannot work together."""


class NotInCohortError(SecureAggregationError):
    """A party (or a share holder) that is not in the round's cohort."""


class MalformedDocumentError(SecureAggregationError):
    """An advertisement or reveal whose bytes are not the canonical encoding of a valid document."""


class InvalidAdvertisementError(SecureAggregationError):
    """An advertisement that parses but does not fit the round (wrong holders, key, context)."""


class MaskedVectorError(SecureAggregationError):
    """A masked vector of the wrong dtype, shape or length, or an update that cannot be encoded."""


class RevealForSubmitterError(SecureAggregationError):
    """A reveal asked or offered for a party that submitted: it would expose that party's update."""

    def __init__(self, message: str, *, holder: str | None = None, owner: str | None = None) -> None:
        super().__init__(message)
        self.holder = holder
        self.owner = owner


class WrongShareError(SecureAggregationError):
    """A revealed share that does not match its commitment in the owner's advertisement."""

    def __init__(self, message: str, *, holder: str, owner: str) -> None:
        super().__init__(message)
        self.holder = holder
        self.owner = owner


class InconsistentSharesError(SecureAggregationError):
    """Shares that match their commitments but do not recombine to the owner's advertised round key."""

    def __init__(self, message: str, *, owner: str) -> None:
        super().__init__(message)
        self.owner = owner


class TooFewSharesError(SecureAggregationError):
    """Fewer valid shares of a dropout's round seed than the threshold: its masks cannot be removed."""


class UnmaskableRoundError(SecureAggregationError):
    """Unmasking this round would expose more than the sum, or cannot complete: cancel it with this reason."""

    def __init__(self, message: str, *, parties: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.parties = tuple(parties)


class ExposedSurvivorError(UnmaskableRoundError):
    """A survivor all of whose neighbours dropped: removing their masks would publish its update."""


class PartialSumExposedError(UnmaskableRoundError):
    """The survivors split into groups no pair mask links: unmasking would publish each group's sum."""


class TooFewSurvivorsError(UnmaskableRoundError):
    """Fewer survivors than the threshold, or a dropout with fewer surviving share holders than the threshold."""
