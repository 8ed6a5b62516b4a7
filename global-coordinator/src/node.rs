//! [`CoordinatorNode`]: one replica of the global coordinator, sans-IO.
//!
//! Method groups follow the sans-IO habit: getters; `handle_*` for inputs (a region batch, an
//! epoch acknowledgement, raft messages, a tick, a round of raft work); `poll_*` for outputs
//! (messages to regions). Raft messages to send and writes to persist leave through the
//! [`ReadyIo`] given to [`CoordinatorNode::handle_ready`], the one path both drivers call.
//!
//! Every replica applies the log and so seals the same epochs; only the leader talks to
//! regions. The leader:
//! - proposes each region batch as one entry; every submission is answered at once with a
//!   [`proto::RegionBatchAck`] of what is applied ([`CoordinatorNode::answer_region_batch`];
//!   a follower answers `not_leader`);
//! - sends each newly sealed epoch to every region, member or not, in parts of at most
//!   [`EPOCH_PART_BYTES_MAX`] bytes, and every resend interval resends from each region's
//!   acknowledged point (at most [`RESEND_MESSAGES_PER_REGION_MAX`] parts per region);
//! - proposes `EpochsAcknowledged` when a region's acknowledgements advanced (at most one
//!   entry per region per tick);
//! - tells regions in every answer whether records wait (`closes_wanted`), so that they
//!   close a batch every epoch then and only at their idle pace otherwise;
//! - proposes `Suspect` for a member whose closed timestamp has not advanced for the
//!   suspicion timeout, measured since the later of its last advance and the moment this node
//!   became leader (never for the last member: apply refuses it).
//!
//! A sealed epoch read (`ReadSealedEpoch`, behind a region's `Sync`) is answered only after the
//! leader confirms with a heartbeat round to a quorum that it still leads (raft's ReadIndex)
//! and has applied through the commit index it confirmed: a deposed leader that has not yet
//! heard of its successor cannot answer with a stale epoch. Reads arrive through
//! [`CoordinatorNode::handle_read_sealed_epoch`] and are answered through
//! [`CoordinatorNode::poll_output`]; a follower answers `not_leader` at once, and
//! a leader that cannot confirm within two election timeouts answers `not_leader` too.
//!
//! Every message out carries this node's hybrid logical clock (`sender_time`); every message
//! in updates it, and one whose time is further ahead than the maximum skew is refused with
//! [`InputError::ClockSkew`] and counted in [`CoordinatorCounters::refused_for_skew`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::{
    Applied, ClockSample, DecodeError, DurableStore, OpenError, RaftGroup, RaftGroupConfig,
    ReadyError, ReadyIo, Role, StepError, decode_message, group::ELECTION_TICK_MAX,
};
use dsss_wire::{
    ClockSkewError, HybridLogicalClock, Record, RegionId, ResendTimeout, Timestamp, proto,
};

use crate::codec::record_size_bytes;
use crate::entry::{BatchEntry, CoordinatorEntry, REGION_BATCH_RECORDS_MAX, check_batch};
use crate::leadership_return::{LeadershipReturn, PreferredReplica};
use crate::state::{
    BatchVerdict, CoordinatorLimits, CoordinatorState, EntryEffect, EntryOutcome, Epoch,
    SuspectVerdict, check_regions,
};

/// The most entries waiting for the next round; beyond, batches are refused with
/// [`InputError::Overloaded`].
pub const PROPOSALS_PENDING_MAX: usize = 1_024;

/// The most bytes of entries waiting for the next round.
pub const PROPOSALS_PENDING_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most outputs kept until the driver polls them; beyond, the oldest is dropped and
/// counted (batch acknowledgements and epochs are both resent, so nothing is lost for good).
pub const OUTPUTS_PENDING_MAX: usize = 16_384;

/// The most raft rounds one [`CoordinatorNode::handle_ready`] call runs.
pub const READY_ROUNDS_PER_CALL_MAX: usize = 8;

/// The most encoded record bytes in one part of a sealed epoch: far below
/// [`dsss_wire::GRPC_MESSAGE_BYTES_MAX`] and the raft entry a region makes of each part.
pub const EPOCH_PART_BYTES_MAX: u64 = 2 * 1024 * 1024;

/// The most batches of one region a leader holds while it waits for an earlier batch that
/// the network delayed or lost; beyond, a batch is dropped and the region resends it.
pub const EARLY_BATCHES_PER_REGION_MAX: usize = 256;

/// The most epoch parts sent to one region per resend interval.
pub const RESEND_MESSAGES_PER_REGION_MAX: usize = 64;

/// The most sealed epoch reads waiting for the leader's confirmation; beyond, a read is
/// answered `not_leader` at once (the region asks again).
pub const SEALED_EPOCH_READS_IN_FLIGHT_MAX: usize = 1_024;

/// The most nodes of a region one sealed epoch part tries (a failed attempt moves to the
/// region's next node at once) before it is given up and left to the resend timer. Shared by
/// the production driver and the simulator's.
pub const REGION_DELIVERY_ATTEMPTS_MAX: usize = 4;

/// The longest interval (epoch, suspicion, resend) a configuration may set: one hour.
pub const INTERVAL_US_MAX: u64 = 3_600_000_000;

/// The largest clock skew a configuration may tolerate: one minute (the topology's maximum).
pub const CLOCK_SKEW_US_MAX: u64 = 60_000_000;

// A part holds whole records: the largest record must fit in one.
const _: () = assert!(EPOCH_PART_BYTES_MAX >= dsss_wire::RECORD_BYTES_MAX as u64 + 4);
const _: () = assert!(EPOCH_PART_BYTES_MAX * 4 <= dsss_wire::GRPC_MESSAGE_BYTES_MAX as u64);

/// The settings of one coordinator replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorConfig {
    /// This replica's node id.
    pub node_id: u64,
    /// Every replica of the coordinator group, the same list on every replica.
    pub replica_ids: Vec<u64>,
    /// The replica that campaigns at once when it starts, so a fresh group has a leader
    /// without waiting for an election timeout.
    pub preferred_leader: Option<u64>,
    /// The regions of the topology, sorted. MUST be equal on every replica.
    pub regions: Vec<RegionId>,
    /// The epoch length; the driver calls [`CoordinatorNode::handle_tick`] once per epoch.
    pub epoch_interval_us: u64,
    /// How long a member's closed timestamp may stand still before the leader suspects it.
    pub suspicion_timeout_us: u64,
    /// How long the leader waits, after a region's acknowledgements last moved, before it
    /// resends the epochs the region has not acknowledged; doubled after each resend they did
    /// not follow (see [`ResendTimeout`]).
    pub resend_interval_us: u64,
    /// How long the leader waits at most before it resends, however many resends brought
    /// nothing. At least `resend_interval_us`.
    pub resend_interval_max_us: u64,
    /// Received hybrid logical clock times further ahead than this are refused.
    pub max_clock_skew_us: u64,
    /// The seed of this replica's election timeouts.
    pub election_seed: u64,
    /// Ticks without a leader before a follower campaigns.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats.
    pub heartbeat_tick: usize,
    /// The bounds of the replicated state. MUST be equal on every replica.
    pub limits: CoordinatorLimits,
}

impl CoordinatorConfig {
    /// Settings for replica `node_id` of a group of `replica_ids` serving `regions` (sorted
    /// here), with the default intervals: 10 ms epochs, 2 s suspicion timeout, 100 ms resend
    /// interval backed off to four times that at most (as `Topology::resend_interval_max_us`
    /// gives), 250 ms maximum skew.
    pub fn new(node_id: u64, replica_ids: Vec<u64>, mut regions: Vec<RegionId>) -> Self {
        regions.sort();
        CoordinatorConfig {
            node_id,
            replica_ids,
            preferred_leader: None,
            regions,
            epoch_interval_us: 10_000,
            suspicion_timeout_us: 2_000_000,
            resend_interval_us: 100_000,
            resend_interval_max_us: 400_000,
            max_clock_skew_us: 250_000,
            election_seed: node_id,
            election_tick: 10,
            heartbeat_tick: 2,
            limits: CoordinatorLimits::default(),
        }
    }

