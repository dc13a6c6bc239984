"""One Python class per Solidity custom error of the Federation contract, decoded by selector.

A revert reaches Python in one of two shapes: from a JSON-RPC node (anvil, any real chain) as
web3's ``ContractCustomError`` whose ``data`` is the selector plus ABI-encoded arguments; from
the in-process ``EthereumTesterProvider`` as eth-tester's ``TransactionFailed`` whose message
holds the same bytes as a Python literal. :func:`decode_revert` turns either into the matching
class below, with the decoded arguments as attributes and a sentence naming cause and fix.
"""

from __future__ import annotations

import ast
from typing import Any, ClassVar

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from ledger.errors import ContractRevertError
from ledger.utc import utc_text


def _utc(timestamp: int) -> str:
    """A chain timestamp as people read it, with the number the chain holds."""
    return f"{utc_text(int(timestamp))} (unix time {timestamp})"


PARTICIPANT_STATUSES = ("none", "pending", "admitted", "suspended", "revoked")
ROUND_STATES = ("none", "open", "finalized", "cancelled")
ROLE_NAMES = {
    "0x" + "00" * 32: "admin",
    "0x" + keccak(text="COORDINATOR_ROLE").hex(): "coordinator",
    "0x" + keccak(text="AGGREGATOR_ROLE").hex(): "aggregator",
}

_BY_SELECTOR: dict[bytes, type[FederationContractError]] = {}


class FederationContractError(ContractRevertError):
    """A custom error of the contract; subclasses name its Solidity signature and fields."""

    signature: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _BY_SELECTOR[keccak(text=cls.signature)[:4]] = cls

    def __init__(self, *args: Any) -> None:
        self.args_tuple = tuple(args)
        for name, value in zip(self.fields, args):
            setattr(self, name, value)
        super().__init__(self.sentence())

    @classmethod
    def types(cls) -> list[str]:
        inner = cls.signature[cls.signature.index("(") + 1 : -1]
        return [t for t in inner.split(",") if t]

    @classmethod
    def selector(cls) -> bytes:
        return keccak(text=cls.signature)[:4]

    def sentence(self) -> str:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args_tuple == other.args_tuple  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.args_tuple))


class AccessControlUnauthorizedAccount(FederationContractError):
    signature = "AccessControlUnauthorizedAccount(address,bytes32)"
    fields = ("account", "role")

    def sentence(self) -> str:
        return (
            f"{self.account} lacks the {self.role} role for this action; "
            f"send it from an account with that role, or ask the federation admin to grant it."
        )


class AccessControlBadConfirmation(FederationContractError):
    signature = "AccessControlBadConfirmation()"

    def sentence(self) -> str:
        return "a role can only be renounced by the account holding it; send it from that account."


class AccessControlEnforcedDefaultAdminRules(FederationContractError):
    signature = "AccessControlEnforcedDefaultAdminRules()"

    def sentence(self) -> str:
        return (
            "the admin role is not granted or revoked directly: hand it over in two steps "
            "(`fedledger admin transfer ADDRESS`, then `fedledger admin accept` by the new admin after the delay)."
        )


class AccessControlEnforcedDefaultAdminDelay(FederationContractError):
    signature = "AccessControlEnforcedDefaultAdminDelay(uint48)"
    fields = ("schedule",)

    def sentence(self) -> str:
        if int(self.schedule) == 0:
            return "no admin transfer is pending; the current admin starts one with `fedledger admin transfer ADDRESS`."
        return f"the admin transfer can be accepted only after {_utc(self.schedule)}; accept it then (`fedledger admin accept`)."


class AccessControlInvalidDefaultAdmin(FederationContractError):
    signature = "AccessControlInvalidDefaultAdmin(address)"
    fields = ("account",)

    def sentence(self) -> str:
        return (
            f"{self.account} is not the pending admin of this federation; accept with the key of the address "
            "the current admin proposed (`fedledger admin show`)."
        )


class SafeCastOverflowedUintDowncast(FederationContractError):
    signature = "SafeCastOverflowedUintDowncast(uint8,uint256)"
    fields = ("bits", "value")

    def sentence(self) -> str:
        return f"{self.value} does not fit in {self.bits} bits; give a smaller value."


