"""A party's round secret: its seed, the round key derived from it, and the seed's shares.

Each party draws a fresh 16-byte seed per round (``new_round_seed``). Its round X25519 key is
HKDF-SHA256(seed, info = label, round context, party address), so the seed alone recreates it,
and a seed serves one round and one party only. The seed is Shamir-shared T-of-k among the
party's k neighbours (pycryptodome's ``Shamir``, GF(2**128); fewer than T shares say nothing
about the seed). Each share is encrypted to its holder's long-term X25519 key (the one registered
on chain) with HPKE, RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305, the suite ``ledger.sealing`` uses, its ``info`` binding the round context, the
owner, its round public key, the holder and the index; the advertisement also carries
SHA-256(label, context, owner, holder, index, share), so a share revealed later is checked by anyone
against what was committed before the deadline.

Keeping the seed: the party needs it from advertising until it has submitted its masked vector
(to mask), and nobody needs it after (its neighbours' shares recover it if it drops). The caller
journals it (encrypted at rest) for that window only, so that a restarted party can still submit,
and forgets it once its submission is on chain. A party that loses its seed before submitting
simply drops out. The seed must never be revealed while the party's masked vector could still
be published: that is why reveals are only ever made for dropouts (``ledger.secagg.reveal``).

A dishonest owner could deal shares that match their commitments but do not lie on one
polynomial; ``recover_round_seed`` then finds a seed whose round key is not the advertised one
and names the owner (InconsistentSharesError): that dropout's masks cannot be removed, and the
round is cancelled with that reason.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from ledger.errors import InvalidInputError
from ledger.secagg.context import (
    LABEL_COMMITMENT,
    LABEL_ROUND_KEY,
    LABEL_SHARE_ENCRYPTION,
    RoundContext,
    address_bytes,
    derive,
    parse_address,
)
from ledger.secagg.documents import PUBLIC_KEY_SIZE, SHARE_SIZE, Advertisement, ShareSlot
from ledger.secagg.errors import (
    InconsistentSharesError,
    InvalidAdvertisementError,
    TooFewSharesError,
    WrongShareError,
)
from ledger.secagg.graph import cohort_member, neighbours_of
from ledger.secagg.params import SecureParams
from ledger.types import Address

SEED_SIZE = 16
SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_PROBE = X25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def new_round_seed() -> bytes:
    """A fresh 16-byte round seed from the operating system's CSPRNG."""
    return os.urandom(SEED_SIZE)


def round_private_key(seed: bytes, party: str, context: RoundContext) -> X25519PrivateKey:
    """``party``'s round X25519 key for ``context``, derived from its ``seed``."""
    if not isinstance(seed, (bytes, bytearray)) or len(seed) != SEED_SIZE:
        raise InvalidInputError(f"a round seed is {SEED_SIZE} bytes; use the seed new_round_seed drew for this round.")
    raw = derive(bytes(seed), LABEL_ROUND_KEY, context, address_bytes(parse_address(party)))
    return X25519PrivateKey.from_private_bytes(raw)


def round_public_key(seed: bytes, party: str, context: RoundContext) -> bytes:
    """The 32 raw bytes of ``party``'s round public key."""
    return round_private_key(seed, party, context).public_key().public_bytes_raw()


def share_commitment(context: RoundContext, owner: str, holder: str, index: int, share: bytes) -> bytes:
    """SHA-256(label, context, owner, holder, index, share): what the advertisement commits to."""
    return hashlib.sha256(
        LABEL_COMMITMENT + context.encode() + address_bytes(owner) + address_bytes(holder)
        + index.to_bytes(2, "big") + share
    ).digest()


def _share_info(context: RoundContext, owner: str, owner_key: bytes, holder: str, index: int) -> bytes:
    return (LABEL_SHARE_ENCRYPTION + context.encode() + address_bytes(owner) + owner_key + address_bytes(holder)
            + index.to_bytes(2, "big"))


