//! The processes of a simulated multi-region cluster: nodes that run the real [`RegionNode`]
//! of their region and, on the topology's coordinator replicas, the real
//! [`CoordinatorNode`] beside it, both over the node's [`SimDisk`]; and clients that call
//! global and regional objects, time out and retry with the same request sequence.
//!
//! The node process is a thin driver, like the production one: it moves messages between
//! the network and the two state machines, runs their rounds, and routes what they hand back
//! (to the coordinator leader it believes in, to the region leader it believes in). Every
//! protocol decision stays inside the state machines, and the beliefs are [`LeaderTracker`]s,
//! as in production. Acknowledgements travel as in production: the coordinator answers each
//! submitted batch with [`CoordinatorNode::answer_region_batch`], a region node each delivered
//! epoch part with [`RegionNode::answer_sealed_epoch`] (a follower names the leader rather
//! than forwarding the part), and the acknowledgements the nodes queue as outputs are not
//! sent.
//!
//! Nodes also serve application instances of other workloads ([`Application`]): the applied
//! log from a position (bounded per answer), an object's checkpoint, and `sync()` barriers,
//! for which the node carries the region node's sealed-epoch reads to the coordinator leader
//! and back.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_global_coordinator::{
    CoordinatorConfig, CoordinatorNode, CoordinatorOutput, REGION_DELIVERY_ATTEMPTS_MAX,
    RegionMessage,
};
use dsss_raft_group::raft::eraftpb::Message as RaftMessage;
use dsss_raft_group::{
    ClockProbe, DurableStore, KeySpace, KeyValuePairs, PinnedViews, ReadyIo, StoreError,
    WriteBatch, WriteOperation, encode_message,
};
use dsss_region_node::global::COORDINATOR_ATTEMPTS_MAX;
use dsss_region_node::{
    CheckpointFetch, CheckpointReply, CheckpointUpload, LogEntry, LogRangeReply, LogRangeRequest,
    ProposeError, ProposeRequest, RegionLog, RegionNode, RegionNodeConfig, RegionOutput, Reply,
    SessionCloseReply, SessionReply, SyncError, SyncReply, ToCoordinator,
};
use dsss_wire::{
    Arguments, ClientId, LeaderTracker, MethodId, ObjectId, RegionId, RequestSequence, Scope, proto,
};

use super::checker::GlobalObserver;
use crate::costs::WorkKind;
use crate::network::{EXTERNAL_NODE_ID, NodeId};
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::common::{NodeClocks, SessionOpened, SessionOpening, content_hash};
use crate::workloads::region::SimDiskStore;

/// The interval of a region node's raft tick: the production nodes' default.
pub const REGION_TICK_INTERVAL: Duration =
    Duration::from_micros(dsss_region_node::TICK_INTERVAL_US_DEFAULT);

/// How long a node lets proposals gather before it runs a round, so that proposals arriving
/// together travel in one raft entry.
pub const PROPOSAL_FLUSH_DELAY: Duration = Duration::from_micros(200);

/// How long a client waits before retrying a call that got an error.
pub const CLIENT_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// The argument bytes of every simulated call.
const CALL_ARGUMENT_BYTES: usize = 24;

/// The most log entries one [`GlobalMessage::LogEntries`] answer carries, so that a reader far
/// behind catches up in bounded steps.
pub const LOG_ENTRIES_PER_READ_MAX: usize = 256;

/// The most answers one log read may have ([`ReadLogRequest::answers_max`]); a member gives a
/// read that asks for more this many.
pub const LOG_READ_ANSWERS_MAX: u32 = 64;

/// The most log reads a member holds while they wait for something new to be applied; beyond,
/// the oldest is answered empty (its reader asks again), as a production node bounds its
/// subscribers.
pub const PARKED_LOG_READS_MAX: usize = 4_096;

/// The most barriers of application instances a node keeps track of; beyond, a new one is
/// refused as overloaded (the region node refuses beyond its own bound anyway).
pub const INSTANCE_SYNCS_TRACKED_MAX: usize = dsss_region_node::SYNCS_IN_FLIGHT_MAX;

/// The most sealed-epoch reads a node keeps track of, on either side (asked as a region node,
/// answered as a coordinator replica); beyond, the oldest is forgotten.
pub const SEALED_EPOCH_READS_TRACKED_MAX: usize = 256;

/// The most checkpoint uploads of application instances a node keeps track of; beyond, a
/// new one is refused as overloaded (the region node refuses beyond its own bound anyway).
pub const INSTANCE_UPLOADS_TRACKED_MAX: usize = dsss_region_node::CHECKPOINT_UPLOADS_IN_FLIGHT_MAX;

/// The most sessions a node remembers the client node of, to send the answers to their calls
/// there (see [`NodeProcess`]); beyond, the lowest session id is forgotten first.
pub const CLIENT_ROUTES_MAX: usize = 4_096;

/// The key prefix of the region node's data on a node's disk.
pub const REGION_STORE_PREFIX: &[u8] = b"region/";

/// The key prefix of the coordinator replica's data on a node's disk.
const COORDINATOR_STORE_PREFIX: &[u8] = b"coordinator/";

/// A message of the global workload.
#[derive(Clone)]
pub enum GlobalMessage {
    /// A raft message between members of one region, encoded as on the wire, with the
    /// sender's clock probe (as a batch of the production transport carries one).
    RegionRaft(Vec<u8>, ClockProbe),
    /// A raft message between coordinator replicas, encoded as on the wire, with the sender's
    /// clock probe.
    CoordinatorRaft(Vec<u8>, ClockProbe),
    /// A clock probe alone, to a member of the sender's region it sent nothing for a while.
    RegionClockProbe(ClockProbe),
    /// A clock probe alone, to another coordinator replica.
    CoordinatorClockProbe(ClockProbe),
    /// A client opens its session, named `open_id` by the client.
    OpenSession {
        /// The client's name for the open, echoed in the answer.
        open_id: u64,
        /// The session.
        session_id: u64,
    },
    /// A region node's answer to [`GlobalMessage::OpenSession`], carrying the client's name.
    SessionReply(SessionReply),
    /// A client closes its session, named `close_id` by the client.
    CloseSession {
        /// The client's name for the close, echoed in the answer.
        close_id: u64,
        /// The session.
        session_id: u64,
    },
    /// A region node's answer to [`GlobalMessage::CloseSession`], carrying the client's name.
    SessionCloseReply(SessionCloseReply),
    /// A client's call.
    Propose(ProposeRequest),
    /// A region node's answer to a call.
    Reply(Reply),
    /// A region leader's batch of global records, for the coordinator leader.
    Batch(proto::RegionBatch),
    /// The coordinator's answer to a batch.
    BatchAck(proto::RegionBatchAck),
    /// A part of a sealed epoch, for a region leader.
    Epoch(proto::SealedEpoch),
    /// A region's acknowledgement of sealed epochs.
    EpochAck(proto::SealedEpochAck),
    /// An application instance asks a member of its region for the applied log from a
    /// position on.
    ReadLog(ReadLogRequest),
    /// A member's answer to [`GlobalMessage::ReadLog`].
    LogEntries(LogEntries),
    /// A region member asks a peer for entries a snapshot stands on.
    ReadLogRange(LogRangeRequest),
    /// A peer's answer to [`GlobalMessage::ReadLogRange`].
    LogRange(LogRangeReply),
    /// An application instance asks a member for an object's newest checkpoint (after the
    /// member said it no longer keeps the log where the instance stands).
    FetchCheckpoint {
        /// Chosen by the instance, echoed in the answer.
        request_id: u64,
        /// The object.
        object_id: ObjectId,
        /// Whether the instance says it is a global object (a released one is then adopted
        /// from another region).
        global: bool,
    },
    /// A member's answer to [`GlobalMessage::FetchCheckpoint`].
    CheckpointFetched {
        /// The request answered.
        request_id: u64,
        /// The checkpoint, if the region keeps one, and the truncation point.
        fetch: CheckpointFetch,
    },
    /// An application instance asks a member for a `sync()` barrier, named by the instance.
    Sync {
        /// The instance's name for the barrier.
        sync_id: u64,
    },
    /// A member's answer to [`GlobalMessage::Sync`], carrying the instance's name for it.
    SyncReply(SyncReply),
    /// An application instance offers a checkpoint of an object's copy, named `upload_id` by
    /// the instance.
    UploadCheckpoint {
        /// The instance's name for the upload, echoed in the answer.
        upload_id: u64,
        /// The checkpoint.
        upload: CheckpointUpload,
    },
    /// A member's answer to [`GlobalMessage::UploadCheckpoint`], carrying the instance's name.
    CheckpointUploaded(CheckpointReply),
    /// A region node asks the coordinator leader for the newest sealed epoch, on behalf of its
    /// barriers.
    ReadSealedEpoch {
        /// The region node's name for the read.
        read_id: u64,
        /// The request.
        request: proto::ReadSealedEpochRequest,
    },
    /// A coordinator replica's answer to [`GlobalMessage::ReadSealedEpoch`].
    SealedEpochReply {
        /// The region node's name for the read.
        read_id: u64,
        /// The answer.
        reply: proto::ReadSealedEpochReply,
    },
    /// A region leader that missed released epochs reads them from a node of another region.
    ReadEpochs {
        /// The reading node's name for the read.
        read_id: u64,
        /// The request.
        request: proto::ReadEpochsRequest,
    },
    /// The answer to [`GlobalMessage::ReadEpochs`].
    EpochsReply {
        /// The reading node's name for the read.
        read_id: u64,
        /// The answer.
        reply: proto::ReadEpochsReply,
    },
    /// A region node reads a global object's checkpoint from a node of another region, to
    /// adopt it.
    ReadCheckpoint {
        /// The reading node's name for the read.
        read_id: u64,
        /// The request.
        request: proto::ReadCheckpointRequest,
    },
    /// The answer to [`GlobalMessage::ReadCheckpoint`].
    CheckpointReadReply {
        /// The reading node's name for the read.
        read_id: u64,
        /// The answer.
        reply: proto::ReadCheckpointReply,
    },
}

