//! [`SessionInstance`]: a simulated application instance that runs the SDK's own
//! [`ClientSession`], exactly as `dsss::Client` does in production, with several registers open
//! at once (global ones, and one regional register of its region).
//!
//! The process is the session's driver and nothing more: it hands the session's requests to
//! the region's members as simulator messages, hands their answers back, and arms a timer for
//! [`ClientSession::poll_timeout`]. A log stream is carried as production's server stream
//! is: the process asks the member the session subscribed to for the applied log from the
//! stream's next position ([`GlobalMessage::ReadLog`]), forwards each answer as one piece,
//! and asks again at once when the answer was full, else after a poll interval; an answer
//! that does not come is asked for again from the same member. Which member the stream reads
//! from, and when it moves, is the session's decision (its stall timeout), as in production.
//! The process carries every stream the session asks for, by the stream key each subscription
//! names: one for a correct session, one per object in the planted stream-per-object mode
//! ([`InstanceSettings::planted_stream_per_object`]).
//!
//! The application on top: it opens every register at once, then, one operation at a time,
//! writes a value unique in the run (a register's write returns the value it replaced), reads a
//! copy locally, or asks for a `sync()` barrier and then reads. Everything is recorded with
//! the simulated time for the position-free order checks.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use dsss::replica::{ReplicaConfig, SharedReplica};
use dsss::session::{
    ClientSession, Event, FetchedCheckpoint, LogEntry as SessionEntry, LogRecord, PositionedEntry,
    Request, Response, SessionConfig, Transmit, new_copy,
};
use dsss::{Codec, Postcard};
use dsss_examples::Register;
use dsss_region_node::{
    LogEntry, OpenSessionError, ProposeError, ProposeRequest, Reply, SyncReply,
};
use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, Record, RequestSequence, Scope};

use super::history::{InstanceHistory, SessionObserver, SessionOperation};
use crate::network::NodeId;
use crate::process::{Context, Process, TimerId};
use crate::time::SimTime;
use crate::workloads::global::{
    Application, GlobalMessage, LOG_ENTRIES_PER_READ_MAX, LogEntries, ReadLogRequest,
};

/// The method id of `Register::write`.
const WRITE_METHOD_ID: u32 = 1;

/// How an instance behaves.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InstanceSettings {
    /// The shortest pause between two operations.
    pub think_time_min: Duration,
    /// The longest pause.
    pub think_time_max: Duration,
    /// The share of operations that are writes; the others are reads.
    pub write_share: f64,
    /// The share of reads that follow a `sync()` barrier.
    pub sync_read_share: f64,
    /// The most operations one instance makes.
    pub operations_max: usize,
    /// How long one request may go unanswered before the session tries another member.
    pub attempt_timeout: Duration,
    /// How long the log stream may stall while something waits on it.
    pub stream_stall_timeout: Duration,
    /// How long a call, an open or a barrier may take over all attempts.
    pub call_timeout: Duration,
    /// How long the process waits for a member's answer to a log read before asking again.
    pub log_read_timeout: Duration,
    /// The pause between two log reads when the last answer held everything the member had.
    pub log_poll_interval: Duration,
    /// Runs the session in its planted stream-per-object mode, the bug the order checks must
    /// catch: every object follows the log with a stream of its own, so one copy may lag
    /// another inside the instance.
    pub planted_stream_per_object: bool,
}

impl InstanceSettings {
    /// Rejects settings an instance cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.think_time_min > self.think_time_max {
            return Err(format!(
                "think_time_min {:?} is above think_time_max {:?}",
                self.think_time_min, self.think_time_max
            ));
        }
        for (name, share) in [
            ("write_share", self.write_share),
            ("sync_read_share", self.sync_read_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name} {share} is outside 0..=1"));
            }
        }
        for (name, duration) in [
            ("attempt_timeout", self.attempt_timeout),
            ("stream_stall_timeout", self.stream_stall_timeout),
            ("call_timeout", self.call_timeout),
            ("log_read_timeout", self.log_read_timeout),
            ("log_poll_interval", self.log_poll_interval),
        ] {
            if duration.is_zero() {
                return Err(format!("{name} is zero"));
            }
        }
        Ok(())
    }
}

