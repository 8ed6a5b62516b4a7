//! The processes of a simulated region: region nodes (the real [`RegionNode`] over the
//! node's [`SimDisk`]) and clients that propose, retry and record what was acknowledged.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_raft_group::raft::eraftpb::Message as RaftMessage;
use dsss_raft_group::{
    ClockProbe, DurableStore, KeySpace, KeyValuePairs, PinnedViews, ReadyIo, StoreError,
    WriteBatch, WriteOperation, encode_message,
};
use dsss_region_node::{
    LogRangeReply, LogRangeRequest, ProposeError, ProposeRequest, RegionNode, RegionNodeConfig,
    RegionOutput, Reply, SessionReply,
};
use dsss_wire::{Arguments, ClientId, LeaderTracker, MethodId, ObjectId, RequestSequence, Scope};

use super::checker::RegionObserver;
use crate::costs::WorkKind;
use crate::disk::{DiskWrite, SimDisk};
use crate::network::{EXTERNAL_NODE_ID, NodeId};
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::common::{NodeClocks, SessionOpened, SessionOpening, content_hash};

/// The interval of a region node's raft tick: the production nodes' default.
pub const TICK_INTERVAL: Duration =
    Duration::from_micros(dsss_region_node::TICK_INTERVAL_US_DEFAULT);

/// How long a node lets proposals gather before it runs a round, so that proposals arriving
/// together travel in one raft entry.
pub const PROPOSAL_FLUSH_DELAY: Duration = Duration::from_micros(200);

/// How long a client waits before retrying a proposal that got an error.
pub const CLIENT_RETRY_BACKOFF: Duration = Duration::from_millis(5);

/// The argument bytes of every simulated call.
const CALL_ARGUMENT_BYTES: usize = 24;

/// A message of the region workload.
#[derive(Clone)]
pub enum RegionMessage {
    /// A raft message, encoded as on the wire, with the sender's clock probe (as a batch of
    /// raft messages carries one in production).
    Raft(Vec<u8>, ClockProbe),
    /// A clock probe alone, which a member sends a peer it sent nothing for a while.
    ClockProbe(ClockProbe),
    /// A client opens its session, named `open_id` by the client.
    OpenSession {
        /// The client's name for the open, echoed in the answer.
        open_id: u64,
        /// The session.
        session_id: u64,
    },
    /// A node's answer to [`RegionMessage::OpenSession`], carrying the client's name.
    SessionReply(SessionReply),
    /// A client's proposal.
    Propose(ProposeRequest),
    /// A node's answer to a proposal.
    Reply(Reply),
    /// A member asks a peer for entries a snapshot stands on.
    ReadLogRange(LogRangeRequest),
    /// A peer's answer to [`RegionMessage::ReadLogRange`].
    LogRange(LogRangeReply),
}

impl RegionMessage {
    /// What kind of work handling the message is, for costs per kind ([`crate::costs`]).
    pub fn work_kind(&self) -> WorkKind {
        match self {
            RegionMessage::Raft(..)
            | RegionMessage::ClockProbe(_)
            | RegionMessage::ReadLogRange(_)
            | RegionMessage::LogRange(_) => WorkKind::Raft,
            RegionMessage::OpenSession { .. }
            | RegionMessage::SessionReply(_)
            | RegionMessage::Propose(_)
            | RegionMessage::Reply(_) => WorkKind::Client,
        }
    }
}

impl fmt::Debug for RegionMessage {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegionMessage::Raft(bytes, _) => write!(
                formatter,
                "raft({}B #{:016x})",
                bytes.len(),
                content_hash(bytes)
            ),
            RegionMessage::ClockProbe(probe) => write!(
                formatter,
                "clock-probe(at {} echo {} held {})",
                probe.sent_at_us, probe.echo_sent_at_us, probe.echo_held_us
            ),
            RegionMessage::ReadLogRange(request) => write!(formatter, "read-log-range({request})"),
            RegionMessage::LogRange(reply) => write!(formatter, "log-range({reply})"),
            RegionMessage::Propose(request) => write!(
                formatter,
                "propose(c{} s{})",
                request.client_id, request.request_sequence
            ),
            RegionMessage::OpenSession {
                open_id,
                session_id,
            } => write!(formatter, "open-session(o{open_id} c{session_id})"),
            RegionMessage::SessionReply(reply) => write!(
                formatter,
                "session-reply(o{} c{} {:?})",
                reply.open_id, reply.session_id, reply.result
            ),
            RegionMessage::Reply(Reply::Proposed {
                client_id,
                request_sequence,
                position,
            }) => write!(
                formatter,
                "proposed(c{client_id} s{request_sequence} p{position})"
            ),
            RegionMessage::Reply(Reply::Refused {
                client_id,
                request_sequence,
                error,
            }) => write!(
                formatter,
                "refused(c{client_id} s{request_sequence} {error:?})"
            ),
        }
    }
}

