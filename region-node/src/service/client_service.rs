//! `RegionClient`: the service application instances call on any node of their region.
//!
//! - `Propose` is served by every member. The node proposes the call into raft, which forwards
//!   it to the leader when this node follows, and answers once the record is committed and
//!   applied on this node, with its position; or NotLeader (leader id 0, nothing proposed)
//!   while the node knows no leader; or an error status that says what to do. A proposal that cannot complete within the
//!   caller's deadline fails with `DEADLINE_EXCEEDED`; its retry with the same
//!   (client id, sequence) is applied once. Each client id may have at most
//!   [`CLIENT_PROPOSALS_IN_FLIGHT_MAX`] proposals in flight (`RESOURCE_EXHAUSTED` beyond).
//! - `ProposeBatch` carries up to [`PROPOSE_BATCH_CALLS_MAX`] calls, possibly of different
//!   sessions, as a client sends the calls its callers make at once on one connection: each is
//!   checked and handed to the node loop as `Propose` does it, all before any is waited for,
//!   and each gets its own answer (a refusal as the code and message `Propose` would have
//!   failed with), so one gRPC call carries what took one each.
//! - `Subscribe(from)` streams the region log in order from any member: first what the node
//!   has applied (read from the node's log, which is the RocksDB region log as recovered and
//!   kept in step with it), then every new record as the node applies it. Positions never
//!   repeat and never skip (beyond filtered-out records, which `through_position` covers),
//!   so a caller resumes from any position after a disconnect.
//!   A `from` below the node's first retained position fails with `OUT_OF_RANGE` naming it,
//!   and the status carries it under [`FIRST_RETAINED_POSITION_HEADER`]. Each piece holds at
//!   most [`SUBSCRIBE_REPLY_BYTES_MAX`] bytes of entries, or one larger entry alone. A node
//!   serves at most [`SUBSCRIPTIONS_PER_CLIENT_MAX`] subscriptions of one client,
//!   [`SUBSCRIPTIONS_PER_CONNECTION_MAX`] of one connection and [`SUBSCRIBE_STREAMS_MAX`] in
//!   all (`RESOURCE_EXHAUSTED` naming the bound beyond), and holds at most
//!   [`SUBSCRIBE_BUFFERED_BYTES_MAX`] bytes of pieces that wait for their subscribers.
//! - `FetchCheckpoint` answers from the checkpoints this node applied; `UploadCheckpoint`
//!   proposes the checkpoint through raft from any member and answers once it is applied here
//!   (at most [`CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX`] bytes of uploads wait on one node).
//! - `Sync` asks the node for a barrier and waits for it within the caller's deadline, as
//!   `Propose` does.
//! - `Status` describes the node, its checkpoints and its divergence alarms.
//!
//! A malformed request gets `INVALID_ARGUMENT` naming the field; the node keeps serving.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsss_wire::access::{ClientRight, check_any_grant, check_grant, scoped_session_id_of};
use dsss_wire::proto::region_client_server::RegionClient;
use dsss_wire::proto::{
    self, close_session_reply, open_session_reply, propose_batch_outcome, propose_reply,
};
use dsss_wire::{
    Arguments, ClientId, FIRST_RETAINED_POSITION_HEADER, GRPC_MESSAGE_BYTES_MAX, MethodId,
    OBJECT_IDS_PER_REQUEST_MAX, ObjectId, PROPOSE_BATCH_CALLS_MAX, PROTOCOL_VERSION,
    RequestSequence, Scope,
};
use prost::Message;

