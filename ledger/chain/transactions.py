"""A transaction from send to receipt on a chain that misbehaves: a fee cap, stuck and dropped
transactions, a journal that survives a killed sender, confirmations.

``ledger.chain.federation.send_transaction`` builds and signs a call; this module takes it from
there, under the sender's lock (:func:`send_signed`) and then without it (:func:`await_receipt`):

- **Fee cap** (``[chain] max_fee_gwei``, ``--max-fee-gwei``): a transaction whose max fee per gas
  (on an EIP-1559 chain the priority fee plus twice the next block's base fee; on a legacy-fee
  chain its gas price) is over the cap is refused before anything is sent (:class:`FeeCapError`).
- **Stuck** (not mined ``[chain] replace_after_s`` seconds after it was sent): replaced by the same
  transaction with the same nonce and its fees raised by at least 12.5 % (geth asks 10 %, other
  clients 12.5 %), never above the cap. Every version sent is kept: whichever is mined is the result.
- **Dropped** (no version known to the node and the nonce still unused): the latest version is sent
  again, as it was.
- **Journal**: each version is written to ``journal/transactions/<chain id>-<sender>-<nonce>.json``
  before it is sent and removed once it is mined. A sender that starts again (its process killed
  with a transaction in flight) finishes what it finds there first: it adopts the transaction if it
  is the very call it is asked to send now (no duplicate) and otherwise sees it mined (resent if the
  pool lost it) before taking the next nonce (no gap).
- **Confirmations** (``[chain] confirmations``): a receipt counts once its block is that many blocks
  below the head and still the chain's block at that height; one reorganized away is waited for
  (and resent) again.

Transactions the node signs for an unlocked account (the in-process chain, anvil's dev accounts)
cannot be re-signed here: they are waited for (and confirmed), never replaced or resent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import BlockNotFound, TransactionNotFound, Web3RPCError

from ledger.errors import ChainError, ConfigError
from ledger.workspace import atomic_write_bytes

GWEI = 10**9
BUMP_NUMERATOR, BUMP_DENOMINATOR = 9, 8  # +12.5 %: what every common client accepts for a replacement
DEFAULT_REPLACE_AFTER_S = 30.0
DEFAULT_TIMEOUT_S = 120.0
JOURNAL_FOLDER = "transactions"


class FeeCapError(ChainError):
    """The chain's fees are over the configured cap; nothing was sent."""


@dataclass(frozen=True)
class TxPolicy:
    """How transactions are sent: the fee cap (wei per gas; None: no cap), when a stuck one is
    replaced, how deep a receipt must be, where the journal lives (None: no journal), and how long
    to wait in all before giving up."""

    max_fee_wei: int | None = None
    replace_after_s: float = DEFAULT_REPLACE_AFTER_S
    confirmations: int = 0
    journal_dir: Path | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S

    @classmethod
    def from_settings(
        cls, chain: dict[str, Any], *, journal_dir: Path | None = None, max_fee_gwei: float | None = None,
        config: str = "fedledger.toml",
    ) -> TxPolicy:
        """The policy from a ``[chain]`` table (``max_fee_gwei``, ``replace_after_s``,
        ``confirmations``), ``max_fee_gwei`` given here (a flag) winning over the table's."""
        cap = max_fee_gwei if max_fee_gwei is not None else chain.get("max_fee_gwei")
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < 10**9):
            raise ConfigError(
                f"the fee cap {cap!r} is not a positive number of gwei; set [chain] max_fee_gwei in {config} "
                "(or --max-fee-gwei) to a number such as 50, or remove it for no cap."
            )
        replace = chain.get("replace_after_s", DEFAULT_REPLACE_AFTER_S)
        if isinstance(replace, bool) or not isinstance(replace, (int, float)) or not 0 < replace <= 86400:
            raise ConfigError(
                f"[chain] replace_after_s = {replace!r} in {config} is not a number of seconds above 0 and up "
                f"to 86400; set it to a number such as {DEFAULT_REPLACE_AFTER_S:g}."
            )
        depth = chain.get("confirmations", 0)
        if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 1000:
            raise ConfigError(
                f"[chain] confirmations = {depth!r} in {config} is not a whole number of blocks from 0 to "
                "1000; set it to 0 on a local chain, or see README's \"Running on a real network\"."
            )
        timeout = max(DEFAULT_TIMEOUT_S, 4 * float(replace))
        max_fee = None if cap is None else int(round(float(cap) * GWEI))
        return cls(max_fee_wei=max_fee, replace_after_s=float(replace), confirmations=depth,
                   journal_dir=journal_dir, timeout_s=timeout)

    @property
    def poll_s(self) -> float:
        return min(1.0, max(0.05, self.replace_after_s / 5))


