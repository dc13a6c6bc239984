"""Re-check every claim the ledger makes, from the chain (through the index) and the store alone.

Checks, each one a ``Check`` row (passed or failed, naming round, block, transaction and CID):

- ``contract``: the runtime code at the deployment's address (at the latest block) is the
  Federation this fedledger compiles, the way Sourcify matches it: immutables as its constructor
  writes them at this address and chain, the compiler metadata hash at its end included
  (``ledger.chain.code_check``). A failure names both code hashes; a partial match (the same
  instructions, another metadata hash) fails too.
- ``blob``: every CID the ledger records (terms, round configs, base models, updates, global
  models, receipts) is in the store and hashes to its CID. A blob this auditor's store does not
  hold is not a failure but a claim it could not check (``unchecked``; ``audit verify`` exits 2
  naming the CID when nothing failed).
- ``signature``: each join a submitter relied on carries a valid EIP-712 signature by that party
  over that agreement of this deployment, not expired at the join's block.
- ``membership``: each submitter was admitted, under the agreement version in force, at the
  submission's block (membership replayed event by event from the index). A submission relayed in
  a batch (``submitUpdates``) names its relayer (``relayer``, from the transaction's UpdatesRelayed).
- ``metrics``: the metrics in each update's metadata hash to the metrics hash recorded on chain.
  A party's own false claim (a blob that is not a weights file, metrics that do not back its hash)
  about an update that no aggregate used is a finding against that party, not a failure (below).
- ``receipt``: a finalized round's receipt names this round, its base, its config and its global
  model, and lists only updates submitted in this round, with their CIDs and claimed samples.
- ``strategy``: the receipt's strategy parameters equal those the round config's strategy resolves
  to (fetched by the config hash recorded on chain; ``{"name": "krum"}`` is Krum with its default
  ``f`` and ``m``, as the aggregator ran it).
- ``aggregate``: recomputing the round with the same pure code (``node.aggregator``) from the
  updates that were eligible gives exactly the recorded global model CID and the whole receipt
  (so its CID): every field that differs is named (the round, base, config, global model and
  strategy fields by the ``receipt`` and ``strategy`` checks, the rest here). The recomputation
  takes the receipt's ``unavailable`` list as given, so it is checkable whatever this store holds.
  A secure round is recomputed from public data only (``node.secure.aggregate``: the masked vectors,
  the advertisements counted by the key deadline, the reveals), exactly and with no key; a reveal
  that was wrong is named in the recomputed receipt's ``wrong_reveals``.
- ``availability``: an update the receipt calls unavailable at aggregation is not in this
  auditor's store either; one that is names an update that exists but was left out.
- ``lineage``: every round's base model is the genesis model or an earlier round's global model.
- ``privacy``: under an agreement with a privacy budget, each update's declared cumulative ε is at
  least the ε recomputed from the configs of every private round its party took part in, rounded up
  to millionths, and that recomputation is within the budget (``node.audit.privacy``).
- ``envelope`` (sealed rounds, no key needed): each update is an envelope of its submitter for this
  round, sealed to exactly the recipients' keys registered on chain at the round's opening block;
  one that is not is a finding against its party when no aggregate used it, a failure otherwise.
- ``sealed``: a sealed round whose aggregate this auditor could not recompute, because it holds no
  recipient's key (``verify_ledger(decryption_key=...)``, ``audit verify --key NAME``): a plain
  statement, not a failure. With a recipient's key the round is opened and recomputed like any other
  (the receipt's plaintext hashes included) and the metrics check runs on the plaintexts.

- ``task``: a round whose config names a task names the task of the agreement version in force at
  its opening (the round's agreement version, that version's terms CID from the index, the task
  its agreement document names: ``node.audit.tasks``), and a round opened under an agreement that
  names a task has a config naming it (a built-in round there fails too); a finalized task round's
  global model (unless it is its base model, kept when no update was usable) names that task and
  its frozen tensors' file in its metadata. A task round whose agreement terms this store lacks is
  not checked (``unchecked``); a built-in round under an agreement without a task has no such row.

A task round (its config's ``task``), and a round of a model fedledger does not build (a Flower app's
own), is checked like any other, with the layout its base model file gives (``node.aggregator.round_base``):
no task code runs in an audit.

**Findings against parties.** A party can record anything on chain: a blob that is not a weights
file, a metrics hash its update does not back, an envelope sealed to the wrong keys. When no
aggregate used that update (a finalized round's receipt does not include it, or the round closed
or is still open without an aggregate), the federation did the right thing with it: the failed
``metrics`` or ``envelope`` check is then a *finding* against the party (``Check.finding``, listed in
``VerifyReport.findings``), not a failure, so one party cannot make every audit fail. With
``strict`` (``audit verify --strict``) findings count as failures. The same checks on an update a
receipt includes stay failures, as do every ``privacy`` check (an under-declared or overspent ε is a
false record of the party's privacy loss whether or not its update was aggregated: the update was
published) and every check of what the chain, the aggregator or the store did.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from eth_account.messages import encode_typed_data
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ledger.index.queries import (
    Membership,
    relayers,
    replay,
    rounds,
    submission_of,
    submission_refusal,
)
from ledger.canonical_json import canonical_json
from ledger.errors import (
    ContentNotFoundError,
    ContentTooLargeError,
    IntegrityError,
    InvalidInputError,
    LedgerError,
)
from ledger.chain.code_check import compare_code
from ledger.chain.federation import FederationClient, RoundInfo, join_typed_data
from ledger.index.index import IndexedEvent, LedgerIndex
from ledger.sealing.errors import SealingError
from ledger.sealing.keys import public_key_bytes
from ledger.sealing.recipients import RoundOpener, RoundSeal
from ledger.ipfs.store import ContentStore
from ledger.types import RoundId
from ledger.weights import from_safetensors, layout_of, max_blob_bytes, metadata_of
from node.aggregator import aggregate_secure_updates, aggregate_updates, base_defines_layout
from node.secure.board import RoundBoard, read_board
from node.audit.privacy import privacy_problem, privacy_rows
from node.audit.tasks import AgreedTasks, AgreementTask, describe_task
from node.model_layouts import model_layout
from node.update_metrics import metrics_hash
from node.receipt import Receipt, RejectedUpdate
from node.round_config import RoundConfig
from node.strategies import strategy_from_params
from node.tasks.rounds import MAX_WEIGHTS_BYTES


@dataclass(frozen=True)
class Check:
    """One verified claim."""

    check: str
    ok: bool
    what: str
    round_id: int | None = None
    block: int | None = None
    tx_hash: str | None = None
    cid: str | None = None
    participant: str | None = None
    unchecked: bool = False  # not failed: this auditor lacked what it needed (a blob) to check the claim
    relayer: str | None = None  # who sent a relayed submission (membership checks)
    finding: bool = False  # failed, but by a party whose update no aggregate used: a finding against it, not a failure


PARTY_CHECKS = frozenset({"metrics", "envelope"})
"""Checks of a party's own claims about its update: failed on an update that no aggregate used, a finding."""


