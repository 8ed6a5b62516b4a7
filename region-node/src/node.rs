//! [`RegionNode`]: one member of a region's raft group, sans-IO.
//!
//! Method groups follow the sans-IO habit: getters; `handle_*` for inputs (a proposal, a raft
//! message, a tick, a round of raft work); commands (`transfer_leader`, membership changes);
//! [`RegionNode::poll_output`] for outputs (replies to proposers, records applied for local
//! subscribers, messages to the coordinator), which drivers drain in one `match`. Raft
//! messages to send and writes to persist leave through the [`ReadyIo`] given to
//! [`RegionNode::handle_ready`], the one path both drivers call.
//!
//! The global tier (docs/design.md section 2) adds inputs from the coordinator
//! ([`RegionNode::handle_sealed_epoch`], [`RegionNode::handle_batch_ack`]) and an output
//! queue of messages to it ([`RegionOutput::ToCoordinator`]); the driver decides where
//! the coordinator leader is. A global call is answered only when its sealed copy is applied
//! here, with the position of that copy; until then retries wait for it.
//!
//! Checkpoint uploads ([`RegionNode::handle_upload_checkpoint`]) are proposed into raft as
//! commands that take no log position, from any member, and answered through
//! [`RegionOutput::CheckpointReply`] once applied here; a hash mismatch also comes out of
//! [`RegionOutput::DivergenceAlarm`] on every member. Barriers
//! ([`RegionNode::handle_sync`]) are answered through [`RegionOutput::SyncReply`] once this
//! node has applied through the region's commit point as the leader confirmed it (raft's
//! ReadIndex) and, with a global tier, through the newest sealed epoch the coordinator leader
//! confirmed: the node asks for that through [`RegionOutput::SealedEpochRead`] and the
//! driver hands the answer to [`RegionNode::handle_sealed_epoch_read`].
//!
//! A proposal waits in a bounded queue until the next `handle_ready`, which proposes the queue
//! as few raft entries as the batch bounds allow: under load one round carries many records
//! and one sync. A follower proposes into raft too (raft forwards the entry to the leader) and
//! answers its caller when it applies the record itself. A proposal is answered once, when its
//! record is applied (committed on a majority, so durable), with its position; or with an
//! error when the node cannot take it, raft drops it, or it waited too long.

use std::collections::{BTreeMap, VecDeque};

use dsss_raft_group::raft::eraftpb::{ConfChange, ConfChangeType, Message, MessageType};
use dsss_raft_group::{
    Applied, DecodeError, DurableStore, OpenError, ProposeError as GroupProposeError, RaftGroup,
    RaftGroupConfig, ReadyError, ReadyIo, Role, SnapshotError, StepError, StoreError,
    decode_message,
};
pub use dsss_raft_group::{ClockSample, ClockVerdict};
use dsss_wire::{
    ClientId, ClockSkewError, HybridLogicalClock, RegionId, RequestSequence, Scope, Timestamp,
    proto,
};

use crate::checkpoint::{
    CHECKPOINT_STATE_BYTES_MAX, CheckpointOutcome, CheckpointRefusal, CheckpointUpload,
    DivergenceAlarm, encode_checkpoint_entry,
};

use crate::dedup::{DedupVerdict, SessionRefusal};
use crate::global::adoption::{
    AdoptionCounters, Adoptions, CheckpointRead, check_checkpoint_reply, checkpoint_read_reply,
    encode_adoption_entry, serve_checkpoint_read,
};
use crate::global::catch_up::{EpochEndIndex, EpochsUnavailable, HeldEpochEnd, read_epochs};
use crate::global::entry::{EpochPart, encode_close_batch, encode_epoch_part};
use crate::global::shipping::{ResendBounds, Shipping};
use crate::global::skip::{EpochsSkip, encode_skip_entry};
use crate::global::state::OutgoingBatch;
use crate::record::{
    BATCH_BYTES_MAX, BATCH_RECORDS_MAX, LogEntry, ProposeRequest, encode_batch, encode_record,
};
use crate::region_log::{
    EntryOutcome, RecordOutcome, RegionLog, RegionLogRetention, encode_session_close,
    encode_session_open,
};
use crate::snapshot_catch_up::{
    CatchUpCounters, LogRangeFetch, LogRangeReply, LogRangeRequest, PieceOutcome, SnapshotCatchUp,
    answer_log_range,
};

/// The most proposals waiting for the next round; beyond, proposals are refused with
/// [`ProposeError::Overloaded`].
pub const PROPOSALS_PENDING_MAX: usize = 4_096;

/// The most proposals waiting for their record to be applied.
pub const WAITERS_MAX: usize = 16_384;

/// The most replies kept until the driver polls them; beyond, the oldest is dropped (its
/// caller times out and retries).
pub const REPLIES_PENDING_MAX: usize = WAITERS_MAX + PROPOSALS_PENDING_MAX;

/// The most log events kept until the driver polls them; beyond, the oldest is dropped and
/// counted (subscribers then read the log itself).
pub const LOG_EVENTS_PENDING_MAX: usize = 65_536;

/// The most raft rounds one [`RegionNode::handle_ready`] call runs.
pub const READY_ROUNDS_PER_CALL_MAX: usize = 8;

/// The longest a proposal may wait, in ticks.
pub const PROPOSAL_TIMEOUT_TICKS_MAX: u64 = 100_000;

/// The ticks between a region leader's heartbeats, against raft's default election timeout of
/// 10 to 20 ticks: a follower hears at least two heartbeats before its shortest timeout, so
/// one lost heartbeat starts no election. Heartbeats are what an idle region sends, and each
/// wakes every member twice (the heartbeat and its answer), so they come no more often than
/// that. Failure detection does not change with them: a follower campaigns after the same
/// election timeout (200 to 400 ms with the production 20 ms tick).
pub const REGION_HEARTBEAT_TICKS: usize = 4;

/// The most messages to the coordinator kept until the driver polls them; beyond, the oldest
/// is dropped and counted (batches are resent, epoch acknowledgements are asked again).
pub const TO_COORDINATOR_PENDING_MAX: usize = 1_024;

/// The most barriers ([`RegionNode::handle_sync`]) waiting on one node; beyond, a barrier is
/// refused with [`SyncError::Overloaded`].
pub const SYNCS_IN_FLIGHT_MAX: usize = 1_024;

/// The most checkpoint uploads waiting to be applied on one node; beyond, an upload is refused
/// with [`UploadError::Overloaded`].
pub const CHECKPOINT_UPLOADS_IN_FLIGHT_MAX: usize = 64;

/// The most session opens waiting to be applied on one node; beyond, an open is refused with
/// [`OpenSessionError::Overloaded`].
pub const SESSION_OPENS_IN_FLIGHT_MAX: usize = 1_024;

/// The most session closes waiting to be applied on one node; beyond, a close is refused with
/// [`CloseSessionError::Overloaded`].
pub const SESSION_CLOSES_IN_FLIGHT_MAX: usize = 1_024;

/// The most sealed epoch reads waiting for the driver; beyond, the oldest is dropped (its
/// barriers time out and are asked again).
pub const SEALED_EPOCH_READS_PENDING_MAX: usize = 64;

/// The most divergence alarms kept until the driver polls them; beyond, the oldest is dropped
/// (the alarms stay in the replicated state and in the status).
pub const DIVERGENCE_ALARMS_PENDING_MAX: usize = 64;

/// The shortest and longest epoch and resend intervals a node accepts, in microseconds.
pub const GLOBAL_INTERVAL_US_MIN: u64 = 1_000;

/// See [`GLOBAL_INTERVAL_US_MIN`].
pub const GLOBAL_INTERVAL_US_MAX: u64 = 600_000_000;

/// The settings of one region node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionNodeConfig {
    /// The raft group member: node id, initial members, ticks, seed, raft log retention.
    pub group: RaftGroupConfig,
    /// The region this node serves; it becomes the origin of the records it stamps.
    pub region: RegionId,
    /// How large the region log may grow above its truncation point before this node refuses
    /// new proposals with [`ProposeError::LogFull`]. A guard only: truncation follows the
    /// agreed checkpoints ([`crate::checkpoint`]) and never drops an entry for size.
    pub log_retention: RegionLogRetention,
    /// The clock skew the node's hybrid logical clock tolerates.
    pub max_clock_skew_us: u64,
    /// How many ticks a proposal may wait for its record before it is answered
    /// [`ProposeError::Dropped`]; barriers and checkpoint uploads wait as long.
    pub proposal_timeout_ticks: u64,
    /// How often the leader closes the open batch of global records (the topology's epoch
    /// length).
    pub epoch_interval_us: u64,
    /// How long the leader waits, after the coordinator's acknowledgements last moved, before
    /// it resends the batches the coordinator has not acknowledged; doubled after each resend
    /// they did not follow (see [`crate::global::Shipping::due`]).
    pub batch_resend_interval_us: u64,
    /// How long the leader waits at most before it resends unacknowledged batches, however
    /// many resends brought nothing: within the coordinator's suspicion timeout (drivers use
    /// at most half of it), so that a region whose batch was lost is heard again before it is
    /// suspected. At least `batch_resend_interval_us`.
    pub batch_resend_interval_max_us: u64,
    /// How often the leader shows the coordinator that it is alive while the region is idle
    /// (nothing to ship and the coordinator not asking for closes, docs/global-protocol.md
    /// section 3): a liveness ask, or a close while it cannot ask yet. Well within the
    /// coordinator's suspicion timeout (drivers use a quarter of it).
    pub idle_close_interval_us: u64,
    /// Whether the region takes part in a global tier. Without one (a deployment of one
    /// region) the leader closes no batches, so the raft log carries only the region's own
    /// records, and a global call is refused with [`ProposeError::NoGlobalTier`] instead of
    /// waiting for an epoch that never comes.
    pub global_tier: bool,
    /// The other regions of the global tier, which the leader asks in turn for the sealed
    /// epochs the coordinator released before this region appended them
    /// (docs/global-protocol.md section 7). Empty: such a region cannot catch up.
    pub catch_up_regions: Vec<RegionId>,
}

/// The clock skew a node tolerates unless its topology says otherwise, in microseconds.
pub const MAX_CLOCK_SKEW_US_DEFAULT: u64 = 500_000;

impl RegionNodeConfig {
    /// The default settings for node `node_id` of `region`, whose initial members are
    /// `initial_members` (empty for a node that joins an existing region).
    pub fn new(node_id: u64, initial_members: Vec<u64>, region: RegionId) -> Self {
        let mut group = RaftGroupConfig::new(node_id, initial_members);
        group.heartbeat_tick = REGION_HEARTBEAT_TICKS;
        RegionNodeConfig {
            group,
            region,
            log_retention: RegionLogRetention::default(),
            max_clock_skew_us: MAX_CLOCK_SKEW_US_DEFAULT,
            proposal_timeout_ticks: 100,
            epoch_interval_us: 50_000,
            batch_resend_interval_us: 500_000,
            batch_resend_interval_max_us: 2_000_000,
            idle_close_interval_us: 500_000,
            global_tier: true,
            catch_up_regions: Vec::new(),
        }
    }

    /// Checks every setting, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        self.group.validate().map_err(|error| error.to_string())?;
        self.log_retention.validate()?;
        if self.proposal_timeout_ticks == 0
            || self.proposal_timeout_ticks > PROPOSAL_TIMEOUT_TICKS_MAX
        {
            return Err(format!(
                "proposal_timeout_ticks {} is outside 1..={PROPOSAL_TIMEOUT_TICKS_MAX}",
                self.proposal_timeout_ticks
            ));
        }
        for (name, value) in [
            ("epoch_interval_us", self.epoch_interval_us),
            ("batch_resend_interval_us", self.batch_resend_interval_us),
            (
                "batch_resend_interval_max_us",
                self.batch_resend_interval_max_us,
            ),
            ("idle_close_interval_us", self.idle_close_interval_us),
        ] {
            if !(GLOBAL_INTERVAL_US_MIN..=GLOBAL_INTERVAL_US_MAX).contains(&value) {
                return Err(format!(
                    "{name} {value} is outside \
                     {GLOBAL_INTERVAL_US_MIN}..={GLOBAL_INTERVAL_US_MAX}"
                ));
            }
        }
        if self.batch_resend_interval_max_us < self.batch_resend_interval_us {
            return Err(format!(
                "batch_resend_interval_max_us {} is below batch_resend_interval_us {}",
                self.batch_resend_interval_max_us, self.batch_resend_interval_us
            ));
        }
        if self.catch_up_regions.contains(&self.region) {
            return Err(format!(
                "catch_up_regions names the node's own region {}",
                self.region
            ));
        }
        if self.catch_up_regions.len() > crate::global::MEMBER_REGIONS_MAX {
            return Err(format!(
                "catch_up_regions names {} regions, more than the maximum of {}",
                self.catch_up_regions.len(),
                crate::global::MEMBER_REGIONS_MAX
            ));
        }
        Ok(())
    }
}

/// Why a proposal was not ordered. The caller may retry with the SAME sequence: a retry of a
/// call that was in fact applied gets its first position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader is known; `leader_hint` names the last one known, if any.
    #[error("not the leader and no leader known{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// Too many proposals are waiting; retry later.
    #[error("overloaded: too many proposals waiting")]
    Overloaded,
    /// The region holds as many unsealed global records or outgoing batches as its bounds
    /// allow (the coordinator is slow or unreachable); retry later.
    #[error("overloaded: {bound}")]
    GlobalOverloaded {
        /// The bound that is reached, named.
        bound: String,
    },
    /// The region runs no global tier (a deployment of one region), so a global call can
    /// never be sealed; call a regional object, or deploy a coordinator.
    #[error("this region runs no global tier: a global call can never be sealed here")]
    NoGlobalTier,
    /// The proposal was lost (raft dropped it, or it waited longer than the timeout); it may
    /// or may not be applied later, so retry with the same sequence.
    #[error("dropped before it was ordered; retry with the same sequence")]
    Dropped,
    /// The region log holds as much above its truncation point as it may, or tracks as many
    /// objects lacking an agreed checkpoint as it may; `reason` names the bound and those
    /// objects. Nothing was proposed; retry once their replicas have uploaded checkpoints.
    #[error("the region log is full: {reason}")]
    LogFull {
        /// Which bound is reached, and the objects that hold truncation back.
        reason: String,
    },
    /// The call's session is not open in the region: it was never opened, or it ended after
    /// [`crate::SESSION_IDLE_TIMEOUT_US`] without calls. The call may have been applied while
    /// the session lived, so it is not applied now; the client opens a new session for new
    /// calls.
    #[error(
        "client session {session_id} is not open in this region (never opened, or it ended \
         after {idle_timeout_s} s without calls); open a new session"
    )]
    UnknownSession {
        /// The session.
        session_id: u64,
        /// The idle timeout, in seconds.
        idle_timeout_s: u64,
    },
    /// The sequence is below the client's dedup window: the region can no longer tell
    /// whether it was applied, so it refuses it.
    #[error(
        "request sequence is too old: the region only judges sequences from {floor} on for \
         this client"
    )]
    TooOld {
        /// The lowest sequence the region still judges.
        floor: u64,
    },
    /// This node's clock is beyond the tolerated skew from a majority of its region, so it
    /// stamps no record (see [`RegionNode::handle_clock_verdict`]); another member takes the
    /// call.
    #[error("{0}")]
    ClockFenced(ClockFence),
}

/// Why a node whose clock is off refuses to stamp: how far off it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ClockFence {
    /// This node's offset from its region's clocks, in microseconds: positive when ahead; for
    /// a step, how far its clock jumped.
    pub offset_us: i64,
    /// The tolerated skew, in microseconds.
    pub max_skew_us: u64,
    /// The clock jumped against the node's monotonic clock, and no majority has vouched for
    /// it since (rather than being measured off by peers).
    pub stepped: bool,
}

impl std::fmt::Display for ClockFence {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = self.offset_us.unsigned_abs() / 1_000;
        let max_ms = self.max_skew_us / 1_000;
        if self.stepped {
            let way = if self.offset_us >= 0 {
                "forwards"
            } else {
                "backwards"
            };
            write!(
                formatter,
                "this node's clock stepped {ms} ms {way} and its peers have not confirmed it \
                 since (the topology's max_clock_skew_ms is {max_ms} ms), so it stamps no \
                 record until they do; call another member"
            )
        } else {
            let way = if self.offset_us >= 0 {
                "ahead"
            } else {
                "behind"
            };
            write!(
                formatter,
                "this node's clock is {ms} ms {way} of its region's (more than the {max_ms} ms \
                 the topology's max_clock_skew_ms allows), so it stamps no record until its \
                 clock is back within the bound; call another member"
            )
        }
    }
}

