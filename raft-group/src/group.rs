//! [`RaftGroup`]: one node of a raft-rs group with its state machine, driven through ONE
//! [`RaftGroup::handle_ready`] that every driver (the simulator, the tokio node) calls.
//!
//! The group is sans-IO. Inputs come in through [`RaftGroup::tick`], [`RaftGroup::step`],
//! [`RaftGroup::propose`] and the commands; the outputs of each round (writes to persist,
//! messages to send, what the state machine applied) come out of `handle_ready` through a
//! [`ReadyIo`] the driver provides. Time is the driver's ticks; randomness is the seed in the
//! configuration.

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
use raft::{GetEntriesContext, RawNode, ReadState, SnapshotStatus, StateRole};

use crate::election::ElectionTimeoutRng;
use crate::message_check::{NodeState, UnsafeMessage, check_message};
use crate::storage::RaftStorage;
use crate::store::{DurableStore, KeyRange, StoreError, WriteBatch};

/// The largest election tick a configuration may use.
pub const ELECTION_TICK_MAX: usize = 10_000;

/// The most append messages a leader keeps in flight to one follower.
pub const INFLIGHT_MESSAGES_MAX: usize = 4_096;

/// The most entries a retention policy may keep below the applied index.
pub const RETAINED_ENTRIES_MAX: u64 = crate::storage::RAFT_LOG_ENTRIES_MAX as u64 / 2;

/// The most entry bytes a retention policy may keep below the applied index.
pub const RETAINED_SIZE_BYTES_MAX: u64 = 4 * 1024 * 1024 * 1024;

/// The largest append message a configuration may allow.
pub const MESSAGE_SIZE_BYTES_MAX: u64 = crate::codec::RAFT_MESSAGE_BYTES_MAX as u64 / 2;

/// The most confirmed reads ([`RaftGroup::read_index`]) kept until the user takes them; beyond,
/// the oldest is dropped (its reader asks again).
pub const READ_STATES_PENDING_MAX: usize = 4_096;

/// The index and term a bootstrapped group starts from, as if from a snapshot: a member added
/// later has an empty log, so it must catch up by snapshot, which carries the membership.
pub const BOOTSTRAP_INDEX: u64 = 1;

/// The term of [`BOOTSTRAP_INDEX`].
pub const BOOTSTRAP_TERM: u64 = 1;

/// How much of the applied raft log a node keeps, so that a follower slightly behind catches
/// up from entries rather than from a snapshot. When either bound is passed, the log is
/// compacted down to half of both, so compaction happens in steps rather than every round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRetention {
    /// The most entries at or below the applied index (at most [`RETAINED_ENTRIES_MAX`]).
    pub entries_max: u64,
    /// The most bytes of entries held (at most [`RETAINED_SIZE_BYTES_MAX`]).
    pub size_bytes_max: u64,
}

impl Default for LogRetention {
    fn default() -> Self {
        LogRetention {
            entries_max: 10_000,
            size_bytes_max: 64 * 1024 * 1024,
        }
    }
}

/// What a leader knows of one follower's log (see [`RaftGroup::follower_progress`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The index through which the follower's log matches the leader's, while the leader
    /// replicates to it steadily; `None` while it probes the follower or sends it a snapshot.
    pub replicated_through: Option<u64>,
    /// Whether the follower answered since the leader last checked its quorum.
    pub heard_recently: bool,
}

/// The settings of one group member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftGroupConfig {
    /// This node's id, not 0, unique in the group.
    pub node_id: u64,
    /// The voters of a new group, the same list on every initial member. Empty for a node
    /// that joins an existing group: it waits for the leader's snapshot.
    pub initial_voters: Vec<u64>,
    /// Ticks without a leader before a follower campaigns; each timeout is drawn from
    /// `[election_tick, 2 * election_tick)`.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; below `election_tick`.
    pub heartbeat_tick: usize,
    /// The seed of this node's election timeouts. Nodes of one group should differ.
    pub election_seed: u64,
    /// This node's election priority (raft-rs's `priority`): a voter whose log is as long as
    /// a candidate's refuses its (pre-)vote when the voter's priority is higher. 0 on every
    /// node (the default) is plain raft. Distinct priorities end split votes between two
    /// candidates whose timeouts fire within a round trip of each other: only the one of
    /// higher priority gets past the pre-vote, where with equal priorities both raise their
    /// term, vote for themselves and wait another timeout. Over a WAN, where the pre-vote
    /// and the vote take two round trips of tens of milliseconds against a timeout spread
    /// of a few hundred, such split votes are common. A longer log still wins over a higher
    /// priority, so the safety of elections is unchanged; a node that may not campaign
    /// ([`RaftGroup::set_may_campaign`]) drops its priority to 0 meanwhile, so that it never
    /// holds the others back.
    pub election_priority: u32,
    /// The most entry bytes in one append message (raft sends at least one entry).
    pub message_size_bytes_max: u64,
    /// The most append messages in flight to one follower.
    pub inflight_messages_max: usize,
    /// The most bytes of uncommitted entries a leader accepts before dropping proposals.
    pub uncommitted_size_bytes_max: u64,
    /// The most bytes of committed entries handed to the state machine in one round.
    pub committed_size_bytes_per_ready_max: u64,
    /// How much of the applied log to keep.
    pub log_retention: LogRetention,
    /// Whether a node asks for votes before raising its term (raft thesis 9.6), so that a
    /// node back from a partition does not depose a healthy leader.
    pub pre_vote: bool,
    /// Whether a leader steps down when it has not heard from a quorum for an election
    /// timeout, so that a partitioned leader stops accepting proposals.
    pub check_quorum: bool,
    /// Whether a leader syncs its new entries before it sends them, so that a follower of a
    /// group of at most three voters commits the entries of its leader's term as soon as it
    /// has synced them itself: the leader's copy and its own are a majority, and an entry of
    /// the current term stored on a majority is committed (raft thesis 3.6.2; the proof of
    /// leader completeness needs only that the copies were stored in that term). Such a
    /// follower applies an entry one leader round trip sooner than when it waits for the
    /// leader's commit index, at the price of one sync before the leader's appends leave.
    /// Every member of a group must have the same setting: a leader without it sends entries
    /// before they are durable, and a follower with it would then count a copy that a crash
    /// of the leader can lose.
    pub followers_commit_synced_entries: bool,
}