@dataclass
class VerifyReport:
    """Every check made, and where the index stood."""

    address: str
    chain_id: int
    indexed_to_block: int
    rounds: list[int]
    checks: list[Check] = field(default_factory=list)
    not_recomputed: list[int] = field(default_factory=list)  # sealed rounds this auditor holds no recipient key for
    strict: bool = False  # findings against parties count as failures

    @property
    def ok(self) -> bool:
        return not self.failures and not self.unchecked

    @property
    def failures(self) -> list[Check]:
        """Failed checks; a finding against a party only when ``strict``."""
        return [check for check in self.checks
                if not check.ok and not check.unchecked and (self.strict or not check.finding)]

    @property
    def findings(self) -> list[Check]:
        """False claims by parties whose updates no aggregate used (see the module doc)."""
        return [check for check in self.checks if check.finding]

    @property
    def unchecked(self) -> list[Check]:
        """Claims that could not be checked here (``ok`` is False for them, but nothing failed)."""
        return [check for check in self.checks if check.unchecked]

    @property
    def missing_cids(self) -> list[str]:
        """The CIDs this auditor's store lacked, in the order first met."""
        return list(dict.fromkeys(check.cid for check in self.unchecked if check.cid))

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "address": self.address,
            "chain_id": self.chain_id,
            "indexed_to_block": self.indexed_to_block,
            "rounds": self.rounds,
            "checked": len(self.checks),
            "failed": len(self.failures),
            "failures": [asdict(check) for check in self.failures],
            "unchecked": len(self.unchecked),
            "could_not_check": [asdict(check) for check in self.unchecked],
            "missing_cids": self.missing_cids,
            "not_recomputed": self.not_recomputed,
            "checks": [asdict(check) for check in self.checks],
            "found": len(self.findings),
            "findings": [asdict(check) for check in self.findings],
            "strict": self.strict,
        }


class _Blobs:
    """Verified reads from the store, each CID fetched once; failures become ``blob`` checks.

    ``status(cid)`` says what the read found: "ok", "too large" (present, not read), "altered"
    or "missing". The bytes of a blob read with ``keep=False`` (updates: a round's together would
    be parties x model size) are handed out and not kept; asked for again, it is read again.
    """

    def __init__(self, store: ContentStore, report: VerifyReport) -> None:
        self.store = store
        self.report = report
        self._cache: dict[str, tuple[bytes | None, str]] = {}

    def status(self, cid: str) -> str | None:
        return self._cache[cid][1] if cid in self._cache else None

    def get(
        self, cid: str | None, *, what: str, max_bytes: int | None = None, keep: bool = True, **where: Any
    ) -> bytes | None:
        if cid is None:
            self.report.checks.append(Check("blob", False, f"{what} has no valid CID on chain", **where))
            return None
        if cid in self._cache and self._cache[cid] == (None, "ok"):  # read before and not kept
            return self.store.get(cid, max_bytes=max_bytes)
        if cid not in self._cache:
            try:
                data = self.store.get(cid, max_bytes=max_bytes)
                self._cache[cid] = (data if keep else None, "ok")
                self.report.checks.append(Check("blob", True, f"{what} is stored and hashes to its CID", cid=cid, **where))
                return data
            except IntegrityError:
                self._cache[cid] = (None, "altered")
                self.report.checks.append(
                    Check("blob", False, f"{what} was altered in the store: its bytes do not hash to {cid}", cid=cid, **where)
                )
            except ContentTooLargeError:  # not read: recomputing the aggregate shows whether it was left out
                self._cache[cid] = (None, "too large")
                self.report.checks.append(Check(
                    "blob", True, f"{what} is larger than it can be ({max_bytes} bytes at most): not read, "
                    "so no aggregate may include it", cid=cid, **where,
                ))
            except ContentNotFoundError:
                self._cache[cid] = (None, "missing")
                self.report.checks.append(Check(
                    "blob", False, f"{what} is not in this auditor's store, so it could not be checked", cid=cid,
                    unchecked=True, **where,
                ))
        return self._cache[cid][0]


