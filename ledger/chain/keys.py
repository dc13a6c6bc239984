"""Keys: eth-account accounts from encrypted keystore files or from one environment variable.

A key never appears on a command line or in a log. Keystores are the JSON files that
``Account.encrypt`` writes (the same format as geth's and foundry's); their password comes
from ``FEDLEDGER_KEY_PASSWORD`` or, on a terminal, from a hidden prompt. A raw key may instead
be given in ``FEDLEDGER_PRIVATE_KEY`` (for scripts and CI). Named keys are recorded in the
workspace's ``[keys]`` table as paths relative to the workspace.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import to_checksum_address

from ledger.errors import InvalidInputError, KeyLoadError
from ledger.types import Address
from ledger.workspace import Workspace, atomic_write_bytes

PASSWORD_ENV = "FEDLEDGER_KEY_PASSWORD"
PRIVATE_KEY_ENV = "FEDLEDGER_PRIVATE_KEY"
LIGHT_SCRYPT_N = 2**12
"""scrypt's N for throwaway key files (``key new --light-kdf``, the demo's keys, tests), as geth's --lightkdf:
about 64 times cheaper to make, to load and to guess than eth-account's default 2**18 (about a second of CPU
and 256 MiB in every process that loads it)."""
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


def read_password(purpose: str, *, confirm: bool = False) -> str:
    """The keystore password: ``$FEDLEDGER_KEY_PASSWORD``, else a hidden prompt on a terminal."""
    from_env = os.environ.get(PASSWORD_ENV)
    if from_env:
        return from_env
    if not sys.stdin.isatty():
        raise KeyLoadError(
            f"no password for {purpose}: set {PASSWORD_ENV} (there is no terminal to ask on)."
        )
    password = getpass.getpass(f"Password for {purpose}: ")
    if confirm and getpass.getpass("Repeat the password: ") != password:
        raise KeyLoadError("the two passwords differ; run the command again and type the same password twice.")
    if not password:
        raise KeyLoadError(f"an empty password cannot protect {purpose}; choose a non-empty one.")
    return password


def create_keystore(
    path: Path | str,
    password: str,
    private_key: bytes | str | None = None,
    *,
    iterations: int | None = None,
) -> Address:
    """Encrypt ``private_key`` (a new random key when None) into a keystore file at ``path``.

    Refuses to overwrite an existing file; the file appears whole or not at all. ``iterations``
    lowers the scrypt cost (tests only: the default costs about a second per load).
    Returns the key's address.
    """
    path = Path(path)
    if path.exists():
        raise KeyLoadError(f"{path} already exists; choose another key name or remove the old file yourself.")
    if not password:
        raise KeyLoadError(f"an empty password cannot protect {path}; set {PASSWORD_ENV} to a non-empty password.")
    account = Account.create() if private_key is None else _account_from_key(private_key, origin="the given key")
    document = Account.encrypt(account.key, password, iterations=iterations)
    atomic_write_bytes(path, json.dumps(document, indent=2).encode("utf-8"))
    return Address(account.address)


def keystore_address(path: Path | str) -> Address:
    """The address a keystore file declares, read without decrypting it."""
    document = _read_keystore(Path(path))
    try:
        return Address(to_checksum_address("0x" + str(document["address"]).removeprefix("0x")))
    except (KeyError, ValueError) as error:
        raise KeyLoadError(
            f"{path} has no valid address field; point --key at a keystore made by `fedledger key new`."
        ) from error


def load_keystore(path: Path | str, *, password: str | None = None) -> LocalAccount:
    """Decrypt the keystore at ``path``; KeyLoadError names the file and the fix on any failure."""
    path = Path(path)
    document = _read_keystore(path)
    if password is None:
        password = read_password(f"keystore {path}")
    try:
        key = Account.decrypt(document, password)
    except ValueError as error:
        if "MAC mismatch" in str(error):
            raise KeyLoadError(
                f"wrong password for keystore {path}; set {PASSWORD_ENV} to the password it was created with."
            ) from None
        raise KeyLoadError(
            f"{path} is not a usable eth-account keystore ({error}); "
            "point --key at a keystore made by `fedledger key new`."
        ) from None
    return Account.from_key(key)


def account_from_env() -> LocalAccount | None:
    """The account in ``$FEDLEDGER_PRIVATE_KEY``, or None when the variable is unset."""
    raw = os.environ.get(PRIVATE_KEY_ENV)
    if not raw:
        return None
    return _account_from_key(raw.strip(), origin=PRIVATE_KEY_ENV)


def key_path(workspace: Workspace, name_or_path: str) -> Path:
    """Where the key ``name_or_path`` lives: a name in ``[keys]``, ``keys/NAME.json``, or a file path."""
    recorded = workspace.config.get("keys", {}).get(name_or_path)
    if recorded:
        return workspace.path(recorded)
    conventional = workspace.keys_dir / f"{name_or_path}.json"
    if _KEY_NAME.match(name_or_path) and conventional.is_file():
        return conventional
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        return candidate.resolve()
    raise KeyLoadError(
        f"no key named {name_or_path!r} in [keys] of {workspace.config_path} and no keystore file at "
        f"{candidate}; create one with `fedledger key new NAME` or give the keystore's path."
    )


def load_account(
    workspace: Workspace, name_or_path: str | None, *, password: str | None = None
) -> LocalAccount:
    """The account named by ``name_or_path`` (see key_path), or ``$FEDLEDGER_PRIVATE_KEY`` when None."""
    if name_or_path is None:
        account = account_from_env()
        if account is None:
            raise KeyLoadError(
                f"no key given; pass --key NAME (see `fedledger key new`) or set {PRIVATE_KEY_ENV}."
            )
        return account
    return load_keystore(key_path(workspace, name_or_path), password=password)


def new_key(
    workspace: Workspace, name: str, *, password: str, iterations: int | None = None
) -> Address:
    """Create ``keys/NAME.json`` with a fresh key and record it under ``[keys]``; returns its address."""
    if not _KEY_NAME.match(name):
        raise InvalidInputError(
            f"{name!r} is not a usable key name; use letters, digits, '-', '_' or '.' (up to 64, no leading dot)."
        )
    if name in workspace.config.get("keys", {}):
        raise KeyLoadError(
            f"a key named {name!r} is already recorded in {workspace.config_path}; choose another name."
        )
    path = workspace.keys_dir / f"{name}.json"
    address = create_keystore(path, password, iterations=iterations)
    workspace.set("keys", name, str(path.relative_to(workspace.root)))
    try:
        workspace.save()
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return address


def _read_keystore(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise KeyLoadError(f"no keystore file at {path}; create one with `fedledger key new NAME` or fix --key.")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise KeyLoadError(
            f"{path} is not a keystore (not JSON: {error.__class__.__name__}); "
            "point --key at a keystore made by `fedledger key new`."
        ) from None
    if not isinstance(document, dict) or "crypto" not in {k.lower() for k in document}:
        raise KeyLoadError(
            f"{path} is not an eth-account keystore (no crypto section); "
            "point --key at a keystore made by `fedledger key new`."
        )
    return document


def _account_from_key(raw: bytes | str, *, origin: str) -> LocalAccount:
    if isinstance(raw, str) and not _HEX_KEY.match(raw):
        raise KeyLoadError(f"{origin} is not a private key; it must be 0x followed by 64 hex digits.")
    try:
        return Account.from_key(raw)
    except (ValueError, TypeError):
        raise KeyLoadError(f"{origin} is not a valid secp256k1 private key; use another key.") from None