use crate::checkpoint::{
    CHECKPOINT_STATE_BYTES_MAX, CheckpointOutcome, CheckpointUpload, STATE_HASH_BYTES,
};
use crate::node::{CloseSessionError, OpenSessionError, SyncError, UploadError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::driver::{
    Barrier, LOG_READ_BYTES_MAX, LOG_READ_RECORDS_MAX, NodeEvent, NodeStatus, ProposeOutcome,
};
use crate::record::STORED_ENTRY_BYTES_MAX;
use crate::service::{NodeLink, request_deadline, role_to_wire};
use crate::{LogEntry, LogEvent, ProposeError, ProposeRequest};

/// The most proposals one client id may have in flight on one node. It stays below the dedup
/// window of a client ([`crate::DEDUP_WINDOW_MAX`]), so that the retry of any call in flight is
/// still judged exactly once.
pub const CLIENT_PROPOSALS_IN_FLIGHT_MAX: usize = 16;

/// The most client ids with proposals in flight on one node.
pub const CLIENTS_IN_FLIGHT_MAX: usize = 65_536;

/// The deadline of a proposal whose caller gave none, in microseconds.
pub const PROPOSE_DEADLINE_US_DEFAULT: u64 = 10_000_000;

/// The longest deadline a proposal may have, in microseconds.
pub const PROPOSE_DEADLINE_US_MAX: u64 = 60_000_000;

/// The part of a caller's deadline, in percent, that the node keeps for the answer to travel
/// back: the node gives up that much before the caller does, so that the caller sees
/// `DEADLINE_EXCEEDED` from the node (with a message saying what to do) rather than its own
/// timer running out.
pub const PROPOSE_DEADLINE_MARGIN_PERCENT: u32 = 10;

/// The least time, in microseconds, the node keeps for the answer to travel back.
pub const PROPOSE_DEADLINE_MARGIN_US_MIN: u64 = 5_000;

/// The most `Subscribe` streams one node serves at once, from all connections and clients. A
/// stream costs a task and a place in the node's log events; the bytes of the pieces it
/// buffers are bounded apart, node-wide, by [`SUBSCRIBE_BUFFERED_BYTES_MAX`]. It is a memory
/// bound, far above what [`SUBSCRIPTIONS_PER_CLIENT_MAX`] times the clients of a region need
/// (a client follows the log with one stream).
pub const SUBSCRIBE_STREAMS_MAX: usize = 16_384;

/// The most `Subscribe` streams one connection may hold open on one node, so that one
/// connection cannot take every stream of the node. Well above what the clients of one
/// process need: each `dsss::Client` connects on its own and follows the log with one stream.
pub const SUBSCRIPTIONS_PER_CONNECTION_MAX: usize = 256;

/// The most `Subscribe` streams one client id may hold open on one node, over any number of
/// connections. A client follows the log with one stream; the rest leaves room for streams it
/// replaced and whose end has not reached the node yet.
pub const SUBSCRIPTIONS_PER_CLIENT_MAX: usize = 8;

/// The most bytes of entries in one piece of a log stream. An entry larger than that (a record
/// is at most [`STORED_ENTRY_BYTES_MAX`], a little over 1 MiB) goes alone in its piece, so no
/// piece comes near [`GRPC_MESSAGE_BYTES_MAX`].
pub const SUBSCRIBE_REPLY_BYTES_MAX: usize = 1024 * 1024;

/// The most bytes one piece of a log stream may take: the budget, or one entry alone, with
/// room for the framing.
const SUBSCRIBE_PIECE_BYTES_MAX: usize = SUBSCRIBE_REPLY_BYTES_MAX + STORED_ENTRY_BYTES_MAX + 1024;

const _: () = assert!(SUBSCRIBE_PIECE_BYTES_MAX * 4 <= GRPC_MESSAGE_BYTES_MAX);

/// The most pieces buffered for one subscriber; a slower subscriber falls behind the live
/// events and catches up by reading the log.
pub const SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX: usize = 8;

/// The most bytes of pieces one node holds for all its subscribers before gRPC takes them. A
/// subscription that finds no room waits for room (its subscriber meanwhile falls behind the
/// live events and later catches up from the log); nothing is dropped. The room is the node's,
/// not each subscriber's: some 30 subscribers that stop reading, each holding
/// [`SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX`] pieces of about 1 MiB, fill it, and then every
/// stream of the node waits, prompt readers included, until they read or go (an SDK client
/// moves to another member after its stream stall timeout). Not counted: the one piece per
/// stream gRPC has taken but not sent yet, and the log read of a subscription waiting for room.
/// `Status` reports the bytes held as `subscribe_buffered_bytes`.
pub const SUBSCRIBE_BUFFERED_BYTES_MAX: usize = 256 * 1024 * 1024;

const _: () = assert!(SUBSCRIBE_PIECE_BYTES_MAX * 64 <= SUBSCRIBE_BUFFERED_BYTES_MAX);

/// The most bytes of checkpoint state one node holds in uploads waiting for their outcome;
/// beyond, an upload is refused with `RESOURCE_EXHAUSTED`.
pub const CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX: usize = 64 * 1024 * 1024;

/// The most diverged objects one `Status` reply lists.
pub const DIVERGED_OBJECTS_LISTED_MAX: usize = 256;

/// The `RegionClient` service of one node.
#[derive(Clone, Debug)]
pub struct RegionClientService {
    link: NodeLink,
    in_flight: Arc<Mutex<HashMap<u64, usize>>>,
    streams: Arc<Mutex<StreamCounts>>,
    buffered_bytes: Arc<Semaphore>,
    upload_bytes: Arc<Mutex<usize>>,
}

/// The open subscriptions of one node: in all, per connection and per client.
#[derive(Debug, Default)]
struct StreamCounts {
    total: usize,
    by_connection: HashMap<SocketAddr, usize>,
    by_client: HashMap<u64, usize>,
}

/// A proposal handed to the node loop, with the in-flight slot it holds until answered.
struct PendingProposal {
    _slot: InFlightSlot,
    receiver: oneshot::Receiver<ProposeOutcome>,
}

impl RegionClientService {
    /// The service over `link`.
    pub fn new(link: NodeLink) -> Self {
        RegionClientService {
            link,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            streams: Arc::new(Mutex::new(StreamCounts::default())),
            buffered_bytes: Arc::new(Semaphore::new(SUBSCRIBE_BUFFERED_BYTES_MAX)),
            upload_bytes: Arc::new(Mutex::new(0)),
        }
    }

    /// What the `Status` method answers, for callers in the same process (the metrics
    /// endpoint).
    pub async fn node_status(&self) -> Result<proto::StatusReply, Status> {
        let status = self.link.status().await?;
        let streams = StreamLoad {
            subscriptions: lock(&self.streams).total,
            buffered_bytes: SUBSCRIBE_BUFFERED_BYTES_MAX
                .saturating_sub(self.buffered_bytes.available_permits()),
        };
        Ok(status_reply(&status, streams))
    }

    /// Takes room for `size_bytes` of uploaded state, or says why not.
    fn take_upload_bytes(&self, size_bytes: usize) -> Result<UploadBytes, Status> {
        let mut upload_bytes = lock(&self.upload_bytes);
        if *upload_bytes + size_bytes > CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX {
            return Err(Status::resource_exhausted(format!(
                "node {} holds {} bytes of checkpoint uploads waiting for their outcome; {} \
                 more would pass CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX = \
                 {CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX}; retry later",
                self.link.node_id(),
                *upload_bytes,
                size_bytes
            )));
        }
        *upload_bytes += size_bytes;
        Ok(UploadBytes {
            upload_bytes: self.upload_bytes.clone(),
            size_bytes,
        })
    }

    /// The time the node may spend on a request with `metadata`: the caller's deadline (or
    /// the default) less the margin kept for the answer to travel back.
    fn budget(metadata: &tonic::metadata::MetadataMap) -> (Duration, Duration) {
        let deadline = request_deadline(
            metadata,
            Duration::from_micros(PROPOSE_DEADLINE_US_DEFAULT),
            Duration::from_micros(PROPOSE_DEADLINE_US_MAX),
        );
        let margin = (deadline * PROPOSE_DEADLINE_MARGIN_PERCENT / 100)
            .max(Duration::from_micros(PROPOSE_DEADLINE_MARGIN_US_MIN));
        (deadline, deadline.saturating_sub(margin))
    }

    /// Hands the node loop the event `make` builds around a reply channel, and waits for the
    /// answer within the call's budget (from its metadata). `what` names the request in the
    /// error of a missed deadline; a session open or close is safe to retry.
    async fn ask_node<T>(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        what: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> NodeEvent,
    ) -> Result<T, Status> {
        let (deadline, budget) = Self::budget(metadata);
        let node_id = self.link.node_id();
        let (sender, receiver) = oneshot::channel();
        self.link.send(make(sender))?;
        match tokio::time::timeout(budget, receiver).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(_)) => Err(super::node_stopped(node_id)),
            Err(_) => Err(Status::deadline_exceeded(format!(
                "node {node_id}: the {what} was not applied within its deadline of {} ms; \
                 retrying it is safe",
                deadline.as_millis()
            ))),
        }
    }

    /// Checks one call of `request` (its caller's grant on the object, its fields, its
    /// session's in-flight slots) and hands it to the node loop, or says why not.
    fn hand_over_proposal<T>(
        &self,
        request: &Request<T>,
        mut call: proto::ProposeRequest,
    ) -> Result<PendingProposal, Status> {
        check_grant(request, ClientRight::Call, Some(&call.object_id))?;
        if call.client_id != 0 {
            call.client_id = scoped_session_id_of(request, call.client_id);
        }
        let proposal = propose_request_from_wire(call)?;
        let slot = self.take_slot(proposal.client_id.get())?;
        let (sender, receiver) = oneshot::channel();
        self.link.send(NodeEvent::Propose {
            request: proposal,
            reply: sender,
        })?;
        Ok(PendingProposal {
            _slot: slot,
            receiver,
        })
    }

    /// Waits until `until` for the outcome of a proposal handed to the node, and answers it
    /// as `Propose` does; `deadline` is the caller's, named in the error when it passes.
    async fn await_proposal(
        &self,
        pending: PendingProposal,
        until: tokio::time::Instant,
        deadline: Duration,
    ) -> Result<proto::ProposeReply, Status> {
        let outcome = match tokio::time::timeout_at(until, pending.receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return Err(super::node_stopped(self.link.node_id())),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "node {}: the proposal was not committed within its deadline of {} ms; \
                     retry with the same request_sequence, which is applied at most once",
                    self.link.node_id(),
                    deadline.as_millis()
                )));
            }
        };
        let outcome = match outcome {
            ProposeOutcome::Committed {
                position,
                timestamp,
                duplicate,
            } => propose_reply::Outcome::Committed(proto::ProposeCommitted {
                position,
                timestamp: timestamp.map(Into::into),
                duplicate,
            }),
            ProposeOutcome::Refused(ProposeError::NotLeader { leader_hint }) => {
                propose_reply::Outcome::NotLeader(self.link.not_leader(leader_hint))
            }
            ProposeOutcome::Refused(ProposeError::UnknownSession {
                session_id,
                idle_timeout_s,
            }) => propose_reply::Outcome::SessionUnknown(proto::SessionUnknown {
                session_id,
                idle_timeout_us: idle_timeout_s * 1_000_000,
            }),
            ProposeOutcome::Refused(error) => {
                return Err(refused_status(self.link.node_id(), &error));
            }
        };
        Ok(proto::ProposeReply {
            outcome: Some(outcome),
        })
    }

    /// Takes one of the client's in-flight slots, or says why not.
    fn take_slot(&self, client_id: u64) -> Result<InFlightSlot, Status> {
        let mut in_flight = lock(&self.in_flight);
        let count = in_flight.get(&client_id).copied().unwrap_or(0);
        if count >= CLIENT_PROPOSALS_IN_FLIGHT_MAX {
            return Err(Status::resource_exhausted(format!(
                "client {client_id} already has {count} proposals in flight on node {}, the \
                 most a client may have (CLIENT_PROPOSALS_IN_FLIGHT_MAX = \
                 {CLIENT_PROPOSALS_IN_FLIGHT_MAX}); wait for one to finish",
                self.link.node_id()
            )));
        }
        if count == 0 && in_flight.len() >= CLIENTS_IN_FLIGHT_MAX {
            return Err(Status::resource_exhausted(format!(
                "node {} has proposals in flight from {} clients, the most it serves at once \
                 (CLIENTS_IN_FLIGHT_MAX = {CLIENTS_IN_FLIGHT_MAX}); retry later",
                self.link.node_id(),
                in_flight.len()
            )));
        }
        in_flight.insert(client_id, count + 1);
        Ok(InFlightSlot {
            in_flight: self.in_flight.clone(),
            client_id,
        })
    }

    /// Takes a subscription of `client_id` (0: none named) over the connection from
    /// `connection` (unknown off TCP), or says which bound refuses it.
    fn take_stream(
        &self,
        connection: Option<SocketAddr>,
        client_id: u64,
    ) -> Result<StreamSlot, Status> {
        let client = (client_id != 0).then_some(client_id);
        lock(&self.streams).take(self.link.node_id(), connection, client)?;
        Ok(StreamSlot {
            streams: self.streams.clone(),
            connection,
            client,
        })
    }
}

