//! The region node on the shared node loop ([`dsss_raft_group::node_loop`], which documents
//! the iteration): one dedicated OS thread owns the [`RegionNode`] and its RocksDB store, and
//! the gRPC services send it [`NodeEvent`]s.
//!
//! Its outputs ([`RegionNode::poll_output`]) go in one exhaustive `match`: replies to the
//! waiting proposers, barriers and uploads, log events to the subscribers, sealed epoch reads
//! and batches to the coordinator client, and divergence alarms to the log. The node batches
//! the proposals queued during one sync into as few raft entries as its bounds allow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use dsss_raft_group::node_loop::{
    LoopHandle, LoopNode, LoopSettings, LoopThreadError, PeerIo, event_channel,
};
use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::transport::{lock_clocks, monotonic_us};
use dsss_raft_group::{ClockVerdict, RAFT_LOG, RAFT_STATE, ReadyError, StoreError};
use dsss_rocksdb_store::RocksDbStore;
use dsss_wire::{
    ClientId, PhysicalClock, RegionId, RequestSequence, SystemClock, Timestamp, proto,
};
use tokio::sync::{broadcast, oneshot};

use crate::checkpoint::{CheckpointFetch, CheckpointOutcome, CheckpointUpload};
use crate::driver::coordinator_client::{CoordinatorSender, GlobalSettings};
use crate::driver::peer::{PEER_CALL_TIMEOUT_US, PEER_CONNECT_TIMEOUT_US, PeerSenders};
use crate::node::{
    CHECKPOINT_UPLOADS_IN_FLIGHT_MAX, CloseSessionError, OpenSessionError,
    SESSION_CLOSES_IN_FLIGHT_MAX, SESSION_OPENS_IN_FLIGHT_MAX, SYNCS_IN_FLIGHT_MAX, SyncReply,
    UploadError,
};
use crate::snapshot_catch_up::{LogRangeFetch, LogRangeReply, LogRangeRequest};
use crate::{
    CHECKPOINTS_A, CHECKPOINTS_B, GlobalMessageError, LogEntry, LogEvent, PROPOSALS_PENDING_MAX,
    ProposeError, ProposeRequest, REGION_LOG, REGION_STATE, RegionNode, RegionNodeConfig,
    RegionNodeError, RegionOutput, RegionStatus, Reply, SyncError, ToCoordinator, WAITERS_MAX,
};

pub use dsss_raft_group::node_loop::{EVENTS_PER_ITERATION_MAX, EVENTS_QUEUED_MAX};

/// The most records one [`NodeEvent::ReadLog`] returns.
pub const LOG_READ_RECORDS_MAX: usize = 1_024;

/// The most bytes of stored records one [`NodeEvent::ReadLog`] returns, beyond its first
/// record: a read always holds one record when there is one, however large (a record is at
/// most [`crate::record::STORED_ENTRY_BYTES_MAX`]).
pub const LOG_READ_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The most log events kept for subscribers that have not read them yet. A subscriber that
/// falls further behind reads the log itself again (see [`crate::service`]).
pub const LOG_EVENTS_BROADCAST_MAX: usize = 16_384;

/// The most proposals the driver keeps waiting for an answer: the node's own bounds on
/// queued and waiting proposals together.
pub const PROPOSE_WAITERS_MAX: usize = WAITERS_MAX + PROPOSALS_PENDING_MAX;

/// A barrier the node gave: apply through `apply_through_position` before reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    /// The position to apply through.
    pub apply_through_position: u64,
    /// The newest sealed epoch the coordinator leader confirmed, 0 without a global tier.
    pub sealed_epoch_number: u64,
}

/// The answer to one proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposeOutcome {
    /// The record is in the region log at `position`: committed on a majority and applied on
    /// this node.
    Committed {
        /// Its position.
        position: u64,
        /// The timestamp the record carries, when the node still retains the record.
        timestamp: Option<Timestamp>,
        /// True when the node answered from its dedup table: the call was committed before,
        /// and this answer repeats that first commit.
        duplicate: bool,
    },
    /// The node did not order the call.
    Refused(ProposeError),
}

/// A change of the region's membership, or of its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MembershipChange {
    /// Add a node as a learner: it catches up without counting for the quorum.
    AddLearner(u64),
    /// Make a learner a voter.
    Promote(u64),
    /// Remove a node from the group.
    Remove(u64),
    /// Hand leadership to a node (only the leader acts on it).
    TransferLeader(u64),
}

