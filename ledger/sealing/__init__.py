"""Sealed updates: a party's model update encrypted to the round's named recipients only.

One job per module:

- ``keys``: X25519 encryption key pairs, kept encrypted in the workspace (``keys/encryption/``);
  the 32-byte public key is what an address registers on chain.
- ``format``: the versioned, self-describing byte format of a sealed update and its strict parser.
- ``envelope``: ``seal`` and ``unseal`` (HPKE, RFC 9180, through PyCA ``cryptography``: why, and
  what is bound to what, is in its docstring).
- ``errors``: one class per way opening a sealed update can fail.
"""

from ledger.sealing.envelope import seal, unseal
from ledger.sealing.format import SealContext

__all__ = ["SealContext", "seal", "unseal"]