impl RaftGroupConfig {
    /// The default settings for node `node_id` of a group whose initial voters are
    /// `initial_voters` (empty for a joining node).
    pub fn new(node_id: u64, initial_voters: Vec<u64>) -> Self {
        RaftGroupConfig {
            node_id,
            initial_voters,
            election_tick: 10,
            heartbeat_tick: 2,
            election_seed: node_id,
            election_priority: 0,
            message_size_bytes_max: 1024 * 1024,
            inflight_messages_max: 256,
            uncommitted_size_bytes_max: 64 * 1024 * 1024,
            committed_size_bytes_per_ready_max: 16 * 1024 * 1024,
            log_retention: LogRetention::default(),
            pre_vote: true,
            check_quorum: true,
            followers_commit_synced_entries: false,
        }
    }

    /// Checks every setting and names the first that is wrong.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field: &'static str, reason: String| Err(ConfigError { field, reason });
        if self.node_id == raft::INVALID_ID {
            return invalid("node_id", "0 is reserved for \"no node\"".to_owned());
        }
        if self.initial_voters.contains(&raft::INVALID_ID) {
            return invalid("initial_voters", "0 is reserved for \"no node\"".to_owned());
        }
        if self.heartbeat_tick == 0 || self.heartbeat_tick >= self.election_tick {
            return invalid(
                "heartbeat_tick",
                format!(
                    "{} must be at least 1 and below the election tick {}",
                    self.heartbeat_tick, self.election_tick
                ),
            );
        }
        if self.election_tick > ELECTION_TICK_MAX {
            return invalid(
                "election_tick",
                format!(
                    "{} is above the maximum {ELECTION_TICK_MAX}",
                    self.election_tick
                ),
            );
        }
        if self.message_size_bytes_max == 0 || self.message_size_bytes_max > MESSAGE_SIZE_BYTES_MAX
        {
            return invalid(
                "message_size_bytes_max",
                format!(
                    "{} is outside 1..={MESSAGE_SIZE_BYTES_MAX}",
                    self.message_size_bytes_max
                ),
            );
        }
        if self.inflight_messages_max == 0 || self.inflight_messages_max > INFLIGHT_MESSAGES_MAX {
            return invalid(
                "inflight_messages_max",
                format!(
                    "{} is outside 1..={INFLIGHT_MESSAGES_MAX}",
                    self.inflight_messages_max
                ),
            );
        }
        if self.uncommitted_size_bytes_max == 0 || self.committed_size_bytes_per_ready_max == 0 {
            return invalid(
                "uncommitted_size_bytes_max",
                "the uncommitted and per-round committed sizes must be positive".to_owned(),
            );
        }
        let retention = self.log_retention;
        if retention.entries_max < 2 || retention.entries_max > RETAINED_ENTRIES_MAX {
            return invalid(
                "log_retention.entries_max",
                format!(
                    "{} is outside 2..={RETAINED_ENTRIES_MAX}",
                    retention.entries_max
                ),
            );
        }
        if retention.size_bytes_max < 2 || retention.size_bytes_max > RETAINED_SIZE_BYTES_MAX {
            return invalid(
                "log_retention.size_bytes_max",
                format!(
                    "{} is outside 2..={RETAINED_SIZE_BYTES_MAX}",
                    retention.size_bytes_max
                ),
            );
        }
        Ok(())
    }

    fn raft_config(&self, applied_index: u64) -> raft::Config {
        raft::Config {
            id: self.node_id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            priority: i64::from(self.election_priority),
            applied: applied_index,
            max_size_per_msg: self.message_size_bytes_max,
            max_inflight_msgs: self.inflight_messages_max,
            check_quorum: self.check_quorum,
            pre_vote: self.pre_vote,
            max_uncommitted_size: self.uncommitted_size_bytes_max,
            max_committed_size_per_ready: self.committed_size_bytes_per_ready_max,
            // Off: raft-rs 0.7's `batch_append` adds the entries of a later append to an
            // earlier append without entries to the same follower, keeping the earlier anchor
            // although the follower's progress moved in between (a rejection or an
            // acknowledgement in the same round), so that honest entries no longer follow
            // their anchor. A follower holding the anchor would take them one index off and
            // be stopped by raft-rs later; `message_check` refuses such an append, which
            // would stall replication instead. Appends of a round still share one transport
            // batch per peer. `a_batched_append_goes_out_anchored_right_before_its_entries`
            // (raft-group/tests/forged_messages.rs) replays the sequence.
            batch_append: false,
            ..raft::Config::default()
        }
    }
}

/// A setting of [`RaftGroupConfig`] that is out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("raft group configuration field {field}: {reason}")]
pub struct ConfigError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// Snapshot bytes a state machine cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("snapshot: {reason}")]
pub struct SnapshotError {
    /// What was wrong, naming the part of the snapshot.
    pub reason: String,
}

impl SnapshotError {
    /// An error with the given reason.
    pub fn new(reason: impl Into<String>) -> Self {
        SnapshotError {
            reason: reason.into(),
        }
    }
}

/// The replicated state a group orders entries for: a deterministic function of the
/// committed entries, persisted through the same batches as the raft log.
///
/// Every method MUST be deterministic: the same calls in the same order produce the same
/// state and the same writes on every member.
pub trait StateMachine {
    /// What applying one entry produced, handed back to the driver of the node.
    type Output;

