"""`fedledger audit participants|agreements|rounds|updates|provenance` on the honest anvil ledger."""

from __future__ import annotations

import csv
import io

from node.demo import TERMS


def test_participants_with_versions_join_times_and_history(anvil_ledger, cli):
    outcome = cli("audit", "participants", "--workdir", str(anvil_ledger.root), "--json")
    assert outcome.exit_code == 0, outcome.stderr
    rows = outcome.json()
    assert [row["address"] for row in rows] == [party.address for party in anvil_ledger.parties]
    for row in rows:
        assert row["status"] == "admitted" and row["accepted_version"] == 1 and row["versions"] == "1"
        assert row["updates"] == 2 and row["joined_at"] > 1_600_000_000 and row["join_tx"].startswith("0x")

    history = cli("audit", "participants", "--history", "--workdir", str(anvil_ledger.root), "--csv")
    assert history.exit_code == 0
    actions = [(row["participant"], row["action"]) for row in csv.DictReader(io.StringIO(history.stdout))]
    expected = [(party.address, action) for party in anvil_ledger.parties for action in ("joined", "admitted")]
    assert actions == expected


def test_agreements_rounds_and_updates(anvil_ledger, cli, fedledger):
    agreements = cli("audit", "agreements", "--workdir", str(anvil_ledger.root), "--json").json()
    assert [(a["version"], a["accepted_by"]) for a in agreements] == [(1, 3)]
    assert anvil_ledger.store.get(agreements[0]["terms_cid"]) == TERMS

    rounds = cli("audit", "rounds", "--workdir", str(anvil_ledger.root), "--csv")
    table = list(csv.DictReader(io.StringIO(rounds.stdout)))
    assert [(r["round_id"], r["state"], r["submissions"]) for r in table] == [("1", "finalized", "3"), ("2", "finalized", "3")]
    assert table[1]["base_cid"] == table[0]["global_cid"]

    updates = cli("audit", "updates", "--round", "2", "--workdir", str(anvil_ledger.root), "--json").json()
    recorded = anvil_ledger.federation().submissions(2)
    assert [(u["participant"], u["cid"], u["tx_hash"]) for u in updates] == [(s.participant, s.cid, s.tx_hash) for s in recorded]

    human = fedledger("audit", "rounds", "--workdir", str(anvil_ledger.root))  # stderr is a pipe, not a terminal
    assert human.exit_code == 0 and human.stdout == "", human.stderr
    lines = human.stderr.splitlines()
    for row in table:  # one line per round, its identifiers cut to their ends, its times readable
        (line,) = [line for line in lines if line.startswith(f"│ {row['round_id']} ")]
        assert "finalized" in line and f"{row['global_cid'][:12]}…{row['global_cid'][-6:]}" in line
    assert "identifiers shortened: --json or --csv print them whole" in human.stderr


def test_provenance_reaches_the_genesis_model_through_the_console_script(anvil_ledger, fedledger):
    federation = anvil_ledger.federation()
    last, first = federation.round(2), federation.round(1)
    outcome = fedledger("audit", "provenance", last.global_cid, "--workdir", str(anvil_ledger.root), "--json")
    assert outcome.exit_code == 0, outcome.stderr
    lineage = outcome.json()
    assert lineage["reaches_genesis"] is True and lineage["genesis_cid"] == first.base_cid
    assert [step["round_id"] for step in lineage["rounds"]] == [2, 1]
    for step in lineage["rounds"]:
        assert step["strategy"] == {"name": "fedavg"}
        assert sorted(step["included"]) == sorted(party.address for party in anvil_ledger.parties)
        assert step["submitters"] == [party.address for party in anvil_ledger.parties]


def test_json_and_csv_together_are_refused(anvil_ledger, cli):
    outcome = cli("audit", "rounds", "--json", "--csv", "--workdir", str(anvil_ledger.root))
    assert outcome.exit_code == 2 and "choose one" in outcome.error_line()