def usable_public_key(key: object, what: str) -> X25519PublicKey:
    """``key`` (32 raw bytes) as an X25519 public key; InvalidInputError for a malformed or low-order key.

    All zero bytes is what the chain returns for an address that registered no key; a low-order key
    would make every Diffie-Hellman with it give all-zero bytes, which cryptography refuses.
    """
    if not isinstance(key, (bytes, bytearray)) or len(key) != PUBLIC_KEY_SIZE or not any(key):
        raise InvalidInputError(
            f"{what} is not a 32-byte X25519 public key (all zero bytes: none was registered); "
            "use the key the party registered or advertised."
        )
    public = X25519PublicKey.from_public_bytes(bytes(key))
    try:
        _PROBE.exchange(public)
    except ValueError:
        raise InvalidInputError(f"{what} is a low-order X25519 point, useless as a key; use a real key.") from None
    return public


def make_advertisement(
    params: SecureParams,
    context: RoundContext,
    *,
    party: str,
    seed: bytes,
    long_term_keys: Mapping[str, bytes],
) -> Advertisement:
    """``party``'s advertisement: its round public key and its seed's shares for its k neighbours.

    ``long_term_keys`` maps each neighbour (at least) to the X25519 public key it registered on
    chain, read at the round's opening block.
    """
    me = cohort_member(params, party)
    public = round_public_key(seed, me, context)
    holders = neighbours_of(params, me, context)
    keys = dict(long_term_keys)
    if any(h not in keys for h in holders):
        keys = {parse_address(a, "key holder"): k for a, k in long_term_keys.items()}
    lacking = [h for h in holders if h not in keys]
    if lacking:
        raise InvalidInputError(
            f"no registered encryption key given for {', '.join(lacking)}, neighbour(s) of {me} in "
            f"{context.describe()}; read their keys from the chain at the round's opening block."
        )
    shares = Shamir.split(params.threshold, len(holders), bytes(seed))
    slots = []
    for holder, (index, share) in zip(holders, shares):
        recipient = usable_public_key(keys[holder], f"the encryption key of {holder}")
        encrypted = SUITE.encrypt(share, recipient, info=_share_info(context, me, public, holder, index))
        slots.append(ShareSlot(holder, index, encrypted, share_commitment(context, me, holder, index, share)))
    return Advertisement(context, me, public, tuple(slots))


def check_advertisement(params: SecureParams, context: RoundContext, advertisement: Advertisement) -> None:
    """Refuse an advertisement that does not fit the round: InvalidAdvertisementError naming its party.

    Checks, without any key: the round, the party's membership, a usable round key, and that the
    shares go to exactly the party's k neighbours, indices 1..k in ascending holder order.
    """
    party = cohort_member(params, advertisement.party)
    if advertisement.context != context:
        raise InvalidAdvertisementError(
            f"the advertisement of {party} is for {advertisement.context.describe()}, not {context.describe()}; "
            "reject it."
        )
    try:
        usable_public_key(advertisement.round_public_key, f"the round public key of {party}")
    except InvalidInputError as error:
        raise InvalidAdvertisementError(f"{error} (advertisement rejected)") from None
    holders = neighbours_of(params, party, context)
    dealt = [(s.holder, s.index) for s in advertisement.shares]
    if dealt != [(h, i) for i, h in enumerate(holders, start=1)]:
        raise InvalidAdvertisementError(
            f"the advertisement of {party} deals its shares to {[h for h, _ in dealt]} with indices "
            f"{[i for _, i in dealt]}, not to its neighbours {list(holders)} with indices 1 to {len(holders)}; "
            "reject it: its party must advertise again as fedledger writes it."
        )


def valid_advertisements(
    params: SecureParams, context: RoundContext, advertisements: Mapping[str, Advertisement]
) -> tuple[dict[Address, Advertisement], dict[str, str]]:
    """(the advertisements that fit the round, keyed by party; the rejected ones' keys with the reason).

    Every party, the aggregator and the auditor run this same deterministic check on the same
    published documents, so they agree on who advertised: a rejected advertisement counts as none
    (its party is masked with by nobody, and may not submit).
    """
    valid: dict[Address, Advertisement] = {}
    rejected: dict[str, str] = {}
    for key, advertisement in advertisements.items():
        try:
            party = cohort_member(params, key, "advertising party")
            if party != advertisement.party:
                raise InvalidAdvertisementError(
                    f"the advertisement published for {party} is {advertisement.party}'s; reject it."
                )
            check_advertisement(params, context, advertisement)
        except InvalidInputError as error:
            rejected[key] = str(error)
            continue
        valid[party] = advertisement
    return valid, rejected