    /// Applies the data of the committed normal entry at raft `index`, adding its writes to
    /// `batch`, which is persisted atomically with the group's own writes. Data that does not
    /// decode MUST be refused deterministically (every member refuses it alike), never by a
    /// panic.
    ///
    /// `store` holds every batch written before this round, not `batch`: a state machine that
    /// reads back what it wrote keeps the writes of the round itself until
    /// [`StateMachine::batch_written`]. A read that fails is returned, and is fatal for the
    /// node ([`ReadyError::Store`]): nothing of the round is written.
    fn apply(
        &mut self,
        index: u64,
        data: &[u8],
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
    ) -> Result<Self::Output, StoreError>;

    /// The batch the last applies wrote into is now in the store (written, synced or not):
    /// reads of `store` see it from now on.
    fn batch_written(&mut self) {}

    /// The whole state, encoded, for a follower behind the compaction point; what it reads
    /// lies in `store`.
    fn snapshot(&self, store: &dyn DurableStore) -> Result<Vec<u8>, StoreError>;

    /// The ranges of the store that a follower fetches apart from the snapshot (a state too
    /// large for one raft message): the group pins a view of them under the snapshot's raft
    /// index when it builds the snapshot, read in the same instant as
    /// [`StateMachine::snapshot`], so the view holds exactly the state the snapshot describes.
    /// None by default.
    fn snapshot_view_ranges(&self) -> Vec<KeyRange> {
        Vec::new()
    }

    /// Checks snapshot bytes from the network before raft accepts them, so that
    /// [`StateMachine::restore`] cannot fail afterwards.
    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError>;

    /// Replaces the state with the snapshot's, adding the writes (everything old removed,
    /// everything new written) to `batch`.
    fn restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<(), SnapshotError>;

    /// Loads the state persisted in `store`, at node start.
    fn recover(&mut self, store: &dyn DurableStore) -> Result<(), StoreError>;
}

/// The I/O of one [`RaftGroup::handle_ready`] round, provided by the driver.
pub trait ReadyIo {
    /// Writes `batch` atomically and makes it durable (synced) before returning `Ok`. An
    /// error is fatal for the node: it MUST stop and recover from what the store holds.
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Writes `batch` atomically without waiting for it to be durable: a crash may lose it
    /// (whole), and the next synced write makes it durable with everything before it. The
    /// group uses it only for state it can rebuild from the durable raft log. The default
    /// syncs anyway.
    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.persist(batch)
    }

    /// Hands raft messages to the transport. Delivery is best effort: raft retries.
    fn send(&mut self, messages: Vec<Message>);

    /// Runs `reads` over the store the round persists into, as every batch written so far
    /// left it (the state machine reads it back while it applies).
    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore));
}

/// A [`ReadyIo`] over a [`DurableStore`] that collects the messages to send: the plain way to
/// drive a group when the transport is called after the round.
#[derive(Debug)]
pub struct StoreIo<'a, S: DurableStore> {
    store: &'a mut S,
    /// The messages the round sent, in order.
    pub outbox: Vec<Message>,
}

impl<'a, S: DurableStore> StoreIo<'a, S> {
    /// An I/O over `store` with an empty outbox.
    pub fn new(store: &'a mut S) -> Self {
        StoreIo {
            store,
            outbox: Vec::new(),
        }
    }
}

impl<S: DurableStore> ReadyIo for StoreIo<'_, S> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(batch, true)
    }

    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(batch, false)
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.outbox.extend(messages);
    }

    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
        reads(&*self.store);
    }
}

/// Something the state machine or the group applied in a round, in log order.
#[derive(Clone, Debug, PartialEq)]
pub enum Applied<O> {
    /// The state machine applied the normal entry at `index`.
    Entry {
        /// The raft index.
        index: u64,
        /// What the state machine returned.
        output: O,
    },
    /// A membership change took effect at `index`.
    Membership {
        /// The raft index.
        index: u64,
        /// The membership from now on.
        conf_state: ConfState,
    },
    /// The state was replaced by a snapshot through `index`.
    Snapshot {
        /// The raft index the snapshot covers.
        index: u64,
    },
}

/// The role of a member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asks whether it could win an election, without raising its term.
    PreCandidate,
    /// Campaigns for votes.
    Candidate,
    /// Leads the group.
    Leader,
}

impl From<StateRole> for Role {
    fn from(role: StateRole) -> Self {
        match role {
            StateRole::Follower => Role::Follower,
            StateRole::PreCandidate => Role::PreCandidate,
            StateRole::Candidate => Role::Candidate,
            StateRole::Leader => Role::Leader,
        }
    }
}

/// Why a group could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed or holds damaged data.
    #[error("raft group store: {0}")]
    Store(#[from] StoreError),
    /// raft-rs refused the recovered state.
    #[error("raft refused the recovered state: {0}")]
    Raft(String),
}

/// Why a message was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// The message is addressed to another node.
    #[error("message for node {to} reached node {node_id}")]
    WrongReceiver {
        /// The addressee.
        to: u64,
        /// This node.
        node_id: u64,
    },
    /// A snapshot message whose data the state machine cannot use.
    #[error("snapshot from node {from} refused: {error}")]
    InvalidSnapshot {
        /// The sender.
        from: u64,
        /// What was wrong.
        error: SnapshotError,
    },
    /// A message raft-rs would have stopped the node on (a fatal error, an assertion, an
    /// overflow) or been wedged by: a field outside what any honest peer sends, given this
    /// node's log and state (see [`crate::message_check`]).
    #[error("{msg_type:?} from node {from} refused as unsafe: {reason}")]
    Unsafe {
        /// The sender the message names.
        from: u64,
        /// Its type.
        msg_type: MessageType,
        /// The field, its value and the bound it breaks.
        reason: UnsafeMessage,
    },
    /// raft-rs refused the message (for example a response from a node not in the group).
    #[error("raft refused the message: {0}")]
    Refused(String),
}

/// Why a proposal was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// raft dropped it: no leader is known, a leader transfer is under way, or the leader
    /// has too many uncommitted bytes. Proposing again later may succeed.
    #[error("proposal dropped: no leader, a leader transfer, or too much uncommitted data")]
    Dropped,
    /// raft refused it for another reason.
    #[error("raft refused the proposal: {0}")]
    Refused(String),
}