/// One register the instance holds.
struct Held {
    scope: Scope,
    copy: Arc<SharedReplica<Register>>,
}

/// The operation the instance waits on.
#[derive(Clone, Debug)]
enum Waiting {
    /// Opens not finished yet, by open id.
    Opens(BTreeMap<u64, String>),
    /// Nothing: the think timer runs.
    Thinking,
    /// A write.
    Write {
        call_id: u64,
        object: String,
        value: u64,
        began_at: SimTime,
    },
    /// A barrier, then a read of `object` (`None`: every object, the final round).
    Sync {
        sync_id: u64,
        object: Option<String>,
        began_at: SimTime,
    },
    /// Done: no more operations.
    Done,
}

/// A log stream as the process carries it.
struct StreamState {
    /// The session's id of the subscription.
    request_id: u64,
    node_id: NodeId,
    next_position: u64,
    object_ids: Vec<String>,
    /// The id of the outstanding log read.
    read_id: u64,
    read_timer: Option<TimerId>,
    poll_timer: Option<TimerId>,
}

/// A simulated application instance running the SDK's session. See the module documentation.
pub struct SessionInstance {
    settings: InstanceSettings,
    index: u64,
    session: ClientSession,
    objects: BTreeMap<String, Held>,
    waiting: Waiting,
    /// The streams carried, by the session's stream key.
    streams: BTreeMap<u64, StreamState>,
    next_read_id: u64,
    /// Proposals in flight: request sequence to the session's request id.
    proposals: BTreeMap<u64, (u64, NodeId)>,
    /// Checkpoint fetches and barriers in flight: the session's request id to the member.
    asked: BTreeMap<u64, NodeId>,
    session_timer: Option<(TimerId, u64)>,
    /// When the session's timer last fired.
    session_timer_fired_at: Option<u64>,
    think_timer: Option<TimerId>,
    next_value: u64,
    operations_done: usize,
    operations_until: Rc<Cell<SimTime>>,
    final_round: Rc<Cell<bool>>,
    observer: Rc<RefCell<SessionObserver>>,
}