impl StreamCounts {
    /// Counts one more subscription of `client` over `connection`, or says which bound
    /// refuses it (and counts nothing).
    fn take(
        &mut self,
        node_id: u64,
        connection: Option<SocketAddr>,
        client: Option<u64>,
    ) -> Result<(), Status> {
        if let Some(client_id) = client {
            let held = self.by_client.get(&client_id).copied().unwrap_or(0);
            if held >= SUBSCRIPTIONS_PER_CLIENT_MAX {
                return Err(Status::resource_exhausted(format!(
                    "client {client_id} holds {held} subscriptions on node {node_id}, the most \
                     one client may hold (SUBSCRIPTIONS_PER_CLIENT_MAX = \
                     {SUBSCRIPTIONS_PER_CLIENT_MAX}); a client follows the log with one stream: \
                     close the streams it no longer reads"
                )));
            }
        }
        if let Some(address) = connection {
            let held = self.by_connection.get(&address).copied().unwrap_or(0);
            if held >= SUBSCRIPTIONS_PER_CONNECTION_MAX {
                return Err(Status::resource_exhausted(format!(
                    "the connection from {address} holds {held} subscriptions on node \
                     {node_id}, the most one connection may hold \
                     (SUBSCRIPTIONS_PER_CONNECTION_MAX = {SUBSCRIPTIONS_PER_CONNECTION_MAX}); \
                     close one, or subscribe over another connection"
                )));
            }
        }
        if self.total >= SUBSCRIBE_STREAMS_MAX {
            return Err(Status::resource_exhausted(format!(
                "node {node_id} serves {} subscriptions, the most it serves at once \
                 (SUBSCRIBE_STREAMS_MAX = {SUBSCRIBE_STREAMS_MAX}); subscribe to another member",
                self.total
            )));
        }
        self.total += 1;
        if let Some(address) = connection {
            *self.by_connection.entry(address).or_default() += 1;
        }
        if let Some(client_id) = client {
            *self.by_client.entry(client_id).or_default() += 1;
        }
        Ok(())
    }
}

/// One proposal in flight; the slot is given back when it drops.
struct InFlightSlot {
    in_flight: Arc<Mutex<HashMap<u64, usize>>>,
    client_id: u64,
}

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.in_flight);
        if let Some(count) = in_flight.get_mut(&self.client_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.client_id);
            }
        }
    }
}

/// Bytes of uploads waiting; given back when it drops.
struct UploadBytes {
    upload_bytes: Arc<Mutex<usize>>,
    size_bytes: usize,
}

impl Drop for UploadBytes {
    fn drop(&mut self) {
        *lock(&self.upload_bytes) -= self.size_bytes;
    }
}

/// One open subscription; the slot is given back when it drops.
struct StreamSlot {
    streams: Arc<Mutex<StreamCounts>>,
    connection: Option<SocketAddr>,
    client: Option<u64>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut streams = lock(&self.streams);
        streams.total -= 1;
        if let Some(address) = self.connection
            && let Some(held) = streams.by_connection.get_mut(&address)
        {
            *held -= 1;
            if *held == 0 {
                streams.by_connection.remove(&address);
            }
        }
        if let Some(client_id) = self.client
            && let Some(held) = streams.by_client.get_mut(&client_id)
        {
            *held -= 1;
            if *held == 0 {
                streams.by_client.remove(&client_id);
            }
        }
    }
}

/// Locks a mutex whose holders never panic while holding it; a poisoned one is still usable
/// because every critical section leaves the data consistent.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn invalid(request: &str, field: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{request} field {field}: {error}"))
}

/// Checks a proposal from the wire, naming the first field that is wrong.
pub fn propose_request_from_wire(request: proto::ProposeRequest) -> Result<ProposeRequest, Status> {
    let object_id =
        ObjectId::new(request.object_id).map_err(|error| invalid("propose", "object_id", error))?;
    let arguments = Arguments::new(request.arguments)
        .map_err(|error| invalid("propose", "arguments", error))?;
    let scope =
        Scope::try_from(request.scope).map_err(|error| invalid("propose", "scope", error))?;
    Ok(ProposeRequest {
        client_id: ClientId(request.client_id),
        request_sequence: RequestSequence(request.request_sequence),
        object_id,
        method_id: MethodId(request.method_id),
        arguments,
        scope,
    })
}