fn hint_text(hint: Option<u64>) -> String {
    hint.map(|leader| format!(" (try node {leader})"))
        .unwrap_or_default()
}

/// The answer to one proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The record is in the region log at `position` (durable on a majority).
    Proposed {
        /// The caller.
        client_id: ClientId,
        /// The call.
        request_sequence: RequestSequence,
        /// Its position.
        position: u64,
    },
    /// The proposal was not ordered.
    Refused {
        /// The caller.
        client_id: ClientId,
        /// The call.
        request_sequence: RequestSequence,
        /// Why.
        error: ProposeError,
    },
}

impl Reply {
    /// The caller and call this reply answers.
    pub fn key(&self) -> (ClientId, RequestSequence) {
        match self {
            Reply::Proposed {
                client_id,
                request_sequence,
                ..
            }
            | Reply::Refused {
                client_id,
                request_sequence,
                ..
            } => (*client_id, *request_sequence),
        }
    }
}

/// Why a barrier was not given.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    /// No leader is known (an election is under way); retry after a short wait.
    #[error("not the leader and no leader known{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// Too many barriers wait on this node ([`SYNCS_IN_FLIGHT_MAX`]).
    #[error("overloaded: {SYNCS_IN_FLIGHT_MAX} barriers wait on this node (SYNCS_IN_FLIGHT_MAX)")]
    Overloaded,
    /// The leader did not confirm the commit point, or the sealed epoch did not arrive, within
    /// the timeout; retry.
    #[error("the barrier was not confirmed within {timeout_ticks} ticks; retry")]
    TimedOut {
        /// The timeout.
        timeout_ticks: u64,
    },
    /// The coordinator could not confirm its newest sealed epoch.
    #[error("the coordinator did not confirm its newest sealed epoch: {reason}")]
    Coordinator {
        /// What the driver or the coordinator said.
        reason: String,
    },
}

/// The answer to one barrier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncReply {
    /// The barrier: a reader that applies through `apply_through_position` sees every call
    /// that completed before the barrier was asked for.
    Ready {
        /// The driver's id of the barrier.
        sync_id: u64,
        /// The position to apply through; this node has applied it.
        apply_through_position: u64,
        /// The newest sealed epoch the coordinator leader confirmed, 0 without a global tier.
        sealed_epoch_number: u64,
    },
    /// No barrier.
    Refused {
        /// The driver's id of the barrier.
        sync_id: u64,
        /// Why.
        error: SyncError,
    },
}

impl SyncReply {
    /// The driver's id of the barrier this answers.
    pub fn sync_id(&self) -> u64 {
        match self {
            SyncReply::Ready { sync_id, .. } | SyncReply::Refused { sync_id, .. } => *sync_id,
        }
    }
}

/// Why a checkpoint upload got no outcome.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// No leader is known; nothing was proposed.
    #[error("not the leader and no leader known{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// Too many uploads wait on this node ([`CHECKPOINT_UPLOADS_IN_FLIGHT_MAX`]).
    #[error(
        "overloaded: {CHECKPOINT_UPLOADS_IN_FLIGHT_MAX} checkpoint uploads wait on this node \
         (CHECKPOINT_UPLOADS_IN_FLIGHT_MAX)"
    )]
    Overloaded,
    /// A field is out of range; the message names it.
    #[error("{0}")]
    Invalid(String),
    /// A bound of the region's checkpoints is reached; the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The upload was lost (raft dropped it, a snapshot replaced the state, or it waited too
    /// long); it may still be applied. Retrying is safe: the same report is idempotent.
    #[error("dropped before it was applied; retry")]
    Dropped,
}

/// Why a session was not opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenSessionError {
    /// No leader is known; nothing was proposed.
    #[error("not the leader and no leader known{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// Too many opens wait on this node ([`SESSION_OPENS_IN_FLIGHT_MAX`]).
    #[error(
        "overloaded: {SESSION_OPENS_IN_FLIGHT_MAX} session opens wait on this node \
         (SESSION_OPENS_IN_FLIGHT_MAX)"
    )]
    Overloaded,
    /// The session id is 0, which is never valid.
    #[error("session id 0 is never valid")]
    InvalidId,
    /// The region holds as many live sessions as it may.
    #[error("{0}")]
    Full(SessionRefusal),
    /// The open was lost (raft dropped it, a snapshot replaced the state, or it waited too
    /// long); it may still be applied. Retrying is safe: opening a live session again only
    /// marks it active.
    #[error("dropped before it was applied; retry")]
    Dropped,
    /// This node's clock is off, so it stamps nothing; another member takes the open.
    #[error("{0}")]
    ClockFenced(ClockFence),
}

/// Why a session close was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloseSessionError {
    /// No leader is known; nothing was proposed.
    #[error("not the leader and no leader known{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// Too many closes wait on this node ([`SESSION_CLOSES_IN_FLIGHT_MAX`]).
    #[error(
        "overloaded: {SESSION_CLOSES_IN_FLIGHT_MAX} session closes wait on this node \
         (SESSION_CLOSES_IN_FLIGHT_MAX)"
    )]
    Overloaded,
    /// The session id is 0, which is never valid.
    #[error("session id 0 is never valid")]
    InvalidId,
    /// The close was lost (raft dropped it, a snapshot replaced the state, or it waited too
    /// long); it may still be applied. Retrying is safe: closing a closed session changes
    /// nothing.
    #[error("dropped before it was applied; retry")]
    Dropped,
}

/// The answer to one session close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCloseReply {
    /// The driver's id of the close.
    pub close_id: u64,
    /// The session.
    pub session_id: u64,
    /// Whether the session lived until the close (false: it had ended or never opened), or
    /// why the close was not applied.
    pub result: Result<bool, CloseSessionError>,
}

/// The answer to one session open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionReply {
    /// The driver's id of the open.
    pub open_id: u64,
    /// The session.
    pub session_id: u64,
    /// Open, or why not.
    pub result: Result<(), OpenSessionError>,
}

/// The answer to one checkpoint upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointReply {
    /// The driver's id of the upload.
    pub upload_id: u64,
    /// What the region did with it.
    pub result: Result<CheckpointOutcome, UploadError>,
}

/// A read of the coordinator's newest sealed epoch that the node needs for its barriers. The
/// driver sends `request` to the coordinator leader and hands the answer to
/// [`RegionNode::handle_sealed_epoch_read`] with `read_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct SealedEpochRead {
    /// The node's id of the read.
    pub read_id: u64,
    /// The request to send.
    pub request: proto::ReadSealedEpochRequest,
}

/// A read of sealed epochs from another region's log, for a region that missed epochs the
/// coordinator released. The driver sends `request` to a node of `region` (any member serves
/// it, `RegionEpochs.ReadEpochs` in production) and hands the answer to
/// [`RegionNode::handle_epochs_read_reply`] with `read_id`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochsRead {
    /// The node's id of the read.
    pub read_id: u64,
    /// The region to ask.
    pub region: RegionId,
    /// The request to send.
    pub request: proto::ReadEpochsRequest,
}

/// What local subscribers see of the log, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEvent {
    /// An entry was appended at `position`. A subscriber applies only regional and sequenced
    /// global records ([`LogEntry::applied_record`]); the other kinds keep positions dense.
    Applied {
        /// Its position.
        position: u64,
        /// The entry.
        entry: LogEntry,
    },
    /// The log was replaced by a snapshot: positions before `next_position` are known only
    /// from `first_retained_position` on.
    Restored {
        /// The oldest record kept.
        first_retained_position: u64,
        /// The position of the next record.
        next_position: u64,
    },
}

/// Why a node could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum RegionNodeError {
    /// The configuration is invalid.
    #[error("region node configuration: {0}")]
    Config(String),
    /// The raft group could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// A message for the coordinator leader.
#[derive(Clone, Debug, PartialEq)]
pub enum ToCoordinator {
    /// An outgoing batch of global records, sent or resent.
    Batch(proto::RegionBatch),
}

/// What the node hands to its driver, through [`RegionNode::poll_output`]: drivers drain it in
/// one exhaustive `match`, so an output added here cannot be forgotten by one of them
/// (production and the simulator).
#[derive(Clone, Debug, PartialEq)]
pub enum RegionOutput {
    /// The answer to a proposal, for the waiting proposer.
    Reply(Reply),
    /// The answer to a barrier.
    SyncReply(SyncReply),
    /// The answer to a checkpoint upload.
    CheckpointReply(CheckpointReply),
    /// The answer to a session open.
    SessionReply(SessionReply),
    /// The answer to a session close.
    SessionCloseReply(SessionCloseReply),
    /// A read of the coordinator's newest sealed epoch to send to the coordinator leader.
    SealedEpochRead(SealedEpochRead),
    /// An event of the log, for local subscribers.
    LogEvent(LogEvent),
    /// Two replicas of an object computed different states from the same records.
    DivergenceAlarm(DivergenceAlarm),
    /// A message for the coordinator leader.
    ToCoordinator(ToCoordinator),
    /// A request for entries a snapshot stands on, to send to a peer of the region; its
    /// answer goes to [`RegionNode::handle_log_range`].
    FetchLogRange(LogRangeFetch),
    /// A read of sealed epochs from another region, to catch up on released epochs.
    EpochsRead(EpochsRead),
    /// A read of a global object's checkpoint from another region, to adopt it; its answer
    /// goes to [`RegionNode::handle_checkpoint_read_reply`].
    CheckpointRead(CheckpointRead),
}

/// Why a message from the coordinator was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GlobalMessageError {
    /// Only the region leader takes sealed epochs.
    #[error("not the region leader{}", hint_text(*.leader_hint))]
    NotLeader {
        /// A node that may lead.
        leader_hint: Option<u64>,
    },
    /// The sender's clock is further ahead than the tolerated skew; the message was dropped.
    #[error("{0}")]
    ClockSkew(ClockSkewError),
    /// Too many epoch parts wait to be applied; the coordinator resends later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The message is malformed.
    #[error("invalid message from the coordinator: {0}")]
    Invalid(String),
}

/// Why a raft message was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The bytes are not a raft message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The raft group refused it.
    #[error(transparent)]
    Step(#[from] StepError),
}

/// Snapshots that waited for the entries they stand on (see [`crate::snapshot_catch_up`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotCatchUpStatus {
    /// The positions still to fetch, `[from, end)`, while a snapshot waits.
    pub missing: Option<(u64, u64)>,
    /// What the waits did.
    pub counters: CatchUpCounters,
    /// Why the last piece was refused.
    pub last_error: Option<String>,
}

/// A snapshot of the node's state, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    /// This node.
    pub node_id: u64,
    /// Its role.
    pub role: Role,
    /// The leader it knows of.
    pub leader_id: Option<u64>,
    /// The raft term.
    pub term: u64,
    /// The raft commit index.
    pub commit_index: u64,
    /// The raft applied index.
    pub applied_index: u64,
    /// The first raft entry held.
    pub first_raft_index: u64,
    /// The last raft entry.
    pub last_raft_index: u64,
    /// The next region log position.
    pub next_position: u64,
    /// The oldest region log record kept.
    pub first_retained_position: u64,
    /// The digest over every record applied.
    pub log_digest: u64,
    /// The voters.
    pub voters: Vec<u64>,
    /// The learners.
    pub learners: Vec<u64>,
    /// The region's side of the global tier.
    pub global: GlobalStatus,
    /// Proposals waiting for the next round.
    pub proposals_pending: usize,
    /// Proposals waiting for their record.
    pub waiters: usize,
    /// Barriers waiting on this node.
    pub syncs_in_flight: usize,
    /// The client sessions that live in the region, as this node applied them.
    pub sessions: usize,
    /// The region's checkpoints and truncation, as this node applied them.
    pub checkpoints: CheckpointStatus,
    /// The bytes of the log above the truncation point (replicated, by whole blocks).
    pub log_size_bytes: u64,
    /// The most bytes the log may hold above its truncation point before the region refuses
    /// new records.
    pub log_quota_bytes: u64,
    /// The bytes of the newest entries this node holds in memory.
    pub log_cache_bytes: u64,
    /// A snapshot waiting for the entries it stands on, and what such waits did.
    pub snapshot_catch_up: SnapshotCatchUpStatus,
    /// Counters since the node opened.
    pub counters: NodeCounters,
    /// What the node's raft member counted (leader changes, snapshots sent).
    pub raft: dsss_raft_group::GroupCounters,
    /// What this node knows of its peers' clocks, and whether it fenced itself.
    pub clock: ClockStatus,
    /// This node's adoptions of global objects' checkpoints from other regions.
    pub adoptions: AdoptionStatus,
}

/// What a node knows of its peers' clocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClockStatus {
    /// Set while the node's clock is beyond the bound from a majority of its region.
    pub fenced: Option<ClockFence>,
    /// Each peer's offset as last measured (fresh samples only), in node id order.
    pub peers: Vec<(u64, ClockSample)>,
}

/// The region's checkpoints and truncation, as a node applied them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStatus {
    /// Objects with a checkpoint.
    pub objects: u64,
    /// Objects with records above their agreed checkpoint (or without one).
    pub uncovered_objects: u64,
    /// The bytes of state kept over all checkpoints.
    pub states_size_bytes: u64,
    /// The region's truncation point.
    pub truncated_through: u64,
    /// Hash mismatches seen since the region began.
    pub alarms_raised: u64,
    /// Objects whose records the region released without a checkpoint.
    pub released_objects: u64,
    /// What the checkpoints take, out of `bounds.checkpoint_bytes_max`.
    pub checkpoint_bytes: u64,
    /// What the uncovered and released objects take, out of `bounds.tracking_bytes_max`.
    pub tracking_bytes: u64,
    /// What the checkpoint state may hold.
    pub bounds: crate::checkpoint::CheckpointBounds,
    /// Objects with a divergence alarm (`alarms` lists at most
    /// [`crate::checkpoint::ALARMS_LISTED_MAX`] of them).
    pub alarmed_objects: u64,
    /// How many times the region released an object's records.
    pub releases: u64,
    /// The newest alarm of every diverged object.
    pub alarms: Vec<DivergenceAlarm>,
}

/// A node's adoptions of global objects' checkpoints from other regions
/// ([`crate::global::adoption`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdoptionStatus {
    /// Adoptions waiting for an answer or for their entry to apply.
    pub waiting: usize,
    /// What they did.
    pub counters: AdoptionCounters,
    /// Why the last one that failed did.
    pub last_error: Option<String>,
}

/// The region's side of the global tier, as this node applied it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalStatus {
    /// The region's incarnation in the global membership.
    pub incarnation: u64,
    /// Whether the last applied epoch lists the region.
    pub member: bool,
    /// Batches waiting for the coordinator.
    pub outgoing_batches: usize,
    /// Global records of the region not yet sealed.
    pub unsealed_records: usize,
    /// Every epoch at or below this number is appended.
    pub epochs_applied_through: u64,
    /// The last appended epoch's watermark.
    pub watermark: Timestamp,
    /// The last timestamp the region assigned.
    pub last_assigned: Timestamp,
    /// Set when the coordinator released epochs this region had not appended, as (first
    /// missed epoch, first epoch the coordinator holds): the leader reads them from other
    /// regions and refuses global calls until it appended them (see
    /// [`RegionNode::global_catch_up_error`]).
    pub epochs_missed: Option<(u64, u64)>,
}