/// A [`DurableStore`] over a node's [`SimDisk`]: each key is prefixed with its key space's
/// name and `/`, and a synced write is a write followed by [`SimDisk::sync`]. A batch is
/// atomic because a crash cannot happen inside a handler and unsynced writes are lost
/// together.
pub struct SimDiskStore<'a> {
    disk: &'a mut SimDisk,
}

impl<'a> SimDiskStore<'a> {
    /// The store over `disk`.
    pub fn new(disk: &'a mut SimDisk) -> Self {
        SimDiskStore { disk }
    }

    fn prefixed(space: KeySpace, key: &[u8]) -> Vec<u8> {
        let name = space.name().as_bytes();
        let mut prefixed = Vec::with_capacity(name.len() + 1 + key.len());
        prefixed.extend_from_slice(name);
        prefixed.push(b'/');
        prefixed.extend_from_slice(key);
        prefixed
    }

    /// Puts and deletes `writes` one at a time, then syncs, so that a put the disk refuses
    /// fails where it is, after the writes before it.
    fn write_one_by_one_and_sync(&mut self, writes: Vec<DiskWrite>) -> Result<(), StoreError> {
        for write in writes {
            match write {
                DiskWrite::Put(key, value) => self
                    .disk
                    .put_owned(key, value)
                    .map_err(|error| StoreError::Engine(error.to_string()))?,
                DiskWrite::Delete(key) => self.disk.delete(&key),
            }
        }
        self.disk.sync();
        Ok(())
    }

    fn apply(&mut self, operation: WriteOperation) -> Result<(), StoreError> {
        match operation {
            WriteOperation::Put { space, key, value } => self
                .disk
                .put_owned(Self::prefixed(space, &key), value)
                .map_err(|error| StoreError::Engine(error.to_string())),
            WriteOperation::Delete { space, key } => {
                self.disk.delete(&Self::prefixed(space, &key));
                Ok(())
            }
            WriteOperation::DeleteRange { space, start, end } => {
                let prefix = space_prefix(space);
                let doomed: Vec<Vec<u8>> = self
                    .disk
                    .scan_prefix(&prefix)
                    .into_iter()
                    .map(|(key, _)| key)
                    .filter(|key| {
                        let key = &key[prefix.len()..];
                        key >= start.as_slice() && key < end.as_slice()
                    })
                    .collect();
                for key in doomed {
                    self.disk.delete(&key);
                }
                Ok(())
            }
        }
    }
}

fn space_prefix(space: KeySpace) -> Vec<u8> {
    let mut prefix = space.name().as_bytes().to_vec();
    prefix.push(b'/');
    prefix
}

impl DurableStore for SimDiskStore<'_> {
    fn write(&mut self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let operations = batch.into_operations();
        let single_keys = operations
            .iter()
            .all(|operation| !matches!(operation, WriteOperation::DeleteRange { .. }));
        if sync && single_keys {
            // The common case: straight into the durable map (see SimDisk::write_synced).
            let writes = operations
                .into_iter()
                .map(|operation| match operation {
                    WriteOperation::Put { space, key, value } => {
                        DiskWrite::Put(Self::prefixed(space, &key), value)
                    }
                    WriteOperation::Delete { space, key } => {
                        DiskWrite::Delete(Self::prefixed(space, &key))
                    }
                    WriteOperation::DeleteRange { .. } => unreachable!("checked above"),
                })
                .collect();
            return match self.disk.write_synced(writes) {
                Ok(()) => Ok(()),
                Err(writes) => self.write_one_by_one_and_sync(writes),
            };
        }
        for operation in operations {
            self.apply(operation)?;
        }
        if sync {
            self.disk.sync();
        }
        Ok(())
    }

    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        SimDiskReader::new(self.disk).get(space, key)
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        SimDiskReader::new(self.disk).scan(space, start, end, limit)
    }

    fn views(&self) -> Option<&PinnedViews> {
        Some(self.disk.views())
    }
}