/// The node's state, with the driver's own facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The sans-IO node's status.
    pub node: RegionStatus,
    /// The region the node serves.
    pub region: RegionId,
    /// The physical clock when the status was taken, in microseconds since the UNIX epoch.
    pub physical_now_us: u64,
    /// The node's hybrid logical clock as of its last input.
    pub hybrid_last: Timestamp,
    /// The clock skew the node tolerates.
    pub max_clock_skew_us: u64,
    /// Raft messages the node could not take (malformed or refused) since it started.
    pub raft_messages_refused: u64,
}

/// A piece of the region log, read on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    /// Records from the position asked for, in order, with their positions; empty when the
    /// position is not retained or not yet applied.
    pub records: Vec<(u64, LogEntry)>,
    /// The oldest position the node retains: a read from below it finds nothing.
    pub first_retained_position: u64,
    /// The position the next applied record will take.
    pub next_position: u64,
}

/// An event for the node loop.
#[derive(Debug)]
pub enum NodeEvent {
    /// A client's proposal and where to send its answer.
    Propose {
        /// The call.
        request: ProposeRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<ProposeOutcome>,
    },
    /// Raft messages from a peer, already decoded.
    RaftMessages(Vec<Message>),
    /// A status query.
    Status(oneshot::Sender<NodeStatus>),
    /// A read of at most `records_max` records from `from_position` (at most
    /// [`LOG_READ_RECORDS_MAX`], and [`LOG_READ_BYTES_MAX`] beyond the first record).
    ReadLog {
        /// The first position wanted.
        from_position: u64,
        /// The most records wanted.
        records_max: usize,
        /// Where the answer goes: the read, or why the store could not give it.
        reply: oneshot::Sender<Result<LogRead, String>>,
    },
    /// A peer's request for entries a snapshot stands on.
    AnswerLogRange {
        /// The request.
        request: LogRangeRequest,
        /// Where the answer goes: the entries, or why the store could not give them.
        reply: oneshot::Sender<Result<LogRangeReply, String>>,
    },
    /// A peer's answer to this node's [`RegionOutput::FetchLogRange`], or why there is none.
    LogRangeFetched {
        /// The request's id.
        fetch_id: u64,
        /// The answer.
        reply: Result<LogRangeReply, String>,
    },
    /// Where a member lives: starts a raft transport to it. Answered true when something
    /// changed.
    AddPeer {
        /// The member.
        node_id: u64,
        /// Its `host:port`.
        address: String,
        /// Where the answer goes.
        reply: oneshot::Sender<bool>,
    },
    /// A membership change, answered once it is proposed (not once it is applied).
    Membership {
        /// The change.
        change: MembershipChange,
        /// Where the answer goes: an error says why the change was not proposed.
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// A part of a sealed epoch from the coordinator. The leader answers what the region has
    /// appended; a follower answers an acknowledgement whose `not_leader` names the leader.
    SealedEpoch {
        /// The part.
        epoch: proto::SealedEpoch,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<proto::SealedEpochAck, GlobalMessageError>>,
    },
    /// Another region's answer to this node's read of released epochs, or why there is none.
    EpochsRead {
        /// The node's id of the read.
        read_id: u64,
        /// The answer.
        reply: Result<proto::ReadEpochsReply, String>,
    },
    /// Another region's answer to this node's read of a global object's checkpoint, or why
    /// there is none.
    CheckpointRead {
        /// The node's id of the read.
        read_id: u64,
        /// The answer.
        reply: Result<proto::ReadCheckpointReply, String>,
    },
    /// Another region reads a global object's checkpoint from this node.
    ReadCheckpoint {
        /// The read.
        request: proto::ReadCheckpointRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<proto::ReadCheckpointReply>,
    },
    /// Another region reads sealed epochs back from this node's log.
    ReadEpochs {
        /// The read.
        request: proto::ReadEpochsRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<proto::ReadEpochsReply>,
    },
    /// The coordinator's answer to one of this node's batches.
    BatchAck(proto::RegionBatchAck),
    /// A barrier for a linearizable read.
    Sync {
        /// Where the answer goes.
        reply: oneshot::Sender<Result<Barrier, SyncError>>,
    },
    /// A checkpoint a client offers.
    UploadCheckpoint {
        /// The checkpoint, its fields checked.
        upload: CheckpointUpload,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<CheckpointOutcome, UploadError>>,
    },
    /// An operator clears an object's divergence alarm.
    ClearAlarm {
        /// The object.
        object_id: dsss_wire::ObjectId,
        /// Where the answer goes: [`CheckpointOutcome::AlarmCleared`] or
        /// [`CheckpointOutcome::NoAlarm`].
        reply: oneshot::Sender<Result<CheckpointOutcome, UploadError>>,
    },
    /// A client opens a session.
    OpenSession {
        /// The session id the client chose.
        session_id: u64,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<(), OpenSessionError>>,
    },
    /// A client closes its session.
    CloseSession {
        /// The session id the client opened.
        session_id: u64,
        /// Where the answer goes: whether the session lived until the close.
        reply: oneshot::Sender<Result<bool, CloseSessionError>>,
    },
    /// A read of an object's newest checkpoint.
    FetchCheckpoint {
        /// The object.
        object_id: dsss_wire::ObjectId,
        /// Whether the caller says it is a global object (a released one is then adopted
        /// from another region).
        global: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<CheckpointFetch, String>>,
    },
    /// The coordinator's answer to a sealed epoch read, or why there is none.
    SealedEpochRead {
        /// The node's id of the newest read this answer serves.
        read_id: u64,
        /// The answer.
        reply: Result<proto::ReadSealedEpochReply, String>,
    },
}

/// Why the node loop could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum NodeLoopError {
    /// The RocksDB store could not be opened.
    #[error("opening the store in {path}: {error}")]
    OpenStore {
        /// The data directory.
        path: PathBuf,
        /// What RocksDB said.
        error: StoreError,
    },
    /// The node could not be opened over its store.
    #[error("opening the region node from {path}: {error}")]
    OpenNode {
        /// The data directory.
        path: PathBuf,
        /// What went wrong.
        error: RegionNodeError,
    },
    /// A round of raft work failed (a sync failed): the node stopped acknowledging and must
    /// be started again from what its store holds.
    #[error("a raft round failed, the node stopped: {0}")]
    Ready(#[from] ReadyError),
    /// The node thread could not be started or ended without a word.
    #[error("the node thread: {0}")]
    Thread(String),
}

/// What the node loop needs to start.
pub struct NodeLoopSettings {
    /// The sans-IO node's settings.
    pub node: RegionNodeConfig,
    /// The RocksDB directory.
    pub data_dir: PathBuf,
    /// The raft tick interval.
    pub tick_interval: Duration,
    /// The peer transport's queues.
    pub peers: PeerSenders,
}

impl From<LoopThreadError> for NodeLoopError {
    fn from(error: LoopThreadError) -> Self {
        NodeLoopError::Thread(error.0)
    }
}

/// The running node loop.
pub struct NodeLoopHandle {
    node_loop: LoopHandle<NodeEvent, NodeLoopError>,
    log_events: broadcast::Sender<Arc<LogEvent>>,
}

impl NodeLoopHandle {
    /// A sender of events to the node.
    pub fn events(&self) -> SyncSender<NodeEvent> {
        self.node_loop.events()
    }

