"""Typed Python client of the Federation contract: every function and event, reverts as exceptions.

Transactions are signed here with a ``LocalAccount`` when one is given (nonces taken from the
node's pending count under a per-address lock, so several clients and threads in one process
never reuse one), or sent from an unlocked node account otherwise (the in-process chain and
anvil's dev accounts). Every transaction waits for its receipt. A revert becomes the class of
ledger.chain.contract_errors named after the contract's custom error.

Round trips are counted (ledger.chain.round_trips): the chain id is asked once per connection,
and reads a step needs at one moment go as one JSON-RPC batch (a party's ``submission_status``; a
transaction's nonce and fees), one by one on the in-process chain. Nothing that can change is
kept between calls; a round's RoundOpened log is, checked against its block's hash at each use.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import requests
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_keys.exceptions import BadSignature
from eth_account.signers.local import LocalAccount
from eth_utils import is_address, keccak, to_checksum_address
from eth_utils.exceptions import ValidationError as EvmValidationError
from hexbytes import HexBytes
from web3 import EthereumTesterProvider, Web3
from web3.datastructures import AttributeDict
from web3.logs import DISCARD
from web3.exceptions import (
    BlockNotFound,
    ContractLogicError,
    TimeExhausted,
    Web3RPCError,
)

from ledger.ipfs.cid import RAW, cid_from_parts, cid_to_bytes
from ledger.contract_constants import DEFAULT_ADMIN_DELAY, RoundMessageKind
from ledger.chain import contract_errors
from ledger.chain.contract_errors import PARTICIPANT_STATUSES, ROUND_STATES, decode_revert, error_from_data
from ledger.chain.round_trips import cache_chain_id, json_rpc_batch
from ledger.chain.transactions import DEFAULT_POLICY, Flight, TxPolicy, await_receipt, send_signed
from ledger.fixed_point import budget_to_micros, delta_to_units, micros_to_epsilon, units_to_delta
from ledger.errors import (
    ChainError,
    ChainUnreachableError,
    ConfigError,
    ContractRevertError,
    InvalidInputError,
    LedgerError,
)
from ledger.types import Address, Cid, RoundId

ARTIFACT = Path(__file__).resolve().parents[2] / "contracts" / "build" / "Federation.json"
EIP712_NAME = "Federation"
EIP712_VERSION = "1"
ROLES = {
    "admin": b"\0" * 32,
    "coordinator": keccak(text="COORDINATOR_ROLE"),
    "aggregator": keccak(text="AGGREGATOR_ROLE"),
}
JOIN_TYPES = {
    "Join": [
        {"name": "participant", "type": "address"},
        {"name": "version", "type": "uint256"},
        {"name": "termsCodec", "type": "uint8"},
        {"name": "termsDigest", "type": "bytes32"},
        {"name": "deadline", "type": "uint256"},
    ]
}
UPDATE_TYPES = {
    "Update": [
        {"name": "participant", "type": "address"},
        {"name": "roundId", "type": "uint256"},
        {"name": "codec", "type": "uint8"},
        {"name": "digest", "type": "bytes32"},
        {"name": "samples", "type": "uint64"},
        {"name": "metricsHash", "type": "bytes32"},
        {"name": "epsilon", "type": "uint64"},
        {"name": "deadline", "type": "uint256"},
    ]
}
ROUND_MESSAGE_TYPES = {  # the contract's _ROUND_MESSAGE_TYPEHASH (private: no getter)
    "RoundMessage": [
        {"name": "participant", "type": "address"},
        {"name": "roundId", "type": "uint256"},
        {"name": "kind", "type": "uint8"},
        {"name": "codec", "type": "uint8"},
        {"name": "digest", "type": "bytes32"},
        {"name": "deadline", "type": "uint256"},
    ]
}
ENCRYPTION_KEY_TYPES = {  # the contract's _ENCRYPTION_KEY_TYPEHASH (private: no getter)
    "EncryptionKey": [
        {"name": "participant", "type": "address"},
        {"name": "publicKey", "type": "bytes32"},
        {"name": "previousKey", "type": "bytes32"},
        {"name": "deadline", "type": "uint256"},
    ]
}
RECEIPT_TIMEOUT = 120


@dataclass(frozen=True)
class TxResult:
    tx_hash: str
    block: int
    gas_used: int


@dataclass(frozen=True)
class AgreementInfo:
    version: int
    terms_cid: Cid
    block: int
    epsilon_budget_micros: int = 0  # the privacy budget in the contract's units; 0 and 0: none
    delta_units: int = 0

    @property
    def epsilon_budget(self) -> float | None:
        """The agreement's ε budget, None when it has none."""
        return micros_to_epsilon(self.epsilon_budget_micros) if self.epsilon_budget_micros else None

    @property
    def delta(self) -> float | None:
        return units_to_delta(self.delta_units) if self.delta_units else None


@dataclass(frozen=True)
class ParticipantInfo:
    address: Address
    status: str  # "none" | "pending" | "admitted" | "suspended" | "revoked"
    accepted_version: int
    index: int | None = None  # its submission bit, given at its first admission


@dataclass(frozen=True)
class AdminInfo:
    admin: Address
    pending: Address | None  # the proposed next admin, if a transfer is under way
    accept_after: int  # unix time from which ``pending`` may accept (0: none pending)
    delay: int  # seconds between a proposal and its earliest acceptance


@dataclass(frozen=True)
class RoundInfo:
    round_id: RoundId
    base_cid: Cid
    deadline: int
    min_updates: int
    config_hash: bytes
    state: str  # "open" | "finalized" | "cancelled"
    submissions: int
    global_cid: Cid | None
    receipt_cid: Cid | None
    opened_block: int
    agreement_version: int = 0


@dataclass(frozen=True)
class Submission:
    round_id: RoundId
    participant: Address
    cid: Cid
    samples: int
    metrics_hash: bytes
    block: int
    tx_hash: str
    epsilon_micros: int = 0  # the party's declared cumulative ε, in millionths


@dataclass(frozen=True)
class RoundMessage:
    """One message of a round's bulletin board (a ``RoundMessagePosted`` event): the CID of a
    document held off chain that ``party`` posted for ``round_id`` (see ``post_round_message``)."""

    round_id: RoundId
    party: Address
    kind: RoundMessageKind
    cid: Cid
    block_number: int
    tx_hash: str
    log_index: int


