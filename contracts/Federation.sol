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
 * Storage holds only what the contract checks itself: the terms of each agreement version
 * (a join signature is checked against them), one packed slot per participant (status,
 * accepted version, bit index), one packed slot per round (state, deadline, minimum, the
 * agreement version in force, and the "has submitted" bits of the first {INLINE_BITS}
 * admitted participants) plus one bitmap word per 256 further admitted participants, and the
 * set of open rounds. Update CIDs, sample counts and metrics hashes travel in events only. A
 * submission so reads two cold slots (its round, its sender) and writes one bit into a slot it
 * already read.
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

    /// @dev Participants whose "has submitted" bit lives in the round's own slot.
    uint256 public constant INLINE_BITS = 120;

    /// @dev The latest deadline a round may have, counted from its opening: a round always ends.
    uint256 public constant MAX_ROUND_DURATION = 30 days;

    uint8 private constant _RAW = 0x55;
    uint8 private constant _DAG_PB = 0x70;

    struct Terms {
        bytes32 digest;
        uint8 codec;
    }

    /// @dev One slot: read once per submission. `hasIndex` is set at the first admission.
    struct Member {
        ParticipantStatus status;
        uint32 acceptedVersion;
        uint32 index;
        bool hasIndex;
    }

    /**
     * @dev One slot: read and written once per submission (8 + 64 + 32 + 32 + 120 bits).
     * `agreementVersion` is the version in force while the round is open: set at opening and
     * moved forward by {publishAgreement}, so a submission need not read the global version.
     */
    struct Round {
        RoundState state;
        uint64 deadline;
        uint32 minUpdates;
        uint32 agreementVersion;
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
     * @dev Publishes agreement version `agreementVersion() + 1` with the terms document's CID.
     * Every party must join again under the new version before it can submit, in open rounds
     * too: each open round's copy of the version in force moves forward (a loop over the rounds
     * still open, never over closed ones; every round ends within {MAX_ROUND_DURATION}).
     *
     * Requirements: caller has `DEFAULT_ADMIN_ROLE`; `termsCodec` is raw or dag-pb.
     *
     * Emits an {AgreementPublished} event.
     */
    function publishAgreement(uint8 termsCodec, bytes32 termsDigest)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint256 version)
    {
        _checkCodec(termsCodec);
        uint32 next = ++_agreementVersion;
        version = next;
        _terms[version] = Terms({digest: termsDigest, codec: termsCodec});
        uint256 open = _openRounds.length;
        for (uint256 i = 0; i < open; ++i) {
            _rounds[_openRounds[i]].agreementVersion = next;
        }
        emit AgreementPublished(version, termsCodec, termsDigest);
    }

    /**
     * @dev Records that `account` accepted agreement `version`. The EIP-712 `signature` over
     * `Join(participant = account, version, termsCodec, termsDigest, deadline)` binds this chain and this
     * contract; anyone may relay it. A first join makes the party Pending; a later one (for a
     * new version) keeps its status.
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
        if (block.timestamp > deadline) revert FederationSignatureExpired(deadline);
        Terms storage terms = _terms[version];
        bytes32 digest = _hashTypedDataV4(
            keccak256(abi.encode(JOIN_TYPEHASH, account, version, terms.codec, terms.digest, deadline))
        );
        (address signer, ECDSA.RecoverError recoverError,) = ECDSA.tryRecover(digest, signature);
        if (recoverError != ECDSA.RecoverError.NoError || signer != account) {
            revert FederationInvalidSignature(account);
        }

        Member storage member = _members[account];
        if (member.status == ParticipantStatus.Revoked) {
            revert FederationUnexpectedStatus(account, ParticipantStatus.Revoked);
        }
        if (member.acceptedVersion == version) revert FederationAlreadyAccepted(account, version);
        if (member.status == ParticipantStatus.None) member.status = ParticipantStatus.Pending;
        member.acceptedVersion = uint32(version);
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

    /// @dev The terms CID of agreement `version` (codec 0 when no such version).
    function agreement(uint256 version) external view returns (uint8 termsCodec, bytes32 termsDigest) {
        Terms storage terms = _terms[version];
        return (terms.codec, terms.digest);
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
            deadline: deadline,
            minUpdates: minUpdates,
            agreementVersion: version,
            submitted: 0
        });
        emit RoundOpened(roundId, baseCodec, baseDigest, deadline, minUpdates, configHash, version);
    }

    /**
     * @dev Records the caller's update to round `roundId`: sets its bit and emits the CID,
     * sample count and metrics hash.
     *
     * Requirements: the round is open and its deadline has not passed; the caller is Admitted
     * and accepted the current agreement; `codec` is raw or dag-pb; the caller has not
     * submitted to this round yet.
     *
     * Emits an {UpdateSubmitted} event.
     */
    function submitUpdate(uint256 roundId, uint8 codec, bytes32 digest, uint64 samples, bytes32 metricsHash)
        external
    {
        Round storage r = _rounds[roundId];
        Round memory current = r;
        _checkOpen(roundId, current.state);
        if (block.timestamp > current.deadline) revert FederationDeadlinePassed(roundId, current.deadline);

        Member memory member = _members[msg.sender];
        if (member.status != ParticipantStatus.Admitted) revert FederationNotParticipant(msg.sender, member.status);
        if (member.acceptedVersion != current.agreementVersion) {
            revert FederationAgreementNotAccepted(msg.sender, member.acceptedVersion, current.agreementVersion);
        }
        _checkCodec(codec);

        uint256 index = member.index;
        if (index < INLINE_BITS) {
            uint120 bit = uint120(1 << index);
            if (current.submitted & bit != 0) revert FederationAlreadySubmitted(roundId, msg.sender);
            r.submitted = current.submitted | bit;
        } else {
            index -= INLINE_BITS;
            mapping(uint256 word => uint256 bits) storage words = _overflowBits[roundId];
            uint256 bits = words[index >> 8];
            uint256 bit = 1 << (index & 0xff);
            if (bits & bit != 0) revert FederationAlreadySubmitted(roundId, msg.sender);
            words[index >> 8] = bits | bit;
        }
        emit UpdateSubmitted(roundId, msg.sender, codec, digest, samples, metricsHash);
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
        uint256 submissions = _submissions(roundId, r.submitted);
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
        uint256 submissions = _submissions(roundId, r.submitted);
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
        emit RoundAborted(roundId, msg.sender, _submissions(roundId, r.submitted), reason);
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
        return (r.state, r.deadline, r.minUpdates, _submissions(roundId, r.submitted));
    }

    /// @dev Whether `account` submitted an update to round `roundId`.
    function hasSubmitted(uint256 roundId, address account) external view returns (bool) {
        Member storage member = _members[account];
        if (!member.hasIndex) return false;
        uint256 index = member.index;
        if (index < INLINE_BITS) return (_rounds[roundId].submitted >> index) & 1 == 1;
        index -= INLINE_BITS;
        return (_overflowBits[roundId][index >> 8] >> (index & 0xff)) & 1 == 1;
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

    /// @dev Popcount over the round's inline bits and its overflow words (admitted parties only).
    function _submissions(uint256 roundId, uint120 inlineBits) private view returns (uint256 count) {
        count = _popcount(inlineBits);
        uint256 participants = _indexedCount;
        if (participants > INLINE_BITS) {
            uint256 words = (participants - INLINE_BITS + 255) >> 8;
            mapping(uint256 word => uint256 bits) storage overflow = _overflowBits[roundId];
            for (uint256 w = 0; w < words; ++w) {
                count += _popcount(overflow[w]);
            }
        }
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
