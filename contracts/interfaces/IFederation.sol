// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @dev The surface of {Federation}: a governance ledger for federated learning.
 *
 * A CID travels as a codec byte (raw 0x55 for one-chunk content, dag-pb 0x70 for larger
 * content) and the 32-byte sha2-256 digest; the binary CIDv1 is `0x01 codec 0x12 0x20 digest`.
 * What the contract does not check itself (update CIDs, sample counts, metrics hashes, model
 * CIDs) travels only in events.
 */
interface IFederation {
    /// @dev Membership status of an address. `None` means it never joined.
    enum ParticipantStatus {
        None,
        Pending,
        Admitted,
        Suspended,
        Revoked
    }

    /// @dev Life cycle of a round. `None` means no round has this id.
    enum RoundState {
        None,
        Open,
        Finalized,
        Cancelled
    }

    /**
     * @dev One relayed submission: the fields of {submitUpdate} for `participant`, the last
     * second its `signature` may be used (`deadline`), and its EIP-712 signature over
     * `Update(participant, roundId, codec, digest, samples, metricsHash, epsilon, deadline)`.
     */
    struct SignedUpdate {
        address participant;
        uint8 codec;
        bytes32 digest;
        uint64 samples;
        bytes32 metricsHash;
        uint64 epsilon;
        uint256 deadline;
        bytes signature;
    }

    // ---------------------------------------------------------------- errors

    /// @dev No agreement has been published yet, so nobody can join.
    error FederationNoAgreement();

    /// @dev A signature or call names agreement `version` while `current` is in force.
    error FederationStaleAgreement(uint256 version, uint256 current);

    /// @dev A signature's `deadline` (a join, a relayed update, round message or encryption key) is in the past.
    error FederationSignatureExpired(uint256 deadline);

    /// @dev A signature (a join, a relayed update, round message or encryption key) was not made by
    /// `participant` over this contract, chain and what it signs.
    error FederationInvalidSignature(address participant);

    /// @dev `account` already accepted agreement `version`.
    error FederationAlreadyAccepted(address account, uint256 version);

    /// @dev A governance action expected another membership status of `account` than `status`.
    error FederationUnexpectedStatus(address account, ParticipantStatus status);

    /// @dev `account` may not submit: its membership status is `status`, not Admitted.
    error FederationNotParticipant(address account, ParticipantStatus status);

    /// @dev `account` accepted agreement `accepted` but `current` is in force.
    error FederationAgreementNotAccepted(address account, uint256 accepted, uint256 current);

    /// @dev A CID's codec byte is neither raw (0x55) nor dag-pb (0x70).
    error FederationInvalidCid(uint8 codec);

    /// @dev A round's submission `deadline` is not in the future at opening.
    error FederationInvalidDeadline(uint256 deadline);

    /// @dev A round's submission `deadline` is later than `latest` (opening time + MAX_ROUND_DURATION).
    error FederationDeadlineTooFar(uint256 deadline, uint256 latest);

    /// @dev A round must ask for at least one update.
    error FederationInvalidMinimum();

    /// @dev Aborting a round needs a reason for the record.
    error FederationReasonRequired();

    /// @dev No round has id `roundId`.
    error FederationUnknownRound(uint256 roundId);

    /// @dev Round `roundId` is no longer open (`state` is Finalized or Cancelled).
    error FederationRoundClosed(uint256 roundId, RoundState state);

    /// @dev Round `roundId` stopped taking submissions at `deadline`.
    error FederationDeadlinePassed(uint256 roundId, uint256 deadline);

    /// @dev `account` already submitted an update to round `roundId`.
    error FederationAlreadySubmitted(uint256 roundId, address account);

    /// @dev Round `roundId` holds `submissions` updates, fewer than its `minimum`, so it cannot be finalized.
    error FederationBelowMinimum(uint256 roundId, uint256 submissions, uint256 minimum);

    /// @dev Round `roundId` takes submissions until `deadline`, so it cannot be cancelled yet.
    error FederationRoundStillOpen(uint256 roundId, uint256 deadline);

    /// @dev Round `roundId` reached its minimum (`submissions` >= `minimum`): finalize it instead of cancelling.
    error FederationMinimumReached(uint256 roundId, uint256 submissions, uint256 minimum);

    /// @dev An agreement's privacy budget must be ε = δ = 0 (none) or ε > 0 with 0 < δ < 1.
    error FederationInvalidPrivacyBudget(uint256 epsilonBudget, uint256 delta);