/// The reads of a [`SimDiskStore`] over a disk borrowed shared, for whoever only reads a
/// node's store (the checks of a run, a member answering a log read). A write is an error.
pub struct SimDiskReader<'a> {
    disk: &'a SimDisk,
}

impl<'a> SimDiskReader<'a> {
    /// The reader over `disk`.
    pub fn new(disk: &'a SimDisk) -> Self {
        SimDiskReader { disk }
    }
}

impl DurableStore for SimDiskReader<'_> {
    fn write(&mut self, _batch: WriteBatch, _sync: bool) -> Result<(), StoreError> {
        Err(StoreError::Engine(
            "a SimDiskReader only reads; write through a SimDiskStore".to_owned(),
        ))
    }

    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .disk
            .get(&SimDiskStore::prefixed(space, key))
            .map(<[u8]>::to_vec))
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        let prefix = space_prefix(space);
        Ok(self
            .disk
            .scan_range(
                &SimDiskStore::prefixed(space, start),
                &SimDiskStore::prefixed(space, end),
                limit,
            )
            .into_iter()
            .map(|(key, value)| (key[prefix.len()..].to_vec(), value))
            .collect())
    }

    fn views(&self) -> Option<&PinnedViews> {
        Some(self.disk.views())
    }
}

/// The [`ReadyIo`] of a simulated node: persists to its disk with a sync, sends raft messages
/// as bytes through the simulated network.
struct SimReadyIo<'c, 'a> {
    cx: &'c mut Context<'a, RegionMessage>,
    clocks: &'c mut NodeClocks,
}

impl ReadyIo for SimReadyIo<'_, '_> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        SimDiskStore::new(self.cx.disk()).write(batch, true)
    }

    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
        reads(&SimDiskStore::new(self.cx.disk()));
    }

    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        // Lost on a crash unless a later synced write comes first, as on a real disk.
        SimDiskStore::new(self.cx.disk()).write(batch, false)
    }

    fn send(&mut self, messages: Vec<RaftMessage>) {
        let now_us = self.cx.now_us();
        for message in messages {
            let probe = self.clocks.probe_for(message.to, now_us);
            self.cx.send(
                message.to,
                RegionMessage::Raft(encode_message(&message), probe),
            );
        }
    }
}

/// A region node: the real [`RegionNode`], opened from the node's disk at every start.
pub struct NodeProcess {
    config: RegionNodeConfig,
    /// Client processes, so replies to anyone else go to the test driver.
    client_nodes: Rc<BTreeSet<NodeId>>,
    node: Option<RegionNode>,
    tick_timer: Option<TimerId>,
    flush_timer: Option<TimerId>,
    /// Session opens waiting on the node: the node's name for each, with the client and the
    /// client's name.
    session_opens: BTreeMap<u64, (NodeId, u64)>,
    next_open_id: u64,
    observer: Rc<RefCell<RegionObserver>>,
    /// Its peers' clocks, measured from the probes raft messages carry (lost on a crash).
    clocks: NodeClocks,
}

impl NodeProcess {
    /// A node that opens with `config` when it starts.
    pub fn new(
        config: RegionNodeConfig,
        client_nodes: Rc<BTreeSet<NodeId>>,
        observer: Rc<RefCell<RegionObserver>>,
    ) -> Self {
        NodeProcess {
            clocks: NodeClocks::new(config.max_clock_skew_us),
            config,
            client_nodes,
            node: None,
            tick_timer: None,
            flush_timer: None,
            session_opens: BTreeMap::new(),
            next_open_id: 1,
            observer,
        }
    }

    /// The region node, once started.
    pub fn node(&self) -> Option<&RegionNode> {
        self.node.as_ref()
    }

    /// Runs `command` on the node, then its round, as a driver calls a command.
    pub fn command(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
        command: impl FnOnce(&mut RegionNode),
    ) {
        if let Some(node) = self.node.as_mut() {
            command(node);
        }
        self.flush(cx);
    }