/// A request for the region log from `from_position` on, as a member has applied it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadLogRequest {
    /// Chosen by the reader, echoed in the answer, so that a late answer to an earlier request
    /// is told apart.
    pub request_id: u64,
    /// The first position wanted (positions start at 1).
    pub from_position: u64,
    /// How long the member may hold the read when it has applied nothing from
    /// `from_position` on, answering as soon as it applies something: a production stream
    /// pushes records as they are applied, and a reader that polled instead would see each
    /// record up to one poll interval late. Zero answers at once.
    pub wait_us: u64,
    /// How many answers the read may have, at most [`LOG_READ_ANSWERS_MAX`]: after each
    /// answer that leaves some, a member holds the read again from the position after the
    /// answer, so that it goes on pushing what it applies, as production's server stream does,
    /// without a request per answer. This is the credit of a stream's flow control: the reader
    /// renews it before it runs out. 0 and 1 both mean one answer.
    pub answers_max: u32,
    /// The reader's name for the stream this read feeds: a new read of the same reader for the
    /// same stream replaces the one a member holds for it.
    pub stream_id: u64,
}

/// A member's answer to a [`ReadLogRequest`]: the applied entries from the asked position on,
/// dense and in order, at most [`LOG_ENTRIES_PER_READ_MAX`] of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntries {
    /// The request answered.
    pub request_id: u64,
    /// The position asked for.
    pub from_position: u64,
    /// The entries from `from_position` through `through_position`, each with its position.
    pub entries: Vec<(u64, LogEntry)>,
    /// The member has sent every entry it applied through this position (`from_position - 1`
    /// when it has nothing newer).
    pub through_position: u64,
    /// Set when the member no longer keeps `from_position`: its oldest kept entry.
    pub truncated_below: Option<u64>,
}

impl LogEntries {
    /// The answer of a member whose applied log is `log`, persisted in `store`, to `request`:
    /// the newest entries come from the log's cache, older ones from the store, as a
    /// production node reads them.
    ///
    /// # Errors
    ///
    /// The store could not give back an entry the log retains: the store is damaged.
    pub fn answer(
        log: &RegionLog,
        store: &dyn DurableStore,
        request: ReadLogRequest,
    ) -> Result<LogEntries, StoreError> {
        let from_position = request.from_position.max(1);
        let mut answer = LogEntries {
            request_id: request.request_id,
            from_position,
            entries: Vec::new(),
            through_position: from_position - 1,
            truncated_below: None,
        };
        if from_position < log.first_retained_position() {
            answer.truncated_below = Some(log.first_retained_position());
            return Ok(answer);
        }
        for stored in log.read(store, from_position, LOG_ENTRIES_PER_READ_MAX, u64::MAX)? {
            answer.through_position = stored.position;
            answer.entries.push((stored.position, stored.entry));
        }
        Ok(answer)
    }
}

impl GlobalMessage {
    /// What kind of work handling the message is, for costs per kind ([`crate::costs`]).
    pub fn work_kind(&self) -> WorkKind {
        match self {
            GlobalMessage::RegionRaft(..)
            | GlobalMessage::CoordinatorRaft(..)
            | GlobalMessage::RegionClockProbe(_)
            | GlobalMessage::CoordinatorClockProbe(_)
            | GlobalMessage::ReadLogRange(_)
            | GlobalMessage::LogRange(_) => WorkKind::Raft,
            GlobalMessage::OpenSession { .. }
            | GlobalMessage::SessionReply(_)
            | GlobalMessage::CloseSession { .. }
            | GlobalMessage::SessionCloseReply(_)
            | GlobalMessage::Propose(_)
            | GlobalMessage::Reply(_)
            | GlobalMessage::ReadLog(_)
            | GlobalMessage::LogEntries(_)
            | GlobalMessage::FetchCheckpoint { .. }
            | GlobalMessage::CheckpointFetched { .. }
            | GlobalMessage::Sync { .. }
            | GlobalMessage::SyncReply(_)
            | GlobalMessage::UploadCheckpoint { .. }
            | GlobalMessage::CheckpointUploaded(_) => WorkKind::Client,
            GlobalMessage::Batch(_)
            | GlobalMessage::BatchAck(_)
            | GlobalMessage::Epoch(_)
            | GlobalMessage::EpochAck(_)
            | GlobalMessage::ReadSealedEpoch { .. }
            | GlobalMessage::SealedEpochReply { .. }
            | GlobalMessage::ReadEpochs { .. }
            | GlobalMessage::EpochsReply { .. }
            | GlobalMessage::ReadCheckpoint { .. }
            | GlobalMessage::CheckpointReadReply { .. } => WorkKind::Global,
        }
    }
}

impl fmt::Debug for GlobalMessage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GlobalMessage::RegionRaft(bytes, probe) => write!(
                formatter,
                "region-raft({}B #{:016x} clock {})",
                bytes.len(),
                content_hash(bytes),
                probe.sent_at_us
            ),
            GlobalMessage::CoordinatorRaft(bytes, probe) => write!(
                formatter,
                "coordinator-raft({}B #{:016x} clock {})",
                bytes.len(),
                content_hash(bytes),
                probe.sent_at_us
            ),
            GlobalMessage::RegionClockProbe(probe)
            | GlobalMessage::CoordinatorClockProbe(probe) => {
                write!(
                    formatter,
                    "clock-probe(at {} echo {} held {})",
                    probe.sent_at_us, probe.echo_sent_at_us, probe.echo_held_us
                )
            }
            GlobalMessage::Propose(request) => write!(
                formatter,
                "propose(c{} s{} {:?})",
                request.client_id, request.request_sequence, request.scope
            ),
            GlobalMessage::Reply(Reply::Proposed {
                client_id,
                request_sequence,
                position,
            }) => write!(
                formatter,
                "proposed(c{client_id} s{request_sequence} p{position})"
            ),
            GlobalMessage::Reply(Reply::Refused {
                client_id,
                request_sequence,
                error,
            }) => write!(
                formatter,
                "refused(c{client_id} s{request_sequence} {error:?})"
            ),
            GlobalMessage::Batch(batch) => write!(
                formatter,
                "batch({} i{} b{} {} records)",
                batch.region,
                batch.incarnation,
                batch.batch_number,
                batch.records.len()
            ),
            GlobalMessage::BatchAck(ack) => write!(
                formatter,
                "batch-ack({} i{} through b{} member {} not-leader {})",
                ack.region,
                ack.incarnation,
                ack.acknowledged_through_batch_number,
                ack.member,
                ack.not_leader.is_some()
            ),
            GlobalMessage::Epoch(epoch) => write!(
                formatter,
                "epoch(e{} part {}/{} {} records)",
                epoch.epoch_number,
                epoch.part_index,
                epoch.part_count,
                epoch.records.len()
            ),
            GlobalMessage::EpochAck(ack) => write!(
                formatter,
                "epoch-ack({} through e{} +{} parts not-leader {})",
                ack.region,
                ack.appended_through_epoch_number,
                ack.appended_parts_of_next_epoch,
                ack.not_leader.is_some()
            ),
            GlobalMessage::ReadLog(request) => write!(
                formatter,
                "read-log(r{} stream {} from p{} wait {}us answers {})",
                request.request_id,
                request.stream_id,
                request.from_position,
                request.wait_us,
                request.answers_max
            ),
            GlobalMessage::ReadLogRange(request) => write!(formatter, "read-log-range({request})"),
            GlobalMessage::LogRange(reply) => write!(formatter, "log-range({reply})"),
            GlobalMessage::LogEntries(answer) => write!(
                formatter,
                "log-entries(r{} from p{} {} entries through p{} truncated below {:?})",
                answer.request_id,
                answer.from_position,
                answer.entries.len(),
                answer.through_position,
                answer.truncated_below
            ),
            GlobalMessage::FetchCheckpoint {
                request_id,
                object_id,
                ..
            } => write!(
                formatter,
                "fetch-checkpoint(r{request_id} {})",
                object_id.as_str()
            ),
            GlobalMessage::CheckpointFetched { request_id, fetch } => write!(
                formatter,
                "checkpoint-fetched(r{request_id} at {:?} truncated through p{})",
                fetch
                    .checkpoint
                    .as_ref()
                    .map(|checkpoint| checkpoint.position),
                fetch.truncated_through
            ),
            GlobalMessage::Sync { sync_id } => write!(formatter, "sync(y{sync_id})"),
            GlobalMessage::UploadCheckpoint { upload_id, upload } => write!(
                formatter,
                "upload-checkpoint(u{upload_id} {} at p{} #{:016x})",
                upload.object_id.as_str(),
                upload.position,
                content_hash(&upload.state_hash)
            ),
            GlobalMessage::CheckpointUploaded(reply) => write!(
                formatter,
                "checkpoint-uploaded(u{} {:?})",
                reply.upload_id, reply.result
            ),
            GlobalMessage::OpenSession {
                open_id,
                session_id,
            } => write!(formatter, "open-session(o{open_id} c{session_id})"),
            GlobalMessage::SessionReply(reply) => write!(
                formatter,
                "session-reply(o{} c{} {:?})",
                reply.open_id, reply.session_id, reply.result
            ),
            GlobalMessage::CloseSession {
                close_id,
                session_id,
            } => write!(formatter, "close-session(x{close_id} c{session_id})"),
            GlobalMessage::SessionCloseReply(reply) => write!(
                formatter,
                "session-close-reply(x{} c{} {:?})",
                reply.close_id, reply.session_id, reply.result
            ),
            GlobalMessage::SyncReply(SyncReply::Ready {
                sync_id,
                apply_through_position,
                sealed_epoch_number,
            }) => write!(
                formatter,
                "sync-ready(y{sync_id} through p{apply_through_position} e{sealed_epoch_number})"
            ),
            GlobalMessage::SyncReply(SyncReply::Refused { sync_id, error }) => {
                write!(formatter, "sync-refused(y{sync_id} {error})")
            }
            GlobalMessage::ReadSealedEpoch { read_id, request } => write!(
                formatter,
                "read-sealed-epoch(r{read_id} from {})",
                request.sender_node_id
            ),
            GlobalMessage::SealedEpochReply { read_id, reply } => write!(
                formatter,
                "sealed-epoch-reply(r{read_id} e{} not-leader {})",
                reply.epoch_number,
                reply.not_leader.is_some()
            ),
            GlobalMessage::ReadEpochs { read_id, request } => write!(
                formatter,
                "read-epochs(r{read_id} {} from e{} p{})",
                request.region, request.epoch_number, request.part_index
            ),
            GlobalMessage::EpochsReply { read_id, reply } => write!(
                formatter,
                "epochs-reply(r{read_id} {} {} parts unavailable {})",
                reply.region,
                reply.parts.len(),
                reply.unavailable
            ),
            GlobalMessage::ReadCheckpoint { read_id, request } => write!(
                formatter,
                "read-checkpoint(r{read_id} {} {})",
                request.region, request.object_id
            ),
            GlobalMessage::CheckpointReadReply { read_id, reply } => write!(
                formatter,
                "checkpoint-read-reply(r{read_id} {} {} {} bytes unavailable {:?})",
                reply.region,
                reply.object_id,
                reply.state.len(),
                reply.unavailable
            ),
        }
    }
}