def _update_limit(config: RoundConfig | None, base_bytes: bytes | None = None) -> int | None:
    """The most bytes an update of the round's model can take (None when the config names no known model).

    Where the base defines the layout (a task round, a model fedledger does not build) it is the base
    model's own (``base_bytes``); without a readable base the task models' fixed cap bounds the reads.
    In a secure round an update is a masked vector: 8 bytes per parameter."""
    limit = _plain_update_limit(config, base_bytes)
    if limit is None or config is None or config.secure is None:
        return limit
    return 2 * limit  # float32 -> uint64 words, with the header's slack doubled


def _plain_update_limit(config: RoundConfig | None, base_bytes: bytes | None) -> int | None:
    if config is not None and base_defines_layout(config):
        if base_bytes is None:
            return MAX_WEIGHTS_BYTES
        try:
            return max_blob_bytes(layout_of(from_safetensors(base_bytes)[0]))
        except LedgerError:
            return MAX_WEIGHTS_BYTES
    try:
        return max_blob_bytes(model_layout(config.model)) if config is not None else None
    except LedgerError:
        return None


def _base_defines_layout(config_bytes: bytes | None) -> bool:
    """Whether readable config bytes make the base model's layout the round's (their other problems are
    reported where they always were)."""
    if config_bytes is None:
        return False
    try:
        return base_defines_layout(RoundConfig.from_bytes(config_bytes))
    except LedgerError:
        return False


def recover_join_signer(federation: FederationClient, event: IndexedEvent, terms_cid: str) -> str | None:
    """The address that signed the EIP-712 join in ``event`` for this deployment, None if unrecoverable."""
    typed = join_typed_data(
        chain_id=federation.chain_id,
        contract=federation.address,
        participant=event.args["participant"],
        version=int(event.args["version"]),
        terms_cid=terms_cid,
        deadline=int(event.args["deadline"]),
    )
    try:
        message = encode_typed_data(typed["domain"], typed["types"], typed["message"])
        return str(Account.recover_message(message, signature=bytes.fromhex(event.args["signature"][2:])))
    except (ValueError, TypeError):
        return None


def _signature_check(federation: FederationClient, index: LedgerIndex, membership: Membership, event: IndexedEvent) -> Check:
    participant, version = event.args["participant"], int(event.args["version"])
    where = {"block": event.block, "tx_hash": event.tx_hash, "participant": participant}
    terms = membership.terms.get(version)
    if terms is None:
        return Check("signature", False, f"{participant} joined agreement v{version}, which was never published", **where)
    signer = recover_join_signer(federation, event, terms)
    if signer != participant:
        return Check("signature", False, f"the join signature of {participant} for v{version} was made by {signer}", cid=terms, **where)
    if index.block_timestamp(event.block) > int(event.args["deadline"]):
        return Check("signature", False, f"the join signature of {participant} for v{version} had expired at its block", **where)
    return Check("signature", True, f"{participant} signed agreement v{version} ({terms})", cid=terms, **where)


def _membership_check(membership: Membership, event: IndexedEvent, signatures: dict[tuple[str, int], Check]) -> Check:
    participant, round_id = event.args["participant"], int(event.args["roundId"])
    where = {"round_id": round_id, "block": event.block, "tx_hash": event.tx_hash, "cid": event.args.get("cid"), "participant": participant}
    refusal = submission_refusal(membership, participant)
    if refusal is not None:
        return Check("membership", False, refusal, **where)
    accepted = membership.members[participant].accepted_version
    signature = signatures.get((participant, accepted))
    if signature is None or not signature.ok:
        return Check("membership", False, f"{participant} submitted without a valid signature for agreement v{accepted}", **where)
    return Check("membership", True, f"{participant} was admitted under agreement v{accepted}", **where)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


@dataclass
class _Sealing:
    """The auditor's side of sealed rounds: the chain's key directory and, maybe, one recipient's key."""

    federation: FederationClient
    key: X25519PrivateKey | None
    sealed_rounds: list[int] = field(default_factory=list)
    opened_rounds: list[int] = field(default_factory=list)

    def check_key_used(self) -> None:
        """InvalidInputError when a key was given but is no recipient's registered key in any round checked."""
        if self.key is None or self.opened_rounds:
            return
        public = f"public key 0x{public_key_bytes(self.key).hex()}"
        if not self.sealed_rounds:
            raise InvalidInputError(
                f"no round checked here is sealed, so the encryption key given ({public}) opens nothing; drop --key."
            )
        raise InvalidInputError(
            f"the encryption key given ({public}) is not one that a recipient of sealed round(s) "
            f"{', '.join(map(str, self.sealed_rounds))} registered on chain; give a recipient's encryption key "
            "(the one its address registered), or drop --key to check everything but the aggregates."
        )