    /// As the production driver does before every tick and every call: the verdict on the
    /// node's clock, with the virtual time as its monotonic clock.
    fn judge_clock(&mut self, cx: &mut Context<'_, RegionMessage>) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        let now_us = cx.now_us();
        let verdict = self
            .clocks
            .verdict(node.id(), &node.voters(), now_us, cx.now());
        let was_fenced = node.clock_fence().is_some();
        node.handle_clock_verdict(&verdict, self.clocks.clocks.fresh_samples(now_us));
        if !was_fenced && node.clock_fence().is_some() {
            self.observer.borrow_mut().clock_fences += 1;
        }
    }

    /// Runs a round and hands its outputs on: raft messages to peers, replies to callers,
    /// log events to the observer.
    fn flush(&mut self, cx: &mut Context<'_, RegionMessage>) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        if let Err(error) = node.handle_ready(&mut SimReadyIo {
            cx,
            clocks: &mut self.clocks,
        }) {
            // The simulated disk only fails when full, and runs stay far below its size.
            panic!("node {}: a round failed: {error}", cx.node());
        }
        while let Some(output) = node.poll_output() {
            match output {
                RegionOutput::Reply(reply) => {
                    let client = reply.key().0.get();
                    let to = if self.client_nodes.contains(&client) {
                        client
                    } else {
                        EXTERNAL_NODE_ID
                    };
                    cx.send(to, RegionMessage::Reply(reply));
                }
                RegionOutput::LogEvent(event) => {
                    self.observer
                        .borrow_mut()
                        .observe_log_event(cx.node(), &event);
                }
                // A lone region has no coordinator: its batches and epoch acknowledgements go
                // nowhere (the global workload routes them), and neither do its sealed epoch
                // reads, which only barriers ask and this workload asks none.
                RegionOutput::ToCoordinator(_)
                | RegionOutput::SealedEpochRead(_)
                | RegionOutput::EpochsRead(_)
                | RegionOutput::CheckpointRead(_) => {}
                RegionOutput::SessionReply(reply) => {
                    if let Some((client, open_id)) = self.session_opens.remove(&reply.open_id) {
                        cx.send(
                            client,
                            RegionMessage::SessionReply(SessionReply { open_id, ..reply }),
                        );
                    }
                }
                RegionOutput::SyncReply(_)
                | RegionOutput::CheckpointReply(_)
                | RegionOutput::SessionCloseReply(_) => {
                    self.observer.borrow_mut().violation(format!(
                        "node {}: the answer to a barrier, an upload or a session close \
                         nobody asked here",
                        cx.node()
                    ));
                }
                RegionOutput::FetchLogRange(fetch) => {
                    cx.send(fetch.peer, RegionMessage::ReadLogRange(fetch.request));
                }
                RegionOutput::DivergenceAlarm(alarm) => {
                    self.observer.borrow_mut().violation(format!(
                        "node {}: the checkpoints of {} at position {} differ",
                        cx.node(),
                        alarm.object_id.as_str(),
                        alarm.position
                    ));
                }
            }
        }
    }
}