/// Counters since the node opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Raft entries of records this node proposed.
    pub entries_proposed: u64,
    /// `CloseBatch` entries this node proposed.
    pub close_batches_proposed: u64,
    /// Liveness asks an idle leader sent to the coordinator (its newest acknowledged batch
    /// again, without records).
    pub liveness_asks_sent: u64,
    /// Records in those entries.
    pub records_proposed: u64,
    /// Raft rounds handled.
    pub rounds: u64,
    /// Records applied.
    pub records_applied: u64,
    /// Replies dropped because the driver did not poll them.
    pub replies_dropped: u64,
    /// Log events dropped because the driver did not poll them.
    pub log_events_dropped: u64,
    /// Messages from the coordinator refused because their sender's clock was too far ahead.
    pub clock_skew_refused: u64,
    /// Times this node fenced itself because its clock was beyond the bound.
    pub clock_fences: u64,
    /// Times the coordinator said it released epochs this region had not appended (see
    /// [`RegionNode::global_catch_up_error`]).
    pub epochs_missed_alarms: u64,
    /// Reads of released epochs sent to other regions.
    pub epochs_reads_sent: u64,
    /// Answers to those reads refused (a wrong or malformed epoch, or an unknown sender).
    pub epochs_reads_refused: u64,
    /// Epoch parts read from other regions and proposed.
    pub epoch_parts_caught_up: u64,
    /// Reads of this node's log served to other regions.
    pub epochs_reads_served: u64,
    /// Messages to the coordinator dropped because the driver did not poll them.
    pub to_coordinator_dropped: u64,
    /// Batches sent to the coordinator (resends included).
    pub batches_sent: u64,
    /// Of those, copies of a batch sent before in this leadership (resends: the
    /// acknowledged point had not moved for the resend timeout).
    pub batches_resent: u64,
    /// Epoch parts proposed.
    pub epoch_parts_proposed: u64,
    /// Leadership-confirmed reads (raft ReadIndex) asked for barriers.
    pub read_indexes_asked: u64,
    /// Barriers given.
    pub syncs_ready: u64,
    /// Barriers refused or timed out.
    pub syncs_refused: u64,
    /// Checkpoint uploads proposed.
    pub checkpoints_proposed: u64,
    /// Pieces of a snapshot's entries refused or not answered (see
    /// [`crate::snapshot_catch_up`]).
    pub log_fetches_refused: u64,
    /// Skips of sealed epochs no region's log held any longer that this node proposed
    /// (docs/global-protocol.md section 7, "When no region holds them").
    pub epoch_skips_proposed: u64,
    /// Such skips this node applied.
    pub epoch_skips_applied: u64,
    /// Epochs those skips passed over.
    pub epochs_skipped: u64,
    /// Records of this region that skipped epochs had sealed: taken out of the unsealed set
    /// and answered at the skip.
    pub records_sealed_in_skipped_epochs: u64,
}

/// A barrier waiting for its conditions.
#[derive(Clone, Copy, Debug)]
struct PendingSync {
    /// The tick at which it gives up.
    deadline: u64,
    /// Any ReadIndex this node asks with an id at or above this one was asked after the
    /// barrier arrived, so its answer serves the barrier.
    read_after: u64,
    /// The raft commit index the leader confirmed.
    read_index: Option<u64>,
    /// Likewise for sealed epoch reads; none without a global tier.
    epoch_read_after: Option<u64>,
    /// The newest sealed epoch the coordinator leader confirmed.
    sealed_epoch: Option<u64>,
}

/// The leader's reads of released epochs from other regions (soft state).
#[derive(Debug, Default)]
struct CatchUp {
    /// The id of the last read asked.
    last_read_id: u64,
    /// The read waiting for its answer: (id, region asked, when).
    in_flight: Option<(u64, RegionId, u64)>,
    /// The parts of the last answer not yet proposed, in order, each the one after the part
    /// proposed before it: they go into raft as room frees under `EPOCH_PARTS_PROPOSED_MAX`.
    /// At most one answer's worth (`EPOCHS_READ_PARTS_MAX`, `EPOCHS_READ_REPLY_BYTES_MAX`).
    held: VecDeque<EpochPart>,
    /// The term in which `held` was checked against the log; a later term drops it.
    held_term: u64,
    /// A read waiting for the driver.
    queued: Option<EpochsRead>,
    /// The index in `catch_up_regions` of the region to ask next.
    next_region: usize,
    /// Why each region asked since the last progress could not serve the epochs.
    unavailable: BTreeMap<RegionId, EpochsUnavailable>,
    /// The `skip_from_epoch_number` of the read in flight.
    asked_skip_from: u64,
    /// The skip proposed last, as (its first skipped epoch, when): no read leaves while it
    /// may still apply (within the resend interval).
    skip_proposed: Option<(u64, u64)>,
    /// What the coordinator said of the region's newest sealed record, in an answer that
    /// also showed it released epochs the region had not appended: the region was out of
    /// the membership then and cannot be readmitted before it catches up, so no record of
    /// it is sealed meanwhile and the mark no longer moves.
    sealed_mark: SealedMarkHeard,
}

/// What the coordinator said of the region's newest sealed record (see `CatchUp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum SealedMarkHeard {
    /// No answer that counts came yet.
    #[default]
    NotHeard,
    /// The coordinator does not know it (its state was written by a release that kept no
    /// marks): the region cannot tell which of its records the released epochs sealed.
    Unknown,
    /// (client id, request sequence, epoch) of the newest record sealed, none when none was.
    Known(Option<(u64, u64, u64)>),
}

/// A proposal waiting for the next round.
struct PendingProposal {
    client_id: ClientId,
    request_sequence: RequestSequence,
    encoded: Vec<u8>,
}

/// One member of a region's raft group. See the module documentation.
pub struct RegionNode {
    group: RaftGroup<RegionLog>,
    config: RegionNodeConfig,
    clock: HybridLogicalClock,
    pending: VecDeque<PendingProposal>,
    /// Proposals waiting for their record, with the tick at which they give up.
    waiters: BTreeMap<(ClientId, RequestSequence), u64>,
    /// (deadline, key) in the order waiters were made; deadlines never decrease.
    waiter_deadlines: VecDeque<(u64, (ClientId, RequestSequence))>,
    ticks: u64,
    replies: VecDeque<Reply>,
    log_events: VecDeque<LogEvent>,
    counters: NodeCounters,
    /// Set while this node's clock is beyond the bound: it stamps nothing and does not lead.
    clock_fence: Option<ClockFence>,
    /// The fence the driver's last clock verdict asked for ([`RegionNode::handle_clock_verdict`]).
    verdict_fence: Option<ClockFence>,
    /// How far the hybrid clock ran ahead of the physical clock at the last tick, when that is
    /// more than the bound ([`RegionNode::handle_tick`]).
    clock_runs_ahead_us: Option<u64>,
    /// The samples the last clock verdict rested on.
    clock_samples: Vec<(u64, ClockSample)>,
    /// The physical time of the latest input.
    now_us: u64,
    shipping: Shipping,
    /// The highest raft term a coordinator leader acknowledged with (`leader_term`).
    coordinator_term_heard: u64,
    /// Set once the coordinator said it released epochs this region had not appended:
    /// (first missed epoch, first epoch the coordinator still holds). The region cannot
    /// append past the gap and never applies an epoch with a hole before it.
    epochs_missed: Option<(u64, u64)>,
    /// The leader's reads of those epochs from other regions.
    catch_up: CatchUp,
    /// Where the epochs this node applied or read end, to serve other regions' reads.
    epoch_ends: EpochEndIndex,
    to_coordinator: VecDeque<ToCoordinator>,
    syncs: BTreeMap<u64, PendingSync>,
    sync_replies: VecDeque<SyncReply>,
    /// The id of the next ReadIndex this node asks, and whether a barrier needs one.
    next_read_id: u64,
    read_wanted: bool,
    last_read_tick: u64,
    /// The id of the next sealed epoch read, and whether a barrier needs one.
    next_epoch_read_id: u64,
    epoch_read_wanted: bool,
    epoch_reads: VecDeque<SealedEpochRead>,
    /// Uploads this node proposed, by id, with the tick at which they give up.
    uploads: BTreeMap<u64, u64>,
    upload_replies: VecDeque<CheckpointReply>,
    /// Session opens this node proposed, by id, with their session and the tick at which
    /// they give up.
    session_opens: BTreeMap<u64, (u64, u64)>,
    session_replies: VecDeque<SessionReply>,
    /// Session closes this node proposed, by id, with their session and the tick at which
    /// they give up.
    session_closes: BTreeMap<u64, (u64, u64)>,
    session_close_replies: VecDeque<SessionCloseReply>,
    alarms: VecDeque<DivergenceAlarm>,
    /// Why the last piece of a snapshot's entries was refused.
    last_log_fetch_error: Option<String>,
    /// A snapshot waiting for the entries it stands on (see [`crate::snapshot_catch_up`]).
    snapshot_catch_up: SnapshotCatchUp,
    log_fetches: VecDeque<LogRangeFetch>,
    /// Checkpoints of released global objects this node adopts from other regions.
    adoptions: Adoptions,
}

/// The context of a ReadIndex: the asking node and its read id, so that answers to other
/// members' reads (raft hands them to the member that asked) are told apart.
fn read_context(node_id: u64, read_id: u64) -> Vec<u8> {
    let mut context = Vec::with_capacity(16);
    context.extend_from_slice(&node_id.to_be_bytes());
    context.extend_from_slice(&read_id.to_be_bytes());
    context
}

fn parse_read_context(context: &[u8]) -> Option<(u64, u64)> {
    let node_id = u64::from_be_bytes(context.get(..8)?.try_into().ok()?);
    let read_id = u64::from_be_bytes(context.get(8..16)?.try_into().ok()?);
    (context.len() == 16).then_some((node_id, read_id))
}

impl RegionNode {
    /// Opens the node over `store`: recovers its raft log and region log, or bootstraps a new
    /// region when the store is empty and initial members are configured.
    pub fn open(
        config: RegionNodeConfig,
        store: &mut impl DurableStore,
    ) -> Result<Self, RegionNodeError> {
        config.validate().map_err(RegionNodeError::Config)?;
        let region_log = RegionLog::new(config.log_retention, config.region.clone());
        let group = RaftGroup::open(config.group.clone(), region_log, store)?;
        // A restarted node stamps above every timestamp its region assigned, whatever its
        // clock says.
        let clock = HybridLogicalClock::resume(
            group.state_machine().last_assigned(),
            config.max_clock_skew_us,
        )
        .unwrap_or_else(|_| HybridLogicalClock::new(config.max_clock_skew_us));
        let adoptions = Adoptions::new(
            config.group.node_id,
            config.region.clone(),
            config.catch_up_regions.clone(),
        );
        Ok(RegionNode {
            group,
            config,
            clock,
            pending: VecDeque::new(),
            waiters: BTreeMap::new(),
            waiter_deadlines: VecDeque::new(),
            ticks: 0,
            replies: VecDeque::new(),
            log_events: VecDeque::new(),
            counters: NodeCounters::default(),
            now_us: 0,
            clock_fence: None,
            verdict_fence: None,
            clock_runs_ahead_us: None,
            clock_samples: Vec::new(),
            shipping: Shipping::default(),
            coordinator_term_heard: 0,
            epochs_missed: None,
            catch_up: CatchUp::default(),
            epoch_ends: EpochEndIndex::default(),
            to_coordinator: VecDeque::new(),
            syncs: BTreeMap::new(),
            sync_replies: VecDeque::new(),
            next_read_id: 1,
            read_wanted: false,
            last_read_tick: 0,
            next_epoch_read_id: 1,
            epoch_read_wanted: false,
            epoch_reads: VecDeque::new(),
            uploads: BTreeMap::new(),
            upload_replies: VecDeque::new(),
            session_opens: BTreeMap::new(),
            session_replies: VecDeque::new(),
            session_closes: BTreeMap::new(),
            session_close_replies: VecDeque::new(),
            alarms: VecDeque::new(),
            last_log_fetch_error: None,
            snapshot_catch_up: SnapshotCatchUp::default(),
            log_fetches: VecDeque::new(),
            adoptions,
        })
    }