def verify_ledger(
    federation: FederationClient,
    store: ContentStore,
    index: LedgerIndex,
    *,
    round_id: int | None = None,
    progress: bool = True,
    decryption_key: X25519PrivateKey | None = None,
    strict: bool = False,
) -> VerifyReport:
    """Sync ``index`` and re-check the ledger (one round, or all); see the module doc for the checks.

    ``decryption_key``: a recipient's encryption key, to open and recompute the sealed rounds it
    is a recipient of; InvalidInputError when it is no recipient's in any round checked.
    ``strict``: findings against parties count as failures.
    """
    index.sync(progress=progress)
    table = rounds(index)
    if round_id is not None and round_id not in {row["round_id"] for row in table}:
        raise InvalidInputError(
            f"there is no round {round_id} in this ledger (it has {len(table)}); list them with `fedledger audit rounds`."
        )
    selected = [row for row in table if round_id is None or row["round_id"] == round_id]
    report = VerifyReport(federation.address, federation.chain_id, index.last_block, [row["round_id"] for row in selected],
                          strict=strict)
    code = compare_code(federation.w3, federation.address)
    report.checks.append(Check("contract", code.ok, code.sentence(), block=code.block))
    blobs = _Blobs(store, report)
    chosen = {row["round_id"] for row in selected}

    # Membership and signatures, replayed in chain order up to each submission.
    submitters = {e.args["participant"] for e in index.events("UpdateSubmitted") if int(e.args["roundId"]) in chosen}
    signatures: dict[tuple[str, int], Check] = {}
    submissions: dict[int, list[tuple[IndexedEvent, Check]]] = {rid: [] for rid in chosen}
    relayed = relayers(index)
    for event, membership in replay(index, extra=("UpdateSubmitted",)):
        if event.name == "AgreementPublished" and round_id is None:
            blobs.get(event.args.get("terms_cid"), what=f"agreement v{event.args['version']} terms",
                      block=event.block, tx_hash=event.tx_hash)
        elif event.name == "ParticipantJoined" and event.args["participant"] in submitters:
            check = _signature_check(federation, index, membership, event)
            signatures[(event.args["participant"], int(event.args["version"]))] = check
            report.checks.append(check)
        elif event.name == "UpdateSubmitted" and int(event.args["roundId"]) in chosen:
            check = _membership_check(membership, event, signatures)
            if event.tx_hash in relayed:
                check = replace(check, relayer=relayed[event.tx_hash])
            report.checks.append(check)
            submissions[int(event.args["roundId"])].append((event, check))

    genesis = table[0]["base_cid"] if table else None
    earlier_globals: dict[str, int] = {}
    sealing = _Sealing(federation, decryption_key)
    agreed = AgreedTasks(index, store)
    outcomes: dict[int, Receipt | str] = {}
    with _progress(progress) as bar:
        task = bar.add_task("verifying rounds", total=len(selected))
        for row in table:
            if row["round_id"] in chosen:
                _verify_round(row, submissions[row["round_id"]], blobs, report, genesis, earlier_globals, sealing, agreed,
                              outcomes)
                bar.advance(task)
            if row["state"] == "finalized" and row["global_cid"]:
                earlier_globals.setdefault(row["global_cid"], row["round_id"])
    _party_findings(report.checks, outcomes)
    report.checks.extend(_privacy_check(row) for row in privacy_rows(index, store)
                         if row["round_id"] in chosen and row["recomputed_micros"] is not None)
    sealing.check_key_used()
    return report