impl SessionInstance {
    /// Instance number `index` (unique in the run, from 1) running as node `node` in `region`
    /// whose members are `members`, holding `objects` (name and scope).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: InstanceSettings,
        index: u64,
        node: NodeId,
        region: String,
        members: Vec<NodeId>,
        objects: &[(String, Scope)],
        operations_until: Rc<Cell<SimTime>>,
        final_round: Rc<Cell<bool>>,
        observer: Rc<RefCell<SessionObserver>>,
    ) -> Result<SessionInstance, String> {
        settings.validate()?;
        // Members send a call's answer to the node its session id names: the instance's node
        // id, or no answer would ever reach it.
        let mut config = SessionConfig::new(node, members);
        config.attempt_timeout_us = micros(settings.attempt_timeout);
        config.stream_stall_timeout_us = micros(settings.stream_stall_timeout);
        config.call_timeout_us = micros(settings.call_timeout);
        config.planted_stream_per_object = settings.planted_stream_per_object;
        // The session id is the instance's node id too, so that the nodes route answers to it
        // (sessions outlive every run: the region's idle timeout is far longer).
        let session = ClientSession::new(config, node).map_err(|error| error.to_string())?;
        // No checkpoints: the simulated region takes no uploads, so the log is never truncated
        // below a copy and every open starts from the log's beginning.
        let replica = ReplicaConfig {
            checkpoint_every_records: 0,
            ..ReplicaConfig::default()
        };
        let objects = objects
            .iter()
            .map(|(name, scope)| {
                (
                    name.clone(),
                    Held {
                        scope: *scope,
                        copy: Arc::new(new_copy::<Register>(name, replica)),
                    },
                )
            })
            .collect();
        observer
            .borrow_mut()
            .instances
            .insert(index, InstanceHistory::new(&region));
        Ok(SessionInstance {
            settings,
            index,
            session,
            objects,
            waiting: Waiting::Opens(BTreeMap::new()),
            streams: BTreeMap::new(),
            next_read_id: 1,
            proposals: BTreeMap::new(),
            asked: BTreeMap::new(),
            session_timer: None,
            session_timer_fired_at: None,
            think_timer: None,
            next_value: 1,
            operations_done: 0,
            operations_until,
            final_round,
            observer,
        })
    }

    fn now_us(cx: &Context<'_, GlobalMessage>) -> u64 {
        // The session's clock is monotonic, as production's is; the node clocks' skew is for
        // the HLC, not for timeouts.
        micros(cx.now().since_start())
    }

    /// Sends what the session queued, delivers its events, arms its timer.
    fn pump(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        while let Some(transmit) = self.session.poll_transmit() {
            self.send(cx, transmit);
        }
        while let Some(event) = self.session.poll_event() {
            self.handle_event(cx, event);
        }
        // Events may have started operations whose requests are queued now.
        while let Some(transmit) = self.session.poll_transmit() {
            self.send(cx, transmit);
        }
        let wanted = self.session.poll_timeout();
        if self.session_timer.map(|(_, at)| at) != wanted {
            if let Some((timer, _)) = self.session_timer.take() {
                cx.cancel_timer(timer);
            }
            if let Some(at) = wanted {
                // A deadline already due is acted on at once; one the session left due after a
                // timeout (a violation, noted in `handle_timer`) must not spin the simulation
                // at one instant, so it is looked at again a millisecond later.
                let now_us = Self::now_us(cx);
                let after = if at > now_us || self.session_timer_fired_at != Some(now_us) {
                    Duration::from_micros(at.saturating_sub(now_us))
                } else {
                    Duration::from_millis(1)
                };
                self.session_timer = Some((cx.set_timer(after), at));
            }
        }
    }

    fn send(&mut self, cx: &mut Context<'_, GlobalMessage>, transmit: Transmit) {
        let Transmit {
            node_id,
            request_id,
            request,
        } = transmit;
        match request {
            Request::OpenSession { session_id } => {
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::OpenSession {
                        open_id: request_id,
                        session_id,
                    },
                );
            }
            Request::Subscribe {
                stream,
                from_position,
                object_ids,
            } => {
                // The subscription replaces the earlier one of its stream only.
                if let Some(old) = self.streams.remove(&stream) {
                    cancel(cx, old.read_timer);
                    cancel(cx, old.poll_timer);
                }
                self.streams.insert(
                    stream,
                    StreamState {
                        request_id,
                        node_id,
                        next_position: from_position,
                        object_ids,
                        read_id: 0,
                        read_timer: None,
                        poll_timer: None,
                    },
                );
                self.read_log(cx, stream);
            }
            Request::Propose {
                object_id,
                scope,
                method_id,
                arguments,
                client_id,
                request_sequence,
            } => {
                let request = match propose_request(
                    &object_id,
                    scope,
                    method_id,
                    arguments,
                    client_id,
                    request_sequence,
                ) {
                    Ok(request) => request,
                    Err(reason) => {
                        self.session.handle_response(
                            Self::now_us(cx),
                            node_id,
                            request_id,
                            Response::Refused { reason },
                        );
                        return;
                    }
                };
                if self
                    .proposals
                    .insert(request_sequence, (request_id, node_id))
                    .is_some()
                {
                    // An answer removes the attempt: this one's predecessor got none.
                    self.observer.borrow_mut().proposals_unanswered += 1;
                }
                cx.send(node_id, GlobalMessage::Propose(request));
            }
            Request::FetchCheckpoint { object_id } => {
                let Ok(object_id) = ObjectId::new(object_id) else {
                    return;
                };
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::FetchCheckpoint {
                        request_id,
                        object_id,
                    },
                );
            }
            Request::Sync { .. } => {
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::Sync {
                        sync_id: request_id,
                    },
                );
            }
            Request::UploadCheckpoint { .. } => {
                // The replicas here make no checkpoints (see `new`).
                self.observer.borrow_mut().violation(format!(
                    "instance {} asked to upload a checkpoint",
                    self.index
                ));
            }
        }
    }

    fn read_log(&mut self, cx: &mut Context<'_, GlobalMessage>, key: u64) {
        let read_id = self.next_read_id;
        self.next_read_id += 1;
        let log_read_timeout = self.settings.log_read_timeout;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        cancel(cx, stream.read_timer.take());
        stream.read_id = read_id;
        stream.read_timer = Some(cx.set_timer(log_read_timeout));
        cx.send(
            stream.node_id,
            GlobalMessage::ReadLog(ReadLogRequest {
                request_id: read_id,
                from_position: stream.next_position,
            }),
        );
    }

    fn handle_log_entries(&mut self, cx: &mut Context<'_, GlobalMessage>, answer: LogEntries) {
        let poll_interval = self.settings.log_poll_interval;
        // Read ids are unique across the instance's streams: the answer names its stream.
        let Some((&key, stream)) = self
            .streams
            .iter_mut()
            .find(|(_, stream)| stream.read_id == answer.request_id)
        else {
            return;
        };
        if answer.from_position != stream.next_position {
            return;
        }
        cancel(cx, stream.read_timer.take());
        let node_id = stream.node_id;
        let request_id = stream.request_id;
        if let Some(first_retained) = answer.truncated_below {
            self.streams.remove(&key);
            self.session.handle_response(
                Self::now_us(cx),
                node_id,
                request_id,
                Response::StreamEnded {
                    first_retained_position: Some(first_retained),
                    reason: format!("node {node_id} keeps the log from {first_retained}"),
                },
            );
            return;
        }
        let full = answer.entries.len() >= LOG_ENTRIES_PER_READ_MAX;
        // The member filters as production's stream does: records of other objects are left
        // out, the ends of epochs are kept.
        let entries = answer
            .entries
            .iter()
            .filter_map(|(position, entry)| entry_for_session(*position, entry, &stream.object_ids))
            .collect();
        stream.next_position = answer.through_position + 1;
        if full {
            self.read_log(cx, key);
        } else {
            stream.poll_timer = Some(cx.set_timer(poll_interval));
        }
        self.session.handle_response(
            Self::now_us(cx),
            node_id,
            request_id,
            Response::LogPiece {
                entries,
                through_position: answer.through_position,
            },
        );
    }

    fn handle_event(&mut self, cx: &mut Context<'_, GlobalMessage>, event: Event) {
        let now = cx.now();
        match event {
            Event::Opened { open_id, outcome } => {
                let Waiting::Opens(opens) = &mut self.waiting else {
                    return;
                };
                let Some(name) = opens.remove(&open_id) else {
                    return;
                };
                if let Err(error) = outcome {
                    self.observer.borrow_mut().violation(format!(
                        "instance {} could not open {name}: {error}",
                        self.index
                    ));
                    self.waiting = Waiting::Done;
                    return;
                }
                if opens.is_empty() {
                    self.observer.borrow_mut().opened += 1;
                    self.think(cx);
                }
            }
            Event::CallDone { call_id, outcome } => {
                let Waiting::Write {
                    call_id: waited,
                    object,
                    value,
                    began_at,
                } = self.waiting.clone()
                else {
                    return;
                };
                if waited != call_id {
                    return;
                }
                let replaced = outcome
                    .ok()
                    .and_then(|bytes| Postcard::decode::<u64>(&bytes).ok());
                self.record(SessionOperation::Write {
                    object,
                    value,
                    replaced,
                    began_at,
                    ended_at: now,
                });
                // Reading every register right after a write is what shows one copy lagging
                // another inside the instance, if the client let that happen.
                let names: Vec<String> = self.objects.keys().cloned().collect();
                for name in names {
                    self.read(&name, false, now, now);
                }
                self.think(cx);
            }
            Event::SyncDone { sync_id, outcome } => {
                let Waiting::Sync {
                    sync_id: waited,
                    object,
                    began_at,
                } = self.waiting.clone()
                else {
                    return;
                };
                if waited != sync_id {
                    return;
                }
                if outcome.is_ok() {
                    let names: Vec<String> = match object {
                        Some(name) => vec![name],
                        None => self.objects.keys().cloned().collect(),
                    };
                    for name in names {
                        self.read(&name, true, began_at, now);
                    }
                } else {
                    self.observer.borrow_mut().syncs_failed += 1;
                }
                if self.waiting_final() {
                    let counters = self.session.counters();
                    let mut observer = self.observer.borrow_mut();
                    observer.finished += 1;
                    observer.counters.stream_moves += counters.stream_moves;
                    observer.counters.stream_stalls += counters.stream_stalls;
                    observer.counters.call_retries += counters.call_retries;
                    observer.counters.copies_joined += counters.copies_joined;
                    observer.counters.copies_restored += counters.copies_restored;
                    drop(observer);
                    self.waiting = Waiting::Done;
                } else {
                    self.think(cx);
                }
            }
            Event::CheckpointDiverged { object_id, .. } => {
                self.observer.borrow_mut().violation(format!(
                    "instance {}: checkpoint divergence on {object_id}",
                    self.index
                ));
            }
        }
    }

    fn waiting_final(&self) -> bool {
        matches!(&self.waiting, Waiting::Sync { object: None, .. })
    }

    fn think(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        self.waiting = Waiting::Thinking;
        let min = self.settings.think_time_min;
        let max = self.settings.think_time_max;
        let span = micros(max.saturating_sub(min));
        let pause = min
            + Duration::from_micros(if span == 0 {
                0
            } else {
                cx.rng().next_u64() % (span + 1)
            });
        self.think_timer = Some(cx.set_timer(pause));
    }

    /// The next operation, or the final round, or nothing more.
    fn operate(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now = cx.now();
        let now_us = Self::now_us(cx);
        if now >= self.operations_until.get()
            || self.operations_done >= self.settings.operations_max
        {
            if self.final_round.get() {
                match self.session.sync(now_us) {
                    Ok(sync_id) => {
                        self.waiting = Waiting::Sync {
                            sync_id,
                            object: None,
                            began_at: now,
                        }
                    }
                    Err(error) => {
                        self.observer
                            .borrow_mut()
                            .violation(format!("instance {}: final sync: {error}", self.index));
                        self.waiting = Waiting::Done;
                    }
                }
            } else {
                // Idle until the harness starts the final round.
                self.think(cx);
            }
            return;
        }
        self.operations_done += 1;
        let names: Vec<&String> = self.objects.keys().collect();
        let object = names[(cx.rng().next_u64() % names.len() as u64) as usize].clone();
        let draw = cx.rng().next_f64();
        if draw < self.settings.write_share {
            // Unique in the run: the instance's index in the high bits.
            let value = (self.index << 32) | self.next_value;
            self.next_value += 1;
            let arguments = Postcard::encode(&(value,)).expect("a u64 encodes");
            match self
                .session
                .call(now_us, &object, WRITE_METHOD_ID, arguments)
            {
                Ok(call_id) => {
                    self.waiting = Waiting::Write {
                        call_id,
                        object,
                        value,
                        began_at: now,
                    }
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .violation(format!("instance {}: call refused: {error}", self.index));
                    self.think(cx);
                }
            }
        } else if cx.rng().next_f64() < self.settings.sync_read_share {
            match self.session.sync(now_us) {
                Ok(sync_id) => {
                    self.waiting = Waiting::Sync {
                        sync_id,
                        object: Some(object),
                        began_at: now,
                    }
                }
                Err(error) => {
                    self.observer
                        .borrow_mut()
                        .violation(format!("instance {}: sync refused: {error}", self.index));
                    self.think(cx);
                }
            }
        } else {
            self.read(&object, false, now, now);
            self.think(cx);
        }
    }

    fn read(&mut self, name: &str, synced: bool, began_at: SimTime, ended_at: SimTime) {
        let Some(held) = self.objects.get(name) else {
            return;
        };
        let view = self.session.view();
        let _reading = view.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = held.copy.read(Register::value);
        let position = held.copy.lock_read().position();
        self.record(SessionOperation::Read {
            object: name.to_owned(),
            value,
            synced,
            position,
            began_at,
            ended_at,
        });
    }

    fn record(&mut self, operation: SessionOperation) {
        let mut observer = self.observer.borrow_mut();
        if let Some(history) = observer.instances.get_mut(&self.index) {
            history.push(operation);
        }
    }

    fn handle_reply(&mut self, cx: &mut Context<'_, GlobalMessage>, from: NodeId, reply: Reply) {
        let (_, sequence) = reply.key();
        let Some((request_id, node_id)) = self.proposals.get(&sequence.0).copied() else {
            return;
        };
        if node_id != from {
            // An answer to an earlier attempt at another member: the session waits on the
            // latest attempt only.
            return;
        }
        self.proposals.remove(&sequence.0);
        let response = match reply {
            Reply::Proposed { position, .. } => Response::Proposed { position },
            Reply::Refused { error, .. } => match error {
                ProposeError::NotLeader { leader_hint } => Response::NotLeader { leader_hint },
                ProposeError::Overloaded
                | ProposeError::GlobalOverloaded { .. }
                | ProposeError::LogFull { .. } => Response::Busy {
                    reason: error.to_string(),
                },
                ProposeError::Dropped => Response::Failed {
                    reason: error.to_string(),
                },
                ProposeError::UnknownSession { session_id, .. } => {
                    Response::SessionUnknown { session_id }
                }
                other => Response::Refused {
                    reason: other.to_string(),
                },
            },
        };
        self.session
            .handle_response(Self::now_us(cx), from, request_id, response);
    }
}

