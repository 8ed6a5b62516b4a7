//! [`ApplicationProcess`]: a simulated application instance. It holds the SDK's sans-IO
//! [`Replica`] of one object (a global object, or its region's copy of a regional object),
//! follows its region's log into it, calls the object's methods, and reads its local copy, as
//! an application built on the `dsss` crate does.
//!
//! Following the log: the instance asks one member of its region for the applied log from
//! `replica.position() + 1` on ([`GlobalMessage::ReadLog`]); the answer is dense and bounded
//! ([`LOG_ENTRIES_PER_READ_MAX`]). It applies a global object's records in their sequenced
//! form only (a pending global record is never applied) and a regional object's records as
//! its region committed them, notes every other position as a gap, and asks
//! again at once when the answer was full, else after a poll interval. When a member does not
//! answer in time (it crashed, or the network lost the message) the instance goes to the next
//! member and resumes from its own position: it asserts that every answer starts right after
//! what it applied and holds no hole, so no record is missed or applied twice. When a member
//! no longer keeps the log where the replica stands (the region truncated it, or the member
//! restored a snapshot that holds a suffix), the instance fetches the object's checkpoint as
//! `Client::open` does; the region keeps none (no instance uploads one), so the object has no
//! record at or below the truncation point and the replica skips to it.
//!
//! Calls: the instance proposes with its node id as client id and its next request sequence;
//! retries after a timeout or a refusal keep the sequence. A call completes when the replica
//! applies the record with that (client id, sequence), with the method's result from there.
//! The first call declares the object's schema, as `Client::open` does; the instance that sets
//! the object up then makes the workload's setup calls; every instance then waits until its
//! copy shows the setup before it makes random calls and reads.
//!
//! Reads run on the local copy and are recorded with the replica's `records_applied()`, the
//! prefix of the object's order they saw. A share of them follow a `sync()` barrier: the
//! instance asks a member for it ([`GlobalMessage::Sync`]; the region node confirms its commit
//! point with raft's ReadIndex and the newest sealed epoch with the coordinator leader), waits
//! until its replica has applied through the position the barrier names, then reads.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use dsss::SharedObject;
use dsss::object::SCHEMA_METHOD_ID;
use dsss::replica::{Applied, RecordRef, Replica, ReplicaConfig};
use dsss_region_node::{
    CheckpointFetch, LogEntry, OpenSessionError, ProposeError, ProposeRequest, Reply, SessionReply,
    SyncReply,
};
use dsss_wire::{
    Arguments, ClientId, LeaderTracker, MethodId, ObjectId, Record, RequestSequence, Scope,
};

use super::ObjectWorkload;
use super::history::{
    AppliedRecord, CallCompletion, CallEvent, CallSpec, Operation, ReadEvent, SdkObserver,
    SyncBarrier,
};
use crate::network::NodeId;
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::global::{
    Application, GlobalMessage, LOG_ENTRIES_PER_READ_MAX, LogEntries, ReadLogRequest,
};

/// How long an instance waits before retrying a call that a node refused.
pub const CALL_RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// How an application instance behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ApplicationSettings {
    /// The shortest pause between two operations.
    pub think_time_min: Duration,
    /// The longest pause.
    pub think_time_max: Duration,
    /// How long an instance waits for a node to answer a proposal before it retries elsewhere.
    pub request_timeout: Duration,
    /// How long an instance waits for a member to answer a log read before it goes to the
    /// next member.
    pub log_read_timeout: Duration,
    /// The pause between two log reads when the last answer held everything the member had.
    pub log_poll_interval: Duration,
    /// The share of operations that are calls; the others are reads.
    pub call_share: f64,
    /// The share of reads that follow a `sync()` barrier (linearizable reads).
    pub sync_read_share: f64,
    /// The probability that, after a call completes, the instance proposes it once more (as if
    /// the answer had been lost), to check that it is applied once.
    pub duplicate_probability: f64,
    /// The most random operations (calls and reads) one instance makes after the setup.
    pub operations_max: usize,
    /// The replica makes a checkpoint (whose hash the one-order check compares across
    /// replicas) after every this many records of the object.
    pub checkpoint_every_records: u64,
}