def _verify_round(
    row: dict[str, Any],
    submitted: list[tuple[IndexedEvent, Check]],
    blobs: _Blobs,
    report: VerifyReport,
    genesis: str | None,
    earlier_globals: dict[str, int],
    sealing: _Sealing,
    agreed: AgreedTasks,
    outcomes: dict[int, Receipt | str],
) -> None:
    """Append the round's checks to ``report``; record in ``outcomes`` what its aggregate used: its
    readable receipt, or why no aggregate used any update (nothing recorded when that is unknown)."""
    rid = row["round_id"]
    opened = {"round_id": rid, "block": row["opened_block"], "tx_hash": row["opened_tx"]}
    closed = {"round_id": rid, "block": row["closed_block"], "tx_hash": row["closed_tx"]}
    checks = report.checks

    # Lineage: the base is the genesis model or an earlier round's result.
    base = row["base_cid"]
    if base == genesis:
        checks.append(Check("lineage", True, f"round {rid} starts from the genesis model", cid=base, **opened))
    elif base in earlier_globals:
        checks.append(Check("lineage", True, f"round {rid} starts from round {earlier_globals[base]}'s model", cid=base, **opened))
    else:
        checks.append(Check("lineage", False, f"round {rid} starts from a model that is neither the genesis model "
                                              "nor an earlier round's global model", cid=base, **opened))

    config_bytes = blobs.get(row["config_cid"], what=f"round {rid} config", **opened)
    base_cap = MAX_WEIGHTS_BYTES if _base_defines_layout(config_bytes) else None  # its layout comes from its base
    base_bytes = blobs.get(base, what=f"round {rid} base model", max_bytes=base_cap, **opened)
    config = None
    if config_bytes is not None:
        try:
            config = RoundConfig.from_bytes(config_bytes)
        except LedgerError as error:
            checks.append(Check("receipt", False, f"round {rid} config is unreadable: {error}", cid=row["config_cid"], **opened))
    if config is not None:
        task_check = _task_check(row, config, agreed.of(row["agreement_version"]), opened)
        if task_check is not None:
            checks.append(task_check)

    update_limit = _update_limit(config, base_bytes)
    round_seal: RoundSeal | None = None
    opener: RoundOpener | None = None
    if config is not None and config.seal_to is not None:
        sealing.sealed_rounds.append(rid)
        try:
            round_seal = RoundSeal.read(sealing.federation, rid, config.seal_to, opened_block=row["opened_block"])
        except LedgerError as error:
            checks.append(Check("envelope", False, f"round {rid} is sealed to recipients without keys: {error}",
                                cid=row["config_cid"], **opened))
            return
        opener = None if sealing.key is None else round_seal.opener(sealing.key)
        if opener is not None:
            sealing.opened_rounds.append(rid)
        if update_limit is not None:
            update_limit = round_seal.max_sealed_bytes(update_limit)
    badly_sealed: dict[tuple[str, str], str] = {}
    for event, _ in submitted:
        where = {"round_id": rid, "block": event.block, "tx_hash": event.tx_hash, "participant": event.args["participant"]}
        data = blobs.get(event.args.get("cid"), what=f"update of {event.args['participant']} in round {rid}",
                         max_bytes=update_limit, keep=False, **where)
        if data is not None and round_seal is not None:
            data = _open_envelope(data, event, round_seal, opener, checks, badly_sealed, where)
        if data is not None:
            checks.append(_metrics_check(data, event, where))

    if row["state"] != "finalized":
        outcomes[rid] = (f"round {rid} is still open and no aggregate has used it yet" if row["state"] == "open"
                         else f"round {rid} closed without an aggregate")
        return
    global_bytes = blobs.get(row["global_cid"], what=f"round {rid} global model", **closed)
    if config is not None and config.task is not None and global_bytes is not None and row["global_cid"] != base:
        checks.append(_global_task_check(row, config, global_bytes, closed))
    receipt_bytes = blobs.get(row["receipt_cid"], what=f"round {rid} receipt", **closed)
    if receipt_bytes is None:
        return
    try:
        receipt = Receipt.from_bytes(receipt_bytes)
    except LedgerError as error:
        checks.append(Check("receipt", False, f"round {rid} receipt is unreadable: {error}", cid=row["receipt_cid"], **closed))
        return
    outcomes[rid] = receipt
    checks.extend(_receipt_checks(row, receipt, submitted, closed))
    for entry in receipt.included:
        problem = badly_sealed.get((entry.participant.lower(), entry.cid))
        if problem is not None:
            checks.append(Check("envelope", False, f"round {rid} receipt includes the update {entry.cid} of "
                                                   f"{entry.participant}, which is not sealed as the round requires: "
                                                   f"{problem}", cid=entry.cid, participant=entry.participant,
                                round_id=rid, block=closed["block"], tx_hash=closed["tx_hash"]))
    if config is not None:
        checks.append(_strategy_check(rid, receipt, config, row, closed))
    if config is None or base_bytes is None:
        lacking = [cid for cid in (row["config_cid"], base) if blobs.status(cid) == "missing"]
        checks.append(Check("aggregate", False, f"round {rid} cannot be recomputed: its config or base model is unavailable",
                            cid=lacking[0] if lacking else row["global_cid"], unchecked=bool(lacking), **closed))
        return
    checks.extend(_availability_checks(rid, receipt, submitted, blobs, closed))
    if round_seal is not None and opener is None:
        report.not_recomputed.append(rid)
        checks.append(Check("sealed", True, f"round {rid}: the aggregate was not recomputed because its updates are "
                                            f"sealed to {', '.join(round_seal.recipients)}; everything else was "
                                            "checked (`fedledger audit verify --key NAME` with a recipient's "
                                            "encryption key recomputes it)", cid=row["global_cid"], **closed))
        return
    board = None
    if config.secure is not None:
        try:
            board = read_board(sealing.federation, blobs.store, rid, config.secure)
        except LedgerError as error:
            checks.append(Check("aggregate", False, f"round {rid} cannot be recomputed: its secure aggregation "
                                                    f"documents are unreadable: {error}", cid=row["global_cid"],
                                unchecked=isinstance(error, ContentNotFoundError), **closed))
            return
    checks.extend(_aggregate_checks(row, receipt, receipt_bytes, config, submitted, blobs, closed, opener, board))


