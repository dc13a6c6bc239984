"""The peer identity ``ipfs serve`` reports in ``/api/v0/id``: a secp256k1 key kept with the store.

Kubo's ``id`` answers the node's libp2p peer ID, which clients parse (the JS ``kubo-rpc-client``
refuses an answer whose ID is not a valid peer ID). This server joins no peer network, but it
has a stable identity all the same: a secp256k1 key made on first use and kept in
``<repo>/identity`` (mode 0600), like Kubo's ``Identity.PrivKey``. The peer ID is the identity
multihash of the libp2p-protobuf public key (``16Uiu2HAm…`` in base58btc), as libp2p derives it.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import coincurve

from ledger.ipfs import multibase
from ledger.errors import StoreError

_SECP256K1 = 2  # libp2p crypto.pb KeyType
_LIBP2P_KEY = 0x72  # multicodec of a peer ID written as a CID
_IDENTITY_HASH = 0x00


@dataclass(frozen=True)
class PeerIdentity:
    """A node's public key and the peer ID libp2p derives from it."""

    public_key: bytes  # the protobuf-encoded libp2p PublicKey

    @classmethod
    def from_secret(cls, secret: bytes) -> PeerIdentity:
        compressed = coincurve.PrivateKey(secret).public_key.format(compressed=True)
        return cls(bytes([0x08, _SECP256K1, 0x12, len(compressed)]) + compressed)

    @property
    def multihash(self) -> bytes:
        """Keys up to 42 bytes are their own ("identity") multihash."""
        return bytes([_IDENTITY_HASH, len(self.public_key)]) + self.public_key

    def peer_id(self, base: str = "b58mh") -> str:
        """The peer ID as Kubo's ``peerid-base`` spells it: a base58btc multihash, or a CIDv1 in a multibase."""
        if base in ("b58mh", "v0"):
            return multibase.encode_base_x(self.multihash, multibase.BASE58_BTC)
        return multibase.encode(multibase.base_named(base).name, bytes([0x01, _LIBP2P_KEY]) + self.multihash)

    @property
    def public_key_text(self) -> str:
        return base64.b64encode(self.public_key).decode("ascii")


def load_identity(repo: Path) -> PeerIdentity:
    """The identity kept in ``repo``, made there on first use (two servers starting at once agree on one)."""
    path = Path(repo) / "identity"
    if not path.exists():
        temp = path.with_name(f".identity.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_bytes(32).hex() + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)  # fails if another server made one first: then that one counts
            except FileExistsError:
                pass
        except OSError as error:
            raise StoreError(f"cannot write the node identity {path} ({error.strerror}); give a store folder you can write to.") from error
        finally:
            temp.unlink(missing_ok=True)
    try:
        secret = bytes.fromhex(path.read_text("ascii").strip())
        return PeerIdentity.from_secret(secret)
    except (OSError, ValueError) as error:
        raise StoreError(f"the node identity {path} is unreadable or damaged ({error}); delete it and start the server again.") from error