/// Why a round failed. Fatal for the node: it MUST stop and recover from its store.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// Persisting failed.
    #[error("persisting a raft round failed: {0}")]
    Store(#[from] StoreError),
    /// A snapshot raft accepted could not be restored.
    #[error("restoring a snapshot failed: {0}")]
    Snapshot(#[from] SnapshotError),
}

/// One member of a raft group with its state machine. See the module documentation.
pub struct RaftGroup<M: StateMachine> {
    raw_node: RawNode<RaftStorage>,
    state_machine: M,
    config: RaftGroupConfig,
    applied_index: u64,
    timeout_rng: ElectionTimeoutRng,
    /// Term and role when the election timeout was last drawn.
    timeout_drawn_for: (u64, StateRole),
    /// Reads the leader confirmed, oldest first, until [`RaftGroup::take_read_states`].
    read_states: Vec<ReadState>,
    /// False while this node must not lead: the vote requests of elections it starts are
    /// not sent (see [`RaftGroup::set_may_campaign`]).
    may_campaign: bool,
    /// The leader this member knew of at the end of its last ready round (raft's invalid id
    /// for none), to count changes.
    leader_seen: u64,
    /// What this member counted since it opened.
    counters: GroupCounters,
}

/// What a member counted since it opened, for operators (metrics and status).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GroupCounters {
    /// Times this member learned of a new leader (an election it saw end, or the first leader
    /// it heard of after opening).
    pub leader_changes: u64,
    /// Snapshots this member handed to the transport for a follower.
    pub snapshots_sent: u64,
    /// Rounds in which this member, a follower, committed entries on its own and its
    /// leader's synced copies (`RaftGroupConfig::followers_commit_synced_entries`).
    pub commits_from_synced_copies: u64,
}

impl<M: StateMachine> RaftGroup<M> {
    /// Opens the member: recovers the raft log and the state machine from `store`, or, on an
    /// empty store with `initial_voters` set, bootstraps a new group (written and synced
    /// before this returns).
    pub fn open(
        config: RaftGroupConfig,
        mut state_machine: M,
        store: &mut impl DurableStore,
    ) -> Result<Self, OpenError> {
        config.validate()?;
        let recovered = RaftStorage::recover(store)?;
        let mut storage = recovered.storage;
        let mut applied_index = recovered.applied_index;
        let never_written = storage.last_index() == 0
            && *storage.hard_state() == raft::eraftpb::HardState::default();
        if !storage.is_initialized() && never_written && !config.initial_voters.is_empty() {
            let conf_state = ConfState {
                voters: config.initial_voters.clone(),
                ..ConfState::default()
            };
            let mut batch = WriteBatch::new();
            storage.bootstrap(conf_state, BOOTSTRAP_INDEX, BOOTSTRAP_TERM, &mut batch);
            store.write(batch, true)?;
            applied_index = BOOTSTRAP_INDEX;
        }
        state_machine.recover(store)?;
        // raft-rs's own log lines (it adds the node's `raft_id`) go to tracing in the driver,
        // where a subscriber may want them, and nowhere in the simulator.
        #[cfg(feature = "driver")]
        let logger = crate::raft_log::logger();
        #[cfg(not(feature = "driver"))]
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let raw_node = RawNode::new(&config.raft_config(applied_index), storage, &logger)
            .map_err(|error| OpenError::Raft(error.to_string()))?;
        let mut group = RaftGroup {
            timeout_rng: ElectionTimeoutRng::new(config.election_seed),
            timeout_drawn_for: (raw_node.raft.term, raw_node.raft.state),
            raw_node,
            state_machine,
            config,
            applied_index,
            read_states: Vec::new(),
            may_campaign: true,
            leader_seen: raft::INVALID_ID,
            counters: GroupCounters::default(),
        };
        group.draw_election_timeout();
        Ok(group)
    }