def _open_envelope(
    data: bytes,
    event: IndexedEvent,
    round_seal: RoundSeal,
    opener: RoundOpener | None,
    checks: list[Check],
    badly_sealed: dict[tuple[str, str], str],
    where: dict[str, Any],
) -> bytes | None:
    """Check a sealed update's envelope (no key needed); its plaintext when ``opener`` opens it, else None.

    An envelope sealed wrongly is recorded in ``badly_sealed`` and fails its check: the party's fault,
    a finding against it unless the receipt includes the update (``_party_findings``).
    """
    participant, cid = event.args["participant"], event.args.get("cid")
    try:
        round_seal.check(data, sender=participant)
    except SealingError as error:
        badly_sealed[(participant.lower(), cid)] = str(error)
        checks.append(Check("envelope", False, f"the update of {participant} is not sealed as the round requires "
                                               f"({error}); it may not be aggregated", cid=cid, **where))
        return None
    checks.append(Check("envelope", True, f"the update of {participant} is sealed for this round and sender to the "
                                          "recipients' registered keys", cid=cid, **where))
    if opener is None:
        return None
    try:
        return opener.open(data, sender=participant)
    except SealingError:
        return None  # the recomputed receipt must reject it with this reason


def _party_findings(checks: list[Check], outcomes: dict[int, Receipt | str]) -> None:
    """Make each failed party check (``PARTY_CHECKS``) on an update that no aggregate used a finding against its party.

    ``outcomes``: round -> its readable receipt, or why no aggregate used its updates. A round absent
    from it (finalized, its receipt unreadable or not in this store) keeps its failures: whether its
    aggregate used the update is unknown.
    """
    for position, check in enumerate(checks):
        if (check.check not in PARTY_CHECKS or check.ok or check.unchecked or check.finding
                or check.round_id not in outcomes):
            continue
        outcome, key = outcomes[check.round_id], ((check.participant or "").lower(), check.cid)
        if isinstance(outcome, Receipt):
            if key in {(u.participant.lower(), u.cid) for u in outcome.included}:
                continue  # aggregated: the federation used what the party got wrong
            rejected = key in {(u.participant.lower(), u.cid) for u in outcome.rejected}
            outcome = f"round {check.round_id}'s receipt {'rejects' if rejected else 'does not include'} it"
        checks[position] = replace(check, finding=True, what=f"{check.what} (a finding against {check.participant}: "
                                                             f"{outcome})")


def _task_check(row: dict[str, Any], config: RoundConfig, agreed: AgreementTask, where: dict[str, Any]) -> Check | None:
    """Does the round train the task of the agreement version in force at its opening? None: nothing to check
    (a built-in round under an agreement that names no task, or whose terms this store lacks)."""
    rid, version = row["round_id"], row["agreement_version"]
    named = None if config.task is None else config.task.cid
    if agreed.missing:
        if named is None:
            return None
        return Check("task", False, f"round {rid} config names task {named}, but the terms {agreed.terms_cid} of "
                                    f"agreement v{version} in force at its opening are not in this auditor's store, "
                                    "so whether they name it could not be checked", cid=agreed.terms_cid,
                     unchecked=True, **where)
    if agreed.problem is not None:
        return Check("task", False, f"round {rid} config names {describe_task(named)}, but which task agreement "
                                    f"v{version} in force at its opening names is unknown: {agreed.problem}",
                     cid=agreed.terms_cid or row["config_cid"], **where)
    if named == agreed.task:
        if named is None:
            return None
        return Check("task", True, f"round {rid} trains task {named}, the task of agreement v{version} in force at "
                                   "its opening", cid=named, **where)
    agreement = f"agreement v{version} in force at its opening" if version else "no agreement was in force at its opening, so it"
    built_in = f" (a built-in round of model {config.model!r})" if named is None else ""
    return Check("task", False, f"round {rid} config names {describe_task(named)}{built_in}, but {agreement} names "
                                f"{describe_task(agreed.task)}", cid=row["config_cid"], **where)


def _global_task_check(row: dict[str, Any], config: RoundConfig, data: bytes, where: dict[str, Any]) -> Check:
    """Does a task round's global model name the round's task (and its frozen tensors' file) in its metadata?"""
    assert config.task is not None
    rid, cid, task = row["round_id"], row["global_cid"], config.task
    try:
        metadata = metadata_of(data, source=f"round {rid} global model")
    except LedgerError as error:
        return Check("task", False, f"round {rid} global model does not say which task made it: {error}", cid=cid, **where)
    named, frozen = metadata.get("task"), metadata.get("frozen_cid")
    if named != task.cid or frozen != (task.frozen_cid or ""):
        return Check("task", False, f"round {rid} global model names task {named!r} (frozen tensors {frozen!r}) in its "
                                    f"metadata, but its config names task {task.cid} (frozen tensors "
                                    f"{task.frozen_cid!r})", cid=cid, **where)
    return Check("task", True, f"round {rid} global model names its task {task.cid}", cid=cid, **where)