/// A [`DurableStore`] that keeps its keys under a prefix inside another store, so that two
/// raft groups (a region node and a coordinator replica) share one node's disk without
/// sharing keys.
pub struct PrefixedStore<'a, S: DurableStore> {
    inner: &'a mut S,
    prefix: &'static [u8],
}

impl<'a, S: DurableStore> PrefixedStore<'a, S> {
    /// `inner`, with every key under `prefix`.
    pub fn new(inner: &'a mut S, prefix: &'static [u8]) -> Self {
        PrefixedStore { inner, prefix }
    }

    fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut prefixed = Vec::with_capacity(self.prefix.len() + key.len());
        prefixed.extend_from_slice(self.prefix);
        prefixed.extend_from_slice(key);
        prefixed
    }

    /// The end of the prefix's key range: every key under the prefix sorts below it.
    fn end_of_prefix(&self) -> Vec<u8> {
        let mut end = self.prefix.to_vec();
        end.push(0xff);
        end.push(0xff);
        end
    }
}

impl<S: DurableStore> DurableStore for PrefixedStore<'_, S> {
    fn write(&mut self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let mut prefixed = WriteBatch::new();
        for operation in batch.into_operations() {
            match operation {
                WriteOperation::Put { space, key, value } => {
                    prefixed.put(space, self.key(&key), value);
                }
                WriteOperation::Delete { space, key } => prefixed.delete(space, self.key(&key)),
                WriteOperation::DeleteRange { space, start, end } => {
                    // An empty end means "to the end of the space": keep it inside the prefix.
                    let end = if end.is_empty() {
                        self.end_of_prefix()
                    } else {
                        self.key(&end)
                    };
                    prefixed.delete_range(space, self.key(&start), end);
                }
            }
        }
        self.inner.write(prefixed, sync)
    }

    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(space, &self.key(key))
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        let end = if end.is_empty() {
            self.end_of_prefix()
        } else {
            self.key(end)
        };
        let prefix_length = self.prefix.len();
        Ok(self
            .inner
            .scan(space, &self.key(start), &end, limit)?
            .into_iter()
            .map(|(key, value)| (key[prefix_length..].to_vec(), value))
            .collect())
    }

    /// The inner store's views: a view pinned through this store is copied through it, so
    /// it holds the keys without the prefix. Only the region node's group pins views, so the
    /// ids of the two groups sharing the disk never meet.
    fn views(&self) -> Option<&PinnedViews> {
        self.inner.views()
    }
}

/// The [`ReadyIo`] of one of a node's raft groups: persists under the group's prefix with a
/// sync, sends raft messages through the simulated network.
struct SimReadyIo<'c, 'a> {
    cx: &'c mut Context<'a, GlobalMessage>,
    prefix: &'static [u8],
    wrap: fn(Vec<u8>, ClockProbe) -> GlobalMessage,
    /// The group's view of its peers' clocks, whose probes ride on its messages.
    clocks: &'c mut NodeClocks,
}

impl ReadyIo for SimReadyIo<'_, '_> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut disk = SimDiskStore::new(self.cx.disk());
        PrefixedStore::new(&mut disk, self.prefix).write(batch, true)
    }

    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
        let mut disk = SimDiskStore::new(self.cx.disk());
        reads(&PrefixedStore::new(&mut disk, self.prefix));
    }

    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        // Lost on a crash unless a later synced write comes first, as on a real disk.
        let mut disk = SimDiskStore::new(self.cx.disk());
        PrefixedStore::new(&mut disk, self.prefix).write(batch, false)
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        let now_us = self.cx.now_us();
        for message in messages {
            let probe = self.clocks.probe_for(message.to, now_us);
            self.cx
                .send(message.to, (self.wrap)(encode_message(&message), probe));
        }
    }
}

/// Where things are: the static map every process routes by.
#[derive(Clone, Debug)]
pub struct Routes {
    /// Every region's name and its member node ids, in topology order.
    pub regions: Vec<(String, Vec<NodeId>)>,
    /// The coordinator's replicas, sorted.
    pub coordinator_replicas: Vec<NodeId>,
    /// The replica to try first.
    pub preferred_coordinator_leader: NodeId,
    /// The client processes.
    pub clients: Vec<NodeId>,
}

impl Routes {
    /// The member of `region` that serves the read numbered `read_id` (any member serves a
    /// read of another region; successive reads go to successive members, so a crashed or
    /// cut-off member is passed over); none when the topology has no such region.
    fn member_for(&self, region: &RegionId, read_id: u64) -> Option<NodeId> {
        let members = self
            .regions
            .iter()
            .find(|(name, _)| name == region.as_str())
            .map(|(_, members)| members)?;
        (!members.is_empty()).then(|| members[(read_id as usize) % members.len()])
    }
}

/// A log read a member holds until it has something new for it.
struct ParkedLogRead {
    reader: NodeId,
    request: ReadLogRequest,
    /// When the member answers it empty.
    until: SimTime,
}

/// What a node did with the refusals its calls met ([`NodeProcess::handle_refused`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RefusalCounts {
    /// Batches and sealed-epoch reads sent at once to the next coordinator replica.
    pub resent_to_coordinator: u64,
    /// Epoch parts sent at once to a region's next node (on a coordinator replica).
    pub resent_to_regions: u64,
    /// Refused messages left to the resend timers: the attempts since the last answer had
    /// reached their bound.
    pub left_to_timers: u64,
}

/// A node: the region node of its region, and the coordinator replica when the topology puts
/// one here.
pub struct NodeProcess {
    region_config: RegionNodeConfig,
    coordinator_config: Option<CoordinatorConfig>,
    routes: Rc<Routes>,
    region: Option<RegionNode>,
    coordinator: Option<CoordinatorNode>,
    /// The coordinator replica this node's region leader sends to.
    coordinator_leader: LeaderTracker,
    /// Since when a message this node's region leader sent to the coordinator waits for an
    /// answer: the first sent after the last answer. An idle region sends only every idle
    /// interval, so silence counts only while something is unanswered.
    coordinator_unanswered_since: Option<SimTime>,
    /// How long without an answer before the next replica is tried.
    coordinator_silence_max: Duration,
    /// Messages to coordinator replicas sent again at once after a refusal since the last
    /// answer ([`NodeProcess::handle_refused`]).
    coordinator_refusals: usize,
    /// For the coordinator replica: the node each region's messages go to.
    region_leaders: BTreeMap<String, LeaderTracker>,
    /// For the coordinator replica: epoch parts sent again at once after a refusal since the
    /// region last answered, per region.
    region_refusals: BTreeMap<String, usize>,
    /// What the node did with the refusals its calls met, since it started.
    refusal_counts: RefusalCounts,
    region_tick_timer: Option<TimerId>,
    /// The timer of the region leader's next batch close between ticks
    /// ([`RegionNode::close_due_at_us`]), with the node time it was armed for: a time armed
    /// once is not armed again, so a close that does not move it cannot spin.
    close_timer: Option<TimerId>,
    close_timer_at_us: u64,
    coordinator_tick_timer: Option<TimerId>,
    coordinator_tick_interval: Duration,
    flush_timer: Option<TimerId>,
    /// Barriers of application instances waiting on the region node: the node's name for
    /// each, with the instance and the instance's name.
    instance_syncs: BTreeMap<u64, (NodeId, u64)>,
    next_sync_id: u64,
    /// Session opens waiting on the region node: the node's name for each, with the client
    /// and the client's name.
    session_opens: BTreeMap<u64, (NodeId, u64)>,
    /// Session closes handed to the region node, by its id: the client and its name.
    session_closes: BTreeMap<u64, (NodeId, u64)>,
    next_open_id: u64,
    /// Checkpoint uploads waiting on the region node: the node's name for each, with the
    /// instance and the instance's name.
    instance_uploads: BTreeMap<u64, (NodeId, u64)>,
    next_upload_id: u64,
    /// The client node that proposed in each session lately, for the answers: a session id
    /// names its node only until the session is renewed (the SDK draws the new id), or when
    /// an instance starts sessions one after another.
    client_routes: BTreeMap<u64, NodeId>,
    /// Sealed-epoch reads the region node asked, with when they were sent, to give up on the
    /// unanswered ones.
    epoch_reads_sent: BTreeMap<u64, SimTime>,
    /// Sealed-epoch reads the coordinator replica answers: its name for each, with the asking
    /// node and that node's name.
    epoch_reads_received: BTreeMap<u64, (NodeId, u64)>,
    next_epoch_read_id: u64,
    observer: Rc<RefCell<GlobalObserver>>,
    /// Log reads that found nothing new, held until the region node applies more or until
    /// their wait ends (lost on a crash, as a production node's streams are).
    parked_log_reads: VecDeque<ParkedLogRead>,
    /// The region log's next position and the earliest end of a wait when the held reads
    /// were last looked at: until one of them moves, none is due.
    parked_log_reads_checked: (u64, SimTime),
    /// The region group's and the coordinator group's views of their peers' clocks, from
    /// the probes their raft messages carry (lost on a crash).
    region_clocks: NodeClocks,
    coordinator_clocks: NodeClocks,
    /// A handler skipped its raft rounds because another waiting event follows it in the
    /// same run ([`Context::more_waiting`]): the last one of the run makes them.
    flush_deferred: bool,
}