def open_share(
    params: SecureParams,
    context: RoundContext,
    advertisement: Advertisement,
    *,
    holder: str,
    long_term_key: X25519PrivateKey,
) -> tuple[int, bytes]:
    """The (index, share) that ``advertisement``'s party dealt to ``holder``, decrypted and checked.

    Raises InconsistentSharesError naming the owner when the share does not open or does not match
    its own commitment: the owner dealt it wrong, not the holder.
    """
    check_advertisement(params, context, advertisement)
    me = parse_address(holder)
    slot = advertisement.slot_of(me)
    if slot is None:
        raise InvalidInputError(f"{advertisement.party} dealt no share to {me}; only its neighbours hold one.")
    info = _share_info(context, advertisement.party, advertisement.round_public_key, me, slot.index)
    try:
        share = SUITE.decrypt(slot.encrypted_share, long_term_key, info=info)
    except (InvalidTag, ValueError):
        share = b""
    if len(share) != SHARE_SIZE or share_commitment(context, advertisement.party, me, slot.index, share) != slot.commitment:
        raise InconsistentSharesError(
            f"the share {advertisement.party} dealt to {me} does not open with {me}'s registered key or does not "
            f"match its commitment; {advertisement.party} dealt it wrong (or {me} used another key than the one "
            "registered at the round's opening).",
            owner=advertisement.party,
        )
    return slot.index, share


def check_revealed_share(
    context: RoundContext, advertisement: Advertisement, *, holder: str, index: int, share: bytes
) -> None:
    """Refuse a revealed share that is not the one committed in the owner's advertisement.

    WrongShareError names the holder who published it and the owner whose seed it claims to share.
    """
    owner = advertisement.party
    slot = advertisement.slot_of(holder)
    if (slot is None or slot.index != index or len(share) != SHARE_SIZE
            or share_commitment(context, owner, holder, index, share) != slot.commitment):
        raise WrongShareError(
            f"{holder} revealed a share of {owner}'s round seed (index {index}) that is not the one {owner} "
            f"committed to {'it' if slot is not None else 'anyone at that holder'}; {holder} published a wrong "
            "share: disregard it and name it in the receipt.",
            holder=holder,
            owner=owner,
        )


def recover_round_seed(
    params: SecureParams, context: RoundContext, advertisement: Advertisement,
    shares: Iterable[tuple[str, int, bytes]],
) -> bytes:
    """The round seed of ``advertisement``'s party from (holder, index, share) triples.

    Every share is checked against its commitment first (WrongShareError names a wrong one); at
    least ``params.threshold`` shares from distinct holders are needed (TooFewSharesError). The
    first T by index are combined, and the result is accepted only if it re-derives the advertised
    round public key (InconsistentSharesError names the owner otherwise).
    """
    owner = advertisement.party
    valid: dict[int, bytes] = {}
    for holder, index, share in shares:
        check_revealed_share(context, advertisement, holder=holder, index=index, share=share)
        valid[index] = share
    if len(valid) < params.threshold:
        raise TooFewSharesError(
            f"only {len(valid)} valid share(s) of {owner}'s round seed were revealed and {params.threshold} are "
            f"needed to remove its masks; wait for more of its neighbours' reveals or cancel the round."
        )
    chosen = sorted(valid.items())[: params.threshold]
    seed = Shamir.combine(chosen)
    if round_public_key(seed, owner, context) != advertisement.round_public_key:
        raise InconsistentSharesError(
            f"the shares {owner} dealt match their commitments but do not recombine to its advertised round key; "
            f"{owner} dealt inconsistent shares, so its masks cannot be removed: cancel the round with that reason.",
            owner=owner,
        )
    return seed