def _privacy_check(row: dict[str, Any]) -> Check:
    where = {"round_id": row["round_id"], "block": row["block"], "tx_hash": row["tx_hash"], "participant": row["participant"]}
    if row["unknown_config"] is not None:
        return Check("privacy", False, f"{row['participant']}'s cumulative ε cannot be recomputed: this store lacks "
                                       "the config of a round it took part in", cid=row["unknown_config"], unchecked=True, **where)
    problem = privacy_problem(row)
    if problem is not None:
        return Check("privacy", False, problem, **where)
    return Check("privacy", True, f"{row['participant']} declared ε = {row['epsilon_declared']:.6f}, at least the "
                                  f"{row['epsilon_recomputed']:.6f} recomputed, within its budget", **where)


def _metrics_check(data: bytes, event: IndexedEvent, where: dict[str, Any]) -> Check:
    cid = event.args.get("cid")
    try:
        _, metadata = from_safetensors(data)
        metrics = metadata.get("metrics")
        recorded = bytes.fromhex(event.args["metricsHash"][2:])
        if isinstance(metrics, dict) and metrics_hash(metrics) == recorded:
            return Check("metrics", True, "the update's metrics match the metrics hash on chain", cid=cid, **where)
        return Check("metrics", False, "the update's metadata metrics do not hash to the metrics hash on chain", cid=cid, **where)
    except LedgerError as error:
        return Check("metrics", False, f"the update is not a readable weights file: {error}", cid=cid, **where)


def _receipt_checks(
    row: dict[str, Any], receipt: Receipt, submitted: list[tuple[IndexedEvent, Check]], where: dict[str, Any]
) -> Iterable[Check]:
    rid, cid = row["round_id"], row["receipt_cid"]
    recorded = {(e.args["participant"].lower(), e.args.get("cid")): e for e, _ in submitted}
    fields = [
        ("round", receipt.round_id, rid),
        ("base model", receipt.base_cid, row["base_cid"]),
        ("config", receipt.config_cid, row["config_cid"]),
        ("global model", receipt.global_cid, row["global_cid"]),
    ]
    for name, claimed, actual in fields:
        if claimed != actual:
            yield Check("receipt", False, f"round {rid} receipt names {name} {claimed}, the chain {actual}", cid=cid, **where)
    listed = ([(u, "included") for u in receipt.included] + [(u, "rejected") for u in receipt.rejected]
              + [(u, "unavailable") for u in receipt.unavailable])
    for entry, kind in listed:
        event = recorded.get((entry.participant.lower(), entry.cid))
        if event is None:
            yield Check("receipt", False, f"round {rid} receipt lists {kind} update {entry.cid} by {entry.participant}, "
                                          "which was never submitted in this round", cid=entry.cid,
                        participant=entry.participant, round_id=rid, block=where["block"], tx_hash=where["tx_hash"])
        elif kind == "included" and entry.samples != int(event.args["samples"]):
            yield Check("receipt", False, f"round {rid} receipt weighs {entry.participant}'s update with {entry.samples} "
                                          f"samples, the chain records {event.args['samples']}", cid=entry.cid,
                        participant=entry.participant, round_id=rid, block=where["block"], tx_hash=where["tx_hash"])
    for entry in receipt.unrecorded:
        if (entry.participant.lower(), entry.cid) in recorded:
            yield Check("receipt", False, f"round {rid} receipt says the contract refused update {entry.cid} by "
                                          f"{entry.participant}, but the chain records it in this round", cid=entry.cid,
                        participant=entry.participant, round_id=rid, block=where["block"], tx_hash=where["tx_hash"])
    yield Check("receipt", True, f"round {rid} receipt read and compared with the chain", cid=cid, **where)


def _strategy_check(rid: int, receipt: Receipt, config: RoundConfig, row: dict[str, Any], where: dict[str, Any]) -> Check:
    """The receipt's strategy parameters against those the config's strategy resolves to (defaults filled in)."""
    try:
        used = strategy_from_params(config.strategy).params()
    except LedgerError as error:
        return Check("strategy", False, f"round {rid} config (config hash {row['config_hash']}) names no usable "
                                        f"strategy: {error}", cid=row["receipt_cid"], **where)
    if receipt.strategy != used:
        return Check("strategy", False, f"round {rid} receipt says strategy {receipt.strategy}, but the round config "
                                        f"(config hash {row['config_hash']}) says {config.strategy}, which is {used}",
                     cid=row["receipt_cid"], **where)
    return Check("strategy", True, f"round {rid} aggregated with the configured strategy {used}",
                 cid=row["receipt_cid"], **where)


def _availability_checks(
    rid: int, receipt: Receipt, submitted: list[tuple[IndexedEvent, Check]], blobs: _Blobs, where: dict[str, Any]
) -> Iterable[Check]:
    """Each update the receipt calls unavailable: is it missing here too, or does it exist after all?"""
    recorded = {(e.args["participant"].lower(), e.args.get("cid")) for e, _ in submitted}
    for entry in receipt.unavailable:
        if (entry.participant.lower(), entry.cid) not in recorded:
            continue  # named by the receipt check: never submitted in this round
        at = {**where, "cid": entry.cid, "participant": entry.participant}
        if blobs.status(entry.cid) in ("ok", "too large"):
            yield Check("availability", False, f"round {rid} receipt calls the update {entry.cid} of {entry.participant} "
                                               "unavailable at aggregation, but this auditor's store holds it: the "
                                               "aggregate left out an update that exists (published late, or "
                                               "withheld by the aggregator)", **at)
        else:
            yield Check("availability", True, f"round {rid} receipt calls the update {entry.cid} of {entry.participant} "
                                              "unavailable at aggregation, and this auditor cannot fetch it either", **at)