impl NodeProcess {
    /// A node that opens its region node (and coordinator replica) when it starts.
    /// `coordinator_silence_max` is how long its region leader waits for the coordinator
    /// leader it believes in before it tries another replica.
    pub fn new(
        region_config: RegionNodeConfig,
        coordinator_config: Option<CoordinatorConfig>,
        routes: Rc<Routes>,
        coordinator_silence_max: Duration,
        observer: Rc<RefCell<GlobalObserver>>,
    ) -> Self {
        let region_config_skew = region_config.max_clock_skew_us;
        let coordinator_config_skew = coordinator_config
            .as_ref()
            .map_or(region_config_skew, |config| config.max_clock_skew_us);
        let coordinator_tick_interval = coordinator_config
            .as_ref()
            .map_or(REGION_TICK_INTERVAL, |config| {
                Duration::from_micros(config.epoch_interval_us)
            });
        let mut coordinator_leader = LeaderTracker::new(routes.coordinator_replicas.clone(), 0);
        coordinator_leader.prefer(routes.preferred_coordinator_leader);
        let region_leaders = routes
            .regions
            .iter()
            .map(|(region, members)| (region.clone(), LeaderTracker::new(members.clone(), 0)))
            .collect();
        NodeProcess {
            region_config,
            coordinator_config,
            coordinator_leader,
            routes,
            region: None,
            coordinator: None,
            coordinator_unanswered_since: None,
            coordinator_silence_max,
            coordinator_refusals: 0,
            region_refusals: BTreeMap::new(),
            refusal_counts: RefusalCounts::default(),
            region_leaders,
            region_tick_timer: None,
            close_timer: None,
            close_timer_at_us: 0,
            coordinator_tick_timer: None,
            coordinator_tick_interval,
            flush_timer: None,
            instance_syncs: BTreeMap::new(),
            next_sync_id: 1,
            session_opens: BTreeMap::new(),
            session_closes: BTreeMap::new(),
            next_open_id: 1,
            instance_uploads: BTreeMap::new(),
            next_upload_id: 1,
            client_routes: BTreeMap::new(),
            epoch_reads_sent: BTreeMap::new(),
            epoch_reads_received: BTreeMap::new(),
            next_epoch_read_id: 1,
            observer,
            parked_log_reads: VecDeque::new(),
            parked_log_reads_checked: (0, SimTime::ZERO),
            region_clocks: NodeClocks::new(region_config_skew),
            coordinator_clocks: NodeClocks::new(coordinator_config_skew),
            flush_deferred: false,
        }
    }

    /// The region node, once started.
    pub fn region_node(&self) -> Option<&RegionNode> {
        self.region.as_ref()
    }

    /// What the node did with the refusals its calls met, since it started.
    pub fn refusal_counts(&self) -> RefusalCounts {
        self.refusal_counts
    }

    /// The coordinator replica, once started, on the nodes that host one.
    pub fn coordinator(&self) -> Option<&CoordinatorNode> {
        self.coordinator.as_ref()
    }

    /// Runs `command` on the coordinator replica (if any), then the node's round.
    pub fn coordinator_command(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        command: impl FnOnce(&mut CoordinatorNode),
    ) {
        if let Some(coordinator) = self.coordinator.as_mut() {
            command(coordinator);
        }
        self.flush(cx);
    }

    /// As the production driver does before every tick and every call: the verdict on the
    /// region node's clock, with the virtual time as its monotonic clock.
    fn judge_region_clock(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(region) = self.region.as_mut() else {
            return;
        };
        let now_us = cx.now_us();
        let verdict = self
            .region_clocks
            .verdict(region.id(), &region.voters(), now_us, cx.now());
        let was_fenced = region.clock_fence().is_some();
        region.handle_clock_verdict(&verdict, self.region_clocks.clocks.fresh_samples(now_us));
        if !was_fenced && region.clock_fence().is_some() {
            self.observer.borrow_mut().clock_fences += 1;
        }
    }

    /// Makes the raft rounds a handler of this run left for its end, once the run ends.
    fn flush_at_run_end(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if self.flush_deferred && !cx.more_waiting() {
            self.flush(cx);
        }
    }

    /// Runs both rounds and hands their outputs on; when another waiting event follows in the
    /// same run, leaves them to the end of the run, as the production loop makes one round
    /// for every event it found queued.
    fn flush(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if cx.more_waiting() {
            self.flush_deferred = true;
            return;
        }
        self.flush_deferred = false;
        self.flush_region(cx);
        self.flush_coordinator(cx);
        self.answer_parked_log_reads(cx);
        self.arm_close_timer(cx);
    }

    /// As the production loop does (`LoopNode::wake_at_us`): wakes the region leader for its
    /// next batch close when that comes before its next tick would.
    fn arm_close_timer(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(at_us) = self.region.as_ref().and_then(RegionNode::close_due_at_us) else {
            return;
        };
        if at_us == self.close_timer_at_us {
            return;
        }
        if let Some(timer) = self.close_timer.take() {
            cx.cancel_timer(timer);
        }
        self.close_timer_at_us = at_us;
        let delay = Duration::from_micros(at_us.saturating_sub(cx.now_us()));
        self.close_timer = Some(cx.set_timer(delay));
    }

    /// Answers `request` from `reader` at once when there is something to give or it may not
    /// wait, and holds it otherwise.
    fn take_log_read(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        reader: NodeId,
        request: ReadLogRequest,
    ) {
        let region = self.region.as_ref().expect("started");
        // Nothing new to give (the retained positions all lie below the next one).
        if request.wait_us > 0 && request.from_position >= region.region_log().next_position() {
            if self.parked_log_reads.len() >= PARKED_LOG_READS_MAX
                && let Some(oldest) = self.parked_log_reads.pop_front()
            {
                // Its last answer: the reader asks again when it wants more.
                self.answer_log_read(
                    cx,
                    oldest.reader,
                    ReadLogRequest {
                        answers_max: 1,
                        ..oldest.request
                    },
                );
            }
            let until = cx
                .now()
                .saturating_add(Duration::from_micros(request.wait_us));
            self.parked_log_reads.push_back(ParkedLogRead {
                reader,
                request,
                until,
            });
            let checked = &mut self.parked_log_reads_checked.1;
            *checked = (*checked).min(until);
        } else {
            self.answer_log_read(cx, reader, request);
        }
    }

    /// Answers `request` from `reader` with what the region node applied from its position on,
    /// and takes the read again from the position after the answer while it has answers left.
    fn answer_log_read(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        reader: NodeId,
        request: ReadLogRequest,
    ) {
        let region = self.region.as_ref().expect("started");
        let node = cx.node();
        let mut disk = SimDiskStore::new(cx.disk());
        let store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
        let answer =
            LogEntries::answer(region.region_log(), &store, request).unwrap_or_else(|error| {
                panic!("node {node} cannot read back its own region log: {error}")
            });
        let answers_left = request.answers_max.min(LOG_READ_ANSWERS_MAX);
        // A truncated answer ends the stream: the reader starts over from a checkpoint.
        let follow = (request.wait_us > 0 && answers_left > 1 && answer.truncated_below.is_none())
            .then(|| ReadLogRequest {
                from_position: answer.through_position + 1,
                answers_max: answers_left - 1,
                ..request
            });
        cx.send(reader, GlobalMessage::LogEntries(answer));
        if let Some(follow) = follow {
            // Bounded by the answers the reader gave: each answer uses one up.
            self.take_log_read(cx, reader, follow);
        }
    }