/// Checks a checkpoint upload from the wire, naming the first field that is wrong. The
/// position is checked by the node, against what it has applied.
pub fn checkpoint_upload_from_wire(
    request: proto::UploadCheckpointRequest,
) -> Result<CheckpointUpload, Status> {
    let checkpoint = request
        .checkpoint
        .ok_or_else(|| invalid("upload_checkpoint", "checkpoint", "is missing"))?;
    let object_id = ObjectId::new(checkpoint.object_id)
        .map_err(|error| invalid("upload_checkpoint", "checkpoint.object_id", error))?;
    if checkpoint.position == 0 {
        return Err(invalid(
            "upload_checkpoint",
            "checkpoint.position",
            "must be at least 1 (a checkpoint at 0 is the default state)",
        ));
    }
    let state_hash: [u8; STATE_HASH_BYTES] =
        checkpoint.state_hash.as_slice().try_into().map_err(|_| {
            invalid(
                "upload_checkpoint",
                "checkpoint.state_hash",
                format!(
                    "holds {} bytes; a SHA-256 hash is exactly {STATE_HASH_BYTES}",
                    checkpoint.state_hash.len()
                ),
            )
        })?;
    if checkpoint.state.len() > CHECKPOINT_STATE_BYTES_MAX {
        return Err(invalid(
            "upload_checkpoint",
            "checkpoint.state",
            format!(
                "holds {} bytes, more than the maximum of {CHECKPOINT_STATE_BYTES_MAX} \
                 (CHECKPOINT_STATE_BYTES_MAX)",
                checkpoint.state.len()
            ),
        ));
    }
    Ok(CheckpointUpload {
        object_id,
        position: checkpoint.position,
        state: checkpoint.state,
        state_hash,
        client_id: ClientId(request.client_id),
    })
}

/// Checks a list of object ids from the wire (at most [`OBJECT_IDS_PER_REQUEST_MAX`]), naming
/// the first that is wrong.
fn object_ids_from_wire(
    request: &str,
    object_ids: Vec<String>,
) -> Result<HashSet<ObjectId>, Status> {
    if object_ids.len() > OBJECT_IDS_PER_REQUEST_MAX {
        return Err(invalid(
            request,
            "object_ids",
            format!(
                "{} ids, more than the {OBJECT_IDS_PER_REQUEST_MAX} a request may list",
                object_ids.len()
            ),
        ));
    }
    let mut checked = HashSet::new();
    for (index, object_id) in object_ids.into_iter().enumerate() {
        let object_id = ObjectId::new(object_id)
            .map_err(|error| invalid(request, &format!("object_ids[{index}]"), error))?;
        checked.insert(object_id);
    }
    Ok(checked)
}

fn outcome_to_wire(outcome: CheckpointOutcome) -> proto::CheckpointOutcome {
    match outcome {
        CheckpointOutcome::Stored => proto::CheckpointOutcome::Stored,
        CheckpointOutcome::Agreed => proto::CheckpointOutcome::Agreed,
        CheckpointOutcome::HashMismatch => proto::CheckpointOutcome::HashMismatch,
        CheckpointOutcome::Superseded => proto::CheckpointOutcome::Superseded,
        // Outcomes of an operator's ClearAlarm, which goes through RegionAdmin; an upload
        // never has them.
        CheckpointOutcome::AlarmCleared | CheckpointOutcome::NoAlarm => {
            proto::CheckpointOutcome::Unspecified
        }
    }
}

/// The wire form of one log entry at `position`.
pub fn log_entry_to_wire(position: u64, entry: &LogEntry) -> proto::LogEntry {
    entry.to_wire(position)
}

/// What a node's log streams hold at one moment, which the service alone knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLoad {
    /// The `Subscribe` streams served.
    pub subscriptions: usize,
    /// The bytes of pieces held for subscribers, out of [`SUBSCRIBE_BUFFERED_BYTES_MAX`].
    pub buffered_bytes: usize,
}

/// The wire form of a node's status and of what its streams hold. The applied position and
/// the raft commit and applied indices are reported apart: a record gets its position only
/// when it is applied, so the commit index is the only measure of how far commit runs ahead
/// of this node's log.
pub fn status_reply(status: &NodeStatus, streams: StreamLoad) -> proto::StatusReply {
    let node = &status.node;
    proto::StatusReply {
        node_id: node.node_id,
        region: status.region.as_str().to_owned(),
        role: role_to_wire(node.role).into(),
        leader_node_id: node.leader_id.unwrap_or(0),
        term: node.term,
        applied_position: node.next_position.saturating_sub(1),
        commit_index: node.commit_index,
        applied_index: node.applied_index,
        sealed_epoch_number: node.global.epochs_applied_through,
        protocol_version: PROTOCOL_VERSION,
        clock: Some(proto::ClockHealth {
            hybrid_now: Some(status.hybrid_last.into()),
            physical_now_us: status.physical_now_us,
            max_skew_us: status.max_clock_skew_us,
            rejected_timestamps: node.counters.clock_skew_refused,
            fenced: node.clock.fenced.is_some(),
            own_offset_us: node.clock.fenced.map_or(0, |fence| fence.offset_us),
            fences: node.counters.clock_fences,
            peers: node
                .clock
                .peers
                .iter()
                .map(|(peer, sample)| proto::PeerClockOffset {
                    node_id: *peer,
                    offset_us: sample.offset_us,
                    uncertainty_us: sample.uncertainty_us,
                    measured_at_us: sample.taken_at_us,
                })
                .collect(),
        }),
        truncated_through_position: node.checkpoints.truncated_through,
        first_retained_position: node.first_retained_position,
        checkpointed_objects: node.checkpoints.objects,
        objects_lacking_agreed_checkpoint: node.checkpoints.uncovered_objects,
        divergence_alarms: node.checkpoints.alarms_raised,
        log_size_bytes: node.log_size_bytes,
        log_quota_bytes: node.log_quota_bytes,
        log_cache_bytes: node.log_cache_bytes,
        snapshots_taken_after_fetch: node.snapshot_catch_up.counters.snapshots_taken_after_fetch,
        snapshot_entries_fetched: node.snapshot_catch_up.counters.entries_fetched,
        snapshot_missing_from: node.snapshot_catch_up.missing.map_or(0, |(from, _)| from),
        snapshot_missing_to: node.snapshot_catch_up.missing.map_or(0, |(_, to)| to),
        subscriptions: streams.subscriptions as u64,
        subscribe_buffered_bytes: streams.buffered_bytes as u64,
        subscribe_buffered_bytes_max: SUBSCRIBE_BUFFERED_BYTES_MAX as u64,
        sessions: node.sessions as u64,
        released_objects: node.checkpoints.released_objects,
        releases: node.checkpoints.releases,
        epoch_parts_caught_up: node.counters.epoch_parts_caught_up,
        raft_messages_refused: status.raft_messages_refused,
        checkpoint_bytes: node.checkpoints.checkpoint_bytes,
        checkpoint_bytes_max: node.checkpoints.bounds.checkpoint_bytes_max,
        tracking_bytes: node.checkpoints.tracking_bytes,
        tracking_bytes_max: node.checkpoints.bounds.tracking_bytes_max,
        leader_changes: node.raft.leader_changes,
        snapshots_sent: node.raft.snapshots_sent,
        voters: node.voters.clone(),
        learners: node.learners.clone(),
        global_member: node.global.member,
        global_incarnation: node.global.incarnation,
        watermark_physical_us: node.global.watermark.physical_us,
        unsealed_records: node.global.unsealed_records as u64,
        outgoing_batches: node.global.outgoing_batches as u64,
        epochs_missed_from: node.global.epochs_missed.map_or(0, |(from, _)| from),
        epochs_missed_to: node.global.epochs_missed.map_or(0, |(_, to)| to),
        records_applied: node.counters.records_applied,
        alarmed_objects: node.checkpoints.alarmed_objects,
        checkpoints_adopted: node.adoptions.counters.adopted,
        checkpoint_reads_served: node.adoptions.counters.reads_served,
        adoptions_given_up: node.adoptions.counters.given_up,
        epoch_skips: node.counters.epoch_skips_applied,
        epochs_skipped: node.counters.epochs_skipped,
        diverged_objects: node
            .checkpoints
            .alarms
            .iter()
            .take(DIVERGED_OBJECTS_LISTED_MAX)
            .map(|alarm| proto::DivergedObject {
                object_id: alarm.object_id.as_str().to_owned(),
                position: alarm.position,
                first_client_id: alarm.first_client_id,
                second_client_id: alarm.second_client_id,
            })
            .collect(),
    }
}