impl ApplicationSettings {
    /// Rejects settings an instance cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.think_time_min > self.think_time_max {
            return Err(format!(
                "think_time_min {:?} is above think_time_max {:?}",
                self.think_time_min, self.think_time_max
            ));
        }
        for (name, duration) in [
            ("request_timeout", self.request_timeout),
            ("log_read_timeout", self.log_read_timeout),
            ("log_poll_interval", self.log_poll_interval),
        ] {
            if duration.is_zero() {
                return Err(format!("{name} is zero"));
            }
        }
        for (name, share) in [
            ("call_share", self.call_share),
            ("sync_read_share", self.sync_read_share),
            ("duplicate_probability", self.duplicate_probability),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} {share} is outside 0..=1"));
            }
        }
        if self.operations_max > super::history::OPERATIONS_PER_CLIENT_MAX / 2 {
            return Err(format!(
                "operations_max {} is above {}",
                self.operations_max,
                super::history::OPERATIONS_PER_CLIENT_MAX / 2
            ));
        }
        if self.checkpoint_every_records == 0 {
            return Err("checkpoint_every_records is zero".to_string());
        }
        Ok(())
    }
}

/// What the outstanding request of the log follower waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Awaiting {
    /// Nothing: the follower waits for its poll timer.
    Nothing,
    /// Entries of the log.
    Log,
    /// The object's checkpoint, after a member said it no longer keeps the log there.
    Checkpoint,
}

/// A read waiting for its `sync()` barrier.
#[derive(Clone, Debug)]
struct SyncInFlight<R> {
    sync_id: u64,
    read: R,
    began_at: SimTime,
    /// The position the barrier said to apply through, once it came.
    apply_through_position: Option<u64>,
}

/// The call waiting for its record.
#[derive(Clone, Debug)]
struct InFlight {
    sequence: u64,
    call: CallSpec,
    attempts: u32,
    target: NodeId,
    /// A node answered that the call is ordered: no more retries, only the wait for the
    /// replica to apply it.
    ordered: bool,
}

/// A simulated application instance. See the module documentation.
pub struct ApplicationProcess<W: ObjectWorkload> {
    workload: Rc<W>,
    settings: ApplicationSettings,
    region: String,
    members: Vec<NodeId>,
    object_id: ObjectId,
    replica: Replica<W::Object>,
    /// Set once the replica stopped or a violation made it unsafe to go on applying.
    halted: bool,
    /// The member whose log the instance reads, as an index into `members`.
    follow_index: usize,
    read_request_id: u64,
    awaiting: Awaiting,
    read_timer: Option<TimerId>,
    poll_timer: Option<TimerId>,
    /// Calls to make before any random operation: the schema declaration, then the setup.
    scripted: VecDeque<CallSpec>,
    next_sequence: u64,
    /// The region confirmed the instance's session (its id is the instance's node id).
    session_open: bool,
    /// The instance's name for its latest session open.
    open_id: u64,
    in_flight: Option<InFlight>,
    propose_timer: Option<TimerId>,
    /// Where calls go; its first guess is drawn when the instance starts.
    leader: LeaderTracker,
    think_timer: Option<TimerId>,
    sync: Option<SyncInFlight<W::Read>>,
    next_sync_id: u64,
    sync_timer: Option<TimerId>,
    operations_done: usize,
    /// The instance starts no new operation after this time (the call in flight finishes);
    /// shared with the harness, which sets it once every instance sees the setup.
    operations_until: Rc<Cell<SimTime>>,
    /// Whether the copy has shown the setup (reported once).
    set_up: bool,
    observer: Rc<RefCell<SdkObserver<W::Read, W::Value>>>,
}

