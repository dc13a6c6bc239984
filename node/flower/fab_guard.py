"""The party refuses to train for a Flower run of code it did not agree to.

An agreement version may name a Flower App Bundle by its sha256 (``fedledger agreement publish TERMS
--flower-app FAB_FILE``, ``node.tasks.agreement``): the hash ``flwr build`` computes and Flower names
every run's FAB by (``Run.fab_hash``). Before a party trains (``agreed_fab_mod``, a Flower mod for
the ClientApp) and again before it pins or sends anything (``record_update``), it compares the run's
FAB hash with the one named by the agreement in force, the version the contract requires it to have
accepted. On a mismatch it replies with a refusal sentence instead of an update, which the server names
in the receipt's ``unrecorded`` list, like the contract's own refusals.

Where the run's FAB hash comes from: Flower 1.42 hands a ClientApp only its ``Message`` and ``Context``
(run id, node id, node and run config, state), not the run record. The process that runs the ClientApp
reads the run record (``Run.fab_hash``, and the FAB whose bytes hash to it) from the SuperNode's Runtime
API (``pull_task_input``) and notes it here with ``note_run_fab(run.run_id, fab.hash_str)``; the guard
reads it back by the context's run id. A party that cannot learn the run's FAB hash refuses to train
when its agreement names a FAB: not knowing is not agreeing.
"""

from __future__ import annotations

from flwr.app import Context, Message, RecordDict
from flwr.clientapp.typing import ClientAppCallable

from ledger.errors import ContentNotFoundError, InvalidInputError
from node.flower.connection import Ledger, party_ledger
from node.flower.records import REPLY_KEY, PartyReply
from node.tasks.agreement import is_sha256_hex, read_agreement

_RUN_FABS: dict[int, str] = {}
"""The FAB hash of each run this process ran a ClientApp of, as the SuperNode's run record names it."""


def note_run_fab(run_id: int, fab_hash: str) -> None:
    """Record that run ``run_id`` runs the FAB whose sha256 (hex) is ``fab_hash``: Flower's ``Run.fab_hash``,
    which the ClientApp's runner reads from the SuperNode with the task's inputs."""
    if not is_sha256_hex(fab_hash):
        raise InvalidInputError(f"the FAB hash {fab_hash!r} of run {run_id} is not a sha256 (64 lowercase hex digits).")
    _RUN_FABS[run_id] = fab_hash


def run_fab_hash(context: Context) -> str | None:
    """The FAB hash of the context's run, or None when this process was not told it."""
    return _RUN_FABS.get(context.run_id)


def fab_refusal(ledger: Ledger, run_id: int, fab_hash: str | None) -> str | None:
    """Why this party refuses to train for run ``run_id`` of the FAB ``fab_hash`` (None: unknown), or None when
    the agreement in force names no Flower app or names exactly this one."""
    federation, store = ledger.federation, ledger.store
    version = federation.agreement_version()
    if version == 0:
        return None
    terms = federation.terms_cid(version)
    try:
        document = read_agreement(store, terms)
    except ContentNotFoundError:
        return (f"the terms {terms} of agreement version {version} in force are not in this party's store, so it cannot "
                "check which Flower app it agreed to run; nothing was trained or sent: fetch them into the store "
                "(`fedledger ipfs cat` on a node that holds them) and run again.")
    if document is None or document.flower_app is None:
        return None
    agreed = document.flower_app.sha256
    if fab_hash is None:
        return (f"agreement version {version} in force names the Flower app with sha256 {agreed}, but this ClientApp "
                f"process was not told the FAB hash of run {run_id}; nothing was trained or sent: run the ClientApp "
                "in a process that reads the run record from the SuperNode and calls "
                "node.flower.fab_guard.note_run_fab.")
    if fab_hash != agreed:
        return (f"run {run_id} runs the Flower app with sha256 {fab_hash}, but agreement version {version} in force, "
                f"the one this party accepted, names {agreed} (FAB {document.flower_app.cid}); nothing was trained "
                "or sent: run the agreed FAB, or publish an agreement naming this one and have every party accept it.")
    return None


def refusal_reply(msg: Message, ledger: Ledger, refusal: str) -> Message:
    """The reply of a party that refuses ``msg``: its address, no update (an empty CID), and the sentence."""
    me = "" if ledger.federation.account is None else ledger.federation.account.address
    content = RecordDict({REPLY_KEY: PartyReply(me, "", refusal, "party").to_record()})
    return Message(content=content, reply_to=msg)


def agreed_fab_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """A Flower mod (``ClientApp(mods=[agreed_fab_mod])``): a train message of a run whose FAB is not the one the
    agreement in force names is answered with the refusal, before the app trains; anything else goes on."""
    if msg.metadata.message_type.split(".")[0] != "train":
        return call_next(msg, context)
    ledger = party_ledger(context.node_config)
    refusal = fab_refusal(ledger, context.run_id, run_fab_hash(context))
    if refusal is not None:
        return refusal_reply(msg, ledger, refusal)
    return call_next(msg, context)
