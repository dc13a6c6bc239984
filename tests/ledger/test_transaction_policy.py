"""[chain] transaction settings (ledger.chain.transactions.TxPolicy): read from fedledger.toml, the
--max-fee-gwei flag winning, and a bad value refused in one sentence naming the setting."""

from __future__ import annotations

import pytest

from ledger.chain.transactions import GWEI, TxPolicy
from ledger.errors import ConfigError
from ledger.workspace import DEFAULT_CONFIG


def test_the_defaults_have_no_cap_replace_after_thirty_seconds_and_need_no_confirmations() -> None:
    policy = TxPolicy.from_settings(DEFAULT_CONFIG["chain"])
    assert (policy.max_fee_wei, policy.replace_after_s, policy.confirmations) == (None, 30.0, 0)


def test_the_flag_wins_over_the_file() -> None:
    chain = {"max_fee_gwei": 50, "replace_after_s": 12, "confirmations": 3}
    assert TxPolicy.from_settings(chain).max_fee_wei == 50 * GWEI
    policy = TxPolicy.from_settings(chain, max_fee_gwei=2.5)
    assert (policy.max_fee_wei, policy.replace_after_s, policy.confirmations) == (2_500_000_000, 12.0, 3)


@pytest.mark.parametrize(("chain", "named"), [
    ({"max_fee_gwei": "50"}, "max_fee_gwei"),
    ({"max_fee_gwei": 0}, "max_fee_gwei"),
    ({"replace_after_s": 0}, "replace_after_s"),
    ({"replace_after_s": True}, "replace_after_s"),
    ({"confirmations": -1}, "confirmations"),
    ({"confirmations": 1.5}, "confirmations"),
])
def test_a_bad_setting_is_refused_naming_it(chain: dict, named: str) -> None:
    with pytest.raises(ConfigError, match=rf"\[chain\] {named}") as refused:
        TxPolicy.from_settings(chain, config="/w/fedledger.toml")
    assert "/w/fedledger.toml" in str(refused.value)
