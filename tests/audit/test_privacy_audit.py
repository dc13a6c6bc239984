"""`audit verify`'s privacy check on a real ledger: a party's declaration is held against its
cumulative ε over every private round it took part in, not against the ε of the round at hand."""

from __future__ import annotations

from dataclasses import replace

from ledger.fixed_point import epsilon_to_micros
from ledger.weights import from_safetensors, to_safetensors
from node.models import model_layout
from node.update_metrics import metrics_hash
from node.privacy.accountant import cumulative_epsilon, round_epsilon
from node.round_config import DpSettings, RoundConfig, config_cid
from tests.audit.conftest import Ledger, finalize, honest_aggregate

DELTA = 1e-5
DP_FIRST = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, steps=4)
DP_SECOND = DpSettings(noise_multiplier=1.0, max_grad_norm=1.0, sample_rate=0.2, steps=8)  # spends more than the first


def _private_round(ledger: Ledger, dp: DpSettings, *, epsilon_micros: int) -> int:
    """Open a round on the last global model under ``dp``, have the first party submit a well-formed
    update declaring ``epsilon_micros``, and finalize it honestly; returns its id."""
    admin, party = ledger.federation(), ledger.parties[0]
    last = admin.round(admin.round_count())
    config = replace(RoundConfig.from_bytes(ledger.store.get(config_cid(last.config_hash))), dp=dp)
    assert ledger.store.add_bytes(config.to_bytes()) == config_cid(config.config_hash)
    deadline = int(ledger.w3.eth.get_block("latest")["timestamp"]) + 3600
    round_id, _ = admin.open_round(base_cid=last.global_cid, deadline=deadline, min_updates=1,
                                   config_hash=config.config_hash)
    arrays, _ = from_safetensors(ledger.store.get(last.global_cid), layout=model_layout(config.model))
    update = {name: (value + 0.01).astype(value.dtype) for name, value in arrays.items()}
    blob = to_safetensors(update, metadata={"model": config.model, "participant": party.address, "round": round_id,
                                            "base_cid": last.global_cid, "samples": 100, "metrics": {}})
    ledger.federation(party).submit_update(round_id, cid=ledger.store.add_bytes(blob), samples=100,
                                           metrics_hash=metrics_hash({}), epsilon_micros=epsilon_micros)
    blob, receipt, _ = honest_aggregate(ledger, round_id)
    finalize(ledger, round_id, blob, receipt)
    return round_id


def test_a_party_declaring_only_its_latest_rounds_epsilon_fails_the_privacy_check(ledger_copy: Ledger, cli) -> None:
    ledger, party = ledger_copy, ledger_copy.parties[0]
    admin = ledger.federation()
    # A new agreement with a budget (room for both rounds); the party accepts it.
    version, _ = admin.publish_agreement(ledger.store.add_bytes(b"# Terms\nEach party's epsilon stays in budget.\n"),
                                         epsilon_budget=100.0, delta=DELTA)
    deadline = int(ledger.w3.eth.get_block("latest")["timestamp"]) + 3600
    admin.join(party.address, version=version, deadline=deadline,
               signature=admin.sign_join(party, version=version, deadline=deadline))

    first_micros = epsilon_to_micros(round_epsilon(DP_FIRST, DELTA))
    second_alone = epsilon_to_micros(round_epsilon(DP_SECOND, DELTA))
    both = epsilon_to_micros(cumulative_epsilon([DP_FIRST, DP_SECOND], DELTA))
    assert first_micros < second_alone < both  # so the contract takes the second declaration: it grew
    first = _private_round(ledger, DP_FIRST, epsilon_micros=first_micros)  # honest
    second = _private_round(ledger, DP_SECOND, epsilon_micros=second_alone)  # the round's own ε, not the sum
    assert admin.privacy(party.address) == (second_alone, 100_000_000)

    outcome = cli("audit", "verify", "--workdir", str(ledger.root), "--json")
    assert outcome.exit_code == 1, outcome.stderr
    document = outcome.json()
    privacy = [c for c in document["checks"] if c["check"] == "privacy" and c["participant"] == party.address]
    assert [(c["round_id"], c["ok"]) for c in privacy] == [(first, True), (second, False)]
    assert privacy[1]["what"] == (
        f"{party.address} declared a cumulative ε of {second_alone / 1e6:.6f} with its update to round {second}, "
        f"below the {both / 1e6:.6f} recomputed from the configs of the 2 private rounds it took part in"
    )
    assert [(f["check"], f["participant"], f["round_id"]) for f in document["failures"]] == [
        ("privacy", party.address, second)
    ]
