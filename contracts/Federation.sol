// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {AccessControlDefaultAdminRules} from
    "@openzeppelin/contracts/access/extensions/AccessControlDefaultAdminRules.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IFederation} from "./interfaces/IFederation.sol";

/**
 * @title Federation
 * @dev Who may take part in a federated-learning federation, what each party agreed to, and
 * which update each party submitted in each round.
 *
 * Storage holds only what the contract checks itself: the terms and privacy budget of each
 * agreement version (a join signature is checked against them), one packed slot per participant
 * (status, accepted version, bit index, the privacy budget of its accepted version and the
 * cumulative privacy loss it last declared), one packed slot per round (state, deadline, minimum,
 * the agreement version in force, the "has submitted" bits of the first {INLINE_BITS} admitted
 * participants and a count of the others' submissions) plus one bitmap word per 256 further
 * admitted participants, the set of open rounds, and each account's encryption public key. Update CIDs,
 * sample counts and metrics hashes travel in events only. A submission so reads two cold slots
 * (its round, its sender) and writes into those two slots only; the sender's slot only when its
 * declared privacy loss grows.
 *
 * Privacy budget: ε and δ are fixed point, ε in millionths ({EPSILON_SCALE}) and δ in units of
 * 1e-18 ({DELTA_SCALE}). An agreement may carry a budget (ε > 0, 0 < δ < 1); a party copies it
 * into its own slot when it joins that version. With every submission the party declares its
 * cumulative ε over all rounds it took part in; the contract keeps the latest declaration and
 * refuses one that goes down or past the budget of the version in force. An agreement without a
 * budget (ε = δ = 0) still keeps declarations from going down. Auditors recompute the figure
 * from the round configurations.
 *
 * Round messages: {postRoundMessage} is the bulletin board of secure aggregation. A party posts the
 * CID of its per-round keys and shares (kind ADVERTISE) while a round takes updates, and a
 * submitter posts what removes dropouts' masks (kind REVEAL) after the deadline; the contract
 * enforces who and when and writes no storage: the messages live in events. {postSignedRoundMessage}
 * takes the same message signed by the party (EIP-712 `RoundMessage(...)`) from any sender, under
 * the same rules (the same code), so a party without ether posts through a relayer; it registers its
 * encryption key the same way ({publishSignedEncryptionKey}, EIP-712 `EncryptionKey(...)`).
 *
 * Relayed submissions: {submitUpdates} lets any account record many parties' updates to one
 * round in one transaction, each item carrying the party's EIP-712 signature over `Update(...)`
 * ({UPDATE_TYPEHASH}). Every item passes exactly the checks of a direct submission (the same
 * code); an item that fails is skipped, never recorded, and an {UpdateRejected} event carries the
 * ABI-encoded error of the rule it broke, so one bad or raced item does not waste the batch.
 *
 * A party gets its bit index when it is first admitted, not when it joins: joining is open to
 * anyone, so indexes handed out at join could be used up by spam joins, pushing real parties
 * into overflow words and making every count of submissions longer.
 *
 * Roles: `DEFAULT_ADMIN_ROLE` publishes agreements, governs membership and may abort an open
 * round with a reason; it is held by one account at a time and handed over in two steps after a
 * delay ({AccessControlDefaultAdminRules}), so a consortium can put it behind a multisig or a
 * timelock and see a transfer coming. `COORDINATOR_ROLE` opens rounds; `AGGREGATOR_ROLE`
 * finalizes them; either of the two cancels a round that cannot reach its minimum. The deployer
 * holds all three.
 */