impl<W: ObjectWorkload> ApplicationProcess<W> {
    /// An instance in `region` (whose members are `members`) that declares the schema, makes
    /// the workload's setup calls when `sets_up` is true, then calls and reads at random until
    /// the time `operations_until` holds when it looks.
    pub fn new(
        workload: Rc<W>,
        settings: ApplicationSettings,
        region: String,
        members: Vec<NodeId>,
        sets_up: bool,
        operations_until: Rc<Cell<SimTime>>,
        observer: Rc<RefCell<SdkObserver<W::Read, W::Value>>>,
    ) -> Result<Self, String> {
        settings.validate()?;
        if members.is_empty() {
            return Err(format!("region {region} has no members"));
        }
        let object_name = workload.object_id_in(&region);
        let object_id = ObjectId::new(object_name.as_str())
            .map_err(|error| format!("object id {object_name:?}: {error}"))?;
        let replica_config = ReplicaConfig {
            checkpoint_every_records: settings.checkpoint_every_records,
            ..ReplicaConfig::default()
        };
        let replica = Replica::new(&object_name, replica_config);
        let mut scripted = VecDeque::new();
        scripted.push_back(CallSpec {
            method_id: SCHEMA_METHOD_ID,
            arguments: W::Object::schema().encode(),
        });
        if sets_up {
            scripted.extend(workload.setup_calls());
        }
        // Replaced by a tracker with a drawn first guess when the instance starts.
        let leader = LeaderTracker::new(members.clone(), 0);
        Ok(ApplicationProcess {
            workload,
            settings,
            region,
            members,
            object_id,
            replica,
            halted: false,
            follow_index: 0,
            read_request_id: 0,
            awaiting: Awaiting::Nothing,
            read_timer: None,
            poll_timer: None,
            scripted,
            next_sequence: 1,
            session_open: false,
            open_id: 0,
            in_flight: None,
            propose_timer: None,
            leader,
            think_timer: None,
            sync: None,
            next_sync_id: 1,
            sync_timer: None,
            operations_done: 0,
            operations_until,
            set_up: false,
            observer,
        })
    }

    /// The replica.
    pub fn replica(&self) -> &Replica<W::Object> {
        &self.replica
    }

    // Following the log.

    fn request_log(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.read_request_id += 1;
        let request = ReadLogRequest {
            request_id: self.read_request_id,
            from_position: self.replica.position() + 1,
        };
        let member = self.members[self.follow_index % self.members.len()];
        cx.send(member, GlobalMessage::ReadLog(request));
        self.awaiting = Awaiting::Log;
        self.read_timer = Some(cx.set_timer(self.settings.log_read_timeout));
    }

    /// The member no longer keeps the log from where the replica stands: ask it for the
    /// object's checkpoint, as `Client::open` does after a truncation.
    fn request_checkpoint(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.read_request_id += 1;
        let member = self.members[self.follow_index % self.members.len()];
        cx.send(
            member,
            GlobalMessage::FetchCheckpoint {
                request_id: self.read_request_id,
                object_id: self.object_id.clone(),
            },
        );
        self.awaiting = Awaiting::Checkpoint;
        self.read_timer = Some(cx.set_timer(self.settings.log_read_timeout));
    }