    /// A sender that subscribes to the node's log events.
    pub fn log_events(&self) -> broadcast::Sender<Arc<LogEvent>> {
        self.log_events.clone()
    }

    /// Resolves when the loop has stopped, by request or by failure. Resolves at once when
    /// called a second time.
    pub async fn exited(&mut self) {
        self.node_loop.exited().await;
    }

    /// Asks the loop to stop and waits for the thread, returning why it stopped if it failed.
    /// The loop notices the request within one tick interval.
    pub fn stop(self) -> Result<(), NodeLoopError> {
        self.node_loop.stop()
    }
}

/// Opens the store and the node on a new thread and starts the loop. Returns once the node is
/// open (or could not be opened). The region ships no batch anywhere: see
/// [`spawn_with_global`].
pub fn spawn(settings: NodeLoopSettings) -> Result<NodeLoopHandle, NodeLoopError> {
    spawn_with_global(settings, &GlobalSettings::none(), None)
}

/// As [`spawn`], and the node's batches go to the coordinator that `global` names, through a
/// client task started on `runtime` (required when `global` names replicas).
pub fn spawn_with_global(
    settings: NodeLoopSettings,
    global: &GlobalSettings,
    runtime: Option<&tokio::runtime::Handle>,
) -> Result<NodeLoopHandle, NodeLoopError> {
    let (events, receiver) = event_channel();
    let coordinator = runtime.and_then(|runtime| {
        CoordinatorSender::start(runtime, settings.node.group.node_id, global, events.clone())
    });
    let (log_events, _) = broadcast::channel(LOG_EVENTS_BROADCAST_MAX);
    let loop_settings = LoopSettings {
        thread_name: format!("dsss-node-{}", settings.node.group.node_id),
        tick_interval: settings.tick_interval,
    };
    let thread_log_events = log_events.clone();
    let own_events = events.clone();
    let node_loop =
        dsss_raft_group::node_loop::spawn(loop_settings, (events, receiver), move || {
            let (node, store) = open(&settings)?;
            Ok(RegionLoop {
                node,
                store,
                peers: settings.peers,
                log_events: thread_log_events,
                waiters: HashMap::new(),
                syncs: HashMap::new(),
                uploads: HashMap::new(),
                session_opens: HashMap::new(),
                session_closes: HashMap::new(),
                next_request_id: 1,
                raft_messages_refused: 0,
                region: settings.node.region.clone(),
                coordinator,
                events: own_events,
                fatal: None,
            })
        })?;
    Ok(NodeLoopHandle {
        node_loop,
        log_events,
    })
}

fn open(settings: &NodeLoopSettings) -> Result<(RegionNode, RocksDbStore), NodeLoopError> {
    let path = settings.data_dir.clone();
    let mut store = RocksDbStore::open(
        &path,
        &[
            RAFT_LOG,
            RAFT_STATE,
            REGION_LOG,
            REGION_STATE,
            CHECKPOINTS_A,
            CHECKPOINTS_B,
        ],
    )
    .map_err(|error| NodeLoopError::OpenStore {
        path: path.clone(),
        error,
    })?;
    let node = RegionNode::open(settings.node.clone(), &mut store)
        .map_err(|error| NodeLoopError::OpenNode { path, error })?;
    Ok((node, store))
}

/// Where the answers of one (client, sequence) go: a retry while the first attempt still
/// waits adds a second sender, and both get the answer.
type Waiters = HashMap<(ClientId, RequestSequence), Vec<oneshot::Sender<ProposeOutcome>>>;

/// The region node as the shared loop drives it, with the answer channels of its waiting
/// callers.
struct RegionLoop {
    node: RegionNode,
    store: RocksDbStore,
    peers: PeerSenders,
    log_events: broadcast::Sender<Arc<LogEvent>>,
    waiters: Waiters,
    syncs: HashMap<u64, oneshot::Sender<Result<Barrier, SyncError>>>,
    uploads: HashMap<u64, oneshot::Sender<Result<CheckpointOutcome, UploadError>>>,
    session_opens: HashMap<u64, oneshot::Sender<Result<(), OpenSessionError>>>,
    session_closes: HashMap<u64, oneshot::Sender<Result<bool, CloseSessionError>>>,
    /// The id of the next barrier or upload handed to the node.
    next_request_id: u64,
    raft_messages_refused: u64,
    region: RegionId,
    coordinator: Option<CoordinatorSender>,
    /// The node's own queue, for answers that come back from other tasks.
    events: SyncSender<NodeEvent>,
    /// A store write outside a round failed: the loop stops at its next round.
    fatal: Option<StoreError>,
}

impl LoopNode for RegionLoop {
    type Event = NodeEvent;
    type Error = NodeLoopError;