impl Process for NodeProcess {
    type Message = RegionMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, RegionMessage>) {
        // What a node measured of its peers' clocks lives in memory only.
        self.clocks = NodeClocks::new(self.config.max_clock_skew_us);
        let mut store = SimDiskStore::new(cx.disk());
        let node = match RegionNode::open(self.config.clone(), &mut store) {
            Ok(node) => node,
            Err(error) => panic!("node {} could not open its store: {error}", cx.node()),
        };
        self.node = Some(node);
        // A random phase, so that members do not tick in lockstep.
        let tick_ns = u64::try_from(TICK_INTERVAL.as_nanos()).expect("a short interval");
        let phase = cx.rng().below(tick_ns);
        self.tick_timer = Some(cx.set_timer(Duration::from_nanos(phase)));
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
        from: NodeId,
        message: RegionMessage,
    ) {
        let Some(node) = self.node.as_mut() else {
            return;
        };
        match message {
            RegionMessage::ClockProbe(probe) => {
                self.clocks.clocks.observe(from, probe, cx.now_us());
            }
            RegionMessage::Raft(bytes, probe) => {
                self.clocks.clocks.observe(from, probe, cx.now_us());
                if node.handle_raft_message(&bytes).is_err() {
                    self.observer.borrow_mut().raft_messages_refused += 1;
                }
                self.flush(cx);
            }
            RegionMessage::Propose(request) => {
                self.judge_clock(cx);
                let Some(node) = self.node.as_mut() else {
                    return;
                };
                node.handle_propose(cx.now_us(), request);
                if self.flush_timer.is_none() {
                    self.flush_timer = Some(cx.set_timer(PROPOSAL_FLUSH_DELAY));
                }
            }
            RegionMessage::OpenSession {
                open_id,
                session_id,
            } => {
                self.judge_clock(cx);
                let Some(node) = self.node.as_mut() else {
                    return;
                };
                let local_id = self.next_open_id;
                self.next_open_id += 1;
                self.session_opens.insert(local_id, (from, open_id));
                node.handle_open_session(cx.now_us(), local_id, session_id);
                if self.flush_timer.is_none() {
                    self.flush_timer = Some(cx.set_timer(PROPOSAL_FLUSH_DELAY));
                }
            }
            RegionMessage::ReadLogRange(request) => {
                let store = SimDiskReader::new(cx.disk());
                let answer = node
                    .answer_log_range(&store, &request)
                    .unwrap_or_else(|error| {
                        panic!(
                            "node {} cannot read back its own region log: {error}",
                            cx.node()
                        )
                    });
                cx.send(from, RegionMessage::LogRange(answer));
            }
            RegionMessage::LogRange(reply) => {
                let mut store = SimDiskStore::new(cx.disk());
                if let Err(error) = node.handle_log_range(reply.fetch_id, Ok(reply), &mut store) {
                    // The simulated disk only fails when full, and runs stay far below its size.
                    panic!(
                        "node {}: writing fetched log entries failed: {error}",
                        cx.node()
                    );
                }
                self.flush(cx);
            }
            RegionMessage::Reply(_) | RegionMessage::SessionReply(_) => {
                self.observer
                    .borrow_mut()
                    .violation(format!("node {} got a reply from {from}", cx.node()));
            }
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, RegionMessage>, timer: TimerId) {
        if Some(timer) == self.flush_timer {
            self.flush_timer = None;
            self.flush(cx);
            return;
        }
        if Some(timer) != self.tick_timer {
            return;
        }
        self.judge_clock(cx);
        if let Some(node) = self.node.as_mut() {
            // As the production driver does: a probe to every voter it sent nothing for a
            // while.
            let now_us = cx.now_us();
            let voters = node.voters();
            node.handle_tick(now_us);
            for (peer, probe) in self.clocks.due_probes(node.id(), &voters, now_us) {
                cx.send(peer, RegionMessage::ClockProbe(probe));
            }
        }
        self.flush(cx);
        self.tick_timer = Some(cx.set_timer(TICK_INTERVAL));
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
    /// The probability that, after an acknowledgement, the client sends the same call again
    /// (as if the reply had been lost), to check that it is applied once.
    pub duplicate_probability: f64,
}

/// The call in flight.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    sequence: u64,
    attempts: u32,
    target: NodeId,
}

/// A client: one call in flight, retried with the same sequence after a timeout or an error
/// (at the member its [`LeaderTracker`] names), every acknowledgement reported to the observer.
pub struct ClientProcess {
    members: Vec<NodeId>,
    settings: ClientSettings,
    next_sequence: u64,
    /// The client's session in the region (its id is the client's node id).
    session: SessionOpening,
    in_flight: Option<InFlight>,
    /// Where calls go; its first guess is drawn when the client starts.
    leader: LeaderTracker,
    timer: Option<TimerId>,
    observer: Rc<RefCell<RegionObserver>>,
}