    fn handle_checkpoint_fetched(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        request_id: u64,
        fetch: CheckpointFetch,
    ) {
        if self.awaiting != Awaiting::Checkpoint || request_id != self.read_request_id {
            return;
        }
        self.awaiting = Awaiting::Nothing;
        if let Some(timer) = self.read_timer.take() {
            cx.cancel_timer(timer);
        }
        self.observer.borrow_mut().counters.checkpoint_fetches += 1;
        if let Some(checkpoint) = fetch.checkpoint {
            // No instance of this workload uploads checkpoints.
            self.halt(format!(
                "client {}: the region keeps a checkpoint of {} at position {} that no instance \
                 uploaded",
                cx.node(),
                self.object_id.as_str(),
                checkpoint.position
            ));
            return;
        }
        if fetch.truncated_through > self.replica.position() {
            // Without a checkpoint, the object has no record at or below the truncation
            // point: the replica skips to it and reads on from there.
            self.replica.handle_gap(fetch.truncated_through);
            self.observer.borrow_mut().progress(
                cx.node(),
                self.replica.position(),
                self.replica.records_applied(),
            );
            self.request_log(cx);
        } else {
            // This member restored a snapshot that holds less of the log: try another.
            self.fail_over(cx);
        }
    }

    fn fail_over(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.follow_index = (self.follow_index + 1) % self.members.len();
        self.observer.borrow_mut().counters.failovers += 1;
        self.request_log(cx);
    }

    fn handle_log_entries(&mut self, cx: &mut Context<'_, GlobalMessage>, answer: LogEntries) {
        if self.awaiting != Awaiting::Log || answer.request_id != self.read_request_id {
            // A late answer to a request the instance gave up on, or a duplicate.
            return;
        }
        self.awaiting = Awaiting::Nothing;
        if let Some(timer) = self.read_timer.take() {
            cx.cancel_timer(timer);
        }
        self.observer.borrow_mut().counters.log_reads += 1;
        if answer.truncated_below.is_some() {
            self.request_checkpoint(cx);
            return;
        }
        let full = answer.entries.len() >= LOG_ENTRIES_PER_READ_MAX;
        self.apply_entries(cx, answer);
        self.after_progress(cx);
        if self.halted {
            return;
        }
        if full {
            self.request_log(cx);
        } else {
            self.poll_timer = Some(cx.set_timer(self.settings.log_poll_interval));
        }
    }

    fn apply_entries(&mut self, cx: &mut Context<'_, GlobalMessage>, answer: LogEntries) {
        let node = cx.node();
        if self.halted {
            return;
        }
        if answer.from_position != self.replica.position() + 1 {
            self.halt(format!(
                "client {node}: asked for the log from position {} but the answer starts at {}",
                self.replica.position() + 1,
                answer.from_position
            ));
            return;
        }
        for (position, entry) in answer.entries {
            let expected = self.replica.position() + 1;
            if position != expected {
                let what = if position < expected {
                    "applied twice"
                } else {
                    "missed"
                };
                self.halt(format!(
                    "client {node} ({}): got position {position} where {expected} was next: a \
                     record would be {what}",
                    self.region
                ));
                return;
            }
            // A global object's records stand in the order of the sealed epochs, a regional
            // object's in its region's log order: (position, 0) names that place.
            let (order, record, scope) = match entry {
                LogEntry::SequencedGlobal {
                    epoch_number,
                    index_in_epoch,
                    record,
                } if record.object_id == self.object_id => {
                    ((epoch_number, index_in_epoch), record, Scope::Global)
                }
                LogEntry::Regional(record) if record.object_id == self.object_id => {
                    ((position, 0), record, Scope::Regional)
                }
                // A pending global record is applied later, at its sequenced copy; other
                // objects' records and epoch ends only move the position.
                _ => {
                    self.replica.handle_gap(position);
                    continue;
                }
            };
            if scope != self.workload.scope() {
                self.halt(format!(
                    "client {node}: position {position} holds a {scope:?} record of the {:?} \
                     object {} (c{} s{})",
                    self.workload.scope(),
                    self.object_id.as_str(),
                    record.client_id,
                    record.request_sequence
                ));
                return;
            }
            self.apply_record(cx, position, order, &record);
            if self.halted {
                return;
            }
        }
        if answer.through_position > self.replica.position() {
            self.replica.handle_gap(answer.through_position);
        }
        self.observer.borrow_mut().progress(
            node,
            self.replica.position(),
            self.replica.records_applied(),
        );
    }

