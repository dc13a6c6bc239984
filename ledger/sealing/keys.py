"""X25519 encryption keys for sealed updates, kept encrypted in the workspace apart from signing keys.

A party's encryption key opens the updates sealed to it; its public half (32 raw bytes, the
contract's bytes32) is what the party registers on chain. Files live in ``keys/encryption/``
(``keys/encryption/NAME.json``, recorded in the workspace's ``[encryption_keys]`` table), a folder
of their own, so no name can make a signing keystore (``keys/NAME.json``) and an encryption key
share a path; each loader also refuses the other kind's file by its shape.

The file is JSON::

    {"kind": "fedledger-encryption-key", "version": 1, "algorithm": "X25519",
     "public_key": "0x<64 hex>",
     "sealed_private_key": {"kdf": "scrypt", "kdfparams": {"n", "r", "p", "salt"},
                            "cipher": "chacha20-poly1305", "nonce", "ciphertext"}}

The private key is encrypted with ChaCha20-Poly1305 under a key that scrypt derives from the
password (the cost eth-account uses for signing keystores), the public key being the associated
data, so the file's public key cannot be swapped. The password comes from
``$FEDLEDGER_KEY_PASSWORD`` or a hidden prompt, as for signing keys. The public key is readable
without the password: publishing it needs none.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ledger.errors import InvalidInputError, KeyLoadError
from ledger.chain.keys import PASSWORD_ENV, read_password
from ledger.workspace import Workspace, atomic_write_bytes

KIND = "fedledger-encryption-key"
VERSION = 1
CONFIG_TABLE = "encryption_keys"
FOLDER = "encryption"
DEFAULT_SCRYPT_N = 1 << 18  # eth-account's default for signing keystores: about a second per load
_MAX_SCRYPT_N = 1 << 20  # a file may not make a load take gigabytes of memory
_SCRYPT_R, _SCRYPT_P = 8, 1
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # the rule ledger.chain.keys applies to signing key names


def public_key_bytes(private_key: X25519PrivateKey) -> bytes:
    """The 32 raw bytes of ``private_key``'s public key, as the contract stores them."""
    return private_key.public_key().public_bytes_raw()


def create_encryption_keyfile(
    path: Path | str,
    password: str,
    private_key: X25519PrivateKey | None = None,
    *,
    iterations: int | None = None,
) -> bytes:
    """Encrypt ``private_key`` (a new random key when None) into a key file at ``path``.

    Refuses to overwrite an existing file; the file appears whole or not at all. ``iterations`` is
    scrypt's N, lowered by tests only. Returns the public key's 32 bytes.
    """
    path = Path(path)
    if path.exists():
        raise KeyLoadError(f"{path} already exists; choose another key name or remove the old file yourself.")
    if not password:
        raise KeyLoadError(f"an empty password cannot protect {path}; set {PASSWORD_ENV} to a non-empty password.")
    key = X25519PrivateKey.generate() if private_key is None else private_key
    public = public_key_bytes(key)
    n = DEFAULT_SCRYPT_N if iterations is None else iterations
    salt, nonce = os.urandom(16), os.urandom(12)
    ciphertext = ChaCha20Poly1305(_derive(password, salt, n, _SCRYPT_R, _SCRYPT_P)).encrypt(
        nonce, key.private_bytes_raw(), _associated_data(public)
    )
    document = {
        "kind": KIND,
        "version": VERSION,
        "algorithm": "X25519",
        "public_key": "0x" + public.hex(),
        "sealed_private_key": {
            "kdf": "scrypt",
            "kdfparams": {"n": n, "r": _SCRYPT_R, "p": _SCRYPT_P, "salt": salt.hex()},
            "cipher": "chacha20-poly1305",
            "nonce": nonce.hex(),
            "ciphertext": ciphertext.hex(),
        },
    }
    atomic_write_bytes(path, json.dumps(document, indent=2).encode("utf-8"))
    return public


def read_encryption_public_key(path: Path | str) -> bytes:
    """The public key a key file declares, read without the password."""
    path = Path(path)
    return _public_key(_read_keyfile(path), path)


