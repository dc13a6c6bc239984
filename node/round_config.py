"""The round configuration document: which model, how parties train, how the aggregator aggregates.

The coordinator pins this JSON document to the store and records its sha256 as the round's
``config_hash``. A document of one chunk (< 256 KiB, always the case here) is stored as a single
raw block, so its CIDv1 is ``cid_from_parts(RAW, sha256(bytes))``: the hash on chain is at once a
commitment and an address. Participants read their training settings from it, the aggregator its
strategy and its sample cap, and the auditor checks the receipt against it.

``max_samples`` bounds what one party's self-reported sample count can weigh: the aggregator counts
each claim as ``min(claimed, max_samples)`` before the strategy sees it (FedAvg and Multi-Krum
weigh by it), so a party that claims 2^63 samples counts as ``max_samples``. Set it near the
largest dataset an honest party is expected to hold; ``1`` gives every update the same weight.

A ``dp`` section (``DpSettings``) makes the round private: each party then trains with DP-SGD,
taking ``steps`` optimizer steps on Poisson-sampled batches (each sample drawn with probability
``sample_rate``), clipping each sample's gradient to ``max_grad_norm`` and adding Gaussian noise of
``noise_multiplier * max_grad_norm``; ``training.lr`` still applies, ``training.epochs`` and
``training.batch_size`` do not. The section fixes everything the privacy loss depends on, so any
reader of the config (the auditor included) computes each round's ε without knowing a party's data
size. A config without one has the bytes (and hash) it had before the section existed.

``seal_to`` makes the round sealed: each party seals its update to these addresses' encryption keys
as registered on chain at the round's opening block (``ledger.sealing.recipients``), so only they
(the aggregator, any auditors) can read it. Addresses are kept checksummed, unique and in ascending
order, so the same recipients give the same hash; a config without it keeps its old bytes.

A ``task`` section (``TaskRef``) makes the round train a user's own task (``node.tasks``): ``cid``
is the task bundle named by the agreement version in force (``node.tasks.agreement``), and
``frozen_cid``, when the task's model has frozen tensors, the safetensors file holding them (from
the genesis model's metadata). ``model`` then holds the task's name, and the expected tensor layout
of every update is the round's base model's, not a built-in model's. A config without one has the
bytes (and hash) it had before the section existed.

A ``secure_aggregation`` section (``node.secure.settings.SecureRound``) makes the round a secure
one: each party masks its update so that the aggregator and everyone else see only the sum
(``ledger.secagg``). FedAvg only; a sealed secure round is refused (the masked vectors already hide
every update). A config without one has the bytes (and hash) it had before the section existed.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from eth_utils import to_canonical_address

from ledger.chain.connection import parse_address
from ledger.errors import MalformedCidError
from ledger.ipfs.cid import RAW, cid_from_parts, parse_cid
from ledger.canonical_json import canonical_json
from ledger.errors import InvalidInputError
from ledger.secagg.params import SECTION as SECURE_SECTION
from ledger.types import Cid
from node.secure.settings import SecureRound

MAX_CONFIG_BYTES = 256 * 1024
DEFAULT_MAX_SAMPLES = 10_000
"""Above any party's share of the bundled digits set (1,797 images), so the demo's weights are untouched."""
MAX_UINT64 = 2**64 - 1  # the contract records sample counts as uint64


@dataclass(frozen=True)
class TrainingSettings:
    """How every party trains in a round."""

    epochs: int = 2
    batch_size: int = 32
    lr: float = 0.05


DP_ACCOUNTANTS = ("rdp",)
"""The privacy accountants a dp section may name; node.privacy.accountant says why RDP."""
MAX_DP_STEPS = 1_000_000


@dataclass(frozen=True)
class DpSettings:
    """The DP-SGD parameters of a private round; numbers are canonicalized (floats as floats) on creation."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    accountant: str = "rdp"

    FIELDS: ClassVar[tuple[str, ...]] = ("accountant", "max_grad_norm", "noise_multiplier", "sample_rate", "steps")

    def __post_init__(self) -> None:
        # 1 and 1.0 must give the same bytes (and config hash): every float field is stored as a float.
        object.__setattr__(self, "noise_multiplier", _positive("noise_multiplier", self.noise_multiplier,
                                                               "the noise's standard deviation over the clipping norm, e.g. 1.1"))
        object.__setattr__(self, "max_grad_norm", _positive("max_grad_norm", self.max_grad_norm,
                                                            "the per-sample gradient clipping norm, e.g. 1.0"))
        rate = self.sample_rate
        if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0.0 < rate <= 1.0:
            raise InvalidInputError(
                f"the dp section's sample_rate must be a number in (0, 1], not {rate!r}; "
                "give the probability that a sample joins a batch, e.g. 0.1."
            )
        object.__setattr__(self, "sample_rate", float(rate))
        steps = self.steps
        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_DP_STEPS:
            raise InvalidInputError(
                f"the dp section's steps must be an integer from 1 to {MAX_DP_STEPS}, not {steps!r}; "
                "give the number of DP-SGD steps each party takes per round."
            )
        if self.accountant not in DP_ACCOUNTANTS:
            raise InvalidInputError(
                f"the dp section's accountant must be one of {', '.join(DP_ACCOUNTANTS)}, not {self.accountant!r}; "
                "every reader of the config must compute the same ε, so one accountant is supported."
            )

    @classmethod
    def from_document(cls, document: object) -> DpSettings:
        """The dp section of a parsed config document; InvalidInputError naming the field at fault."""
        if not isinstance(document, dict):
            raise InvalidInputError(
                f"the round config's dp section must be a JSON object, not {type(document).__name__}; "
                f"give the fields {', '.join(cls.FIELDS)}."
            )
        unknown = sorted(set(document) - set(cls.FIELDS))
        missing = sorted(set(cls.FIELDS) - {"accountant"} - set(document))
        if unknown or missing:
            raise InvalidInputError(
                f"the round config's dp section has unknown fields {unknown} and lacks {missing}; "
                f"its fields are {', '.join(cls.FIELDS)} (accountant may be left out)."
            )
        return cls(**document)


