"""Random sequences of governance, round, privacy-budget, relay, key-registry and round-message
operations: the contract and a small model of its rules agree.

Runs on the session's anvil; every example starts from the same snapshot (a fresh deployment,
funded parties) and is reverted at teardown. The model owns the clock: every transaction is mined
at exactly the second the model says (``evm_setNextBlockTimestamp``; anvil mines any number of
blocks in one second), so neither the wall clock nor the machine's speed decides a rule, and a
failure replays the same way while Hypothesis shrinks it. Time moves in steps of 1,000 s, landing
on a step or the second after it, and every deadline sits on a step: the deadline rules (updates
up to the deadline second, cancelling only after it) are exercised to the second. Declared ε and
budgets are drawn from a few whole figures (millionths) so that equal, growing, decreasing and
over-budget declarations all occur. Round messages (advertise, reveal, and kinds that do not
exist) are posted by members and non-members, submitters and not, before, at and after a deadline,
by the party itself or signed by it and sent by the admin (``postSignedRoundMessage``: expired,
forged, valid to the second); each accepted one is read back with ``round_messages`` (the first per
party and kind). Encryption keys are registered by the party or signed by it and sent by the admin
(``publishSignedEncryptionKey``: expired, forged, valid to the second, replacing the key registered
now or a stale one).

Shrinking a failure reruns whole examples on anvil, so its time is bounded (``SHRINK_SECONDS``,
inside pytest's timeout): a failure ends with the smallest example found by then, printed as the
steps that replay it, not with a timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from eth_account import Account
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture import engine as hypothesis_engine
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from ledger.chain import contract_errors as ce
from ledger.chain.contract_errors import PARTICIPANT_STATUSES, ROUND_STATES
from ledger.ipfs.cid import cid_to_bytes
from ledger.contract_constants import MAX_BATCH_SIZE, RoundMessageKind
from ledger.chain.federation import (
    FederationClient,
    SignedUpdate,
    encryption_key_typed_data,
    round_message_typed_data,
    send_transaction,
    sign_join_message,
)
from tests.contracts.conftest import CONFIG, METRICS, MODEL, TERMS, TERMS_2, UPDATE
from tests.fixtures_chain import TestChain

PARTIES = 3
STEP = 1000
SHRINK_SECONDS = 120  # Hypothesis stops at 300 s, which is pytest's timeout for the whole test
EPSILONS = (0, 1_000_000, 2_000_000, 3_000_000, 5_000_000)
BUDGETS = {"none": (0, 0), "budget": (3_000_000, 10**13), "invalid": (0, 10**13)}
CODECS = {"raw": 0x55, "dag-pb": 0x70, "bad": 0x71}
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
    budgets: dict[int, int] = field(default_factory=dict)  # ε budget of each agreement version (0: none)
    budget: dict[str, int] = field(default_factory=dict)  # each party's, copied at join
    spent: dict[str, int] = field(default_factory=dict)  # each party's last declared cumulative ε
    keys: dict[str, bytes] = field(default_factory=dict)  # encryption keys
    messages: list[tuple[int, str, int]] = field(default_factory=list)  # (round, party, kind): the first of each

    def publish(self, epsilon_budget: int, delta: int) -> Expected:
        if (epsilon_budget == 0) != (delta == 0):
            return ce.FederationInvalidPrivacyBudget, (epsilon_budget, delta)
        self.version += 1
        self.budgets[self.version] = epsilon_budget
        return None

    def publish_key(self, who: str, key: bytes) -> Expected:
        if key == b"\0" * 32:
            return ce.FederationInvalidEncryptionKey, ()
        self.keys[who] = key
        return None

    def publish_signed_key(self, who: str, key: bytes, previous: bytes, *, deadline: int, forged: bool) -> Expected:
        """An encryption key signed by ``who`` (replacing ``previous``, zero: none) and sent by anyone: the
        signature's deadline, then the signature, then the key it replaces, then the rule of a direct call."""
        if self.now > deadline:
            return ce.FederationSignatureExpired, (deadline,)
        if forged:
            return ce.FederationInvalidSignature, (who,)
        current = self.keys.get(who, bytes(32))
        if current != previous:
            return ce.FederationEncryptionKeyChanged, (who, previous, current)
        return self.publish_key(who, key)

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
        self.budget[who] = self.budgets[version]
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

    def _taking_updates(self, round_id: int) -> tuple[RoundModel | None, Expected]:
        r, refused = self._round(round_id)
        if refused:
            return None, refused
        assert r is not None
        if self.now > r.deadline:
            return None, (ce.FederationDeadlinePassed, (round_id, r.deadline))
        return r, None

    def _membership(self, who: str) -> Expected:
        """Whether ``who`` may take part in an open round: the first rules of a submission (and of an advertisement)."""
        status = self.status.get(who, "none")
        if status != "admitted":
            return ce.FederationNotParticipant, (who, status)
        if self.accepted[who] != self.version:
            return ce.FederationAgreementNotAccepted, (who, self.accepted[who], self.version)
        return None

    def _record(self, r: RoundModel, round_id: int, who: str, epsilon: int) -> Expected:
        """The rules of one submission to an open round, in the contract's order."""
        refused = self._membership(who)
        if refused:
            return refused
        spent, budget = self.spent.get(who, 0), self.budget.get(who, 0)
        if epsilon < spent:
            return ce.FederationPrivacyLossDecreased, (who, epsilon, spent)
        if budget and epsilon > budget:
            return ce.FederationPrivacyBudgetExceeded, (who, epsilon, budget)
        if who in r.submitted:
            return ce.FederationAlreadySubmitted, (round_id, who)
        r.submitted.add(who)
        self.spent[who] = epsilon
        return None

    def submit(self, who: str, round_id: int, epsilon: int) -> Expected:
        r, refused = self._taking_updates(round_id)
        if refused:
            return refused
        assert r is not None
        return self._record(r, round_id, who, epsilon)

    def post_message(self, who: str, round_id: int, kind: int, codec: int) -> Expected:
        """A round message: advertise while the round takes updates, by a party that may submit;
        reveal after the deadline of an open round, by a submitter; the codec last."""
        if kind == RoundMessageKind.ADVERTISE:
            _, refused = self._taking_updates(round_id)
            refused = refused or self._membership(who)
        elif kind == RoundMessageKind.REVEAL:
            r, refused = self._round(round_id)
            if not refused:
                assert r is not None
                if self.now <= r.deadline:
                    refused = ce.FederationRevealBeforeDeadline, (round_id, r.deadline)
                elif who not in r.submitted:
                    refused = ce.FederationNotASubmitter, (round_id, who)
        else:
            refused = ce.FederationUnknownMessageKind, (kind,)
        if refused:
            return refused
        if codec not in (0x55, 0x70):
            return ce.FederationInvalidCid, (codec,)
        if (round_id, who, kind) not in self.messages:
            self.messages.append((round_id, who, kind))
        return None

    def post_signed_message(self, who: str, round_id: int, kind: int, codec: int, *, deadline: int, forged: bool) -> Expected:
        """A round message signed by ``who`` and sent by anyone: the signature's deadline, then the
        signature, then exactly the rules of a message ``who`` sends itself."""
        if self.now > deadline:
            return ce.FederationSignatureExpired, (deadline,)
        if forged:
            return ce.FederationInvalidSignature, (who,)
        return self.post_message(who, round_id, kind, codec)

    def relay(self, round_id: int, items: list[tuple[str, int, str, int]]) -> Expected | list[Expected]:
        """A batch of (party, ε, kind, signature deadline): the batch's own refusal, or each item's verdict."""
        if not 1 <= len(items) <= MAX_BATCH_SIZE:
            return ce.FederationInvalidBatchSize, (len(items), MAX_BATCH_SIZE)
        r, refused = self._taking_updates(round_id)
        if refused:
            return refused
        assert r is not None
        verdicts: list[Expected] = []
        for who, epsilon, kind, deadline in items:
            if self.now > deadline:
                verdicts.append((ce.FederationSignatureExpired, (deadline,)))
            elif kind == "forged":
                verdicts.append((ce.FederationInvalidSignature, (who,)))
            else:
                verdicts.append(self._record(r, round_id, who, epsilon))
        return verdicts

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