/// The status of a subscription from a position the node no longer holds; it carries the
/// node's first retained position under [`FIRST_RETAINED_POSITION_HEADER`], which tells it
/// from any other `OUT_OF_RANGE`.
fn out_of_range(node_id: u64, from_position: u64, first_retained_position: u64) -> Status {
    let mut status = Status::out_of_range(format!(
        "position {from_position} is no longer retained on node {node_id}: its log starts at \
         position {first_retained_position}; start from a checkpoint (FetchCheckpoint) and \
         subscribe from one past its position"
    ));
    status.metadata_mut().insert(
        FIRST_RETAINED_POSITION_HEADER,
        first_retained_position.into(),
    );
    status
}

fn refused_status(node_id: u64, error: &ProposeError) -> Status {
    match error {
        ProposeError::NotLeader { .. } => Status::unavailable(error.to_string()),
        ProposeError::Overloaded => Status::resource_exhausted(format!(
            "node {node_id} is overloaded: too many proposals waiting; retry later with the \
             same request_sequence"
        )),
        ProposeError::GlobalOverloaded { bound } => Status::resource_exhausted(format!(
            "node {node_id}: the region holds as many unsealed global calls as it may ({bound}); \
             the coordinator is slow or unreachable; retry later with the same request_sequence"
        )),
        ProposeError::NoGlobalTier => Status::failed_precondition(format!(
            "node {node_id}: this region runs no global tier (its topology has one region), so \
             a global call can never be sealed; call a regional object"
        )),
        ProposeError::Dropped => Status::unavailable(format!(
            "node {node_id}: the proposal was dropped before it was ordered (a leader change or \
             a timeout); retry with the same request_sequence, which is applied at most once"
        )),
        ProposeError::LogFull { .. } => Status::resource_exhausted(format!(
            "node {node_id}: {error}; nothing was proposed, retry later with the same \
             request_sequence"
        )),
        ProposeError::UnknownSession { .. } => {
            Status::failed_precondition(format!("node {node_id}: {error}"))
        }
        ProposeError::ClockFenced(fence) => Status::unavailable(format!("node {node_id}: {fence}")),
        ProposeError::TooOld { floor } => Status::failed_precondition(format!(
            "request_sequence is too old: the region only judges this client's sequences from \
             {floor} on, so it cannot tell whether this call was applied"
        )),
    }
}

#[tonic::async_trait]
impl RegionClient for RegionClientService {
    async fn propose(
        &self,
        request: Request<proto::ProposeRequest>,
    ) -> Result<Response<proto::ProposeReply>, Status> {
        let (deadline, budget) = Self::budget(request.metadata());
        // The call's caller (its grants, its identity) travels in the request's extensions.
        let (metadata, extensions, call) = request.into_parts();
        let envelope = Request::from_parts(metadata, extensions, ());
        let pending = self.hand_over_proposal(&envelope, call)?;
        let until = tokio::time::Instant::now() + budget;
        self.await_proposal(pending, until, deadline)
            .await
            .map(Response::new)
    }

    async fn propose_batch(
        &self,
        request: Request<proto::ProposeBatchRequest>,
    ) -> Result<Response<proto::ProposeBatchReply>, Status> {
        let (deadline, budget) = Self::budget(request.metadata());
        let count = request.get_ref().calls.len();
        if count == 0 || count > PROPOSE_BATCH_CALLS_MAX {
            return Err(Status::invalid_argument(format!(
                "propose batch field calls: {count} calls; a batch holds 1 to \
                 {PROPOSE_BATCH_CALLS_MAX} (PROPOSE_BATCH_CALLS_MAX)"
            )));
        }
        // Every call is handed to the node before any is waited for, so that they are ordered
        // together (in as few raft rounds as the node's batching makes of them).
        let (metadata, extensions, batch) = request.into_parts();
        let envelope = Request::from_parts(metadata, extensions, ());
        let pending: Vec<Result<PendingProposal, Status>> = batch
            .calls
            .into_iter()
            .map(|call| self.hand_over_proposal(&envelope, call))
            .collect();
        let until = tokio::time::Instant::now() + budget;
        let mut outcomes = Vec::with_capacity(count);
        for pending in pending {
            let answer = match pending {
                Ok(pending) => self.await_proposal(pending, until, deadline).await,
                Err(refused) => Err(refused),
            };
            outcomes.push(proto::ProposeBatchOutcome {
                outcome: Some(match answer {
                    Ok(reply) => propose_batch_outcome::Outcome::Reply(reply),
                    Err(status) => propose_batch_outcome::Outcome::Refused(proto::CallRefusal {
                        code: status.code() as i32,
                        message: status.message().to_owned(),
                    }),
                }),
            });
        }
        Ok(Response::new(proto::ProposeBatchReply { outcomes }))
    }

    type SubscribeStream =
        Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::SubscribeReply, Status>> + Send>>;