    /// Answers the held log reads that the region node has applied something for, and those
    /// whose wait ended.
    fn answer_parked_log_reads(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if self.parked_log_reads.is_empty() {
            return;
        }
        let Some(region) = self.region.as_ref() else {
            return;
        };
        let next_position = region.region_log().next_position();
        let now = cx.now();
        let (checked_position, earliest_until) = self.parked_log_reads_checked;
        if next_position == checked_position && now < earliest_until {
            return;
        }
        let (due, held): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.parked_log_reads)
            .into_iter()
            .partition(|parked| {
                parked.request.from_position < next_position || parked.until <= now
            });
        self.parked_log_reads = held;
        let earliest_until = self
            .parked_log_reads
            .iter()
            .map(|parked| parked.until)
            .min()
            .unwrap_or(SimTime::MAX);
        self.parked_log_reads_checked = (next_position, earliest_until);
        for parked in due {
            self.answer_log_read(cx, parked.reader, parked.request);
        }
    }

    fn flush_region(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(region) = self.region.as_mut() else {
            return;
        };
        let mut io = SimReadyIo {
            cx,
            prefix: REGION_STORE_PREFIX,
            wrap: GlobalMessage::RegionRaft,
            clocks: &mut self.region_clocks,
        };
        if let Err(error) = region.handle_ready(&mut io) {
            // The simulated disk only fails when full, and runs stay far below its size.
            panic!("node {}: a region round failed: {error}", cx.node());
        }
        let now = cx.now();
        if self.coordinator_unanswered_since.is_some_and(|since| {
            now.saturating_duration_since(since) > self.coordinator_silence_max
        }) && region.is_leader()
        {
            // The replica we send to has not answered for a while: it may be down or cut
            // off, so try the next one (a follower's answer names the leader).
            let silent = self.coordinator_leader.target();
            self.coordinator_leader.handle_failure(silent);
            self.coordinator_unanswered_since = None;
        }
        while let Some(output) = region.poll_output() {
            match output {
                RegionOutput::Reply(reply) => {
                    if let Reply::Proposed {
                        client_id,
                        request_sequence,
                        ..
                    } = &reply
                    {
                        self.observer
                            .borrow_mut()
                            .stages
                            .call_answered(now, (client_id.get(), request_sequence.get()));
                    }
                    let client = reply.key().0.get();
                    let to = match self.client_routes.get(&client) {
                        Some(&node) => node,
                        None if self.routes.clients.contains(&client) => client,
                        None => EXTERNAL_NODE_ID,
                    };
                    cx.send(to, GlobalMessage::Reply(reply));
                }
                RegionOutput::SyncReply(reply) => {
                    let Some((instance, instance_sync_id)) =
                        self.instance_syncs.remove(&reply.sync_id())
                    else {
                        continue;
                    };
                    let reply = match reply {
                        SyncReply::Ready {
                            apply_through_position,
                            sealed_epoch_number,
                            ..
                        } => SyncReply::Ready {
                            sync_id: instance_sync_id,
                            apply_through_position,
                            sealed_epoch_number,
                        },
                        SyncReply::Refused { error, .. } => SyncReply::Refused {
                            sync_id: instance_sync_id,
                            error,
                        },
                    };
                    cx.send(instance, GlobalMessage::SyncReply(reply));
                }
                RegionOutput::SessionReply(reply) => {
                    if let Some((client, open_id)) = self.session_opens.remove(&reply.open_id) {
                        cx.send(
                            client,
                            GlobalMessage::SessionReply(SessionReply { open_id, ..reply }),
                        );
                    }
                }
                RegionOutput::SessionCloseReply(reply) => {
                    if let Some((client, close_id)) = self.session_closes.remove(&reply.close_id) {
                        cx.send(
                            client,
                            GlobalMessage::SessionCloseReply(SessionCloseReply {
                                close_id,
                                ..reply
                            }),
                        );
                    }
                }
                RegionOutput::CheckpointReply(reply) => {
                    if let Some((instance, upload_id)) =
                        self.instance_uploads.remove(&reply.upload_id)
                    {
                        cx.send(
                            instance,
                            GlobalMessage::CheckpointUploaded(CheckpointReply {
                                upload_id,
                                ..reply
                            }),
                        );
                        continue;
                    }
                    self.observer.borrow_mut().violation(format!(
                        "node {}: the answer to checkpoint upload {}, which nobody sent here",
                        cx.node(),
                        reply.upload_id
                    ));
                }
                RegionOutput::SealedEpochRead(read) => {
                    if self.epoch_reads_sent.len() >= SEALED_EPOCH_READS_TRACKED_MAX {
                        self.epoch_reads_sent.pop_first();
                    }
                    self.epoch_reads_sent.insert(read.read_id, cx.now());
                    cx.send(
                        self.coordinator_leader.target(),
                        GlobalMessage::ReadSealedEpoch {
                            read_id: read.read_id,
                            request: read.request,
                        },
                    );
                }
                RegionOutput::LogEvent(event) => {
                    self.observer
                        .borrow_mut()
                        .observe_log_event(cx.node(), &event);
                }
                RegionOutput::DivergenceAlarm(alarm) => {
                    self.observer.borrow_mut().violation(format!(
                        "node {}: the checkpoints of {} at position {} differ between clients {} \
                         and {}",
                        cx.node(),
                        alarm.object_id.as_str(),
                        alarm.position,
                        alarm.first_client_id,
                        alarm.second_client_id
                    ));
                }
                RegionOutput::ToCoordinator(ToCoordinator::Batch(batch)) => {
                    self.observer.borrow_mut().stages.batch_sent(now, &batch);
                    self.coordinator_unanswered_since.get_or_insert(now);
                    cx.send(
                        self.coordinator_leader.target(),
                        GlobalMessage::Batch(batch),
                    );
                }
                RegionOutput::FetchLogRange(fetch) => {
                    cx.send(fetch.peer, GlobalMessage::ReadLogRange(fetch.request));
                }
                RegionOutput::EpochsRead(read) => {
                    let Some(to) = self.routes.member_for(&read.region, read.read_id) else {
                        let _ = region.handle_epochs_read_reply(
                            cx.now_us(),
                            read.read_id,
                            Err(format!("region {} is not in the topology", read.region)),
                        );
                        continue;
                    };
                    cx.send(
                        to,
                        GlobalMessage::ReadEpochs {
                            read_id: read.read_id,
                            request: read.request,
                        },
                    );
                }
                RegionOutput::CheckpointRead(read) => {
                    let Some(to) = self.routes.member_for(&read.region, read.read_id) else {
                        let _ = region.handle_checkpoint_read_reply(
                            cx.now_us(),
                            read.read_id,
                            Err(format!("region {} is not in the topology", read.region)),
                        );
                        continue;
                    };
                    cx.send(
                        to,
                        GlobalMessage::ReadCheckpoint {
                            read_id: read.read_id,
                            request: read.request,
                        },
                    );
                }
            }
        }
    }

    fn flush_coordinator(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(coordinator) = self.coordinator.as_mut() else {
            return;
        };
        let mut io = SimReadyIo {
            cx,
            prefix: COORDINATOR_STORE_PREFIX,
            wrap: GlobalMessage::CoordinatorRaft,
            clocks: &mut self.coordinator_clocks,
        };
        if let Err(error) = coordinator.handle_ready(&mut io) {
            panic!("node {}: a coordinator round failed: {error}", cx.node());
        }
        // Any replica: a follower applies what it committed on its own and its leader's
        // copies before the leader learns of the commit (docs/global-protocol.md section 7).
        {
            let mut observer = self.observer.borrow_mut();
            for (region, state) in coordinator.state().regions() {
                observer.stages.batches_applied(
                    cx.now(),
                    region.as_str(),
                    state.incarnation,
                    state.next_batch_number.saturating_sub(1),
                );
            }
        }
        // Taken first: routing borrows the whole process, which holds the coordinator.
        let outputs: Vec<CoordinatorOutput> =
            std::iter::from_fn(|| coordinator.poll_output()).collect();
        for output in outputs {
            match output {
                // The checks read membership from the replicas' state; notices are for logs.
                CoordinatorOutput::Notice(_) => {}
                CoordinatorOutput::SealedEpochReply { read_id, reply } => {
                    if let Some((node, their_read_id)) = self.epoch_reads_received.remove(&read_id)
                    {
                        cx.send(
                            node,
                            GlobalMessage::SealedEpochReply {
                                read_id: their_read_id,
                                reply,
                            },
                        );
                    }
                }
                CoordinatorOutput::ToRegion {
                    region,
                    message: RegionMessage::LeaderAnnouncement(ack),
                } => {
                    // Every node of the region, as the production sender calls each.
                    let nodes = self
                        .region_leaders
                        .get(region.as_str())
                        .map(|leader| leader.members().to_vec())
                        .unwrap_or_default();
                    for node in nodes {
                        cx.send(node, GlobalMessage::BatchAck(ack.clone()));
                    }
                }
                CoordinatorOutput::ToRegion { region, message } => {
                    if let Some(to) = self.region_target(region.as_str()) {
                        let mut observer = self.observer.borrow_mut();
                        let message = match message {
                            RegionMessage::Epoch(epoch) => {
                                observer.stages.epoch_sent(cx.now(), &epoch);
                                GlobalMessage::Epoch(epoch)
                            }
                            RegionMessage::BatchAck(ack)
                            | RegionMessage::LeaderAnnouncement(ack) => {
                                GlobalMessage::BatchAck(ack)
                            }
                        };
                        drop(observer);
                        cx.send(to, message);
                    }
                }
            }
        }
    }

    /// The node a coordinator message for `region` goes to.
    fn region_target(&self, region: &str) -> Option<NodeId> {
        self.region_leaders.get(region).map(LeaderTracker::target)
    }

    fn schedule_flush(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if self.flush_timer.is_none() {
            self.flush_timer = Some(cx.set_timer(PROPOSAL_FLUSH_DELAY));
        }
    }

    /// An application instance asks for a barrier: the region node answers it under a name
    /// of this node's, unique among its barriers.
    fn handle_instance_sync(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        instance_sync_id: u64,
    ) {
        if self.instance_syncs.len() >= INSTANCE_SYNCS_TRACKED_MAX {
            let reply = SyncReply::Refused {
                sync_id: instance_sync_id,
                error: SyncError::Overloaded,
            };
            cx.send(from, GlobalMessage::SyncReply(reply));
            return;
        }
        let sync_id = self.next_sync_id;
        self.next_sync_id += 1;
        self.instance_syncs
            .insert(sync_id, (from, instance_sync_id));
        let region = self.region.as_mut().expect("started");
        region.handle_sync(cx.now_us(), sync_id);
        self.flush(cx);
    }

    /// Sealed-epoch reads unanswered for longer than the coordinator may stay silent: the
    /// region node learns that they failed (its barriers are refused and asked again), and the
    /// next read goes to another replica.
    fn expire_epoch_reads(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now = cx.now();
        // As long as the production driver waits for the same call: a WAN round trip
        // longer than the batch silence bound must not expire every read.
        let timeout = Duration::from_micros(dsss_region_node::global::COORDINATOR_CALL_TIMEOUT_US);
        let expired: Vec<u64> = self
            .epoch_reads_sent
            .iter()
            .filter(|(_, sent_at)| now.saturating_duration_since(**sent_at) > timeout)
            .map(|(&read_id, _)| read_id)
            .collect();
        if expired.is_empty() {
            return;
        }
        let asked = self.coordinator_leader.target();
        self.coordinator_leader.handle_failure(asked);
        let Some(region) = self.region.as_mut() else {
            return;
        };
        for read_id in expired {
            self.epoch_reads_sent.remove(&read_id);
            region.handle_sealed_epoch_read(
                cx.now_us(),
                read_id,
                Err(format!(
                    "coordinator replica {asked} did not answer within {timeout:?}"
                )),
            );
        }
    }

    /// A coordinator replica answered as the leader: send there from now on. A message a
    /// region peer forwarded says nothing about the coordinator.
    fn handle_coordinator_answer(&mut self, from: NodeId) {
        if self.coordinator_leader.contains(from) {
            self.coordinator_leader.handle_success(from);
            self.coordinator_unanswered_since = None;
            self.coordinator_refusals = 0;
        }
    }

    /// A coordinator acknowledgement, the answer to a batch or sent unasked by a leader that
    /// just took over: follow the leader it names unless a leader of a higher term was heard
    /// of, as the production driver does (`LeaderTracker::handle_leader`), so that batches and
    /// reads leave a former leader that went silent without refusing them as soon as its
    /// successor speaks.
    fn handle_coordinator_ack(&mut self, from: NodeId, ack: &proto::RegionBatchAck) {
        let (leader, term) = ack.leader_of_term(from);
        if self.coordinator_leader.handle_leader(leader, term) {
            self.coordinator_unanswered_since = None;
            self.coordinator_refusals = 0;
        }
    }

    /// A message this node sent found its receiver crashed: the host refused the connection,
    /// and a production driver's call fails at once instead of waiting out its timeout. As
    /// there, the next coordinator replica (or the region's next node) is tried now, with at
    /// most as many attempts after refusals as a production call makes
    /// (`COORDINATOR_ATTEMPTS_MAX`, `REGION_DELIVERY_ATTEMPTS_MAX`), counted since the last
    /// answer; past that, the resend timers of the state machines take over.
    fn handle_refused(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        to: NodeId,
        message: GlobalMessage,
    ) {
        match message {
            GlobalMessage::Batch(_) | GlobalMessage::ReadSealedEpoch { .. }
                if self.coordinator_leader.contains(to) =>
            {
                self.coordinator_leader.handle_failure(to);
                self.coordinator_unanswered_since = None;
                if self.coordinator_refusals + 1 >= COORDINATOR_ATTEMPTS_MAX {
                    self.refusal_counts.left_to_timers += 1;
                    return;
                }
                self.coordinator_refusals += 1;
                self.refusal_counts.resent_to_coordinator += 1;
                if let GlobalMessage::ReadSealedEpoch { read_id, .. } = &message {
                    match self.epoch_reads_sent.get_mut(read_id) {
                        // Its timeout counts from the new attempt, as a production call's.
                        Some(sent_at) => *sent_at = cx.now(),
                        None => return,
                    }
                } else {
                    self.coordinator_unanswered_since = Some(cx.now());
                }
                cx.send(self.coordinator_leader.target(), message);
            }
            GlobalMessage::Epoch(_) => {
                let Some((region, leader)) = self
                    .region_leaders
                    .iter_mut()
                    .find(|(_, leader)| leader.contains(to))
                else {
                    return;
                };
                leader.handle_failure(to);
                let refusals = self.region_refusals.entry(region.clone()).or_default();
                if *refusals + 1 >= REGION_DELIVERY_ATTEMPTS_MAX {
                    self.refusal_counts.left_to_timers += 1;
                    return;
                }
                *refusals += 1;
                self.refusal_counts.resent_to_regions += 1;
                cx.send(leader.target(), message);
            }
            // Raft messages and answers are not calls: nothing waits for them.
            _ => {}
        }
    }

    /// A coordinator replica said it does not lead, naming the leader perhaps.
    fn handle_coordinator_not_leader(&mut self, from: NodeId, not_leader: &proto::NotLeader) {
        // The next message goes out on its own schedule (the next batch, the leader's resend,
        // the next read): nothing waits here, and its silence counts from when it is sent.
        self.coordinator_unanswered_since = None;
        let _ = self
            .coordinator_leader
            .handle_not_leader(from, not_leader.leader_hint());
    }
}