    fn handle_event(&mut self, now_us: u64, event: NodeEvent) {
        // A clock that stepped since the last tick must not stamp this call.
        if matches!(
            event,
            NodeEvent::Propose { .. } | NodeEvent::OpenSession { .. }
        ) {
            self.judge_clock(now_us);
        }
        self.handle_node_event(now_us, event);
    }

    fn handle_tick(&mut self, now_us: u64) {
        self.judge_clock(now_us);
        // A hybrid clock running ahead of the wall clock fences the node at a tick, with no
        // verdict (RegionNode::handle_tick): said here, as a verdict's fence is said above.
        let was_fenced = self.node.clock_fence().is_some();
        self.node.handle_tick(now_us);
        match (was_fenced, self.node.clock_fence()) {
            (false, Some(fence)) => tracing::error!(
                node_id = self.node.id(),
                ahead_ms = fence.offset_us / 1_000,
                max_skew_ms = fence.max_skew_us / 1_000,
                "this node's hybrid clock runs {} ms ahead of its wall clock (the bound is {} \
                 ms): its wall clock went back after it stamped; it refuses calls and will not \
                 lead until its wall clock catches up",
                fence.offset_us / 1_000,
                fence.max_skew_us / 1_000
            ),
            (true, None) => tracing::warn!(
                node_id = self.node.id(),
                "this node's clock is back within the bound; it takes calls again"
            ),
            _ => {}
        }
    }

    fn quiet_ticks(&self, now_us: u64, tick_interval: Duration) -> u64 {
        let tick_interval_us = u64::try_from(tick_interval.as_micros()).unwrap_or(u64::MAX);
        self.node.quiet_ticks(now_us, tick_interval_us)
    }

    fn wake_at_us(&self) -> Option<u64> {
        self.node.close_due_at_us()
    }

    fn handle_wake(&mut self, now_us: u64) {
        // A close stamps the batch's closed timestamp with the hybrid clock: a clock that
        // stepped since the last tick must not stamp it, as it must not stamp a call.
        self.judge_clock(now_us);
        self.node.handle_close_due(now_us);
    }

