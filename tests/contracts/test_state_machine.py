"""Random sequences of governance and round operations: the contract and a small model of its rules agree.

Runs on the session's anvil; every example starts from the same snapshot (a fresh deployment,
funded parties) and is reverted at teardown. Time moves in steps of 1,000 s and every deadline
sits 500 s between steps, so the second or two that blocks take never decide a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledger import contract_errors as ce
from ledger.federation import FederationClient, sign_join_message
from tests.contracts.conftest import CONFIG, METRICS, MODEL, TERMS, TERMS_2, UPDATE
from tests.fixtures_chain import TestChain

PARTIES = 3
STEP = 1000
Expected = tuple[type[ce.FederationContractError], tuple[Any, ...]] | None


@dataclass
class RoundModel:
    deadline: int
    minimum: int
    state: str = "open"
    submitted: set[str] = field(default_factory=set)


@dataclass
class Model:
    """The rules of the contract, in plain Python."""

    now: int
    version: int = 0
    status: dict[str, str] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)
    index: dict[str, int] = field(default_factory=dict)  # submission bit, given at the first admission
    rounds: list[RoundModel] = field(default_factory=list)

    def join(self, who: str, *, version: int, deadline: int, signed_here: bool) -> Expected:
        if self.version == 0:
            return ce.FederationNoAgreement, ()
        if version != self.version:
            return ce.FederationStaleAgreement, (version, self.version)
        if self.now > deadline:
            return ce.FederationSignatureExpired, (deadline,)
        if not signed_here:
            return ce.FederationInvalidSignature, (who,)
        if self.status.get(who, "none") == "revoked":
            return ce.FederationUnexpectedStatus, (who, "revoked")
        if self.accepted.get(who, 0) == version:
            return ce.FederationAlreadyAccepted, (who, version)
        self.status.setdefault(who, "pending")
        self.accepted[who] = version
        return None

    def govern(self, action: str, who: str) -> Expected:
        status = self.status.get(who, "none")
        allowed = {
            "approve": {"pending": "admitted"},
            "suspend": {"admitted": "suspended"},
            "reinstate": {"suspended": "admitted"},
            "revoke": {"pending": "revoked", "admitted": "revoked", "suspended": "revoked"},
        }[action]
        if status not in allowed:
            return ce.FederationUnexpectedStatus, (who, status)
        self.status[who] = allowed[status]
        if action == "approve":
            self.index.setdefault(who, len(self.index))
        return None

    def open_round(self, *, deadline: int, minimum: int) -> Expected:
        if minimum == 0:
            return ce.FederationInvalidMinimum, ()
        self.rounds.append(RoundModel(deadline, minimum))
        return None

    def _round(self, round_id: int) -> tuple[RoundModel | None, Expected]:
        if not 1 <= round_id <= len(self.rounds):
            return None, (ce.FederationUnknownRound, (round_id,))
        r = self.rounds[round_id - 1]
        if r.state != "open":
            return r, (ce.FederationRoundClosed, (round_id, r.state))
        return r, None

    def submit(self, who: str, round_id: int) -> Expected:
        r, refused = self._round(round_id)
        if refused:
            return refused
        assert r is not None
        if self.now > r.deadline:
            return ce.FederationDeadlinePassed, (round_id, r.deadline)
        status = self.status.get(who, "none")
        if status != "admitted":
            return ce.FederationNotParticipant, (who, status)
        if self.accepted[who] != self.version:
            return ce.FederationAgreementNotAccepted, (who, self.accepted[who], self.version)
        if who in r.submitted:
            return ce.FederationAlreadySubmitted, (round_id, who)
        r.submitted.add(who)
        return None

    def finalize(self, round_id: int, *, by: str | None) -> Expected:
        if by is not None:
            return ce.AccessControlUnauthorizedAccount, (by, "aggregator")
        r, refused = self._round(round_id)
        if refused:
            return refused
        assert r is not None
        if len(r.submitted) < r.minimum:
            return ce.FederationBelowMinimum, (round_id, len(r.submitted), r.minimum)
        r.state = "finalized"
        return None

    def cancel(self, round_id: int, *, by: str | None) -> Expected:
        if by is not None:
            return ce.AccessControlUnauthorizedAccount, (by, "coordinator")
        r, refused = self._round(round_id)
        if refused:
            return refused
        assert r is not None
        if self.now <= r.deadline:
            return ce.FederationRoundStillOpen, (round_id, r.deadline)
        if len(r.submitted) >= r.minimum:
            return ce.FederationMinimumReached, (round_id, len(r.submitted), r.minimum)
        r.state = "cancelled"
        return None

    def abort(self, round_id: int, *, by: str | None) -> Expected:
        if by is not None:
            return ce.AccessControlUnauthorizedAccount, (by, "admin")
        r, refused = self._round(round_id)
        if refused:
            return refused
        assert r is not None
        r.state = "cancelled"
        return None


def terms_for(version: int) -> str:
    return TERMS if version % 2 else TERMS_2


def outcome(action: Any) -> Expected:
    try:
        action()
    except ce.FederationContractError as error:
        return type(error), error.args_tuple
    return None


def test_contract_agrees_with_the_model(chain: TestChain) -> None:
    base_admin = chain.deploy()
    keys = [chain.new_account() for _ in range(PARTIES)]
    base = chain.snapshot()

    class Federation(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.admin: FederationClient = base_admin
            self.parties = [base_admin.with_account(key) for key in keys]
            self.model = Model(now=chain.now())

        def teardown(self) -> None:
            nonlocal base
            chain.revert(base)
            base = chain.snapshot()

        def check(self, expected: Expected, action: Any) -> None:
            assert outcome(action) == expected

        @rule()
        def publish(self) -> None:
            self.admin.publish_agreement(terms_for(self.model.version + 1))
            self.model.version += 1

        @rule(p=st.integers(0, PARTIES - 1), kind=st.sampled_from(["current", "stale", "expired", "other-chain"]))
        def join(self, p: int, kind: str) -> None:
            key, model = keys[p], self.model
            version = max(model.version - 1, 1) if kind == "stale" else max(model.version, 1)
            deadline = model.now - 500 if kind == "expired" else model.now + 100 * STEP
            chain_id = 1 if kind == "other-chain" else self.admin.chain_id
            signature = sign_join_message(
                key,
                chain_id=chain_id,
                contract=self.admin.address,
                version=version,
                terms_cid=terms_for(version),
                deadline=deadline,
            )
            expected = model.join(key.address, version=version, deadline=deadline, signed_here=kind != "other-chain")
            self.check(expected, lambda: self.parties[p].join(key.address, version=version, deadline=deadline, signature=signature))

        @rule(p=st.integers(0, PARTIES - 1), action=st.sampled_from(["approve", "suspend", "reinstate", "revoke"]))
        def govern(self, p: int, action: str) -> None:
            who = keys[p].address
            self.check(self.model.govern(action, who), lambda: getattr(self.admin, action)(who))

        @rule(steps=st.integers(1, 3), minimum=st.integers(0, PARTIES))
        def open_round(self, steps: int, minimum: int) -> None:
            deadline = self.model.now + steps * STEP + STEP // 2
            expected = self.model.open_round(deadline=deadline, minimum=minimum)
            self.check(expected, lambda: self.admin.open_round(
                base_cid=MODEL, deadline=deadline, min_updates=minimum, config_hash=CONFIG
            ))

        @rule(p=st.integers(0, PARTIES - 1), pick=st.integers(0, 3))
        def submit(self, p: int, pick: int) -> None:
            round_id = max(len(self.model.rounds) - pick, 1) if pick < 3 else len(self.model.rounds) + 1
            expected = self.model.submit(keys[p].address, round_id)
            self.check(expected, lambda: self.parties[p].submit_update(round_id, cid=UPDATE, samples=10, metrics_hash=METRICS))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def finalize(self, pick: int, by: int | None) -> None:
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.finalize(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def cancel(self, pick: int, by: int | None) -> None:
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.cancel(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.cancel_round(round_id))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def abort(self, pick: int, by: int | None) -> None:
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.abort(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.abort_round(round_id, reason="governance says so"))

        @rule(steps=st.integers(1, 2))
        def advance(self, steps: int) -> None:
            self.model.now += steps * STEP
            chain.rpc("evm_mine", [self.model.now])

        @invariant()
        def agrees(self) -> None:
            assert self.admin.agreement_version() == self.model.version
            for key in keys:
                info = self.admin.participant(key.address)
                assert info.status == self.model.status.get(key.address, "none")
                assert info.accepted_version == self.model.accepted.get(key.address, 0)
                assert info.index == self.model.index.get(key.address)
            assert self.admin.participant_count() == len(self.model.index)
            open_ids = [i for i, r in enumerate(self.model.rounds, start=1) if r.state == "open"]
            assert self.admin.open_round_ids() == open_ids
            for round_id, expected in enumerate(self.model.rounds, start=1):
                state, _, _, submissions = self.admin.contract.functions.round(round_id).call()
                assert (state, submissions) == (
                    ("none", "open", "finalized", "cancelled").index(expected.state),
                    len(expected.submitted),
                )

    run_state_machine_as_test(
        Federation,
        settings=settings(
            max_examples=10,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        ),
    )