impl Process for NodeProcess {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let mut disk = SimDiskStore::new(cx.disk());
        let region = {
            let mut store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
            match RegionNode::open(self.region_config.clone(), &mut store) {
                Ok(node) => node,
                Err(error) => panic!(
                    "node {} could not open its region store: {error}",
                    cx.node()
                ),
            }
        };
        self.region = Some(region);
        if let Some(config) = &self.coordinator_config {
            let mut store = PrefixedStore::new(&mut disk, COORDINATOR_STORE_PREFIX);
            match CoordinatorNode::open(config.clone(), &mut store) {
                Ok(node) => self.coordinator = Some(node),
                Err(error) => panic!(
                    "node {} could not open its coordinator store: {error}",
                    cx.node()
                ),
            }
        }
        self.coordinator_unanswered_since = None;
        self.parked_log_reads.clear();
        self.close_timer = None;
        self.close_timer_at_us = 0;
        self.parked_log_reads_checked = (0, SimTime::ZERO);
        self.region_clocks = NodeClocks::new(self.region_config.max_clock_skew_us);
        self.coordinator_clocks = NodeClocks::new(
            self.coordinator_config
                .as_ref()
                .map_or(self.region_config.max_clock_skew_us, |config| {
                    config.max_clock_skew_us
                }),
        );
        // Random phases, so that nodes do not tick in lockstep.
        let tick_ns = u64::try_from(REGION_TICK_INTERVAL.as_nanos()).expect("a short interval");
        let phase = cx.rng().below(tick_ns);
        self.region_tick_timer = Some(cx.set_timer(Duration::from_nanos(phase)));
        if self.coordinator.is_some() {
            let tick_ns =
                u64::try_from(self.coordinator_tick_interval.as_nanos()).unwrap_or(u64::MAX);
            let phase = cx.rng().below(tick_ns.max(1));
            self.coordinator_tick_timer = Some(cx.set_timer(Duration::from_nanos(phase)));
        }
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        if self.region.is_none() {
            return;
        }
        let now_us = cx.now_us();
        match message {
            GlobalMessage::RegionClockProbe(probe) => {
                self.region_clocks.clocks.observe(from, probe, now_us);
            }
            GlobalMessage::CoordinatorClockProbe(probe) => {
                self.coordinator_clocks.clocks.observe(from, probe, now_us);
            }
            GlobalMessage::RegionRaft(bytes, probe) => {
                self.region_clocks.clocks.observe(from, probe, now_us);
                let region = self.region.as_mut().expect("started");
                if region.handle_raft_message(&bytes).is_err() {
                    self.observer.borrow_mut().raft_messages_refused += 1;
                }
                self.flush(cx);
            }
            GlobalMessage::CoordinatorRaft(bytes, probe) => {
                self.coordinator_clocks.clocks.observe(from, probe, now_us);
                if let Some(coordinator) = self.coordinator.as_mut() {
                    if coordinator.handle_raft_message(&bytes).is_err() {
                        self.observer.borrow_mut().raft_messages_refused += 1;
                    }
                    self.flush(cx);
                }
            }
            GlobalMessage::Propose(request) => {
                self.judge_region_clock(cx);
                if self.routes.clients.contains(&from) {
                    let session_id = request.client_id.get();
                    if !self.client_routes.contains_key(&session_id)
                        && self.client_routes.len() >= CLIENT_ROUTES_MAX
                    {
                        self.client_routes.pop_first();
                    }
                    self.client_routes.insert(session_id, from);
                }
                if request.scope == Scope::Global {
                    self.observer.borrow_mut().stages.call_arrived(
                        cx.now(),
                        self.region_config.region.as_str(),
                        (request.client_id.get(), request.request_sequence.get()),
                    );
                }
                let region = self.region.as_mut().expect("started");
                region.handle_propose(now_us, request);
                self.schedule_flush(cx);
            }
            GlobalMessage::Batch(batch) => {
                let region_name = batch.region.clone();
                let Some(coordinator) = self.coordinator.as_mut() else {
                    return;
                };
                self.observer
                    .borrow_mut()
                    .stages
                    .batch_arrived(cx.now(), &batch);
                match coordinator.answer_region_batch(now_us, batch) {
                    Ok(ack) => {
                        // The sender leads its region (only leaders ship batches).
                        if let Some(leader) = self.region_leaders.get_mut(&region_name) {
                            leader.prefer(from);
                        }
                        cx.send(from, GlobalMessage::BatchAck(ack));
                    }
                    Err(error) => {
                        self.observer
                            .borrow_mut()
                            .note_refusal(format!("coordinator {}: {error}", cx.node()));
                    }
                }
                self.flush(cx);
            }
            GlobalMessage::EpochAck(ack) => {
                let Some(coordinator) = self.coordinator.as_mut() else {
                    return;
                };
                let leader = self.region_leaders.get_mut(&ack.region);
                if let Some(not_leader) = &ack.not_leader {
                    // The part is delivered again at the next resend, to the node the tracker
                    // names then; the replica learns that the resend is due soon.
                    if let Some(leader) = leader {
                        let _ = leader.handle_not_leader(from, not_leader.leader_hint());
                    }
                    if let Err(error) = coordinator.handle_epoch_ack(now_us, ack) {
                        self.observer
                            .borrow_mut()
                            .note_refusal(format!("coordinator {}: {error}", cx.node()));
                    }
                    return;
                }
                if let Some(leader) = leader {
                    leader.handle_success(from);
                }
                self.region_refusals.remove(&ack.region);
                if let Err(error) = coordinator.handle_epoch_ack(now_us, ack) {
                    self.observer
                        .borrow_mut()
                        .note_refusal(format!("coordinator {}: {error}", cx.node()));
                }
                self.flush(cx);
            }
            GlobalMessage::BatchAck(ack) => {
                match &ack.not_leader {
                    Some(not_leader) => self.handle_coordinator_not_leader(from, not_leader),
                    None => self.handle_coordinator_ack(from, &ack),
                }
                // A `not_leader` answer acknowledges nothing, but tells the region node that the
                // replica did not take what it was sent, so that it resends soon.
                let region = self.region.as_mut().expect("started");
                if let Err(error) = region.handle_batch_ack(now_us, ack) {
                    self.observer
                        .borrow_mut()
                        .note_refusal(format!("region node {}: {error}", cx.node()));
                }
                self.flush(cx);
            }
            GlobalMessage::Epoch(epoch) => {
                // Followers deliver epochs too (docs/global-protocol.md section 7), so an
                // epoch does not move the region's guess of the leader, as in production,
                // where only answers to the region's own calls do. From the replica it sends
                // to, an epoch shows that replica alive, as an answer would.
                if from == self.coordinator_leader.target() {
                    self.coordinator_unanswered_since = None;
                }
                self.observer.borrow_mut().stages.epoch_arrived(
                    cx.now(),
                    self.region_config.region.as_str(),
                    &epoch,
                );
                let region = self.region.as_mut().expect("started");
                match region.answer_sealed_epoch(now_us, epoch) {
                    Ok(ack) => cx.send(from, GlobalMessage::EpochAck(ack)),
                    Err(error) => {
                        self.observer
                            .borrow_mut()
                            .note_refusal(format!("region node {}: {error}", cx.node()));
                    }
                }
                self.flush(cx);
            }
            GlobalMessage::ReadLog(request) => {
                // A new read of a stream replaces the one held for it (a renewal of its
                // credit, or a reader that asks again after a lost answer).
                self.parked_log_reads.retain(|parked| {
                    parked.reader != from || parked.request.stream_id != request.stream_id
                });
                self.take_log_read(cx, from, request);
            }
            GlobalMessage::ReadLogRange(request) => {
                let region = self.region.as_ref().expect("started");
                let node = cx.node();
                let mut disk = SimDiskStore::new(cx.disk());
                let store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
                let answer = region
                    .answer_log_range(&store, &request)
                    .unwrap_or_else(|error| {
                        panic!("node {node} cannot read back its own region log: {error}")
                    });
                cx.send(from, GlobalMessage::LogRange(answer));
            }
            GlobalMessage::LogRange(reply) => {
                let region = self.region.as_mut().expect("started");
                let node = cx.node();
                let mut disk = SimDiskStore::new(cx.disk());
                let mut store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
                if let Err(error) = region.handle_log_range(reply.fetch_id, Ok(reply), &mut store) {
                    // The simulated disk only fails when full, and runs stay far below its size.
                    panic!("node {node}: writing fetched log entries failed: {error}");
                }
                self.flush(cx);
            }
            GlobalMessage::FetchCheckpoint {
                request_id,
                object_id,
                global,
            } => {
                let region = self.region.as_mut().expect("started");
                let node = cx.node();
                let mut disk = SimDiskStore::new(cx.disk());
                let store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
                let fetch = match region.fetch_checkpoint(&store, now_us, &object_id, global) {
                    Ok(fetch) => fetch,
                    // The simulated disk holds what was written; a read fails only on a bug.
                    Err(error) => panic!("node {node}: reading a checkpoint failed: {error}"),
                };
                cx.send(from, GlobalMessage::CheckpointFetched { request_id, fetch });
                self.flush(cx);
            }
            GlobalMessage::Sync { sync_id } => self.handle_instance_sync(cx, from, sync_id),
            GlobalMessage::UploadCheckpoint { upload_id, upload } => {
                if self.instance_uploads.len() >= INSTANCE_UPLOADS_TRACKED_MAX {
                    cx.send(
                        from,
                        GlobalMessage::CheckpointUploaded(CheckpointReply {
                            upload_id,
                            result: Err(dsss_region_node::UploadError::Overloaded),
                        }),
                    );
                    return;
                }
                let local_id = self.next_upload_id;
                self.next_upload_id += 1;
                self.instance_uploads.insert(local_id, (from, upload_id));
                let region = self.region.as_mut().expect("started");
                region.handle_upload_checkpoint(now_us, local_id, upload);
                self.schedule_flush(cx);
            }
            GlobalMessage::OpenSession {
                open_id,
                session_id,
            } => {
                self.judge_region_clock(cx);
                let local_id = self.next_open_id;
                self.next_open_id += 1;
                self.session_opens.insert(local_id, (from, open_id));
                let region = self.region.as_mut().expect("started");
                region.handle_open_session(now_us, local_id, session_id);
                self.schedule_flush(cx);
            }
            GlobalMessage::CloseSession {
                close_id,
                session_id,
            } => {
                let local_id = self.next_open_id;
                self.next_open_id += 1;
                self.session_closes.insert(local_id, (from, close_id));
                let region = self.region.as_mut().expect("started");
                region.handle_close_session(now_us, local_id, session_id);
                self.schedule_flush(cx);
            }
            GlobalMessage::ReadSealedEpoch { read_id, request } => {
                let Some(coordinator) = self.coordinator.as_mut() else {
                    return;
                };
                let local_id = self.next_epoch_read_id;
                self.next_epoch_read_id += 1;
                if self.epoch_reads_received.len() >= SEALED_EPOCH_READS_TRACKED_MAX {
                    self.epoch_reads_received.pop_first();
                }
                self.epoch_reads_received.insert(local_id, (from, read_id));
                if let Err(error) = coordinator.handle_read_sealed_epoch(now_us, local_id, request)
                {
                    self.epoch_reads_received.remove(&local_id);
                    self.observer
                        .borrow_mut()
                        .note_refusal(format!("coordinator {}: {error}", cx.node()));
                }
                self.flush(cx);
            }
            GlobalMessage::ReadEpochs { read_id, request } => {
                let region = self.region.as_mut().expect("started");
                let mut disk = SimDiskStore::new(cx.disk());
                let store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
                let reply = region.answer_epochs_read(&store, now_us, request);
                cx.send(from, GlobalMessage::EpochsReply { read_id, reply });
            }
            GlobalMessage::ReadCheckpoint { read_id, request } => {
                let region = self.region.as_mut().expect("started");
                let mut disk = SimDiskStore::new(cx.disk());
                let store = PrefixedStore::new(&mut disk, REGION_STORE_PREFIX);
                let reply = region.answer_checkpoint_read(&store, now_us, request);
                cx.send(from, GlobalMessage::CheckpointReadReply { read_id, reply });
            }
            GlobalMessage::CheckpointReadReply { read_id, reply } => {
                let region = self.region.as_mut().expect("started");
                if let Err(error) = region.handle_checkpoint_read_reply(now_us, read_id, Ok(reply))
                {
                    self.observer
                        .borrow_mut()
                        .note_refusal(format!("region node {}: {error}", cx.node()));
                }
                self.flush(cx);
            }
            GlobalMessage::EpochsReply { read_id, reply } => {
                let region = self.region.as_mut().expect("started");
                if let Err(error) = region.handle_epochs_read_reply(now_us, read_id, Ok(reply)) {
                    self.observer
                        .borrow_mut()
                        .note_refusal(format!("region node {}: {error}", cx.node()));
                }
                self.flush(cx);
            }
            GlobalMessage::SealedEpochReply { read_id, reply } => {
                match &reply.not_leader {
                    Some(not_leader) => self.handle_coordinator_not_leader(from, not_leader),
                    None => self.handle_coordinator_answer(from),
                }
                self.epoch_reads_sent.remove(&read_id);
                let region = self.region.as_mut().expect("started");
                region.handle_sealed_epoch_read(now_us, read_id, Ok(reply));
                self.flush(cx);
            }
            GlobalMessage::Reply(_)
            | GlobalMessage::SessionReply(_)
            | GlobalMessage::SessionCloseReply(_)
            | GlobalMessage::LogEntries(_)
            | GlobalMessage::CheckpointFetched { .. }
            | GlobalMessage::CheckpointUploaded(_)
            | GlobalMessage::SyncReply(_) => {
                self.observer.borrow_mut().violation(format!(
                    "node {} got a message meant for a client from {from}",
                    cx.node()
                ));
            }
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        let now_us = cx.now_us();
        if Some(timer) == self.flush_timer {
            self.flush_timer = None;
        } else if Some(timer) == self.close_timer {
            self.close_timer = None;
            // As the production loop: the clock is judged before a close stamps its time.
            self.judge_region_clock(cx);
            if let Some(region) = self.region.as_mut() {
                region.handle_close_due(now_us);
            }
        } else if Some(timer) == self.region_tick_timer {
            self.judge_region_clock(cx);
            if let Some(region) = self.region.as_mut() {
                let voters = region.voters();
                region.handle_tick(now_us);
                // As the production driver does: a probe to every voter it sent nothing for
                // a while.
                for (peer, probe) in self.region_clocks.due_probes(region.id(), &voters, now_us) {
                    cx.send(peer, GlobalMessage::RegionClockProbe(probe));
                }
            }
            self.expire_epoch_reads(cx);
            self.region_tick_timer = Some(cx.set_timer(REGION_TICK_INTERVAL));
        } else if Some(timer) == self.coordinator_tick_timer {
            if let Some(coordinator) = self.coordinator.as_mut() {
                let voters = coordinator.voters();
                let verdict =
                    self.coordinator_clocks
                        .verdict(coordinator.id(), &voters, now_us, cx.now());
                let was_fenced = coordinator.clock_fenced();
                let samples = self.coordinator_clocks.clocks.fresh_samples(now_us);
                coordinator.handle_clock_verdict(&verdict, samples);
                if !was_fenced && coordinator.clock_fenced() {
                    self.observer.borrow_mut().clock_fences += 1;
                }
                coordinator.handle_tick(now_us);
                for (peer, probe) in
                    self.coordinator_clocks
                        .due_probes(coordinator.id(), &voters, now_us)
                {
                    cx.send(peer, GlobalMessage::CoordinatorClockProbe(probe));
                }
            }
            self.coordinator_tick_timer = Some(cx.set_timer(self.coordinator_tick_interval));
        } else {
            return;
        }
        self.flush(cx);
    }
}