    // Getters.

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.config.node_id
    }

    /// The configuration.
    pub fn config(&self) -> &RaftGroupConfig {
        &self.config
    }

    /// The leader this node knows of, if any.
    pub fn leader_id(&self) -> Option<u64> {
        let leader = self.raw_node.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(leader)
    }

    /// This node's role.
    pub fn role(&self) -> Role {
        self.raw_node.raft.state.into()
    }

    /// What this member counted since it opened.
    pub fn counters(&self) -> GroupCounters {
        self.counters
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw_node.raft.term
    }

    /// The highest index known committed.
    pub fn commit_index(&self) -> u64 {
        self.raw_node.raft.raft_log.committed
    }

    /// The index the state machine has applied through.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// The index of the first entry still held.
    pub fn first_index(&self) -> u64 {
        self.raw_node.store().first_index()
    }

    /// The index of the last entry, persisted or not.
    pub fn last_index(&self) -> u64 {
        self.raw_node.raft.raft_log.last_index()
    }

    /// The voters, sorted, as of the applied index.
    pub fn voters(&self) -> Vec<u64> {
        let mut voters = self.raw_node.store().conf_state().voters.clone();
        voters.sort_unstable();
        voters
    }

    /// The learners, sorted, as of the applied index.
    pub fn learners(&self) -> Vec<u64> {
        let mut learners = self.raw_node.store().conf_state().learners.clone();
        learners.sort_unstable();
        learners
    }

    /// The state machine.
    pub fn state_machine(&self) -> &M {
        &self.state_machine
    }

    /// The state machine, to change what is the node's own (a note for a snapshot it is
    /// about to take, say): never the replicated state, which changes only by applying
    /// entries and restoring snapshots.
    pub fn state_machine_mut(&mut self) -> &mut M {
        &mut self.state_machine
    }

    /// The raft log mirror.
    pub fn storage(&self) -> &RaftStorage {
        self.raw_node.store()
    }

    /// True when a call to [`RaftGroup::handle_ready`] has work to do.
    pub fn has_ready(&self) -> bool {
        self.raw_node.has_ready()
    }

    /// How many of the next ticks only count: raft acts (a leader's heartbeat or quorum
    /// check, a follower's or candidate's election) on the tick after them, not before. A
    /// driver with nothing else due may run these ticks late, all at once when it wakes (for
    /// an event, or for the tick that acts), and raft does exactly what it would have done
    /// ticked one by one: nothing but counting happens before the acting tick, and an event
    /// taken after the late ticks sees the same counts. `u64::MAX` for a member that never
    /// campaigns (a learner, or a node removed from the group).
    pub fn quiet_ticks(&self) -> u64 {
        let raft = &self.raw_node.raft;
        let ticks_left = |timeout: usize, elapsed: usize| {
            // The tick that brings `elapsed` to `timeout` acts; the ones before only count.
            (timeout.saturating_sub(elapsed) as u64).saturating_sub(1)
        };
        match raft.state {
            StateRole::Leader => ticks_left(raft.heartbeat_timeout(), raft.heartbeat_elapsed())
                .min(ticks_left(raft.election_timeout(), raft.election_elapsed)),
            StateRole::Follower | StateRole::PreCandidate | StateRole::Candidate => {
                if raft.promotable() {
                    ticks_left(raft.randomized_election_timeout(), raft.election_elapsed)
                } else {
                    u64::MAX
                }
            }
        }
    }

    /// The election timeout now in force, in ticks (drawn from the seeded generator).
    pub fn election_timeout_ticks(&self) -> usize {
        self.raw_node.raft.randomized_election_timeout()
    }

    // Inputs.

    /// One tick of the driver's clock: elections and heartbeats are counted in ticks.
    ///
    /// The only voter wins its own campaign on the spot, and raft-rs asserts that a new
    /// leader's log is persisted; so while it follows someone with entries not yet persisted,
    /// a tick is not counted. Only a forged append leaves the only voter such entries (its
    /// leader is itself), and only a driver that ticks between a step and its ready round
    /// lets a tick see them; that ready round persists them.
    pub fn tick(&mut self) {
        let node = NodeState::of(&self.raw_node.raft);
        if node.role != Role::Leader && node.own_campaign_would_lead_unpersisted() {
            return;
        }
        self.raw_node.tick();
        self.draw_election_timeout_if_reset();
    }

    /// Takes a message from another member. A snapshot message is checked by the state
    /// machine first, so that a snapshot raft accepts can always be restored. Then every
    /// message is checked against this node's log and state, so that no field of untrusted
    /// bytes makes raft-rs stop the node ([`StepError::Unsafe`]).
    pub fn step(&mut self, message: Message) -> Result<(), StepError> {
        if message.to != self.config.node_id {
            return Err(StepError::WrongReceiver {
                to: message.to,
                node_id: self.config.node_id,
            });
        }
        if message.get_msg_type() == MessageType::MsgSnapshot {
            let snapshot = message.get_snapshot();
            if snapshot.get_metadata().index == 0 {
                return Err(StepError::InvalidSnapshot {
                    from: message.from,
                    error: SnapshotError::new("the snapshot covers no entry (index 0)"),
                });
            }
            self.state_machine
                .validate_snapshot(&snapshot.data)
                .map_err(|error| StepError::InvalidSnapshot {
                    from: message.from,
                    error,
                })?;
        }
        if !self.may_campaign && message.get_msg_type() == MessageType::MsgTimeoutNow {
            // A leader hands leadership here: raft would campaign at once, in a new term,
            // with vote requests this node never sends. The term alone would then depose the
            // leader at this node's next answer, for an election this node cannot win. The
            // leader's transfer times out instead and it leads on.
            return Ok(());
        }
        let node = NodeState::of(&self.raw_node.raft);
        check_message(&node, &message).map_err(|reason| StepError::Unsafe {
            from: message.from,
            msg_type: message.get_msg_type(),
            reason,
        })?;
        let outcome = self.raw_node.step(message);
        self.draw_election_timeout_if_reset();
        outcome.map_err(|error| StepError::Refused(error.to_string()))
    }

    /// Proposes `data` as one normal entry. On a follower raft forwards it to the leader.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<(), ProposeError> {
        let outcome = self.raw_node.propose(Vec::new(), data);
        self.draw_election_timeout_if_reset();
        outcome.map_err(propose_error)
    }

    /// Proposes a membership change (one node added as voter or learner, or removed).
    pub fn propose_conf_change(&mut self, change: ConfChange) -> Result<(), ProposeError> {
        let outcome = self.raw_node.propose_conf_change(Vec::new(), change);
        self.draw_election_timeout_if_reset();
        outcome.map_err(propose_error)
    }

    /// Asks the leader to confirm, with a heartbeat round to a quorum, that it still leads,
    /// and to name its commit index (raft's ReadIndex, thesis section 6.4). Served by every
    /// member: a follower forwards the request to the leader. The answer comes as a
    /// [`ReadState`] carrying `context` from [`RaftGroup::take_read_states`] after a later
    /// [`RaftGroup::handle_ready`]; once the applied index reaches its index, the state machine
    /// reflects every entry committed before the request. raft drops the request without a
    /// word when no leader is known or the leader has not yet committed an entry of its term:
    /// the caller asks again after a while. `context` MUST be unique among the reads in flight
    /// in the group (raft matches answers by it) and not empty.
    pub fn read_index(&mut self, context: Vec<u8>) {
        self.raw_node.read_index(context);
        self.draw_election_timeout_if_reset();
    }

    /// The reads confirmed since the last call, oldest first (see [`RaftGroup::read_index`]).
    pub fn take_read_states(&mut self) -> Vec<ReadState> {
        std::mem::take(&mut self.read_states)
    }

    /// On a leader, starts handing leadership to the other voter whose log is known to match
    /// furthest (among equals the one `priority_of` ranks highest, then the lowest id: the
    /// one whose vote requests no voter of equal log refuses for its priority), unless a
    /// transfer is under way; nothing on a follower or a sole voter.
    pub fn hand_leadership_away(&mut self, priority_of: impl Fn(u64) -> u32) {
        let raft = &self.raw_node.raft;
        if raft.state != raft::StateRole::Leader || raft.lead_transferee.is_some() {
            return;
        }
        let own = self.id();
        let transferee = self
            .voters()
            .into_iter()
            .filter(|voter| *voter != own)
            .max_by_key(|voter| {
                let matched = raft
                    .prs()
                    .get(*voter)
                    .map_or(0, |progress| progress.matched);
                (matched, priority_of(*voter), std::cmp::Reverse(*voter))
            });
        if let Some(transferee) = transferee {
            self.transfer_leader(transferee);
        }
    }

    /// On a leader, what it knows of `voter`'s log: the index through which it matches the
    /// leader's, while the leader replicates to it steadily (raft's progress in its replicate
    /// state, not probing its log or sending it a snapshot), and whether the voter answered
    /// since the leader's last check of its quorum (raft's `recent_active`, cleared once per
    /// election timeout); `None` on a follower and for a node that is not another voter.
    pub fn follower_progress(&self, voter: u64) -> Option<FollowerProgress> {
        let raft = &self.raw_node.raft;
        if raft.state != raft::StateRole::Leader || voter == self.id() {
            return None;
        }
        let progress = raft.prs().get(voter)?;
        Some(FollowerProgress {
            replicated_through: (progress.state == raft::ProgressState::Replicate)
                .then_some(progress.matched),
            heard_recently: progress.recent_active,
        })
    }

    /// True on a leader while it hands leadership to another voter (raft drops proposals
    /// meanwhile).
    pub fn is_transferring_leadership(&self) -> bool {
        let raft = &self.raw_node.raft;
        raft.state == raft::StateRole::Leader && raft.lead_transferee.is_some()
    }

    /// Whether this node may stand for election. While it may not, it keeps ticking (so that
    /// its leader lease runs out and it votes for others, which a node that stopped ticking
    /// never would under check-quorum) but the vote and pre-vote requests of the elections
    /// its ticks start are never sent, so it never wins one, and a leader's request to take
    /// over at once (raft's `MsgTimeoutNow`, the end of a leadership transfer) is dropped;
    /// everything else (votes for others, appends, heartbeats) goes on as before. A leader is not affected: see
    /// [`RaftGroup::transfer_leader`].
    pub fn set_may_campaign(&mut self, may_campaign: bool) {
        self.may_campaign = may_campaign;
        // A node that never sends vote requests must not refuse the others' for its
        // priority either, or no one could be elected while it lives.
        let priority = if may_campaign {
            self.config.election_priority
        } else {
            0
        };
        self.raw_node.raft.set_priority(i64::from(priority));
    }

    /// Asks the leader (this node) to hand leadership to `to`; ignored on a follower.
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw_node.transfer_leader(to);
        self.draw_election_timeout_if_reset();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) -> Result<(), ProposeError> {
        let outcome = self.raw_node.campaign();
        self.draw_election_timeout_if_reset();
        outcome.map_err(propose_error)
    }

    /// Handles one round of raft's outstanding work, in this order:
    ///
    /// 1. apply a received snapshot to the state machine and the log (writes into the batch);
    /// 2. send the messages that need no persistence (a leader's appends and heartbeats);
    /// 3. apply committed entries (their state machine writes join the same batch);
    /// 4. append new entries and the hard state (and compact the applied log) in the batch;
    /// 5. PERSIST THE BATCH WITH ONE SYNC when raft says it must (new entries, a snapshot, a
    ///    changed term or vote: `Ready::must_sync`); a batch that only moves the commit index
    ///    and applies committed entries is written WITHOUT a sync (see below);
    /// 6. ONLY THEN send the persisted messages (votes, append responses), which promise
    ///    what was just made durable;
    /// 7. advance raft;
    /// 8. handle the light ready: send its messages and apply its committed entries, writing
    ///    what they change WITHOUT a sync (see below);
    /// 9. advance the applied index.
    ///
    /// A member NEVER sends a message that depends on unpersisted state. Returns what was
    /// applied, in log order. Every applied entry is committed, so durable in the raft log of
    /// a majority; what applying it wrote is durable too, except after step 8, where a crash
    /// may lose the writes of applying, and so may a crash after step 5 when it did not sync:
    /// the node then applies those entries again from its durable raft log at restart, with
    /// the same outcome (apply is deterministic). The store keeps writes in order (a crash
    /// loses a suffix of the unsynced writes, never a write before a kept one, as RocksDB's
    /// point-in-time WAL recovery does), and the compaction of applied entries is written in
    /// the same batch as their application or after it, so it is never durable before them.
    /// This saves the second sync of a round in which the leader's own append completed a
    /// quorum, and the sync of a round that only learned of commits (most of a leader's
    /// rounds under load, and a follower's commit-only appends): the only syncs left are the
    /// ones raft's safety needs. DO NOT call any other method of the group
    /// from inside `io`. An error is fatal for the node (see [`ReadyError`]).
    pub fn handle_ready(
        &mut self,
        io: &mut impl ReadyIo,
    ) -> Result<Vec<Applied<M::Output>>, ReadyError> {
        self.build_snapshot_if_wanted(io)?;
        let mut applied = Vec::new();
        if !self.raw_node.has_ready() {
            return Ok(applied);
        }
        let mut snapshot_receivers = Vec::new();
        let mut ready = self.raw_node.ready();
        let must_sync = ready.must_sync();
        self.keep_read_states(ready.take_read_states());
        let mut batch = WriteBatch::new();
        let applied_before = self.applied_index;

        if !ready.snapshot().is_empty() {
            self.restore_snapshot(ready.snapshot(), &mut batch, &mut applied)?;
            // The entries applied after the snapshot read the store back: it must hold the
            // restored state first. Raft sends nothing that promises the snapshot before the
            // round's own sync below.
            io.write_unsynced(std::mem::take(&mut batch))?;
            self.state_machine.batch_written();
        }
        // A leader's appends may leave before its own sync (raft thesis 10.2.1), unless
        // followers count its copy as durable (`followers_commit_synced_entries`).
        let mut messages_before_sync = ready.take_messages();
        if !self.config.followers_commit_synced_entries {
            send(
                io,
                std::mem::take(&mut messages_before_sync),
                &mut snapshot_receivers,
                self.may_campaign,
            );
        }
        self.apply_committed(io, ready.take_committed_entries(), &mut batch, &mut applied)?;
        self.raw_node
            .mut_store()
            .append(ready.entries(), &mut batch);
        if let Some(hard_state) = ready.hs() {
            self.raw_node
                .mut_store()
                .set_hard_state(hard_state.clone(), &mut batch);
        } else if self.applied_index != applied_before {
            // The applied index just written must never be above the stored commit index.
            self.raw_node.store().write_hard_state(&mut batch);
        }
        self.compact(&mut batch);
        if must_sync {
            io.persist(batch)?;
        } else if !batch.is_empty() {
            io.write_unsynced(batch)?;
        }
        self.state_machine.batch_written();
        send(
            io,
            messages_before_sync,
            &mut snapshot_receivers,
            self.may_campaign,
        );
        send(
            io,
            ready.take_persisted_messages(),
            &mut snapshot_receivers,
            self.may_campaign,
        );

        let mut light = self.raw_node.advance_append(ready);
        if let Some(commit) = light.commit_index() {
            self.raw_node.mut_store().set_commit(commit);
        }
        send(
            io,
            light.take_messages(),
            &mut snapshot_receivers,
            self.may_campaign,
        );
        self.commit_synced_entries_of_the_term();
        let mut batch = WriteBatch::new();
        self.apply_committed(io, light.take_committed_entries(), &mut batch, &mut applied)?;
        if !batch.is_empty() {
            self.raw_node.store().write_hard_state(&mut batch);
            io.write_unsynced(batch)?;
            self.state_machine.batch_written();
        }
        self.raw_node.advance_apply();

        // A snapshot is handed to the transport whole; raft resumes the follower in probe
        // mode and sends it again if it never arrived.
        self.counters.snapshots_sent += snapshot_receivers.len() as u64;
        for to in snapshot_receivers {
            self.raw_node.report_snapshot(to, SnapshotStatus::Finish);
        }
        let leader = self.raw_node.raft.leader_id;
        if leader != self.leader_seen {
            self.leader_seen = leader;
            if leader != raft::INVALID_ID {
                self.counters.leader_changes += 1;
            }
        }
        self.draw_election_timeout_if_reset();
        Ok(applied)
    }

    // Internals.

    /// With `followers_commit_synced_entries`, a follower commits the entries it has synced
    /// when the last of them belongs to its leader's term and the leader and this node are a
    /// majority of the voters: the leader synced them before it sent them, so two durable
    /// copies exist, both stored in that term. The entries are handed to the state machine
    /// in the next ready round. A configuration change anywhere after the applied index
    /// stops it, since the voters it brings may need more copies.
    fn commit_synced_entries_of_the_term(&mut self) {
        if !self.config.followers_commit_synced_entries {
            return;
        }
        let applied = self.applied_index;
        let raft = &mut self.raw_node.raft;
        let leader = raft.leader_id;
        if raft.state != StateRole::Follower || leader == raft::INVALID_ID || leader == raft.id {
            return;
        }
        let persisted = raft.raft_log.persisted;
        if persisted <= raft.raft_log.committed || raft.raft_log.term(persisted) != Ok(raft.term) {
            return;
        }
        let conf_state = self.raw_node.store().conf_state();
        let voters = &conf_state.voters;
        if voters.len() > 3
            || !conf_state.voters_outgoing.is_empty()
            || !voters.contains(&self.config.node_id)
            || !voters.contains(&leader)
        {
            return;
        }
        let raft = &mut self.raw_node.raft;
        let Ok(entries) = raft.raft_log.slice(
            applied + 1,
            persisted + 1,
            None,
            GetEntriesContext::empty(false),
        ) else {
            return;
        };
        if entries
            .iter()
            .any(|entry| entry.get_entry_type() != EntryType::EntryNormal)
        {
            return;
        }
        raft.raft_log.commit_to(persisted);
        self.counters.commits_from_synced_copies += 1;
    }

    fn keep_read_states(&mut self, read_states: Vec<ReadState>) {
        self.read_states.extend(read_states);
        if self.read_states.len() > READ_STATES_PENDING_MAX {
            let excess = self.read_states.len() - READ_STATES_PENDING_MAX;
            self.read_states.drain(..excess);
        }
    }

    fn restore_snapshot(
        &mut self,
        snapshot: &Snapshot,
        batch: &mut WriteBatch,
        applied: &mut Vec<Applied<M::Output>>,
    ) -> Result<(), SnapshotError> {
        let metadata = snapshot.get_metadata();
        assert!(
            metadata.index > self.applied_index,
            "raft hands over only snapshots ahead of the applied index {}, not {}",
            self.applied_index,
            metadata.index
        );
        self.state_machine.restore(&snapshot.data, batch)?;
        self.raw_node.mut_store().apply_snapshot(metadata, batch);
        self.applied_index = metadata.index;
        applied.push(Applied::Snapshot {
            index: metadata.index,
        });
        Ok(())
    }

    fn apply_committed(
        &mut self,
        io: &mut impl ReadyIo,
        entries: Vec<Entry>,
        batch: &mut WriteBatch,
        applied: &mut Vec<Applied<M::Output>>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut result = Ok(());
        io.with_store(&mut |store| {
            result = self.apply_entries(&entries, store, batch, applied);
        });
        result
    }

    fn apply_entries(
        &mut self,
        entries: &[Entry],
        store: &dyn DurableStore,
        batch: &mut WriteBatch,
        applied: &mut Vec<Applied<M::Output>>,
    ) -> Result<(), StoreError> {
        for entry in entries {
            let index = entry.index;
            assert_eq!(
                index,
                self.applied_index + 1,
                "committed entries are applied in order and without gaps"
            );
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => {
                    // The empty entry a new leader appends: nothing to apply.
                }
                EntryType::EntryNormal => {
                    let output = self.state_machine.apply(index, &entry.data, store, batch)?;
                    applied.push(Applied::Entry { index, output });
                }
                EntryType::EntryConfChange => {
                    // A change that does not decode is skipped by every member alike.
                    if let Ok(change) = ConfChange::parse_from_bytes(&entry.data) {
                        self.apply_membership(index, &change, batch, applied);
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    if let Ok(change) = ConfChangeV2::parse_from_bytes(&entry.data) {
                        self.apply_membership(index, &change, batch, applied);
                    }
                }
            }
            self.applied_index = index;
        }
        RaftStorage::write_applied(self.applied_index, batch);
        Ok(())
    }

    fn apply_membership(
        &mut self,
        index: u64,
        change: &impl raft_proto::ConfChangeI,
        batch: &mut WriteBatch,
        applied: &mut Vec<Applied<M::Output>>,
    ) {
        // raft refuses an invalid change (such as removing the last voter) the same way on
        // every member, which then all skip it.
        if let Ok(conf_state) = self.raw_node.apply_conf_change(change) {
            self.raw_node
                .mut_store()
                .set_conf_state(conf_state.clone(), batch);
            applied.push(Applied::Membership { index, conf_state });
        }
    }

    fn compact(&mut self, batch: &mut WriteBatch) {
        let retention = self.config.log_retention;
        let storage = self.raw_node.store();
        let (compacted_index, _) = storage.compacted();
        let retained_entries = self.applied_index.saturating_sub(compacted_index);
        if retained_entries <= retention.entries_max
            && storage.entries_size_bytes() <= retention.size_bytes_max
        {
            return;
        }
        let mut point = storage.compaction_point(
            self.applied_index,
            retention.entries_max / 2,
            retention.size_bytes_max / 2,
        );
        // A follower taking a snapshot needs the entries after it once it restored it: while
        // the log stays within twice its bounds, they are kept, so that a snapshot whose
        // transfer outlasts the bounds under load is not followed by another, and another.
        let pending_snapshot = self
            .raw_node
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == raft::ProgressState::Snapshot)
            .map(|(_, progress)| progress.pending_snapshot)
            .min();
        if let Some(pending_snapshot) = pending_snapshot
            && retained_entries <= 2 * retention.entries_max
            && storage.entries_size_bytes() <= 2 * retention.size_bytes_max
        {
            point = point.min(pending_snapshot);
        }
        if point > compacted_index {
            self.raw_node.mut_store().compact_through(point, batch);
        }
    }

    /// Builds the snapshot raft asked for, from the state machine as it is now (applied and
    /// persisted through the applied index).
    fn build_snapshot_if_wanted(&mut self, io: &mut impl ReadyIo) -> Result<(), StoreError> {
        let storage = self.raw_node.store();
        if !storage.take_snapshot_wanted() {
            return Ok(());
        }
        let index = self.applied_index;
        let Some(term) = storage.term_of(index) else {
            return Ok(());
        };
        if index == 0 {
            return Ok(());
        }
        let mut data = Ok(Vec::new());
        let state_machine = &self.state_machine;
        let view_ranges = state_machine.snapshot_view_ranges();
        io.with_store(&mut |store| {
            data = state_machine.snapshot(store);
            if data.is_ok() && !view_ranges.is_empty() {
                // Pinned in the same instant as the snapshot was read: the view and the
                // snapshot describe one state. A store that cannot pin is failing.
                if let Err(error) = store.pin_view(index, &view_ranges) {
                    data = Err(error);
                }
            }
        });
        let mut snapshot = Snapshot {
            data: data?.into(),
            ..Snapshot::default()
        };
        let metadata = snapshot.mut_metadata();
        metadata.index = index;
        metadata.term = term;
        metadata.set_conf_state(storage.conf_state().clone());
        self.raw_node.mut_store().set_outgoing_snapshot(snapshot);
        Ok(())
    }

    /// raft-rs draws a new election timeout from an unseeded generator whenever it resets,
    /// which happens exactly when the term or the role changes. Drawing again from the seeded
    /// generator after every such change keeps runs reproducible.
    fn draw_election_timeout_if_reset(&mut self) {
        let now = (self.raw_node.raft.term, self.raw_node.raft.state);
        if now != self.timeout_drawn_for {
            self.timeout_drawn_for = now;
            self.draw_election_timeout();
        }
    }

    fn draw_election_timeout(&mut self) {
        let ticks = self.timeout_rng.timeout_ticks(self.config.election_tick);
        self.raw_node.raft.set_randomized_election_timeout(ticks);
    }
}

fn propose_error(error: raft::Error) -> ProposeError {
    match error {
        raft::Error::ProposalDropped => ProposeError::Dropped,
        other => ProposeError::Refused(other.to_string()),
    }
}

fn send(
    io: &mut impl ReadyIo,
    mut messages: Vec<Message>,
    snapshot_receivers: &mut Vec<u64>,
    may_campaign: bool,
) {
    if !may_campaign {
        // The election this node started goes nowhere: no peer hears of it.
        messages.retain(|message| {
            !matches!(
                message.get_msg_type(),
                MessageType::MsgRequestVote | MessageType::MsgRequestPreVote
            )
        });
    }
    if messages.is_empty() {
        return;
    }
    snapshot_receivers.extend(
        messages
            .iter()
            .filter(|message| message.get_msg_type() == MessageType::MsgSnapshot)
            .map(|message| message.to),
    );
    io.send(messages);
}
