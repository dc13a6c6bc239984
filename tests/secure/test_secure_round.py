"""A secure round on a real anvil: five parties, one drops out, one reveals a wrong share, one is late,
and one never holds ether: through a relay and the real commands, it registers its encryption key
(`key publish-encryption --relay`), advertises (`node advertise --relay`), trains and submits
(`node train --relay`) and reveals (`node reveal --relay`) (issue 24).

A sixth cohort member advertises after the key deadline: it is not counted, and nobody masks with it.
The round finalizes with the four survivors, removes the dropout's masks with the right reveals,
names the party whose reveal was wrong, and ``audit verify`` recomputes the global model from public
data with no key; the store holds no update in the clear. The refusals a party meets on the way (a
party outside the cohort, a reveal before the deadline, a reveal asked of a party that dropped) each
come with their sentence.
"""

from __future__ import annotations

import copy
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eth_account import Account
from web3 import Web3

from ledger.contract_constants import RoundMessageKind
from ledger.errors import InvalidInputError
from ledger.index.index import LedgerIndex
from ledger.ipfs.store import EmbeddedStore
from ledger.sealing.keys import new_encryption_key, public_key_bytes
from ledger.secagg.documents import Reveal, RevealedShare
from ledger.secagg.graph import neighbours_of
from ledger.secagg.params import SecureParams
from ledger.secagg.shares import make_advertisement, new_round_seed
from ledger.weights import from_safetensors
from ledger.workspace import Workspace
from node.aggregator import aggregate_round, aggregate_secure_updates
from node.audit.verify import verify_ledger
from node.data import Dataset
from node.genesis import genesis_model_bytes
from node.journal import Journal
from node.models import build_model, load_arrays, model_layout, state_arrays
from node.participant import train_and_submit, training_seed
from node.round_config import RoundConfig, TrainingSettings
from node.secure.aggregate import SecureRoundStuck
from node.secure.board import PostedDocument, read_board
from node.secure.party import advertise, reveal, wait_for_key_phase
from node.secure.settings import SecureRound
from node.strategies import make_strategy
from node.training import train
from tests.contracts.conftest import TERMS, Fed, make_fed
from tests.fixtures_chain import TestChain
from tests.fixtures_cli import ok
from tests.fixtures_cli import run_in_process as cli
from tests.relay.conftest import serving_relay

pytestmark = pytest.mark.anvil

PARTIES = 6  # the sixth advertises too late; the fourth never holds ether
GASLESS = 3
PASSWORD = "secure-round"
KEY_WINDOW, ROUND_SECONDS = 300, 600