/// How a client behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClientSettings {
    /// The shortest pause between an acknowledgement and the next call.
    pub think_time_min: Duration,
    /// The longest pause.
    pub think_time_max: Duration,
    /// How long the client waits for an answer before retrying the same call elsewhere.
    pub request_timeout: Duration,
    /// The client starts no new call after this time (it finishes the one in flight).
    pub calls_until: SimTime,
    /// A quiet spell `[from, until)`: a call that would start in it waits until its end, so
    /// the cluster stays idle in between.
    pub quiet: Option<(SimTime, SimTime)>,
    /// The share of calls on the global object; the others go to the region's own object.
    pub global_share: f64,
    /// The probability that, after an acknowledgement, the client sends the same call again
    /// (as if the reply had been lost), to check that it is applied once.
    pub duplicate_probability: f64,
}

/// The call in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    sequence: u64,
    scope: Scope,
    attempts: u32,
    target: NodeId,
}

/// A client of one region: one call in flight, retried with the same sequence after a
/// timeout or an error (at the hinted leader or another member); every acknowledgement goes
/// to the observer.
pub struct ClientProcess {
    region: String,
    members: Vec<NodeId>,
    settings: ClientSettings,
    next_sequence: u64,
    /// The client's session in the region (its id is the client's node id).
    session: SessionOpening,
    in_flight: Option<InFlight>,
    /// Where calls go; its first guess is drawn when the client starts.
    leader: LeaderTracker,
    timer: Option<TimerId>,
    observer: Rc<RefCell<GlobalObserver>>,
}