    async fn subscribe(
        &self,
        request: Request<proto::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let connection = request.remote_addr();
        // A whole-log subscription (no objects named) needs read on every object.
        if request.get_ref().object_ids.is_empty() {
            check_grant(&request, ClientRight::Read, None)?;
        }
        for object_id in &request.get_ref().object_ids {
            check_grant(&request, ClientRight::Read, Some(object_id))?;
        }
        let scoped = scoped_session_id_of(&request, request.get_ref().client_id);
        let mut request = request.into_inner();
        if request.client_id != 0 {
            request.client_id = scoped;
        }
        if request.from_position == 0 {
            return Err(invalid(
                "subscribe",
                "from_position",
                "must be at least 1 (positions count from 1)",
            ));
        }
        let filter = object_ids_from_wire("subscribe", request.object_ids)?;
        // A position below the log's start fails the call itself; a subscriber that falls
        // below it later (the log is truncated while it lags) learns it from the stream.
        let start = self.link.read_log(request.from_position, 0).await?;
        if request.from_position < start.first_retained_position {
            return Err(out_of_range(
                self.link.node_id(),
                request.from_position,
                start.first_retained_position,
            ));
        }
        let slot = self.take_stream(connection, request.client_id)?;
        let (sender, receiver) = mpsc::channel(SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX);
        let subscription = Subscription {
            link: self.link.clone(),
            next_position: request.from_position,
            filter,
            sender,
            buffered_bytes: self.buffered_bytes.clone(),
        };
        tokio::spawn(async move {
            subscription.run().await;
            drop(slot);
        });
        // A piece's bytes count against the node's buffer until gRPC takes the piece.
        let pieces = ReceiverStream::new(receiver).map(|(piece, _bytes)| piece);
        Ok(Response::new(Box::pin(pieces)))
    }

    async fn fetch_checkpoint(
        &self,
        request: Request<proto::FetchCheckpointRequest>,
    ) -> Result<Response<proto::FetchCheckpointReply>, Status> {
        check_grant(
            &request,
            ClientRight::Read,
            Some(&request.get_ref().object_id),
        )?;
        let request = request.into_inner();
        // Callers of earlier releases do not say the scope: their released objects are not
        // adopted from another region.
        let global = match request.scope {
            0 => false,
            scope => {
                Scope::try_from(scope)
                    .map_err(|error| invalid("fetch_checkpoint", "scope", error))?
                    == Scope::Global
            }
        };
        let object_id = ObjectId::new(request.object_id)
            .map_err(|error| invalid("fetch_checkpoint", "object_id", error))?;
        let reply_object_id = object_id.as_str().to_owned();
        let fetch = self
            .link
            .ask(|reply| NodeEvent::FetchCheckpoint {
                object_id,
                global,
                reply,
            })
            .await?
            .map_err(Status::internal)?;
        let checkpoint = fetch.checkpoint.map(|checkpoint| proto::Checkpoint {
            object_id: reply_object_id,
            position: checkpoint.position,
            state: checkpoint.state,
            state_hash: checkpoint.state_hash.to_vec(),
        });
        Ok(Response::new(proto::FetchCheckpointReply {
            checkpoint,
            truncated_through_position: fetch.truncated_through,
            released_through_position: fetch.released_through,
        }))
    }

    async fn open_session(
        &self,
        request: Request<proto::OpenSessionRequest>,
    ) -> Result<Response<proto::OpenSessionReply>, Status> {
        check_any_grant(&request, ClientRight::Call)?;
        let metadata = request.metadata().clone();
        let asked = request.get_ref().session_id;
        if asked == 0 {
            return Err(Status::invalid_argument(
                "open_session: session_id is 0, which is never valid",
            ));
        }
        // The region keeps the session under an id of the caller's own space.
        let session_id = scoped_session_id_of(&request, asked);
        let node_id = self.link.node_id();
        let outcome = self
            .ask_node(&metadata, "session open", |reply| NodeEvent::OpenSession {
                session_id,
                reply,
            })
            .await?;
        let outcome = match outcome {
            Ok(()) => open_session_reply::Outcome::Opened(proto::SessionOpened {
                idle_timeout_us: crate::SESSION_IDLE_TIMEOUT_US,
                log_session_id: session_id,
            }),
            Err(OpenSessionError::NotLeader { leader_hint }) => {
                open_session_reply::Outcome::NotLeader(self.link.not_leader(leader_hint))
            }
            Err(error @ OpenSessionError::InvalidId) => {
                return Err(Status::invalid_argument(format!("open_session: {error}")));
            }
            Err(error @ (OpenSessionError::Full(_) | OpenSessionError::Overloaded)) => {
                return Err(Status::resource_exhausted(format!(
                    "node {node_id}: {error}"
                )));
            }
            Err(error @ (OpenSessionError::Dropped | OpenSessionError::ClockFenced(_))) => {
                return Err(Status::unavailable(format!("node {node_id}: {error}")));
            }
        };
        Ok(Response::new(proto::OpenSessionReply {
            outcome: Some(outcome),
        }))
    }

    async fn close_session(
        &self,
        request: Request<proto::CloseSessionRequest>,
    ) -> Result<Response<proto::CloseSessionReply>, Status> {
        check_any_grant(&request, ClientRight::Call)?;
        let metadata = request.metadata().clone();
        let asked = request.get_ref().session_id;
        if asked == 0 {
            return Err(Status::invalid_argument(
                "close_session: session_id is 0, which is never valid",
            ));
        }
        let session_id = scoped_session_id_of(&request, asked);
        let node_id = self.link.node_id();
        let outcome = self
            .ask_node(&metadata, "session close", |reply| {
                NodeEvent::CloseSession { session_id, reply }
            })
            .await?;
        let outcome = match outcome {
            Ok(was_open) => close_session_reply::Outcome::Closed(proto::SessionClosed { was_open }),
            Err(CloseSessionError::NotLeader { leader_hint }) => {
                close_session_reply::Outcome::NotLeader(self.link.not_leader(leader_hint))
            }
            Err(error @ CloseSessionError::InvalidId) => {
                return Err(Status::invalid_argument(format!("close_session: {error}")));
            }
            Err(error @ CloseSessionError::Overloaded) => {
                return Err(Status::resource_exhausted(format!(
                    "node {node_id}: {error}"
                )));
            }
            Err(error @ CloseSessionError::Dropped) => {
                return Err(Status::unavailable(format!("node {node_id}: {error}")));
            }
        };
        Ok(Response::new(proto::CloseSessionReply {
            outcome: Some(outcome),
        }))
    }