    fn apply_record(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        position: u64,
        order: (u64, u32),
        record: &Record,
    ) {
        let node = cx.node();
        let applied = self.replica.handle_record(
            position,
            RecordRef {
                client_id: record.client_id.get(),
                request_sequence: record.request_sequence.get(),
                method_id: record.method_id.get(),
                arguments: record.arguments.as_bytes(),
            },
        );
        let applied = match applied {
            Ok(applied) => applied,
            Err(stopped) => {
                self.halt(format!("client {node}: {stopped}"));
                return;
            }
        };
        let records_applied = self.replica.records_applied();
        {
            let mut observer = self.observer.borrow_mut();
            observer.applied(
                node,
                AppliedRecord {
                    position,
                    records_applied,
                    order,
                    client_id: applied.client_id,
                    request_sequence: applied.request_sequence,
                    call: CallSpec {
                        method_id: record.method_id.get(),
                        arguments: record.arguments.as_bytes().to_vec(),
                    },
                },
            );
            if let Some(checkpoint) = self.replica.poll_checkpoint() {
                observer.checkpoint(node, records_applied, checkpoint.state_hash);
            }
        }
        if applied.client_id == node {
            self.own_record_applied(cx, applied, order, records_applied);
        }
    }

    /// The replica applied a record of this instance: the call in flight completes; any other
    /// of its calls was applied before, so this would be a second application.
    fn own_record_applied(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        applied: Applied,
        order: (u64, u32),
        records_applied: u64,
    ) {
        let node = cx.node();
        let in_flight_sequence = self.in_flight.as_ref().map(|call| call.sequence);
        if in_flight_sequence != Some(applied.request_sequence) {
            self.observer.borrow_mut().violation(format!(
                "client {node}: its call s{} applied again at position {} (the call in flight \
                 is {in_flight_sequence:?})",
                applied.request_sequence, applied.position
            ));
            return;
        }
        let in_flight = self.in_flight.take().expect("checked above");
        if let Some(timer) = self.propose_timer.take() {
            cx.cancel_timer(timer);
        }
        {
            let mut observer = self.observer.borrow_mut();
            if let Some(call) = observer.call_mut(node, in_flight.sequence) {
                call.completion = Some(CallCompletion {
                    completed_at: cx.now(),
                    position: applied.position,
                    records_applied,
                    order,
                    outcome: applied.outcome,
                });
            }
        }
        if cx.rng().chance(self.settings.duplicate_probability) {
            // Propose the same call once more, as if the answer had been lost: the region must
            // answer with the first position and the replica must never apply it again.
            self.observer.borrow_mut().counters.deliberate_duplicates += 1;
            let request = self.request(&in_flight, node);
            let target = self.random_member(cx);
            cx.send(target, GlobalMessage::Propose(request));
        }
    }

    /// After the replica moved on: finish a read waiting for its barrier, and start the next
    /// operation if the instance can.
    fn after_progress(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.finish_sync_read(cx);
        if self.in_flight.is_none() && self.sync.is_none() && self.think_timer.is_none() {
            self.next_operation(cx);
        }
    }

    fn halt(&mut self, description: String) {
        self.halted = true;
        self.observer.borrow_mut().violation(description);
    }

    // Calls.

    fn request(&self, in_flight: &InFlight, node: NodeId) -> ProposeRequest {
        ProposeRequest {
            client_id: ClientId(node),
            request_sequence: RequestSequence(in_flight.sequence),
            object_id: self.object_id.clone(),
            method_id: MethodId(in_flight.call.method_id),
            arguments: Arguments::new(in_flight.call.arguments.clone())
                .expect("workload arguments are small"),
            scope: self.workload.scope(),
        }
    }

    fn random_member(&self, cx: &mut Context<'_, GlobalMessage>) -> NodeId {
        *cx.rng()
            .choose(&self.members)
            .expect("a region has members")
    }