class FederationNoAgreement(FederationContractError):
    signature = "FederationNoAgreement()"

    def sentence(self) -> str:
        return "no agreement has been published yet; ask the federation admin to run `fedledger agreement publish`."


class FederationStaleAgreement(FederationContractError):
    signature = "FederationStaleAgreement(uint256,uint256)"
    fields = ("version", "current")

    def sentence(self) -> str:
        return (
            f"agreement version {self.version} is not the one in force (version {self.current}); "
            f"sign version {self.current} and join again."
        )


class FederationSignatureExpired(FederationContractError):
    signature = "FederationSignatureExpired(uint256)"
    fields = ("deadline",)

    def sentence(self) -> str:
        return (f"the signature (of a join, a relayed update, round message or encryption key) expired at {_utc(self.deadline)}; "
                "sign again with a later deadline.")


class FederationInvalidSignature(FederationContractError):
    signature = "FederationInvalidSignature(address)"
    fields = ("participant",)

    def sentence(self) -> str:
        return (
            f"the signature was not made by {self.participant} over this message for this contract and chain "
            "(a join for the agreement version in force, an update or round message for this round, or an encryption key); "
            "sign again with that "
            "participant's key against this deployment."
        )


class FederationAlreadyAccepted(FederationContractError):
    signature = "FederationAlreadyAccepted(address,uint256)"
    fields = ("account", "version")

    def sentence(self) -> str:
        return f"{self.account} already accepted agreement version {self.version}; nothing to do."


class FederationUnexpectedStatus(FederationContractError):
    signature = "FederationUnexpectedStatus(address,uint8)"
    fields = ("account", "status")

    def sentence(self) -> str:
        if self.status == "none":
            return f"{self.account} never joined the federation; it must join (sign the agreement) first."
        if self.status == "revoked":
            return f"{self.account} was revoked for good; it cannot rejoin or change status, use another address."
        return f"{self.account} is {self.status}, which does not allow this change; check `fedledger participant list`."


class FederationNotParticipant(FederationContractError):
    signature = "FederationNotParticipant(address,uint8)"
    fields = ("account", "status")

    def sentence(self) -> str:
        fixes = {
            "none": "it must join the federation and be approved by the admin",
            "pending": "ask the federation admin to approve it",
            "suspended": "ask the federation admin to reinstate it",
            "revoked": "it was revoked for good; use another address",
            "admitted": "",
        }
        return f"{self.account} is not an admitted participant (it is {self.status}); {fixes[self.status]}."


class FederationAgreementNotAccepted(FederationContractError):
    signature = "FederationAgreementNotAccepted(address,uint256,uint256)"
    fields = ("account", "accepted", "current")

    def sentence(self) -> str:
        return (
            f"{self.account} accepted agreement version {self.accepted} but version {self.current} is in force; "
            f"join again with a signature for version {self.current} (`fedledger participant join`)."
        )


class FederationInvalidCid(FederationContractError):
    signature = "FederationInvalidCid(uint8)"
    fields = ("codec",)

    def sentence(self) -> str:
        return f"CID codec 0x{self.codec:02x} is neither raw (0x55) nor dag-pb (0x70); give a CIDv1 from `fedledger ipfs add`."


class FederationInvalidDeadline(FederationContractError):
    signature = "FederationInvalidDeadline(uint256)"
    fields = ("deadline",)

    def sentence(self) -> str:
        return f"the round deadline {_utc(self.deadline)} is not in the future; give a later deadline."


class FederationDeadlineTooFar(FederationContractError):
    signature = "FederationDeadlineTooFar(uint256,uint256)"
    fields = ("deadline", "latest")

    def sentence(self) -> str:
        return (
            f"the round deadline {_utc(self.deadline)} is too far away: a round may last at most 30 days, "
            f"so until {_utc(self.latest)}; give an earlier deadline."
        )


class FederationInvalidMinimum(FederationContractError):
    signature = "FederationInvalidMinimum()"

    def sentence(self) -> str:
        return "a round must ask for at least one update; give --min-updates 1 or more."


class FederationReasonRequired(FederationContractError):
    signature = "FederationReasonRequired()"

    def sentence(self) -> str:
        return "aborting a round needs a reason for the record; give --reason TEXT."