_CHECKED_ELSEWHERE = frozenset({"round_id", "base_cid", "config_cid", "global_cid", "strategy", "unrecorded"})
"""Receipt fields compared by the ``receipt`` check (with the chain) and the ``strategy`` check (with the config);
``unrecorded`` is the aggregator's word on what the contract refused, checked only against the chain's records."""


def _difference(claimed: Any, expected: Any) -> str:
    """How a receipt field differs from its recomputation, in words."""
    if isinstance(claimed, list) and isinstance(expected, list):
        parts = []
        lacking = [entry for entry in expected if entry not in claimed]
        extra = [entry for entry in claimed if entry not in expected]
        if lacking:
            parts.append(f"the receipt lacks {canonical_json(lacking).decode()}")
        if extra:
            parts.append(f"the receipt has {canonical_json(extra).decode()} instead")
        return "; ".join(parts) or "the same entries in another order"
    return f"the receipt says {canonical_json(claimed).decode()}, recomputing gives {canonical_json(expected).decode()}"


def _aggregate_checks(
    row: dict[str, Any],
    receipt: Receipt,
    receipt_bytes: bytes,
    config: RoundConfig,
    submitted: list[tuple[IndexedEvent, Check]],
    blobs: _Blobs,
    where: dict[str, Any],
    opener: RoundOpener | None = None,
    board: RoundBoard | None = None,
) -> list[Check]:
    """Repeat the aggregator's pure core on the eligible updates; compare the model CID and the whole receipt.

    A secure round (``board``: its advertisements and reveals) is recomputed from the masked vectors and
    the reveals, with no key."""
    rid = row["round_id"]
    info = RoundInfo(
        round_id=RoundId(rid), base_cid=row["base_cid"], deadline=row["deadline"], min_updates=row["min_updates"],
        config_hash=bytes.fromhex(row["config_hash"][2:]), state=row["state"], submissions=row["submissions"],
        global_cid=row["global_cid"], receipt_cid=row["receipt_cid"], opened_block=row["opened_block"],
        agreement_version=row["agreement_version"],
    )
    given = {(u.participant.lower(), u.cid) for u in receipt.unavailable}
    eligible, refused = [], []
    for event, membership in submitted:
        submission = submission_of(event)
        if membership.ok:
            eligible.append(submission)
        else:
            refused.append(RejectedUpdate(submission.participant, submission.cid, membership.what))
    lacking = [s.cid for s in eligible
               if (s.participant.lower(), s.cid) not in given and blobs.status(s.cid) == "missing"]
    if lacking:
        return [Check("aggregate", False, f"round {rid} cannot be recomputed: this auditor's store lacks the "
                                          f"update(s) {', '.join(lacking)}", cid=lacking[0], unchecked=True, **where)]
    try:
        if board is not None:
            blob, expected = aggregate_secure_updates(store=blobs.store, info=info, config=config, submissions=eligible,
                                                      pre_rejected=refused, board=board)
        else:
            blob, expected = aggregate_updates(
                store=blobs.store, info=info, config=config, strategy=strategy_from_params(config.strategy),
                submissions=eligible, pre_rejected=refused,
                unavailable=[(u.participant, u.cid) for u in receipt.unavailable], opener=opener,
            )
    except ContentNotFoundError as error:
        return [Check("aggregate", False, f"round {rid} cannot be recomputed: {error}", cid=row["global_cid"],
                      unchecked=True, **where)]
    except LedgerError as error:
        return [Check("aggregate", False, f"round {rid} cannot be recomputed: {error}", cid=row["global_cid"], **where)]
    checks = []
    if expected.global_cid != row["global_cid"]:
        checks.append(Check("aggregate", False, f"round {rid} global model {row['global_cid']} is not the aggregate of "
                                                f"its updates; recomputing gives {expected.global_cid}",
                            cid=row["global_cid"], **where))
    claimed_document = json.loads(receipt_bytes)  # readable: Receipt.from_bytes parsed it
    expected_document = expected.document()
    for name in sorted((set(claimed_document) | set(expected_document)) - _CHECKED_ELSEWHERE):
        claimed, recomputed = claimed_document.get(name), expected_document.get(name)
        if claimed != recomputed:
            checks.append(Check("aggregate", False, f"round {rid} receipt field {name!r} differs from the recomputation: "
                                                    f"{_difference(claimed, recomputed)}", cid=row["receipt_cid"], **where))
    if canonical_json(claimed_document) != bytes(receipt_bytes):
        checks.append(Check("aggregate", False, f"round {rid} receipt is not canonical JSON, so its CID is not the one "
                                                "the recomputation gives", cid=row["receipt_cid"], **where))
    if not checks:
        checks.append(Check("aggregate", True, f"round {rid} global model and receipt recomputed exactly from "
                                               f"{len(expected.included)} included update(s)", cid=row["global_cid"], **where))
    return checks