@dataclass(frozen=True)
class TaskRef:
    """The task a round trains: its bundle's CID and, when its model has frozen tensors, their file's CID."""

    cid: str
    frozen_cid: str | None = None

    FIELDS: ClassVar[tuple[str, ...]] = ("cid", "frozen_cid")

    def __post_init__(self) -> None:
        object.__setattr__(self, "cid", _task_cid("cid", self.cid))
        if self.frozen_cid is not None:
            object.__setattr__(self, "frozen_cid", _task_cid("frozen_cid", self.frozen_cid))

    def to_document(self) -> dict[str, str]:
        """The section as it is written: ``frozen_cid`` only when there are frozen tensors."""
        return {"cid": self.cid} if self.frozen_cid is None else {"cid": self.cid, "frozen_cid": self.frozen_cid}

    @classmethod
    def from_document(cls, document: object) -> TaskRef:
        """The task section of a parsed config document; InvalidInputError naming the field at fault."""
        if not isinstance(document, dict) or "cid" not in document or set(document) - set(cls.FIELDS):
            raise InvalidInputError(
                f"the round config's task section must be a JSON object with cid (and frozen_cid when the task's "
                f"model has frozen tensors), not {document!r}; let `fedledger round open` write it from the agreement."
            )
        return cls(cid=document["cid"], frozen_cid=document.get("frozen_cid"))


def _task_cid(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"the round config's task {name} must be a CID string, not {value!r}.")
    try:
        return parse_cid(value)
    except MalformedCidError as error:
        raise InvalidInputError(f"the round config's task {name} is not a usable CID: {error}") from error