@dataclass(frozen=True)
class SubmissionStatus:
    """What a party reads before taking part in a round, read at one moment (one round trip on a
    JSON-RPC node): whether it already submitted, its privacy figures, and the round."""

    round_id: RoundId
    participant: Address
    submitted: bool
    epsilon_spent_micros: int  # its last declared cumulative ε (millionths), as ``privacy()[0]``
    epsilon_budget_micros: int  # the budget of its accepted version (0: none), as ``privacy()[1]``
    round_info: RoundInfo | None  # None when reading the round failed: ``round()`` raises why
    round_error: LedgerError | None = None

    def round(self) -> RoundInfo:
        """The round as ``FederationClient.round`` reads it, or the error that read would raise."""
        if self.round_info is None:
            assert self.round_error is not None
            raise self.round_error
        return self.round_info


@dataclass(frozen=True)
class SignedUpdate:
    """One party's update as a relayer sends it: the fields of a submission and the party's
    EIP-712 signature over them (valid until ``deadline``, unix seconds)."""

    participant: Address
    cid: Cid
    samples: int
    metrics_hash: bytes
    epsilon_micros: int
    deadline: int
    signature: bytes

    def as_tuple(self) -> tuple[Any, ...]:
        """The contract's ``SignedUpdate`` struct."""
        codec, digest = _cid_parts(self.cid)
        return (self.participant, codec, digest, self.samples, self.metrics_hash, self.epsilon_micros,
                self.deadline, self.signature)


@dataclass(frozen=True)
class SignedRoundMessage:
    """One party's round message as a relayer posts it (``postSignedRoundMessage``): its kind
    (ledger.contract_constants.RoundMessageKind), the CID of its document, and the party's EIP-712
    signature over them and the round (valid until ``deadline``, unix seconds)."""

    participant: Address
    kind: int
    cid: Cid
    deadline: int
    signature: bytes


@dataclass(frozen=True)
class SignedEncryptionKey:
    """One party's encryption key registration as a relayer sends it (``publishSignedEncryptionKey``):
    the new X25519 public key, the key it replaces (None: the party has none registered; the signature
    holds only while that one is), and the party's EIP-712 signature (valid until ``deadline``, unix
    seconds)."""

    participant: Address
    public_key: bytes
    previous_key: bytes | None
    deadline: int
    signature: bytes


@dataclass(frozen=True)
class RelayOutcome:
    """What a relayed batch did: the transaction, and for each item its index in the batch and
    either None (recorded) or the contract error that kept it out."""

    tx: TxResult
    results: list[tuple[int, Address, ContractRevertError | None]]

    @property
    def recorded(self) -> list[int]:
        return [i for i, _, error in self.results if error is None]


@lru_cache(maxsize=1)
def load_artifact() -> dict[str, Any]:
    """The committed compiler output (ABI, bytecode); see deploy/compile.py."""
    if not ARTIFACT.is_file():
        raise ConfigError(f"{ARTIFACT} is missing; run `python -m deploy.compile` in the repository.")
    return json.loads(ARTIFACT.read_text(encoding="utf-8"))


def _domain(chain_id: int, contract: str) -> dict[str, Any]:
    """The EIP-712 domain of one deployment: what binds a signature to this chain and contract."""
    return {
        "name": EIP712_NAME,
        "version": EIP712_VERSION,
        "chainId": chain_id,
        "verifyingContract": to_checksum_address(contract),
    }


def join_typed_data(
    *, chain_id: int, contract: str, participant: str, version: int, terms_cid: str, deadline: int
) -> dict[str, Any]:
    """The EIP-712 document a party signs to accept agreement ``version`` of one deployment."""
    binary = cid_to_bytes(terms_cid)
    return {
        "domain": _domain(chain_id, contract),
        "types": JOIN_TYPES,
        "message": {
            "participant": to_checksum_address(participant),
            "version": version,
            "termsCodec": binary[1],
            "termsDigest": binary[4:],
            "deadline": deadline,
        },
    }


def update_typed_data(
    *,
    chain_id: int,
    contract: str,
    participant: str,
    round_id: int,
    cid: str,
    samples: int,
    metrics_hash: bytes,
    epsilon_micros: int,
    deadline: int,
) -> dict[str, Any]:
    """The EIP-712 document a party signs to have a relayer record its update to ``round_id``."""
    codec, digest = _cid_parts(cid)
    return {
        "domain": _domain(chain_id, contract),
        "types": UPDATE_TYPES,
        "message": {
            "participant": to_checksum_address(participant),
            "roundId": round_id,
            "codec": codec,
            "digest": digest,
            "samples": _uint64(samples, "sample count"),
            "metricsHash": _bytes32(metrics_hash, "metrics hash"),
            "epsilon": _uint64(epsilon_micros, "declared ε (millionths)"),
            "deadline": deadline,
        },
    }


def round_message_typed_data(
    *, chain_id: int, contract: str, participant: str, round_id: int, kind: int, cid: str, deadline: int
) -> dict[str, Any]:
    """The EIP-712 document a party signs to have a relayer post its message of ``kind`` for ``round_id``."""
    codec, digest = _cid_parts(cid)
    return {
        "domain": _domain(chain_id, contract),
        "types": ROUND_MESSAGE_TYPES,
        "message": {
            "participant": to_checksum_address(participant),
            "roundId": round_id,
            "kind": _message_kind(kind),
            "codec": codec,
            "digest": digest,
            "deadline": deadline,
        },
    }


def encryption_key_typed_data(
    *, chain_id: int, contract: str, participant: str, public_key: bytes, previous_key: bytes | None, deadline: int
) -> dict[str, Any]:
    """The EIP-712 document a party signs to have a relayer register ``public_key`` as its encryption key in
    place of ``previous_key`` (None: it has none registered)."""
    return {
        "domain": _domain(chain_id, contract),
        "types": ENCRYPTION_KEY_TYPES,
        "message": {
            "participant": to_checksum_address(participant),
            "publicKey": _bytes32(public_key, "encryption public key"),
            "previousKey": bytes(32) if previous_key is None else _bytes32(previous_key, "previous encryption key"),
            "deadline": deadline,
        },
    }


def _message_kind(kind: int) -> int:
    if isinstance(kind, bool) or not isinstance(kind, int) or not 0 <= kind < 256:
        raise InvalidInputError(f"a round message kind is a number from 0 to 255 (1 advertise, 2 reveal), not {kind!r}.")
    return int(kind)


def sign_join_message(account: LocalAccount, **fields: Any) -> bytes:
    """Sign :func:`join_typed_data` (same keywords, participant = the account) with ``account``."""
    typed = join_typed_data(participant=account.address, **fields)
    signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
    return bytes(signed.signature)


def _address(value: str, what: str = "address") -> Address:
    if not isinstance(value, str) or not is_address(value):
        raise InvalidInputError(f"{value!r} is not an Ethereum {what}; give a 0x-prefixed 40-hex-digit address.")
    return Address(to_checksum_address(value))


def _cid_parts(cid: str) -> tuple[int, bytes]:
    binary = cid_to_bytes(cid)
    return binary[1], binary[4:]


