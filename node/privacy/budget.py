"""A party's privacy budget as the chain records it, and the ε it must declare for its next round.

The budget (ε in millionths) is the party's member slot, copied from the agreement it accepted;
δ is that agreement's. Under an agreement without a budget (0/0) nothing is accounted: a private
round still trains with DP-SGD, but declares no new ε (there is no δ to state one at). Under a
budget, a round without a dp section is refused: it has no finite ε.

The ε a party declares is the RDP composition of every round it has an update recorded in whose
config carries a dp section (read from the chain and the store, as the auditor reads them), plus
the round it is about to train: the same function, over the same configs, that ``audit verify``
recomputes, rounded up to millionths.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.chain.federation import FederationClient
from ledger.fixed_point import micros_to_epsilon
from ledger.ipfs.store import ContentStore
from ledger.types import Address, RoundId
from node.privacy.accountant import PrivacyBudgetExceededError, check_budget
from node.round_config import DpSettings, RoundConfig, config_cid


@dataclass(frozen=True)
class PrivacyTerms:
    """What the chain says about one party's privacy: its budget (millionths; 0: none), its δ, its declared ε."""

    budget_micros: int
    delta: float | None
    spent_micros: int

    @property
    def accounted(self) -> bool:
        return self.budget_micros > 0 and self.delta is not None


def privacy_terms(federation: FederationClient, party: str, *, privacy: tuple[int, int] | None = None) -> PrivacyTerms:
    """The budget in ``party``'s member slot, the δ of the agreement it accepted, and what it has declared.

    ``privacy``: the contract's ``privacy(party)`` (declared, budget) when the caller has just read it
    (``FederationClient.submission_status``), so it is not asked again."""
    spent, budget = privacy if privacy is not None else federation.privacy(party)
    if not budget:  # nothing accounted: no need to look the agreement up (a log scan)
        return PrivacyTerms(0, None, spent)
    version = federation.participant(party).accepted_version
    return PrivacyTerms(budget, federation.agreement(version).delta if version else None, spent)


def rounds_taken(federation: FederationClient, store: ContentStore, party: str, *, excluding: int) -> list[tuple[RoundId, DpSettings]]:
    """The dp sections of the rounds ``party`` has an update recorded in (other than ``excluding``), in chain order."""
    taken = []
    for round_id in federation.rounds_submitted(party):
        if round_id == excluding:
            continue
        config = RoundConfig.from_bytes(store.get(config_cid(federation.round(round_id).config_hash)))
        if config.dp is not None:
            taken.append((round_id, config.dp))
    return taken


def epsilon_to_declare(
    federation: FederationClient, store: ContentStore, party: Address, round_id: int, dp: DpSettings | None,
    *, privacy: tuple[int, int] | None = None,
) -> int:
    """The cumulative ε (millionths) ``party`` declares with its update to round ``round_id`` (dp: its dp section).

    Called before training, so a refused round costs nothing. Raises PrivacyBudgetExceededError
    (naming both figures and the budget) when the round would pass the party's budget, and when a
    party whose agreement bounds its ε is asked to take part in a round without DP (no finite ε).
    Outside any budget the declaration stays where it was: the contract refuses one that goes down.
    """
    terms = privacy_terms(federation, party, privacy=privacy)
    if not terms.accounted or terms.delta is None:
        return terms.spent_micros
    if dp is None:
        raise PrivacyBudgetExceededError(
            f"round {round_id} has no dp section, so taking part would release this party's update without any "
            f"bound on its privacy loss, while its agreement bounds it to ε = {micros_to_epsilon(terms.budget_micros):g}; "
            "sit this round out, or ask the coordinator for a private round (`fedledger round open ... --dp-noise S`)."
        )
    taken = [settings for _, settings in rounds_taken(federation, store, party, excluding=round_id)]
    after = check_budget(taken, dp, delta=terms.delta, budget_micros=terms.budget_micros)
    return max(after, terms.spent_micros)  # the contract refuses a declaration below the last one
