"""Each party's privacy loss as an auditor recomputes it: from the indexed events and the round configs alone.

For every recorded update, in chain order: the ε its round spends (the round config's dp section
at the δ of the agreement the party accepted), the party's cumulative ε over every private round
it has an update in so far (RDP composition, ``node.privacy.accountant``: the same function a party
declares with), what the party declared on chain by then (its last ``PrivacyLossDeclared``), and
its budget. A declaration below the recomputation, rounded up to the contract's millionths, is an
under-declared ε; a recomputation past the budget is an overspent one. Under an agreement without
a budget nothing is accounted (no δ): such rows carry no figures.

Rows are plain dicts of JSON values, like ``ledger.index.queries``'s, so the CLI prints them as a
table, JSON or CSV unchanged.
"""

from __future__ import annotations

from typing import Any

from ledger.index.queries import replay, rounds
from ledger.errors import LedgerError
from ledger.fixed_point import epsilon_to_micros, micros_to_epsilon, units_to_delta
from ledger.index.index import LedgerIndex
from ledger.ipfs.store import ContentStore
from node.privacy.accountant import cumulative_epsilon, round_epsilon
from node.round_config import DpSettings, RoundConfig

COLUMNS = ["round_id", "participant", "round_epsilon", "epsilon_recomputed", "epsilon_declared", "epsilon_budget",
           "delta", "block", "tx_hash"]


def _configs(index: LedgerIndex, store: ContentStore) -> dict[int, tuple[str, DpSettings | None, bool]]:
    """Round id -> (config CID, its dp section, whether the config could be read from ``store``)."""
    out: dict[int, tuple[str, DpSettings | None, bool]] = {}
    for row in rounds(index):
        try:
            out[row["round_id"]] = (row["config_cid"], RoundConfig.from_bytes(store.get(row["config_cid"])).dp, True)
        except LedgerError:  # missing, altered or unreadable: audit verify's blob and receipt checks say which
            out[row["round_id"]] = (row["config_cid"], None, False)
    return out


def privacy_rows(index: LedgerIndex, store: ContentStore) -> list[dict[str, Any]]:
    """One row per recorded update, in chain order: ε of its round, cumulative ε recomputed and declared, budget.

    Private columns are None where nothing is accounted. ``recomputed_micros`` is the recomputation
    rounded up to millionths (what an honest party declares at least); ``unknown_config`` names a
    config CID this store could not read, so the party's recomputation from there on is incomplete.
    """
    configs = _configs(index, store)
    terms = {int(e.args["version"]): (int(e.args["epsilonBudget"]), int(e.args["delta"]))
             for e in index.events("AgreementPublished")}
    declared: dict[str, int] = {}
    taken: dict[str, list[DpSettings]] = {}
    unknown: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    for event, membership in replay(index, extra=("UpdateSubmitted", "PrivacyLossDeclared")):
        party = event.args.get("participant")
        if event.name == "PrivacyLossDeclared":
            declared[party] = int(event.args["epsilon"])
            if rows and rows[-1]["participant"] == party and rows[-1]["tx_hash"] == event.tx_hash:
                rows[-1]["declared_micros"] = declared[party]  # this submission's own declaration
                rows[-1]["epsilon_declared"] = micros_to_epsilon(declared[party])
            continue
        if event.name != "UpdateSubmitted":
            continue
        rid = int(event.args["roundId"])
        config_cid, dp, readable = configs.get(rid, (None, None, False))
        if not readable and config_cid is not None:
            unknown.setdefault(party, config_cid)
        if dp is not None:
            taken.setdefault(party, []).append(dp)
        member = membership.members.get(party)
        budget_micros, delta_units = terms.get(member.accepted_version if member else 0, (0, 0))
        row: dict[str, Any] = {
            "round_id": rid, "participant": party, "block": event.block, "tx_hash": event.tx_hash,
            "private": dp is not None, "round_epsilon": None, "epsilon_recomputed": None, "recomputed_micros": None,
            "epsilon_declared": micros_to_epsilon(declared.get(party, 0)), "declared_micros": declared.get(party, 0),
            "epsilon_budget": None, "budget_micros": budget_micros, "delta": None,
            "rounds_taken": len(taken.get(party, [])), "unknown_config": unknown.get(party),
        }
        if budget_micros and delta_units:
            delta = units_to_delta(delta_units)
            recomputed = cumulative_epsilon(taken.get(party, []), delta)
            row.update(
                round_epsilon=round_epsilon(dp, delta) if dp is not None else 0.0, epsilon_recomputed=recomputed,
                recomputed_micros=epsilon_to_micros(recomputed), epsilon_budget=micros_to_epsilon(budget_micros),
                delta=delta,
            )
        rows.append(row)
    return rows


def privacy_problem(row: dict[str, Any]) -> str | None:
    """Why ``row``'s declaration fails the audit (under-declared or over budget); None when it passes or is not accounted."""
    if row["recomputed_micros"] is None:
        return None
    party, rid = row["participant"], row["round_id"]
    recomputed, declared = row["recomputed_micros"], row["declared_micros"]
    if declared < recomputed:
        return (
            f"{party} declared a cumulative ε of {micros_to_epsilon(declared):.6f} with its update to round {rid}, "
            f"below the {micros_to_epsilon(recomputed):.6f} recomputed from the configs of the "
            f"{row['rounds_taken']} private rounds it took part in"
        )
    if recomputed > row["budget_micros"]:
        return (
            f"{party}'s cumulative ε recomputed after round {rid} is {micros_to_epsilon(recomputed):.6f}, "
            f"past its budget of {micros_to_epsilon(row['budget_micros']):.6f}"
        )
    return None