DEFAULT_POLICY = TxPolicy()


def gwei(wei: int) -> str:
    return f"{wei / GWEI:.9g} gwei"


# ------------------------------------------------------------------------------ fees


def check_fee_cap(tx: dict[str, Any], policy: TxPolicy) -> None:
    """FeeCapError, one sentence naming the cap, the chain's fee and the setting, when ``tx``'s
    max fee per gas (or gas price) is over the cap."""
    cap = policy.max_fee_wei
    if cap is None:
        return
    fix = ("nothing was sent; wait for fees to fall or raise [chain] max_fee_gwei in fedledger.toml "
           "(or --max-fee-gwei).")
    if "maxFeePerGas" in tx:
        needed, priority = int(tx["maxFeePerGas"]), int(tx.get("maxPriorityFeePerGas", 0))
        if needed > cap:
            base = (needed - priority) // 2
            raise FeeCapError(
                f"the chain's base fee is {gwei(base)}, so this transaction needs a max fee of {gwei(needed)} "
                f"(twice the base fee plus a {gwei(priority)} priority fee), over the cap of {gwei(cap)}; {fix}"
            )
    elif "gasPrice" in tx and int(tx["gasPrice"]) > cap:
        raise FeeCapError(
            f"the chain's gas price is {gwei(int(tx['gasPrice']))}, over the cap of {gwei(cap)}; {fix}"
        )