    fn has_ready(&self) -> bool {
        self.fatal.is_some() || self.node.has_ready()
    }

    fn handle_ready(&mut self) -> Result<(), NodeLoopError> {
        if let Some(error) = self.fatal.take() {
            return Err(ReadyError::Store(error).into());
        }
        let mut io = PeerIo::new(&mut self.store, &self.peers);
        self.node.handle_ready(&mut io)?;
        Ok(())
    }

    fn route_outputs(&mut self, now_us: u64) {
        self.route_node_outputs(now_us, false);
    }
}

impl RegionLoop {
    /// Gives the node the verdict on its clock from what the peer transport measured, and
    /// logs when the node fences itself or resumes.
    fn judge_clock(&mut self, now_us: u64) {
        let (verdict, samples) = {
            let mut clocks = lock_clocks(self.peers.clocks());
            // The two clocks read together: `now_us` may have been read a while ago.
            let (wall_us, steady_us) = (SystemClock.now_us(), monotonic_us());
            if let Some(step_us) = clocks.observe_local_clock(wall_us, steady_us) {
                tracing::warn!(
                    node_id = self.node.id(),
                    step_ms = step_us / 1_000,
                    "this node's wall clock stepped against its monotonic clock; it stamps \
                     nothing until its peers confirm the new time"
                );
            }
            let voters = self.node.voters();
            (
                clocks.verdict(self.node.id(), &voters, now_us),
                clocks.fresh_samples(now_us),
            )
        };
        let was_fenced = self.node.clock_fence().is_some();
        self.node.handle_clock_verdict(&verdict, samples);
        match (was_fenced, self.node.clock_fence()) {
            (false, Some(fence)) => {
                let peers: Vec<String> = match &verdict {
                    ClockVerdict::Beyond { peers } => peers
                        .iter()
                        .map(|(peer, sample)| {
                            format!(
                                "node {peer} at {:+} ms (within {} ms)",
                                sample.offset_us / 1_000,
                                sample.uncertainty_us / 1_000
                            )
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                tracing::error!(
                    node_id = self.node.id(),
                    offset_ms = fence.offset_us / 1_000,
                    max_skew_ms = fence.max_skew_us / 1_000,
                    peers = %peers.join(", "),
                    "{fence}; this node refuses calls and will not lead until then"
                );
            }
            (true, None) => {
                tracing::warn!(
                    node_id = self.node.id(),
                    "this node's clock is back within the bound of its region's; it takes calls again"
                );
            }
            _ => {}
        }
    }

    /// Drains every output of the node in one exhaustive `match`. `immediate`: the outputs
    /// come out of a proposal itself, so its answers did not wait for a round (a call
    /// committed before, or a refusal).
    fn route_node_outputs(&mut self, now_us: u64, immediate: bool) {
        while let Some(output) = self.node.poll_output() {
            match output {
                RegionOutput::Reply(reply) => self.deliver_reply(reply, immediate),
                RegionOutput::SyncReply(reply) => {
                    let Some(sender) = self.syncs.remove(&reply.sync_id()) else {
                        continue;
                    };
                    let outcome = match reply {
                        SyncReply::Ready {
                            apply_through_position,
                            sealed_epoch_number,
                            ..
                        } => Ok(Barrier {
                            apply_through_position,
                            sealed_epoch_number,
                        }),
                        SyncReply::Refused { error, .. } => Err(error),
                    };
                    // The caller may have given up: nothing to do.
                    let _ = sender.send(outcome);
                }
                RegionOutput::SessionReply(reply) => {
                    if let Some(sender) = self.session_opens.remove(&reply.open_id) {
                        let _ = sender.send(reply.result);
                    }
                }
                RegionOutput::SessionCloseReply(reply) => {
                    if let Some(sender) = self.session_closes.remove(&reply.close_id) {
                        let _ = sender.send(reply.result);
                    }
                }
                RegionOutput::CheckpointReply(reply) => {
                    if let Some(sender) = self.uploads.remove(&reply.upload_id) {
                        let _ = sender.send(reply.result);
                    }
                }
                RegionOutput::SealedEpochRead(read) => match &self.coordinator {
                    Some(coordinator) => coordinator.read_sealed_epoch(read),
                    // Refused at once; the refusals of its barriers come out of this loop.
                    None => self.node.handle_sealed_epoch_read(
                        now_us,
                        read.read_id,
                        Err("this node knows no coordinator replica to ask".to_owned()),
                    ),
                },
                RegionOutput::FetchLogRange(fetch) => self.fetch_log_range(fetch),
                RegionOutput::LogEvent(event) => {
                    if let LogEvent::Restored {
                        first_retained_position,
                        next_position,
                    } = event
                    {
                        // Operators watch for this line: a member restored from a snapshot was
                        // too far behind for the leader's raft log (a new member, or one back
                        // from a long outage).
                        tracing::info!(
                            first_retained_position,
                            next_position,
                            "restored a snapshot of the region log"
                        );
                    }
                    // No subscriber is not an error: the event is in the log for later readers.
                    // Without one, the event is not even wrapped for sending, which spares an
                    // allocation per record under a write load that nobody streams.
                    if self.log_events.receiver_count() > 0 {
                        let _ = self.log_events.send(Arc::new(event));
                    }
                }
                RegionOutput::DivergenceAlarm(alarm) => {
                    // The region stops truncating its log until an operator looks: two replicas
                    // of the object computed different states from the same records.
                    tracing::error!(
                        object_id = %alarm.object_id,
                        position = alarm.position,
                        first_client_id = alarm.first_client_id,
                        second_client_id = alarm.second_client_id,
                        "checkpoint hash mismatch: the object's methods are not deterministic; \
                         the region log is no longer truncated"
                    );
                }
                RegionOutput::EpochsRead(read) => match &self.coordinator {
                    Some(coordinator) => coordinator.read_epochs(read),
                    None => {
                        let _ = self.node.handle_epochs_read_reply(
                            now_us,
                            read.read_id,
                            Err("this node runs no global tier client".to_owned()),
                        );
                    }
                },
                RegionOutput::CheckpointRead(read) => match &self.coordinator {
                    Some(coordinator) => coordinator.read_checkpoint(read),
                    None => {
                        let _ = self.node.handle_checkpoint_read_reply(
                            now_us,
                            read.read_id,
                            Err("this node runs no global tier client".to_owned()),
                        );
                    }
                },
                RegionOutput::ToCoordinator(ToCoordinator::Batch(batch)) => {
                    if let Some(coordinator) = &self.coordinator {
                        coordinator.send(batch);
                    }
                }
            }
        }
    }

    fn handle_node_event(&mut self, now_us: u64, event: NodeEvent) {
        match event {
            NodeEvent::Propose { request, reply } => self.handle_propose(now_us, request, reply),
            NodeEvent::RaftMessages(messages) => {
                for message in messages {
                    if let Err(error) = self.node.handle_raft_message_decoded(message) {
                        self.raft_messages_refused += 1;
                        tracing::debug!(%error, "raft message refused");
                    }
                }
            }
            NodeEvent::Status(reply) => {
                let _ = reply.send(self.status(now_us));
            }
            NodeEvent::ReadLog {
                from_position,
                records_max,
                reply,
            } => {
                let _ = reply.send(self.read_log(from_position, records_max));
            }
            NodeEvent::AnswerLogRange { request, reply } => {
                let answer = self
                    .node
                    .answer_log_range(&self.store, &request)
                    .map_err(|error| {
                        tracing::error!(%error, "cannot read the region log for a peer");
                        format!(
                            "reading the region log from position {}: {error}",
                            request.from_position
                        )
                    });
                let _ = reply.send(answer);
            }
            NodeEvent::LogRangeFetched { fetch_id, reply } => {
                if let Err(error) = self.node.handle_log_range(fetch_id, reply, &mut self.store) {
                    // The store failed a write: as a failed round, the node must restart
                    // from what its store holds.
                    self.fatal = Some(error);
                }
            }
            NodeEvent::AddPeer {
                node_id,
                address,
                reply,
            } => {
                let _ = reply.send(self.peers.add(node_id, &address));
            }
            NodeEvent::Membership { change, reply } => {
                let _ = reply.send(self.change_membership(change));
            }
            NodeEvent::SealedEpoch { epoch, reply } => {
                let _ = reply.send(self.handle_sealed_epoch(now_us, epoch));
            }
            NodeEvent::EpochsRead { read_id, reply } => {
                match self.node.handle_epochs_read_reply(now_us, read_id, reply) {
                    Ok(0) => {}
                    Ok(parts) => {
                        tracing::info!(parts, "appending released epochs read from another region")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "released epochs read from another region refused")
                    }
                }
            }
            NodeEvent::CheckpointRead { read_id, reply } => {
                match self
                    .node
                    .handle_checkpoint_read_reply(now_us, read_id, reply)
                {
                    Ok(true) => tracing::info!(
                        read_id,
                        "adopting a global object's checkpoint read from another region"
                    ),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "checkpoint read from another region refused")
                    }
                }
            }
            NodeEvent::ReadCheckpoint { request, reply } => {
                let answer = self
                    .node
                    .answer_checkpoint_read(&self.store, now_us, request);
                let _ = reply.send(answer);
            }
            NodeEvent::ReadEpochs { request, reply } => {
                let answer = self.node.answer_epochs_read(&self.store, now_us, request);
                let _ = reply.send(answer);
            }
            NodeEvent::BatchAck(ack) => {
                if let Some(coordinator) = &self.coordinator {
                    coordinator.heard_acknowledgement(&ack);
                }
                if let Err(error) = self.node.handle_batch_ack(now_us, ack) {
                    tracing::debug!(%error, "batch acknowledgement refused");
                }
            }
            NodeEvent::Sync { reply } => {
                if self.syncs.len() >= SYNCS_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(SyncError::Overloaded));
                    return;
                }
                let sync_id = self.take_request_id();
                self.syncs.insert(sync_id, reply);
                self.node.handle_sync(now_us, sync_id);
            }
            NodeEvent::UploadCheckpoint { upload, reply } => {
                if self.uploads.len() >= CHECKPOINT_UPLOADS_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(UploadError::Overloaded));
                    return;
                }
                let upload_id = self.take_request_id();
                self.uploads.insert(upload_id, reply);
                self.node
                    .handle_upload_checkpoint(now_us, upload_id, upload);
            }
            NodeEvent::ClearAlarm { object_id, reply } => {
                if self.uploads.len() >= CHECKPOINT_UPLOADS_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(UploadError::Overloaded));
                    return;
                }
                let upload_id = self.take_request_id();
                self.uploads.insert(upload_id, reply);
                self.node.handle_clear_alarm(now_us, upload_id, &object_id);
            }
            NodeEvent::OpenSession { session_id, reply } => {
                if self.session_opens.len() >= SESSION_OPENS_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(OpenSessionError::Overloaded));
                    return;
                }
                let open_id = self.take_request_id();
                self.session_opens.insert(open_id, reply);
                self.node.handle_open_session(now_us, open_id, session_id);
            }
            NodeEvent::CloseSession { session_id, reply } => {
                if self.session_closes.len() >= SESSION_CLOSES_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(CloseSessionError::Overloaded));
                    return;
                }
                let close_id = self.take_request_id();
                self.session_closes.insert(close_id, reply);
                self.node.handle_close_session(now_us, close_id, session_id);
            }
            NodeEvent::FetchCheckpoint {
                object_id,
                global,
                reply,
            } => {
                let fetch = self
                    .node
                    .fetch_checkpoint(&self.store, now_us, &object_id, global)
                    .map_err(|error| {
                        tracing::error!(%error, "cannot read a checkpoint");
                        format!("reading the checkpoint of {object_id}: {error}")
                    });
                let _ = reply.send(fetch);
            }
            NodeEvent::SealedEpochRead { read_id, reply } => {
                self.node.handle_sealed_epoch_read(now_us, read_id, reply);
            }
        }
    }

    fn take_request_id(&mut self) -> u64 {
        let id = self.next_request_id;
        self.next_request_id += 1;
        id
    }

    fn handle_propose(
        &mut self,
        now_us: u64,
        request: ProposeRequest,
        reply: oneshot::Sender<ProposeOutcome>,
    ) {
        let key = (request.client_id, request.request_sequence);
        let waiting = self.waiters.contains_key(&key);
        if !waiting && self.waiters.len() >= PROPOSE_WAITERS_MAX {
            let _ = reply.send(ProposeOutcome::Refused(ProposeError::Overloaded));
            return;
        }
        // Answers that come out of `handle_propose` itself come from the dedup table (a call
        // committed before) or are refusals; none of them waited for a round.
        self.waiters.entry(key).or_default().push(reply);
        self.node.handle_propose(now_us, request);
        self.route_node_outputs(now_us, true);
    }

    fn deliver_reply(&mut self, reply: Reply, immediate: bool) {
        let key = reply.key();
        let Some(senders) = self.waiters.remove(&key) else {
            return;
        };
        let outcome = match reply {
            Reply::Proposed { position, .. } => ProposeOutcome::Committed {
                position,
                timestamp: self
                    .node
                    .region_log()
                    .cached_record(position)
                    .and_then(|stored| stored.entry.record())
                    .map(|record| record.timestamp),
                duplicate: immediate,
            },
            Reply::Refused { error, .. } => ProposeOutcome::Refused(error),
        };
        for sender in senders {
            // The caller may have given up (its deadline passed): nothing to do.
            let _ = sender.send(outcome.clone());
        }
    }

    fn handle_sealed_epoch(
        &mut self,
        now_us: u64,
        epoch: proto::SealedEpoch,
    ) -> Result<proto::SealedEpochAck, GlobalMessageError> {
        self.node.answer_sealed_epoch(now_us, epoch)
    }

    fn status(&self, now_us: u64) -> NodeStatus {
        NodeStatus {
            node: self.node.status(),
            region: self.region.clone(),
            physical_now_us: now_us,
            hybrid_last: self.node.clock().last(),
            max_clock_skew_us: self.node.clock().max_skew_us(),
            raft_messages_refused: self.raft_messages_refused,
        }
    }

    /// Reads from the node's cache of the newest entries, or from the store for older ones.
    fn read_log(&self, from_position: u64, records_max: usize) -> Result<LogRead, String> {
        let log = self.node.region_log();
        let records = log
            .read(
                &self.store,
                from_position,
                records_max.min(LOG_READ_RECORDS_MAX),
                LOG_READ_BYTES_MAX as u64,
            )
            .map_err(|error| {
                // A store that cannot give back an entry it holds is damaged: operators must
                // see it, and the reader gets the error rather than a short read.
                tracing::error!(from_position, %error, "cannot read the region log");
                format!("reading the region log from position {from_position}: {error}")
            })?;
        Ok(LogRead {
            records: records
                .into_iter()
                .map(|log_record| (log_record.position, log_record.entry))
                .collect(),
            first_retained_position: log.first_retained_position(),
            next_position: log.next_position(),
        })
    }

    /// Sends a request for entries a snapshot stands on to its peer, on the runtime; the
    /// answer (or why there is none) comes back as [`NodeEvent::LogRangeFetched`]. When the
    /// queue is full the answer is lost and the node asks again after its timeout.
    fn fetch_log_range(&mut self, fetch: LogRangeFetch) {
        let fetch_id = fetch.request.fetch_id;
        let Some(address) = self.peers.address(fetch.peer).map(str::to_owned) else {
            let reply = Err(format!("no address is known for node {}", fetch.peer));
            if let Err(error) = self.node.handle_log_range(fetch_id, reply, &mut self.store) {
                self.fatal = Some(error);
            }
            return;
        };
        let events = self.events.clone();
        let node_id = self.node.id();
        let security = self.peers.security().clone();
        self.peers.runtime().spawn(async move {
            let reply = read_log_range(node_id, &address, &security, fetch.request).await;
            let _ = events.try_send(NodeEvent::LogRangeFetched { fetch_id, reply });
        });
    }

    fn change_membership(&mut self, change: MembershipChange) -> Result<(), String> {
        let outcome = match change {
            MembershipChange::AddLearner(node_id) => self.node.add_learner(node_id),
            MembershipChange::Promote(node_id) => self.node.promote_member(node_id),
            MembershipChange::Remove(node_id) => self.node.remove_member(node_id),
            MembershipChange::TransferLeader(node_id) => {
                self.node.transfer_leader(node_id);
                Ok(())
            }
        };
        outcome.map_err(|error| error.to_string())
    }
}