    fn start_call(&mut self, cx: &mut Context<'_, GlobalMessage>, call: CallSpec) {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        self.observer.borrow_mut().operation(
            cx.node(),
            Operation::Call(CallEvent {
                sequence,
                call: call.clone(),
                invoked_at: cx.now(),
                acknowledged: None,
                completion: None,
            }),
        );
        let target = self.leader.target();
        let in_flight = InFlight {
            sequence,
            call,
            attempts: 0,
            target,
            ordered: false,
        };
        self.send_attempt(cx, in_flight, target);
    }

    fn send_attempt(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        mut in_flight: InFlight,
        target: NodeId,
    ) {
        if !self.session_open {
            // The first call waits until the region holds the instance's session.
            self.open_id += 1;
            cx.send(
                target,
                GlobalMessage::OpenSession {
                    open_id: self.open_id,
                    session_id: cx.node(),
                },
            );
            in_flight.target = target;
            self.in_flight = Some(in_flight);
            self.propose_timer = Some(cx.set_timer(self.settings.request_timeout));
            return;
        }
        in_flight.attempts += 1;
        in_flight.target = target;
        if in_flight.attempts > 1 {
            self.observer.borrow_mut().counters.retries += 1;
        }
        let request = self.request(&in_flight, cx.node());
        cx.send(target, GlobalMessage::Propose(request));
        self.in_flight = Some(in_flight);
        self.propose_timer = Some(cx.set_timer(self.settings.request_timeout));
    }

    fn handle_reply(&mut self, cx: &mut Context<'_, GlobalMessage>, from: NodeId, reply: Reply) {
        let node = cx.node();
        let (client, sequence) = reply.key();
        if client.get() != node {
            self.observer.borrow_mut().violation(format!(
                "client {node} got the reply meant for client {client}"
            ));
            return;
        }
        let sequence = sequence.get();
        let in_flight_sequence = self.in_flight.as_ref().map(|call| call.sequence);
        match reply {
            Reply::Proposed { position, .. } => {
                self.note_acknowledged(cx, sequence, position);
                if in_flight_sequence == Some(sequence) {
                    self.leader.handle_success(from);
                    if let Some(in_flight) = self.in_flight.as_mut() {
                        in_flight.ordered = true;
                    }
                    if let Some(timer) = self.propose_timer.take() {
                        cx.cancel_timer(timer);
                    }
                }
            }
            Reply::Refused { error, .. } => {
                if let ProposeError::TooOld { .. } | ProposeError::UnknownSession { .. } = error {
                    self.observer.borrow_mut().violation(format!(
                        "client {node}: sequence {sequence} refused: {error}"
                    ));
                }
                let Some(in_flight) = self.in_flight.as_ref() else {
                    return;
                };
                if in_flight.sequence != sequence || in_flight.ordered {
                    // The answer to an earlier attempt or to a deliberate duplicate.
                    return;
                }
                crate::workloads::common::follow_refusal(&mut self.leader, from, &error);
                if let Some(timer) = self.propose_timer.take() {
                    cx.cancel_timer(timer);
                }
                self.propose_timer = Some(cx.set_timer(CALL_RETRY_BACKOFF));
            }
        }
    }

    fn handle_session_reply(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        reply: SessionReply,
    ) {
        if self.session_open || reply.open_id != self.open_id {
            return;
        }
        if let Some(timer) = self.propose_timer.take() {
            cx.cancel_timer(timer);
        }
        match reply.result {
            Ok(()) => {
                self.session_open = true;
                self.leader.handle_success(from);
                if let Some(in_flight) = self.in_flight.clone() {
                    self.send_attempt(cx, in_flight, from);
                }
            }
            Err(error) => {
                match error {
                    OpenSessionError::NotLeader { leader_hint } => {
                        self.leader.handle_not_leader(from, leader_hint);
                    }
                    _ => self.leader.handle_failure(from),
                }
                self.propose_timer = Some(cx.set_timer(CALL_RETRY_BACKOFF));
            }
        }
    }

    /// A node said the call with `sequence` is ordered at `position`: every answer for one
    /// call must name the same position.
    fn note_acknowledged(&mut self, cx: &Context<'_, GlobalMessage>, sequence: u64, position: u64) {
        let node = cx.node();
        let now = cx.now();
        let mut observer = self.observer.borrow_mut();
        let Some(call) = observer.call_mut(node, sequence) else {
            observer.violation(format!(
                "client {node} got an acknowledgement of sequence {sequence}, which it never sent"
            ));
            return;
        };
        match call.acknowledged {
            None => call.acknowledged = Some((now, position)),
            Some((_, first)) if first != position => {
                observer.violation(format!(
                    "client {node} sequence {sequence} acknowledged at position {position} after \
                     {first} (ordered twice)"
                ));
            }
            Some(_) => {}
        }
    }

    fn handle_propose_timeout(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(in_flight) = self.in_flight.clone() else {
            return;
        };
        if in_flight.ordered {
            return;
        }
        // A timeout or the pause after a refusal (the tracker moved already, and the failure
        // below changes nothing more).
        self.leader.handle_failure(in_flight.target);
        let target = self.leader.target();
        self.send_attempt(cx, in_flight, target);
    }

    // Operations.

    /// Starts what comes next: a scripted call at once; else, once the copy shows the setup,
    /// a pause before a random operation.
    fn next_operation(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if self.halted || self.in_flight.is_some() || self.sync.is_some() {
            return;
        }
        if let Some(call) = self.scripted.pop_front() {
            self.start_call(cx, call);
            return;
        }
        if !self.set_up {
            if !self.workload.is_set_up(self.replica.object()) {
                return;
            }
            self.set_up = true;
            self.observer.borrow_mut().set_up(cx.node(), cx.now());
        }
        if !self.may_operate(cx) {
            return;
        }
        let low = u64::try_from(self.settings.think_time_min.as_nanos()).unwrap_or(u64::MAX);
        let high = u64::try_from(self.settings.think_time_max.as_nanos())
            .unwrap_or(u64::MAX)
            .max(low);
        let pause = Duration::from_nanos(cx.rng().range_inclusive(low, high));
        self.think_timer = Some(cx.set_timer(pause));
    }

    fn may_operate(&self, cx: &Context<'_, GlobalMessage>) -> bool {
        cx.now() < self.operations_until.get()
            && self.operations_done < self.settings.operations_max
    }

    fn random_operation(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        if self.halted || self.in_flight.is_some() || self.sync.is_some() || !self.may_operate(cx) {
            return;
        }
        self.operations_done += 1;
        if cx.rng().chance(self.settings.call_share) {
            let call = self.workload.random_call(cx.rng());
            self.start_call(cx, call);
            return;
        }
        let read = self.workload.random_read(cx.rng());
        if cx.rng().chance(self.settings.sync_read_share) {
            self.sync = Some(SyncInFlight {
                sync_id: 0,
                read,
                began_at: cx.now(),
                apply_through_position: None,
            });
            self.send_sync(cx);
            return;
        }
        let value = self.workload.read(self.replica.object(), &read);
        self.observer.borrow_mut().operation(
            cx.node(),
            Operation::Read(ReadEvent {
                read,
                value,
                records_applied: self.replica.records_applied(),
                at: cx.now(),
                sync: None,
            }),
        );
        self.next_operation(cx);
    }

    // Barriers.

    /// Asks a member for the barrier of the read waiting, under a new name (an answer to an
    /// earlier attempt is then told apart).
    fn send_sync(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let sync_id = self.next_sync_id;
        self.next_sync_id += 1;
        let Some(sync) = self.sync.as_mut() else {
            return;
        };
        sync.sync_id = sync_id;
        let member = self.random_member(cx);
        cx.send(member, GlobalMessage::Sync { sync_id });
        self.sync_timer = Some(cx.set_timer(self.settings.request_timeout));
    }

    fn handle_sync_reply(&mut self, cx: &mut Context<'_, GlobalMessage>, reply: SyncReply) {
        let Some(sync) = self.sync.as_mut() else {
            return;
        };
        if sync.sync_id != reply.sync_id() || sync.apply_through_position.is_some() {
            return;
        }
        if let Some(timer) = self.sync_timer.take() {
            cx.cancel_timer(timer);
        }
        match reply {
            SyncReply::Ready {
                apply_through_position,
                ..
            } => {
                sync.apply_through_position = Some(apply_through_position);
                self.finish_sync_read(cx);
                if self.sync.is_none() {
                    self.next_operation(cx);
                }
            }
            SyncReply::Refused { .. } => {
                // No leader yet, the coordinator unreachable, or a timeout: ask again soon.
                self.observer.borrow_mut().counters.retries += 1;
                self.sync_timer = Some(cx.set_timer(CALL_RETRY_BACKOFF));
            }
        }
    }

    /// Reads once the replica has applied through the barrier's position.
    fn finish_sync_read(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let Some(sync) = self.sync.as_ref() else {
            return;
        };
        let Some(apply_through_position) = sync.apply_through_position else {
            return;
        };
        if self.replica.position() < apply_through_position || self.halted {
            return;
        }
        let sync = self.sync.take().expect("checked above");
        let value = self.workload.read(self.replica.object(), &sync.read);
        let mut observer = self.observer.borrow_mut();
        observer.counters.syncs += 1;
        observer.operation(
            cx.node(),
            Operation::Read(ReadEvent {
                read: sync.read,
                value,
                records_applied: self.replica.records_applied(),
                at: cx.now(),
                sync: Some(SyncBarrier {
                    began_at: sync.began_at,
                    apply_through_position,
                }),
            }),
        );
    }
}

