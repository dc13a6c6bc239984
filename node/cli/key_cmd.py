"""Commands: ``key new``, ``show``, ``new-encryption``, ``publish-encryption`` and ``fund`` — the workspace's keys."""

from __future__ import annotations

from typing import Annotated

import typer

from ledger.errors import ChainError
from ledger.workspace import Workspace
from node.cli._common import (
    JsonOption,
    RpcOption,
    WorkdirOption,
    console,
    handle_errors,
    print_json,
)
from node.cli.governance_common import chain, report_tx


LightKdfOption = Annotated[bool, typer.Option(
    "--light-kdf", help="Encrypt with a light scrypt cost (N=4096, as geth's --lightkdf): 64 times faster to load, "
                        "and to guess; for throwaway keys (tests, trials).")]


def light_scrypt_n(light: bool) -> int | None:
    """scrypt's N for a new key file: the light cost when asked for, else None (the default, 2**18)."""
    from ledger.chain.keys import LIGHT_SCRYPT_N

    return LIGHT_SCRYPT_N if light else None


def register(app: typer.Typer) -> None:
    """Add the ``key`` group to the app."""
    key_app = typer.Typer(help="Create and inspect encrypted keystore files in the workspace.", no_args_is_help=True)
    app.add_typer(key_app, name="key")

    @key_app.command("new")
    @handle_errors
    def key_new(
        name: Annotated[str, typer.Argument(help="Key name; the keystore is written to keys/NAME.json.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
        light_kdf: LightKdfOption = False,
    ) -> None:
        """Make a new key, encrypted with $FEDLEDGER_KEY_PASSWORD (or a prompted password); print its address."""
        from ledger.chain.keys import new_key, read_password

        workspace = Workspace.find(workdir)
        address = new_key(workspace, name, password=read_password(f"the new key {name!r}", confirm=True),
                          iterations=light_scrypt_n(light_kdf))
        if json:
            print_json({"name": name, "address": address})
        console.print(f"Key [bold]{name}[/] is {address}.", highlight=False)

    @key_app.command("show")
    @handle_errors
    def key_show(
        name: Annotated[str, typer.Argument(help="A name under \\[keys] or a keystore file.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Print a key's address (read from its keystore without decrypting it): alone on stdout, so that
        `fedledger participant approve $(fedledger key show alice)` works."""
        from ledger.chain.keys import key_path, keystore_address

        workspace = Workspace.find(workdir)
        address = keystore_address(key_path(workspace, name))
        if json:
            print_json({"name": name, "address": address})
        else:
            typer.echo(address)
        console.print(f"Key [bold]{name}[/] is {address}.", highlight=False)

    @key_app.command("new-encryption")
    @handle_errors
    def key_new_encryption(
        name: Annotated[str, typer.Argument(help="Key name; the key is written to keys/encryption/NAME.json.")],
        workdir: WorkdirOption = None,
        json: JsonOption = False,
        light_kdf: LightKdfOption = False,
    ) -> None:
        """Make a new X25519 encryption key (for sealed updates), encrypted with $FEDLEDGER_KEY_PASSWORD or a prompt."""
        from ledger.chain.keys import read_password
        from ledger.sealing.keys import new_encryption_key

        workspace = Workspace.find(workdir)
        public = new_encryption_key(workspace, name, password=read_password(f"the new encryption key {name!r}", confirm=True),
                                    iterations=light_scrypt_n(light_kdf))
        if json:
            print_json({"name": name, "public_key": "0x" + public.hex()})
        console.print(f"Encryption key [bold]{name}[/] has public key 0x{public.hex()}; register it with "
                      f"`fedledger key publish-encryption --key {name} --from SIGNER`.", highlight=False, soft_wrap=True)

    @key_app.command("publish-encryption")
    @handle_errors
    def key_publish_encryption(
        key: Annotated[str, typer.Option("--key", help="The encryption key: a name under \\[encryption_keys] or its file.")],
        signer: Annotated[str | None, typer.Option(
            "--from", help="The account it is registered for: a name under \\[keys] or a keystore file (default as for governance: $FEDLEDGER_PRIVATE_KEY, \\[keys] admin, a local chain's dev account).",
        )] = None,
        relay: Annotated[str | None, typer.Option(
            "--relay", help="URL of a `fedledger relay serve`: the --from account signs the registration and the relay sends it (the account needs no ether).",
        )] = None,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Register an encryption key's public half on chain for the --from account (rounds then seal to it, and a
        secure round counts it in its cohort); with --relay, an account without ether signs and the relay sends it."""
        from ledger.chain.connection import open_federation, require_gas_money, signing_account
        from ledger.sealing.keys import encryption_key_path, read_encryption_public_key

        if relay is not None:  # a mistyped URL is told before anything is loaded
            from node.relay_client import check_relay_url

            check_relay_url(relay)
        workspace, w3, url = chain(workdir, rpc)
        public = read_encryption_public_key(encryption_key_path(workspace, key))  # no password: only the public half
        account = signing_account(workspace, signer, w3=w3, rpc=url)
        federation = open_federation(workspace, w3=w3, rpc=url).with_account(account)
        document = {"account": account.address, "public_key": "0x" + public.hex()}
        if relay is None:
            require_gas_money(w3, account.address)
            tx = federation.publish_encryption_key(public)
        else:  # the account signs, the relay pays
            from node.relay_client import checked_relay

            relayed = checked_relay(relay, federation).publish_encryption_key(public)
            tx, document["relayer"] = relayed, relayed.relayer
        report_tx(f"{account.address} registered encryption key 0x{public.hex()}", tx, json, document)

    @key_app.command("fund")
    @handle_errors
    def key_fund(
        name: Annotated[str, typer.Argument(help="A name under \\[keys], a keystore file, or an address.")],
        amount: Annotated[float, typer.Option(min=0.0, help="Ether to send.")] = 10.0,
        rpc: RpcOption = None,
        workdir: WorkdirOption = None,
        json: JsonOption = False,
    ) -> None:
        """Send ether from a local anvil's first dev account to a key (local dev chains only)."""
        from web3 import Web3

        from ledger.chain.connection import connect, dev_account, parse_address, workspace_rpc
        from ledger.chain.keys import key_path, keystore_address

        workspace = Workspace.find(workdir)
        address = parse_address(name) if name.startswith("0x") else keystore_address(key_path(workspace, name))
        url = workspace_rpc(workspace, rpc)
        w3 = connect(url)
        source = dev_account(w3, url)
        if source is None:
            raise ChainError(f"{url} is not a local dev chain with a funded dev account; fund {address} from a wallet instead.")
        tx_hash = w3.eth.send_transaction({"from": source.address, "to": address, "value": Web3.to_wei(amount, "ether")})
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        balance = Web3.from_wei(w3.eth.get_balance(address), "ether")
        if json:
            print_json({"address": address, "tx_hash": Web3.to_hex(tx_hash), "block": receipt["blockNumber"], "balance_ether": str(balance)})
        console.print(f"Sent {amount} ether to {address}; it now holds {balance} ether.", highlight=False)