def _samples(seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(x=rng.random((24, 64), dtype=np.float32), y=rng.integers(0, 10, 24).astype(np.int64))


def test_five_parties_one_dropout_one_wrong_reveal_finalize_and_the_audit_recomputes_without_a_key(
    chain: TestChain, tmp_path: Path,
) -> None:
    fed = make_fed(chain)
    store = EmbeddedStore(tmp_path / "store")
    parties = [fed.party() for _ in range(PARTIES - 1)]
    gasless = Account.create()  # never funded: it joins by signature (the admin sends it) and acts through a relay
    fed.join(gasless)
    fed.admin.approve(gasless.address)
    parties.insert(GASLESS, (gasless, fed.admin.with_account(gasless)))
    keys = {account.address: X25519PrivateKey.generate() for account, _ in parties if account is not gasless}
    for account, client in parties:
        if account is not gasless:
            client.publish_encryption_key(public_key_bytes(keys[account.address]))
    outsider, outsider_client = fed.party()

    # The gasless party's own workspace on this deployment and store, its encryption key made there; every
    # step it takes is a command, with --relay (the relay `relay serve` runs, paid by the admin).
    workspace = Workspace.init(tmp_path / "gasless", rpc=chain.w3.provider.endpoint_uri)
    workspace.config["deployment"] = {"address": fed.admin.address, "chain_id": fed.admin.chain_id, "block": 0}
    workspace.set("store", "path", str(tmp_path / "store"))
    workspace.save()
    public = {a: public_key_bytes(k) for a, k in keys.items()}
    public[gasless.address] = new_encryption_key(workspace, "enc", password=PASSWORD, iterations=1 << 12)
    env = {"FEDLEDGER_PRIVATE_KEY": Web3.to_hex(gasless.key), "FEDLEDGER_KEY_PASSWORD": PASSWORD}
    w = ("--workdir", str(workspace.root))
    relay = ExitStack()
    _, relay_url = relay.enter_context(serving_relay(fed.admin, store))
    registered = ok(cli("key", "publish-encryption", "--key", "enc", "--relay", relay_url, "--json", *w, env=env)).json()
    assert registered["relayer"] == fed.admin.sender and fed.admin.encryption_key(gasless.address) == public[gasless.address]

    now = chain.now()
    params = SecureParams(cohort=tuple(a.address for a, _ in parties), threshold=2, neighbours=4, max_samples=1000)
    config = RoundConfig(model="mlp", strategy=make_strategy("fedavg").params(), max_samples=1000,
                         training=TrainingSettings(epochs=1, batch_size=8, lr=0.05),
                         secure=SecureRound(params=params, key_deadline=now + KEY_WINDOW))
    store.add_bytes(config.to_bytes(), pin=True)
    base = store.add_bytes(genesis_model_bytes("mlp", seed=0), pin=True)
    round_id, _ = fed.admin.open_round(base_cid=base, deadline=now + ROUND_SECONDS, min_updates=3,
                                       config_hash=config.config_hash)
    info = fed.admin.round(round_id)
    journals = tmp_path / "journal"

    # The dropout (moved to parties[4]) is one whose shares the gasless party holds, so that it has to reveal.
    context = read_board(fed.admin, store, round_id, config.secure).context
    dropout = next(p for p in parties[:5] if p[0] is not gasless and gasless.address in neighbours_of(params, p[0].address, context))
    parties[:5] = [p for p in parties[:5] if p is not dropout] + [dropout]

    def journal(account) -> Journal:  # noqa: ANN001
        return Journal(journals, role="participant", actor=account.address, round_id=round_id)

    with pytest.raises(InvalidInputError, match="not in the cohort|not a member of the cohort|cohort"):
        advertise(outsider_client, store, journal(outsider), round_id=round_id, settings=config.secure,
                  opened_block=info.opened_block)
    for account, client in parties[:5]:
        if account is gasless:
            ok(cli("node", "advertise", "--round", str(round_id), "--relay", relay_url, *w, env=env))
        else:
            advertise(client, store, journal(account), round_id=round_id, settings=config.secure,
                      opened_block=info.opened_block)
    with pytest.raises(InvalidInputError, match="key phase of round 1 is still open"):  # the sixth may yet advertise
        wait_for_key_phase(parties[0][1], store, round_id=round_id, settings=config.secure, poll_s=0.1, timeout_s=0.2)
    chain.advance(KEY_WINDOW + 1)
    late, late_client = parties[5]
    with pytest.raises(InvalidInputError, match="key phase of round 1 ended"):
        advertise(late_client, store, journal(late), round_id=round_id, settings=config.secure,
                  opened_block=info.opened_block)
    board = read_board(fed.admin, store, round_id, config.secure)
    late_document = make_advertisement(params, board.context, party=late.address, seed=new_round_seed(),
                                       long_term_keys=public)
    late_client.post_round_message(round_id, RoundMessageKind.ADVERTISE, store.add_bytes(late_document.to_bytes()))
    board = read_board(fed.admin, store, round_id, config.secure)
    assert late.address not in board.advertisements and "after the key deadline" in board.ignored[0][2]
    assert board.context.beacon == bytes(chain.w3.eth.get_block(info.opened_block)["hash"])  # drawn after the cohort
    again = advertise(parties[0][1], store, journal(parties[0][0]), round_id=round_id, settings=config.secure,
                      opened_block=info.opened_block)
    assert again == read_board(fed.admin, store, round_id, config.secure).advertised[parties[0][0].address].cid

    survivors, dropout = parties[:4], parties[4]  # the dropout advertised and never submits
    for number, (account, client) in enumerate(survivors):
        if account is gasless:  # its data in a file, trained by the command as train_and_submit trains it
            samples = _samples(number)
            np.savez(tmp_path / "gasless.npz", x=samples.x, y=samples.y)
            trained = ok(cli("node", "train", "--round", str(round_id), "--data", str(tmp_path / "gasless.npz"),
                             "--relay", relay_url, "--json", *w, env=env)).json()
            assert trained["relayed_by"] == fed.admin.sender and trained["metrics"] == {} and trained["samples"] == 24
            continue
        outcome = train_and_submit(federation=client, store=store, round_id=round_id, data=_samples(number),
                                   journal_dir=journals, progress=False)
        assert outcome.metrics == {} and outcome.samples == 24
    early = next(p for p in survivors if p[0] is not gasless)
    with pytest.raises(InvalidInputError, match="only after"):
        reveal(early[1], store, journal(early[0]), round_id=round_id, settings=config.secure,
               long_term_key=keys[early[0].address])
    with pytest.raises(InvalidInputError, match="waits for"):  # the dropout may still submit
        aggregate_round(federation=fed.admin, store=store, round_id=round_id, journal_dir=journals)

    chain.advance(ROUND_SECONDS + 1)
    with pytest.raises(InvalidInputError, match="did not submit"):
        reveal(dropout[1], store, journal(dropout[0]), round_id=round_id, settings=config.secure,
               long_term_key=keys[dropout[0].address])
    holders = set(neighbours_of(params, dropout[0].address, board.context))  # they hold the dropout's shares
    liar = next(party for party in survivors if party[0].address in holders and party[0] is not gasless)
    honest = [party for party in survivors if party is not liar]
    assert gasless.address in holders
    for account, client in honest:
        if account is gasless:
            revealed = ok(cli("node", "reveal", "--round", str(round_id), "--relay", relay_url, "--json", *w, env=env)).json()
            assert revealed["reveal_cid"] is not None
            continue
        posted = reveal(client, store, journal(account), round_id=round_id, settings=config.secure,
                        long_term_key=keys[account.address])
        assert (posted is not None) == (account.address in holders)
    relay.close()
    sent = [m.tx_hash for m in fed.admin.round_messages(round_id) if m.party == gasless.address]
    sent += [s.tx_hash for s in fed.admin.submissions(round_id) if s.participant == gasless.address]
    logs = fed.admin.contract.events.EncryptionKeyPublished().get_logs(from_block=0, argument_filters={"account": gasless.address})
    sent += [Web3.to_hex(log.transactionHash) for log in logs]
    assert len(sent) == 4 and {chain.w3.eth.get_transaction(tx)["from"] for tx in sent} == {fed.admin.sender}
    assert chain.w3.eth.get_balance(gasless.address) == 0 and chain.w3.eth.get_transaction_count(gasless.address) == 0
    board = read_board(fed.admin, store, round_id, config.secure)
    true_share = next(s for s in _reveal_of(liar, keys, store, fed, round_id, config).shares)
    wrong = Reveal(board.context, liar[0].address, (RevealedShare(true_share.owner, true_share.index,
                                                                  bytes(b ^ 1 for b in true_share.share)),))
    liar[1].post_round_message(round_id, RoundMessageKind.REVEAL, store.add_bytes(wrong.to_bytes(), pin=True))

    outcome = aggregate_round(federation=fed.admin, store=store, round_id=round_id, journal_dir=journals)
    receipt = outcome.receipt
    assert sorted(u.participant for u in receipt.included) == sorted(a.address for a, _ in survivors)
    assert [d.participant for d in receipt.dropouts] == [dropout[0].address]
    assert [w.participant for w in receipt.wrong_reveals] == [liar[0].address]
    assert {r.participant for r in receipt.reveals} <= {a.address for a, _ in honest}
    assert fed.admin.round(round_id).state == "finalized"

    base_arrays, _ = from_safetensors(store.get(base), layout=model_layout("mlp"))
    global_arrays, _ = from_safetensors(store.get(outcome.global_cid), layout=model_layout("mlp"))
    plain = _plain_fedavg(base_arrays, [(account.address, _samples(n)) for n, (account, _) in enumerate(survivors)],
                          round_id, config)
    for name, value in global_arrays.items():  # FedAvg of the survivors' updates, to the quantization
        assert not np.array_equal(value, base_arrays[name])
        assert np.max(np.abs(value.astype(np.float64) - plain[name])) <= params.quantization_bound + 1e-6
    for submission in fed.admin.submissions(round_id):  # what the store holds of an update: masked words only
        _, metadata = from_safetensors(store.get(submission.cid))
        assert metadata["kind"] == "fedledger-secagg-masked" and set(metadata) >= {"participant", "round", "samples"}

    _refusals_of_the_pure_core(fed, store, round_id, config, late.address, liar[0].address)

    with LedgerIndex.for_federation(tmp_path / "index.sqlite", fed.admin) as index:
        verdict = verify_ledger(fed.admin, store, index, progress=False)
    assert verdict.failures == [], [c.what for c in verdict.failures]
    assert verdict.missing_cids == [TERMS]  # the fixture's agreement names terms no store holds; all else is here
    recomputed = [c for c in verdict.checks if c.check == "aggregate" and c.round_id == round_id]
    assert recomputed and all(c.ok for c in recomputed) and "recomputed exactly" in recomputed[0].what


def _refusals_of_the_pure_core(
    fed: Fed, store: EmbeddedStore, round_id: int, config: RoundConfig, late: str, liar: str,
) -> None:
    """What the aggregator's (and auditor's) pure core does with bad public data, on the finished round's."""
    info = fed.admin.round(round_id)
    submissions = fed.admin.submissions(round_id)
    board = read_board(fed.admin, store, round_id, config.secure)

    def aggregate(submitted, on_board=board):  # noqa: ANN001, ANN202
        return aggregate_secure_updates(store=store, info=info, config=config, submissions=submitted, pre_rejected=[],
                                        board=on_board)

    _, receipt = aggregate([*submissions, replace(submissions[0], participant=late)])
    assert [(r.participant, "masked with nobody" in r.reason) for r in receipt.rejected] == [(late, True)]
    swapped = [replace(submissions[0], cid=submissions[1].cid), *submissions[1:]]
    with pytest.raises(SecureRoundStuck, match=f"names participant '{submissions[1].participant}', not its submitter"):
        aggregate(swapped)
    snooper = liar  # now offers a share of a party that submitted (the honest holders' reveals are all needed)
    nosy = copy.deepcopy(board)
    victim = next(s.participant for s in submissions if s.participant != snooper)
    nosy.reveals[snooper] = Reveal(board.context, snooper, (RevealedShare(victim, 1, bytes(16)),))
    nosy.revealed[snooper] = PostedDocument(snooper, str(board.advertised[snooper].cid), 0)
    _, receipt = aggregate(submissions, nosy)
    assert any(w.participant == snooper and "is not a dropout" in w.reason for w in receipt.wrong_reveals)


def _plain_fedavg(base: dict, parties: list, round_id: int, config: RoundConfig) -> dict[str, np.ndarray]:
    """What plain FedAvg of the same parties' updates gives: each trained again, as deterministically as node train."""
    total = sum(len(data) for _, data in parties)
    mean = {name: np.zeros(value.shape, dtype=np.float64) for name, value in base.items()}
    for address, data in parties:
        model = build_model("mlp")
        load_arrays(model, base)
        train(model, data, epochs=config.training.epochs, batch_size=config.training.batch_size, lr=config.training.lr,
              seed=training_seed(address, round_id), progress=False)
        for name, value in state_arrays(model).items():
            mean[name] += value.astype(np.float64) * len(data) / total
    return mean


def _reveal_of(party, keys, store, fed: Fed, round_id: int, config: RoundConfig) -> Reveal:  # noqa: ANN001
    """What ``party`` would reveal if it were honest (read, not posted)."""
    from ledger.secagg.reveal import shares_to_reveal

    board = read_board(fed.admin, store, round_id, config.secure)
    submitted = {s.participant for s in fed.admin.submissions(round_id)}
    return shares_to_reveal(config.secure.params, board.context, holder=party[0].address,
                            long_term_key=keys[party[0].address], advertisements=board.advertisements,
                            submitted=[a for a in board.advertisements if a in submitted],
                            dropouts=[a for a in board.advertisements if a not in submitted])