    async fn upload_checkpoint(
        &self,
        request: Request<proto::UploadCheckpointRequest>,
    ) -> Result<Response<proto::UploadCheckpointReply>, Status> {
        let (deadline, budget) = Self::budget(request.metadata());
        if let Some(checkpoint) = &request.get_ref().checkpoint {
            check_grant(&request, ClientRight::Upload, Some(&checkpoint.object_id))?;
        }
        // The uploader's id lives in its identity's space, as session ids do: a client cannot
        // report hashes (or raise alarms) under another client's id.
        let uploader = scoped_session_id_of(&request, request.get_ref().client_id);
        let mut upload = checkpoint_upload_from_wire(request.into_inner())?;
        upload.client_id = ClientId(uploader);
        let _bytes = self.take_upload_bytes(upload.state.len())?;
        let node_id = self.link.node_id();
        let (sender, receiver) = oneshot::channel();
        self.link.send(NodeEvent::UploadCheckpoint {
            upload,
            reply: sender,
        })?;
        let outcome = match tokio::time::timeout(budget, receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return Err(super::node_stopped(node_id)),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "node {node_id}: the checkpoint was not applied within its deadline of {} \
                     ms; retrying it is safe",
                    deadline.as_millis()
                )));
            }
        };
        let reply = match outcome {
            Ok(outcome) => proto::UploadCheckpointReply {
                outcome: outcome_to_wire(outcome).into(),
                not_leader: None,
            },
            Err(UploadError::NotLeader { leader_hint }) => proto::UploadCheckpointReply {
                outcome: proto::CheckpointOutcome::Unspecified.into(),
                not_leader: Some(self.link.not_leader(leader_hint)),
            },
            Err(error @ UploadError::Invalid(_)) => {
                return Err(Status::invalid_argument(format!(
                    "upload_checkpoint: {error}"
                )));
            }
            Err(error @ (UploadError::ResourceExhausted(_) | UploadError::Overloaded)) => {
                return Err(Status::resource_exhausted(format!(
                    "node {node_id}: {error}"
                )));
            }
            Err(error @ UploadError::Dropped) => {
                return Err(Status::unavailable(format!("node {node_id}: {error}")));
            }
        };
        Ok(Response::new(reply))
    }

    async fn sync(
        &self,
        request: Request<proto::SyncRequest>,
    ) -> Result<Response<proto::SyncReply>, Status> {
        let (deadline, budget) = Self::budget(request.metadata());
        // A barrier reveals no record: any read grant may wait on one.
        check_any_grant(&request, ClientRight::Read)?;
        // The barrier covers every object; the list is checked so that a malformed request
        // is refused rather than silently served.
        object_ids_from_wire("sync", request.into_inner().object_ids)?;
        let node_id = self.link.node_id();
        let (sender, receiver) = oneshot::channel();
        self.link.send(NodeEvent::Sync { reply: sender })?;
        let outcome = match tokio::time::timeout(budget, receiver).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => return Err(super::node_stopped(node_id)),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "node {node_id}: the barrier was not confirmed within its deadline of {} \
                     ms; retry",
                    deadline.as_millis()
                )));
            }
        };
        match outcome {
            Ok(Barrier {
                apply_through_position,
                sealed_epoch_number,
            }) => Ok(Response::new(proto::SyncReply {
                apply_through_position,
                sealed_epoch_number,
            })),
            Err(error @ SyncError::Overloaded) => Err(Status::resource_exhausted(format!(
                "node {node_id}: {error}; retry later"
            ))),
            Err(error @ SyncError::TimedOut { .. }) => Err(Status::deadline_exceeded(format!(
                "node {node_id}: {error}"
            ))),
            Err(error @ (SyncError::NotLeader { .. } | SyncError::Coordinator { .. })) => Err(
                Status::unavailable(format!("node {node_id}: {error}; retry after a short wait")),
            ),
        }
    }

    async fn status(
        &self,
        _request: Request<proto::StatusRequest>,
    ) -> Result<Response<proto::StatusReply>, Status> {
        Ok(Response::new(self.node_status().await?))
    }
}

/// One subscriber's stream: reads the log from its position, then follows the node's log
/// events, reading the log again whenever the events skip ahead (it fell behind, or the node
/// restored a snapshot).
struct Subscription {
    link: NodeLink,
    next_position: u64,
    filter: HashSet<ObjectId>,
    sender: mpsc::Sender<(
        Result<proto::SubscribeReply, Status>,
        Option<OwnedSemaphorePermit>,
    )>,
    buffered_bytes: Arc<Semaphore>,
}

/// Why a subscription stops following events and reads the log.
enum Follow {
    /// The events skipped ahead: read the log.
    CatchUp,
    /// The subscriber is gone or the stream ended.
    Stop,
    /// The node is stopping: tell the subscriber where to resume.
    Shutdown,
}

impl Subscription {
    async fn run(mut self) {
        let mut stopping = self.link.stopping();
        let watcher = self.sender.clone();
        // Subscribing before the first read means no event can fall between the read and
        // the events: anything applied after the read is in the events.
        let mut events = self.link.subscribe_log();
        loop {
            if !self.catch_up().await {
                return;
            }
            let follow = tokio::select! {
                follow = self.follow(&mut events) => follow,
                _ = watcher.closed() => Follow::Stop,
                _ = stopping.wait_for(|stopping| *stopping) => Follow::Shutdown,
            };
            match follow {
                Follow::CatchUp => {}
                Follow::Stop => return,
                Follow::Shutdown => {
                    let status = Status::unavailable(format!(
                        "node {} is shutting down; resume from position {} on another member",
                        self.link.node_id(),
                        self.next_position
                    ));
                    self.end(status).await;
                    return;
                }
            }
        }
    }

    /// Reads the log until this subscriber has everything the node applied. False when the
    /// stream ended.
    async fn catch_up(&mut self) -> bool {
        loop {
            let read = match self
                .link
                .read_log(self.next_position, LOG_READ_RECORDS_MAX)
                .await
            {
                Ok(read) => read,
                Err(status) => {
                    self.end(status).await;
                    return false;
                }
            };
            if self.next_position < read.first_retained_position {
                let status = out_of_range(
                    self.link.node_id(),
                    self.next_position,
                    read.first_retained_position,
                );
                self.end(status).await;
                return false;
            }
            let Some(&(last_position, _)) = read.records.last() else {
                return true;
            };
            if !self.send_records(&read.records, last_position).await {
                return false;
            }
        }
    }