contract Federation is IFederation, AccessControlDefaultAdminRules, EIP712 {
    bytes32 public constant COORDINATOR_ROLE = keccak256("COORDINATOR_ROLE");
    bytes32 public constant AGGREGATOR_ROLE = keccak256("AGGREGATOR_ROLE");

    /// @dev EIP-712 type of the message a party signs to accept an agreement version.
    bytes32 public constant JOIN_TYPEHASH =
        keccak256("Join(address participant,uint256 version,uint8 termsCodec,bytes32 termsDigest,uint256 deadline)");

    /// @dev EIP-712 type of the message a party signs to have a relayer record its update.
    bytes32 public constant UPDATE_TYPEHASH = keccak256(
        "Update(address participant,uint256 roundId,uint8 codec,bytes32 digest,uint64 samples,bytes32 metricsHash,uint64 epsilon,uint256 deadline)"
    );

    /**
     * @dev EIP-712 type of the message a party signs to have a relayer post its round message
     * ({postSignedRoundMessage}). Private (no getter, like the message kinds): clients take the
     * type from this comment (ledger/chain/federation.py ROUND_MESSAGE_TYPES).
     */
    bytes32 private constant _ROUND_MESSAGE_TYPEHASH = keccak256(
        "RoundMessage(address participant,uint256 roundId,uint8 kind,uint8 codec,bytes32 digest,uint256 deadline)"
    );

    /**
     * @dev EIP-712 type of the message a party signs to have a relayer register its encryption key
     * ({publishSignedEncryptionKey}): the new key and the one it replaces (zero: none), so a signature
     * holds only while that key is registered and cannot roll a later rotation back. Private, like
     * {_ROUND_MESSAGE_TYPEHASH}: clients take the type from here (ledger/chain/federation.py
     * ENCRYPTION_KEY_TYPES).
     */
    bytes32 private constant _ENCRYPTION_KEY_TYPEHASH =
        keccak256("EncryptionKey(address participant,bytes32 publicKey,bytes32 previousKey,uint256 deadline)");

    /// @dev Participants whose "has submitted" bit lives in the round's own slot.
    uint256 public constant INLINE_BITS = 120;

    /// @dev The most items one {submitUpdates} call takes.
    uint256 public constant MAX_BATCH_SIZE = 256;

    /// @dev Fixed point of ε (millionths) and δ (1e-18) in budgets and declarations.
    uint256 public constant EPSILON_SCALE = 1e6;
    uint256 public constant DELTA_SCALE = 1e18;

    /// @dev The latest deadline a round may have, counted from its opening: a round always ends.
    uint256 public constant MAX_ROUND_DURATION = 30 days;

    /**
     * @dev {postRoundMessage} kind ADVERTISE (1): a party's per-round keys and encrypted shares for
     * a secure round, posted while the round takes updates, by a party that may submit to it.
     * Private (no getter, so the dispatcher of every call stays as short as it was): clients
     * take the number from this comment (ledger/contract_constants.py).
     */
    uint8 private constant _ADVERTISE = 1;

    /**
     * @dev {postRoundMessage} kind REVEAL (2): what removes dropouts' masks from a secure round's
     * sum, posted after the round's deadline by a party that submitted an update to it.
     */
    uint8 private constant _REVEAL = 2;

    uint8 private constant _RAW = 0x55;
    uint8 private constant _DAG_PB = 0x70;
    /// @dev The batch position that marks a direct submission in {_record}.
    uint256 private constant _DIRECT = type(uint256).max;
    /// @dev The batch position that marks an advertisement in {_record}: its membership rules only, nothing recorded.
    uint256 private constant _ADVERTISER = type(uint256).max - 1;

    /// @dev Two slots: the digest, then codec and privacy budget (read together by {join}).
    struct Terms {
        bytes32 digest;
        uint8 codec;
        uint64 epsilonBudget;
        uint64 delta;
    }

    /**
     * @dev One slot (8 + 32 + 32 + 8 + 64 + 64 bits): read once per submission, written when the
     * declared ε grows. `hasIndex` is set at the first admission; `epsilonBudget` is the budget of
     * the accepted version, copied at join so a submission need not read the terms.
     */
    struct Member {
        ParticipantStatus status;
        uint32 acceptedVersion;
        uint32 index;
        bool hasIndex;
        uint64 epsilonBudget;
        uint64 epsilonSpent;
    }

    /**
     * @dev One slot: read and written once per submission (8 + 40 + 32 + 32 + 24 + 120 bits).
     * `agreementVersion` is the version in force while the round is open: set at opening and
     * moved forward by {publishAgreement}, so a submission need not read the global version.
     * `overflowSubmissions` counts the updates of parties whose bit lives in an overflow word, so
     * counting a round's updates reads no bitmap words (a popcount of `submitted` plus it).
     */
    struct Round {
        RoundState state;
        uint40 deadline;
        uint32 minUpdates;
        uint32 agreementVersion;
        uint24 overflowSubmissions;
        uint120 submitted;
    }

    uint32 private _agreementVersion;
    /// @dev Parties ever admitted, each holding a bit index below this count.
    uint32 private _indexedCount;
    uint64 private _roundCount;
    /// @dev The ids of the open rounds, in no particular order; {publishAgreement} walks only these.
    uint256[] private _openRounds;
    /// @dev 1 + the position of an open round in `_openRounds` (0: not open).
    mapping(uint256 roundId => uint256 slot) private _openSlot;

    mapping(uint256 version => Terms) private _terms;
    mapping(address account => Member) private _members;
    mapping(uint256 roundId => Round) private _rounds;
    mapping(uint256 roundId => mapping(uint256 word => uint256 bits)) private _overflowBits;
    mapping(address account => bytes32 publicKey) private _encryptionKeys;

    /**
     * @dev The deployer becomes admin, coordinator and aggregator. `adminDelay` is how long a
     * new admin must wait after being proposed ({beginDefaultAdminTransfer}) before accepting.
     */
    constructor(uint48 adminDelay) AccessControlDefaultAdminRules(adminDelay, msg.sender) EIP712("Federation", "1") {
        _grantRole(COORDINATOR_ROLE, msg.sender);
        _grantRole(AGGREGATOR_ROLE, msg.sender);
    }

    // ---------------------------------------------------------------- agreements and membership

    /**
     * @dev Publishes agreement version `agreementVersion() + 1` with the terms document's CID and
     * its privacy budget (`epsilonBudget` in millionths of ε, `delta` in units of 1e-18; both 0
     * for no budget). Every party must join again under the new version before it can submit, in
     * open rounds too: each open round's copy of the version in force moves forward (a loop over
     * the rounds still open, never over closed ones; every round ends within {MAX_ROUND_DURATION}).
     *
     * Requirements: caller has `DEFAULT_ADMIN_ROLE`; `termsCodec` is raw or dag-pb; either both
     * budget figures are 0, or `epsilonBudget` > 0 and 0 < `delta` < {DELTA_SCALE}.
     *
     * Emits an {AgreementPublished} event.
     */
    function publishAgreement(uint8 termsCodec, bytes32 termsDigest, uint64 epsilonBudget, uint64 delta)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 version)
    {
        _checkCodec(termsCodec);
        bool noBudget = epsilonBudget == 0 && delta == 0;
        if (!noBudget && (epsilonBudget == 0 || delta == 0 || delta >= DELTA_SCALE)) {
            revert FederationInvalidPrivacyBudget(epsilonBudget, delta);
        }
        uint32 next = ++_agreementVersion;
        version = next;
        _terms[version] = Terms({digest: termsDigest, codec: termsCodec, epsilonBudget: epsilonBudget, delta: delta});
        uint256 open = _openRounds.length;
        for (uint256 i = 0; i < open; ++i) {
            _rounds[_openRounds[i]].agreementVersion = next;
        }
        emit AgreementPublished(version, termsCodec, termsDigest, epsilonBudget, delta);
    }

    /**
     * @dev Records that `account` accepted agreement `version`. The EIP-712 `signature` over
     * `Join(participant = account, version, termsCodec, termsDigest, deadline)` binds this chain and this
     * contract; anyone may relay it. A first join makes the party Pending; a later one (for a
     * new version) keeps its status. The version's privacy budget becomes the party's; the ε it
     * declared so far stays.
     *
     * Requirements: an agreement is published; `version` is the current one; `deadline` has not
     * passed; `account` signed; it has not accepted `version` yet and is not revoked.
     *
     * Emits a {ParticipantJoined} event.
     */
    function join(address account, uint256 version, uint256 deadline, bytes calldata signature) external {
        uint256 current = _agreementVersion;
        if (current == 0) revert FederationNoAgreement();
        if (version != current) revert FederationStaleAgreement(version, current);
        Terms storage terms = _terms[version];
        _requireSigned(
            account, keccak256(abi.encode(JOIN_TYPEHASH, account, version, terms.codec, terms.digest, deadline)), deadline, signature
        );

        Member storage member = _members[account];
        if (member.status == ParticipantStatus.Revoked) {
            revert FederationUnexpectedStatus(account, ParticipantStatus.Revoked);
        }
        if (member.acceptedVersion == version) revert FederationAlreadyAccepted(account, version);
        if (member.status == ParticipantStatus.None) member.status = ParticipantStatus.Pending;
        member.acceptedVersion = uint32(version);
        member.epsilonBudget = terms.epsilonBudget;
        emit ParticipantJoined(account, version, deadline, msg.sender, signature);
    }

    /**
     * @dev Admits a Pending party; at its first admission it gets the next bit index.
     * Requirements: caller is admin; `account` is Pending. Emits a {ParticipantAdmitted} event.
     */
    function approve(address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transition(account, ParticipantStatus.Pending, ParticipantStatus.Admitted);
        Member storage member = _members[account];
        if (!member.hasIndex) {
            member.index = _indexedCount++;
            member.hasIndex = true;
        }
        emit ParticipantAdmitted(account, msg.sender, member.index);
    }

    /**
     * @dev Suspends an Admitted party: it cannot submit until reinstated.
     * Requirements: caller is admin; `account` is Admitted. Emits a {ParticipantSuspended} event.
     */
    function suspend(address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transition(account, ParticipantStatus.Admitted, ParticipantStatus.Suspended);
        emit ParticipantSuspended(account, msg.sender);
    }

    /**
     * @dev Reinstates a Suspended party. Requirements: caller is admin; `account` is Suspended.
     * Emits a {ParticipantReinstated} event.
     */
    function reinstate(address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _transition(account, ParticipantStatus.Suspended, ParticipantStatus.Admitted);
        emit ParticipantReinstated(account, msg.sender);
    }

    /**
     * @dev Revokes a party for good. Requirements: caller is admin; `account` is Pending,
     * Admitted or Suspended. Emits a {ParticipantRevoked} event.
     */
    function revoke(address account) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Member storage member = _members[account];
        ParticipantStatus status = member.status;
        if (status == ParticipantStatus.None || status == ParticipantStatus.Revoked) {
            revert FederationUnexpectedStatus(account, status);
        }
        member.status = ParticipantStatus.Revoked;
        emit ParticipantRevoked(account, msg.sender);
    }

    /// @dev The agreement version in force (0 before the first one is published).
    function agreementVersion() external view returns (uint256) {
        return _agreementVersion;
    }

    /// @dev The terms CID and privacy budget of agreement `version` (codec 0 when no such version).
    function agreement(uint256 version)
        external
        view
        returns (uint8 termsCodec, bytes32 termsDigest, uint64 epsilonBudget, uint64 delta)
    {
        Terms storage terms = _terms[version];
        return (terms.codec, terms.digest, terms.epsilonBudget, terms.delta);
    }

    /// @dev Membership status, accepted agreement version and bitmap index of `account`
    /// (`hasIndex` is false, and `index` 0, until it is first admitted).
    function participant(address account)
        external
        view
        returns (ParticipantStatus status, uint256 acceptedVersion, uint256 index, bool hasIndex)
    {
        Member storage member = _members[account];
        return (member.status, member.acceptedVersion, member.index, member.hasIndex);
    }

    /// @dev How many parties were ever admitted (each holds a bit index below this count).
    function participantCount() external view returns (uint256) {
        return _indexedCount;
    }

    /// @dev The cumulative ε `account` last declared and the budget of the version it accepted
    /// (both in millionths; budget 0: that version has none).
    function privacy(address account) external view returns (uint64 epsilonSpent, uint64 epsilonBudget) {
        Member storage member = _members[account];
        return (member.epsilonSpent, member.epsilonBudget);
    }

    // ---------------------------------------------------------------- encryption keys

    /**
     * @dev Registers (or replaces) the caller's encryption public key: an X25519 key for HPKE
     * (RFC 9180, DHKEM(X25519, HKDF-SHA256)), to which parties seal updates for the rounds that
     * name the caller as a recipient. The chain is the key directory: only an account itself can
     * set its key. Requirements: `publicKey` is not zero. Emits an {EncryptionKeyPublished} event.
     */
    function publishEncryptionKey(bytes32 publicKey) external {
        _publishEncryptionKey(msg.sender, publicKey);
    }

    /**
     * @dev Registers `account`'s encryption public key on its behalf; any account may send it (a relayer
     * pays the gas of a party that holds no ether). The message is the EIP-712
     * `EncryptionKey(participant = account, publicKey, previousKey, deadline)` over this chain and contract,
     * signed by `account`, with `deadline` (unix seconds, the last second the signature holds) not
     * passed, and `previousKey` the key `account` has registered now (zero: none): once the key changes,
     * the signature holds no more, so nobody can replay it to put back a key the party replaced. Then
     * the rule of {publishEncryptionKey} for `account` (the same code) and the same
     * {EncryptionKeyPublished} event.
     *
     * Requirements: `deadline` has not passed; `account` signed; its registered key is `previousKey`;
     * `publicKey` is not zero.
     *
     * Emits an {EncryptionKeyPublished} event.
     */
    function publishSignedEncryptionKey(
        address account,
        bytes32 publicKey,
        bytes32 previousKey,
        uint256 deadline,
        bytes calldata signature
    ) external {
        _requireSigned(
            account,
            keccak256(abi.encode(_ENCRYPTION_KEY_TYPEHASH, account, publicKey, previousKey, deadline)),
            deadline,
            signature
        );
        bytes32 current = _encryptionKeys[account];
        if (current != previousKey) revert FederationEncryptionKeyChanged(account, previousKey, current);
        _publishEncryptionKey(account, publicKey);
    }

    /// @dev The encryption public key `account` registered (zero when none).
    function encryptionKey(address account) external view returns (bytes32) {
        return _encryptionKeys[account];
    }

    // ---------------------------------------------------------------- rounds

    /**
     * @dev Opens round `roundCount() + 1` on a base model.
     *
     * Requirements: caller has `COORDINATOR_ROLE`; `baseCodec` is raw or dag-pb; `deadline`
     * (unix seconds, the last second that takes submissions) is in the future and at most
     * {MAX_ROUND_DURATION} away; `minUpdates` is at least 1.
     *
     * Emits a {RoundOpened} event.
     */
    function openRound(uint8 baseCodec, bytes32 baseDigest, uint64 deadline, uint32 minUpdates, bytes32 configHash)
        external
        onlyRole(COORDINATOR_ROLE)
        returns (uint256 roundId)
    {
        _checkCodec(baseCodec);
        if (deadline <= block.timestamp) revert FederationInvalidDeadline(deadline);
        if (deadline > block.timestamp + MAX_ROUND_DURATION) {
            revert FederationDeadlineTooFar(deadline, block.timestamp + MAX_ROUND_DURATION);
        }
        if (minUpdates == 0) revert FederationInvalidMinimum();
        roundId = ++_roundCount;
        _openRounds.push(roundId);
        _openSlot[roundId] = _openRounds.length;
        uint32 version = _agreementVersion;
        _rounds[roundId] = Round({
            state: RoundState.Open,
            deadline: uint40(deadline), // fits: at most now + MAX_ROUND_DURATION
            minUpdates: minUpdates,
            agreementVersion: version,
            overflowSubmissions: 0,
            submitted: 0
        });
        emit RoundOpened(roundId, baseCodec, baseDigest, deadline, minUpdates, configHash, version);
    }

    /**
     * @dev Records the caller's update to round `roundId`: sets its bit, emits the CID, sample
     * count and metrics hash, and keeps its declared cumulative privacy loss `epsilon` (millionths
     * of ε over every round it took part in, this one included), emitting it when it grew.
     *
     * Requirements: the round is open and its deadline has not passed; the caller is Admitted
     * and accepted the current agreement; `codec` is raw or dag-pb; the caller has not
     * submitted to this round yet; `epsilon` is at least the caller's last declaration and, when
     * the agreement has a budget, at most that budget.
     *
     * Emits an {UpdateSubmitted} event, and a {PrivacyLossDeclared} event when `epsilon` is
     * above the caller's last declaration.
     */
    function submitUpdate(
        uint256 roundId,
        uint8 codec,
        bytes32 digest,
        uint64 samples,
        bytes32 metricsHash,
        uint64 epsilon
    ) external {
        Round memory current = _rounds[roundId];
        (uint120 bitsBefore, uint24 overflowBefore) = (current.submitted, current.overflowSubmissions);
        _checkTakesUpdates(roundId, current);
        _record(roundId, current, _DIRECT, msg.sender, codec, digest, samples, metricsHash, epsilon);
        _storeRound(roundId, current, bitsBefore, overflowBefore);
    }

    /**
     * @dev Records `updates` to round `roundId` on behalf of the parties that signed them; any
     * account may send it. Each item is checked like a direct submission by its signer, after
     * its signature: the EIP-712 `Update(participant, roundId, codec, digest, samples,
     * metricsHash, epsilon, deadline)` over this chain and contract, made by `participant`, with
     * `deadline` not passed. An item that fails any check is skipped and named in an
     * {UpdateRejected} event with the error it would have reverted with; later items of the
     * same party in the batch are checked against what the earlier ones recorded.
     *
     * Requirements: 1 to {MAX_BATCH_SIZE} items; the round is open and its deadline has not
     * passed (else nothing could be recorded and the call reverts).
     *
     * Emits an {UpdateSubmitted} event per recorded item, an {UpdateRejected} event per skipped
     * one, and one {UpdatesRelayed} event.
     */
    function submitUpdates(uint256 roundId, SignedUpdate[] calldata updates) external returns (uint256 recorded) {
        uint256 count = updates.length;
        if (count == 0 || count > MAX_BATCH_SIZE) revert FederationInvalidBatchSize(count, MAX_BATCH_SIZE);
        Round memory current = _rounds[roundId];
        (uint120 bitsBefore, uint24 overflowBefore) = (current.submitted, current.overflowSubmissions);
        _checkTakesUpdates(roundId, current);
        for (uint256 i = 0; i < count; ++i) {
            SignedUpdate calldata u = updates[i];
            if (
                _checkSignature(roundId, i, u)
                    && _record(roundId, current, i, u.participant, u.codec, u.digest, u.samples, u.metricsHash, u.epsilon)
            ) {
                ++recorded;
            }
        }
        _storeRound(roundId, current, bitsBefore, overflowBefore);
        emit UpdatesRelayed(roundId, msg.sender, recorded, count - recorded);
    }

    /**
     * @dev Posts the caller's message of kind `kind` for round `roundId`: the CID (`codec`,
     * `digest`) of a document held off chain. The bulletin board of secure aggregation: the
     * contract keeps nothing (no storage is written), it only decides who may post what and when,
     * and the {RoundMessagePosted} event is the message. Nothing stops a party from posting the
     * same kind twice; readers take the FIRST message per (party, kind) of a round, in chain order,
     * and ignore later ones, so a party cannot change what it advertised or revealed.
     *
     * Kinds:
     * - ADVERTISE (1): the party's per-round keys and encrypted shares. The round is open
     *   and its deadline has not passed (the deadline second included), and the caller may submit
     *   to it: Admitted and accepted the agreement version in force (the checks and errors of
     *   {submitUpdate}). Whether it already submitted does not matter.
     * - REVEAL (2): what removes dropouts' masks. The round is open, its deadline has
     *   passed, and the caller submitted an update to it (its status or agreement since then does
     *   not matter: its update counts).
     *
     * Requirements: `kind` is one of the above; the rules of the kind; `codec` is raw or dag-pb.
     *
     * Emits a {RoundMessagePosted} event.
     */
    function postRoundMessage(uint256 roundId, uint8 kind, uint8 codec, bytes32 digest) external {
        _postRoundMessage(msg.sender, roundId, kind, codec, digest);
    }

    /**
     * @dev Posts `account`'s message of kind `kind` for round `roundId` on its behalf; any
     * account may send it (a relayer pays the gas of a party that holds no ether). The message is
     * the EIP-712 `RoundMessage(participant = account, roundId, kind, codec, digest, deadline)` over this
     * chain and contract, signed by `account`, with `deadline` (unix seconds, the last second
     * the signature holds) not passed. Then exactly the rules of {postRoundMessage} for
     * `account` as the caller (the same code), and the same {RoundMessagePosted} event naming
     * `account` as the party: readers cannot tell, and need not, who paid for a message.
     *
     * Requirements: `deadline` has not passed; `account` signed; the rules of {postRoundMessage}.
     *
     * Emits a {RoundMessagePosted} event.
     */
    function postSignedRoundMessage(
        address account,
        uint256 roundId,
        uint8 kind,
        uint8 codec,
        bytes32 digest,
        uint256 deadline,
        bytes calldata signature
    ) external {
        _requireSigned(
            account,
            keccak256(abi.encode(_ROUND_MESSAGE_TYPEHASH, account, roundId, kind, codec, digest, deadline)),
            deadline,
            signature
        );
        _postRoundMessage(account, roundId, kind, codec, digest);
    }

    /**
     * @dev Finalizes round `roundId` with the global model and the aggregation receipt.
     *
     * Requirements: caller has `AGGREGATOR_ROLE`; the round is open; it holds at least its
     * minimum of updates (before or after its deadline); both codecs are raw or dag-pb.
     *
     * Emits a {RoundFinalized} event.
     */
    function finalizeRound(
        uint256 roundId,
        uint8 globalCodec,
        bytes32 globalDigest,
        uint8 receiptCodec,
        bytes32 receiptDigest
    ) external onlyRole(AGGREGATOR_ROLE) {
        Round storage r = _rounds[roundId];
        _checkOpen(roundId, r.state);
        _checkCodec(globalCodec);
        _checkCodec(receiptCodec);
        uint256 submissions = _submissions(r);
        if (submissions < r.minUpdates) revert FederationBelowMinimum(roundId, submissions, r.minUpdates);
        r.state = RoundState.Finalized;
        _closeOpen(roundId);
        emit RoundFinalized(roundId, globalCodec, globalDigest, receiptCodec, receiptDigest, submissions);
    }

    /**
     * @dev Cancels round `roundId`, which can no longer reach its minimum.
     *
     * Requirements: caller has `COORDINATOR_ROLE` or `AGGREGATOR_ROLE`; the round is open; its
     * deadline has passed; it holds fewer updates than its minimum.
     *
     * Emits a {RoundCancelled} event.
     */
    function cancelRound(uint256 roundId) external {
        if (!hasRole(COORDINATOR_ROLE, msg.sender) && !hasRole(AGGREGATOR_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, COORDINATOR_ROLE);
        }
        Round storage r = _rounds[roundId];
        _checkOpen(roundId, r.state);
        if (block.timestamp <= r.deadline) revert FederationRoundStillOpen(roundId, r.deadline);
        uint256 submissions = _submissions(r);
        if (submissions >= r.minUpdates) revert FederationMinimumReached(roundId, submissions, r.minUpdates);
        r.state = RoundState.Cancelled;
        _closeOpen(roundId);
        emit RoundCancelled(roundId, msg.sender, submissions);
    }

    /**
     * @dev Governance closes open round `roundId` at once, whatever its deadline and submissions,
     * with a `reason` that the event records for auditors (a wrong base model or config, a broken
     * round, a round that would otherwise have to wait out its deadline).
     *
     * Requirements: caller has `DEFAULT_ADMIN_ROLE`; the round is open; `reason` is not empty.
     *
     * Emits a {RoundAborted} event.
     */
    function abortRound(uint256 roundId, string calldata reason) external onlyRole(DEFAULT_ADMIN_ROLE) {
        Round storage r = _rounds[roundId];
        _checkOpen(roundId, r.state);
        if (bytes(reason).length == 0) revert FederationReasonRequired();
        r.state = RoundState.Cancelled;
        _closeOpen(roundId);
        emit RoundAborted(roundId, msg.sender, _submissions(r), reason);
    }

    /// @dev How many rounds were ever opened; round ids are 1..roundCount().
    function roundCount() external view returns (uint256) {
        return _roundCount;
    }

    /// @dev The ids of the rounds now open, in no particular order.
    function openRounds() external view returns (uint256[] memory) {
        return _openRounds;
    }

    /// @dev State, deadline, minimum and number of submissions of round `roundId`.
    function round(uint256 roundId)
        external
        view
        returns (RoundState state, uint64 deadline, uint32 minUpdates, uint256 submissions)
    {
        Round storage r = _rounds[roundId];
        return (r.state, r.deadline, r.minUpdates, _submissions(r));
    }

    /// @dev Whether `account` submitted an update to round `roundId`.
    function hasSubmitted(uint256 roundId, address account) external view returns (bool) {
        return _hasSubmitted(roundId, _rounds[roundId].submitted, _members[account]);
    }

    // ---------------------------------------------------------------- internals

    function _transition(address account, ParticipantStatus from, ParticipantStatus to) private {
        Member storage member = _members[account];
        if (member.status != from) revert FederationUnexpectedStatus(account, member.status);
        member.status = to;
    }

    /// @dev Removes `roundId` from the open set (swap with the last, pop).
    function _closeOpen(uint256 roundId) private {
        uint256 slot = _openSlot[roundId];
        uint256 last = _openRounds[_openRounds.length - 1];
        _openRounds[slot - 1] = last;
        _openSlot[last] = slot;
        _openRounds.pop();
        delete _openSlot[roundId];
    }

    function _checkOpen(uint256 roundId, RoundState state) private pure {
        if (state == RoundState.None) revert FederationUnknownRound(roundId);
        if (state != RoundState.Open) revert FederationRoundClosed(roundId, state);
    }

    function _checkCodec(uint8 codec) private pure {
        if (codec != _RAW && codec != _DAG_PB) revert FederationInvalidCid(codec);
    }

    /// @dev Reverts unless round `roundId` (read into `current`) is open and before its deadline.
    function _checkTakesUpdates(uint256 roundId, Round memory current) private view {
        _checkOpen(roundId, current.state);
        if (block.timestamp > current.deadline) revert FederationDeadlinePassed(roundId, current.deadline);
    }

    /// @dev Reverts unless `signature` is `party`'s over the EIP-712 struct hash `structHash` of this
    /// domain and `deadline` has not passed ({join}, {postSignedRoundMessage}, {publishSignedEncryptionKey}).
    function _requireSigned(address party, bytes32 structHash, uint256 deadline, bytes calldata signature) private view {
        if (block.timestamp > deadline) revert FederationSignatureExpired(deadline);
        (address signer, ECDSA.RecoverError recoverError,) = ECDSA.tryRecover(_hashTypedDataV4(structHash), signature);
        if (recoverError != ECDSA.RecoverError.NoError || signer != party) revert FederationInvalidSignature(party);
    }

    /// @dev {publishEncryptionKey}'s rule and event for `party`'s key, whoever sends it (see there).
    function _publishEncryptionKey(address party, bytes32 publicKey) private {
        if (publicKey == bytes32(0)) revert FederationInvalidEncryptionKey();
        _encryptionKeys[party] = publicKey;
        emit EncryptionKeyPublished(party, publicKey);
    }

    /// @dev {postRoundMessage}'s rules and event for `party`'s message, whoever sends it (see there).
    function _postRoundMessage(address party, uint256 roundId, uint8 kind, uint8 codec, bytes32 digest) private {
        Round memory current = _rounds[roundId];
        if (kind == _ADVERTISE) {
            _checkTakesUpdates(roundId, current);
            _record(roundId, current, _ADVERTISER, party, codec, digest, 0, bytes32(0), 0);
        } else if (kind == _REVEAL) {
            _checkOpen(roundId, current.state);
            if (block.timestamp <= current.deadline) revert FederationRevealBeforeDeadline(roundId, current.deadline);
            if (!_hasSubmitted(roundId, current.submitted, _members[party])) {
                revert FederationNotASubmitter(roundId, party);
            }
        } else {
            revert FederationUnknownMessageKind(kind);
        }
        _checkCodec(codec);
        emit RoundMessagePosted(roundId, party, kind, codec, digest);
    }

    /// @dev Whether relayed item `item` carries an unexpired signature by its participant; if not,
    /// it is rejected (see {_reject}).
    function _checkSignature(uint256 roundId, uint256 item, SignedUpdate calldata u) private returns (bool) {
        if (block.timestamp > u.deadline) {
            return _reject(roundId, item, u.participant, abi.encodeWithSelector(FederationSignatureExpired.selector, u.deadline));
        }
        bytes32 digest = _hashTypedDataV4(
            keccak256(
                abi.encode(
                    UPDATE_TYPEHASH,
                    u.participant,
                    roundId,
                    u.codec,
                    u.digest,
                    u.samples,
                    u.metricsHash,
                    u.epsilon,
                    u.deadline
                )
            )
        );
        (address signer, ECDSA.RecoverError recoverError,) = ECDSA.tryRecover(digest, u.signature);
        if (recoverError != ECDSA.RecoverError.NoError || signer != u.participant) {
            return _reject(roundId, item, u.participant, abi.encodeWithSelector(FederationInvalidSignature.selector, u.participant));
        }
        return true;
    }

    /**
     * @dev Checks and records `party`'s update to the open round `current` (its bit in memory or
     * in an overflow word, the party's ε in storage) and emits {UpdateSubmitted}; the one set of
     * rules for direct and relayed submissions. A submission that breaks a rule changes nothing
     * and is rejected (see {_reject}): `item` is its index in a relayed batch, or {_DIRECT}.
     * With `item` {_ADVERTISER} (an ADVERTISE message of `party`) only the membership rules of a
     * submission run, and nothing is recorded: one set of rules says who may take part in a round.
     */
    function _record(
        uint256 roundId,
        Round memory current,
        uint256 item,
        address party,
        uint8 codec,
        bytes32 digest,
        uint64 samples,
        bytes32 metricsHash,
        uint64 epsilon
    ) private returns (bool) {
        Member memory member = _members[party];
        if (member.status != ParticipantStatus.Admitted) {
            return _reject(roundId, item, party, abi.encodeWithSelector(FederationNotParticipant.selector, party, member.status));
        }
        if (member.acceptedVersion != current.agreementVersion) {
            return _reject(roundId, item, party, abi.encodeWithSelector(
                FederationAgreementNotAccepted.selector, party, member.acceptedVersion, current.agreementVersion
            ));
        }
        if (item == _ADVERTISER) return true; // an advertiser may take part; it records nothing
        if (codec != _RAW && codec != _DAG_PB) {
            return _reject(roundId, item, party, abi.encodeWithSelector(FederationInvalidCid.selector, codec));
        }
        if (epsilon < member.epsilonSpent) {
            return _reject(roundId, item, party, abi.encodeWithSelector(
                FederationPrivacyLossDecreased.selector, party, epsilon, member.epsilonSpent
            ));
        }
        if (member.epsilonBudget != 0 && epsilon > member.epsilonBudget) {
            return _reject(roundId, item, party, abi.encodeWithSelector(
                FederationPrivacyBudgetExceeded.selector, party, epsilon, member.epsilonBudget
            ));
        }

        uint256 index = member.index;
        if (index < INLINE_BITS) {
            uint120 bit = uint120(1 << index);
            if (current.submitted & bit != 0) {
                return _reject(roundId, item, party, abi.encodeWithSelector(FederationAlreadySubmitted.selector, roundId, party));
            }
            current.submitted |= bit;
        } else {
            if (!_setOverflowBit(roundId, index - INLINE_BITS)) {
                return _reject(roundId, item, party, abi.encodeWithSelector(FederationAlreadySubmitted.selector, roundId, party));
            }
            ++current.overflowSubmissions;
        }
        emit UpdateSubmitted(roundId, party, codec, digest, samples, metricsHash);
        if (epsilon != member.epsilonSpent) {
            _members[party].epsilonSpent = epsilon;
            emit PrivacyLossDeclared(roundId, party, epsilon);
        }
        return true;
    }

    /// @dev Whether the party of slot `member` submitted to round `roundId`, whose inline bits are `inlineBits`.
    function _hasSubmitted(uint256 roundId, uint120 inlineBits, Member memory member) private view returns (bool) {
        if (!member.hasIndex) return false;
        uint256 index = member.index;
        if (index < INLINE_BITS) return (inlineBits >> index) & 1 == 1;
        index -= INLINE_BITS;
        return (_overflowBits[roundId][index >> 8] >> (index & 0xff)) & 1 == 1;
    }

    /// @dev Sets bit `index` of round `roundId`'s overflow words; false (and nothing set) when it was set.
    function _setOverflowBit(uint256 roundId, uint256 index) private returns (bool) {
        mapping(uint256 word => uint256 bits) storage words = _overflowBits[roundId];
        uint256 bits = words[index >> 8];
        uint256 bit = 1 << (index & 0xff);
        if (bits & bit != 0) return false;
        words[index >> 8] = bits | bit;
        return true;
    }

    /// @dev A submission broke the rule whose ABI-encoded custom error is `failure`: a direct one (or
    /// an advertisement) reverts with it; relayed item `item` is skipped with an {UpdateRejected} event (returns false).
    function _reject(uint256 roundId, uint256 item, address party, bytes memory failure) private returns (bool) {
        if (item >= _ADVERTISER) { // _DIRECT or _ADVERTISER
            assembly ("memory-safe") {
                revert(add(failure, 0x20), mload(failure))
            }
        }
        emit UpdateRejected(roundId, item, party, failure);
        return false;
    }

    /// @dev Writes back the fields of the round's slot that {_record} changed in memory (a direct
    /// submission changes one of them: the inline bits, or the overflow count).
    function _storeRound(uint256 roundId, Round memory current, uint120 bitsBefore, uint24 overflowBefore) private {
        Round storage r = _rounds[roundId];
        if (current.submitted != bitsBefore) r.submitted = current.submitted;
        if (current.overflowSubmissions != overflowBefore) r.overflowSubmissions = current.overflowSubmissions;
    }

    /// @dev How many updates round `r` holds: its inline bits plus its overflow count.
    function _submissions(Round storage r) private view returns (uint256) {
        return _popcount(r.submitted) + r.overflowSubmissions;
    }

    function _popcount(uint256 x) private pure returns (uint256) {
        unchecked {
            x = x - ((x >> 1) & 0x5555555555555555555555555555555555555555555555555555555555555555);
            x = (x & 0x3333333333333333333333333333333333333333333333333333333333333333)
                + ((x >> 2) & 0x3333333333333333333333333333333333333333333333333333333333333333);
            x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f;
            x = (x + (x >> 8)) & 0x00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff00ff;
            return (x * 0x0001000100010001000100010001000100010001000100010001000100010001) >> 240;
        }
    }
}