def load_encryption_keyfile(path: Path | str, *, password: str | None = None) -> X25519PrivateKey:
    """Decrypt the key file at ``path``; KeyLoadError names the file and the fix on any failure."""
    path = Path(path)
    document = _read_keyfile(path)
    public = _public_key(document, path)
    try:
        sealed = document["sealed_private_key"]
        params = sealed["kdfparams"]
        n, r, p = (int(params[name]) for name in ("n", "r", "p"))
        salt, nonce, ciphertext = (
            bytes.fromhex(text) for text in (params["salt"], sealed["nonce"], sealed["ciphertext"])
        )
        if sealed["kdf"] != "scrypt" or sealed["cipher"] != "chacha20-poly1305":
            raise ValueError("another kdf or cipher")
        if not (1 < n <= _MAX_SCRYPT_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
            raise ValueError("scrypt parameters out of range")
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _unusable(path, "its sealed_private_key section is malformed") from None
    if password is None:
        password = read_password(f"encryption key {path}")
    try:
        raw = ChaCha20Poly1305(_derive(password, salt, n, r, p)).decrypt(nonce, ciphertext, _associated_data(public))
        key = X25519PrivateKey.from_private_bytes(raw)
    except InvalidTag:
        raise KeyLoadError(
            f"wrong password for encryption key {path} (or the file was altered); "
            f"set {PASSWORD_ENV} to the password it was created with."
        ) from None
    except ValueError:
        raise _unusable(path, "its private key is not 32 bytes") from None
    if public_key_bytes(key) != public:
        raise _unusable(path, "its private key does not match its public_key")
    return key


def encryption_key_path(workspace: Workspace, name_or_path: str) -> Path:
    """Where the encryption key ``name_or_path`` lives: ``[encryption_keys]``, ``keys/encryption/NAME.json``, a path."""
    recorded = workspace.config.get(CONFIG_TABLE, {}).get(name_or_path)
    if recorded:
        return workspace.path(recorded)
    conventional = _conventional_path(workspace, name_or_path)
    if _NAME.match(name_or_path) and conventional.is_file():
        return conventional
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    raise KeyLoadError(
        f"no encryption key named {name_or_path!r} in [{CONFIG_TABLE}] of {workspace.config_path} and no key file "
        f"at {candidate}; create one with `fedledger key new-encryption NAME` or give the key file's path."
    )


def load_encryption_key(
    workspace: Workspace, name_or_path: str, *, password: str | None = None
) -> X25519PrivateKey:
    """The private key of the encryption key ``name_or_path`` (see encryption_key_path)."""
    return load_encryption_keyfile(encryption_key_path(workspace, name_or_path), password=password)


def workspace_key_for(workspace: Workspace, public_keys: Collection[bytes], name: str | None = None) -> str | None:
    """The name of the workspace's encryption key whose public half is one of ``public_keys`` (those an
    address registered on chain): ``name`` if its is, else the first under ``[encryption_keys]`` whose is;
    None when none is. Public halves are read without a password."""
    names = [name] if name is not None else list(workspace.config.get(CONFIG_TABLE, {}))
    return next((candidate for candidate in names
                 if read_encryption_public_key(encryption_key_path(workspace, candidate)) in public_keys), None)


def new_encryption_key(
    workspace: Workspace, name: str, *, password: str, iterations: int | None = None
) -> bytes:
    """Create ``keys/encryption/NAME.json`` with a fresh key, record it under ``[encryption_keys]``.

    Returns the public key's 32 bytes. Nothing is left behind when recording fails.
    """
    if not _NAME.match(name):
        raise InvalidInputError(
            f"{name!r} is not a usable key name; use letters, digits, '-', '_' or '.' (up to 64, no leading dot)."
        )
    if name in workspace.config.get(CONFIG_TABLE, {}):
        raise KeyLoadError(
            f"an encryption key named {name!r} is already recorded in {workspace.config_path}; choose another name."
        )
    path = _conventional_path(workspace, name)
    public = create_encryption_keyfile(path, password, iterations=iterations)
    workspace.set(CONFIG_TABLE, name, str(path.relative_to(workspace.root)))
    try:
        workspace.save()
    except BaseException:
        path.unlink(missing_ok=True)
        workspace.config[CONFIG_TABLE].pop(name, None)
        raise
    return public


def _conventional_path(workspace: Workspace, name: str) -> Path:
    return workspace.keys_dir / FOLDER / f"{name}.json"


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(password.encode("utf-8"))


def _associated_data(public: bytes) -> bytes:
    return f"{KIND} v{VERSION}\x00".encode() + public


def _read_keyfile(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise KeyLoadError(
            f"no encryption key file at {path}; create one with `fedledger key new-encryption NAME` or fix --key."
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise _unusable(path, f"it is not JSON ({error.__class__.__name__})") from None
    if not isinstance(document, dict):
        raise _unusable(path, "it is not a JSON object")
    if document.get("kind") != KIND:
        if "crypto" in {str(key).lower() for key in document}:
            raise KeyLoadError(
                f"{path} is a signing keystore, not an encryption key; give an encryption key made by "
                "`fedledger key new-encryption NAME`."
            )
        raise _unusable(path, f'its "kind" is not "{KIND}"')
    if document.get("version") != VERSION:
        raise KeyLoadError(
            f"{path} is an encryption key file of version {document.get('version')!r}, and this fedledger reads "
            f"only version {VERSION}; use the fedledger release that wrote it."
        )
    return document


def _public_key(document: dict[str, Any], path: Path) -> bytes:
    text = document.get("public_key")
    if document.get("algorithm") != "X25519" or not isinstance(text, str) or not re.fullmatch(r"0x[0-9a-f]{64}", text):
        raise _unusable(path, "it holds no X25519 public key")
    return bytes.fromhex(text[2:])


def _unusable(path: Path, why: str) -> KeyLoadError:
    return KeyLoadError(
        f"{path} is not a usable encryption key file ({why}); "
        "point --key at a key made by `fedledger key new-encryption NAME`."
    )