impl ClientProcess {
    /// A client of `region`, whose members are `members`.
    pub fn new(
        region: String,
        members: Vec<NodeId>,
        settings: ClientSettings,
        observer: Rc<RefCell<GlobalObserver>>,
    ) -> Self {
        ClientProcess {
            leader: LeaderTracker::new(members.clone(), 0),
            region,
            members,
            settings,
            next_sequence: 1,
            session: SessionOpening::new(),
            in_flight: None,
            timer: None,
            observer,
        }
    }

    /// True while a call waits for its acknowledgement.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Asks a member to open the client's session; the timer tries again if no answer comes.
    fn open_session(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let (target, open_id) = self.session.next_open(&mut self.leader);
        cx.send(
            target,
            GlobalMessage::OpenSession {
                open_id,
                session_id: cx.node(),
            },
        );
        self.timer = Some(cx.set_timer(self.settings.request_timeout));
    }

    fn handle_session_reply(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        reply: SessionReply,
    ) {
        let outcome = self.session.handle_reply(&mut self.leader, from, &reply);
        if outcome == SessionOpened::Stale {
            return;
        }
        if let Some(timer) = self.timer.take() {
            cx.cancel_timer(timer);
        }
        match outcome {
            SessionOpened::Open => self.start_next_call(cx),
            SessionOpened::Retry => self.timer = Some(cx.set_timer(CLIENT_RETRY_BACKOFF)),
            SessionOpened::Stale => {}
        }
    }

    fn request(&self, cx: &Context<'_, GlobalMessage>, in_flight: &InFlight) -> ProposeRequest {
        let object = match in_flight.scope {
            Scope::Global => "sim/global-counter".to_string(),
            Scope::Regional => format!("sim/{}/counter", self.region),
        };
        ProposeRequest {
            client_id: ClientId(cx.node()),
            request_sequence: RequestSequence(in_flight.sequence),
            object_id: ObjectId::new(object).expect("a valid object id"),
            method_id: MethodId(1),
            arguments: Arguments::new(vec![(in_flight.sequence % 251) as u8; CALL_ARGUMENT_BYTES])
                .expect("small arguments"),
            scope: in_flight.scope,
        }
    }

    fn random_member(&self, cx: &mut Context<'_, GlobalMessage>) -> NodeId {
        *cx.rng()
            .choose(&self.members)
            .expect("a region has members")
    }

    fn send_attempt(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        mut in_flight: InFlight,
        target: NodeId,
    ) {
        in_flight.attempts += 1;
        in_flight.target = target;
        if in_flight.attempts > 1 {
            self.observer.borrow_mut().retries += 1;
        }
        let request = self.request(cx, &in_flight);
        cx.send(target, GlobalMessage::Propose(request));
        self.in_flight = Some(in_flight);
        self.timer = Some(cx.set_timer(self.settings.request_timeout));
    }

    fn start_next_call(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if cx.now() >= self.settings.calls_until {
            return;
        }
        if let Some((from, until)) = self.settings.quiet
            && cx.now() >= from
            && cx.now() < until
        {
            self.timer = Some(cx.set_timer(until.saturating_duration_since(cx.now())));
            return;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let scope = if cx.rng().chance(self.settings.global_share) {
            Scope::Global
        } else {
            Scope::Regional
        };
        let target = self.leader.target();
        self.observer.borrow_mut().invoked(
            ClientId(cx.node()),
            RequestSequence(sequence),
            scope,
            &self.region,
            cx.now(),
        );
        let in_flight = InFlight {
            sequence,
            scope,
            attempts: 0,
            target,
        };
        self.send_attempt(cx, in_flight, target);
    }

    fn think(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let low = u64::try_from(self.settings.think_time_min.as_nanos()).unwrap_or(u64::MAX);
        let high = u64::try_from(self.settings.think_time_max.as_nanos())
            .unwrap_or(u64::MAX)
            .max(low);
        let pause = Duration::from_nanos(cx.rng().range_inclusive(low, high));
        self.timer = Some(cx.set_timer(pause));
    }
}

impl Process for ClientProcess {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.leader = crate::workloads::common::spread_tracker(&self.members, cx.rng());
        self.think(cx);
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        let reply = match message {
            GlobalMessage::Reply(reply) => reply,
            GlobalMessage::SessionReply(reply) => {
                return self.handle_session_reply(cx, from, reply);
            }
            _ => return,
        };
        let Some(in_flight) = self.in_flight else {
            return;
        };
        if reply.key() != (ClientId(cx.node()), RequestSequence(in_flight.sequence)) {
            // The answer to an earlier attempt or a deliberate duplicate.
            if let Reply::Proposed {
                client_id,
                request_sequence,
                position,
            } = reply
            {
                self.observer.borrow_mut().acknowledged(
                    client_id,
                    request_sequence,
                    &self.region,
                    position,
                    cx.now(),
                );
            }
            return;
        }
        match reply {
            Reply::Proposed {
                client_id,
                request_sequence,
                position,
            } => {
                self.leader.handle_success(from);
                self.observer.borrow_mut().acknowledged(
                    client_id,
                    request_sequence,
                    &self.region,
                    position,
                    cx.now(),
                );
                self.in_flight = None;
                if let Some(timer) = self.timer.take() {
                    cx.cancel_timer(timer);
                }
                if cx.rng().chance(self.settings.duplicate_probability) {
                    // Send the same call once more, as if the reply had been lost: it must
                    // come back with the same position and append nothing.
                    self.observer.borrow_mut().deliberate_duplicates += 1;
                    let request = self.request(cx, &in_flight);
                    let target = self.random_member(cx);
                    cx.send(target, GlobalMessage::Propose(request));
                }
                self.think(cx);
            }
            Reply::Refused {
                request_sequence,
                error,
                ..
            } => {
                if let ProposeError::TooOld { .. } | ProposeError::UnknownSession { .. } = error {
                    self.observer.borrow_mut().violation(format!(
                        "client {}: sequence {request_sequence}, the call in flight, refused: \
                         {error}",
                        cx.node()
                    ));
                }
                crate::workloads::common::follow_refusal(&mut self.leader, from, &error);
                if let Some(timer) = self.timer.take() {
                    cx.cancel_timer(timer);
                }
                self.timer = Some(cx.set_timer(CLIENT_RETRY_BACKOFF));
            }
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        if Some(timer) != self.timer {
            return;
        }
        self.timer = None;
        match self.in_flight {
            // A timeout or the pause after a refusal (the tracker moved already, and the
            // failure below changes nothing more).
            Some(in_flight) => {
                self.leader.handle_failure(in_flight.target);
                let target = self.leader.target();
                self.send_attempt(cx, in_flight, target);
            }
            None if !self.session.is_open() => self.open_session(cx),
            None => self.start_next_call(cx),
        }
    }
}

/// A client process that another workload brings (an application instance holding a replica
/// of a shared object): it talks to the nodes with the same messages as [`ClientProcess`],
/// and says when it waits for something.
pub trait Application: Process<Message = GlobalMessage> {
    /// True while a call waits for its result, as for [`ClientProcess::is_busy`].
    fn is_busy(&self) -> bool;
}

/// A process of the global workload.
// A client is a few hundred bytes (its leader tracker and counters) and a run holds a few
// dozen processes for its whole length: the size of the enum costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub enum GlobalProcess {
    /// A region node, perhaps with a coordinator replica.
    Node(Box<NodeProcess>),
    /// A client.
    Client(ClientProcess),
    /// An application instance of another workload.
    Application(Box<dyn Application>),
}

impl GlobalProcess {
    /// The node, if this is one.
    pub fn node(&self) -> Option<&NodeProcess> {
        match self {
            GlobalProcess::Node(node) => Some(node),
            GlobalProcess::Client(_) | GlobalProcess::Application(_) => None,
        }
    }

    /// The client, if this is one.
    pub fn client(&self) -> Option<&ClientProcess> {
        match self {
            GlobalProcess::Client(client) => Some(client),
            GlobalProcess::Node(_) | GlobalProcess::Application(_) => None,
        }
    }

    /// True for a client or application instance that waits for a call; false for a node.
    pub fn is_busy(&self) -> bool {
        match self {
            GlobalProcess::Node(_) => false,
            GlobalProcess::Client(client) => client.is_busy(),
            GlobalProcess::Application(application) => application.is_busy(),
        }
    }
}

impl Process for GlobalProcess {
    type Message = GlobalMessage;

    fn work_kind(message: &GlobalMessage) -> WorkKind {
        message.work_kind()
    }

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        match self {
            GlobalProcess::Node(node) => node.handle_start(cx),
            GlobalProcess::Client(client) => client.handle_start(cx),
            GlobalProcess::Application(application) => application.handle_start(cx),
        }
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        match self {
            GlobalProcess::Node(node) => {
                node.handle_message(cx, from, message);
                node.flush_at_run_end(cx);
            }
            GlobalProcess::Client(client) => client.handle_message(cx, from, message),
            GlobalProcess::Application(application) => {
                application.handle_message(cx, from, message);
            }
        }
    }

    fn notices_refusals(&self) -> bool {
        matches!(self, GlobalProcess::Node(_))
    }

    fn handle_refused(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        to: NodeId,
        message: GlobalMessage,
    ) {
        if let GlobalProcess::Node(node) = self {
            node.handle_refused(cx, to, message);
            node.flush_at_run_end(cx);
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        match self {
            GlobalProcess::Node(node) => {
                node.handle_timer(cx, timer);
                node.flush_at_run_end(cx);
            }
            GlobalProcess::Client(client) => client.handle_timer(cx, timer),
            GlobalProcess::Application(application) => application.handle_timer(cx, timer),
        }
    }

    fn handle_run_end(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if let GlobalProcess::Node(node) = self {
            node.flush_at_run_end(cx);
        }
    }
}
