"""One root for every failure a user can cause, each with a sentence that names cause and fix.

Every class here is raised with a complete, user-facing message. The CLI prints ``str(error)``
as one line and exits with ``error.exit_code``; library callers catch the class instead of
matching strings. Classes are mirrored onto built-ins where that helps (``ValueError``,
``LookupError``, ``ConnectionError``) so either ``except`` works.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error fedledger raises on purpose."""

    exit_code: int = 1


class ConfigError(LedgerError, ValueError):
    """The workspace or its configuration is missing, malformed, or points somewhere wrong."""


class WorkspaceNotFoundError(ConfigError):
    """No ``fedledger.toml`` in the current folder or any parent."""


class InvalidInputError(LedgerError, ValueError):
    """A value given by the user (address, CID, number, file) is malformed."""


class ChainError(LedgerError):
    """The chain could not be reached or is not the chain the workspace expects."""


class ChainUnreachableError(ChainError, ConnectionError):
    """Nothing answers at the RPC URL."""


class WrongChainError(ChainError):
    """The RPC answers with another chain id than the one recorded at deployment."""


class DeploymentError(ChainError):
    """No (or another) contract at the recorded address, or a deployment already recorded."""


class KeyLoadError(LedgerError):
    """A key file or key variable is missing, malformed or locked with another password."""


class ContractRevertError(LedgerError):
    """Base of the Python classes that mirror the contract's custom errors (see ledger.chain.contract_errors)."""


class StoreError(LedgerError):
    """The content store failed."""


class StoreUnreachableError(StoreError, ConnectionError):
    """Nothing answers at the IPFS API address."""


class ContentNotFoundError(StoreError, LookupError):
    """The store holds no content for a CID."""


class IntegrityError(StoreError):
    """Bytes read back do not hash to the CID they were asked for."""


class ContentTooLargeError(StoreError):
    """Content is larger than the caller can accept; it was refused before being read whole."""


class MalformedCidError(InvalidInputError):
    """A text is not a CID fedledger can use."""


class WeightsError(LedgerError, ValueError):
    """A weights blob is not safetensors, does not match the model layout, or holds NaN/inf."""


class AuditIndexError(LedgerError):
    """The audit index belongs to another deployment, or the chain cannot be indexed: the audit cannot run."""

    exit_code = 2