impl<W: ObjectWorkload> Process for ApplicationProcess<W> {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.observer.borrow_mut().register(cx.node(), &self.region);
        // Instances start reading at different members, so that one crash does not stall all.
        self.follow_index = cx.rng().below(self.members.len() as u64) as usize;
        self.leader = crate::workloads::common::spread_tracker(&self.members, cx.rng());
        self.request_log(cx);
        self.next_operation(cx);
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        match message {
            GlobalMessage::LogEntries(answer) => self.handle_log_entries(cx, answer),
            GlobalMessage::CheckpointFetched { request_id, fetch } => {
                self.handle_checkpoint_fetched(cx, request_id, fetch);
            }
            GlobalMessage::Reply(reply) => self.handle_reply(cx, from, reply),
            GlobalMessage::SessionReply(reply) => self.handle_session_reply(cx, from, reply),
            GlobalMessage::SyncReply(reply) => self.handle_sync_reply(cx, reply),
            _ => {}
        }
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        if Some(timer) == self.read_timer {
            self.read_timer = None;
            if self.awaiting != Awaiting::Nothing && !self.halted {
                self.awaiting = Awaiting::Nothing;
                self.fail_over(cx);
            }
        } else if Some(timer) == self.sync_timer {
            self.sync_timer = None;
            if self.sync.is_some() {
                self.send_sync(cx);
            }
        } else if Some(timer) == self.poll_timer {
            self.poll_timer = None;
            if !self.halted {
                self.request_log(cx);
            }
        } else if Some(timer) == self.propose_timer {
            self.propose_timer = None;
            self.handle_propose_timeout(cx);
        } else if Some(timer) == self.think_timer {
            self.think_timer = None;
            self.random_operation(cx);
        }
    }
}

impl<W: ObjectWorkload> Application for ApplicationProcess<W> {
    fn is_busy(&self) -> bool {
        self.in_flight.is_some() || self.sync.is_some() || !self.scripted.is_empty()
    }
}