def _bump(value: int) -> int:
    return -(-value * BUMP_NUMERATOR // BUMP_DENOMINATOR)  # ceiling: never less than +12.5 %


def _current_fees(w3: Web3) -> tuple[int | None, int]:
    """The next block's base fee (None on a legacy-fee chain) and the suggested priority fee (or gas price)."""
    block = w3.eth.get_block("pending")
    base = block.get("baseFeePerGas")
    if base is None:
        return None, int(w3.eth.gas_price)
    return int(base), int(w3.eth.max_priority_fee)


def bumped_fees(tx: dict[str, Any], w3: Web3, policy: TxPolicy) -> dict[str, int] | None:
    """The fee fields of a replacement for ``tx``: each raised by at least 12.5 % and at least to
    what the chain asks now, or None when the cap leaves no room for a full bump."""
    cap = policy.max_fee_wei
    base, suggested = _current_fees(w3)
    if "maxFeePerGas" in tx:
        priority = max(_bump(int(tx["maxPriorityFeePerGas"])), suggested)
        max_fee = max(_bump(int(tx["maxFeePerGas"])), priority + 2 * (base or 0))
        if cap is not None:
            max_fee = min(max_fee, cap)
        priority = min(priority, max_fee)
        if max_fee < _bump(int(tx["maxFeePerGas"])) or priority < _bump(int(tx["maxPriorityFeePerGas"])):
            return None
        return {"maxFeePerGas": max_fee, "maxPriorityFeePerGas": priority}
    price = max(_bump(int(tx["gasPrice"])), suggested)
    if cap is not None:
        price = min(price, cap)
    return None if price < _bump(int(tx["gasPrice"])) else {"gasPrice": price}


# ------------------------------------------------------------------------------ the journal


@dataclass
class Flight:
    """One nonce of one sender in flight: the transaction's fields and every signed version sent."""

    sender: str
    tx: dict[str, Any]  # the last version's fields (nonce, fees, to, data, value, gas, chainId)
    versions: list[tuple[str, str | None]] = field(default_factory=list)  # (hash, raw) oldest first
    path: Path | None = None  # its journal file, None without a journal

    @property
    def nonce(self) -> int:
        return int(self.tx["nonce"])

    @property
    def hashes(self) -> list[str]:
        return [tx_hash for tx_hash, _ in self.versions]

    def same_call(self, tx: dict[str, Any]) -> bool:
        """Whether ``tx`` asks the same thing: same chain, recipient, data and value."""
        def key(fields: dict[str, Any]) -> tuple[Any, ...]:
            data = fields.get("data") or "0x"
            data = data.lower() if isinstance(data, str) else Web3.to_hex(data)
            return (int(fields.get("chainId", 0)), str(fields.get("to") or "").lower(), data, int(fields.get("value", 0)))
        return key(self.tx) == key(tx)

    def record(self) -> None:
        if self.path is None:
            return
        document = {"sender": self.sender, "tx": _jsonable(self.tx),
                    "versions": [{"hash": h, "raw": raw} for h, raw in self.versions]}
        atomic_write_bytes(self.path, json.dumps(document, sort_keys=True, indent=1).encode())

    def forget(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def _jsonable(tx: dict[str, Any]) -> dict[str, Any]:
    return {name: Web3.to_hex(value) if isinstance(value, (bytes, bytearray)) else value
            for name, value in tx.items() if name != "accessList" or value}


def journal_path(policy: TxPolicy, chain_id: int, sender: str, nonce: int) -> Path | None:
    if policy.journal_dir is None:
        return None
    return Path(policy.journal_dir) / JOURNAL_FOLDER / f"{chain_id}-{sender.lower()}-{nonce}.json"


def journaled(policy: TxPolicy, chain_id: int, sender: str) -> list[Flight]:
    """This sender's transactions on this chain that a process sent and did not see mined, by nonce."""
    if policy.journal_dir is None:
        return []
    folder = Path(policy.journal_dir) / JOURNAL_FOLDER
    flights = []
    for path in folder.glob(f"{chain_id}-{sender.lower()}-*.json"):
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            flight = Flight(sender, document["tx"], [(v["hash"], v["raw"]) for v in document["versions"]], path)
            flight.nonce  # noqa: B018 - a malformed entry fails here
        except (OSError, ValueError, KeyError, TypeError):
            raise ChainError(
                f"the transaction journal {path} is unreadable; move it away after checking its nonce's "
                "transaction on a block explorer, then run the command again."
            ) from None
        flights.append(flight)
    return sorted(flights, key=lambda flight: flight.nonce)


# ------------------------------------------------------------------------------ sending


def _send_raw(w3: Web3, raw: str, *, again: bool) -> None:
    """Send a signed transaction. Sent ``again`` (a resend, a replacement), an answer that the node
    holds it already, has mined its nonce, or keeps a version it prefers is not an error: the
    receipt checks that follow tell which version won."""
    try:
        w3.eth.send_raw_transaction(raw)
    except Web3RPCError as error:
        message = str(error).lower()
        if not again:
            raise
        if not any(known in message for known in ("already", "known", "nonce too low", "underpriced")):
            raise


def send_signed(
    w3: Web3, account: LocalAccount, build: Callable[[dict[str, Any]], dict[str, Any]], fields: dict[str, Any],
    *, policy: TxPolicy, chain_id: int,
) -> Flight:
    """Sign and send the transaction ``build(fields)`` makes, after finishing what the journal holds
    for this sender. Call under the sender's lock. Returns its flight (a journaled one adopted when
    it is the same call)."""
    sender = account.address
    tx = build(fields)
    earlier = journaled(policy, chain_id, sender)
    if earlier:
        mined_nonce = int(w3.eth.get_transaction_count(sender, "latest"))
        for flight in earlier:
            if flight.nonce < mined_nonce and _receipt(w3, flight, 0) is None:
                flight.forget()  # its nonce went to another transaction: nothing of it was done
                continue
            if flight.same_call(tx):
                return flight  # the killed sender's very call: wait for it, do not send it twice
            await_receipt(w3, account, flight, policy)  # another call: mined first, so no gap
            flight.forget()
        tx = build({**fields, "nonce": int(w3.eth.get_transaction_count(sender, "pending"))})
    check_fee_cap(tx, policy)
    flight = Flight(sender, tx, path=journal_path(policy, chain_id, sender, int(tx["nonce"])))
    try:
        _sign_and_send(w3, account, flight, tx, again=False)
    except BaseException:
        flight.forget()  # refused by the node (or never left): nothing is in flight
        raise
    return flight


def _sign_and_send(w3: Web3, account: LocalAccount, flight: Flight, tx: dict[str, Any], *, again: bool) -> None:
    signed = account.sign_transaction(tx)
    flight.tx = dict(tx)
    flight.versions.append((Web3.to_hex(signed.hash), Web3.to_hex(signed.raw_transaction)))
    flight.record()  # before it leaves: a sender killed now finds it when it starts again
    _send_raw(w3, flight.versions[-1][1] or "", again=again)


def _receipt(w3: Web3, flight: Flight, confirmations: int) -> Any | None:
    """The receipt of whichever version is mined (None: none yet, or not yet ``confirmations`` deep,
    or its block reorganized away)."""
    for tx_hash in reversed(flight.hashes):
        try:
            receipt = w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            continue
        if receipt is None or receipt.get("blockNumber") is None:
            continue
        if confirmations == 0:
            return receipt
        number = int(receipt["blockNumber"])
        if int(w3.eth.block_number) < number + confirmations:
            return None
        try:
            block = w3.eth.get_block(number)
        except BlockNotFound:  # a node in the middle of a reorganization: not deep yet, ask again
            return None
        return receipt if bytes(block["hash"]) == bytes(receipt["blockHash"]) else None
    return None


def _in_pool(w3: Web3, flight: Flight) -> bool:
    for tx_hash in reversed(flight.hashes):
        try:
            if w3.eth.get_transaction(tx_hash) is not None:  # type: ignore[arg-type]
                return True
        except TransactionNotFound:
            continue
    return False


def await_receipt(w3: Web3, account: LocalAccount | None, flight: Flight, policy: TxPolicy) -> Any:
    """Wait for one of ``flight``'s versions to be mined (and ``policy.confirmations`` deep),
    replacing it when stuck and resending it when dropped (only when ``account`` can sign)."""
    deadline = time.monotonic() + policy.timeout_s
    acted = time.monotonic()
    while True:
        receipt = _receipt(w3, flight, policy.confirmations)
        if receipt is not None:
            flight.forget()
            return receipt
        now = time.monotonic()
        if now >= deadline:
            raise ChainError(_timeout_sentence(flight, policy))
        if account is not None and flight.versions[-1][1] is not None and now - acted >= policy.replace_after_s:
            acted = now
            _unstick(w3, account, flight, policy)
        time.sleep(policy.poll_s)


def _unstick(w3: Web3, account: LocalAccount, flight: Flight, policy: TxPolicy) -> None:
    """One step for a transaction not mined in time: resend it if the pool lost it, else replace it
    with higher fees (if the cap allows); ChainError if its nonce went to another transaction."""
    if int(w3.eth.get_transaction_count(flight.sender, "latest")) > flight.nonce:
        if _receipt(w3, flight, 0) is None:
            flight.forget()
            raise ChainError(
                f"nonce {flight.nonce} of {flight.sender} was used by another transaction, not by "
                f"{flight.hashes[-1]}; another tool sends from this account: stop it, then run the command again."
            )
        return  # mined; confirmations pending
    if not _in_pool(w3, flight):
        _send_raw(w3, flight.versions[-1][1] or "", again=True)
        return
    fees = bumped_fees(flight.tx, w3, policy)
    if fees is not None:
        _sign_and_send(w3, account, flight, {**flight.tx, **fees}, again=True)


def _timeout_sentence(flight: Flight, policy: TxPolicy) -> str:
    fee = flight.tx.get("maxFeePerGas", flight.tx.get("gasPrice"))
    fee_text = f", its max fee {gwei(int(fee))}" if fee is not None else ""
    cap_text = f" (cap {gwei(policy.max_fee_wei)})" if policy.max_fee_wei is not None else ""
    depth = f" and {policy.confirmations} blocks deep" if policy.confirmations else ""
    nonce = f"nonce {flight.tx['nonce']}, " if "nonce" in flight.tx else ""
    return (
        f"transaction {flight.hashes[-1]} ({nonce}{fee_text[2:]}{cap_text}{', ' if fee_text else ''}{len(flight.versions)} "
        f"version(s) sent) was not mined{depth} within {policy.timeout_s:g} s; check that the node mines "
        "blocks, or raise [chain] max_fee_gwei if fees are over the cap, then run the command again "
        "(it finds the transaction in the journal)."
    )