    /// The settings of replica `node_id` from a topology: its regions, coordinator replicas
    /// and preferred leader, epoch length, suspicion timeout and maximum skew. The resend
    /// interval is ten epochs (at most half the suspicion timeout); the election timeout is
    /// at least ten times the largest one-way delay between regions, so that WAN round trips
    /// do not cause elections. The leader heartbeats every third of the election timeout: a
    /// follower hears three heartbeats before its shortest timeout (so one lost heartbeat
    /// starts no election, as in regions), and an idle coordinator sends few messages, each of
    /// which wakes two processes.
    pub fn from_topology(
        topology: &dsss_topology::Topology,
        node_id: u64,
    ) -> Result<Self, ConfigError> {
        if !topology.is_coordinator_replica(node_id) {
            return Err(ConfigError::new(
                "node_id",
                format!(
                    "node {node_id} is not a coordinator replica (replicas: {:?})",
                    topology.coordinator.replicas
                ),
            ));
        }
        let regions = topology
            .regions
            .iter()
            .map(|region| {
                RegionId::new(region.id.clone())
                    .map_err(|error| ConfigError::new("regions", error.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut replica_ids = topology.coordinator.replicas.clone();
        replica_ids.sort_unstable();
        let mut config = CoordinatorConfig::new(node_id, replica_ids, regions);
        let cluster = &topology.cluster;
        config.preferred_leader = Some(topology.coordinator.preferred_leader);
        config.limits.retained_epochs_max = topology.coordinator.retained_epochs;
        config.epoch_interval_us = cluster.epoch_us;
        config.suspicion_timeout_us = cluster.suspicion_timeout_us;
        config.max_clock_skew_us = cluster.max_clock_skew_us;
        config.resend_interval_us = topology.resend_interval_us();
        config.resend_interval_max_us = topology.resend_interval_max_us();
        let delay_ticks = (10 * topology.latency.d_max_us()).div_ceil(cluster.epoch_us.max(1));
        config.election_tick = usize::try_from(delay_ticks.max(10))
            .map_or(ELECTION_TICK_MAX, |ticks| ticks.min(ELECTION_TICK_MAX));
        config.heartbeat_tick = (config.election_tick / 3).max(1);
        config.validate()?;
        Ok(config)
    }

    /// The election priority of replica `node` (see `RaftGroupConfig::election_priority`):
    /// the preferred leader's is the highest, the number of replicas, and the other replicas
    /// follow in ascending id order down to 1; without a preferred leader every replica has 0
    /// (plain raft). When the leader fails, the two remaining replicas of three then never
    /// split their votes: the regions' global calls wait for one election timeout, not for
    /// another timeout after each split (about one election in two on a WAN, where the
    /// pre-vote and the vote take two round trips of the spread of the timeouts).
    pub fn election_priority_of(&self, node: u64) -> u32 {
        let Some(preferred) = self.preferred_leader else {
            return 0;
        };
        let count = u32::try_from(self.replica_ids.len()).unwrap_or(u32::MAX);
        if node == preferred {
            return count;
        }
        let mut others: Vec<u64> = self
            .replica_ids
            .iter()
            .copied()
            .filter(|id| *id != preferred)
            .collect();
        others.sort_unstable();
        others.iter().position(|id| *id == node).map_or(0, |index| {
            count.saturating_sub(1 + u32::try_from(index).unwrap_or(u32::MAX))
        })
    }

    /// The raft group settings of this replica.
    pub fn group_config(&self) -> RaftGroupConfig {
        let mut group = RaftGroupConfig::new(self.node_id, self.replica_ids.clone());
        group.election_seed = self.election_seed;
        group.election_priority = self.election_priority_of(self.node_id);
        group.election_tick = self.election_tick;
        group.heartbeat_tick = self.heartbeat_tick;
        // With three replicas or fewer, a follower commits the entries it synced from its
        // leader on its own (the two copies are a majority) and delivers the epochs they seal
        // straight to the regions: an epoch reaches a region through the follower nearest to
        // it, without waiting for the leader's quorum round (docs/global-protocol.md
        // section 7, "Delivery by followers").
        group.followers_commit_synced_entries = self.replica_ids.len() <= 3;
        group
    }

    /// Checks every setting, naming the first that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.group_config()
            .validate()
            .map_err(|error| ConfigError::new("group", error.to_string()))?;
        if !self.replica_ids.contains(&self.node_id) {
            return Err(ConfigError::new(
                "replica_ids",
                format!("{:?} does not list node {}", self.replica_ids, self.node_id),
            ));
        }
        if let Some(preferred) = self.preferred_leader
            && !self.replica_ids.contains(&preferred)
        {
            return Err(ConfigError::new(
                "preferred_leader",
                format!("node {preferred} is not a replica"),
            ));
        }
        check_regions(&self.regions).map_err(|reason| ConfigError::new("regions", reason))?;
        for (field, value) in [
            ("epoch_interval_us", self.epoch_interval_us),
            ("suspicion_timeout_us", self.suspicion_timeout_us),
            ("resend_interval_us", self.resend_interval_us),
            ("resend_interval_max_us", self.resend_interval_max_us),
        ] {
            if value == 0 || value > INTERVAL_US_MAX {
                return Err(ConfigError::new(
                    field,
                    format!("{value} is outside 1..={INTERVAL_US_MAX}"),
                ));
            }
        }
        if self.resend_interval_max_us < self.resend_interval_us {
            return Err(ConfigError::new(
                "resend_interval_max_us",
                format!(
                    "{} is below resend_interval_us {}",
                    self.resend_interval_max_us, self.resend_interval_us
                ),
            ));
        }
        if self.max_clock_skew_us == 0 || self.max_clock_skew_us > CLOCK_SKEW_US_MAX {
            return Err(ConfigError::new(
                "max_clock_skew_us",
                format!(
                    "{} is outside 1..={CLOCK_SKEW_US_MAX}",
                    self.max_clock_skew_us
                ),
            ));
        }
        self.limits
            .validate()
            .map_err(|reason| ConfigError::new("limits", reason))
    }
}

/// A setting of [`CoordinatorConfig`] that is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("coordinator configuration field {field}: {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }
}

/// Why a node could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorNodeError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The raft group could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
}

/// Why a message from a region was not taken. Nothing changed, except for the clock when the
/// error is not about the clock.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// The message carries no sender time.
    #[error("{message} carries no sender_time; every message between nodes must")]
    MissingSenderTime {
        /// The kind of message.
        message: &'static str,
    },
    /// The sender time is beyond the range of any DSSS clock.
    #[error("{message} sender_time: {reason}")]
    InvalidSenderTime {
        /// The kind of message.
        message: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The sender time is further ahead of this node's clock than the maximum skew.
    #[error("{message} refused: {error}")]
    ClockSkew {
        /// The kind of message.
        message: &'static str,
        /// The skew.
        error: ClockSkewError,
    },
    /// The region is not a valid region id, or not in the topology.
    #[error("region {region:?} is not a region of the topology")]
    UnknownRegion {
        /// The region as received.
        region: String,
    },
    /// The batch breaks a rule of the protocol.
    #[error("region batch from {region} refused: {reason}")]
    InvalidBatch {
        /// The region.
        region: RegionId,
        /// What was wrong.
        reason: String,
    },
    /// The acknowledgement names an epoch not sealed yet.
    #[error("epoch acknowledgement from {region} refused: {reason}")]
    InvalidAcknowledgement {
        /// The region.
        region: RegionId,
        /// What was wrong.
        reason: String,
    },
    /// The coordinator cannot take the batch now; the region resends later.
    #[error("overloaded: {reason}")]
    Overloaded {
        /// Which bound is reached.
        reason: String,
    },
}

/// Why raft messages were not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// The bytes are not a raft message.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The raft group refused it.
    #[error(transparent)]
    Step(#[from] StepError),
    /// The batch is addressed to another node.
    #[error("raft batch for node {to} reached node {node_id}")]
    WrongReceiver {
        /// The addressee.
        to: u64,
        /// This node.
        node_id: u64,
    },
    /// The batch's sender time was refused.
    #[error(transparent)]
    SenderTime(#[from] InputError),
}

/// A message for a region's leader. (Batches are answered at once, by
/// [`CoordinatorNode::answer_region_batch`].)
#[derive(Clone, Debug, PartialEq)]
pub enum RegionMessage {
    /// One part of a sealed epoch.
    Epoch(proto::SealedEpoch),
    /// An acknowledgement sent unasked, saying that closes are wanted (see
    /// [`CoordinatorNode::handle_region_batch`]).
    BatchAck(proto::RegionBatchAck),
    /// An acknowledgement sent unasked by a replica that just began to lead, naming it and
    /// its term: for every node of the region, not only the one believed to lead it, since
    /// the region may have elected another leader meanwhile (the old one may be the paused
    /// process that also held the coordinator's leadership), and a follower that becomes the
    /// region's leader later calls the coordinator where its node last heard it leads.
    LeaderAnnouncement(proto::RegionBatchAck),
}

/// What the coordinator hands to its driver, through [`CoordinatorNode::poll_output`] only:
/// a driver drains it in one exhaustive `match`, so an output added here cannot be forgotten
/// by one of the drivers (production and the simulator).
#[derive(Clone, Debug, PartialEq)]
pub enum CoordinatorOutput {
    /// Send `message` to the leader of `region`.
    ToRegion {
        /// The region.
        region: RegionId,
        /// The message.
        message: RegionMessage,
    },
    /// The answer to the sealed epoch read the driver named `read_id` in
    /// [`CoordinatorNode::handle_read_sealed_epoch`].
    SealedEpochReply {
        /// The driver's id of the read.
        read_id: u64,
        /// The answer: the newest sealed epoch once this replica confirmed that it leads,
        /// `not_leader` otherwise.
        reply: proto::ReadSealedEpochReply,
    },
    /// Something an operator should read in the log, said once where it happens: the
    /// production driver logs it; the simulator's checks read the same facts from the
    /// replicas' state and drop it.
    Notice(Notice),
}

/// A change of the global membership, as one replica saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// The leader proposes to take `region` out of the membership: its closed timestamp has
    /// not moved for `silent_for_us`.
    RegionSuspected {
        /// The region.
        region: RegionId,
        /// Its incarnation.
        incarnation: u64,
        /// How long it was silent, in microseconds.
        silent_for_us: u64,
    },
    /// This replica applied the removal of `region` (the other regions' epochs go on without
    /// it), dropping `records_dropped` of its pending records.
    RegionRemoved {
        /// The region.
        region: RegionId,
        /// Its pending records dropped.
        records_dropped: usize,
    },
    /// This replica applied the readmission of `region` in a new incarnation.
    RegionReadmitted {
        /// The region.
        region: RegionId,
    },
}

impl std::fmt::Display for Notice {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::RegionSuspected {
                region,
                incarnation,
                silent_for_us,
            } => write!(
                formatter,
                "suspecting region {region} (incarnation {incarnation}): its closed timestamp has \
                 not moved for {} ms; proposing to take it out of the global membership",
                silent_for_us / 1_000
            ),
            Notice::RegionRemoved {
                region,
                records_dropped,
            } => write!(
                formatter,
                "region {region} left the global membership ({records_dropped} of its pending \
                 records dropped); the other regions' epochs go on without it"
            ),
            Notice::RegionReadmitted { region } => {
                write!(
                    formatter,
                    "region {region} was readmitted to the global membership"
                )
            }
        }
    }
}

/// One region as the coordinator holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionStatus {
    /// The region.
    pub region: RegionId,
    /// Whether it counts for the watermark.
    pub member: bool,
    /// Its incarnation.
    pub incarnation: u64,
    /// The next batch number expected.
    pub next_batch_number: u64,
    /// Its closed timestamp.
    pub closed: Timestamp,
    /// The highest epoch it has acknowledged (replicated).
    pub acknowledged_epoch: u64,
    /// On the leader: when the leader last saw the region's closed timestamp move, in
    /// microseconds of its clock (how long the region has been silent); `None` elsewhere.
    pub closed_advanced_at_us: Option<u64>,
    /// On the leader: when it proposed to take the region out of the membership, while that
    /// waits or holds; `None` elsewhere.
    pub suspected_at_us: Option<u64>,
}

/// A sealed epoch read waiting for the leader's confirmation.
#[derive(Clone, Copy, Debug)]
struct PendingEpochRead {
    /// The tick at which it is answered `not_leader`.
    deadline: u64,
    /// The tick at which ReadIndex was last asked for it.
    asked_at: u64,
    /// The commit index the leader confirmed.
    read_index: Option<u64>,
    /// The leader's last log index when the read arrived. Followers commit entries of the
    /// leader's term before the leader learns of it, and a region may have applied the epoch
    /// such an entry sealed; every entry committed before the read arrived is at or below
    /// this index, so the answer waits until the leader has applied it.
    last_index_at_arrival: u64,
}

