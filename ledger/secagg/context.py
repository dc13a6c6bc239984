"""The round a secure aggregation belongs to, the domain labels, and the one key derivation.

Every derivation (round keys, pair mask keys, share encryption, commitments, the neighbour graph)
takes a label of its own and the round's context (chain id, contract address, round id) as HKDF
``info`` or hashed prefix, so nothing derived or revealed for one round, deployment or chain serves
another, and no value made for one purpose can be taken for another.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import is_address, is_checksum_address, to_canonical_address, to_checksum_address

from ledger.errors import InvalidInputError
from ledger.types import Address

_UINT256 = 1 << 256
MAX_BEACON = 64


def _label(purpose: str) -> bytes:
    return f"fedledger secagg v1: {purpose}".encode() + b"\x00"


LABEL_ROUND_KEY = _label("round key")
LABEL_PAIR_MASK = _label("pair mask")
LABEL_SHARE_ENCRYPTION = _label("share encryption")
LABEL_COMMITMENT = _label("share commitment")
LABEL_GRAPH = _label("neighbour graph")


def parse_address(text: object, what: str = "address") -> Address:
    """``text`` checksummed; InvalidInputError when malformed or mis-checksummed.

    The rule ``ledger.chain.connection.parse_address`` applies, restated here so this room imports no
    chain code.
    """
    if not isinstance(text, str) or not text.startswith("0x") or not is_address(text):
        raise InvalidInputError(f"the {what} {text!r} is not an Ethereum address; give 0x followed by 40 hex digits.")
    digits = text[2:]
    if digits != digits.lower() and digits != digits.upper() and not is_checksum_address(text):
        raise InvalidInputError(f"the {what} {text!r} has a wrong checksum; copy the address again.")
    return Address(to_checksum_address(text))


def address_order(address: str) -> str:
    """The sort key of an address: its numeric value (checksummed text does not sort that way)."""
    return address.lower()


def address_bytes(address: str) -> bytes:
    """The 20 raw bytes of a (checksummed) address."""
    return bytes(to_canonical_address(address))


@dataclass(frozen=True)
class RoundContext:
    """The round a secure aggregation is for: chain id, contract address and round id.

    ``beacon`` (optional, at most 64 bytes) is public randomness fixed only after the cohort was,
    such as the hash of the block that opened the round. Only the neighbour graph uses it
    (``ledger.secagg.graph``): without it, every input to the graph is known when the cohort is
    chosen, so someone who can get many addresses into a cohort could grind them until T of them
    land around a victim in a round to come. It is part of the context, so every reader must be
    given the same one; the documents do not carry it.

    The contract address is checksummed on construction; a malformed value is InvalidInputError.
    """

    chain_id: int
    contract: Address
    round_id: int
    beacon: bytes = b""

    def __post_init__(self) -> None:
        for name in ("chain_id", "round_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256:
                raise InvalidInputError(f"the {name.replace('_', ' ')} {value!r} is not an unsigned 256-bit integer.")
        object.__setattr__(self, "contract", parse_address(self.contract, "contract address"))
        if not isinstance(self.beacon, bytes) or len(self.beacon) > MAX_BEACON:
            raise InvalidInputError(f"the round's beacon must be at most {MAX_BEACON} bytes, such as a block hash.")

    def encode(self) -> bytes:
        """84 bytes: chain id (32, big-endian), contract (20), round id (32)."""
        return self.chain_id.to_bytes(32, "big") + address_bytes(self.contract) + self.round_id.to_bytes(32, "big")

    def describe(self) -> str:
        return f"round {self.round_id} of contract {self.contract} on chain {self.chain_id}"


def derive(key_material: bytes, label: bytes, context: RoundContext, *parts: bytes, length: int = 32) -> bytes:
    """HKDF-SHA256 of ``key_material`` with info = label, context, then ``parts`` (each fixed width)."""
    info = label + context.encode() + b"".join(parts)
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(key_material)