class FederationUnknownRound(FederationContractError):
    signature = "FederationUnknownRound(uint256)"
    fields = ("round_id",)

    def sentence(self) -> str:
        return f"there is no round {self.round_id}; check `fedledger round status` for the open rounds."


class FederationRoundClosed(FederationContractError):
    signature = "FederationRoundClosed(uint256,uint8)"
    fields = ("round_id", "state")

    def sentence(self) -> str:
        return f"round {self.round_id} is already {self.state}; use an open round."


class FederationDeadlinePassed(FederationContractError):
    signature = "FederationDeadlinePassed(uint256,uint256)"
    fields = ("round_id", "deadline")

    def sentence(self) -> str:
        return (
            f"round {self.round_id} stopped taking updates at its deadline, {_utc(self.deadline)}; "
            "submit to the next round."
        )


class FederationAlreadySubmitted(FederationContractError):
    signature = "FederationAlreadySubmitted(uint256,address)"
    fields = ("round_id", "account")

    def sentence(self) -> str:
        return f"{self.account} already submitted an update to round {self.round_id}; one update per round is allowed."


class FederationBelowMinimum(FederationContractError):
    signature = "FederationBelowMinimum(uint256,uint256,uint256)"
    fields = ("round_id", "submissions", "minimum")

    def sentence(self) -> str:
        return (
            f"round {self.round_id} holds {self.submissions} update(s), fewer than its minimum of {self.minimum}; "
            f"wait for more updates, or cancel it once its deadline has passed (`fedledger round cancel {self.round_id}`)"
            f" or, as the admin, abort it now (`fedledger round abort {self.round_id} --reason TEXT`)."
        )


class FederationRoundStillOpen(FederationContractError):
    signature = "FederationRoundStillOpen(uint256,uint256)"
    fields = ("round_id", "deadline")

    def sentence(self) -> str:
        return (
            f"round {self.round_id} takes updates until {_utc(self.deadline)}; it can be cancelled only after "
            f"its deadline, or aborted now by the admin (`fedledger round abort {self.round_id} --reason TEXT`)."
        )


class FederationMinimumReached(FederationContractError):
    signature = "FederationMinimumReached(uint256,uint256,uint256)"
    fields = ("round_id", "submissions", "minimum")

    def sentence(self) -> str:
        return (
            f"round {self.round_id} reached its minimum ({self.submissions} of {self.minimum} updates); "
            f"finalize it instead (`fedledger aggregate --round {self.round_id}`)."
        )


class FederationInvalidPrivacyBudget(FederationContractError):
    signature = "FederationInvalidPrivacyBudget(uint256,uint256)"
    fields = ("epsilon_budget", "delta")

    def sentence(self) -> str:
        return (
            f"the privacy budget (ε {self.epsilon_budget / 1e6:g}, δ {self.delta / 1e18:g}) is not valid: give both "
            "--epsilon-budget above 0 and --delta between 0 and 1, or neither for an agreement without a budget."
        )


class FederationPrivacyBudgetExceeded(FederationContractError):
    signature = "FederationPrivacyBudgetExceeded(address,uint256,uint256)"
    fields = ("party", "declared", "budget")

    def sentence(self) -> str:
        return (
            f"{self.party} would reach a cumulative ε of {self.declared / 1e6:g}, past the agreement's privacy budget "
            f"of {self.budget / 1e6:g}; it cannot take part in more rounds under this agreement (its budget is spent)."
        )


class FederationPrivacyLossDecreased(FederationContractError):
    signature = "FederationPrivacyLossDecreased(address,uint256,uint256)"
    fields = ("party", "declared", "recorded")

    def sentence(self) -> str:
        return (
            f"{self.party} declared a cumulative ε of {self.declared / 1e6:g}, below the {self.recorded / 1e6:g} it "
            "declared before; privacy loss only adds up: declare the total over every round it took part in."
        )


class FederationInvalidEncryptionKey(FederationContractError):
    signature = "FederationInvalidEncryptionKey()"

    def sentence(self) -> str:
        return "an encryption public key of 32 zero bytes is not a key; publish the key of `fedledger key new-encryption`."