/// Counters since the node opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoordinatorCounters {
    /// Messages refused because their sender time was beyond the maximum skew.
    pub refused_for_skew: u64,
    /// Times this replica fenced itself because its clock was beyond the bound.
    pub clock_fences: u64,
    /// Sealed epoch reads answered with an epoch after a confirmed read.
    pub epoch_reads_confirmed: u64,
    /// Sealed epoch reads answered `not_leader`.
    pub epoch_reads_not_leader: u64,
    /// Region batches proposed.
    pub batches_proposed: u64,
    /// Batch entries applied and accepted.
    pub batches_accepted: u64,
    /// Batch entries applied and not accepted (duplicate, gap, stale, not a member).
    pub batches_not_accepted: u64,
    /// Batches refused as overloaded (before proposing or at apply).
    pub batches_overloaded: u64,
    /// Batches dropped because too many later batches of their region waited for an
    /// earlier one (the region resends them).
    pub batches_dropped_early: u64,
    /// Entries every replica refused (undecodable or naming an unknown region).
    pub entries_refused: u64,
    /// Regions taken out of the membership.
    pub regions_removed: u64,
    /// Regions readmitted.
    pub regions_readmitted: u64,
    /// Batches that would have readmitted a region that missed epochs released while it was
    /// out of the membership (it cannot catch up from the coordinator).
    pub readmissions_refused: u64,
    /// Epochs sealed by this replica's state machine.
    pub epochs_sealed: u64,
    /// Epoch parts handed to the driver.
    pub epoch_messages_sent: u64,
    /// Epochs this replica sent to a region as a follower, having committed their entries
    /// on its own and its leader's synced copies.
    pub epochs_delivered_as_follower: u64,
    /// Of those, parts resent to a region whose acknowledgements had not moved for its
    /// resend timeout.
    pub epoch_messages_resent: u64,
    /// Acknowledgements sent unasked to idle regions when records arrived or the membership
    /// changed.
    pub idle_regions_woken: u64,
    /// Acknowledgements sent unasked to member regions when this replica began to lead, so
    /// that their calls leave a silent former leader at once, and repeated each resend
    /// interval to those none of whose batches arrived since.
    pub leadership_announcements: u64,
    /// Transfers of leadership this replica started to hand it back to the preferred
    /// replica after a failover ([`crate::leadership_return`]).
    pub leadership_returns: u64,
    /// Liveness asks of idle regions answered (not counted in `batches_not_accepted`).
    pub liveness_asks_answered: u64,
    /// Entries raft dropped.
    pub proposals_dropped: u64,
    /// Outputs dropped because the driver did not poll them.
    pub outputs_dropped: u64,
}

/// A snapshot of the node's state, for operators and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoordinatorStatus {
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
    /// The watermark of the newest sealed epoch.
    pub watermark: Timestamp,
    /// The newest sealed epoch, 0 before the first.
    pub newest_epoch: u64,
    /// Sealed epochs retained until every region acknowledges them.
    pub retained_epochs: usize,
    /// Their bytes.
    pub retained_size_bytes: u64,
    /// Records waiting for the watermark.
    pub pending_records: usize,
    /// Their bytes.
    pub pending_size_bytes: u64,
    /// Every region, sorted.
    pub regions: Vec<RegionStatus>,
    /// Entries waiting for the next round.
    pub proposals_pending: usize,
    /// Outputs waiting for the driver.
    pub outputs_pending: usize,
    /// Counters since the node opened.
    pub counters: CoordinatorCounters,
    /// What the replica's raft member counted (leader changes, snapshots sent).
    pub raft: dsss_raft_group::GroupCounters,
    /// The replica's clock, as of its last input, in microseconds since the UNIX epoch.
    pub now_us: u64,
    /// The replicas that vote.
    pub voters: Vec<u64>,
}

/// The leader's view of one region, soft state that a new leader rebuilds.
#[derive(Clone, Debug)]
struct RegionDuty {
    /// The closed timestamp last seen, and when it was first seen.
    closed_seen: Timestamp,
    advanced_at_us: u64,
    /// The incarnation a suspect entry was proposed for, and when.
    suspected: Option<(u64, u64)>,
    /// What the region said it appended: whole epochs through, parts of the next.
    appended: (u64, u32),
    /// The acknowledgement last proposed, and when.
    acknowledgement_proposed: Option<(u64, u64)>,
    /// When the epochs the region has not acknowledged are sent again: after a wait doubled
    /// per resend that its acknowledgements did not follow; due at once when this node
    /// became leader, since it does not know what the region holds.
    resend_timeout: ResendTimeout,
    /// The region's newest batch this leader has proposed, as (incarnation, batch number),
    /// with every lower batch of that incarnation proposed before it.
    proposed_through: (u64, u64),
    /// Batches that arrived ahead of a missing one (the network reorders), held until the
    /// gap fills so they are proposed in order; at most [`EARLY_BATCHES_PER_REGION_MAX`].
    early: BTreeMap<(u64, u64), BatchEntry>,
    /// The newest epoch sent to the region (new, resent, or in its catch-up window).
    window_sent_through: u64,
    /// Whether a batch of the region reached this replica since it began to lead: until one
    /// does, the region may still be calling a former leader, and hears of this one again
    /// every resend interval (`CoordinatorNode::repeat_announcements`).
    batch_heard: bool,
    /// When this leadership was last announced to the region.
    announced_at_us: u64,
}

/// The leader's soft state.
#[derive(Clone, Debug)]
struct Leadership {
    term: u64,
    since_us: u64,
    regions: BTreeMap<RegionId, RegionDuty>,
    /// When a batch with records last arrived: regions are asked to close every epoch
    /// interval for a resend interval after it, before its entry is applied and beyond.
    records_arrived_us: Option<u64>,
    /// Whether the member regions were told of the membership change that waits to be
    /// sealed (see `CoordinatorNode::wake_regions_for_membership`).
    membership_change_told: bool,
    /// When to hand leadership back to the preferred replica, if this one is not it.
    leadership_return: LeadershipReturn,
}

/// One replica of the global coordinator. See the module documentation.
pub struct CoordinatorNode {
    group: RaftGroup<CoordinatorState>,
    config: CoordinatorConfig,
    clock: HybridLogicalClock,
    now_us: u64,
    started: bool,
    /// Set while this replica's clock is beyond the bound from a majority of the replicas
    /// (`clock_verdict_fences`), or its hybrid clock runs ahead of its physical clock by more
    /// than the bound (`clock_runs_ahead`).
    clock_fenced: bool,
    clock_verdict_fences: bool,
    clock_runs_ahead: bool,
    /// The fresh samples of the other replicas' clocks the last verdict rested on.
    clock_samples: Vec<(u64, ClockSample)>,
    proposals: VecDeque<Vec<u8>>,
    proposals_size_bytes: usize,
    /// (region, incarnation, batch number) of the batches waiting in `proposals`.
    queued_batches: BTreeSet<(RegionId, u64, u64)>,
    leadership: Option<Leadership>,
    outputs: VecDeque<CoordinatorOutput>,
    counters: CoordinatorCounters,
    ticks: u64,
    epoch_reads: BTreeMap<u64, PendingEpochRead>,
    epoch_read_replies: VecDeque<(u64, proto::ReadSealedEpochReply)>,
}

impl CoordinatorNode {
    /// Opens the replica over `store`: recovers its raft log and state, or bootstraps a new
    /// group when the store is empty.
    pub fn open(
        config: CoordinatorConfig,
        store: &mut impl DurableStore,
    ) -> Result<Self, CoordinatorNodeError> {
        config.validate()?;
        let state = CoordinatorState::new(&config.regions, config.limits);
        let group = RaftGroup::open(config.group_config(), state, store)?;
        // A restarted replica stamps above the watermark it sealed, whatever its clock says.
        let clock =
            HybridLogicalClock::resume(group.state_machine().watermark(), config.max_clock_skew_us)
                .unwrap_or_else(|_| HybridLogicalClock::new(config.max_clock_skew_us));
        Ok(CoordinatorNode {
            group,
            config,
            clock,
            now_us: 0,
            started: false,
            clock_fenced: false,
            clock_verdict_fences: false,
            clock_runs_ahead: false,
            clock_samples: Vec::new(),
            proposals: VecDeque::new(),
            proposals_size_bytes: 0,
            queued_batches: BTreeSet::new(),
            leadership: None,
            outputs: VecDeque::new(),
            counters: CoordinatorCounters::default(),
            ticks: 0,
            epoch_reads: BTreeMap::new(),
            epoch_read_replies: VecDeque::new(),
        })
    }

    // Getters.

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.group.id()
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The replicated state as this replica has applied it.
    pub fn state(&self) -> &CoordinatorState {
        self.group.state_machine()
    }

    /// The raft group.
    pub fn group(&self) -> &RaftGroup<CoordinatorState> {
        &self.group
    }

    /// The leader this node knows of.
    pub fn leader_id(&self) -> Option<u64> {
        self.group.leader_id()
    }

    /// True when this node leads the coordinator group.
    pub fn is_leader(&self) -> bool {
        self.group.role() == Role::Leader
    }

    /// The node's hybrid logical clock, as of its last input.
    pub fn clock(&self) -> &HybridLogicalClock {
        &self.clock
    }

    /// The driver's verdict on this replica's clock against the other replicas' (see
    /// `dsss_raft_group::PeerClocks`), and the fresh samples of their clocks
    /// (`PeerClocks::fresh_samples`), given before every tick. While the verdict is beyond
    /// the bound the replica is fenced: it does not campaign, a leader hands leadership to
    /// another replica, and its hybrid clock is not moved by its physical one; it resumes as
    /// soon as the verdict is no longer beyond. A leader hands leadership back to the
    /// preferred replica only while a sample puts that replica's clock within the bound
    /// ([`crate::leadership_return`]).
    pub fn handle_clock_verdict(
        &mut self,
        verdict: &dsss_raft_group::ClockVerdict,
        samples: Vec<(u64, ClockSample)>,
    ) {
        self.clock_verdict_fences = verdict.fences();
        self.clock_samples = samples;
        self.update_fence();
    }