    /// @dev `party` declared cumulative ε `declared`, past its agreement's budget `budget` (millionths).
    error FederationPrivacyBudgetExceeded(address party, uint256 declared, uint256 budget);

    /// @dev `party` declared cumulative ε `declared`, below the `recorded` figure it declared before (millionths).
    error FederationPrivacyLossDecreased(address party, uint256 declared, uint256 recorded);

    /// @dev An encryption public key may not be zero.
    error FederationInvalidEncryptionKey();

    /// @dev `account`'s signed encryption key replaces `expected`, but its registered key is `current`.
    error FederationEncryptionKeyChanged(address account, bytes32 expected, bytes32 current);

    /// @dev A relayed batch holds `size` items; it must hold 1 to `maximum`.
    error FederationInvalidBatchSize(uint256 size, uint256 maximum);

    /// @dev A round message's `kind` is neither advertise (1) nor reveal (2).
    error FederationUnknownMessageKind(uint8 kind);

    /// @dev Round `roundId` takes submissions until `deadline`: reveals are posted only after it.
    error FederationRevealBeforeDeadline(uint256 roundId, uint256 deadline);

    /// @dev `account` submitted no update to round `roundId`, so it may not post a reveal for it.
    error FederationNotASubmitter(uint256 roundId, address account);

    // ---------------------------------------------------------------- events

    /// @dev Agreement `version` was published; its terms document has CID (`termsCodec`, `termsDigest`);
    /// its privacy budget is (`epsilonBudget` millionths of ε, `delta` 1e-18 units), 0 and 0 for none.
    event AgreementPublished(
        uint256 indexed version, uint8 termsCodec, bytes32 termsDigest, uint64 epsilonBudget, uint64 delta
    );

    /// @dev `participant` accepted agreement `version` with `signature` (valid until `deadline`), sent by `relayer`.
    event ParticipantJoined(
        address indexed participant, uint256 indexed version, uint256 deadline, address relayer, bytes signature
    );

    /// @dev `participant` was admitted by `sender`; `index` is its bit position in every round's submission bitmap.
    event ParticipantAdmitted(address indexed participant, address indexed sender, uint256 index);

    /// @dev `participant` was suspended by `sender`.
    event ParticipantSuspended(address indexed participant, address indexed sender);

    /// @dev `participant` was reinstated by `sender`.
    event ParticipantReinstated(address indexed participant, address indexed sender);

    /// @dev `participant` was revoked for good by `sender`.
    event ParticipantRevoked(address indexed participant, address indexed sender);

    /// @dev Round `roundId` was opened on base model (`baseCodec`, `baseDigest`) under agreement `agreementVersion`.
    event RoundOpened(
        uint256 indexed roundId,
        uint8 baseCodec,
        bytes32 baseDigest,
        uint64 deadline,
        uint32 minUpdates,
        bytes32 configHash,
        uint256 agreementVersion
    );

    /// @dev `participant` submitted update (`codec`, `digest`) trained on `samples` samples to round `roundId`.
    event UpdateSubmitted(
        uint256 indexed roundId,
        address indexed participant,
        uint8 codec,
        bytes32 digest,
        uint64 samples,
        bytes32 metricsHash
    );

    /// @dev With its update to round `roundId`, `participant` declared a cumulative privacy loss of `epsilon`
    /// (millionths of ε, over every round it took part in), above its previous declaration. A submission
    /// that declares the same figure emits no such event: the party's loss stands at its last one.
    event PrivacyLossDeclared(uint256 indexed roundId, address indexed participant, uint64 epsilon);

    /// @dev Item `item` of a relayed batch to round `roundId`, signed for `participant`, was not recorded:
    /// `reason` is the ABI-encoded custom error of the rule it broke.
    event UpdateRejected(uint256 indexed roundId, uint256 item, address indexed participant, bytes reason);

    /// @dev `relayer` sent a batch to round `roundId`: `recorded` items recorded, `rejected` skipped.
    event UpdatesRelayed(uint256 indexed roundId, address indexed relayer, uint256 recorded, uint256 rejected);

    /// @dev `party` posted a message of `kind` (1 advertise, 2 reveal) for round `roundId`: the CID (`codec`,
    /// `digest`) of a document held off chain. Readers keep the first message per (party, kind) of a round.
    event RoundMessagePosted(
        uint256 indexed roundId, address indexed party, uint8 indexed kind, uint8 codec, bytes32 digest
    );

    /// @dev `account` registered encryption public key `publicKey` (X25519, for HPKE).
    event EncryptionKeyPublished(address indexed account, bytes32 publicKey);