def _positive(name: str, value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 < value < math.inf:
        raise InvalidInputError(f"the dp section's {name} must be a positive finite number, not {value!r}; give {what}.")
    return float(value)


@dataclass(frozen=True)
class RoundConfig:
    """What a round asks of its parties and its aggregator."""

    model: str
    strategy: dict[str, Any]
    training: TrainingSettings = field(default_factory=TrainingSettings)
    max_samples: int = DEFAULT_MAX_SAMPLES
    dp: DpSettings | None = None
    seal_to: tuple[str, ...] | None = None
    task: TaskRef | None = None
    secure: SecureRound | None = None

    def __post_init__(self) -> None:
        check_max_samples(self.max_samples)
        if self.seal_to is not None:
            object.__setattr__(self, "seal_to", recipient_addresses(self.seal_to))
        if self.secure is not None:
            _check_secure(self)

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace): the same config gives the same hash anywhere."""
        document = {
            "model": self.model, "strategy": self.strategy, "training": asdict(self.training),
            "max_samples": self.max_samples,
        }
        if self.dp is not None:
            document["dp"] = asdict(self.dp)
        if self.seal_to is not None:
            document["seal_to"] = list(self.seal_to)
        if self.task is not None:
            document["task"] = self.task.to_document()
        if self.secure is not None:
            document[SECURE_SECTION] = self.secure.to_document()
        return canonical_json(document)

    @property
    def config_hash(self) -> bytes:
        return hashlib.sha256(self.to_bytes()).digest()

    @classmethod
    def from_bytes(cls, data: bytes) -> RoundConfig:
        try:
            document = json.loads(data.decode("utf-8"))
            training = TrainingSettings(**document.get("training", {}))
            model, strategy = str(document["model"]), dict(document["strategy"])
            max_samples = document.get("max_samples", DEFAULT_MAX_SAMPLES)
            dp_document = document.get("dp")
            seal_to = document.get("seal_to")
            task_document = document.get("task")
            secure_document = document.get(SECURE_SECTION)
            if seal_to is not None and not isinstance(seal_to, list):
                raise TypeError(f"seal_to is {type(seal_to).__name__}, not a list of addresses")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as error:
            raise InvalidInputError(
                f"the round configuration is not a fedledger round config ({error}); "
                "open the round with `fedledger round open --strategy NAME` so one is written."
            ) from error
        dp = None if dp_document is None else DpSettings.from_document(dp_document)
        task = None if task_document is None else TaskRef.from_document(task_document)
        secure = None if secure_document is None else SecureRound.from_document(secure_document)
        return cls(model=model, strategy=strategy, training=training, max_samples=max_samples, dp=dp,
                   seal_to=None if seal_to is None else tuple(seal_to), task=task, secure=secure)


def check_secure_strategy(strategy: dict[str, Any]) -> None:
    """InvalidInputError unless ``strategy`` is FedAvg, the one strategy a secure round can run."""
    name = strategy.get("name")
    if name != "fedavg":
        raise InvalidInputError(
            f"a secure round aggregates by FedAvg only (the aggregator sees only the sum), not by {name!r}: a robust "
            "strategy needs every update in the clear; drop --secure or use --strategy fedavg."
        )


def _check_secure(config: RoundConfig) -> None:
    """A secure round aggregates by FedAvg (a sum is all it reveals) and is not sealed as well."""
    assert config.secure is not None
    check_secure_strategy(config.strategy)
    if config.seal_to is not None:
        raise InvalidInputError(
            "a secure round is not sealed as well: its masked updates already hide every party's update from "
            "everyone, the aggregator included; drop --seal-to."
        )
    if config.secure.params.max_samples != config.max_samples:
        raise InvalidInputError(
            f"the secure_aggregation section's max_samples ({config.secure.params.max_samples}) differs from the "
            f"round's ({config.max_samples}); a party's weight is capped once, so give the same figure."
        )


def recipient_addresses(addresses: object) -> tuple[str, ...]:
    """A round's sealing recipients: 1 or more distinct addresses, checksummed, in ascending byte order."""
    if isinstance(addresses, str) or not isinstance(addresses, list | tuple) or not addresses:
        raise InvalidInputError(
            f"seal_to must be a non-empty list of addresses, not {addresses!r}; name the round's aggregator "
            "(and any auditors), e.g. --seal-to 0xAGGREGATOR,0xAUDITOR."
        )
    parsed = [parse_address(str(address)) for address in addresses]
    twice = sorted({address for address in parsed if parsed.count(address) > 1})
    if twice:
        raise InvalidInputError(f"seal_to names {', '.join(twice)} more than once; name each recipient once.")
    return tuple(sorted(parsed, key=to_canonical_address))


def check_max_samples(value: object) -> int:
    """``value`` if it is a valid sample cap (an integer from 1 to 2^64 - 1), else InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_UINT64:
        raise InvalidInputError(
            f"max_samples must be an integer from 1 to {MAX_UINT64}, not {value!r}; "
            "give the most samples one party's update may count for (1 weighs every update equally)."
        )
    return value


def config_cid(config_hash: bytes) -> Cid:
    """The CID under which the config document with this sha256 is stored."""
    return cid_from_parts(RAW, config_hash)