impl Process for SessionInstance {
    type Message = GlobalMessage;

    fn handle_start(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let now_us = Self::now_us(cx);
        let mut opens = BTreeMap::new();
        let names: Vec<(String, Scope, Arc<SharedReplica<Register>>)> = self
            .objects
            .iter()
            .map(|(name, held)| (name.clone(), held.scope, Arc::clone(&held.copy)))
            .collect();
        for (name, scope, copy) in names {
            match self.session.open(now_us, &name, scope, copy) {
                Ok(open_id) => {
                    opens.insert(open_id, name);
                }
                Err(error) => self.observer.borrow_mut().violation(format!(
                    "instance {} could not begin opening {name}: {error}",
                    self.index
                )),
            }
        }
        self.waiting = Waiting::Opens(opens);
        self.pump(cx);
    }

    fn handle_message(
        &mut self,
        cx: &mut Context<'_, GlobalMessage>,
        from: NodeId,
        message: GlobalMessage,
    ) {
        let now_us = Self::now_us(cx);
        match message {
            GlobalMessage::LogEntries(answer) => self.handle_log_entries(cx, answer),
            GlobalMessage::Reply(reply) => self.handle_reply(cx, from, reply),
            GlobalMessage::SessionReply(reply) => {
                if self.asked.remove(&reply.open_id).is_some() {
                    let response = match reply.result {
                        Ok(()) => Response::SessionOpened,
                        Err(OpenSessionError::NotLeader { leader_hint }) => {
                            Response::NotLeader { leader_hint }
                        }
                        Err(error @ OpenSessionError::Overloaded) => Response::Busy {
                            reason: error.to_string(),
                        },
                        Err(error @ OpenSessionError::Dropped) => Response::Failed {
                            reason: error.to_string(),
                        },
                        Err(error @ (OpenSessionError::Full(_) | OpenSessionError::InvalidId)) => {
                            Response::Refused {
                                reason: error.to_string(),
                            }
                        }
                    };
                    self.session
                        .handle_response(now_us, from, reply.open_id, response);
                }
            }
            GlobalMessage::CheckpointFetched { request_id, fetch } => {
                if self.asked.remove(&request_id).is_some() {
                    let response = Response::Checkpoint {
                        checkpoint: fetch.checkpoint.map(|checkpoint| FetchedCheckpoint {
                            position: checkpoint.position,
                            state: checkpoint.state,
                            state_hash: checkpoint.state_hash.to_vec(),
                        }),
                        truncated_through_position: fetch.truncated_through,
                    };
                    self.session
                        .handle_response(now_us, from, request_id, response);
                }
            }
            GlobalMessage::SyncReply(reply) => {
                let request_id = reply.sync_id();
                if self.asked.remove(&request_id).is_some() {
                    let response = match reply {
                        SyncReply::Ready {
                            apply_through_position,
                            ..
                        } => Response::Barrier {
                            apply_through_position,
                        },
                        SyncReply::Refused { error, .. } => Response::Failed {
                            reason: error.to_string(),
                        },
                    };
                    self.session
                        .handle_response(now_us, from, request_id, response);
                }
            }
            other => self.observer.borrow_mut().violation(format!(
                "instance {} got a message meant for a node from {from}: {other:?}",
                self.index
            )),
        }
        self.pump(cx);
    }

    fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) {
        let now_us = Self::now_us(cx);
        if self.session_timer.is_some_and(|(id, _)| id == timer) {
            self.session_timer = None;
            self.session_timer_fired_at = Some(now_us);
            self.session.handle_timeout(now_us);
            let overdue = self.session.overdue(now_us);
            if !overdue.is_empty() {
                // A deadline the session does not act on would spin the simulation at one
                // instant forever.
                self.observer.borrow_mut().violation(format!(
                    "instance {}: deadlines still due after a timeout at {now_us} us: \
                     {overdue:?}",
                    self.index
                ));
            }
        } else if self.think_timer == Some(timer) {
            self.think_timer = None;
            if matches!(self.waiting, Waiting::Thinking) {
                self.operate(cx);
            }
        } else if let Some((&key, stream)) = self.streams.iter_mut().find(|(_, stream)| {
            stream.read_timer == Some(timer) || stream.poll_timer == Some(timer)
        }) {
            // No answer (the member is down, paused, or the message was lost): ask it again;
            // the session moves the stream when it waits on it and it stalls. Or the poll
            // interval passed.
            stream.read_timer = None;
            stream.poll_timer = None;
            self.read_log(cx, key);
        }
        self.pump(cx);
    }
}

impl Application for SessionInstance {
    fn is_busy(&self) -> bool {
        !matches!(self.waiting, Waiting::Thinking | Waiting::Done)
    }
}