class FederationEncryptionKeyChanged(FederationContractError):
    signature = "FederationEncryptionKeyChanged(address,bytes32,bytes32)"
    fields = ("account", "expected", "current")

    def sentence(self) -> str:
        def key(value: bytes) -> str:
            return "none" if not any(value) else "0x" + bytes(value).hex()

        return (
            f"the signed encryption key of {self.account} replaces its key {key(self.expected)}, but the key registered "
            f"now is {key(self.current)} (it changed since the party signed, or the signature is an old one replayed); "
            "sign the registration again against the key registered now."
        )


class FederationInvalidBatchSize(FederationContractError):
    signature = "FederationInvalidBatchSize(uint256,uint256)"
    fields = ("size", "maximum")

    def sentence(self) -> str:
        return f"a relayed batch of {self.size} updates is refused: send 1 to {self.maximum} updates per batch."


class FederationUnknownMessageKind(FederationContractError):
    signature = "FederationUnknownMessageKind(uint8)"
    fields = ("kind",)

    def sentence(self) -> str:
        return (
            f"round message kind {self.kind} does not exist: post 1 (advertise: keys and shares, before the "
            "deadline) or 2 (reveal: what removes dropouts' masks, after it)."
        )


class FederationRevealBeforeDeadline(FederationContractError):
    signature = "FederationRevealBeforeDeadline(uint256,uint256)"
    fields = ("round_id", "deadline")

    def sentence(self) -> str:
        return (
            f"round {self.round_id} takes updates until {_utc(self.deadline)}, and who dropped out is known only "
            "then; post the reveal after the deadline."
        )


class FederationNotASubmitter(FederationContractError):
    signature = "FederationNotASubmitter(uint256,address)"
    fields = ("round_id", "account")

    def sentence(self) -> str:
        return (
            f"{self.account} submitted no update to round {self.round_id}, so it may not post a reveal for it; "
            "only the round's submitters reveal."
        )


_ENUMS = {"status": PARTICIPANT_STATUSES, "state": ROUND_STATES}


def _convert(cls: type[FederationContractError], values: tuple[Any, ...]) -> list[Any]:
    out: list[Any] = []
    for name, abi_type, value in zip(cls.fields, cls.types(), values):
        if abi_type == "address":
            value = to_checksum_address(value)
        elif name in _ENUMS:
            value = _ENUMS[name][value] if value < len(_ENUMS[name]) else str(value)
        elif abi_type == "bytes32" and name == "role":
            hexed = "0x" + bytes(value).hex()
            value = ROLE_NAMES.get(hexed, hexed)
        out.append(value)
    return out


def error_from_data(data: bytes) -> FederationContractError | None:
    """The error class instance for revert ``data`` (selector + arguments), or None if unknown."""
    cls = _BY_SELECTOR.get(bytes(data[:4]))
    if cls is None:
        return None
    values = abi_decode(cls.types(), bytes(data[4:])) if cls.types() else ()
    return cls(*_convert(cls, tuple(values)))


def revert_data(error: BaseException) -> bytes | None:
    """The raw revert bytes carried by a web3 or eth-tester exception, when there are any."""
    data = getattr(error, "data", None)
    if isinstance(data, dict):
        data = data.get("data")
    if isinstance(data, str) and data.startswith("0x"):
        try:
            return bytes.fromhex(data[2:])
        except ValueError:
            return None
    if isinstance(data, (bytes, bytearray)):
        return bytes(data)
    for arg in getattr(error, "args", ()):
        if isinstance(arg, (bytes, bytearray)):
            return bytes(arg)
        if isinstance(arg, BaseException):
            return revert_data(arg)
        if isinstance(arg, str):
            text = arg.split("execution reverted: ", 1)[-1].strip()
            if text.startswith(("b'", 'b"')):
                try:
                    literal = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(literal, bytes):
                    return literal
            elif text.startswith("0x"):
                try:
                    return bytes.fromhex(text[2:])
                except ValueError:
                    continue
    return None


def decode_revert(error: BaseException) -> FederationContractError | None:
    """The contract error behind a web3/eth-tester exception, or None when it is not one of ours."""
    data = revert_data(error)
    return None if data is None or len(data) < 4 else error_from_data(data)