    /// Fences the replica while the verdict on its clock says so or its hybrid clock runs
    /// ahead of its physical one, and lifts the fence when neither holds.
    fn update_fence(&mut self) {
        let fenced = self.clock_verdict_fences || self.clock_runs_ahead;
        if fenced && !self.clock_fenced {
            self.counters.clock_fences += 1;
        }
        self.clock_fenced = fenced;
        self.group.set_may_campaign(!fenced);
    }

    /// True while this replica's clock is beyond the bound, or its hybrid clock runs ahead of
    /// its physical clock by more than the bound (see [`CoordinatorNode::handle_tick`]).
    pub fn clock_fenced(&self) -> bool {
        self.clock_fenced
    }

    /// True while this replica's hybrid clock runs ahead of its physical clock by more than
    /// the bound, which fences it (see [`CoordinatorNode::handle_tick`]).
    pub fn clock_runs_ahead(&self) -> bool {
        self.clock_runs_ahead
    }

    /// The voters of the coordinator group, as this replica knows them.
    pub fn voters(&self) -> Vec<u64> {
        self.group.voters()
    }

    /// The node's state.
    pub fn status(&self) -> CoordinatorStatus {
        let state = self.group.state_machine();
        CoordinatorStatus {
            node_id: self.group.id(),
            role: self.group.role(),
            leader_id: self.group.leader_id(),
            term: self.group.term(),
            commit_index: self.group.commit_index(),
            applied_index: self.group.applied_index(),
            watermark: state.watermark(),
            newest_epoch: state.newest_epoch_number(),
            retained_epochs: state.retained_epoch_count(),
            retained_size_bytes: state.retained_size_bytes(),
            pending_records: state.pending_count(),
            pending_size_bytes: state.pending_size_bytes(),
            regions: state
                .regions()
                .iter()
                .map(|(region, region_state)| {
                    let duty = self
                        .leadership
                        .as_ref()
                        .and_then(|leadership| leadership.regions.get(region));
                    RegionStatus {
                        region: region.clone(),
                        member: region_state.member,
                        incarnation: region_state.incarnation,
                        next_batch_number: region_state.next_batch_number,
                        closed: region_state.closed,
                        acknowledged_epoch: region_state.acknowledged_epoch,
                        closed_advanced_at_us: duty.map(|duty| duty.advanced_at_us),
                        suspected_at_us: duty.and_then(|duty| duty.suspected.map(|(_, at)| at)),
                    }
                })
                .collect(),
            proposals_pending: self.proposals.len(),
            outputs_pending: self.outputs.len(),
            counters: self.counters,
            raft: self.group.counters(),
            now_us: self.now_us,
            voters: self.group.voters(),
        }
    }

    /// True when [`CoordinatorNode::handle_ready`] has work to do.
    pub fn has_ready(&self) -> bool {
        !self.proposals.is_empty() || self.group.has_ready()
    }

    /// How many of the next ticks would only count, so that a driver whose ticks come every
    /// `tick_interval_us` may run them late, all at once before its next input (see
    /// [`RaftGroup::quiet_ticks`]). Nothing may wait on a tick: no sealed epoch read, proposal
    /// or output, and the replica has ticked once (the preferred leader campaigns on its first
    /// tick). A follower then only waits for its election timeout. The leader also waits for
    /// its duties, which are due by time ([`CoordinatorNode::leader_due_at_us`]): no tick
    /// before the earliest of them, as of `now_us`, is quiet. While records are pending (a
    /// busy cluster), the leader has no quiet tick. The ticks run late get the time of the
    /// input they precede.
    pub fn quiet_ticks(&self, now_us: u64, tick_interval_us: u64) -> u64 {
        if !self.started
            || self.has_ready()
            || !self.epoch_reads.is_empty()
            || !self.outputs.is_empty()
        {
            return 0;
        }
        let raft_quiet = self.group.quiet_ticks();
        if !self.is_leader() {
            return raft_quiet;
        }
        let Some(due_at_us) = self.leader_due_at_us(now_us) else {
            return raft_quiet;
        };
        // The next tick comes within one interval, and the k-th quiet one within k intervals:
        // every quiet tick must come before the due time.
        let until_due_us = due_at_us.saturating_sub(now_us);
        raft_quiet.min(until_due_us.saturating_sub(1) / tick_interval_us.max(1))
    }

    /// When the leader's next tick acts (`now_us` when one would act now), `None` when only
    /// raft's ticks may: the earliest of a member region's suspicion (its closed timestamp
    /// standing still for the suspicion timeout), an acknowledgement to propose or propose
    /// again, and a resend of unacknowledged epochs. A closed timestamp that rose since the
    /// last tick is due now, so that the tick notes when it rose, as it would ticked every
    /// interval. A leader that has not set up its duties yet, or holds pending records, acts
    /// now.
    fn leader_due_at_us(&self, now_us: u64) -> Option<u64> {
        let state = self.group.state_machine();
        let Some(leadership) = self.leadership.as_ref() else {
            return Some(now_us);
        };
        if state.pending_count() > 0 {
            return Some(now_us);
        }
        let timeout_us = self.config.suspicion_timeout_us;
        let resend_us = self.config.resend_interval_us;
        let members = state.member_regions().len();
        let newest = state.newest_epoch_number();
        let mut due: Option<u64> = None;
        let mut due_at = |at_us: u64| {
            due = Some(due.map_or(at_us, |due| due.min(at_us)));
        };
        for (region, duty) in &leadership.regions {
            let Some(region_state) = state.region(region) else {
                continue;
            };
            if region_state.closed > duty.closed_seen {
                due_at(now_us);
                continue;
            }
            if region_state.member && members > 1 {
                // Suspected once the silence is longer than the timeout, and again a timeout
                // after a suspicion of the same incarnation (see `suspect_silent_regions`).
                let silent_since_us = duty.advanced_at_us.max(leadership.since_us);
                let mut suspect_at_us =
                    silent_since_us.saturating_add(timeout_us.saturating_add(1));
                if let Some((incarnation, at_us)) = duty.suspected
                    && incarnation == region_state.incarnation
                {
                    suspect_at_us = suspect_at_us.max(at_us.saturating_add(timeout_us));
                }
                due_at(suspect_at_us);
            }
            if region_state.member && !duty.batch_heard {
                due_at(duty.announced_at_us.saturating_add(resend_us));
            }
            let replicated = region_state.acknowledged_epoch;
            let through = duty.appended.0;
            if through > replicated {
                match duty.acknowledgement_proposed {
                    Some((proposed, at_us)) if proposed >= through => {
                        due_at(at_us.saturating_add(resend_us));
                    }
                    _ => due_at(now_us),
                }
            }
            let from = duty.appended.max((replicated, 0));
            if from.0 < newest {
                due_at(
                    duty.resend_timeout
                        .resend_at_us(resend_us, self.config.resend_interval_max_us)
                        .unwrap_or(now_us),
                );
            }
        }
        due
    }

    // Inputs.