/// One `ReadLogRange` call to the peer at `address`, bounded by the peer call timeout.
async fn read_log_range(
    node_id: u64,
    address: &str,
    security: &dsss_wire::tls::Security,
    request: LogRangeRequest,
) -> Result<LogRangeReply, String> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .map_err(|error| format!("the peer address {address} is invalid: {error}"))?
        .connect_timeout(Duration::from_micros(PEER_CONNECT_TIMEOUT_US))
        .timeout(Duration::from_micros(PEER_CALL_TIMEOUT_US));
    let mut client = dsss_wire::grpc::region_peer_client(security.connect_lazy(endpoint));
    let reply = client
        .read_log_range(proto::LogRangeRequest {
            from_node_id: node_id,
            fetch_id: request.fetch_id,
            from_position: request.from_position,
            end_position: request.end_position,
            state: request.state.map(|state| proto::LogRangeStateRequest {
                view_index: state.view_index,
                space: u32::from(state.space.tag()),
                after_key: state.after_key,
            }),
        })
        .await
        .map_err(|status| format!("node at {address}: {}", status.message()))?
        .into_inner();
    let state = match reply.state {
        None => None,
        Some(piece) => {
            if piece.keys.len() != piece.values.len() {
                return Err(format!(
                    "node at {address}: a piece of checkpoint state with {} keys and {} values",
                    piece.keys.len(),
                    piece.values.len()
                ));
            }
            Some(crate::StatePiece {
                pairs: piece.keys.into_iter().zip(piece.values).collect(),
                done: piece.done,
            })
        }
    };
    Ok(LogRangeReply {
        fetch_id: reply.fetch_id,
        entries: reply.entries,
        first_retained_position: reply.first_retained_position,
        next_position: reply.next_position,
        state,
    })
}