    // Getters.

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.group.id()
    }

    /// The voters of the region's raft group, as this node knows them.
    pub fn voters(&self) -> Vec<u64> {
        self.group.voters()
    }

    /// The region log as this node has applied it.
    pub fn region_log(&self) -> &RegionLog {
        self.group.state_machine()
    }

    /// The raft group.
    pub fn group(&self) -> &RaftGroup<RegionLog> {
        &self.group
    }

    /// The leader this node knows of.
    pub fn leader_id(&self) -> Option<u64> {
        self.group.leader_id()
    }

    /// True when this node leads its region.
    pub fn is_leader(&self) -> bool {
        self.group.role() == Role::Leader
    }

    /// The node's hybrid logical clock, as of its last input.
    pub fn clock(&self) -> &HybridLogicalClock {
        &self.clock
    }

    /// The node's state.
    pub fn status(&self) -> RegionStatus {
        let log = self.group.state_machine();
        RegionStatus {
            node_id: self.group.id(),
            role: self.group.role(),
            leader_id: self.group.leader_id(),
            term: self.group.term(),
            commit_index: self.group.commit_index(),
            applied_index: self.group.applied_index(),
            first_raft_index: self.group.first_index(),
            last_raft_index: self.group.last_index(),
            next_position: log.next_position(),
            first_retained_position: log.first_retained_position(),
            log_digest: log.digest(),
            voters: self.group.voters(),
            learners: self.group.learners(),
            global: GlobalStatus {
                incarnation: log.global().incarnation(),
                member: log.global().is_member(),
                outgoing_batches: log.global().outgoing().count(),
                unsealed_records: log.global().unsealed().count(),
                epochs_applied_through: log.global().epochs_applied_through(),
                watermark: log.global().watermark(),
                last_assigned: log.last_assigned(),
                epochs_missed: self.epochs_missed,
            },
            proposals_pending: self.pending.len(),
            waiters: self.waiters.len(),
            syncs_in_flight: self.syncs.len(),
            sessions: log.dedup().session_count(),
            checkpoints: CheckpointStatus {
                objects: log.checkpoints().object_count(),
                uncovered_objects: log.checkpoints().uncovered_count(),
                states_size_bytes: log.checkpoints().states_size_bytes(),
                truncated_through: log.truncated_through(),
                alarms_raised: log.checkpoints().alarms_raised(),
                released_objects: log.checkpoints().released_count(),
                releases: log.checkpoints().releases(),
                checkpoint_bytes: log.checkpoints().checkpoint_bytes(),
                bounds: log.checkpoints().bounds(),
                tracking_bytes: log.checkpoints().tracking_bytes(),
                alarmed_objects: log.checkpoints().alarm_count(),
                alarms: log.checkpoints().alarms().collect(),
            },
            log_size_bytes: log.retained_size_bytes(),
            log_quota_bytes: log.retention().size_bytes_max,
            log_cache_bytes: log.cache_size_bytes(),
            snapshot_catch_up: SnapshotCatchUpStatus {
                missing: self.snapshot_catch_up.missing(),
                counters: self.snapshot_catch_up.counters(),
                last_error: self.last_log_fetch_error.clone(),
            },
            counters: self.counters,
            raft: self.group.counters(),
            clock: ClockStatus {
                fenced: self.clock_fence,
                peers: self.clock_samples.clone(),
            },
            adoptions: AdoptionStatus {
                waiting: self.adoptions.waiting(),
                counters: self.adoptions.counters(),
                last_error: self.adoptions.last_error().map(str::to_owned),
            },
        }
    }

    /// The driver's verdict on this node's clock against its peers' ([`PeerClocks`]), and
    /// the samples it rests on; the driver gives it before every tick. While the verdict is
    /// [`ClockVerdict::Beyond`] or [`ClockVerdict::Stepped`] the node is fenced: it refuses
    /// calls and session opens
    /// ([`ProposeError::ClockFenced`]), stops moving its hybrid clock by its physical one,
    /// does not campaign, and a leader hands leadership to a peer; it resumes as soon as the
    /// verdict is no longer beyond. An [`ClockVerdict::Unknown`] verdict (too few peers
    /// heard from: just started, or cut off) does not fence: a node that hears from nobody
    /// cannot commit anything anyway.
    ///
    /// [`PeerClocks`]: dsss_raft_group::PeerClocks
    pub fn handle_clock_verdict(
        &mut self,
        verdict: &ClockVerdict,
        samples: Vec<(u64, ClockSample)>,
    ) {
        self.verdict_fence = verdict.fences().then(|| ClockFence {
            offset_us: verdict.own_offset_us(),
            max_skew_us: self.clock.max_skew_us(),
            stepped: matches!(verdict, ClockVerdict::Stepped { .. }),
        });
        self.update_fence();
        self.clock_samples = samples;
    }

    /// Fences the node while its verdict asks for it or its hybrid clock runs ahead of its
    /// physical clock by more than the bound (the verdict's fence named first).
    fn update_fence(&mut self) {
        let max_skew_us = self.clock.max_skew_us();
        let fence = self.verdict_fence.or_else(|| {
            self.clock_runs_ahead_us.map(|ahead_us| ClockFence {
                offset_us: i64::try_from(ahead_us).unwrap_or(i64::MAX),
                max_skew_us,
                stepped: false,
            })
        });
        if fence.is_some() && self.clock_fence.is_none() {
            self.counters.clock_fences += 1;
        }
        self.clock_fence = fence;
        self.group.set_may_campaign(fence.is_none());
    }

    /// Set while this node's clock is beyond the bound (see
    /// [`RegionNode::handle_clock_verdict`]), or its hybrid clock runs ahead of its physical
    /// clock by more than the bound (see [`RegionNode::handle_tick`]).
    pub fn clock_fence(&self) -> Option<ClockFence> {
        self.clock_fence
    }

    // Inputs.

    /// A client asks to order a call. The answer comes later through
    /// [`RegionOutput::Reply`]: at once when the node cannot take it or already applied it
    /// (a retry), otherwise when its record is applied here. A global call is answered when
    /// its sealed copy is applied here, with that copy's position; a retry of a global call
    /// whose pending record exists waits for it and adds nothing.
    pub fn handle_propose(&mut self, now_us: u64, request: ProposeRequest) {
        self.now_us = now_us;
        let key = (request.client_id, request.request_sequence);
        let log = self.group.state_machine();
        let unsealed = log
            .global()
            .unsealed_position(key.0.get(), key.1.get())
            .is_some();
        match log.dedup().check(key.0.get(), key.1.get()) {
            _ if unsealed => return self.wait_for_seal(key),
            DedupVerdict::Duplicate { position } => return self.reply_proposed(key, position),
            DedupVerdict::TooOld { floor } => {
                return self.reply_refused(key, ProposeError::TooOld { floor });
            }
            // This member may not have applied the session's open yet (the client heard of
            // it from another member): the record's turn in the log decides.
            DedupVerdict::UnknownSession | DedupVerdict::New => {}
        }
        if self.group.leader_id().is_none() {
            return self.reply_refused(key, ProposeError::NotLeader { leader_hint: None });
        }
        if let Some(fence) = self.clock_fence {
            return self.reply_refused(key, ProposeError::ClockFenced(fence));
        }
        let new_waiter = !self.waiters.contains_key(&key);
        if self.pending.len() >= PROPOSALS_PENDING_MAX
            || (new_waiter && self.waiters.len() >= WAITERS_MAX)
        {
            return self.reply_refused(key, ProposeError::Overloaded);
        }
        let timestamp = self.clock.now(now_us);
        let record = request.into_record(timestamp, self.config.region.clone());
        let encoded = encode_record(&record);
        if record.scope == Scope::Global && !self.config.global_tier {
            return self.reply_refused(key, ProposeError::NoGlobalTier);
        }
        if let Err(reason) = log.admit() {
            return self.reply_refused(key, ProposeError::LogFull { reason });
        }
        if record.scope == Scope::Global
            && let Err(bound) = log.global().admit(encoded.len() as u64)
        {
            return self.reply_refused(key, ProposeError::GlobalOverloaded { bound });
        }
        if record.scope == Scope::Global
            && let Some(bound) = self.global_catch_up_error()
        {
            return self.reply_refused(key, ProposeError::GlobalOverloaded { bound });
        }
        self.pending.push_back(PendingProposal {
            client_id: key.0,
            request_sequence: key.1,
            encoded,
        });
        // A retry of a proposal still waiting proposes again (the first copy may be lost) but
        // keeps one waiter; the dedup table applies the pair once.
        if new_waiter {
            self.add_waiter(key);
        }
    }

    /// A barrier asked of this node, named `sync_id` by the driver (unique among the barriers
    /// waiting). The answer comes through [`RegionOutput::SyncReply`]: refused at once when
    /// no leader is known or [`SYNCS_IN_FLIGHT_MAX`] barriers wait, otherwise once this node
    /// has applied through the commit index the leader confirmed AFTER the barrier arrived
    /// (and, with a global tier, through the sealed epoch the coordinator leader confirmed
    /// after it arrived), or refused after `proposal_timeout_ticks`.
    pub fn handle_sync(&mut self, now_us: u64, sync_id: u64) {
        self.now_us = now_us;
        if self.syncs.contains_key(&sync_id) {
            return;
        }
        if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX {
            return self.refuse_sync(sync_id, SyncError::Overloaded);
        }
        if self.group.leader_id().is_none() {
            return self.refuse_sync(sync_id, SyncError::NotLeader { leader_hint: None });
        }
        let global_tier = self.config.global_tier;
        self.syncs.insert(
            sync_id,
            PendingSync {
                deadline: self.ticks + self.config.proposal_timeout_ticks,
                read_after: self.next_read_id,
                read_index: None,
                epoch_read_after: global_tier.then_some(self.next_epoch_read_id),
                sealed_epoch: None,
            },
        );
        self.read_wanted = true;
        self.epoch_read_wanted |= global_tier;
    }

    /// The answer to a [`SealedEpochRead`]: the coordinator's reply, or why the driver got
    /// none. Barriers waiting for this read (or an earlier one) take its epoch; an error or a
    /// reply from a replica that does not lead refuses them. The reply's sender time moves
    /// this node's clock.
    pub fn handle_sealed_epoch_read(
        &mut self,
        now_us: u64,
        read_id: u64,
        reply: Result<proto::ReadSealedEpochReply, String>,
    ) {
        self.now_us = now_us;
        let outcome = reply.and_then(|reply| {
            if let Some(not_leader) = reply.not_leader {
                return Err(format!(
                    "the coordinator replica asked does not lead (it names node {} as leader)",
                    not_leader.leader_node_id
                ));
            }
            self.observe_sender_time(now_us, reply.sender_time)
                .map_err(|error| error.to_string())?;
            Ok(reply.epoch_number)
        });
        let served: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, sync)| {
                sync.sealed_epoch.is_none()
                    && sync.epoch_read_after.is_some_and(|after| after <= read_id)
            })
            .map(|(&sync_id, _)| sync_id)
            .collect();
        for sync_id in served {
            match &outcome {
                Ok(epoch_number) => {
                    if let Some(sync) = self.syncs.get_mut(&sync_id) {
                        sync.sealed_epoch = Some(*epoch_number);
                    }
                }
                Err(reason) => {
                    self.syncs.remove(&sync_id);
                    self.refuse_sync(
                        sync_id,
                        SyncError::Coordinator {
                            reason: reason.clone(),
                        },
                    );
                }
            }
        }
        self.complete_syncs();
    }

    /// A checkpoint a client offers, named `upload_id` by the driver (unique among the
    /// uploads waiting). Any member takes it: it is proposed into raft (a follower's proposal
    /// goes to the leader) and answered through [`RegionOutput::CheckpointReply`] once
    /// applied here; refused at once when its position is beyond this node's applied
    /// position, its state too large, no leader is known, or too many uploads wait.
    pub fn handle_upload_checkpoint(
        &mut self,
        now_us: u64,
        upload_id: u64,
        upload: CheckpointUpload,
    ) {
        self.now_us = now_us;
        let node_id = self.id();
        let applied_position = self.region_log().last_position();
        let waiting_before = self.uploads.contains_key(&upload_id);
        self.propose_upload(upload_id, || {
            if upload.position == 0 || upload.position > applied_position {
                return Err(UploadError::Invalid(format!(
                    "checkpoint.position {} is outside 1..={applied_position}, the positions \
                     node {node_id} has applied",
                    upload.position,
                )));
            }
            if upload.state.len() > CHECKPOINT_STATE_BYTES_MAX {
                return Err(UploadError::Invalid(format!(
                    "checkpoint.state holds {} bytes, more than the maximum of \
                     {CHECKPOINT_STATE_BYTES_MAX}",
                    upload.state.len()
                )));
            }
            Ok(encode_checkpoint_entry(&upload, (node_id, upload_id)))
        });
        if !waiting_before && self.uploads.contains_key(&upload_id) {
            self.counters.checkpoints_proposed += 1;
        }
    }

    /// An operator clears `object_id`'s divergence alarm (the divergence is resolved), named
    /// `upload_id` by the driver among the uploads waiting: proposed into raft like an upload
    /// and answered through [`RegionOutput::CheckpointReply`] with
    /// [`CheckpointOutcome::AlarmCleared`] or [`CheckpointOutcome::NoAlarm`] once applied here.
    pub fn handle_clear_alarm(
        &mut self,
        now_us: u64,
        upload_id: u64,
        object_id: &dsss_wire::ObjectId,
    ) {
        self.now_us = now_us;
        let proposer = (self.id(), upload_id);
        self.propose_upload(upload_id, || {
            Ok(crate::checkpoint::encode_alarm_clear_entry(
                object_id, proposer,
            ))
        });
    }

    /// Proposes the entry `entry` makes for upload `upload_id` (a checkpoint or an alarm
    /// clear), unless that upload already waits; answers the refusal at once when too many
    /// uploads wait, `entry` refuses, no leader is known or raft drops the proposal.
    fn propose_upload(
        &mut self,
        upload_id: u64,
        entry: impl FnOnce() -> Result<Vec<u8>, UploadError>,
    ) {
        if self.uploads.contains_key(&upload_id) {
            return;
        }
        let proposed = if self.uploads.len() >= CHECKPOINT_UPLOADS_IN_FLIGHT_MAX {
            Err(UploadError::Overloaded)
        } else {
            entry().and_then(|data| {
                if self.group.leader_id().is_none() {
                    Err(UploadError::NotLeader { leader_hint: None })
                } else {
                    self.group.propose(data).map_err(|_| UploadError::Dropped)
                }
            })
        };
        match proposed {
            Ok(()) => {
                self.uploads
                    .insert(upload_id, self.ticks + self.config.proposal_timeout_ticks);
            }
            Err(error) => self.push_upload_reply(CheckpointReply {
                upload_id,
                result: Err(error),
            }),
        }
    }

    /// A client opens a session, named `open_id` by the driver (unique among the opens
    /// waiting), before its first call. Any member takes it: it is proposed into raft and
    /// answered through [`RegionOutput::SessionReply`] once applied here; refused at once
    /// when the id is 0, no leader is known, or too many opens wait.
    pub fn handle_open_session(&mut self, now_us: u64, open_id: u64, session_id: u64) {
        self.now_us = now_us;
        let refuse = |node: &mut Self, error| {
            node.push_session_reply(SessionReply {
                open_id,
                session_id,
                result: Err(error),
            })
        };
        if self.session_opens.contains_key(&open_id) {
            return;
        }
        if session_id == 0 {
            return refuse(self, OpenSessionError::InvalidId);
        }
        if self.session_opens.len() >= SESSION_OPENS_IN_FLIGHT_MAX {
            return refuse(self, OpenSessionError::Overloaded);
        }
        if self.group.leader_id().is_none() {
            return refuse(self, OpenSessionError::NotLeader { leader_hint: None });
        }
        if let Some(fence) = self.clock_fence {
            return refuse(self, OpenSessionError::ClockFenced(fence));
        }
        // The log time a session counts its idleness from: this node's clock, which the
        // leader's entries never trail by more than the tolerated skew.
        let proposed = self.clock.now(now_us);
        let data = encode_session_open(session_id, proposed, (self.id(), open_id));
        if self.group.propose(data).is_err() {
            return refuse(self, OpenSessionError::Dropped);
        }
        self.session_opens.insert(
            open_id,
            (session_id, self.ticks + self.config.proposal_timeout_ticks),
        );
    }

    /// A client closes its session, named `close_id` by the driver (unique among the closes
    /// waiting), once it makes no more calls: proposed into raft like an open, and answered
    /// through [`RegionOutput::SessionCloseReply`] once applied here; refused at once when the
    /// id is 0, no leader is known, or too many closes wait. The session id is the only thing
    /// the close is checked against: it is 64 random bits only the session's client knows (the
    /// only client credential there is), so only that client can close it.
    pub fn handle_close_session(&mut self, now_us: u64, close_id: u64, session_id: u64) {
        self.now_us = now_us;
        let refuse = |node: &mut Self, error| {
            node.push_session_close_reply(SessionCloseReply {
                close_id,
                session_id,
                result: Err(error),
            })
        };
        if self.session_closes.contains_key(&close_id) {
            return;
        }
        if session_id == 0 {
            return refuse(self, CloseSessionError::InvalidId);
        }
        if self.session_closes.len() >= SESSION_CLOSES_IN_FLIGHT_MAX {
            return refuse(self, CloseSessionError::Overloaded);
        }
        if self.group.leader_id().is_none() {
            return refuse(self, CloseSessionError::NotLeader { leader_hint: None });
        }
        let data = encode_session_close(session_id, (self.id(), close_id));
        if self.group.propose(data).is_err() {
            return refuse(self, CloseSessionError::Dropped);
        }
        self.session_closes.insert(
            close_id,
            (session_id, self.ticks + self.config.proposal_timeout_ticks),
        );
    }

    /// The coordinator's answer to a batch. Acknowledgements are the leader's soft state: it
    /// resends from the acknowledged point. The sender's time moves this node's clock.
    pub fn handle_batch_ack(
        &mut self,
        now_us: u64,
        ack: proto::RegionBatchAck,
    ) -> Result<(), GlobalMessageError> {
        self.now_us = now_us;
        self.observe_sender_time(now_us, ack.sender_time)?;
        if ack.not_leader.is_some() {
            // Nothing was acknowledged; the driver looks for the coordinator leader, and the
            // leader sends what that replica did not take again.
            if self.is_leader() {
                self.shipping.refused();
            }
            return Ok(());
        }
        if !self.is_leader() {
            // The coordinator's acknowledgements are the leader's soft state; one that reaches
            // another member (sent unasked to a leader that has since stepped down, or the
            // answer to a batch sent before it did) concerns nobody here.
            return Ok(());
        }
        if ack.region != self.config.region.as_str() {
            return Err(GlobalMessageError::Invalid(format!(
                "an acknowledgement for region {:?} reached region {}",
                ack.region, self.config.region
            )));
        }
        if ack.leader_term > self.coordinator_term_heard {
            // A coordinator leader of a newer term speaks (unasked, as soon as it leads): what
            // was sent to its predecessor may never be taken, so the unacknowledged batches
            // go again one resend interval after the last, whatever the backoff, and the
            // driver routes them to the new leader (it follows the same term).
            if self.coordinator_term_heard != 0 {
                self.shipping.refused();
            }
            self.coordinator_term_heard = ack.leader_term;
        }
        self.shipping.acknowledge(
            now_us,
            ack.incarnation,
            ack.acknowledged_through_batch_number,
        );
        self.shipping.set_closes_wanted(ack.closes_wanted);
        let next_epoch = self.group.state_machine().global().epochs_applied_through() + 1;
        let first_retained = ack.first_retained_epoch_number;
        if first_retained > next_epoch {
            self.catch_up.sealed_mark = if ack.last_sealed_record_unknown {
                SealedMarkHeard::Unknown
            } else {
                SealedMarkHeard::Known(
                    ack.last_sealed_record
                        .map(|mark| (mark.client_id, mark.request_sequence, mark.epoch_number)),
                )
            };
        }
        match self.epochs_missed {
            // The epochs between were released while this region was out of the membership;
            // appending a later one would leave a hole in the region's global sequence. The
            // leader reads them from other regions' logs (`ask_epochs`).
            None if first_retained > next_epoch => {
                self.epochs_missed = Some((next_epoch, first_retained));
                self.counters.epochs_missed_alarms += 1;
            }
            // The coordinator released more while the region caught up.
            Some((first_missed, retained)) if first_retained > retained => {
                self.epochs_missed = Some((first_missed, first_retained));
            }
            _ => {}
        }
        self.end_catch_up_when_done();
        Ok(())
    }

    /// The answer to an [`EpochsRead`]: the other region's reply, or why the driver got none.
    /// The parts it carries must be the very ones the region appends next (the next epoch and
    /// part, the first part of each epoch starting at the watermark of the epoch before);
    /// the leader proposes them as it proposes the coordinator's parts, and apply checks them
    /// again. A reply that is not the next epoch is refused whole with
    /// [`GlobalMessageError::Invalid`] naming what was wrong, and the next region is asked.
    /// An answer to a read that is not the one waiting is ignored. Returns how many parts
    /// were proposed.
    pub fn handle_epochs_read_reply(
        &mut self,
        now_us: u64,
        read_id: u64,
        reply: Result<proto::ReadEpochsReply, String>,
    ) -> Result<usize, GlobalMessageError> {
        self.now_us = now_us;
        let Some((waiting_id, region, _)) = self.catch_up.in_flight.clone() else {
            return Ok(0);
        };
        if waiting_id != read_id {
            return Ok(0);
        }
        self.catch_up.in_flight = None;
        let reply = match reply {
            Ok(reply) => reply,
            Err(reason) => {
                self.region_unavailable(&region, proto::EpochsUnavailableReason::Other, reason);
                return Ok(0);
            }
        };
        if let Err(error) = self.observe_sender_time(now_us, reply.sender_time) {
            return Err(self.refuse_epochs_read(&region, error.to_string()));
        }
        if reply.region != region.as_str() {
            let reason = format!(
                "the answer names region {:?}, but region {region} was asked",
                reply.region
            );
            return Err(self.refuse_epochs_read(&region, reason));
        }
        let reason = proto::EpochsUnavailableReason::try_from(reply.unavailable)
            .unwrap_or(proto::EpochsUnavailableReason::Other);
        if reason != proto::EpochsUnavailableReason::Unspecified {
            let held_from = match reply.held_from {
                Some(_) if reason != proto::EpochsUnavailableReason::Truncated => {
                    let reason = "it names an epoch end to skip to without saying TRUNCATED";
                    return Err(self.refuse_epochs_read(&region, reason.to_owned()));
                }
                Some(wire) => match HeldEpochEnd::from_wire(wire) {
                    Ok(end) if end.epoch_number >= self.catch_up.asked_skip_from => Some(end),
                    Ok(end) => {
                        let reason = format!(
                            "it names the end of epoch {} to skip to, below epoch {} asked for",
                            end.epoch_number, self.catch_up.asked_skip_from
                        );
                        return Err(self.refuse_epochs_read(&region, reason));
                    }
                    Err(reason) => return Err(self.refuse_epochs_read(&region, reason)),
                },
                None => None,
            };
            self.region_unavailable(&region, reason, reply.detail);
            if let Some(unavailable) = self.catch_up.unavailable.get_mut(&region) {
                unavailable.held_from = held_from;
            }
            return Ok(0);
        }
        if !self.is_leader() {
            return Err(GlobalMessageError::NotLeader {
                leader_hint: self.group.leader_id().filter(|&leader| leader != self.id()),
            });
        }
        if self.epochs_missed.is_none() {
            return Ok(0);
        }
        let parts = match self.check_read_parts(reply.parts) {
            Ok(parts) => parts,
            Err(reason) => return Err(self.refuse_epochs_read(&region, reason)),
        };
        let taken = parts.len();
        self.catch_up.held = parts.into();
        self.catch_up.held_term = self.group.term();
        self.catch_up.unavailable.clear();
        self.propose_read_parts();
        Ok(taken)
    }

    /// Proposes the parts of the last answer that wait (leader only), as many as
    /// `EPOCH_PARTS_PROPOSED_MAX` leaves room for; the rest go as earlier parts apply. A part
    /// the log appended meanwhile (the coordinator's copy of it) is skipped. In a new term, or
    /// when raft drops a proposal, the parts still held are dropped: the next read starts from
    /// what the log appended.
    fn propose_read_parts(&mut self) {
        if self.catch_up.held.is_empty() {
            return;
        }
        if !self.is_leader() || self.catch_up.held_term != self.group.term() {
            self.catch_up.held.clear();
            return;
        }
        self.shipping.enter_term(self.group.term());
        let next_expected = self.next_expected_part();
        while !self.shipping.parts_full()
            && let Some(part) = self.catch_up.held.pop_front()
        {
            if (part.epoch_number, part.part_index) < next_expected {
                continue;
            }
            if self.propose_epoch_part(&part).is_err() {
                self.catch_up.held.clear();
                return;
            }
            self.counters.epoch_parts_caught_up += 1;
        }
    }

    /// Checks that `parts` continue the region's global sequence exactly where it stands.
    fn check_read_parts(&self, parts: Vec<proto::SealedEpoch>) -> Result<Vec<EpochPart>, String> {
        if parts.is_empty() {
            return Err("the answer holds no part".to_owned());
        }
        if parts.len() > crate::global::catch_up::EPOCHS_READ_PARTS_MAX {
            return Err(format!(
                "the answer holds {} parts, more than the maximum of {}",
                parts.len(),
                crate::global::catch_up::EPOCHS_READ_PARTS_MAX
            ));
        }
        let global = self.group.state_machine().global();
        let mut expected = self.next_expected_part();
        let mut watermark = global.watermark();
        let mut epoch_shape = global.epoch_in_progress().map(|(part_count, _)| part_count);
        let mut checked = Vec::with_capacity(parts.len());
        for wire in parts {
            let part = EpochPart::from_wire(wire)?;
            let key = (part.epoch_number, part.part_index);
            if key != expected {
                return Err(format!(
                    "it starts or goes on at epoch {} part {}, but the region appends epoch {} \
                     part {} next",
                    key.0, key.1, expected.0, expected.1
                ));
            }
            let previous = part.previous_watermark.unwrap_or(Timestamp::ZERO);
            if previous != watermark {
                return Err(format!(
                    "epoch {} starts after {previous}, but the epoch before it ended at \
                     {watermark}",
                    part.epoch_number
                ));
            }
            if epoch_shape.is_some_and(|part_count| part_count != part.part_count) {
                return Err(format!(
                    "epoch {} part {} says the epoch has {} parts, but its earlier parts said \
                     otherwise",
                    part.epoch_number, part.part_index, part.part_count
                ));
            }
            if part.is_last() {
                expected = (part.epoch_number + 1, 0);
                watermark = part.watermark;
                epoch_shape = None;
            } else {
                expected = (part.epoch_number, part.part_index + 1);
                epoch_shape = Some(part.part_count);
            }
            checked.push(part);
        }
        // Measured as the server measures it: the parts' wire form, without the sender's
        // fields.
        let reply_bytes: u64 = checked.iter().map(EpochPart::wire_len).sum();
        let bytes_max = crate::global::catch_up::EPOCHS_READ_REPLY_BYTES_MAX;
        if checked.len() > 1 && reply_bytes > bytes_max {
            return Err(format!(
                "the answer holds {} parts of {reply_bytes} bytes in all, more than the maximum \
                 of {bytes_max} (only an answer of one part may be larger)",
                checked.len()
            ));
        }
        Ok(checked)
    }

    /// Serves another region's read of sealed epochs from this node's log (any member does,
    /// from what it applied; `store` is the store this node persists to). Never panics: a
    /// request that cannot be served is answered with the reason.
    pub fn answer_epochs_read(
        &mut self,
        store: &dyn DurableStore,
        now_us: u64,
        request: proto::ReadEpochsRequest,
    ) -> proto::ReadEpochsReply {
        self.now_us = now_us;
        self.counters.epochs_reads_served += 1;
        let outcome = match self.observe_sender_time(now_us, request.sender_time) {
            Err(error) => Err(EpochsUnavailable {
                reason: proto::EpochsUnavailableReason::Other,
                detail: error.to_string(),
                held_from: None,
            }),
            Ok(()) => read_epochs(
                self.group.state_machine(),
                store,
                &mut self.epoch_ends,
                &request,
            ),
        };
        let sender_time = self.clock.now(now_us);
        let (parts, unavailable, detail, held_from) = match outcome {
            Ok(parts) => (
                parts
                    .iter()
                    .map(|part| proto::SealedEpoch {
                        sender_node_id: self.group.id(),
                        sender_time: Some(sender_time.into()),
                        ..part.to_wire()
                    })
                    .collect(),
                proto::EpochsUnavailableReason::Unspecified,
                String::new(),
                None,
            ),
            Err(unavailable) => (
                Vec::new(),
                unavailable.reason,
                unavailable.detail,
                unavailable.held_from.as_ref().map(HeldEpochEnd::to_wire),
            ),
        };
        proto::ReadEpochsReply {
            region: self.config.region.as_str().to_owned(),
            parts,
            unavailable: unavailable as i32,
            detail,
            sender_time: Some(sender_time.into()),
            held_from,
        }
    }

    /// Asks the next region for the released epochs the region appends next (leader only):
    /// one read at a time, once every part of the previous answer is proposed and applied,
    /// again after the resend interval when no answer came.
    fn ask_epochs(&mut self, now_us: u64) {
        if self.epochs_missed.is_none()
            || self.config.catch_up_regions.is_empty()
            || self.shipping.parts_in_flight()
            || !self.catch_up.held.is_empty()
        {
            return;
        }
        if let Some((_, region, asked_at_us)) = &self.catch_up.in_flight {
            if now_us < asked_at_us.saturating_add(self.config.batch_resend_interval_us) {
                return;
            }
            let region = region.clone();
            self.catch_up.in_flight = None;
            self.region_unavailable(
                &region,
                proto::EpochsUnavailableReason::Other,
                "no answer within the resend interval".to_owned(),
            );
        }
        let (epoch_number, part_index) = self.next_expected_part();
        if let Some((first_skipped, asked_at_us)) = self.catch_up.skip_proposed {
            if first_skipped == epoch_number
                && now_us < asked_at_us.saturating_add(self.config.batch_resend_interval_us)
            {
                return;
            }
            self.catch_up.skip_proposed = None;
        }
        if self.propose_skip(now_us) {
            return;
        }
        let skip_from = self.skip_from(epoch_number);
        let regions = &self.config.catch_up_regions;
        let region = regions[self.catch_up.next_region % regions.len()].clone();
        let (part_count, records_appended) = if part_index > 0 {
            self.region_log()
                .global()
                .epoch_in_progress()
                .unwrap_or_default()
        } else {
            (0, 0)
        };
        self.catch_up.last_read_id += 1;
        let read_id = self.catch_up.last_read_id;
        let request = proto::ReadEpochsRequest {
            region: self.config.region.as_str().to_owned(),
            sender_node_id: self.group.id(),
            epoch_number,
            part_index,
            part_count,
            records_appended,
            sender_time: Some(self.clock.now(now_us).into()),
            skip_from_epoch_number: skip_from,
        };
        self.catch_up.asked_skip_from = skip_from;
        self.catch_up.in_flight = Some((read_id, region.clone(), now_us));
        self.catch_up.queued = Some(EpochsRead {
            read_id,
            region,
            request,
        });
        self.counters.epochs_reads_sent += 1;
    }

    /// The first epoch a skip may end at, asked of the regions with every read: at or after
    /// both the epoch the region appends next and the one holding its newest sealed record
    /// (so that the skipped epochs hold every record of the region that was sealed and it
    /// did not append). 0, asking for none, while the coordinator's mark is not known.
    fn skip_from(&self, next_epoch: u64) -> u64 {
        match self.catch_up.sealed_mark {
            SealedMarkHeard::Known(mark) => {
                next_epoch.max(mark.map_or(0, |(_, _, epoch_number)| epoch_number))
            }
            SealedMarkHeard::NotHeard | SealedMarkHeard::Unknown => 0,
        }
    }

    /// Proposes a skip of the epochs no region's log holds (docs/global-protocol.md section
    /// 7, "When no region holds them"; [`crate::global::skip`]) once every region asked said
    /// so and named an epoch end its log holds at or after [`RegionNode::skip_from`]: to the
    /// lowest of those. Returns whether it proposed one.
    fn propose_skip(&mut self, now_us: u64) -> bool {
        if !self.no_region_holds_missed_epochs() {
            return false;
        }
        let SealedMarkHeard::Known(mark) = self.catch_up.sealed_mark else {
            return false;
        };
        let first_skipped = self.group.state_machine().global().epochs_applied_through() + 1;
        let skip_from = self.skip_from(first_skipped);
        let mut ends = self
            .config
            .catch_up_regions
            .iter()
            .map(|region| {
                let unavailable = self.catch_up.unavailable.get(region)?;
                let end = unavailable.held_from.as_ref()?;
                (end.epoch_number >= skip_from).then(|| (end.clone(), region.clone()))
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        ends.sort_by_key(|(end, _)| end.epoch_number);
        let Some((end, source)) = ends.into_iter().next() else {
            return false;
        };
        let skip = EpochsSkip {
            first_skipped,
            end,
            sealed_through: mark
                .map(|(client_id, request_sequence, _)| (client_id, request_sequence)),
            source,
        };
        if self.group.propose(encode_skip_entry(&skip)).is_err() {
            return false;
        }
        self.counters.epoch_skips_proposed += 1;
        self.catch_up.skip_proposed = Some((first_skipped, now_us));
        self.catch_up.unavailable.clear();
        true
    }

    /// `region` could not serve the read: the next region is asked, unless it is still
    /// searching its log.
    fn region_unavailable(
        &mut self,
        region: &RegionId,
        reason: proto::EpochsUnavailableReason,
        detail: String,
    ) {
        if reason != proto::EpochsUnavailableReason::Searching {
            self.catch_up.next_region = self.catch_up.next_region.wrapping_add(1);
        }
        self.catch_up.unavailable.insert(
            region.clone(),
            EpochsUnavailable {
                reason,
                detail,
                held_from: None,
            },
        );
    }

    fn refuse_epochs_read(&mut self, region: &RegionId, reason: String) -> GlobalMessageError {
        self.counters.epochs_reads_refused += 1;
        let detail = format!("its answer was refused: {reason}");
        self.region_unavailable(region, proto::EpochsUnavailableReason::Other, detail);
        GlobalMessageError::Invalid(format!(
            "epochs read from region {region} refused: {reason}"
        ))
    }

    /// Ends the catch-up once the region appended every epoch the coordinator released.
    fn end_catch_up_when_done(&mut self) {
        let next_epoch = self.group.state_machine().global().epochs_applied_through() + 1;
        if self
            .epochs_missed
            .is_some_and(|(_, first_retained)| next_epoch >= first_retained)
        {
            self.epochs_missed = None;
            self.catch_up = CatchUp {
                last_read_id: self.catch_up.last_read_id,
                ..CatchUp::default()
            };
        }
    }

    /// True when every region the leader may ask said its log no longer holds the epochs.
    fn no_region_holds_missed_epochs(&self) -> bool {
        let regions = &self.config.catch_up_regions;
        regions.iter().all(|region| {
            self.catch_up
                .unavailable
                .get(region)
                .is_some_and(|unavailable| {
                    unavailable.reason == proto::EpochsUnavailableReason::Truncated
                })
        })
    }

    /// Why this region cannot take global calls, when the coordinator released epochs it had
    /// not appended (docs/global-protocol.md section 7): it cannot append the global
    /// sequence past them until it has read them from another region's log, and when no
    /// region holds them any more, catching up needs a state transfer that is not
    /// implemented.
    pub fn global_catch_up_error(&self) -> Option<String> {
        let (first_missed, first_retained) = self.epochs_missed?;
        let released = format!(
            "the coordinator released sealed epochs {first_missed} to {} before region {} \
             appended them (the region was out of the membership longer than the coordinator \
             retains epochs for it)",
            first_retained - 1,
            self.config.region
        );
        let appended = self.region_log().global().epochs_applied_through();
        if self.config.catch_up_regions.is_empty() {
            return Some(format!(
                "{released}; no other region is configured to read them from, so the region \
                 cannot append later epochs without a hole and its global calls are refused"
            ));
        }
        if self.no_region_holds_missed_epochs() {
            let reasons: Vec<String> = self
                .catch_up
                .unavailable
                .iter()
                .map(|(region, unavailable)| format!("{region}: {}", unavailable.detail))
                .collect();
            let waiting_for = match self.catch_up.sealed_mark {
                SealedMarkHeard::Known(_) => {
                    "it skips them to an epoch end another region's log holds, then adopts \
                     its global objects' checkpoints from other regions"
                }
                SealedMarkHeard::NotHeard => {
                    "it skips them once the coordinator says which of its records they sealed"
                }
                SealedMarkHeard::Unknown => {
                    "it cannot skip them: the coordinator does not know which of its records \
                     they sealed (its state was written by an older release), so the region \
                     must be rebuilt from another region's data"
                }
            };
            return Some(format!(
                "{released}; no region still holds epoch {} in its log ({}); {waiting_for}; its \
                 global calls are refused until then",
                appended + 1,
                reasons.join("; ")
            ));
        }
        Some(format!(
            "{released}; the region is reading them from other regions' logs (appended \
             through epoch {appended}) and refuses global calls until it has"
        ))
    }

    /// One part of a sealed epoch from the coordinator. The leader proposes it as one raft
    /// entry; the coordinator learns what is appended from the answers to its deliveries
    /// ([`RegionNode::answer_sealed_epoch`]). A follower refuses it with
    /// [`GlobalMessageError::NotLeader`]. The sender's time moves this node's clock.
    pub fn handle_sealed_epoch(
        &mut self,
        now_us: u64,
        epoch: proto::SealedEpoch,
    ) -> Result<(), GlobalMessageError> {
        self.now_us = now_us;
        self.observe_sender_time(now_us, epoch.sender_time)?;
        if !self.is_leader() {
            return Err(GlobalMessageError::NotLeader {
                leader_hint: self.group.leader_id().filter(|&leader| leader != self.id()),
            });
        }
        let part = EpochPart::from_wire(epoch).map_err(GlobalMessageError::Invalid)?;
        let key = (part.epoch_number, part.part_index);
        let next_expected = self.next_expected_part();
        if key < next_expected {
            // Appended already: the answer to this delivery says so.
            return Ok(());
        }
        self.shipping.enter_term(self.group.term());
        let timeout_ticks = self.config.proposal_timeout_ticks;
        if self
            .shipping
            .part_in_flight(key.0, key.1, self.ticks, timeout_ticks)
        {
            return Ok(());
        }
        // Parts apply only in order, but the network reorders them: the part the log needs
        // next is always proposed (again, if an earlier proposal was lost), the part after the
        // newest proposed too, and a later one waits until the gap fills.
        let next_to_propose = self.shipping.next_to_propose().unwrap_or(next_expected);
        if key != next_expected && key > next_to_propose {
            if !self.shipping.hold_early(part) {
                return Err(GlobalMessageError::Overloaded(format!(
                    "{} epoch parts wait for an earlier part (EARLY_EPOCH_PARTS_MAX)",
                    crate::global::shipping::EARLY_EPOCH_PARTS_MAX
                )));
            }
            return Ok(());
        }
        self.propose_epoch_part(&part)?;
        // The held parts that now follow in order.
        while let Some(following) = self.shipping.next_to_propose()
            && let Some(held) = self.shipping.take_early(following, next_expected)
        {
            self.propose_epoch_part(&held)?;
        }
        Ok(())
    }

    fn propose_epoch_part(&mut self, part: &EpochPart) -> Result<(), GlobalMessageError> {
        if self.shipping.parts_full() {
            return Err(GlobalMessageError::Overloaded(format!(
                "{} epoch parts wait to be applied (EPOCH_PARTS_PROPOSED_MAX)",
                crate::global::EPOCH_PARTS_PROPOSED_MAX
            )));
        }
        self.group
            .propose(encode_epoch_part(part))
            .map_err(|_| GlobalMessageError::NotLeader {
                leader_hint: self.group.leader_id().filter(|&leader| leader != self.id()),
            })?;
        self.counters.epoch_parts_proposed += 1;
        self.shipping.part_proposed(
            part.epoch_number,
            part.part_index,
            part.part_count,
            self.ticks,
        );
        Ok(())
    }

    /// A raft message from another member, as bytes from the network.
    pub fn handle_raft_message(&mut self, bytes: &[u8]) -> Result<(), MessageError> {
        let message = decode_message(bytes)?;
        self.handle_raft_message_decoded(message)
    }

    /// A raft message from another member, already decoded. A snapshot goes to raft only
    /// once this node holds every entry it stands on; until then the node fetches them
    /// ([`RegionOutput::FetchLogRange`], see [`crate::snapshot_catch_up`]).
    pub fn handle_raft_message_decoded(&mut self, message: Message) -> Result<(), MessageError> {
        if message.get_msg_type() != MessageType::MsgSnapshot || message.to != self.id() {
            self.group.step(message)?;
            return Ok(());
        }
        let log = self.group.state_machine();
        let span = log
            .snapshot_span(&message.get_snapshot().data)
            .map_err(|reason| StepError::InvalidSnapshot {
                from: message.from,
                error: SnapshotError::new(format!("region log {reason}")),
            })?;
        let held = (log.first_retained_position(), log.next_position());
        let staging = span
            .state
            .map(|to_fetch| log.stage_state(&to_fetch, span.next_position));
        let mut members = self.group.voters();
        members.extend(self.group.learners());
        if let Some(message) =
            self.snapshot_catch_up
                .offer(message, span, held, &members, self.id(), staging)
        {
            self.group.step(message)?;
        }
        self.queue_log_fetch();
        Ok(())
    }

    /// The answer to a [`RegionOutput::FetchLogRange`] from `peer`, or why the driver got
    /// none. Entries that are what was asked are written to `store` (unsynced: restoring the
    /// snapshot is a synced write after them); the snapshot goes to raft once its range is
    /// whole. An answer that is not what was asked is dropped and the next peer asked. A
    /// store error is fatal, as in [`RegionNode::handle_ready`].
    pub fn handle_log_range(
        &mut self,
        fetch_id: u64,
        reply: Result<LogRangeReply, String>,
        store: &mut impl DurableStore,
    ) -> Result<(), StoreError> {
        let live = self.group.state_machine().checkpoint_space();
        self.snapshot_catch_up.drop_fetch_into(live);
        match self.snapshot_catch_up.receive(fetch_id, reply, &*store) {
            PieceOutcome::Ignored => {}
            PieceOutcome::Failed(reason) => {
                self.counters.log_fetches_refused += 1;
                self.last_log_fetch_error = Some(reason);
            }
            PieceOutcome::Entries {
                batch,
                complete,
                staged,
            } => {
                store.write(batch, false)?;
                if let Some((staging, to_fetch)) = &staged
                    && !self
                        .group
                        .state_machine_mut()
                        .note_staged(staging, to_fetch)
                {
                    self.last_log_fetch_error = Some(
                        "the checkpoint state was fetched into the space this node switched to \
                         meanwhile; the next snapshot fetches it again"
                            .to_owned(),
                    );
                    return Ok(());
                }
                if let Some(message) = complete
                    && let Err(error) = self.group.step(message)
                {
                    self.last_log_fetch_error =
                        Some(format!("raft refused the completed snapshot: {error}"));
                }
            }
        }
        self.queue_log_fetch();
        Ok(())
    }

    /// Answers a peer's [`LogRangeRequest`] from this node's log and `store`.
    pub fn answer_log_range(
        &self,
        store: &dyn DurableStore,
        request: &LogRangeRequest,
    ) -> Result<LogRangeReply, StoreError> {
        answer_log_range(self.group.state_machine(), store, request)
    }

    fn queue_log_fetch(&mut self) {
        self.snapshot_catch_up.overtaken(self.group.applied_index());
        let live = self.group.state_machine().checkpoint_space();
        self.snapshot_catch_up.drop_fetch_into(live);
        if let Some(fetch) = self.snapshot_catch_up.poll_fetch(self.ticks) {
            self.log_fetches.push_back(fetch);
        }
    }

    /// One tick of the driver's clock: raft elections and heartbeats, and proposal timeouts.
    pub fn handle_tick(&mut self, now_us: u64) {
        self.now_us = now_us;
        self.ticks += 1;
        // The hybrid clock never moves back: after the physical clock leapt forward (before a
        // verdict fenced the node) and back, it stays ahead, and so does every timestamp the
        // node stamps: as leader, its records and closed timestamps would wait for a watermark
        // that far ahead, and the coordinator refuses its batches beyond the bound. So the
        // node fences itself until its physical clock catches up, as a coordinator replica
        // does.
        let runs_ahead_us = self.clock.runs_ahead_of(now_us);
        if runs_ahead_us.is_some() != self.clock_runs_ahead_us.is_some() {
            self.clock_runs_ahead_us = runs_ahead_us;
            self.update_fence();
        }
        if self.clock_fence.is_some() {
            self.tick_fenced();
        } else {
            // Reading the clock on every tick keeps the hybrid clock near physical time.
            let _ = self.clock.now(now_us);
            self.group.tick();
        }
        self.queue_log_fetch();
        self.expire_waiters();
        self.expire_syncs_and_uploads();
        self.expire_adoption_reads(now_us);
        if self.is_leader() && self.clock_fence.is_none() {
            self.shipping.enter_term(self.group.term());
            self.propose_close_batch(now_us);
            self.ship_batches(true);
            self.ask_epochs(now_us);
        }
    }

    /// When the leader of a busy region closes its next batch, in microseconds since the UNIX
    /// epoch: one epoch interval after its last close. A batch closes every epoch interval,
    /// and ticks alone would close one per tick when the epoch is shorter than the tick
    /// (10 ms epochs, 20 ms raft ticks): a driver wakes the node at this time
    /// ([`RegionNode::handle_close_due`]). None when no close waits on time: not the leader,
    /// clock fenced, no global tier, an idle region (it closes at its idle pace, on ticks), or
    /// no close made yet in this term (the next tick makes the first).
    pub fn close_due_at_us(&self) -> Option<u64> {
        if !self.is_leader()
            || self.clock_fence.is_some()
            || !self.shipping.is_term(self.group.term())
            || !self.close_pace()?
        {
            return None;
        }
        self.shipping
            .next_close_at_us(self.config.epoch_interval_us)
    }

    /// The time [`RegionNode::close_due_at_us`] named has come: the leader closes a batch if
    /// one is due (a tick may have closed it already).
    pub fn handle_close_due(&mut self, now_us: u64) {
        self.now_us = now_us;
        if self.is_leader()
            && self.clock_fence.is_none()
            && self.shipping.is_term(self.group.term())
        {
            self.propose_close_batch(now_us);
        }
    }

    /// A tick while the clock is fenced: raft ticks (the group sends no vote requests, see
    /// [`RaftGroup::set_may_campaign`]), a leader hands leadership to a peer, preferring the
    /// one whose log is longest, and the hybrid clock is not moved by the physical one.
    fn tick_fenced(&mut self) {
        self.group.tick();
        self.group.hand_leadership_away(|_| 0);
    }

    /// Runs the node's outstanding work: proposes the waiting proposals as batches, then
    /// handles raft rounds through `io` (see [`RaftGroup::handle_ready`] for the order) until
    /// none is left or [`READY_ROUNDS_PER_CALL_MAX`] ran. The driver calls it after every
    /// input. An error is fatal: the node MUST be dropped and opened again from its store.
    pub fn handle_ready(&mut self, io: &mut impl ReadyIo) -> Result<(), ReadyError> {
        self.propose_pending();
        self.ask_reads();
        for _ in 0..READY_ROUNDS_PER_CALL_MAX {
            let applied = self.group.handle_ready(io)?;
            self.counters.rounds += 1;
            self.handle_applied(applied);
            // Applied parts make room for the next ones read from another region, which this
            // same call hands to raft.
            self.propose_read_parts();
            self.handle_read_states();
            if !self.group.has_ready() {
                break;
            }
        }
        // A snapshot stepped since the last call was restored (or dropped) by these rounds.
        self.snapshot_catch_up.ready_ran();
        self.complete_syncs();
        self.end_catch_up_when_done();
        if self.is_leader() {
            // A fenced leader hands leadership away and sends nothing stamped meanwhile.
            if self.clock_fence.is_none() {
                self.shipping.enter_term(self.group.term());
                self.ship_batches(false);
                // The next read goes out as soon as the parts of the last one are applied.
                self.ask_epochs(self.now_us);
            }
        } else {
            self.shipping.clear();
            self.catch_up.in_flight = None;
            self.catch_up.held.clear();
        }
        Ok(())
    }

    /// True when [`RegionNode::handle_ready`] has work to do.
    pub fn has_ready(&self) -> bool {
        !self.pending.is_empty() || self.read_wanted || self.group.has_ready()
    }

    /// How many of the next ticks would only count, so that a driver whose ticks come every
    /// `tick_interval_us` may run them late, all at once before its next input (see
    /// [`RaftGroup::quiet_ticks`]). Nothing may wait on a tick deadline (a proposal, barrier,
    /// upload, session open or sealed epoch read): then a follower only waits for its election
    /// timeout. A leader of an idle region in a global tier also waits for its next idle close,
    /// ask or resend, which are due by time: no tick before that time, as of `now_us`, is
    /// quiet. A busy region's leader closes every epoch and has no quiet tick.
    pub fn quiet_ticks(&self, now_us: u64, tick_interval_us: u64) -> u64 {
        let waiting = self.has_ready()
            || !self.waiter_deadlines.is_empty()
            || !self.syncs.is_empty()
            || !self.uploads.is_empty()
            || !self.session_opens.is_empty()
            || !self.session_closes.is_empty()
            || !self.epoch_reads.is_empty()
            || self.epoch_read_wanted
            // A snapshot waiting for entries times its pieces out by ticks, and so does a
            // read of missed epochs from another region.
            || self.snapshot_catch_up.missing().is_some()
            || self.catch_up.in_flight.is_some()
            || self.epochs_missed.is_some();
        if waiting {
            return 0;
        }
        let raft_quiet = self.group.quiet_ticks();
        if !(self.is_leader() && self.config.global_tier) {
            return raft_quiet;
        }
        // The next tick comes within one interval, and the k-th quiet one within k intervals:
        // every quiet tick must come before the due time.
        let until_due_us = self.leader_due_at_us().saturating_sub(now_us);
        raft_quiet.min(until_due_us.saturating_sub(1) / tick_interval_us.max(1))
    }

    // Commands.

    /// Asks this node, if it leads, to hand leadership to `to`. Proposals are dropped while
    /// the transfer is under way.
    pub fn transfer_leader(&mut self, to: u64) {
        self.group.transfer_leader(to);
    }

    /// Proposes adding `node_id` as a learner: it catches up (by snapshot) without counting
    /// for the quorum. Promote it with [`RegionNode::promote_member`] once it caught up.
    pub fn add_learner(&mut self, node_id: u64) -> Result<(), GroupProposeError> {
        self.propose_membership(ConfChangeType::AddLearnerNode, node_id)
    }

    /// Proposes making `node_id` (a learner) a voter.
    pub fn promote_member(&mut self, node_id: u64) -> Result<(), GroupProposeError> {
        self.propose_membership(ConfChangeType::AddNode, node_id)
    }

    /// Proposes removing `node_id` from the group.
    pub fn remove_member(&mut self, node_id: u64) -> Result<(), GroupProposeError> {
        self.propose_membership(ConfChangeType::RemoveNode, node_id)
    }

    // Outputs.

    /// The next output of any kind, `None` once every output was taken. Drivers call it after
    /// every input and every [`RegionNode::handle_ready`] until it returns `None`. Answers
    /// come first (callers wait for them), messages to the coordinator last.
    pub fn poll_output(&mut self) -> Option<RegionOutput> {
        if let Some(reply) = self.replies.pop_front() {
            return Some(RegionOutput::Reply(reply));
        }
        if let Some(reply) = self.sync_replies.pop_front() {
            return Some(RegionOutput::SyncReply(reply));
        }
        if let Some(reply) = self.upload_replies.pop_front() {
            return Some(RegionOutput::CheckpointReply(reply));
        }
        if let Some(reply) = self.session_replies.pop_front() {
            return Some(RegionOutput::SessionReply(reply));
        }
        if let Some(reply) = self.session_close_replies.pop_front() {
            return Some(RegionOutput::SessionCloseReply(reply));
        }
        if let Some(read) = self.epoch_reads.pop_front() {
            return Some(RegionOutput::SealedEpochRead(read));
        }
        if let Some(event) = self.log_events.pop_front() {
            return Some(RegionOutput::LogEvent(event));
        }
        if let Some(alarm) = self.alarms.pop_front() {
            return Some(RegionOutput::DivergenceAlarm(alarm));
        }
        if let Some(fetch) = self.log_fetches.pop_front() {
            return Some(RegionOutput::FetchLogRange(fetch));
        }
        if let Some(read) = self.catch_up.queued.take() {
            return Some(RegionOutput::EpochsRead(read));
        }
        if let Some(read) = self.adoptions.poll_read() {
            return Some(RegionOutput::CheckpointRead(read));
        }
        self.to_coordinator
            .pop_front()
            .map(RegionOutput::ToCoordinator)
    }

    /// What the region has appended of the sealed epochs, stamped now: the answer to a
    /// delivery the driver must give at once.
    pub fn sealed_epoch_ack(&mut self, now_us: u64) -> proto::SealedEpochAck {
        self.now_us = now_us;
        self.epoch_ack()
    }

    /// One part of a sealed epoch, answered at once: [`RegionNode::handle_sealed_epoch`], then
    /// [`RegionNode::sealed_epoch_ack`] on the leader, or an acknowledgement carrying
    /// `not_leader` (with the leader's id, when known) on a follower, so that the coordinator
    /// moves its deliveries there. Production answers `RegionEpochs.Deliver` with it and the
    /// simulator answers a delivery with it; an error means the part was refused.
    pub fn answer_sealed_epoch(
        &mut self,
        now_us: u64,
        epoch: proto::SealedEpoch,
    ) -> Result<proto::SealedEpochAck, GlobalMessageError> {
        match self.handle_sealed_epoch(now_us, epoch) {
            Ok(()) => Ok(self.sealed_epoch_ack(now_us)),
            Err(GlobalMessageError::NotLeader { leader_hint }) => Ok(proto::SealedEpochAck {
                region: self.config.region.as_str().to_owned(),
                not_leader: Some(proto::NotLeader {
                    leader_node_id: leader_hint.unwrap_or(0),
                    leader_address: String::new(),
                }),
                sender_time: Some(self.clock.last().into()),
                ..proto::SealedEpochAck::default()
            }),
            Err(error) => Err(error),
        }
    }

    // Internals.

    fn propose_membership(
        &mut self,
        change_type: ConfChangeType,
        node_id: u64,
    ) -> Result<(), GroupProposeError> {
        let mut change = ConfChange::default();
        change.set_change_type(change_type);
        change.node_id = node_id;
        self.group.propose_conf_change(change)
    }

    /// Proposes the queue as batches of at most [`BATCH_RECORDS_MAX`] records and
    /// [`BATCH_BYTES_MAX`] bytes (a larger record alone).
    fn propose_pending(&mut self) {
        while !self.pending.is_empty() {
            let mut count = 0;
            let mut size_bytes = 0;
            for proposal in &self.pending {
                let next_size_bytes = size_bytes + proposal.encoded.len();
                if count == BATCH_RECORDS_MAX || (count > 0 && next_size_bytes > BATCH_BYTES_MAX) {
                    break;
                }
                count += 1;
                size_bytes = next_size_bytes;
            }
            let batch: Vec<PendingProposal> = self.pending.drain(..count).collect();
            let data = encode_batch(batch.iter().map(|proposal| proposal.encoded.as_slice()));
            match self.group.propose(data) {
                Ok(()) => {
                    self.counters.entries_proposed += 1;
                    self.counters.records_proposed += count as u64;
                }
                Err(_) => {
                    for proposal in batch {
                        let key = (proposal.client_id, proposal.request_sequence);
                        if self.waiters.remove(&key).is_some() {
                            self.reply_refused(key, ProposeError::Dropped);
                        }
                    }
                }
            }
        }
    }

    fn handle_applied(&mut self, applied: Vec<Applied<EntryOutcome>>) {
        for item in applied {
            match item {
                Applied::Entry {
                    output: EntryOutcome::Records(outcomes),
                    ..
                } => {
                    for outcome in outcomes {
                        self.handle_record_outcome(outcome);
                    }
                }
                Applied::Entry {
                    output:
                        EntryOutcome::EpochPart {
                            epoch_number,
                            part_index,
                            appended,
                            ..
                        },
                    ..
                } => {
                    for outcome in appended {
                        self.handle_record_outcome(outcome);
                    }
                    // Applied or ignored, this proposal is done: a later delivery of the same
                    // part is proposed again.
                    self.shipping.forget_part(epoch_number, part_index);
                    let next_expected = self.next_expected_part();
                    let timeout_ticks = self.config.proposal_timeout_ticks;
                    self.shipping
                        .forget_parts(next_expected, self.ticks, timeout_ticks);
                }
                Applied::Entry {
                    output:
                        EntryOutcome::EpochsSkipped {
                            first_skipped,
                            through_epoch,
                            ignored,
                            appended,
                            ..
                        },
                    ..
                } => {
                    if ignored.is_none() {
                        self.counters.epoch_skips_applied += 1;
                        self.counters.epochs_skipped += through_epoch + 1 - first_skipped;
                        self.counters.records_sealed_in_skipped_epochs +=
                            appended.len().saturating_sub(1) as u64;
                    }
                    for outcome in appended {
                        self.handle_record_outcome(outcome);
                    }
                }
                Applied::Entry {
                    output:
                        EntryOutcome::Checkpoint {
                            proposer,
                            object_id,
                            outcome,
                        },
                    ..
                } => self.handle_checkpoint_applied(proposer, &object_id, outcome),
                Applied::Entry {
                    output:
                        EntryOutcome::Adoption {
                            proposer,
                            object_id,
                            outcome,
                        },
                    ..
                } => self.handle_adoption_applied(proposer, &object_id, outcome),
                Applied::Entry {
                    output:
                        EntryOutcome::SessionOpened {
                            proposer,
                            session_id,
                            outcome,
                        },
                    ..
                } => {
                    let (node_id, open_id) = proposer;
                    if node_id == self.id() && self.session_opens.remove(&open_id).is_some() {
                        self.push_session_reply(SessionReply {
                            open_id,
                            session_id,
                            result: outcome.map_err(OpenSessionError::Full),
                        });
                    }
                }
                Applied::Entry {
                    output:
                        EntryOutcome::SessionClosed {
                            proposer,
                            session_id,
                            was_open,
                        },
                    ..
                } => {
                    let (node_id, close_id) = proposer;
                    if node_id == self.id() && self.session_closes.remove(&close_id).is_some() {
                        self.push_session_close_reply(SessionCloseReply {
                            close_id,
                            session_id,
                            result: Ok(was_open),
                        });
                    }
                }
                // A refused entry appended nothing; its proposers time out and retry. A
                // closed batch is shipped after the round.
                Applied::Entry {
                    output: EntryOutcome::Refused { .. } | EntryOutcome::BatchClosed(_),
                    ..
                }
                | Applied::Membership { .. } => {}
                Applied::Snapshot { .. } => self.handle_restored(),
            }
        }
    }

    fn handle_record_outcome(&mut self, outcome: RecordOutcome) {
        match outcome {
            RecordOutcome::Appended { position, entry } => {
                self.counters.records_applied += 1;
                let completes = match &entry {
                    LogEntry::Regional(record) => Some(record),
                    LogEntry::SequencedGlobal { record, .. }
                        if record.origin_region == self.config.region =>
                    {
                        Some(record)
                    }
                    _ => None,
                }
                .map(|record| (record.client_id, record.request_sequence));
                if let LogEntry::EpochSealed { epoch_number, .. } = &entry {
                    self.epoch_ends.note(*epoch_number, position);
                }
                self.push_log_event(LogEvent::Applied { position, entry });
                if let Some(key) = completes
                    && self.waiters.remove(&key).is_some()
                {
                    self.reply_proposed(key, position);
                }
            }
            RecordOutcome::Duplicate {
                client_id,
                request_sequence,
                position,
            } => {
                let key = (client_id, request_sequence);
                // A global call still unsealed keeps waiting for its sealed copy.
                if !self.is_unsealed(key) && self.waiters.remove(&key).is_some() {
                    self.reply_proposed(key, position);
                }
            }
            RecordOutcome::TooOld {
                client_id,
                request_sequence,
                floor,
            } => {
                let key = (client_id, request_sequence);
                if self.waiters.remove(&key).is_some() {
                    self.reply_refused(key, ProposeError::TooOld { floor });
                }
            }
            RecordOutcome::UnknownSession {
                client_id,
                request_sequence,
            } => {
                let key = (client_id, request_sequence);
                if self.waiters.remove(&key).is_some() {
                    self.reply_refused(key, self.unknown_session(client_id));
                }
            }
            RecordOutcome::Overloaded {
                client_id,
                request_sequence,
                bound,
            } => {
                let key = (client_id, request_sequence);
                if self.waiters.remove(&key).is_some() {
                    self.reply_refused(key, ProposeError::GlobalOverloaded { bound });
                }
            }
            RecordOutcome::LogFull {
                client_id,
                request_sequence,
                reason,
            } => {
                let key = (client_id, request_sequence);
                if self.waiters.remove(&key).is_some() {
                    self.reply_refused(key, ProposeError::LogFull { reason });
                }
            }
        }
    }

    // Adopting global objects' checkpoints from other regions (crate::global::adoption).

    /// The newest checkpoint of `object_id` as a caller starts from it (`FetchCheckpoint`),
    /// read from `store`, the store this node persists to. When the region released records
    /// of the object without a checkpoint and the caller says it is a global object
    /// (`global`), the node also starts adopting the object's checkpoint from another region
    /// of `catch_up_regions`: a caller that asks again once it applied finds it.
    pub fn fetch_checkpoint(
        &mut self,
        store: &dyn DurableStore,
        now_us: u64,
        object_id: &dsss_wire::ObjectId,
        global: bool,
    ) -> Result<crate::checkpoint::CheckpointFetch, StoreError> {
        self.now_us = now_us;
        let mut fetch = self
            .group
            .state_machine()
            .fetch_checkpoint(store, object_id)?;
        if global
            && let Some(skipped) = self
                .group
                .state_machine()
                .checkpoint_stale_by_skip(store, object_id)?
        {
            // The checkpoint kept (if any) misses the object's records in skipped epochs.
            fetch.released_through = fetch.released_through.max(skipped);
        }
        if global && fetch.released_through > 0 {
            let sender_time = self.clock.now(now_us).into();
            self.adoptions.start(object_id, sender_time, now_us);
        }
        Ok(fetch)
    }

    /// Serves another region's read of a global object's checkpoint from this node's applied
    /// state (any member does; `store` is the store this node persists to). Never panics: a
    /// read that cannot be served is answered with the reason.
    pub fn answer_checkpoint_read(
        &mut self,
        store: &dyn DurableStore,
        now_us: u64,
        request: proto::ReadCheckpointRequest,
    ) -> proto::ReadCheckpointReply {
        self.now_us = now_us;
        self.adoptions.served();
        let served = match self.observe_sender_time(now_us, request.sender_time) {
            Err(error) => Err(error.to_string()),
            Ok(()) => dsss_wire::ObjectId::new(&request.object_id)
                .map_err(|error| format!("object_id: {error}"))
                .and_then(|object_id| {
                    serve_checkpoint_read(self.group.state_machine(), store, &object_id)
                }),
        };
        let sender_time = self.clock.now(now_us).into();
        checkpoint_read_reply(&self.config.region, &request.object_id, served, sender_time)
    }

    /// The answer to a [`CheckpointRead`]: the other region's reply, or why the driver got
    /// none. A checkpoint that passes [`check_checkpoint_reply`] is proposed as an adoption
    /// entry; a region that cannot serve it, or an answer that breaks a rule, moves the
    /// adoption to the next region. An answer to a read no adoption waits for is ignored.
    /// Returns whether an entry was proposed; the error names what was wrong with a refused
    /// answer.
    pub fn handle_checkpoint_read_reply(
        &mut self,
        now_us: u64,
        read_id: u64,
        reply: Result<proto::ReadCheckpointReply, String>,
    ) -> Result<bool, GlobalMessageError> {
        self.now_us = now_us;
        let Some((object_id, region)) = self.adoptions.reading(read_id) else {
            return Ok(false);
        };
        let checked = reply.map(|reply| {
            let sender_time = reply.sender_time;
            self.observe_sender_time(now_us, sender_time)
                .map_err(|error| error.to_string())
                .and_then(|()| check_checkpoint_reply(&region, &object_id, reply))
        });
        let adopted = match checked {
            Ok(Ok(Ok(adopted))) => adopted,
            Err(reason) | Ok(Ok(Err(reason))) => {
                let reason = format!("region {region}: {reason}");
                self.adoption_read_failed(&object_id, reason, false, now_us);
                return Ok(false);
            }
            Ok(Err(reason)) => {
                let reason = format!("the answer of region {region} was refused: {reason}");
                self.adoption_read_failed(&object_id, reason.clone(), true, now_us);
                return Err(GlobalMessageError::Invalid(reason));
            }
        };
        let entry = encode_adoption_entry(&adopted, (self.group.id(), read_id));
        if self.group.leader_id().is_none() || self.group.propose(entry).is_err() {
            let reason = "no leader took the adoption entry".to_owned();
            self.adoption_read_failed(&object_id, reason, false, now_us);
            return Ok(false);
        }
        self.adoptions
            .proposed(&object_id, self.ticks + self.config.proposal_timeout_ticks);
        Ok(true)
    }

    fn adoption_read_failed(
        &mut self,
        object_id: &dsss_wire::ObjectId,
        reason: String,
        refused: bool,
        now_us: u64,
    ) {
        let sender_time = self.clock.now(now_us).into();
        self.adoptions
            .read_failed(object_id, reason, refused, sender_time, now_us);
    }

    /// Asks the next region for the adoptions whose read went unanswered, and gives up those
    /// whose entry did not apply in time.
    fn expire_adoption_reads(&mut self, now_us: u64) {
        for object_id in self.adoptions.expired(now_us, self.ticks) {
            let reason = format!(
                "no answer within {} ms",
                crate::global::adoption::ADOPTION_READ_TIMEOUT_US / 1000
            );
            self.adoption_read_failed(&object_id, reason, false, now_us);
        }
    }

    fn handle_adoption_applied(
        &mut self,
        proposer: (u64, u64),
        object_id: &dsss_wire::ObjectId,
        outcome: Result<crate::global::adoption::AdoptionOutcome, CheckpointRefusal>,
    ) {
        let (node_id, read_id) = proposer;
        if node_id != self.id() {
            return;
        }
        let goes_on = self.adoptions.applied(
            object_id,
            read_id,
            outcome.map_err(|error| error.to_string()),
        );
        if goes_on {
            let now_us = self.now_us;
            let sender_time = self.clock.now(now_us).into();
            self.adoptions.ask_again(object_id, sender_time, now_us);
        }
    }

    fn handle_checkpoint_applied(
        &mut self,
        proposer: (u64, u64),
        object_id: &dsss_wire::ObjectId,
        outcome: Result<CheckpointOutcome, CheckpointRefusal>,
    ) {
        if outcome == Ok(CheckpointOutcome::HashMismatch)
            && let Some(alarm) = self
                .group
                .state_machine()
                .checkpoints()
                .newest_alarm()
                .filter(|alarm| &alarm.object_id == object_id)
                .cloned()
        {
            if self.alarms.len() >= DIVERGENCE_ALARMS_PENDING_MAX {
                self.alarms.pop_front();
            }
            self.alarms.push_back(alarm);
        }
        let (node_id, upload_id) = proposer;
        if node_id != self.id() || self.uploads.remove(&upload_id).is_none() {
            return;
        }
        let result = outcome.map_err(|refusal| match refusal {
            CheckpointRefusal::ResourceExhausted(reason) => UploadError::ResourceExhausted(reason),
            CheckpointRefusal::Invalid(reason) => UploadError::Invalid(reason),
        });
        self.push_upload_reply(CheckpointReply { upload_id, result });
    }

    /// Asks raft for a leadership-confirmed read, and the driver for a sealed epoch read,
    /// when a barrier arrived since the last ones (or the last read went unanswered).
    fn ask_reads(&mut self) {
        if std::mem::take(&mut self.read_wanted) {
            let context = read_context(self.id(), self.next_read_id);
            self.group.read_index(context);
            self.next_read_id += 1;
            self.last_read_tick = self.ticks;
            self.counters.read_indexes_asked += 1;
        }
        if std::mem::take(&mut self.epoch_read_wanted) {
            if self.epoch_reads.len() >= SEALED_EPOCH_READS_PENDING_MAX {
                self.epoch_reads.pop_front();
            }
            let request = proto::ReadSealedEpochRequest {
                sender_node_id: self.id(),
                sender_time: Some(self.clock.now(self.now_us).into()),
            };
            self.epoch_reads.push_back(SealedEpochRead {
                read_id: self.next_epoch_read_id,
                request,
            });
            self.next_epoch_read_id += 1;
        }
    }

    /// Gives the commit indices the leader confirmed to the barriers that asked before them.
    fn handle_read_states(&mut self) {
        for state in self.group.take_read_states() {
            let Some((node_id, read_id)) = parse_read_context(&state.request_ctx) else {
                continue;
            };
            if node_id != self.id() {
                continue;
            }
            for sync in self.syncs.values_mut() {
                if sync.read_index.is_none() && sync.read_after <= read_id {
                    sync.read_index = Some(state.index);
                }
            }
        }
    }

    /// Answers the barriers whose conditions hold: this node applied through the confirmed
    /// commit index and holds the confirmed sealed epoch.
    fn complete_syncs(&mut self) {
        let applied_index = self.group.applied_index();
        let log = self.group.state_machine();
        let epochs_applied_through = log.global().epochs_applied_through();
        let apply_through_position = log.last_position();
        let ready: Vec<(u64, u64)> = self
            .syncs
            .iter()
            .filter_map(|(&sync_id, sync)| {
                let read = sync.read_index.is_some_and(|index| index <= applied_index);
                let sealed_epoch = match sync.epoch_read_after {
                    None => Some(0),
                    Some(_) => sync
                        .sealed_epoch
                        .filter(|&epoch| epoch <= epochs_applied_through),
                };
                sealed_epoch.filter(|_| read).map(|epoch| (sync_id, epoch))
            })
            .collect();
        for (sync_id, sealed_epoch_number) in ready {
            self.syncs.remove(&sync_id);
            self.counters.syncs_ready += 1;
            self.push_sync_reply(SyncReply::Ready {
                sync_id,
                apply_through_position,
                sealed_epoch_number,
            });
        }
    }

    fn expire_syncs_and_uploads(&mut self) {
        let ticks = self.ticks;
        let expired: Vec<u64> = self
            .syncs
            .iter()
            .filter(|(_, sync)| sync.deadline <= ticks)
            .map(|(&sync_id, _)| sync_id)
            .collect();
        let timeout_ticks = self.config.proposal_timeout_ticks;
        for sync_id in expired {
            self.syncs.remove(&sync_id);
            self.refuse_sync(sync_id, SyncError::TimedOut { timeout_ticks });
        }
        // raft drops a read without a word when the leader changes or has not committed in
        // its term yet: ask again after an election timeout.
        let retry_ticks = self.config.group.election_tick as u64;
        if self.syncs.values().any(|sync| sync.read_index.is_none())
            && ticks.saturating_sub(self.last_read_tick) >= retry_ticks
        {
            self.read_wanted = true;
        }
        let expired: Vec<u64> = self
            .uploads
            .iter()
            .filter(|(_, deadline)| **deadline <= ticks)
            .map(|(&upload_id, _)| upload_id)
            .collect();
        for upload_id in expired {
            self.uploads.remove(&upload_id);
            self.push_upload_reply(CheckpointReply {
                upload_id,
                result: Err(UploadError::Dropped),
            });
        }
        let expired: Vec<(u64, u64)> = self
            .session_opens
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= ticks)
            .map(|(&open_id, &(session_id, _))| (open_id, session_id))
            .collect();
        for (open_id, session_id) in expired {
            self.session_opens.remove(&open_id);
            self.push_session_reply(SessionReply {
                open_id,
                session_id,
                result: Err(OpenSessionError::Dropped),
            });
        }
        let expired: Vec<(u64, u64)> = self
            .session_closes
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= ticks)
            .map(|(&close_id, &(session_id, _))| (close_id, session_id))
            .collect();
        for (close_id, session_id) in expired {
            self.session_closes.remove(&close_id);
            self.push_session_close_reply(SessionCloseReply {
                close_id,
                session_id,
                result: Err(CloseSessionError::Dropped),
            });
        }
    }

    fn push_session_close_reply(&mut self, reply: SessionCloseReply) {
        if self.session_close_replies.len() >= 2 * SESSION_CLOSES_IN_FLIGHT_MAX {
            self.session_close_replies.pop_front();
            self.counters.replies_dropped += 1;
        }
        self.session_close_replies.push_back(reply);
    }

    fn push_session_reply(&mut self, reply: SessionReply) {
        if self.session_replies.len() >= 2 * SESSION_OPENS_IN_FLIGHT_MAX {
            self.session_replies.pop_front();
            self.counters.replies_dropped += 1;
        }
        self.session_replies.push_back(reply);
    }

    fn unknown_session(&self, session_id: ClientId) -> ProposeError {
        ProposeError::UnknownSession {
            session_id: session_id.get(),
            idle_timeout_s: self.region_log().dedup().limits().idle_timeout_us / 1_000_000,
        }
    }

    fn refuse_sync(&mut self, sync_id: u64, error: SyncError) {
        self.counters.syncs_refused += 1;
        self.push_sync_reply(SyncReply::Refused { sync_id, error });
    }

    fn push_sync_reply(&mut self, reply: SyncReply) {
        // At most one answer per barrier waits: the queue never holds more than the barriers
        // in flight plus the ones refused since the last poll, which the driver drains after
        // every call.
        if self.sync_replies.len() >= 2 * SYNCS_IN_FLIGHT_MAX {
            self.sync_replies.pop_front();
            self.counters.replies_dropped += 1;
        }
        self.sync_replies.push_back(reply);
    }

    fn push_upload_reply(&mut self, reply: CheckpointReply) {
        if self.upload_replies.len() >= 2 * CHECKPOINT_UPLOADS_IN_FLIGHT_MAX {
            self.upload_replies.pop_front();
            self.counters.replies_dropped += 1;
        }
        self.upload_replies.push_back(reply);
    }

    /// After a snapshot, the waiters whose records it holds are answered from the dedup
    /// table, and subscribers learn that the log jumped.
    fn handle_restored(&mut self) {
        // An upload's entry may be inside the snapshot: its outcome is unknown here.
        for upload_id in std::mem::take(&mut self.uploads).into_keys() {
            self.push_upload_reply(CheckpointReply {
                upload_id,
                result: Err(UploadError::Dropped),
            });
        }
        // So may a session open's: the client opens again, which is idempotent.
        for (open_id, (session_id, _)) in std::mem::take(&mut self.session_opens) {
            self.push_session_reply(SessionReply {
                open_id,
                session_id,
                result: Err(OpenSessionError::Dropped),
            });
        }
        // And a close's: closing again is idempotent too.
        for (close_id, (session_id, _)) in std::mem::take(&mut self.session_closes) {
            self.push_session_close_reply(SessionCloseReply {
                close_id,
                session_id,
                result: Err(CloseSessionError::Dropped),
            });
        }
        let log = self.group.state_machine();
        self.push_log_event(LogEvent::Restored {
            first_retained_position: log.first_retained_position(),
            next_position: log.next_position(),
        });
        let keys: Vec<_> = self.waiters.keys().copied().collect();
        for key in keys {
            if self.is_unsealed(key) {
                continue;
            }
            match self
                .group
                .state_machine()
                .dedup()
                .check(key.0.get(), key.1.get())
            {
                DedupVerdict::Duplicate { position } => {
                    self.waiters.remove(&key);
                    self.reply_proposed(key, position);
                }
                DedupVerdict::TooOld { floor } => {
                    self.waiters.remove(&key);
                    self.reply_refused(key, ProposeError::TooOld { floor });
                }
                // The record may still come after the snapshot's point: it decides then.
                DedupVerdict::UnknownSession | DedupVerdict::New => {}
            }
        }
    }

    fn is_unsealed(&self, key: (ClientId, RequestSequence)) -> bool {
        self.group
            .state_machine()
            .global()
            .unsealed_position(key.0.get(), key.1.get())
            .is_some()
    }

    fn add_waiter(&mut self, key: (ClientId, RequestSequence)) {
        let deadline = self.ticks + self.config.proposal_timeout_ticks;
        self.waiters.insert(key, deadline);
        if self.waiter_deadlines.len() >= 2 * WAITERS_MAX {
            // Answered waiters leave their deadline behind until it passes; dropping those
            // keeps the queue within twice the live waiters.
            let waiters = &self.waiters;
            self.waiter_deadlines
                .retain(|(deadline, key)| waiters.get(key) == Some(deadline));
        }
        self.waiter_deadlines.push_back((deadline, key));
    }

    /// A retry of a global call whose pending record is applied: it waits for the sealed
    /// copy, proposing nothing.
    fn wait_for_seal(&mut self, key: (ClientId, RequestSequence)) {
        if self.waiters.contains_key(&key) {
            return;
        }
        if self.waiters.len() >= WAITERS_MAX {
            return self.reply_refused(key, ProposeError::Overloaded);
        }
        self.add_waiter(key);
    }

    /// Takes the time a coordinator message carries into the clock, refusing a time too far
    /// ahead.
    fn observe_sender_time(
        &mut self,
        now_us: u64,
        sender_time: Option<proto::Timestamp>,
    ) -> Result<(), GlobalMessageError> {
        let sender_time = sender_time
            .ok_or_else(|| GlobalMessageError::Invalid("sender_time is missing".to_owned()))?;
        let sender_time = Timestamp::try_from(sender_time)
            .map_err(|error| GlobalMessageError::Invalid(format!("sender_time: {error}")))?;
        if let Err(error) = self.clock.update(sender_time, now_us) {
            self.counters.clock_skew_refused += 1;
            return Err(GlobalMessageError::ClockSkew(error));
        }
        Ok(())
    }

    /// The (epoch, part) the region log takes next.
    fn next_expected_part(&self) -> (u64, u32) {
        let global = self.group.state_machine().global();
        (
            global.epochs_applied_through() + 1,
            global.parts_applied_of_next(),
        )
    }

    fn epoch_ack(&mut self) -> proto::SealedEpochAck {
        let global = self.group.state_machine().global();
        let (through, parts) = (
            global.epochs_applied_through(),
            global.parts_applied_of_next(),
        );
        proto::SealedEpochAck {
            region: self.config.region.as_str().to_owned(),
            appended_through_epoch_number: through,
            appended_parts_of_next_epoch: parts,
            not_leader: None,
            sender_time: Some(self.clock.now(self.now_us).into()),
        }
    }

    /// Proposes a `CloseBatch` when one is due (leader only).
    /// It carries the coordinator's acknowledgement, which makes the region forget the
    /// batches the coordinator took; at the outgoing bound it is proposed for that alone.
    ///
    /// A batch is due every epoch interval while the region is busy: its open batch holds a
    /// record, it is out of the membership or has closed no batch in its incarnation, or the
    /// coordinator's last answer asked for closes (records wait for the watermark somewhere).
    /// Otherwise the region is idle: it closes no batch, and shows the coordinator that it is
    /// alive with a liveness ask every `idle_close_interval_us`, which costs no raft entry on
    /// either side ([`RegionNode::ask_coordinator`]). It learns that closes are wanted from
    /// the coordinator leader, which tells it unasked when records arrive
    /// (`CoordinatorNode::wake_idle_regions`), and from the answer to its next ask. An idle
    /// leader that cannot ask (no close of its own acknowledged yet) closes at the idle pace.
    fn propose_close_batch(&mut self, now_us: u64) {
        let acknowledged = self.shipping.acknowledged();
        let Some(busy) = self.close_pace() else {
            return;
        };
        if !busy && self.ask_coordinator(now_us) {
            return;
        }
        let interval_us = if busy {
            self.config.epoch_interval_us
        } else {
            self.config.idle_close_interval_us
        };
        if !self.shipping.close_due(now_us, interval_us) {
            return;
        }
        let proposed_closed = self.clock.now(now_us);
        // A refused proposal (a leader transfer is under way) is made again next epoch.
        if self
            .group
            .propose(encode_close_batch(proposed_closed, acknowledged))
            .is_ok()
        {
            self.counters.close_batches_proposed += 1;
        }
    }

    /// Whether the leader may close a batch now and, if so, whether the region is busy (closes
    /// every epoch interval) rather than idle (see [`RegionNode::propose_close_batch`]). `None`
    /// without a global tier, or at the outgoing bound with nothing to prune.
    fn close_pace(&self) -> Option<bool> {
        let global = self.group.state_machine().global();
        if !self.config.global_tier {
            return None;
        }
        let can_close = global.can_close_batch();
        if !(can_close || global.acknowledgement_prunes(self.shipping.acknowledged())) {
            return None;
        }
        Some(
            !can_close
                || global.open_batch().next().is_some()
                || !global.is_member()
                || global.last_batch_number() == 0
                || self.shipping.closes_wanted(),
        )
    }

    /// When the leader of an idle region next has something to do on a tick, in microseconds
    /// since the UNIX epoch: its next idle close, its next ask of the coordinator, or its next
    /// resend of unacknowledged batches. 0 (due now) when the region is busy, or when anything
    /// else of the leader's waits on ticks (epoch parts in flight, a new term to enter).
    fn leader_due_at_us(&self) -> u64 {
        if !self.shipping.is_term(self.group.term()) {
            return 0;
        }
        // `None`, at the outgoing bound: only acknowledgements free it, and resends bring them.
        if self.close_pace().unwrap_or_default() {
            return 0;
        }
        let global = self.group.state_machine().global();
        let acknowledged = self.shipping.acknowledged();
        let unacknowledged = global
            .outgoing()
            .any(|batch| (batch.incarnation, batch.batch_number) > acknowledged);
        self.shipping.idle_due_at_us(
            self.config.idle_close_interval_us,
            self.resend_bounds(),
            unacknowledged,
        )
    }

    /// An idle leader's liveness ask: every `idle_close_interval_us`, and again after the
    /// resend interval while unanswered, it sends the newest batch the coordinator
    /// acknowledged in its incarnation again, without records. The coordinator answers a
    /// batch it took before from its applied state, with no raft entry, counts it as a sign
    /// of life while no records wait (so the region is not suspected for being idle), and
    /// its answer says whether closes are wanted. The closed timestamp is the region's last
    /// assigned timestamp, a promise it keeps anyway. False when the leader cannot ask: it
    /// has closed no batch in this term, or no batch of its incarnation is acknowledged (it
    /// then closes at the idle pace instead).
    fn ask_coordinator(&mut self, now_us: u64) -> bool {
        let (incarnation, batch_number) = self.shipping.acknowledged();
        let global = self.group.state_machine().global();
        if !self.shipping.has_closed() || incarnation != global.incarnation() || batch_number == 0 {
            return false;
        }
        if !self.shipping.ask_due(
            now_us,
            self.config.idle_close_interval_us,
            self.config.batch_resend_interval_us,
        ) {
            return true;
        }
        let closed = self.group.state_machine().last_assigned();
        let message = proto::RegionBatch {
            region: self.config.region.as_str().to_owned(),
            batch_number,
            records: Vec::new(),
            closed_timestamp: Some(closed.into()),
            sender_node_id: self.group.id(),
            sender_time: Some(self.clock.now(now_us).into()),
            incarnation,
        };
        self.counters.liveness_asks_sent += 1;
        self.push_to_coordinator(ToCoordinator::Batch(message));
        true
    }

    /// Sends the batches never sent in this term, and with `resend` the unacknowledged ones
    /// when the resend interval passed (leader only).
    fn ship_batches(&mut self, resend: bool) {
        let resend = resend.then(|| self.resend_bounds());
        let sent_before = self.shipping.sent();
        let due = self
            .shipping
            .due(self.group.state_machine().global(), self.now_us, resend);
        for batch in due {
            let message = self.region_batch(&batch);
            self.counters.batches_sent += 1;
            if (batch.incarnation, batch.batch_number) <= sent_before {
                self.counters.batches_resent += 1;
            }
            self.push_to_coordinator(ToCoordinator::Batch(message));
        }
    }

    fn resend_bounds(&self) -> ResendBounds {
        ResendBounds {
            min_us: self.config.batch_resend_interval_us,
            max_us: self.config.batch_resend_interval_max_us,
        }
    }

    fn region_batch(&mut self, batch: &OutgoingBatch) -> proto::RegionBatch {
        let global = self.group.state_machine().global();
        let records = global
            .batch_records(batch)
            .cloned()
            .map(proto::Record::from)
            .collect();
        proto::RegionBatch {
            region: self.config.region.as_str().to_owned(),
            batch_number: batch.batch_number,
            records,
            closed_timestamp: Some(batch.closed.into()),
            sender_node_id: self.group.id(),
            sender_time: Some(self.clock.now(self.now_us).into()),
            incarnation: batch.incarnation,
        }
    }

    fn push_to_coordinator(&mut self, message: ToCoordinator) {
        if self.to_coordinator.len() >= TO_COORDINATOR_PENDING_MAX {
            self.to_coordinator.pop_front();
            self.counters.to_coordinator_dropped += 1;
        }
        self.to_coordinator.push_back(message);
    }

    fn expire_waiters(&mut self) {
        while let Some(&(deadline, key)) = self.waiter_deadlines.front() {
            if deadline > self.ticks {
                break;
            }
            self.waiter_deadlines.pop_front();
            // The waiter may be gone (answered) or renewed by a later proposal.
            if self.waiters.get(&key) == Some(&deadline) {
                self.waiters.remove(&key);
                self.reply_refused(key, ProposeError::Dropped);
            }
        }
    }

    fn reply_proposed(&mut self, key: (ClientId, RequestSequence), position: u64) {
        self.push_reply(Reply::Proposed {
            client_id: key.0,
            request_sequence: key.1,
            position,
        });
    }

    fn reply_refused(&mut self, key: (ClientId, RequestSequence), error: ProposeError) {
        self.push_reply(Reply::Refused {
            client_id: key.0,
            request_sequence: key.1,
            error,
        });
    }

    fn push_reply(&mut self, reply: Reply) {
        if self.replies.len() >= REPLIES_PENDING_MAX {
            self.replies.pop_front();
            self.counters.replies_dropped += 1;
        }
        self.replies.push_back(reply);
    }

    fn push_log_event(&mut self, event: LogEvent) {
        if self.log_events.len() >= LOG_EVENTS_PENDING_MAX {
            self.log_events.pop_front();
            self.counters.log_events_dropped += 1;
        }
        self.log_events.push_back(event);
    }
}
