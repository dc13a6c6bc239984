"""What can go wrong when a sealed update is opened, one class per cause.

Every class is raised with a complete sentence naming the cause and the fix, under the project's
one root (``LedgerError``) and ``ValueError``, so the CLI prints it as one line and a caller such as
the aggregator can record ``str(error)`` as the reason an update was rejected.
"""

from __future__ import annotations

from ledger.errors import LedgerError


class SealingError(LedgerError, ValueError):
    """Root of every failure to seal or open a sealed update."""


class NotSealedError(SealingError):
    """The bytes do not start with the sealed-update prefix (a plaintext update, or another file)."""


class UnknownSealVersionError(SealingError):
    """The envelope is a sealed update in a format version this fedledger cannot read."""


class TamperedEnvelopeError(SealingError):
    """The envelope's bytes were altered: an authentication tag fails or the layout is not the canonical one."""


class TruncatedEnvelopeError(TamperedEnvelopeError):
    """The envelope is shorter (or longer) than its own header says: it was cut or padded."""


class SealContextMismatchError(SealingError):
    """The envelope was sealed for another chain, contract, round or sender than the one expected."""


class RecipientMismatchError(SealingError):
    """The envelope was sealed to other recipients or other keys than the round names."""


class NotARecipientError(SealingError, LookupError):
    """The envelope is not addressed to the address trying to open it."""


class WrongDecryptionKeyError(SealingError):
    """The private key given is not the one whose public key the envelope was sealed to."""