    /// Follows the node's log events until they skip ahead of this subscriber.
    async fn follow(&mut self, events: &mut broadcast::Receiver<Arc<LogEvent>>) -> Follow {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => return Follow::CatchUp,
                Err(broadcast::error::RecvError::Closed) => {
                    self.end(super::node_stopped(self.link.node_id())).await;
                    return Follow::Stop;
                }
            };
            let mut records = Vec::new();
            let mut records_bytes = 0;
            let mut pending = Some(event);
            while let Some(event) = pending.take() {
                match &*event {
                    LogEvent::Applied { position, entry } => {
                        let expected = self.next_position + records.len() as u64;
                        if *position < expected {
                            // Already sent, from the log read.
                        } else if *position == expected {
                            records_bytes += entry_bytes(entry);
                            records.push((*position, entry.clone()));
                        } else {
                            return Follow::CatchUp;
                        }
                    }
                    LogEvent::Restored { .. } => return Follow::CatchUp,
                }
                if records.len() < LOG_READ_RECORDS_MAX && records_bytes < LOG_READ_BYTES_MAX {
                    pending = events.try_recv().ok();
                }
            }
            if let Some(&(last_position, _)) = records.last()
                && !self.send_records(&records, last_position).await
            {
                return Follow::Stop;
            }
        }
    }

    /// Sends the records that pass the filter, in pieces of at most
    /// [`SUBSCRIBE_REPLY_BYTES_MAX`] bytes of entries (an entry larger than that alone), the
    /// last saying that everything through `through_position` was delivered. False when the
    /// subscriber is gone.
    async fn send_records(&mut self, records: &[(u64, LogEntry)], through_position: u64) -> bool {
        let mut entries = Vec::new();
        let mut entries_bytes = 0;
        for (position, entry) in records {
            // An epoch's end names no object: every subscriber gets it, so that it can tell how
            // far the global sequence has reached.
            let wanted = self.filter.is_empty()
                || entry
                    .record()
                    .is_none_or(|record| self.filter.contains(&record.object_id));
            if !wanted {
                continue;
            }
            let wire = log_entry_to_wire(*position, entry);
            // The entry, its field tag and its length prefix.
            let wire_bytes = wire.encoded_len() + 16;
            if !entries.is_empty() && entries_bytes + wire_bytes > SUBSCRIBE_REPLY_BYTES_MAX {
                let piece = proto::SubscribeReply {
                    entries: std::mem::take(&mut entries),
                    through_position: position - 1,
                };
                entries_bytes = 0;
                if !self.send_piece(piece).await {
                    return false;
                }
            }
            entries_bytes += wire_bytes;
            entries.push(wire);
        }
        let piece = proto::SubscribeReply {
            entries,
            through_position,
        };
        self.send_piece(piece).await
    }

    /// Sends one piece once the node's buffer has room for it. False when the subscriber is
    /// gone.
    async fn send_piece(&mut self, piece: proto::SubscribeReply) -> bool {
        let through_position = piece.through_position;
        // A piece is at most SUBSCRIBE_PIECE_BYTES_MAX, far below the buffer and u32::MAX.
        let size_bytes = u32::try_from(piece.encoded_len()).unwrap_or(u32::MAX);
        let permit = tokio::select! {
            permit = self.buffered_bytes.clone().acquire_many_owned(size_bytes) => permit.ok(),
            _ = self.sender.closed() => return false,
        };
        if self.sender.send((Ok(piece), permit)).await.is_err() {
            return false;
        }
        self.next_position = through_position + 1;
        true
    }

    /// Ends the stream with `status`.
    async fn end(&self, status: Status) {
        let _ = self.sender.send((Err(status), None)).await;
    }
}

/// About how many bytes `entry` takes on the wire.
fn entry_bytes(entry: &LogEntry) -> usize {
    entry.record().map_or(0, |record| {
        record.arguments.len() + record.object_id.as_str().len()
    }) + 128
}

#[cfg(test)]
mod tests {
    use dsss_raft_group::Role;
    use dsss_wire::{RegionId, Timestamp};

    use super::*;
    use crate::{CheckpointStatus, GlobalStatus, NodeCounters, RegionStatus};

    #[test]
    fn status_reports_the_commit_index_apart_from_the_applied_position() {
        // A follower that knows of entries committed beyond what it applied: raft index 12
        // committed, 9 applied, and records applied through position 5 (raft entries carry
        // many records or none, so indices and positions differ).
        let status = NodeStatus {
            node: RegionStatus {
                node_id: 2,
                role: Role::Follower,
                leader_id: Some(1),
                term: 3,
                commit_index: 12,
                applied_index: 9,
                first_raft_index: 1,
                last_raft_index: 12,
                next_position: 6,
                first_retained_position: 1,
                log_digest: 0,
                voters: vec![1, 2, 3],
                learners: Vec::new(),
                global: GlobalStatus::default(),
                proposals_pending: 0,
                waiters: 0,
                syncs_in_flight: 0,
                sessions: 0,
                checkpoints: CheckpointStatus::default(),
                log_size_bytes: 5 * 300,
                log_quota_bytes: 1024 * 1024 * 1024,
                log_cache_bytes: 5 * 300,
                snapshot_catch_up: Default::default(),
                counters: NodeCounters::default(),
                raft: dsss_raft_group::GroupCounters::default(),
                clock: crate::ClockStatus::default(),
                adoptions: crate::node::AdoptionStatus::default(),
            },
            region: RegionId::new("eu-west").expect("valid region"),
            physical_now_us: 1_700_000_000_000_000,
            hybrid_last: Timestamp::new(1_700_000_000_000_000, 0),
            max_clock_skew_us: 250_000,
            raft_messages_refused: 0,
        };
        let streams = StreamLoad {
            subscriptions: 3,
            buffered_bytes: 4_096,
        };
        let reply = status_reply(&status, streams);
        assert_eq!(reply.commit_index, 12);
        assert_eq!(reply.applied_index, 9);
        assert_eq!(reply.applied_position, 5);
        assert_eq!(reply.leader_node_id, 1);
        assert_eq!(reply.role, proto::NodeRole::Follower as i32);
        assert_eq!(
            (
                reply.log_size_bytes,
                reply.log_quota_bytes,
                reply.log_cache_bytes
            ),
            (1_500, 1024 * 1024 * 1024, 1_500)
        );
        assert_eq!(
            (
                reply.subscriptions,
                reply.subscribe_buffered_bytes,
                reply.subscribe_buffered_bytes_max
            ),
            (3, 4_096, SUBSCRIBE_BUFFERED_BYTES_MAX as u64)
        );
    }

    /// The node-wide bound holds against many connections and clients that each stay within
    /// their own bounds.
    #[test]
    fn a_node_serves_at_most_subscribe_streams_max_subscriptions() {
        let mut streams = StreamCounts::default();
        let connections = SUBSCRIBE_STREAMS_MAX / SUBSCRIPTIONS_PER_CONNECTION_MAX;
        let mut client_id = 0u64;
        for connection in 0..connections {
            let address = SocketAddr::from(([127, 0, 0, 1], 10_000 + connection as u16));
            for index in 0..SUBSCRIPTIONS_PER_CONNECTION_MAX {
                // A new client every SUBSCRIPTIONS_PER_CLIENT_MAX streams.
                if index % SUBSCRIPTIONS_PER_CLIENT_MAX == 0 {
                    client_id += 1;
                }
                streams
                    .take(7, Some(address), Some(client_id))
                    .expect("within every bound");
            }
        }
        assert_eq!(streams.total, SUBSCRIBE_STREAMS_MAX);
        let fresh = SocketAddr::from(([127, 0, 0, 2], 10_000));
        let error = streams
            .take(7, Some(fresh), Some(client_id + 1))
            .expect_err("the node is full");
        assert_eq!(error.code(), tonic::Code::ResourceExhausted);
        assert!(
            error.message().contains("SUBSCRIBE_STREAMS_MAX = 16384")
                && error.message().contains("node 7"),
            "{}",
            error.message()
        );
        assert_eq!(
            streams.total, SUBSCRIBE_STREAMS_MAX,
            "a refusal counts nothing"
        );
        assert!(!streams.by_connection.contains_key(&fresh));
    }
}