def _uint64(value: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise InvalidInputError(f"the {what} must be a whole number from 0 to 2^64-1, not {value!r}.")
    return value


def _bytes32(value: bytes, what: str) -> bytes:
    if not isinstance(value, (bytes, bytearray)) or len(value) != 32:
        raise InvalidInputError(f"the {what} must be 32 bytes (a sha-256 or keccak digest), not {value!r}.")
    return bytes(value)


_LOCKS_GUARD = threading.Lock()
_ACCOUNT_LOCKS: dict[str, threading.Lock] = {}


def _account_lock(address: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _ACCOUNT_LOCKS.setdefault(address, threading.Lock())


def _rpc_message(error: BaseException) -> str:
    first = error.args[0] if error.args else error
    return str(first.get("message", first)) if isinstance(first, dict) else str(first)


def _revert_types() -> tuple[type[BaseException], ...]:
    """What a revert raises: web3's errors, and eth-tester's TransactionFailed once eth-tester is loaded (only the
    in-process chain raises it; importing it imports py-evm, 0.3 s of CPU in every process on a real node)."""
    tester = sys.modules.get("eth_tester.exceptions")
    return (ContractLogicError, Web3RPCError, *((tester.TransactionFailed,) if tester is not None else ()))


@contextmanager
def _reverts(sender: str | None = None, *, reading: bool = False) -> Iterator[None]:
    """Turn a revert from either backend into its ledger.chain.contract_errors class (``reading``: a call
    or a log query, not a transaction)."""
    try:
        yield
    except _revert_types() as error:
        decoded = decode_revert(error)
        if decoded is not None:
            raise decoded from None
        message = _rpc_message(error)
        if isinstance(error, Web3RPCError) and "revert" not in message.lower():  # the node, not the contract
            if reading:
                raise ChainError(
                    f"the node refused to answer a read of the contract ({message}); point --rpc at a node "
                    "that serves this chain's state and logs."
                ) from None
            raise ChainError(
                f"the node refused the transaction{f' from {sender}' if sender else ''} ({message}); "
                "check that the account holds enough ether for gas and that no other tool uses its nonces."
            ) from None
        raise ContractRevertError(f"the contract refused the call ({message}).") from None
    except requests.exceptions.ConnectionError as error:
        raise ChainUnreachableError(
            f"the chain node stopped answering ({type(error).__name__}); start it (`fedledger chain up`) "
            "or check the RPC URL in fedledger.toml."
        ) from None
    except TimeExhausted:
        raise ChainError(
            f"no receipt within {RECEIPT_TIMEOUT} s; check that the node mines blocks (anvil does on every transaction)."
        ) from None


def next_block(w3: Web3) -> str:
    """The block tag at which a call is judged as the next transaction would be: "pending" on a
    JSON-RPC node, "latest" on the in-process chain (which serves no pending estimates, and whose
    clock only moves when a test moves it)."""
    return "latest" if isinstance(w3.provider, EthereumTesterProvider) else "pending"


def sender_address(w3: Web3, account: LocalAccount | str | None) -> Address:
    """The address a transaction from ``account`` (None: the node's first unlocked account) comes from."""
    if account is None:
        accounts = w3.eth.accounts
        if not accounts:
            raise ChainError("the node has no unlocked account to send from; give a key (--key or FEDLEDGER_PRIVATE_KEY).")
        return Address(to_checksum_address(accounts[0]))
    if isinstance(account, str):
        return _address(account)
    return Address(account.address)


def _nonce_and_fees(w3: Web3, sender: Address) -> dict[str, int]:
    """The sender's pending nonce and the fees web3 would fill in itself, read in one round trip
    where the node takes JSON-RPC batches: on an EIP-1559 chain the priority fee the node suggests
    (``eth_maxPriorityFeePerGas``) and a cap of that plus twice the pending block's base fee, as
    web3's defaults compute them (from the next block's base fee rather than the last one's). Where it cannot batch, has a gas price strategy, or its blocks
    carry no base fee (a legacy-fee chain), only the nonce is given and web3 fills the fees as it
    always has. Nothing here is kept: nonce and fees are read for each transaction."""
    answers = None
    if w3.eth.generate_gas_price({"from": sender}) is None:  # no gas price strategy (none reads the chain)
        answers = json_rpc_batch(w3, [
            ("eth_getTransactionCount", [sender, "pending"]),
            ("eth_maxPriorityFeePerGas", []),
            ("eth_getBlockByNumber", ["pending", False]),  # the next block's base fee: a spike shows at once
        ])
    if answers is None or "error" in answers[0]:
        return {"nonce": w3.eth.get_transaction_count(sender, "pending")}  # raises as it always did
    fields = {"nonce": int(answers[0]["result"], 16)}
    block = answers[2].get("result") or {}
    if "error" in answers[2] or block.get("baseFeePerGas") is None:
        return fields
    # A node without eth_maxPriorityFeePerGas: web3's own fallback (fee history), as before.
    priority = int(answers[1]["result"], 16) if "error" not in answers[1] else int(w3.eth.max_priority_fee)
    return {**fields, "maxPriorityFeePerGas": priority, "maxFeePerGas": priority + 2 * int(block["baseFeePerGas"], 16)}


def send_transaction(
    w3: Web3, call: Any, *, account: LocalAccount | str | None, chain_id: int | None = None,
    policy: TxPolicy | None = None,
) -> tuple[TxResult, Any]:
    """Send ``call`` (a contract function or constructor call) and wait for its receipt.

    A ``LocalAccount`` signs here, with the node's pending nonce (and the fees) read under a
    per-address lock; otherwise the node signs for its unlocked account. Reverts raise ledger.chain.contract_errors classes.

    ``policy`` (ledger.chain.transactions.TxPolicy; default: no fee cap, no journal) says how the
    transaction is seen through: a fee cap, replacement when stuck, confirmations.

    Gas is estimated against the pending block, not the latest: a node that mines on demand
    (anvil) may have its latest block minutes old, and a call that depends on time (cancelling a
    round after its deadline) must be judged at the time it will be mined, not then.
    """
    sender = sender_address(w3, account)
    with _reverts(sender):
        gas = call.estimate_gas({"from": sender}, block_identifier=next_block(w3))
        signer = None if account is None or isinstance(account, str) else account
        if signer is None:
            flight = Flight(sender, {}, [(Web3.to_hex(call.transact({"from": sender, "gas": gas})), None)])
        else:
            with _account_lock(sender):
                chain = int(w3.eth.chain_id) if chain_id is None else chain_id
                flight = send_signed(  # fee cap, journal (ledger.chain.transactions)
                    w3, signer, lambda fields: call.build_transaction({"from": sender, "chainId": chain, "gas": gas, **fields}),
                    _nonce_and_fees(w3, sender), policy=policy or DEFAULT_POLICY, chain_id=chain,
                )
        receipt = await_receipt(w3, signer, flight, policy or DEFAULT_POLICY)  # replaced when stuck, resent when dropped
    result = TxResult(Web3.to_hex(receipt["transactionHash"]), int(receipt["blockNumber"]), int(receipt["gasUsed"]))
    if receipt["status"] != 1:
        if hasattr(call, "call"):
            # It passed estimation but reverted when mined (a deadline or another sender got there
            # first): replay it in the mined block's context to name the error.
            with _reverts():
                call.call({"from": sender}, block_identifier=result.block)
        raise ContractRevertError(f"transaction {result.tx_hash} reverted in block {result.block}.")
    return result, receipt


def _log_entry(raw: dict[str, Any]) -> AttributeDict[str, Any]:
    """A raw JSON-RPC log as web3's ``get_logs`` returns it (numbers as ints, hashes and data as bytes)."""
    return AttributeDict({
        "address": to_checksum_address(raw["address"]),
        "topics": [HexBytes(topic) for topic in raw["topics"]],
        "data": HexBytes(raw["data"]),
        "blockNumber": int(raw["blockNumber"], 16),
        "blockHash": HexBytes(raw["blockHash"]),
        "transactionIndex": int(raw["transactionIndex"], 16),
        "transactionHash": HexBytes(raw["transactionHash"]),
        "logIndex": int(raw["logIndex"], 16),
        "removed": bool(raw.get("removed", False)),
    })


class FederationClient:
    """One deployed Federation contract, seen through one sender (or read-only)."""

    def __init__(
        self,
        w3: Web3,
        address: str,
        *,
        account: LocalAccount | str | None = None,
        from_block: int = 0,
        policy: TxPolicy | None = None,
    ) -> None:
        self.w3 = w3
        self.address = _address(address, "contract address")
        self.account = account
        self.from_block = from_block
        self.policy = policy or DEFAULT_POLICY  # fee cap, replacement, journal, confirmations
        cache_chain_id(w3)  # a connection's chain id cannot change: asked once, not before every call
        self.contract = w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self._chain_id: int | None = None
        # Round events never change once mined; the cache saves a log scan per ``round()`` call
        # (on the in-process chain a scan costs time linear in the chain's length).
        self._round_events: dict[tuple[str, int], Any] = {}

    # ---------------------------------------------------------------- construction

    @classmethod
    def deploy(
        cls, w3: Web3, *, account: LocalAccount | str | None = None, admin_delay: int = DEFAULT_ADMIN_DELAY
    ) -> tuple[FederationClient, TxResult]:
        """Deploy a fresh contract from the committed artifact; the sender gets every role.

        ``admin_delay`` (seconds) is how long a proposed new admin must wait before accepting.
        """
        if isinstance(admin_delay, bool) or not isinstance(admin_delay, int) or not 0 <= admin_delay < 2**48:
            raise InvalidInputError(f"the admin delay must be a whole number of seconds from 0 to 2^48-1, not {admin_delay!r}.")
        artifact = load_artifact()
        factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        result, receipt = send_transaction(w3, factory.constructor(admin_delay), account=account)
        client = cls(w3, receipt["contractAddress"], account=account, from_block=result.block)
        return client, result

    def with_account(self, account: LocalAccount | str | None) -> FederationClient:
        """The same contract, another sender."""
        client = FederationClient(self.w3, self.address, account=account, from_block=self.from_block, policy=self.policy)
        client._chain_id = self._chain_id
        client._round_events = self._round_events  # same chain, same events
        return client

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = int(self.w3.eth.chain_id)
        return self._chain_id

    @property
    def sender(self) -> Address:
        """The address transactions come from."""
        return sender_address(self.w3, self.account)

    def _send(self, call: Any) -> tuple[TxResult, Any]:
        return send_transaction(self.w3, call, account=self.account, chain_id=self.chain_id, policy=self.policy)

    def _transact(self, name: str, *args: Any) -> TxResult:
        return self._send(getattr(self.contract.functions, name)(*args))[0]

    def _call(self, name: str, *args: Any, block: int | str = "latest") -> Any:
        with _reverts(reading=True):
            return getattr(self.contract.functions, name)(*args).call(block_identifier=block)

    def _logs(self, event: str, **filters: Any) -> list[Any]:
        with _reverts(reading=True):
            logs = getattr(self.contract.events, event).get_logs(
                argument_filters=filters or None, from_block=self.from_block, to_block="latest"
            )
        return sorted(logs, key=lambda log: (log["blockNumber"], log["logIndex"]))

    # ---------------------------------------------------------------- agreements and membership

    def publish_agreement(
        self, terms_cid: Cid, *, epsilon_budget: float | None = None, delta: float | None = None
    ) -> tuple[int, TxResult]:
        """Publish the next agreement version, with a privacy budget (ε, δ) or none; returns it."""
        codec, digest = _cid_parts(terms_cid)
        if (epsilon_budget is None) != (delta is None):
            raise InvalidInputError(
                "a privacy budget needs both ε and δ; give --epsilon-budget E and --delta D together, or neither."
            )
        budget = 0 if epsilon_budget is None else budget_to_micros(epsilon_budget)
        delta_units = 0 if delta is None else delta_to_units(delta)
        result, receipt = self._send(self.contract.functions.publishAgreement(codec, digest, budget, delta_units))
        event = self.contract.events.AgreementPublished().process_receipt(receipt)[0]
        return int(event["args"]["version"]), result

    def agreement_version(self, *, block: int | str = "latest") -> int:
        """The agreement version in force (at ``block``, default the latest)."""
        return int(self._call("agreementVersion", block=block))

    def agreement(self, version: int | None = None, *, block: int | str = "latest") -> AgreementInfo:
        """Agreement ``version`` (None: the one in force at ``block``)."""
        version = self.agreement_version(block=block) if version is None else version
        logs = self._logs("AgreementPublished", version=version) if version > 0 else []
        if not logs:
            raise InvalidInputError(
                f"there is no agreement version {version}; publish one with `fedledger agreement publish`."
            )
        args = logs[0]["args"]
        return AgreementInfo(
            version,
            cid_from_parts(args["termsCodec"], args["termsDigest"]),
            logs[0]["blockNumber"],
            int(args["epsilonBudget"]),
            int(args["delta"]),
        )

    def terms_cid(self, version: int) -> Cid:
        """The terms CID of agreement ``version``, read from storage (no log scan)."""
        codec, digest, _budget, _delta = self._call("agreement", version)
        if codec == 0:
            raise InvalidInputError(
                f"there is no agreement version {version}; publish one with `fedledger agreement publish`."
            )
        return cid_from_parts(codec, digest)

    def join_typed_data(self, participant: str, *, version: int, deadline: int) -> dict[str, Any]:
        """The EIP-712 document ``participant`` signs to accept ``version`` of this deployment."""
        return join_typed_data(
            chain_id=self.chain_id,
            contract=self.address,
            participant=participant,
            version=version,
            terms_cid=self.terms_cid(version),
            deadline=deadline,
        )

    def sign_join(self, account: LocalAccount, *, version: int, deadline: int) -> bytes:
        """The EIP-712 signature by which ``account`` accepts agreement ``version`` of this deployment."""
        typed = self.join_typed_data(account.address, version=version, deadline=deadline)
        signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
        return bytes(signed.signature)

    def join(self, participant: str, *, version: int, deadline: int, signature: bytes) -> TxResult:
        """Record ``participant``'s acceptance; the sender may be the participant or any relayer."""
        return self._transact("join", _address(participant), version, deadline, bytes(signature))

    def approve(self, participant: str) -> TxResult:
        return self._transact("approve", _address(participant))

    def suspend(self, participant: str) -> TxResult:
        return self._transact("suspend", _address(participant))

    def reinstate(self, participant: str) -> TxResult:
        return self._transact("reinstate", _address(participant))

    def revoke(self, participant: str) -> TxResult:
        return self._transact("revoke", _address(participant))

    def participant(self, address: str, *, block: int | str = "latest") -> ParticipantInfo:
        """A party's status and accepted agreement version (at ``block``, default the latest)."""
        checksummed = _address(address)
        status, accepted, index, has_index = self._call("participant", checksummed, block=block)
        return ParticipantInfo(checksummed, PARTICIPANT_STATUSES[status], int(accepted), int(index) if has_index else None)

    def participants(self) -> list[ParticipantInfo]:
        """Every address that ever joined, in the order it first joined."""
        seen: dict[str, None] = {}
        for log in self._logs("ParticipantJoined"):
            seen.setdefault(log["args"]["participant"], None)
        return [self.participant(address) for address in seen]

    def participant_count(self) -> int:
        """How many parties were ever admitted (each holds a submission bit index)."""
        return int(self._call("participantCount"))

    def privacy(self, address: str, *, block: int | str = "latest") -> tuple[int, int]:
        """(cumulative ε last declared, budget of its accepted version), both in millionths (budget 0: none)."""
        spent, budget = self._call("privacy", _address(address), block=block)
        return int(spent), int(budget)

    # ---------------------------------------------------------------- encryption keys

    def publish_encryption_key(self, public_key: bytes) -> TxResult:
        """Register the sender's X25519 public key (32 bytes) as its encryption key."""
        return self._transact("publishEncryptionKey", _bytes32(public_key, "encryption public key"))

    def sign_encryption_key(self, account: LocalAccount, public_key: bytes, *, deadline: int) -> SignedEncryptionKey:
        """``account``'s signed registration of ``public_key``, for a relayer to send with
        ``publish_signed_encryption_key`` (its key signs; it sends nothing and needs no ether). It replaces
        the key ``account`` has registered now (read here), and holds only while that one is registered."""
        previous = self.encryption_key(account.address)
        typed = encryption_key_typed_data(
            chain_id=self.chain_id, contract=self.address, participant=account.address, public_key=public_key,
            previous_key=previous, deadline=deadline,
        )
        signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
        return SignedEncryptionKey(Address(account.address), bytes(public_key), previous, deadline, bytes(signed.signature))

    def _signed_key_call(self, signed: SignedEncryptionKey) -> Any:
        previous = bytes(32) if signed.previous_key is None else _bytes32(signed.previous_key, "previous encryption key")
        return self.contract.functions.publishSignedEncryptionKey(
            _address(signed.participant, "participant"), _bytes32(signed.public_key, "encryption public key"), previous,
            signed.deadline, signed.signature,
        )

    def _simulated_refusal(self, call: Any) -> ContractRevertError | None:
        """The contract error ``call`` would revert with if this client's sender sent it now (None: it would
        pass), simulated at the pending block: a signed call's signer needs no ether to be judged."""
        try:
            with _reverts(reading=True):
                call.call({"from": self.sender}, block_identifier=next_block(self.w3))
        except ContractRevertError as error:
            return error
        return None

    def check_signed_encryption_key(self, signed: SignedEncryptionKey) -> ContractRevertError | None:
        """The contract error that would refuse ``signed`` if this client sent it now (None: it would be
        registered): the call simulated from this client's sender at the pending block, so the contract
        itself judges the signature, its deadline, the key it replaces and the key, and the signer needs
        no ether."""
        return self._simulated_refusal(self._signed_key_call(signed))

    def publish_signed_encryption_key(self, signed: SignedEncryptionKey) -> TxResult:
        """Register ``signed``'s key (signed by its party: ``sign_encryption_key``), paid by this client's sender;
        the EncryptionKeyPublished event names the party, as if it had sent it itself. Refused with
        FederationInvalidEncryptionKey, FederationSignatureExpired, FederationInvalidSignature, or
        FederationEncryptionKeyChanged when the party's registered key is no longer the one it replaced."""
        return self._send(self._signed_key_call(signed))[0]

    def encryption_key(self, address: str, *, block: int | str = "latest") -> bytes | None:
        """The encryption public key ``address`` registered, None when it has none."""
        key = bytes(self._call("encryptionKey", _address(address), block=block))
        return None if key == b"\0" * 32 else key

    def _role(self, role: str) -> bytes:
        if role not in ROLES:
            raise InvalidInputError(f"{role!r} is not a role; use one of {', '.join(ROLES)}.")
        return ROLES[role]

    def grant_role(self, role: str, address: str) -> TxResult:
        """Grant ``role`` ("admin" | "coordinator" | "aggregator"); only the admin may."""
        return self._transact("grantRole", self._role(role), _address(address))

    def revoke_role(self, role: str, address: str) -> TxResult:
        return self._transact("revokeRole", self._role(role), _address(address))

    def has_role(self, role: str, address: str) -> bool:
        return bool(self._call("hasRole", self._role(role), _address(address)))

    # ---------------------------------------------------------------- the admin, handed over in two steps

    def admin(self) -> AdminInfo:
        """The admin, the proposed next one (if any) and when it may accept, and the transfer delay."""
        pending, schedule = self._call("pendingDefaultAdmin")
        return AdminInfo(
            admin=Address(to_checksum_address(self._call("defaultAdmin"))),
            pending=Address(to_checksum_address(pending)) if int(schedule) else None,
            accept_after=int(schedule),
            delay=int(self._call("defaultAdminDelay")),
        )

    def begin_admin_transfer(self, new_admin: str) -> TxResult:
        """Propose ``new_admin``; it may accept once the delay has passed. Only the admin."""
        return self._transact("beginDefaultAdminTransfer", _address(new_admin))

    def accept_admin_transfer(self) -> TxResult:
        """The proposed admin takes the role (the previous admin loses it)."""
        return self._transact("acceptDefaultAdminTransfer")

    def cancel_admin_transfer(self) -> TxResult:
        """Withdraw a pending proposal. Only the admin."""
        return self._transact("cancelDefaultAdminTransfer")

    # ---------------------------------------------------------------- rounds

    def open_round(self, *, base_cid: Cid, deadline: int, min_updates: int, config_hash: bytes) -> tuple[RoundId, TxResult]:
        """Open the next round; returns its id."""
        codec, digest = _cid_parts(base_cid)
        call = self.contract.functions.openRound(codec, digest, deadline, min_updates, _bytes32(config_hash, "config hash"))
        result, receipt = self._send(call)
        event = self.contract.events.RoundOpened().process_receipt(receipt)[0]
        return RoundId(int(event["args"]["roundId"])), result

    def round_count(self) -> int:
        return int(self._call("roundCount"))

    def open_round_ids(self) -> list[RoundId]:
        """The rounds open now, by id."""
        return sorted(RoundId(int(r)) for r in self._call("openRounds"))

    def round(self, round_id: int) -> RoundInfo:
        state, deadline, min_updates, submissions = self._call("round", round_id)
        opened = self._round_event("RoundOpened", round_id) if state else None
        return self._round_info(round_id, (state, deadline, min_updates, submissions), opened)

    def _round_info(self, round_id: int, view: Any, opened: Any) -> RoundInfo:
        """A RoundInfo from the ``round`` view and the round's RoundOpened log (None: no such round)."""
        state, deadline, min_updates, submissions = view
        if not state or opened is None:
            raise InvalidInputError(f"there is no round {round_id}; check `fedledger round status` for the rounds.")
        args = opened["args"]
        global_cid = receipt_cid = None
        if ROUND_STATES[state] == "finalized":
            final = self._round_event("RoundFinalized", round_id)["args"]
            global_cid = cid_from_parts(final["globalCodec"], final["globalDigest"])
            receipt_cid = cid_from_parts(final["receiptCodec"], final["receiptDigest"])
        return RoundInfo(
            round_id=RoundId(round_id),
            base_cid=cid_from_parts(args["baseCodec"], args["baseDigest"]),
            deadline=int(deadline),
            min_updates=int(min_updates),
            config_hash=bytes(args["configHash"]),
            state=ROUND_STATES[state],
            submissions=int(submissions),
            global_cid=global_cid,
            receipt_cid=receipt_cid,
            opened_block=int(opened["blockNumber"]),
            agreement_version=int(args["agreementVersion"]),
        )

    def _round_event(self, event: str, round_id: int) -> Any:
        """The first ``event`` log of ``round_id``, cached while its block is still on the chain."""
        cached = self._round_events.get((event, round_id))
        if cached is not None and self._still_on_chain(cached):
            return cached
        logs = self._logs(event, roundId=round_id)
        if not logs:
            return None
        self._round_events[(event, round_id)] = logs[0]
        return logs[0]

    def _still_on_chain(self, log: Any) -> bool:
        try:
            return bool(self.w3.eth.get_block(log["blockNumber"])["hash"] == log["blockHash"])
        except BlockNotFound:
            return False

    def submission_status(self, round_id: int, participant: str) -> SubmissionStatus:
        """Whether ``participant`` submitted to ``round_id``, its privacy figures and the round, read
        together: one JSON-RPC batch (``hasSubmitted``, ``privacy``, ``round`` and the round's
        RoundOpened log, or, when that log is cached, its block's hash), one by one where the
        connection cannot batch. Nothing is kept but the RoundOpened log, as ``round()`` keeps it.
        A failed read of the round is kept in the status and raised by its ``round()``."""
        party = _address(participant)
        cached = self._round_events.get(("RoundOpened", round_id))
        reads = [
            self._eth_call("hasSubmitted", round_id, party),
            self._eth_call("privacy", party),
            self._eth_call("round", round_id),
            ("eth_getBlockByNumber", [hex(int(cached["blockNumber"])), False]) if cached is not None else
            ("eth_getLogs", [{
                "address": self.address, "fromBlock": hex(self.from_block), "toBlock": "latest",
                "topics": [HexBytes(self.contract.events.RoundOpened().topic).to_0x_hex(), "0x" + int(round_id).to_bytes(32, "big").hex()],
            }]),
        ]
        with _reverts(reading=True):
            answers = json_rpc_batch(self.w3, reads)
        if answers is None:  # the in-process chain, or a node without batches: the same reads, one by one
            submitted, (spent, budget) = self.has_submitted(round_id, party), self.privacy(party)
            try:
                info, error = self.round(round_id), None
            except LedgerError as failed:
                info, error = None, failed
            return SubmissionStatus(RoundId(round_id), party, submitted, spent, budget, info, error)
        submitted = bool(self._decoded("hasSubmitted", answers[0]))
        spent, budget = self._decoded("privacy", answers[1])
        try:
            view = self._decoded("round", answers[2])
            opened = None
            if view[0]:
                opened = self._opened_from(answers[3], round_id, cached)
            info, error = self._round_info(round_id, view, opened), None
        except LedgerError as failed:
            info, error = None, failed
        return SubmissionStatus(RoundId(round_id), party, submitted, int(spent), int(budget), info, error)

    def _eth_call(self, name: str, *args: Any) -> tuple[str, list[Any]]:
        """The raw ``eth_call`` of a view at the latest block, for a batch."""
        return ("eth_call", [{"to": self.address, "data": self.contract.encode_abi(name, args=list(args))}, "latest"])

    def _decoded(self, name: str, answer: Any) -> Any:
        """A batched view's raw answer decoded as ``_call`` returns it; its error raised as ``_call`` raises it."""
        if "error" in answer:
            error = answer["error"]
            message = str(error.get("message", error)) if isinstance(error, dict) else str(error)
            data = error.get("data") if isinstance(error, dict) else None
            with _reverts(reading=True):
                if data is not None:
                    raise ContractLogicError(message, data=data)
                raise Web3RPCError(message, rpc_response=answer)
        outputs = [output["type"] for output in getattr(self.contract.functions, name).abi["outputs"]]
        values = self.w3.codec.decode(outputs, HexBytes(answer["result"]))
        return values[0] if len(values) == 1 else list(values)

    def _opened_from(self, answer: Any, round_id: int, cached: Any) -> Any:
        """The RoundOpened log from a batched answer: the logs themselves, or the block of the cached
        log (kept while that block is still on the chain; looked up again otherwise)."""
        if "error" in answer:
            error = answer["error"]
            with _reverts(reading=True):
                raise Web3RPCError(str(error.get("message", error)) if isinstance(error, dict) else str(error), rpc_response=answer)
        if cached is not None:
            block = answer.get("result")
            if block is not None and HexBytes(block["hash"]) == cached["blockHash"]:
                return cached
            self._round_events.pop(("RoundOpened", round_id), None)
            return self._round_event("RoundOpened", round_id)
        logs = sorted((_log_entry(raw) for raw in answer.get("result") or []), key=lambda log: (log["blockNumber"], log["logIndex"]))
        if not logs:
            return None
        opened = self.contract.events.RoundOpened().process_log(logs[0])
        self._round_events[("RoundOpened", round_id)] = opened
        return opened

    def submit_update(
        self, round_id: int, *, cid: Cid, samples: int, metrics_hash: bytes, epsilon_micros: int = 0
    ) -> TxResult:
        """Record the sender's update to ``round_id`` (one per party per round), declaring its
        cumulative privacy loss ``epsilon_micros`` (millionths of ε; 0 for a party without DP)."""
        codec, digest = _cid_parts(cid)
        return self._transact(
            "submitUpdate",
            round_id,
            codec,
            digest,
            _uint64(samples, "sample count"),
            _bytes32(metrics_hash, "metrics hash"),
            _uint64(epsilon_micros, "declared ε (millionths)"),
        )

    def check_can_submit(self, round_id: int, *, samples: int = 1, epsilon_micros: int = 0) -> None:
        """Raise the contract's own error if the sender could not submit to ``round_id`` now (not
        admitted, stale agreement, round closed, deadline passed, already submitted, ``epsilon_micros``
        past its budget or below its last declaration): the submission simulated with a placeholder
        update, so a party learns it before training."""
        placeholder = (RAW, b"\0" * 32)  # the contract checks no CID
        with _reverts(reading=True):  # judged at the pending block: the time the submission would be mined
            self.contract.functions.submitUpdate(round_id, *placeholder, samples, b"\0" * 32, epsilon_micros).call(
                {"from": self.sender}, block_identifier=next_block(self.w3)
            )

    def sign_update(
        self,
        account: LocalAccount,
        round_id: int,
        *,
        cid: Cid,
        samples: int,
        metrics_hash: bytes,
        epsilon_micros: int = 0,
        deadline: int,
    ) -> SignedUpdate:
        """``account``'s signed update for a relayer to record (its key signs; it sends nothing)."""
        typed = update_typed_data(
            chain_id=self.chain_id,
            contract=self.address,
            participant=account.address,
            round_id=round_id,
            cid=cid,
            samples=samples,
            metrics_hash=metrics_hash,
            epsilon_micros=epsilon_micros,
            deadline=deadline,
        )
        signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
        return SignedUpdate(
            Address(account.address), cid, samples, bytes(metrics_hash), epsilon_micros, deadline, bytes(signed.signature)
        )

    def check_signed_update(self, round_id: int, update: SignedUpdate) -> ContractRevertError | None:
        """The contract error that would keep ``update`` out if this client relayed it to ``round_id``
        now, alone (None: it would be recorded).

        The signature and deadline are checked here as the contract checks them; then the batch of
        this one item is simulated from the relayer (this client's sender) at the pending block, so
        the signer needs no ether: its count of recorded items is the verdict. A skipped item's
        reason travels in an event, which a simulation does not return, so the rule it broke is
        named by simulating the direct submission from the signer: JSON-RPC nodes (anvil, geth) run
        a call without charging its sender; the in-process chain refuses one from an account without
        ether, and then the error says only that the item would be skipped.
        """
        pending = self.w3.eth.get_block(next_block(self.w3))
        if int(pending["timestamp"]) > update.deadline:
            return contract_errors.FederationSignatureExpired(update.deadline)
        typed = update_typed_data(
            chain_id=self.chain_id,
            contract=self.address,
            participant=update.participant,
            round_id=round_id,
            cid=update.cid,
            samples=update.samples,
            metrics_hash=update.metrics_hash,
            epsilon_micros=update.epsilon_micros,
            deadline=update.deadline,
        )
        message = encode_typed_data(typed["domain"], typed["types"], typed["message"])
        try:
            signer = Account.recover_message(message, signature=update.signature)
        except (ValueError, TypeError, BadSignature):
            signer = None
        if signer != update.participant:
            return contract_errors.FederationInvalidSignature(update.participant)
        try:
            with _reverts(reading=True):
                recorded = self.contract.functions.submitUpdates(round_id, [update.as_tuple()]).call(
                    {"from": self.sender}, block_identifier=next_block(self.w3)
                )
        except ContractRevertError as error:  # the whole batch would revert: round closed, deadline passed
            return error
        if int(recorded) == 1:
            return None
        codec, digest = _cid_parts(update.cid)
        try:
            with _reverts(reading=True):
                self.contract.functions.submitUpdate(
                    round_id, codec, digest, update.samples, update.metrics_hash, update.epsilon_micros
                ).call({"from": update.participant}, block_identifier=next_block(self.w3))
        except ContractRevertError as error:
            return error
        except EvmValidationError:  # the in-process chain will not simulate a signer without ether
            pass
        return ContractRevertError(
            f"the contract would skip the update of {update.participant} to round {round_id} (the in-process "
            "chain does not say which rule it breaks); check the party with `fedledger participant list`."
        )

    def submit_updates(self, round_id: int, updates: list[SignedUpdate]) -> RelayOutcome:
        """Relay ``updates`` to ``round_id`` in one transaction (any sender; the parties need no
        gas). Items the contract skips come back with the error of the rule they broke."""
        result, receipt = self._send(
            self.contract.functions.submitUpdates(round_id, [u.as_tuple() for u in updates])
        )
        rejected: dict[int, ContractRevertError] = {}
        for event in self.contract.events.UpdateRejected().process_receipt(receipt, errors=DISCARD):  # the batch's other events
            reason = bytes(event["args"]["reason"])
            rejected[int(event["args"]["item"])] = error_from_data(reason) or ContractRevertError(
                f"the contract skipped the update (undecoded reason 0x{reason.hex()})."
            )
        return RelayOutcome(result, [(i, u.participant, rejected.get(i)) for i, u in enumerate(updates)])

    def has_submitted(self, round_id: int, participant: str) -> bool:
        return bool(self._call("hasSubmitted", round_id, _address(participant)))

    def submissions(self, round_id: int) -> list[Submission]:
        """Every update recorded for ``round_id``, in chain order, each with the cumulative ε its
        party had declared by then (its last ``PrivacyLossDeclared``, the submission's own included; 0 if none)."""
        declarations: dict[str, list[tuple[tuple[int, int], int]]] = {}
        for log in self._logs("PrivacyLossDeclared"):
            position = (int(log["blockNumber"]), int(log["logIndex"]))
            declarations.setdefault(log["args"]["participant"], []).append((position, int(log["args"]["epsilon"])))

        def declared(log: Any) -> int:
            # A submission's own declaration is the log right after its UpdateSubmitted.
            position = (int(log["blockNumber"]), int(log["logIndex"]) + 1)
            figures = [eps for at, eps in declarations.get(log["args"]["participant"], []) if at <= position]
            return figures[-1] if figures else 0

        return [
            Submission(
                round_id=RoundId(round_id),
                participant=Address(log["args"]["participant"]),
                cid=cid_from_parts(log["args"]["codec"], log["args"]["digest"]),
                samples=int(log["args"]["samples"]),
                metrics_hash=bytes(log["args"]["metricsHash"]),
                block=int(log["blockNumber"]),
                tx_hash=Web3.to_hex(log["transactionHash"]),
                epsilon_micros=declared(log),
            )
            for log in self._logs("UpdateSubmitted", roundId=round_id)
        ]

    # ---------------------------------------------------------------- round messages (secure aggregation)

    def post_round_message(self, round_id: int, kind: int, cid: Cid) -> TxResult:
        """Post the sender's message of ``kind`` (ledger.contract_constants.RoundMessageKind) for
        ``round_id``: the CID of a document pinned elsewhere. ADVERTISE (the party's per-round keys
        and encrypted shares) while the round takes updates, by a party that may submit to it;
        REVEAL (what removes dropouts' masks) after the deadline, by a party that submitted. The
        contract judges the kind and the rules (its errors: FederationUnknownMessageKind,
        FederationDeadlinePassed, FederationNotParticipant, FederationAgreementNotAccepted,
        FederationRevealBeforeDeadline, FederationNotASubmitter, FederationRoundClosed, ...).
        Sent like every transaction of this client (its TxPolicy and journal). Only the first
        message per (party, kind) counts: see ``round_messages``."""
        codec, digest = _cid_parts(cid)
        return self._transact("postRoundMessage", round_id, _message_kind(kind), codec, digest)

    def sign_round_message(
        self, account: LocalAccount, round_id: int, *, kind: int, cid: Cid, deadline: int
    ) -> SignedRoundMessage:
        """``account``'s signed message of ``kind`` for ``round_id``, for a relayer to post with
        ``post_signed_round_message`` (its key signs; it sends nothing and needs no ether)."""
        typed = round_message_typed_data(
            chain_id=self.chain_id, contract=self.address, participant=account.address, round_id=round_id,
            kind=kind, cid=cid, deadline=deadline,
        )
        signed = Account.sign_typed_data(account.key, typed["domain"], typed["types"], typed["message"])
        return SignedRoundMessage(Address(account.address), int(kind), cid, deadline, bytes(signed.signature))

    def _signed_message_call(self, round_id: int, message: SignedRoundMessage) -> Any:
        codec, digest = _cid_parts(message.cid)
        return self.contract.functions.postSignedRoundMessage(
            _address(message.participant, "participant"), round_id, _message_kind(message.kind), codec, digest,
            message.deadline, message.signature,
        )

    def check_signed_round_message(self, round_id: int, message: SignedRoundMessage) -> ContractRevertError | None:
        """The contract error that would refuse ``message`` if this client posted it for ``round_id``
        now (None: it would be posted): the call simulated from this client's sender at the pending
        block, so the contract itself judges the signature, its deadline and the rules of the kind
        (who, when), and the signer needs no ether."""
        return self._simulated_refusal(self._signed_message_call(round_id, message))

    def post_signed_round_message(self, round_id: int, message: SignedRoundMessage) -> TxResult:
        """Post ``message`` (signed by its party: ``sign_round_message``) for ``round_id``, paid by this
        client's sender; the RoundMessagePosted event names the party, as if it had posted it itself.
        Refused with the errors of ``post_round_message``, and FederationSignatureExpired or
        FederationInvalidSignature for a signature past its deadline or not the party's."""
        return self._send(self._signed_message_call(round_id, message))[0]

    def round_messages(self, round_id: int, kind: int | None = None) -> list[RoundMessage]:
        """The messages posted for ``round_id`` (of ``kind`` only, when given), in chain order, one
        per (party, kind): the FIRST that party posted of that kind. Later messages of the same
        party and kind are dropped here, as every reader must drop them (the contract writes no
        storage and so cannot refuse them: a party cannot change what it advertised or revealed);
        they stay visible as RoundMessagePosted events to anyone reading the raw logs. Read from
        the deployment's first block (one log query), like ``submissions``."""
        filters: dict[str, Any] = {"roundId": round_id}
        if kind is not None:
            filters["kind"] = int(kind)
        first: dict[tuple[str, int], RoundMessage] = {}
        for log in self._logs("RoundMessagePosted", **filters):
            args = log["args"]
            key = (args["party"], int(args["kind"]))
            if key in first:
                continue
            first[key] = RoundMessage(
                round_id=RoundId(int(args["roundId"])),
                party=Address(args["party"]),
                kind=RoundMessageKind(int(args["kind"])),
                cid=cid_from_parts(args["codec"], args["digest"]),
                block_number=int(log["blockNumber"]),
                tx_hash=Web3.to_hex(log["transactionHash"]),
                log_index=int(log["logIndex"]),
            )
        return list(first.values())

    def rounds_submitted(self, participant: str) -> list[RoundId]:
        """The rounds ``participant`` has an update recorded in, in chain order (one log query)."""
        logs = self._logs("UpdateSubmitted", participant=_address(participant))
        return list(dict.fromkeys(RoundId(int(log["args"]["roundId"])) for log in logs))

    def finalize_round(self, round_id: int, *, global_cid: Cid, receipt_cid: Cid) -> TxResult:
        g_codec, g_digest = _cid_parts(global_cid)
        r_codec, r_digest = _cid_parts(receipt_cid)
        return self._transact("finalizeRound", round_id, g_codec, g_digest, r_codec, r_digest)

    def cancel_round(self, round_id: int) -> TxResult:
        """Close a round that missed its minimum, after its deadline (coordinator or aggregator)."""
        return self._transact("cancelRound", round_id)

    def abort_round(self, round_id: int, *, reason: str) -> TxResult:
        """Governance closes an open round now, with a reason the event records. Only the admin."""
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidInputError("aborting a round needs a reason for the record; give --reason TEXT.")
        return self._transact("abortRound", round_id, reason.strip())