    /// @dev Round `roundId` was finalized with a global model and a receipt, from `submissions` updates.
    event RoundFinalized(
        uint256 indexed roundId,
        uint8 globalCodec,
        bytes32 globalDigest,
        uint8 receiptCodec,
        bytes32 receiptDigest,
        uint256 submissions
    );

    /// @dev Round `roundId` was cancelled by `sender` with `submissions` updates.
    event RoundCancelled(uint256 indexed roundId, address indexed sender, uint256 submissions);

    /// @dev Governance (`sender`) aborted open round `roundId`, holding `submissions` updates, for `reason`.
    event RoundAborted(uint256 indexed roundId, address indexed sender, uint256 submissions, string reason);

    // ---------------------------------------------------------------- agreements and membership

    /// @dev Publishes the next agreement version. Only the admin.
    function publishAgreement(uint8 termsCodec, bytes32 termsDigest, uint64 epsilonBudget, uint64 delta)
        external
        returns (uint256 version);

    /// @dev Records that `account` accepted agreement `version`, by its EIP-712 `signature`. Anyone may relay.
    function join(address account, uint256 version, uint256 deadline, bytes calldata signature) external;

    function approve(address account) external;

    function suspend(address account) external;

    function reinstate(address account) external;

    function revoke(address account) external;

    function agreementVersion() external view returns (uint256);

    function agreement(uint256 version)
        external
        view
        returns (uint8 termsCodec, bytes32 termsDigest, uint64 epsilonBudget, uint64 delta);

    function participant(address account)
        external
        view
        returns (ParticipantStatus status, uint256 acceptedVersion, uint256 index, bool hasIndex);

    function participantCount() external view returns (uint256);

    function privacy(address account) external view returns (uint64 epsilonSpent, uint64 epsilonBudget);

    /// @dev Registers the caller's X25519 encryption public key (the chain is the key directory).
    function publishEncryptionKey(bytes32 publicKey) external;

    /// @dev {publishEncryptionKey} for `account`, from any sender: its EIP-712 `EncryptionKey(participant =
    /// account, publicKey, previousKey, deadline)` signature, valid until `deadline` while `account`'s
    /// registered key is `previousKey` (zero: none), then the same rule.
    function publishSignedEncryptionKey(
        address account,
        bytes32 publicKey,
        bytes32 previousKey,
        uint256 deadline,
        bytes calldata signature
    ) external;

    function encryptionKey(address account) external view returns (bytes32);

    // ---------------------------------------------------------------- rounds

    function openRound(uint8 baseCodec, bytes32 baseDigest, uint64 deadline, uint32 minUpdates, bytes32 configHash)
        external
        returns (uint256 roundId);

    function submitUpdate(
        uint256 roundId,
        uint8 codec,
        bytes32 digest,
        uint64 samples,
        bytes32 metricsHash,
        uint64 epsilon
    ) external;

    /// @dev Records parties' signed updates to round `roundId`, skipping (and naming) those that break a rule.
    function submitUpdates(uint256 roundId, SignedUpdate[] calldata updates) external returns (uint256 recorded);

    /// @dev Posts the caller's secure-aggregation message of `kind` for round `roundId` (the CID of an
    /// off-chain document): advertise (1) while the round takes updates, reveal (2) after its deadline.
    function postRoundMessage(uint256 roundId, uint8 kind, uint8 codec, bytes32 digest) external;

    /// @dev {postRoundMessage} for `account`, from any sender: its EIP-712 `RoundMessage(participant = account,
    /// roundId, kind, codec, digest, deadline)` signature, valid until `deadline`, then the same rules.
    function postSignedRoundMessage(
        address account,
        uint256 roundId,
        uint8 kind,
        uint8 codec,
        bytes32 digest,
        uint256 deadline,
        bytes calldata signature
    ) external;

    function finalizeRound(
        uint256 roundId,
        uint8 globalCodec,
        bytes32 globalDigest,
        uint8 receiptCodec,
        bytes32 receiptDigest
    ) external;

    function cancelRound(uint256 roundId) external;

    /// @dev Governance closes an open round at once, with a reason. Only the admin.
    function abortRound(uint256 roundId, string calldata reason) external;

    function openRounds() external view returns (uint256[] memory);

    function roundCount() external view returns (uint256);

    function round(uint256 roundId)
        external
        view
        returns (RoundState state, uint64 deadline, uint32 minUpdates, uint256 submissions);

    function hasSubmitted(uint256 roundId, address account) external view returns (bool);
}