impl ClientProcess {
    /// A client of the region made of `members`.
    pub fn new(
        members: Vec<NodeId>,
        settings: ClientSettings,
        observer: Rc<RefCell<RegionObserver>>,
    ) -> Self {
        ClientProcess {
            leader: LeaderTracker::new(members.clone(), 0),
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
    fn open_session(&mut self, cx: &mut Context<'_, RegionMessage>) {
        let (target, open_id) = self.session.next_open(&mut self.leader);
        cx.send(
            target,
            RegionMessage::OpenSession {
                open_id,
                session_id: cx.node(),
            },
        );
        self.timer = Some(cx.set_timer(self.settings.request_timeout));
    }

    fn handle_session_reply(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
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

    fn request(cx: &Context<'_, RegionMessage>, sequence: u64) -> ProposeRequest {
        ProposeRequest {
            client_id: ClientId(cx.node()),
            request_sequence: RequestSequence(sequence),
            object_id: ObjectId::new("sim/counter").expect("a valid object id"),
            method_id: MethodId(1),
            arguments: Arguments::new(vec![(sequence % 251) as u8; CALL_ARGUMENT_BYTES])
                .expect("small arguments"),
            scope: Scope::Regional,
        }
    }

    fn random_member(&self, cx: &mut Context<'_, RegionMessage>) -> NodeId {
        *cx.rng()
            .choose(&self.members)
            .expect("a region has members")
    }

    fn send_attempt(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
        mut in_flight: InFlight,
        target: NodeId,
    ) {
        in_flight.attempts += 1;
        in_flight.target = target;
        self.in_flight = Some(in_flight);
        cx.send(
            target,
            RegionMessage::Propose(Self::request(cx, in_flight.sequence)),
        );
        self.timer = Some(cx.set_timer(self.settings.request_timeout));
        if in_flight.attempts > 1 {
            self.observer.borrow_mut().retries += 1;
        }
    }

    fn start_next_call(&mut self, cx: &mut Context<'_, RegionMessage>) {
        if cx.now() >= self.settings.calls_until {
            self.timer = None;
            return;
        }
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        let target = self.leader.target();
        let in_flight = InFlight {
            sequence,
            attempts: 0,
            target,
        };
        self.send_attempt(cx, in_flight, target);
    }

    fn pause(&mut self, cx: &mut Context<'_, RegionMessage>, pause: Duration) {
        if let Some(timer) = self.timer.take() {
            cx.cancel_timer(timer);
        }
        self.timer = Some(cx.set_timer(pause));
    }

    fn think_time(&self, cx: &mut Context<'_, RegionMessage>) -> Duration {
        let low = u64::try_from(self.settings.think_time_min.as_nanos()).unwrap_or(u64::MAX);
        let high = u64::try_from(self.settings.think_time_max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(cx.rng().range_inclusive(low, high.max(low)))
    }

    fn handle_reply(&mut self, cx: &mut Context<'_, RegionMessage>, from: NodeId, reply: Reply) {
        let client = cx.node();
        match reply {
            Reply::Proposed {
                request_sequence,
                position,
                ..
            } => {
                self.observer
                    .borrow_mut()
                    .observe_ack(client, request_sequence.get(), position);
                let current = self
                    .in_flight
                    .is_some_and(|in_flight| in_flight.sequence == request_sequence.get());
                if !current {
                    return;
                }
                self.in_flight = None;
                self.leader.handle_success(from);
                if cx.rng().chance(self.settings.duplicate_probability) {
                    // The same call again, as after a lost reply; its answer must carry the
                    // same position (checked when it arrives).
                    let target = self.random_member(cx);
                    cx.send(
                        target,
                        RegionMessage::Propose(Self::request(cx, request_sequence.get())),
                    );
                    self.observer.borrow_mut().deliberate_duplicates += 1;
                }
                let pause = self.think_time(cx);
                self.pause(cx, pause);
            }
            Reply::Refused {
                request_sequence,
                error,
                ..
            } => {
                let current = self
                    .in_flight
                    .is_some_and(|in_flight| in_flight.sequence == request_sequence.get());
                // A copy of an old call may be applied long after (held up in a partitioned
                // member's log) and be refused as too old, rightly; the call in flight never.
                if !current {
                    return;
                }
                if let ProposeError::TooOld { .. } | ProposeError::UnknownSession { .. } = error {
                    self.observer.borrow_mut().violation(format!(
                        "client {client}: sequence {request_sequence}, the call in flight, \
                         refused: {error}"
                    ));
                }
                crate::workloads::common::follow_refusal(&mut self.leader, from, &error);
                // Retry after a short pause (the timer below), possibly elsewhere.
                self.pause(cx, CLIENT_RETRY_BACKOFF);
            }
        }
    }
}

impl Process for ClientProcess {
    type Message = RegionMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, RegionMessage>) {
        self.leader = crate::workloads::common::spread_tracker(&self.members, cx.rng());
        let pause = self.think_time(cx);
        self.timer = Some(cx.set_timer(pause));
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
        from: NodeId,
        message: RegionMessage,
    ) {
        match message {
            RegionMessage::Reply(reply) => self.handle_reply(cx, from, reply),
            RegionMessage::SessionReply(reply) => self.handle_session_reply(cx, from, reply),
            RegionMessage::Raft(..)
            | RegionMessage::ClockProbe(_)
            | RegionMessage::Propose(_)
            | RegionMessage::OpenSession { .. }
            | RegionMessage::ReadLogRange(_)
            | RegionMessage::LogRange(_) => self.observer.borrow_mut().violation(format!(
                "client {} got a node's message from {from}",
                cx.node()
            )),
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, RegionMessage>, timer: TimerId) {
        if Some(timer) != self.timer {
            return;
        }
        self.timer = None;
        match self.in_flight {
            // A timeout or the pause after an error: the same call again, at the member the
            // tracker names (after a refusal it moved already, and the failure below changes
            // nothing more).
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

/// A process of the region workload.
// A node holds a whole raft group and a client a few numbers; boxing the node would buy
// nothing, since processes live in the simulation's map for the whole run.
#[allow(clippy::large_enum_variant)]
pub enum RegionProcess {
    /// A region node.
    Node(NodeProcess),
    /// A client.
    Client(ClientProcess),
}

impl RegionProcess {
    /// The region node, if this is a started node.
    pub fn node(&self) -> Option<&RegionNode> {
        match self {
            RegionProcess::Node(process) => process.node(),
            RegionProcess::Client(_) => None,
        }
    }

    /// The client, if this is one.
    pub fn client(&self) -> Option<&ClientProcess> {
        match self {
            RegionProcess::Client(client) => Some(client),
            RegionProcess::Node(_) => None,
        }
    }
}

impl Process for RegionProcess {
    type Message = RegionMessage;

    fn work_kind(message: &RegionMessage) -> WorkKind {
        message.work_kind()
    }

    fn handle_start(&mut self, cx: &mut Context<'_, RegionMessage>) {
        match self {
            RegionProcess::Node(process) => process.handle_start(cx),
            RegionProcess::Client(process) => process.handle_start(cx),
        }
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, RegionMessage>,
        from: NodeId,
        message: RegionMessage,
    ) {
        match self {
            RegionProcess::Node(process) => process.handle_message(cx, from, message),
            RegionProcess::Client(process) => process.handle_message(cx, from, message),
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, RegionMessage>, timer: TimerId) {
        match self {
            RegionProcess::Node(process) => process.handle_timer(cx, timer),
            RegionProcess::Client(process) => process.handle_timer(cx, timer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dsss_raft_group::{RAFT_LOG, RAFT_STATE};

    #[test]
    fn the_disk_store_keeps_key_spaces_apart_and_honours_sync() {
        let mut disk = SimDisk::new();
        let mut store = SimDiskStore::new(&mut disk);
        let mut batch = WriteBatch::new();
        for key in [b"a", b"b", b"c"] {
            batch.put(RAFT_LOG, key.to_vec(), b"log".to_vec());
            batch.put(RAFT_STATE, key.to_vec(), b"state".to_vec());
        }
        batch.delete_range(RAFT_LOG, b"a".to_vec(), b"c".to_vec());
        store.write(batch, true).unwrap();
        assert_eq!(store.scan(RAFT_LOG, b"", b"\xff", 10).unwrap().len(), 1);
        assert_eq!(store.scan(RAFT_STATE, b"b", b"\xff", 1).unwrap().len(), 1);
        assert_eq!(
            store.get(RAFT_STATE, b"a").unwrap(),
            Some(b"state".to_vec())
        );
        let mut batch = WriteBatch::new();
        batch.put(RAFT_LOG, b"z".to_vec(), b"unsynced".to_vec());
        store.write(batch, false).unwrap();
        assert!(store.get(RAFT_LOG, b"z").unwrap().is_some());
        disk.discard_unsynced();
        let store = SimDiskStore::new(&mut disk);
        assert_eq!(store.get(RAFT_LOG, b"z").unwrap(), None);
        assert_eq!(store.get(RAFT_LOG, b"c").unwrap(), Some(b"log".to_vec()));
    }

    #[test]
    fn the_trace_names_raft_messages_by_content_not_by_bytes() {
        let probe = ClockProbe::default();
        let short = format!("{:?}", RegionMessage::Raft(vec![1, 2, 3], probe));
        let other = format!("{:?}", RegionMessage::Raft(vec![1, 2, 4], probe));
        assert!(short.starts_with("raft(3B #"), "{short}");
        assert_ne!(short, other);
        let long = format!("{:?}", RegionMessage::Raft(vec![0; 100_000], probe));
        assert!(long.len() < 40, "{long}");
    }
}