    /// A region leader's batch: proposed, held until the batches before it arrive, or
    /// nothing when it was taken before. It is answered with
    /// [`CoordinatorNode::current_batch_ack`] (see [`CoordinatorNode::answer_region_batch`]),
    /// which acknowledges what is applied. An error means the batch was not taken.
    pub fn handle_region_batch(
        &mut self,
        now_us: u64,
        batch: proto::RegionBatch,
    ) -> Result<(), InputError> {
        self.receive_time(now_us, batch.sender_time, "region batch")?;
        let region = self.known_region(&batch.region)?;
        if !self.is_leader() {
            // The answer names the leader (`current_batch_ack`).
            return Ok(());
        }
        if let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(&region))
        {
            duty.batch_heard = true;
        }
        if !batch.records.is_empty() && self.leadership.is_some() {
            let woken = !self.closes_wanted();
            if let Some(leadership) = self.leadership.as_mut() {
                leadership.records_arrived_us = Some(now_us);
            }
            if woken {
                self.wake_idle_regions(&region);
            }
        }
        let entry = self.batch_entry(region.clone(), batch)?;
        let state = self.group.state_machine();
        let region_state = state.region(&region).expect("the region is known");
        // A batch every replica would refuse without change is answered from the applied
        // state: an older incarnation, or a batch taken before.
        let stale = entry.incarnation < region_state.incarnation;
        let duplicate = entry.incarnation == region_state.incarnation
            && region_state.member
            && entry.batch_number < region_state.next_batch_number;
        // A region that missed epochs released while it was out is not readmitted (the
        // answer names the first retained epoch, which tells it so).
        let cannot_catch_up = entry.incarnation > region_state.incarnation
            && !region_state.member
            && !state.can_catch_up(&region);
        if cannot_catch_up {
            self.counters.readmissions_refused += 1;
        }
        // An idle region's liveness ask: its newest acknowledged batch again, without records
        // (`RegionNode::ask_coordinator`).
        let liveness_ask = duplicate
            && entry.records.is_empty()
            && entry.batch_number == region_state.next_batch_number - 1;
        if stale || duplicate || cannot_catch_up {
            // Answered from the applied state (`current_batch_ack`).
            if liveness_ask {
                self.take_liveness_ask(&region, now_us);
            } else {
                self.counters.batches_not_accepted += 1;
            }
            return Ok(());
        }
        let key = (region.clone(), entry.incarnation, entry.batch_number);
        if self.queued_batches.contains(&key) {
            return Ok(());
        }
        let records_size_bytes: u64 = entry.records.iter().map(record_size_bytes).sum();
        if let Some(reason) = state.overload_reason(records_size_bytes) {
            self.counters.batches_overloaded += 1;
            return Err(InputError::Overloaded { reason });
        }
        // Batches must be proposed in order, but the network reorders them: the batch the
        // state needs next is always proposed (proposing one twice is harmless, the second
        // is a duplicate at apply, and it repairs a proposal raft dropped); the one after
        // the newest proposed too; a later one waits for the gap to fill.
        let needed_next = if entry.incarnation == region_state.incarnation && region_state.member {
            region_state.next_batch_number
        } else {
            // A readmission (a newer incarnation) starts at batch 1; a batch of a removed
            // region's current incarnation is refused at apply, in any order.
            1
        };
        let incarnation = entry.incarnation;
        let batch_number = entry.batch_number;
        let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(&region))
        else {
            return Ok(());
        };
        let proposed_next = if duty.proposed_through.0 == incarnation {
            duty.proposed_through.1 + 1
        } else {
            needed_next
        };
        let removed_region_batch = incarnation == region_state.incarnation && !region_state.member;
        if batch_number == needed_next || batch_number == proposed_next || removed_region_batch {
            self.propose_batch(entry)?;
            self.propose_early_batches(&region);
        } else if batch_number > proposed_next {
            // When the buffer is full the batch furthest ahead goes (this one or a held one):
            // the batches nearest the gap are the ones that let the region move on, and the
            // region resends the rest.
            let key = (incarnation, batch_number);
            if duty.early.len() >= EARLY_BATCHES_PER_REGION_MAX {
                match duty.early.keys().next_back() {
                    Some(&furthest) if furthest > key => {
                        duty.early.remove(&furthest);
                    }
                    _ => {
                        self.counters.batches_dropped_early += 1;
                        return Ok(());
                    }
                }
                self.counters.batches_dropped_early += 1;
            }
            duty.early.insert(key, entry);
        }
        // Otherwise the batch is proposed already and its acknowledgement follows the apply.
        Ok(())
    }

    /// Queues `entry` for proposal and records it as the region's newest proposed batch.
    fn propose_batch(&mut self, entry: BatchEntry) -> Result<(), InputError> {
        let key = (entry.region.clone(), entry.incarnation, entry.batch_number);
        let region = entry.region.clone();
        let (incarnation, batch_number) = (entry.incarnation, entry.batch_number);
        let data = CoordinatorEntry::Batch(entry).encode();
        self.queue_proposal(data)?;
        self.queued_batches.insert(key);
        if let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(&region))
        {
            if duty.proposed_through.0 != incarnation || duty.proposed_through.1 < batch_number {
                duty.proposed_through = (incarnation, batch_number);
            }
            // Held batches of older incarnations will never be proposed.
            duty.early.retain(|&(held, _), _| held >= incarnation);
        }
        Ok(())
    }

    /// Proposes the held batches of `region` that now follow the newest proposed one.
    fn propose_early_batches(&mut self, region: &RegionId) {
        loop {
            let Some(duty) = self
                .leadership
                .as_mut()
                .and_then(|leadership| leadership.regions.get_mut(region))
            else {
                return;
            };
            let (incarnation, through) = duty.proposed_through;
            let Some(entry) = duty.early.remove(&(incarnation, through + 1)) else {
                return;
            };
            if self.propose_batch(entry).is_err() {
                // Full: the region resends it.
                return;
            }
        }
    }

    /// A region's acknowledgement of sealed epochs.
    pub fn handle_epoch_ack(
        &mut self,
        now_us: u64,
        ack: proto::SealedEpochAck,
    ) -> Result<(), InputError> {
        self.receive_time(now_us, ack.sender_time, "sealed epoch acknowledgement")?;
        let region = self.known_region(&ack.region)?;
        if ack.not_leader.is_some() {
            // The receiver was not its region's leader: it appended nothing, and the next
            // resend is due at the lower bound of the wait.
            if let Some(duty) = self
                .leadership
                .as_mut()
                .and_then(|leadership| leadership.regions.get_mut(&region))
            {
                duty.resend_timeout.refused();
            }
            return Ok(());
        }
        if self.leadership.is_none() {
            // An answer to a follower's delivery (see `deliver_as_follower`): only the leader
            // keeps track of what regions appended.
            return Ok(());
        }
        let newest = self.group.state_machine().newest_epoch_number();
        let mut appended = (
            ack.appended_through_epoch_number,
            ack.appended_parts_of_next_epoch,
        );
        // Followers commit entries of this leader's term before it learns of the commit, and
        // deliver the epochs they seal: a region may hold an epoch for each entry this leader
        // has not applied yet, but no more.
        let entries_unapplied = self
            .group
            .last_index()
            .saturating_sub(self.group.applied_index());
        if appended.0 > newest && appended.0 <= newest.saturating_add(entries_unapplied) {
            appended = (newest, 0);
        }
        if appended.0 > newest {
            return Err(InputError::InvalidAcknowledgement {
                region,
                reason: format!(
                    "it appended through epoch {}, beyond the newest sealed epoch {newest}",
                    appended.0
                ),
            });
        }
        if let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(&region))
            && appended > duty.appended
        {
            duty.appended = appended;
            duty.resend_timeout.progressed(now_us, appended.0 < newest);
            // The region moves on: keep its window of epochs in flight full, so that a region
            // far behind catches up at one window per round trip, not per resend interval.
            self.send_window(&region);
        }
        Ok(())
    }

    /// Sends `region` the epochs after the newest sent in its window, up to
    /// [`RESEND_MESSAGES_PER_REGION_MAX`] epochs past what it acknowledged.
    fn send_window(&mut self, region: &RegionId) {
        let newest = self.group.state_machine().newest_epoch_number();
        let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(region))
        else {
            return;
        };
        let (through, parts_appended) = duty.appended;
        let window_end = newest.min(through.saturating_add(RESEND_MESSAGES_PER_REGION_MAX as u64));
        let start = (through + 1).max(duty.window_sent_through + 1);
        if start > window_end {
            return;
        }
        duty.window_sent_through = window_end;
        for number in start..=window_end {
            let first_part = if number == through + 1 {
                parts_appended as usize
            } else {
                0
            };
            self.send_epoch(region, number, first_part, RESEND_MESSAGES_PER_REGION_MAX);
        }
    }

    /// A raft message from another replica, as bytes from the network.
    pub fn handle_raft_message(&mut self, bytes: &[u8]) -> Result<(), MessageError> {
        let message = decode_message(bytes)?;
        self.group.step(message)?;
        Ok(())
    }

    /// A raft message from another replica, already decoded.
    pub fn handle_raft_message_decoded(&mut self, message: Message) -> Result<(), MessageError> {
        self.group.step(message)?;
        Ok(())
    }

    /// A batch of raft messages from another replica: its sender time updates the clock
    /// first, then every message is stepped. Returns the first error; the other messages
    /// are still taken.
    pub fn handle_raft_batch(
        &mut self,
        now_us: u64,
        batch: &proto::RaftBatch,
    ) -> Result<(), MessageError> {
        if batch.to_node_id != self.id() {
            return Err(MessageError::WrongReceiver {
                to: batch.to_node_id,
                node_id: self.id(),
            });
        }
        self.receive_time(now_us, batch.sender_time, "raft batch")?;
        let mut first_error = None;
        for bytes in &batch.messages {
            if let Err(error) = self.handle_raft_message(bytes) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// A region node asks for the newest sealed epoch; `read_id` is the driver's name for the
    /// read (unique among the reads waiting). The answer comes through
    /// [`CoordinatorNode::poll_output`]: at once with `not_leader` on a follower
    /// (or when [`SEALED_EPOCH_READS_IN_FLIGHT_MAX`] reads wait), otherwise once the leader
    /// has confirmed its leadership after the read arrived and applied through the commit
    /// index it confirmed. The request's sender time moves this node's clock; a time too far
    /// ahead is refused.
    pub fn handle_read_sealed_epoch(
        &mut self,
        now_us: u64,
        read_id: u64,
        request: proto::ReadSealedEpochRequest,
    ) -> Result<(), InputError> {
        self.receive_time(now_us, request.sender_time, "sealed epoch read")?;
        if !self.is_leader() || self.epoch_reads.len() >= SEALED_EPOCH_READS_IN_FLIGHT_MAX {
            self.answer_epoch_read_not_leader(read_id);
            return Ok(());
        }
        if self.epoch_reads.contains_key(&read_id) {
            return Ok(());
        }
        let election_ticks = self.config.election_tick as u64;
        self.epoch_reads.insert(
            read_id,
            PendingEpochRead {
                deadline: self.ticks + 2 * election_ticks,
                asked_at: self.ticks,
                read_index: None,
                last_index_at_arrival: self.group.last_index(),
            },
        );
        self.group.read_index(read_id.to_be_bytes().to_vec());
        Ok(())
    }

    /// One tick of the driver's clock (once per epoch interval): raft elections and
    /// heartbeats, and the leader's duties (suspicion, acknowledgements, resends).
    pub fn handle_tick(&mut self, now_us: u64) {
        self.observe_time(now_us);
        self.ticks += 1;
        // A replica whose clock is off does not move its hybrid clock by it, does not stand
        // for election (its group sends no vote requests) and, leading, hands leadership to
        // the replica whose log is longest.
        if !self.clock_fenced {
            let _ = self.clock.now(now_us);
        }
        // The hybrid clock never moves back: after the physical clock leapt forward (before
        // the verdict fenced the replica) and back, it stays ahead, and so does the sender
        // time of every message this replica sends, which regions refuse beyond the bound. A
        // leader then would hold every region's calls until the physical clock caught up
        // (an hour for a clock that leapt an hour), so it fences itself meanwhile.
        let runs_ahead = self.clock.runs_ahead_of(now_us).is_some();
        if runs_ahead != self.clock_runs_ahead {
            self.clock_runs_ahead = runs_ahead;
            self.update_fence();
        }
        self.group.tick();
        self.tick_epoch_reads();
        if !self.started {
            self.started = true;
            if self.config.preferred_leader == Some(self.id()) && self.leader_id().is_none() {
                // Failure only means an election is already under way.
                let _ = self.group.campaign();
            }
        }
        self.refresh_leadership();
        if self.clock_fenced {
            let config = &self.config;
            self.group
                .hand_leadership_away(|voter| config.election_priority_of(voter));
        } else {
            self.return_leadership_to_preferred();
        }
        if self.leadership.is_some() {
            self.suspect_silent_regions();
            self.repeat_announcements();
            self.propose_acknowledgements();
            self.resend_epochs();
        }
    }

    /// Runs the node's outstanding work: proposes the waiting entries, then handles raft
    /// rounds through `io` (see [`RaftGroup::handle_ready`] for the order) until none is left
    /// or [`READY_ROUNDS_PER_CALL_MAX`] ran, and turns what was applied into outputs. The
    /// driver calls it after every input. An error is fatal: the node MUST be dropped and
    /// opened again from its store.
    pub fn handle_ready(&mut self, io: &mut impl ReadyIo) -> Result<(), ReadyError> {
        self.propose_waiting();
        for _ in 0..READY_ROUNDS_PER_CALL_MAX {
            let applied = self.group.handle_ready(io)?;
            self.refresh_leadership();
            self.handle_applied(applied);
            self.handle_read_states();
            if !self.group.has_ready() {
                break;
            }
        }
        self.wake_regions_for_membership();
        self.answer_epoch_reads();
        Ok(())
    }

    /// The answer this node gives `region` now: its acknowledgement state (batches applied,
    /// membership, watermark, incarnation) on the leader, `not_leader` (with the leader's id)
    /// on a follower. A driver that answers each submitted batch at once, before its entry is
    /// applied, answers with this; the batch's own acknowledgement reaches the region with
    /// the answer to a later submission (a region submits every epoch while busy, closes at
    /// its idle pace while idle, and resends what is unacknowledged).
    pub fn current_batch_ack(
        &mut self,
        now_us: u64,
        region: &str,
    ) -> Result<proto::RegionBatchAck, InputError> {
        self.observe_time(now_us);
        let region = self.known_region(region)?;
        Ok(if self.is_leader() {
            self.batch_ack(&region)
        } else {
            self.not_leader_ack(&region)
        })
    }

    /// A region leader's batch, answered at once: [`CoordinatorNode::handle_region_batch`],
    /// then [`CoordinatorNode::current_batch_ack`]. Production answers `SubmitBatch` with it
    /// and the simulator answers a submission with it, so that acknowledgements reach the
    /// regions the same way in both.
    pub fn answer_region_batch(
        &mut self,
        now_us: u64,
        batch: proto::RegionBatch,
    ) -> Result<proto::RegionBatchAck, InputError> {
        let region = batch.region.clone();
        self.handle_region_batch(now_us, batch)?;
        self.current_batch_ack(now_us, &region)
    }

    // Outputs.

    /// The next output, `None` once every output was taken. Drivers call it after every input
    /// and every [`CoordinatorNode::handle_ready`] until it returns `None`. Answers to reads
    /// come first: a caller waits for each of them.
    pub fn poll_output(&mut self) -> Option<CoordinatorOutput> {
        if let Some((read_id, reply)) = self.epoch_read_replies.pop_front() {
            return Some(CoordinatorOutput::SealedEpochReply { read_id, reply });
        }
        self.outputs.pop_front()
    }

    // Internals: sealed epoch reads.

    fn handle_read_states(&mut self) {
        for state in self.group.take_read_states() {
            let Ok(context) = <[u8; 8]>::try_from(state.request_ctx.as_slice()) else {
                continue;
            };
            if let Some(read) = self.epoch_reads.get_mut(&u64::from_be_bytes(context)) {
                read.read_index
                    .get_or_insert(state.index.max(read.last_index_at_arrival));
            }
        }
    }

    /// Answers the reads the leader confirmed and has applied through; every read when this
    /// node no longer leads.
    fn answer_epoch_reads(&mut self) {
        if !self.is_leader() {
            for read_id in std::mem::take(&mut self.epoch_reads).into_keys() {
                self.answer_epoch_read_not_leader(read_id);
            }
            return;
        }
        let applied_index = self.group.applied_index();
        let confirmed: Vec<u64> = self
            .epoch_reads
            .iter()
            .filter(|(_, read)| read.read_index.is_some_and(|index| index <= applied_index))
            .map(|(&read_id, _)| read_id)
            .collect();
        for read_id in confirmed {
            self.epoch_reads.remove(&read_id);
            let state = self.group.state_machine();
            let epoch_number = state.newest_epoch_number();
            let watermark = (epoch_number > 0).then(|| state.watermark().into());
            let sender_time = Some(self.clock.now(self.now_us).into());
            self.counters.epoch_reads_confirmed += 1;
            self.push_epoch_read_reply(
                read_id,
                proto::ReadSealedEpochReply {
                    epoch_number,
                    watermark,
                    not_leader: None,
                    sender_time,
                },
            );
        }
    }

    /// Gives up on reads past their deadline, and asks raft again for the others: raft drops
    /// a read without a word while the leader has not committed an entry of its term.
    fn tick_epoch_reads(&mut self) {
        let ticks = self.ticks;
        let expired: Vec<u64> = self
            .epoch_reads
            .iter()
            .filter(|(_, read)| read.deadline <= ticks)
            .map(|(&read_id, _)| read_id)
            .collect();
        for read_id in expired {
            self.epoch_reads.remove(&read_id);
            self.answer_epoch_read_not_leader(read_id);
        }
        let retry_ticks = self.config.heartbeat_tick as u64;
        let retry: Vec<u64> = self
            .epoch_reads
            .iter_mut()
            .filter(|(_, read)| {
                read.read_index.is_none() && ticks.saturating_sub(read.asked_at) >= retry_ticks
            })
            .map(|(&read_id, read)| {
                read.asked_at = ticks;
                read_id
            })
            .collect();
        for read_id in retry {
            // raft keeps one pending read per context, so asking again is harmless.
            self.group.read_index(read_id.to_be_bytes().to_vec());
        }
        if !self.is_leader() {
            self.answer_epoch_reads();
        }
    }

    fn answer_epoch_read_not_leader(&mut self, read_id: u64) {
        let leader_node_id = self
            .leader_id()
            .filter(|&leader| leader != self.id())
            .unwrap_or(0);
        let sender_time = Some(self.clock.now(self.now_us).into());
        self.counters.epoch_reads_not_leader += 1;
        self.push_epoch_read_reply(
            read_id,
            proto::ReadSealedEpochReply {
                not_leader: Some(proto::NotLeader {
                    leader_node_id,
                    leader_address: String::new(),
                }),
                sender_time,
                ..proto::ReadSealedEpochReply::default()
            },
        );
    }

    fn push_epoch_read_reply(&mut self, read_id: u64, reply: proto::ReadSealedEpochReply) {
        // Every read gets exactly one answer and at most SEALED_EPOCH_READS_IN_FLIGHT_MAX
        // wait, so twice that bounds the answers the driver has not polled yet.
        if self.epoch_read_replies.len() >= 2 * SEALED_EPOCH_READS_IN_FLIGHT_MAX {
            self.epoch_read_replies.pop_front();
            self.counters.outputs_dropped += 1;
        }
        self.epoch_read_replies.push_back((read_id, reply));
    }

    // Internals: inputs.

    fn observe_time(&mut self, now_us: u64) {
        self.now_us = self.now_us.max(now_us);
    }

    fn receive_time(
        &mut self,
        now_us: u64,
        sender_time: Option<proto::Timestamp>,
        message: &'static str,
    ) -> Result<(), InputError> {
        self.observe_time(now_us);
        let sender_time = sender_time.ok_or(InputError::MissingSenderTime { message })?;
        let sender_time =
            Timestamp::try_from(sender_time).map_err(|error| InputError::InvalidSenderTime {
                message,
                reason: error.to_string(),
            })?;
        match self.clock.update(sender_time, now_us) {
            Ok(_) => Ok(()),
            Err(error) => {
                self.counters.refused_for_skew += 1;
                Err(InputError::ClockSkew { message, error })
            }
        }
    }

    fn known_region(&self, region: &str) -> Result<RegionId, InputError> {
        let unknown = || InputError::UnknownRegion {
            region: region.chars().take(80).collect(),
        };
        let region = RegionId::new(region).map_err(|_| unknown())?;
        if self.group.state_machine().region(&region).is_none() {
            return Err(unknown());
        }
        Ok(region)
    }

    fn batch_entry(
        &self,
        region: RegionId,
        batch: proto::RegionBatch,
    ) -> Result<BatchEntry, InputError> {
        let invalid = |reason: String| InputError::InvalidBatch {
            region: region.clone(),
            reason,
        };
        if batch.records.len() > REGION_BATCH_RECORDS_MAX {
            return Err(invalid(format!(
                "{} records, more than the maximum of {REGION_BATCH_RECORDS_MAX}",
                batch.records.len()
            )));
        }
        let closed = batch
            .closed_timestamp
            .ok_or_else(|| invalid("closed_timestamp is missing".to_owned()))?;
        let closed = Timestamp::try_from(closed)
            .map_err(|error| invalid(format!("closed_timestamp: {error}")))?;
        let records = batch
            .records
            .into_iter()
            .enumerate()
            .map(|(number, record)| {
                Record::try_from(record)
                    .map_err(|error| invalid(format!("record {number}: {error}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let entry = BatchEntry {
            region: region.clone(),
            incarnation: batch.incarnation,
            batch_number: batch.batch_number,
            records,
            closed,
        };
        let records_size_bytes = entry.records.iter().map(record_size_bytes).sum();
        check_batch(&entry, records_size_bytes).map_err(invalid)?;
        Ok(entry)
    }

    fn queue_proposal(&mut self, data: Vec<u8>) -> Result<(), InputError> {
        if self.proposals.len() >= PROPOSALS_PENDING_MAX
            || self.proposals_size_bytes + data.len() > PROPOSALS_PENDING_BYTES_MAX
        {
            self.counters.batches_overloaded += 1;
            return Err(InputError::Overloaded {
                reason: format!(
                    "{} entries ({} bytes) wait for the next round, the most allowed",
                    self.proposals.len(),
                    self.proposals_size_bytes
                ),
            });
        }
        self.proposals_size_bytes += data.len();
        self.proposals.push_back(data);
        Ok(())
    }

    /// Queues an entry of the leader's own duties; when the queue is full it waits for the
    /// next tick, which proposes it again.
    fn queue_duty(&mut self, entry: CoordinatorEntry) {
        let _ = self.queue_proposal(entry.encode());
    }

    fn propose_waiting(&mut self) {
        self.queued_batches.clear();
        self.proposals_size_bytes = 0;
        let mut batch_dropped = false;
        while let Some(data) = self.proposals.pop_front() {
            let is_batch = data.get(1) == Some(&1);
            match self.group.propose(data) {
                Ok(()) if is_batch => self.counters.batches_proposed += 1,
                Ok(()) => {}
                // The region resends its batch, and the next tick repeats the duties.
                Err(_) => {
                    self.counters.proposals_dropped += 1;
                    batch_dropped |= is_batch;
                }
            }
        }
        if batch_dropped {
            self.forget_proposed_batches();
        }
    }

    /// raft dropped the proposal of a batch (a leadership transfer is under way, or its bound
    /// on uncommitted entries was reached): the region resends the batch, and this leader
    /// must propose it again instead of taking it for proposed, or the region's batches stall
    /// for as long as this leadership lasts. Every region's proposals start again from what
    /// is applied, as at the start of a leadership; a batch proposed twice is applied once
    /// (the second copy is a duplicate).
    fn forget_proposed_batches(&mut self) {
        let state = self.group.state_machine();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        for (region, duty) in &mut leadership.regions {
            if let Some(region_state) = state.region(region) {
                duty.proposed_through = (
                    region_state.incarnation,
                    region_state.next_batch_number.saturating_sub(1),
                );
            }
        }
    }

    // Internals: leadership.

    fn refresh_leadership(&mut self) {
        if !self.is_leader() {
            self.leadership = None;
            return;
        }
        let term = self.group.term();
        if self
            .leadership
            .as_ref()
            .is_some_and(|leadership| leadership.term == term)
        {
            return;
        }
        let now_us = self.now_us;
        let regions = self
            .group
            .state_machine()
            .regions()
            .iter()
            .map(|(region, state)| {
                let duty = RegionDuty {
                    closed_seen: state.closed,
                    advanced_at_us: now_us,
                    suspected: None,
                    appended: (state.acknowledged_epoch, 0),
                    acknowledgement_proposed: None,
                    resend_timeout: ResendTimeout::due_at_once(),
                    proposed_through: (state.incarnation, state.next_batch_number - 1),
                    early: BTreeMap::new(),
                    window_sent_through: state.acknowledged_epoch,
                    batch_heard: false,
                    announced_at_us: now_us,
                };
                (region.clone(), duty)
            })
            .collect();
        self.leadership = Some(Leadership {
            term,
            since_us: now_us,
            regions,
            records_arrived_us: None,
            membership_change_told: false,
            leadership_return: LeadershipReturn::new(
                self.ticks,
                self.group.last_index(),
                self.config.election_tick as u64,
            ),
        });
        self.announce_leadership();
    }

    /// On a leader that is not the preferred replica, hands leadership back to it once it has
    /// been a healthy follower for a while (see [`crate::leadership_return`]): a failover
    /// otherwise leaves the order on the longer path for as long as this process lives.
    fn return_leadership_to_preferred(&mut self) {
        let Some(preferred) = self.config.preferred_leader else {
            return;
        };
        if preferred == self.id() || self.group.is_transferring_leadership() {
            return;
        }
        let bound_us = self.config.max_clock_skew_us;
        let clock_within_bound = self.clock_samples.iter().any(|(peer, sample)| {
            *peer == preferred
                && sample
                    .offset_us
                    .unsigned_abs()
                    .saturating_add(sample.uncertainty_us)
                    <= bound_us
        });
        let view = PreferredReplica {
            progress: self.group.follower_progress(preferred),
            clock_within_bound,
        };
        let (ticks, last_index) = (self.ticks, self.group.last_index());
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        if leadership
            .leadership_return
            .on_tick(ticks, last_index, view)
        {
            self.counters.leadership_returns += 1;
            self.group.transfer_leader(preferred);
        }
    }

    /// Tells every member region, with an acknowledgement sent unasked, that this replica now
    /// leads and in which term (`RegionBatchAck.leader_term`): a region whose calls still go
    /// to a former leader that went silent without failing them (paused, cut off) sends the
    /// next ones here at once, instead of after each call's timeout (2 s). The acknowledgement
    /// comes from state that may not yet hold every committed entry, which only makes it
    /// acknowledge less than a region knows (a region ignores that) and say less of what was
    /// released; it asks for closes, and the leader's next answer says whether they are still
    /// wanted.
    fn announce_leadership(&mut self) {
        for region in self.group.state_machine().member_regions() {
            self.announce_to(region);
        }
    }

    fn announce_to(&mut self, region: RegionId) {
        let mut ack = self.batch_ack(&region);
        ack.closes_wanted = true;
        self.counters.leadership_announcements += 1;
        self.push_output(region, RegionMessage::LeaderAnnouncement(ack));
    }

    /// Announces this leadership again, once per resend interval, to each member region none
    /// of whose batches reached this replica since it began to lead. An announcement is one
    /// message each way it may be lost, and a region that lost it goes on calling the former
    /// leader: one that is paused or cut off holds its calls until their timeout (2 s). The
    /// repeats stop at the region's first batch (an announcement asks for closes, so even an
    /// idle region sends one at once), or when the region leaves the membership (suspected
    /// after its timeout).
    fn repeat_announcements(&mut self) {
        let now_us = self.now_us;
        let interval_us = self.config.resend_interval_us;
        let members = self.group.state_machine().member_regions();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        let mut due = Vec::new();
        for region in members {
            let Some(duty) = leadership.regions.get_mut(&region) else {
                continue;
            };
            if !duty.batch_heard && now_us.saturating_sub(duty.announced_at_us) >= interval_us {
                duty.announced_at_us = now_us;
                due.push(region);
            }
        }
        for region in due {
            self.announce_to(region);
        }
    }

    fn suspect_silent_regions(&mut self) {
        let now_us = self.now_us;
        let timeout_us = self.config.suspicion_timeout_us;
        let state = self.group.state_machine();
        let members = state.member_regions().len();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        let mut suspects = Vec::new();
        let mut notices = Vec::new();
        for (region, duty) in &mut leadership.regions {
            let region_state = state
                .region(region)
                .expect("duties cover the known regions");
            if region_state.closed > duty.closed_seen {
                duty.closed_seen = region_state.closed;
                duty.advanced_at_us = now_us;
            }
            let silent_since_us = duty.advanced_at_us.max(leadership.since_us);
            let already = duty.suspected.is_some_and(|(incarnation, at_us)| {
                incarnation == region_state.incarnation && now_us.saturating_sub(at_us) < timeout_us
            });
            if region_state.member
                && members > 1
                && !already
                && now_us.saturating_sub(silent_since_us) > timeout_us
            {
                duty.suspected = Some((region_state.incarnation, now_us));
                notices.push(Notice::RegionSuspected {
                    region: region.clone(),
                    incarnation: region_state.incarnation,
                    silent_for_us: now_us.saturating_sub(silent_since_us),
                });
                suspects.push(CoordinatorEntry::Suspect {
                    region: region.clone(),
                    incarnation: region_state.incarnation,
                });
            }
        }
        for notice in notices {
            self.push_notice(notice);
        }
        for entry in suspects {
            self.queue_duty(entry);
        }
    }

    fn propose_acknowledgements(&mut self) {
        let now_us = self.now_us;
        let resend_us = self.config.resend_interval_us;
        let state = self.group.state_machine();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        let mut entries = Vec::new();
        for (region, duty) in &mut leadership.regions {
            let replicated = state
                .region(region)
                .expect("duties cover the known regions")
                .acknowledged_epoch;
            let through = duty.appended.0;
            let in_flight = duty
                .acknowledgement_proposed
                .is_some_and(|(proposed, at_us)| {
                    proposed >= through && now_us.saturating_sub(at_us) < resend_us
                });
            if through > replicated && !in_flight {
                duty.acknowledgement_proposed = Some((through, now_us));
                entries.push(CoordinatorEntry::EpochsAcknowledged {
                    region: region.clone(),
                    through,
                });
            }
        }
        for entry in entries {
            self.queue_duty(entry);
        }
    }

    /// Resends each region the epochs it has not acknowledged, from its acknowledged point,
    /// once its acknowledgements have not moved for its resend timeout (the resend interval,
    /// doubled after each resend they did not follow): a region slowed by load, whose
    /// acknowledgements still move, is not sent copies of what it has not yet had time to
    /// take.
    fn resend_epochs(&mut self) {
        let now_us = self.now_us;
        let (min_us, max_us) = (
            self.config.resend_interval_us,
            self.config.resend_interval_max_us,
        );
        let state = self.group.state_machine();
        let newest = state.newest_epoch_number();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        let mut sends = Vec::new();
        for (region, duty) in &mut leadership.regions {
            let replicated = state
                .region(region)
                .expect("duties cover the known regions")
                .acknowledged_epoch;
            let from = duty.appended.max((replicated, 0));
            if from.0 >= newest {
                duty.resend_timeout.settled();
                continue;
            }
            duty.resend_timeout.sent(now_us);
            let resend_at_us = duty.resend_timeout.resend_at_us(min_us, max_us);
            if resend_at_us.is_none_or(|at_us| now_us < at_us) {
                continue;
            }
            duty.resend_timeout.resent(now_us);
            sends.push((region.clone(), from));
        }
        let first_retained = self.group.state_machine().first_retained_epoch_number();
        for (region, (through, parts_appended)) in sends {
            let mut budget = RESEND_MESSAGES_PER_REGION_MAX;
            let mut number = through + 1;
            let mut first_part = parts_appended as usize;
            // A region that missed released epochs reads them from another region
            // (docs/global-protocol.md section 7); it is sent the retained ones, without a walk
            // over the numbers of every released one.
            if number < first_retained {
                number = first_retained;
                first_part = 0;
            }
            while budget > 0 && number <= newest {
                let sent = self.send_epoch(&region, number, first_part, budget);
                self.counters.epoch_messages_resent += sent as u64;
                budget -= sent;
                number += 1;
                first_part = 0;
            }
            if let Some(duty) = self
                .leadership
                .as_mut()
                .and_then(|leadership| leadership.regions.get_mut(&region))
            {
                duty.window_sent_through = number - 1;
            }
        }
    }

    // Internals: outputs.

    fn handle_applied(&mut self, applied: Vec<Applied<EntryOutcome>>) {
        for item in applied {
            let Applied::Entry { output, .. } = item else {
                continue;
            };
            self.count_outcome(&output);
            if self.leadership.is_none() {
                if let Some(number) = output.sealed_epoch {
                    self.deliver_as_follower(number);
                }
                continue;
            }
            if let Some(number) = output.sealed_epoch {
                let regions: Vec<RegionId> = self
                    .group
                    .state_machine()
                    .regions()
                    .keys()
                    .cloned()
                    .collect();
                for region in regions {
                    // A region far behind gets its epochs through its window, in order.
                    let caught_up = self
                        .leadership
                        .as_ref()
                        .and_then(|leadership| leadership.regions.get(&region))
                        .is_none_or(|duty| {
                            duty.appended.0 + RESEND_MESSAGES_PER_REGION_MAX as u64 >= number
                        });
                    if caught_up {
                        self.send_epoch(&region, number, 0, usize::MAX);
                        let now_us = self.now_us;
                        if let Some(duty) = self
                            .leadership
                            .as_mut()
                            .and_then(|leadership| leadership.regions.get_mut(&region))
                        {
                            duty.window_sent_through = duty.window_sent_through.max(number);
                            duty.resend_timeout.sent(now_us);
                        }
                    }
                }
            }
        }
    }

    fn count_outcome(&mut self, outcome: &EntryOutcome) {
        let mut notice = None;
        let counters = &mut self.counters;
        if outcome.sealed_epoch.is_some() {
            counters.epochs_sealed += 1;
        }
        match &outcome.effect {
            EntryEffect::Batch {
                verdict, region, ..
            } => match verdict {
                BatchVerdict::Accepted { readmitted } => {
                    counters.batches_accepted += 1;
                    counters.regions_readmitted += u64::from(*readmitted);
                    if *readmitted {
                        notice = Some(Notice::RegionReadmitted {
                            region: region.clone(),
                        });
                    }
                }
                BatchVerdict::Overloaded { .. } => counters.batches_overloaded += 1,
                BatchVerdict::EpochsReleased { .. } => {
                    counters.readmissions_refused += 1;
                    counters.batches_not_accepted += 1;
                }
                _ => counters.batches_not_accepted += 1,
            },
            EntryEffect::Suspect {
                verdict: SuspectVerdict::Removed { records_dropped },
                region,
            } => {
                counters.regions_removed += 1;
                notice = Some(Notice::RegionRemoved {
                    region: region.clone(),
                    records_dropped: *records_dropped,
                });
            }
            EntryEffect::Refused { .. } => counters.entries_refused += 1,
            EntryEffect::Suspect { .. } | EntryEffect::EpochsAcknowledged { .. } => {}
        }
        if let Some(notice) = notice {
            self.push_notice(notice);
        }
    }

    /// A follower that applied the entry sealing epoch `number` sends the epoch to every
    /// region once, as the leader does, when it follows a leader and has applied its whole
    /// log (a follower catching up on a backlog sends nothing: the regions have those epochs
    /// from the leader). It keeps no resend duty: the leader still delivers every epoch and
    /// resends what a region does not acknowledge; a region appends whichever copy arrives
    /// first and ignores the other. The sends are what lets an epoch reach a region from the
    /// replica nearest to it, one leader round trip before the leader knows it is committed.
    /// A replica fenced for its clock sends nothing: its sender time is off (or runs ahead of
    /// its physical clock), so regions would refuse the parts beyond the skew bound, and the
    /// leader delivers the epoch anyway.
    fn deliver_as_follower(&mut self, number: u64) {
        let group = &self.group;
        let following = group.leader_id().is_some_and(|leader| leader != self.id());
        if !following || self.clock_fenced || group.applied_index() < group.last_index() {
            return;
        }
        let regions: Vec<RegionId> = self
            .group
            .state_machine()
            .regions()
            .iter()
            .filter(|(_, state)| {
                state.acknowledged_epoch + RESEND_MESSAGES_PER_REGION_MAX as u64 >= number
            })
            .map(|(region, _)| region.clone())
            .collect();
        for region in regions {
            if self.send_epoch(&region, number, 0, usize::MAX) > 0 {
                self.counters.epochs_delivered_as_follower += 1;
            }
        }
    }

    /// Sends parts `first_part..` of epoch `number` to `region`, at most `parts_max` of them;
    /// returns how many were sent (0 when the epoch is no longer retained).
    fn send_epoch(
        &mut self,
        region: &RegionId,
        number: u64,
        first_part: usize,
        parts_max: usize,
    ) -> usize {
        let sender_time = self.clock.now(self.now_us);
        let Some(epoch) = self.group.state_machine().epoch(number) else {
            return 0;
        };
        let messages: Vec<proto::SealedEpoch> =
            epoch_messages(epoch, self.config.node_id, sender_time)
                .into_iter()
                .skip(first_part)
                .take(parts_max)
                .collect();
        let sent = messages.len();
        for message in messages {
            self.counters.epoch_messages_sent += 1;
            self.push_output(region.clone(), RegionMessage::Epoch(message));
        }
        sent
    }

    fn batch_ack(&mut self, region: &RegionId) -> proto::RegionBatchAck {
        let sender_time = self.clock.now(self.now_us);
        let state = self.group.state_machine();
        let region_state = state.region(region).expect("the region is known");
        proto::RegionBatchAck {
            region: region.to_string(),
            acknowledged_through_batch_number: region_state.acknowledged_through(),
            member: region_state.member,
            watermark: Some(state.watermark().into()),
            not_leader: None,
            sender_time: Some(sender_time.into()),
            incarnation: region_state.incarnation,
            first_retained_epoch_number: state.first_retained_epoch_number(),
            closes_wanted: self.closes_wanted(),
            last_sealed_record: region_state
                .last_sealed
                .map(|mark| proto::SealedRecordMark {
                    client_id: mark.client_id,
                    request_sequence: mark.request_sequence,
                    epoch_number: mark.epoch_number,
                }),
            last_sealed_record_unknown: !region_state.last_sealed_known,
            leader_node_id: self.id(),
            leader_term: self.group.term(),
        }
    }

    /// True when every member region should close a batch every epoch interval: records wait
    /// for the watermark, or a batch with records arrived within the last resend interval
    /// (its entry may not be applied yet), or a membership change waits for the epoch that
    /// shows it (which the watermark seals too). Otherwise a region with nothing to ship
    /// closes no batch.
    fn closes_wanted(&self) -> bool {
        let recent_records = self
            .leadership
            .as_ref()
            .and_then(|leadership| leadership.records_arrived_us)
            .is_some_and(|at_us| {
                self.now_us < at_us.saturating_add(self.config.resend_interval_us)
            });
        let state = self.group.state_machine();
        recent_records || state.pending_count() > 0 || state.membership_unsealed()
    }

    /// A member region's liveness ask counts as a sign of life, like a close that advances
    /// its closed timestamp, while no records wait: an idle region closes no batch, and is
    /// not suspected for it. While records wait, only closes count, so a region that can ask
    /// but not close (its leader cannot commit) is suspected and the others go on without it.
    fn take_liveness_ask(&mut self, region: &RegionId, now_us: u64) {
        self.counters.liveness_asks_answered += 1;
        if self.closes_wanted() {
            return;
        }
        if let Some(duty) = self
            .leadership
            .as_mut()
            .and_then(|leadership| leadership.regions.get_mut(region))
        {
            duty.advanced_at_us = duty.advanced_at_us.max(now_us);
        }
    }

    /// Tells every member region, once per membership change, that closes are wanted: a
    /// region was removed or readmitted, and the epoch that shows it is sealed only when the
    /// watermark rises, that is when every member closes past it. Idle members close no
    /// batch, so without this a readmitted region would wait for the next record.
    fn wake_regions_for_membership(&mut self) {
        let unsealed = self.group.state_machine().membership_unsealed();
        let Some(leadership) = self.leadership.as_mut() else {
            return;
        };
        let told = std::mem::replace(&mut leadership.membership_change_told, unsealed);
        if !unsealed || told {
            return;
        }
        for region in self.group.state_machine().member_regions() {
            let ack = self.batch_ack(&region);
            self.counters.idle_regions_woken += 1;
            self.push_output(region, RegionMessage::BatchAck(ack));
        }
    }

    /// Tells every member region but `origin` that closes are now wanted, with an
    /// acknowledgement sent unasked: records arrived while every region closed at its idle
    /// pace, and they wait for every region's closed timestamp. Regions do not ask between
    /// their idle closes, so without this the records would wait up to an idle interval; a
    /// lost message costs that much, as the next idle close's answer says the same.
    fn wake_idle_regions(&mut self, origin: &RegionId) {
        let regions: Vec<RegionId> = self
            .group
            .state_machine()
            .member_regions()
            .into_iter()
            .filter(|region| region != origin)
            .collect();
        for region in regions {
            let ack = self.batch_ack(&region);
            self.counters.idle_regions_woken += 1;
            self.push_output(region, RegionMessage::BatchAck(ack));
        }
    }

    fn not_leader_ack(&mut self, region: &RegionId) -> proto::RegionBatchAck {
        let sender_time = self.clock.now(self.now_us);
        proto::RegionBatchAck {
            region: region.to_string(),
            not_leader: Some(proto::NotLeader {
                leader_node_id: self.leader_id().unwrap_or(0),
                leader_address: String::new(),
            }),
            sender_time: Some(sender_time.into()),
            ..proto::RegionBatchAck::default()
        }
    }

    fn push_notice(&mut self, notice: Notice) {
        if self.outputs.len() >= OUTPUTS_PENDING_MAX {
            self.outputs.pop_front();
            self.counters.outputs_dropped += 1;
        }
        self.outputs.push_back(CoordinatorOutput::Notice(notice));
    }

    fn push_output(&mut self, region: RegionId, message: RegionMessage) {
        if self.outputs.len() >= OUTPUTS_PENDING_MAX {
            self.outputs.pop_front();
            self.counters.outputs_dropped += 1;
        }
        self.outputs
            .push_back(CoordinatorOutput::ToRegion { region, message });
    }
}

/// The messages that carry `epoch`, one per part (see [`Epoch::part_ranges`] with
/// [`EPOCH_PART_BYTES_MAX`]), stamped with the sender's node id and clock.
pub fn epoch_messages(
    epoch: &Epoch,
    sender_node_id: u64,
    sender_time: Timestamp,
) -> Vec<proto::SealedEpoch> {
    let ranges = epoch.part_ranges(EPOCH_PART_BYTES_MAX);
    let part_count = u32::try_from(ranges.len()).expect("an epoch has far fewer than 2^32 parts");
    let previous_watermark = (epoch.number > 1).then(|| epoch.previous_watermark.into());
    ranges
        .into_iter()
        .zip(0..)
        .map(|(range, part_index)| proto::SealedEpoch {
            epoch_number: epoch.number,
            watermark: Some(epoch.watermark.into()),
            previous_watermark,
            records: epoch.records[range]
                .iter()
                .cloned()
                .map(proto::Record::from)
                .collect(),
            part_index,
            part_count,
            member_regions: epoch
                .member_regions
                .iter()
                .map(ToString::to_string)
                .collect(),
            sender_node_id,
            sender_time: Some(sender_time.into()),
        })
        .collect()
}