@pytest.mark.slow
def test_contract_agrees_with_the_model(chain: TestChain, monkeypatch: pytest.MonkeyPatch) -> None:
    # Hypothesis names this bound as the one to monkeypatch; past it, it stops shrinking and
    # reports the smallest failing example found so far.
    monkeypatch.setattr(hypothesis_engine, "MAX_SHRINKING_SECONDS", SHRINK_SECONDS)
    base_admin = chain.deploy()
    keys = [chain.new_account() for _ in range(PARTIES)]
    base = chain.snapshot()

    class Federation(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.admin: FederationClient = base_admin
            self.parties = [base_admin.with_account(key) for key in keys]
            self.start_time = chain.now() + 1  # the same in every example: each starts from one snapshot
            self.steps = 0  # time is start_time + steps * STEP, or the second after it
            self.model = Model(now=self.start_time)

        def teardown(self) -> None:
            nonlocal base
            chain.revert(base)
            base = chain.snapshot()

        def check(self, expected: Expected, action: Any) -> None:
            assert outcome(action) == expected

        def now(self) -> None:
            """The next transaction is mined at the model's ``now`` (as its estimate is judged)."""
            chain.rpc("evm_setNextBlockTimestamp", [self.model.now])

        @initialize(start=st.sampled_from(["bare", "members", "secure"]))
        def start(self, start: str) -> None:
            """Two runs in three start with an agreement with a budget and every party admitted and a round
            open, so that short runs reach submissions, declarations and relayed batches that are recorded.
            In a "secure" start (a round of minimum 2, so it stays open past its deadline) the first party
            advertises, submits and advertises again, the second advertises with a codec that is not a
            CID's, and the clock moves past the deadline (see ``advance``): an advertisement and a refused
            reveal at the deadline second, then every party's reveal, the submitter's taken."""
            if start in ("members", "secure"):
                self.publish("budget")
                for p in range(PARTIES):
                    self.join(p, "current")
                    self.govern(p, "approve")
                self.open_round(3, 1 if start == "members" else 2)
            if start == "secure":
                self.post_message(0, 1, RoundMessageKind.ADVERTISE)
                self.post_message(1, 1, RoundMessageKind.ADVERTISE, "bad")
                self.submit(0, 0, EPSILONS[1])
                self.post_message(0, 1, RoundMessageKind.ADVERTISE, "dag-pb")  # after its update: still taken
                self.advance("next deadline", 1)

        @rule(budget=st.sampled_from(list(BUDGETS)))
        def publish(self, budget: str) -> None:
            self.now()
            epsilon_budget, delta = BUDGETS[budget]
            binary = cid_to_bytes(terms_for(self.model.version + 1))
            call = self.admin.contract.functions.publishAgreement(binary[1], binary[4:], epsilon_budget, delta)
            expected = self.model.publish(epsilon_budget, delta)  # the client would refuse "invalid" itself
            self.check(expected, lambda: send_transaction(chain.w3, call, account=None))

        @rule(p=st.integers(0, PARTIES - 1), kind=st.sampled_from(["current", "stale", "expired", "other-chain"]))
        def join(self, p: int, kind: str) -> None:
            self.now()
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
            self.now()
            who = keys[p].address
            self.check(self.model.govern(action, who), lambda: getattr(self.admin, action)(who))

        @rule(steps=st.integers(1, 3), minimum=st.integers(0, PARTIES))
        def open_round(self, steps: int, minimum: int) -> None:
            self.now()
            deadline = self.start_time + (self.steps + steps) * STEP
            expected = self.model.open_round(deadline=deadline, minimum=minimum)
            self.check(expected, lambda: self.admin.open_round(
                base_cid=MODEL, deadline=deadline, min_updates=minimum, config_hash=CONFIG
            ))

        @rule(p=st.integers(0, PARTIES - 1), pick=st.integers(0, 3), epsilon=st.sampled_from(EPSILONS))
        def submit(self, p: int, pick: int, epsilon: int) -> None:
            self.now()
            round_id = max(len(self.model.rounds) - pick, 1) if pick < 3 else len(self.model.rounds) + 1
            expected = self.model.submit(keys[p].address, round_id, epsilon)
            self.check(expected, lambda: self.parties[p].submit_update(
                round_id, cid=UPDATE, samples=10, metrics_hash=METRICS, epsilon_micros=epsilon
            ))

        @rule(
            pick=st.integers(0, 3),
            items=st.lists(
                st.tuples(
                    st.integers(0, PARTIES - 1),
                    st.sampled_from(EPSILONS),
                    st.sampled_from(["signed", "signed", "forged", "expired", "last second"]),
                ),
                max_size=4,
            ),
        )
        def relay(self, pick: int, items: list[tuple[int, int, str]]) -> None:
            self.now()
            round_id = max(len(self.model.rounds) - pick, 1) if pick < 3 else len(self.model.rounds) + 1
            batch: list[SignedUpdate] = []
            plan: list[tuple[str, int, str, int]] = []
            for p, epsilon, kind in items:
                deadline = {"expired": self.model.now - 1, "last second": self.model.now}.get(
                    kind, self.model.now + 100 * STEP
                )
                signer = keys[(p + 1) % PARTIES] if kind == "forged" else keys[p]
                item = self.admin.sign_update(
                    signer, round_id, cid=UPDATE, samples=10, metrics_hash=METRICS, epsilon_micros=epsilon,
                    deadline=deadline,
                )
                batch.append(replace(item, participant=keys[p].address))  # forged: signed by another key
                plan.append((keys[p].address, epsilon, kind, deadline))
            expected = self.model.relay(round_id, plan)
            try:
                relayed = self.admin.submit_updates(round_id, batch)
            except ce.FederationContractError as error:
                assert (type(error), error.args_tuple) == expected
                return
            got = [None if error is None else (type(error), error.args_tuple) for _, _, error in relayed.results]
            assert got == expected

        def post_message(self, p: int, round_id: int, kind: int, codec: str = "raw") -> None:
            self.now()
            digest = bytes([p + 1, kind]) * 16
            call = self.admin.contract.functions.postRoundMessage(round_id, kind, CODECS[codec], digest)
            expected = self.model.post_message(keys[p].address, round_id, kind, CODECS[codec])
            self.check(expected, lambda: send_transaction(chain.w3, call, account=keys[p]))
            if expected is None:  # the board keeps the first message of each party and kind
                posted = self.admin.round_messages(round_id)
                assert [(m.party, int(m.kind)) for m in posted] == [
                    (who, k) for r, who, k in self.model.messages if r == round_id
                ]

        # Two rules (advertise, reveal) rather than one, so that short runs reach both often; each
        # also tries a kind that does not exist and a codec that is not a CID's.
        @rule(
            p=st.integers(0, PARTIES - 1),
            pick=st.sampled_from([0, 0, 0, 1, 3]),  # mostly the latest round, where messages are taken
            kind=st.sampled_from([1, 1, 1, 0]),
            codec=st.sampled_from(["raw", "raw", "dag-pb", "bad"]),
        )
        def advertise(self, p: int, pick: int, kind: int, codec: str) -> None:
            self.post_message(p, self.pick_round(pick), kind, codec)

        @rule(
            p=st.integers(0, PARTIES - 1),
            pick=st.sampled_from([0, 0, 0, 1, 3]),
            kind=st.sampled_from([2, 2, 2, 3]),
            codec=st.sampled_from(["raw", "raw", "dag-pb", "bad"]),
        )
        def reveal(self, p: int, pick: int, kind: int, codec: str) -> None:
            self.post_message(p, self.pick_round(pick), kind, codec)

        # A gasless party's message, signed by it and sent by the admin (a relayer): expired, forged (signed
        # by another party's key) or valid until this very second; any kind, codec and round.
        @rule(
            p=st.integers(0, PARTIES - 1),
            pick=st.sampled_from([0, 0, 0, 1, 3]),
            kind=st.sampled_from([1, 1, 2, 2, 3]),
            codec=st.sampled_from(["raw", "raw", "dag-pb", "bad"]),
            signature=st.sampled_from(["signed", "signed", "forged", "expired", "last second"]),
        )
        def relay_message(self, p: int, pick: int, kind: int, codec: str, signature: str) -> None:
            self.now()
            round_id, who = self.pick_round(pick), keys[p].address
            deadline = {"expired": self.model.now - 1, "last second": self.model.now}.get(signature, self.model.now + 100 * STEP)
            signer = keys[(p + 1) % PARTIES] if signature == "forged" else keys[p]
            digest = bytes([p + 1, kind, 7]) + bytes(29)
            typed = round_message_typed_data(chain_id=self.admin.chain_id, contract=self.admin.address, participant=who,
                                             round_id=round_id, kind=kind, cid=UPDATE, deadline=deadline)
            typed["message"].update(codec=CODECS[codec], digest=digest)  # any codec, even one the client would not sign
            signed = Account.sign_typed_data(signer.key, typed["domain"], typed["types"], typed["message"]).signature
            call = self.admin.contract.functions.postSignedRoundMessage(who, round_id, kind, CODECS[codec], digest,
                                                                        deadline, bytes(signed))
            expected = self.model.post_signed_message(who, round_id, kind, CODECS[codec], deadline=deadline,
                                                      forged=signature == "forged")
            self.check(expected, lambda: send_transaction(chain.w3, call, account=self.admin.account))
            if expected is None:  # the party's message, as if it had sent it: the same board
                posted = self.admin.round_messages(round_id)
                assert [(m.party, int(m.kind)) for m in posted] == [
                    (w, k) for r, w, k in self.model.messages if r == round_id
                ]

        def pick_round(self, pick: int) -> int:
            """A recent round (0: the latest), or one that does not exist (3)."""
            return max(len(self.model.rounds) - pick, 1) if pick < 3 else len(self.model.rounds) + 1

        @rule(p=st.integers(0, PARTIES - 1), zero=st.booleans())
        def publish_key(self, p: int, zero: bool) -> None:
            self.now()
            key = b"\0" * 32 if zero else bytes([p + 1, len(self.model.keys)]) * 16
            expected = self.model.publish_key(keys[p].address, key)
            self.check(expected, lambda: self.parties[p].publish_encryption_key(key))

        # A gasless party's encryption key, signed by it and sent by the admin: expired, forged, valid until this
        # very second; replacing the key registered now, none, or one it never had (a stale signature).
        @rule(
            p=st.integers(0, PARTIES - 1),
            zero=st.sampled_from([False, False, False, True]),
            previous=st.sampled_from(["current", "current", "none", "stale"]),
            signature=st.sampled_from(["signed", "signed", "forged", "expired", "last second"]),
        )
        def relay_key(self, p: int, zero: bool, previous: str, signature: str) -> None:
            self.now()
            who = keys[p].address
            key = bytes(32) if zero else bytes([p + 1, len(self.model.keys), 7]) + bytes(29)
            replaced = {"current": self.model.keys.get(who, bytes(32)), "none": bytes(32)}.get(previous, b"\x09" * 32)
            deadline = {"expired": self.model.now - 1, "last second": self.model.now}.get(signature, self.model.now + 100 * STEP)
            signer = keys[(p + 1) % PARTIES] if signature == "forged" else keys[p]
            typed = encryption_key_typed_data(chain_id=self.admin.chain_id, contract=self.admin.address, participant=who,
                                              public_key=key, previous_key=replaced, deadline=deadline)
            signed = Account.sign_typed_data(signer.key, typed["domain"], typed["types"], typed["message"]).signature
            call = self.admin.contract.functions.publishSignedEncryptionKey(who, key, replaced, deadline, bytes(signed))
            expected = self.model.publish_signed_key(who, key, replaced, deadline=deadline, forged=signature == "forged")
            self.check(expected, lambda: send_transaction(chain.w3, call, account=self.admin.account))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def finalize(self, pick: int, by: int | None) -> None:
            self.now()
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.finalize(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.finalize_round(round_id, global_cid=MODEL, receipt_cid=TERMS))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def cancel(self, pick: int, by: int | None) -> None:
            self.now()
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.cancel(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.cancel_round(round_id))

        @rule(pick=st.integers(0, 2), by=st.sampled_from([None, 0]))
        def abort(self, pick: int, by: int | None) -> None:
            self.now()
            round_id = max(len(self.model.rounds) - pick, 1)
            client = self.admin if by is None else self.parties[by]
            expected = self.model.abort(round_id, by=None if by is None else keys[by].address)
            self.check(expected, lambda: client.abort_round(round_id, reason="governance says so"))

        @rule(to=st.sampled_from(["next deadline", "one step", "two steps"]), second=st.sampled_from([0, 1]))
        def advance(self, to: str, second: int) -> None:
            """On to a later step (the next deadline of an open round, else one step) or the second
            after it. At the deadline second of each open round on the way, the coordinator tries
            to cancel it, a party tries to reveal and another to advertise: that second still
            belongs to the round, whatever its submissions. Past it, every party tries to reveal
            (only its submitters may)."""
            later = sorted(
                (r.deadline, round_id)
                for round_id, r in enumerate(self.model.rounds, start=1)
                if r.state == "open" and r.deadline > self.model.now
            )
            if to == "next deadline" and later:
                self.steps = (later[0][0] - self.start_time) // STEP
            else:
                self.steps += 2 if to == "two steps" else 1
            target = self.start_time + self.steps * STEP + second
            for deadline, round_id in later:
                if deadline <= target:
                    self.model.now = deadline
                    self.now()
                    self.check(self.model.cancel(round_id, by=None), lambda: self.admin.cancel_round(round_id))
                    self.post_message(round_id % PARTIES, round_id, RoundMessageKind.REVEAL)
                    self.post_message((round_id + 1) % PARTIES, round_id, RoundMessageKind.ADVERTISE)
            self.model.now = target
            chain.rpc("evm_mine", [self.model.now])
            for deadline, round_id in later:
                if deadline < target and self.model.rounds[round_id - 1].state == "open":
                    for p in range(PARTIES):
                        self.post_message(p, round_id, RoundMessageKind.REVEAL, "dag-pb")

        @invariant()
        def agrees(self) -> None:
            """The contract's state, read in one batch of calls (one round trip per step)."""
            functions = self.admin.contract.functions
            addresses = [key.address for key in keys]
            with chain.w3.batch_requests() as batch:
                batch.add(functions.agreementVersion())
                batch.add(functions.participantCount())
                batch.add(functions.openRounds())
                for address in addresses:
                    batch.add(functions.participant(address))
                    batch.add(functions.privacy(address))
                    batch.add(functions.encryptionKey(address))
                for round_id in range(1, len(self.model.rounds) + 1):
                    batch.add(functions.round(round_id))
                version, count, open_ids, *rest = batch.execute()
            model = self.model
            assert version == model.version
            assert count == len(model.index)
            assert sorted(open_ids) == [i for i, r in enumerate(model.rounds, start=1) if r.state == "open"]
            for p, address in enumerate(addresses):
                (status, accepted, index, has_index), privacy, key = rest[3 * p : 3 * p + 3]
                assert (PARTICIPANT_STATUSES[status], accepted, index if has_index else None) == (
                    model.status.get(address, "none"), model.accepted.get(address, 0), model.index.get(address)
                )
                assert tuple(privacy) == (model.spent.get(address, 0), model.budget.get(address, 0))
                assert (None if bytes(key) == bytes(32) else bytes(key)) == model.keys.get(address)
            rounds = rest[3 * len(addresses) :]
            for expected, (state, _, _, submissions) in zip(model.rounds, rounds, strict=True):
                assert (ROUND_STATES[state], submissions) == (expected.state, len(expected.submitted))

    run_state_machine_as_test(
        Federation,
        settings=settings(
            max_examples=10,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
            report_multiple_bugs=False,
            # No explain phase: it would rerun the failing example many more times to comment on it.
            phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        ),
    )
