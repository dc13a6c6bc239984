"""A party's three steps in a secure round: advertise its keys, submit a masked update, reveal for dropouts.

1. ``advertise``: a fresh round seed; its round public key and the seed's shares, each encrypted to a
   neighbour's encryption key registered on chain at the round's opening, pinned and posted
   (ADVERTISE) before the key deadline. The seed and the advertisement's CID are journaled before
   anything is posted, so a party restarted after a crash posts the same advertisement, never a
   second one with another seed. The seed stays in the party's journal (its own disk): it is what
   its masks come from, and a party that loses it cannot submit in this round.
2. ``masked_update_bytes``: once the key phase is over, the trained update, clipped, encoded in fixed
   point, weighted by its sample count and masked with every neighbour that advertised.
3. ``reveal``: after the deadline, the shares this party holds of each neighbour that advertised
   but did not submit (the chain says which), decrypted with its own encryption key, pinned and
   posted (REVEAL). Never a share of a party that submitted: ``ledger.secagg`` refuses it, and the
   contract takes a submission only before the deadline, so a dropout's masked vector can never
   appear after its seed is revealed.

A party without ether posts both messages through a relay: ``post`` is then
``node.relay_client.RelayClient.post_round_message`` (the party signs, the relay pays; the contract's
``postSignedRoundMessage`` applies the same rules and names the party on the board).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ledger.chain.connection import chain_now
from ledger.chain.federation import FederationClient
from ledger.contract_constants import RoundMessageKind
from ledger.errors import InvalidInputError
from ledger.ipfs.store import ContentStore
from ledger.sealing.keys import load_encryption_key, workspace_key_for
from ledger.sealing.recipients import registered_keys
from ledger.secagg.graph import cohort_member, neighbours_of
from ledger.secagg.masks import masked_vector
from ledger.secagg.reveal import shares_to_reveal
from ledger.secagg.shares import make_advertisement, new_round_seed
from ledger.types import Address, Cid
from ledger.utc import utc_text
from ledger.weights import Layout, to_safetensors
from ledger.workspace import Workspace
from node.journal import Journal
from node.secure.board import RoundBoard, read_board
from node.secure.layout import flatten
from node.secure.settings import SecureRound

MASKED_KIND = "fedledger-secagg-masked"


PostMessage = Callable[[int, int, Cid], object]
"""How a party posts a round message (round, kind, CID): ``FederationClient.post_round_message`` (it pays
the gas), or ``node.relay_client.RelayClient.post_round_message`` (it signs, a relay pays)."""


def advertise(
    federation: FederationClient, store: ContentStore, journal: Journal, *, round_id: int, settings: SecureRound,
    opened_block: int, post: PostMessage | None = None,
) -> str:
    """Post this party's advertisement for ``round_id`` (once), with ``post`` (default: the party sends it
    itself); its CID."""
    me = _me(federation)
    cohort_member(settings.params, me, "party")
    board = read_board(federation, store, round_id, settings)
    if me in board.advertised:
        return board.advertised[me].cid
    if _latest_stamp(federation) > settings.key_deadline:
        raise InvalidInputError(
            f"the key phase of round {round_id} ended at {utc_text(settings.key_deadline)} and {me} did not advertise "
            "in it, so no peer masks with it: it cannot take part in this round; take part in the next one."
        )
    seed = _seed(journal, create=True)
    cid = journal.get("secagg_advertisement")
    if not (cid and store.has(cid)):
        peers = neighbours_of(settings.params, me, board.context)
        keys = registered_keys(federation, peers, block=opened_block)
        advertisement = make_advertisement(settings.params, board.context, party=me, seed=seed, long_term_keys=keys)
        cid = store.add_bytes(advertisement.to_bytes(), pin=True)
        journal.record(secagg_advertisement=cid)
    (post or federation.post_round_message)(round_id, RoundMessageKind.ADVERTISE, cid)
    return str(cid)


class KeyPhaseOpen(InvalidInputError):
    """The key phase of a round is still open: a party masks only after it (``wait_for_key_phase``'s timeout)."""


def key_phase_over(federation: FederationClient, store: ContentStore, *, round_id: int,
                   settings: SecureRound) -> tuple[bool, RoundBoard]:
    """One look, no wait: whether the key phase is over (every cohort member advertised, or the latest block
    is stamped past the key deadline), and the board as read."""
    board = read_board(federation, store, round_id, settings)
    return board.all_advertised or _latest_stamp(federation) > settings.key_deadline, board


def wait_for_key_phase(
    federation: FederationClient, store: ContentStore, *, round_id: int, settings: SecureRound,
    poll_s: float = 2.0, timeout_s: float | None = None, say: Callable[[str], None] | None = None,
) -> RoundBoard:
    """The board once the key phase is over: every cohort member advertised, or a block is stamped past
    the key deadline (on a chain that mines only on transactions, the first block after it).

    ``timeout_s``: KeyPhaseOpen once that many seconds have passed with the phase still open (0: one
    look, no wait; what a service that must not block gives); None waits as long as it takes."""
    started = time.monotonic()
    told = False
    while True:
        over, board = key_phase_over(federation, store, round_id=round_id, settings=settings)
        if over:
            return board
        if timeout_s is not None and time.monotonic() - started >= timeout_s:
            raise KeyPhaseOpen(
                f"the key phase of round {round_id} is still open ({len(board.advertisements)} of "
                f"{len(settings.params.cohort)} parties advertised; it ends at {utc_text(settings.key_deadline)}); "
                "run the command again after that."
            )
        if say is not None and not told:
            say(f"round {round_id}: waiting for the key phase to end at {utc_text(settings.key_deadline)} "
                f"({len(board.advertisements)} of {len(settings.params.cohort)} parties advertised)")
            told = True
        time.sleep(poll_s)


def masked_update_bytes(
    arrays: dict[str, np.ndarray], layout: Layout, *, samples: int, board: RoundBoard, journal: Journal, me: str,
    round_id: int,
) -> bytes:
    """The party's masked update as pinned: one uint64 tensor, its metadata naming the party, round and samples."""
    seed = _seed(journal, create=False)
    if seed is None:
        raise InvalidInputError(
            f"{me} has no round seed for round {round_id} in its journal, so it cannot mask: it advertises with "
            "`fedledger node train` before the key deadline, from the same workspace."
        )
    vector = masked_vector(flatten(arrays, layout), samples, board.settings.params, board.context, party=me, seed=seed,
                           advertisements=board.advertisements)
    metadata = {"kind": MASKED_KIND, "participant": me, "round": round_id, "samples": samples, "metrics": {}}
    return to_safetensors({"masked": vector}, metadata=metadata)


def reveal(
    federation: FederationClient, store: ContentStore, journal: Journal, *, round_id: int, settings: SecureRound,
    long_term_key: X25519PrivateKey, post: PostMessage | None = None,
) -> str | None:
    """Post this party's reveal for ``round_id`` after its deadline, with ``post`` (default: the party sends
    it itself); its CID, or None when it holds no share of any dropout (nothing to reveal)."""
    me = _me(federation)
    info = federation.round(round_id)
    if chain_now(federation.w3) <= info.deadline:
        raise InvalidInputError(
            f"round {round_id} takes submissions until {utc_text(info.deadline)}; shares are revealed only after "
            "that, when the chain says who dropped out: run `fedledger node reveal` again then."
        )
    board = read_board(federation, store, round_id, settings)
    if me in board.revealed:
        return board.revealed[me].cid
    submitted = {Address(s.participant) for s in federation.submissions(round_id)}
    survivors = [party for party in board.advertisements if party in submitted]
    if me not in survivors:
        raise InvalidInputError(
            f"{me} did not submit a masked update in round {round_id} after advertising, so the contract takes no "
            "reveal from it; only parties that submitted reveal shares."
        )
    dropouts = [party for party in board.advertisements if party not in submitted]
    if not dropouts:
        return None
    document = shares_to_reveal(settings.params, board.context, holder=me, long_term_key=long_term_key,
                                advertisements=board.advertisements, submitted=survivors, dropouts=dropouts)
    if not document.shares:
        return None
    cid = store.add_bytes(document.to_bytes(), pin=True)
    journal.record(secagg_reveal=cid)
    (post or federation.post_round_message)(round_id, RoundMessageKind.REVEAL, cid)
    return str(cid)


def own_encryption_key(workspace: Workspace, federation: FederationClient, name: str | None = None) -> X25519PrivateKey:
    """This party's encryption key: ``name``, or the workspace's key whose public half it registered on chain."""
    me = _me(federation)
    registered = federation.encryption_key(me)
    if registered is None:
        raise InvalidInputError(
            f"{me} has no encryption key registered on chain, so it holds no shares; register one with "
            "`fedledger key publish-encryption` before the next secure round."
        )
    found = workspace_key_for(workspace, {registered}, name)
    if found is not None:
        return load_encryption_key(workspace, found)
    raise InvalidInputError(
        f"{'the encryption key ' + repr(name) if name else 'no encryption key in this workspace'} is "
        f"{'not ' if name else ''}the one {me} registered on chain (0x{registered.hex()}); give it with "
        "--encryption-key NAME (or copy its key file to keys/encryption/)."
    )


def say_on_stderr(text: str) -> None:
    """Progress lines go to stderr: stdout carries a command's result (JSON with --json)."""
    print(text, file=sys.stderr, flush=True)


def _me(federation: FederationClient) -> Address:
    if federation.account is None:
        raise InvalidInputError("a secure round needs the participant's own key; pass --key NAME.")
    return Address(federation.account.address)


def _seed(journal: Journal, *, create: bool) -> bytes | None:
    text = journal.get("secagg_seed")
    if text:
        return bytes.fromhex(text)
    if not create:
        return None
    seed = new_round_seed()
    journal.record(secagg_seed=seed.hex())
    return seed


def _latest_stamp(federation: FederationClient) -> int:
    return int(federation.w3.eth.get_block("latest")["timestamp"])