fn cancel(cx: &mut Context<'_, GlobalMessage>, timer: Option<TimerId>) {
    if let Some(timer) = timer {
        cx.cancel_timer(timer);
    }
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

fn propose_request(
    object_id: &str,
    scope: Scope,
    method_id: u32,
    arguments: Vec<u8>,
    client_id: u64,
    request_sequence: u64,
) -> Result<ProposeRequest, String> {
    Ok(ProposeRequest {
        client_id: ClientId(client_id),
        request_sequence: RequestSequence(request_sequence),
        object_id: ObjectId::new(object_id).map_err(|error| error.to_string())?,
        method_id: MethodId(method_id),
        arguments: Arguments::new(arguments).map_err(|error| error.to_string())?,
        scope,
    })
}

/// The session's form of one log entry, or `None` when the stream's filter leaves it out.
fn entry_for_session(
    position: u64,
    entry: &LogEntry,
    filter: &[String],
) -> Option<PositionedEntry> {
    let record = |record: &Record| LogRecord {
        object_id: record.object_id.as_str().to_owned(),
        client_id: record.client_id.0,
        request_sequence: record.request_sequence.0,
        method_id: record.method_id.0,
        arguments: record.arguments.as_bytes().to_vec(),
    };
    let wanted = |record: &Record| filter.iter().any(|name| name == record.object_id.as_str());
    let entry = match entry {
        LogEntry::Regional(regional) if wanted(regional) => {
            SessionEntry::Regional(record(regional))
        }
        LogEntry::SequencedGlobal { record: global, .. } if wanted(global) => {
            SessionEntry::SequencedGlobal(record(global))
        }
        LogEntry::EpochSealed { .. } => SessionEntry::Other,
        _ => return None,
    };
    Some(PositionedEntry { position, entry })
}
