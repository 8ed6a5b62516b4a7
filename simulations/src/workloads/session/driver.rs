//! [`SessionDriver`]: the simulator's driver of the SDK's sans-IO [`ClientSession`], shared by
//! every workload whose application instances run the session (the session workload's
//! registers, the sdk workload's example objects).
//!
//! The driver does what production's tokio and gRPC driver does and nothing more: it hands the
//! session's requests to the region's members as simulator messages, hands their answers
//! back, and arms a timer for [`ClientSession::poll_timeout`]. A log stream is carried as
//! production's server stream is: the driver asks the member the session subscribed to for
//! the applied log from the stream's next position ([`GlobalMessage::ReadLog`]) with a credit
//! of [`LOG_READ_CREDIT`] answers, and forwards each answer as one piece. The member holds a
//! read that finds nothing new until something is applied or `log_read_wait` passes, and after
//! each answer holds it again from the position after it while credit is left, so that records
//! reach the stream as they are applied, as production's stream pushes them, without a request
//! per answer (production's stream sends none either). The driver renews the credit when half
//! of it is used, so that the stream never waits for a renewal; an answer that does not come
//! within `log_read_wait` and `log_read_timeout` is asked for again from the same member. Which
//! member the stream reads from, and when it moves, is the session's decision (its stall
//! timeout), as in production. The driver carries every stream the session asks for, by the
//! stream key each subscription names: one for a correct session, one per object in the
//! planted stream-per-object mode.
//!
//! The application on top owns the driver, makes its calls, barriers and opens on
//! [`SessionDriver::session_mut`], and drains the session's events between
//! [`SessionDriver::flush`]es.

use std::collections::BTreeMap;
use std::time::Duration;

use dsss::session::{
    ClientSession, FetchedCheckpoint, LogEntry as SessionEntry, LogRecord, PositionedEntry,
    Request, Response, Transmit,
};
use dsss_region_node::{
    CheckpointOutcome, CheckpointUpload, CloseSessionError, LogEntry, OpenSessionError,
    ProposeError, ProposeRequest, Reply, SyncReply, UploadError,
};
use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, Record, RequestSequence, Scope};

use crate::network::NodeId;
use crate::process::{Context, TimerId};
use crate::workloads::global::{GlobalMessage, LogEntries, ReadLogRequest};

/// The answers one log read asks a member for ([`ReadLogRequest::answers_max`]); the driver
/// asks again, renewing the credit, once half of them have come.
pub const LOG_READ_CREDIT: u32 = 16;

/// The most order keys of sequenced global records the driver keeps (see
/// [`SessionDriver::order_key`]); older ones are dropped first.
pub const ORDER_KEYS_KEPT_MAX: usize = 4_096;

/// The most problems a driver keeps between two drains.
const VIOLATIONS_KEPT_MAX: usize = 64;

/// A log stream as the driver carries it.
struct StreamState {
    /// The session's id of the subscription.
    request_id: u64,
    node_id: NodeId,
    next_position: u64,
    object_ids: Vec<String>,
    /// The id of the newest log read.
    read_id: u64,
    /// The id of the read before it: answers the member pushed for it before it took the
    /// newer one are taken too, when they start where the stream stands.
    previous_read_id: u64,
    /// The answers of the newest read still to come.
    credit: u32,
    read_timer: Option<TimerId>,
}

/// A call the session proposed, as the driver saw it go out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    /// The object.
    pub object_id: String,
    /// The method.
    pub method_id: u32,
    /// The call's request sequence (kept by every retry).
    pub request_sequence: u64,
}

/// The simulator's driver of one [`ClientSession`]. See the module documentation.
pub struct SessionDriver {
    /// Names the instance in the problems the driver reports.
    label: String,
    session: ClientSession,
    log_read_timeout: Duration,
    log_read_wait: Duration,
    /// The streams carried, by the session's stream key.
    streams: BTreeMap<u64, StreamState>,
    next_read_id: u64,
    /// Proposals in flight: request sequence to the session's request id and the member.
    proposals: BTreeMap<u64, (u64, NodeId)>,
    /// Session opens, checkpoint fetches and barriers in flight: the session's request id to
    /// the member.
    asked: BTreeMap<u64, NodeId>,
    session_timer: Option<(TimerId, u64)>,
    /// When the session's timer last fired.
    session_timer_fired_at: Option<u64>,
    /// The (epoch, index in epoch) of the sequenced global records forwarded, by position.
    order_keys: BTreeMap<u64, (u64, u32)>,
    /// Proposals of calls not seen before (first attempts), since the last drain.
    proposed: Vec<Proposal>,
    /// Calls a member answered as ordered: (request sequence, position), since the last drain.
    acknowledged: Vec<(u64, u64)>,
    /// Proposal attempts the session followed with another attempt of the same call before
    /// any answer came, since the last drain.
    proposals_unanswered: usize,
    /// Log reads answered, since the last drain.
    log_reads: u64,
    violations: Vec<String>,
    /// Whether the session's checkpoint uploads go to the members (see
    /// [`SessionDriver::carry_uploads`]); when not, an upload is a problem.
    uploads_carried: bool,
}

/// What a driver counted and saw since the last [`SessionDriver::drain`].
#[derive(Debug, Default)]
pub struct DriverNotes {
    /// First attempts of proposed calls, in the order they went out.
    pub proposed: Vec<Proposal>,
    /// Calls a member answered as ordered: (request sequence, position).
    pub acknowledged: Vec<(u64, u64)>,
    /// Attempts passed over without an answer (the session's attempt timeout).
    pub proposals_unanswered: usize,
    /// Log reads answered.
    pub log_reads: u64,
    /// Problems: a deadline the session left due, a request the simulated region cannot
    /// serve, a message meant for a node.
    pub violations: Vec<String>,
}

impl SessionDriver {
    /// A driver of `session`, named `label` in its problems, that asks a member for the log
    /// again after `log_read_timeout` without an answer, beyond the `log_read_wait` the member
    /// may hold a read that finds nothing new.
    pub fn new(
        label: String,
        session: ClientSession,
        log_read_timeout: Duration,
        log_read_wait: Duration,
    ) -> SessionDriver {
        SessionDriver {
            label,
            session,
            log_read_timeout,
            log_read_wait,
            streams: BTreeMap::new(),
            next_read_id: 1,
            proposals: BTreeMap::new(),
            asked: BTreeMap::new(),
            session_timer: None,
            session_timer_fired_at: None,
            order_keys: BTreeMap::new(),
            proposed: Vec::new(),
            acknowledged: Vec::new(),
            proposals_unanswered: 0,
            log_reads: 0,
            violations: Vec::new(),
            uploads_carried: false,
        }
    }

    /// Carries the session's checkpoint uploads to the members, as production's driver does.
    /// Off by default: the workloads whose copies must make no checkpoint report an upload as
    /// a problem.
    pub fn carry_uploads(&mut self) {
        self.uploads_carried = true;
    }

    /// The session, for commands and events.
    pub fn session_mut(&mut self) -> &mut ClientSession {
        &mut self.session
    }

    /// The session.
    pub fn session(&self) -> &ClientSession {
        &self.session
    }

    /// The session's clock: simulated time since the start, monotonic as production's is (the
    /// node clocks' skew is for the HLC, not for timeouts).
    pub fn now_us(cx: &Context<'_, GlobalMessage>) -> u64 {
        micros(cx.now().since_start())
    }

    /// Where the sequenced global record at region log `position` stands in the global order:
    /// (epoch, index in epoch), for a record the driver forwarded lately.
    pub fn order_key(&self, position: u64) -> Option<(u64, u32)> {
        self.order_keys.get(&position).copied()
    }

    /// Takes what the driver counted and saw since the last drain.
    pub fn drain(&mut self) -> DriverNotes {
        DriverNotes {
            proposed: std::mem::take(&mut self.proposed),
            acknowledged: std::mem::take(&mut self.acknowledged),
            proposals_unanswered: std::mem::take(&mut self.proposals_unanswered),
            log_reads: std::mem::take(&mut self.log_reads),
            violations: std::mem::take(&mut self.violations),
        }
    }

    fn violation(&mut self, problem: String) {
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(format!("{}: {problem}", self.label));
        }
    }

    /// Sends every request the session queued.
    pub fn flush(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        while let Some(transmit) = self.session.poll_transmit() {
            self.send(cx, transmit);
        }
    }

    /// Arms the timer for the session's next deadline.
    pub fn arm_timer(&mut self, cx: &mut Context<'_, GlobalMessage>) {
        let wanted = self.session.poll_timeout();
        if self.session_timer.map(|(_, at)| at) == wanted {
            return;
        }
        if let Some((timer, _)) = self.session_timer.take() {
            cx.cancel_timer(timer);
        }
        if let Some(at) = wanted {
            // A deadline already due is acted on at once; one the session left due after a
            // timeout (a violation, noted in `handle_timer`) must not spin the simulation at
            // one instant, so it is looked at again a millisecond later.
            let now_us = Self::now_us(cx);
            let after = if at > now_us || self.session_timer_fired_at != Some(now_us) {
                Duration::from_micros(at.saturating_sub(now_us))
            } else {
                Duration::from_millis(1)
            };
            self.session_timer = Some((cx.set_timer(after), at));
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
            Request::CloseSession { session_id } => {
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::CloseSession {
                        close_id: request_id,
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
                }
                self.streams.insert(
                    stream,
                    StreamState {
                        request_id,
                        node_id,
                        next_position: from_position,
                        object_ids,
                        read_id: 0,
                        previous_read_id: 0,
                        credit: 0,
                        read_timer: None,
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
                match self
                    .proposals
                    .insert(request_sequence, (request_id, node_id))
                {
                    // An answer removes the attempt: this one's predecessor got none.
                    Some(_) => self.proposals_unanswered += 1,
                    None => self.proposed.push(Proposal {
                        object_id,
                        method_id,
                        request_sequence,
                    }),
                }
                cx.send(node_id, GlobalMessage::Propose(request));
            }
            Request::FetchCheckpoint { object_id, scope } => {
                let Ok(object_id) = ObjectId::new(object_id) else {
                    return;
                };
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::FetchCheckpoint {
                        request_id,
                        object_id,
                        global: scope == Scope::Global,
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
            Request::UploadCheckpoint {
                object_id,
                position,
                state,
                state_hash,
                client_id,
            } if self.uploads_carried => {
                let Ok(object_id) = ObjectId::new(object_id) else {
                    return;
                };
                self.asked.insert(request_id, node_id);
                cx.send(
                    node_id,
                    GlobalMessage::UploadCheckpoint {
                        upload_id: request_id,
                        upload: CheckpointUpload {
                            object_id,
                            position,
                            state,
                            state_hash,
                            client_id: ClientId(client_id),
                        },
                    },
                );
            }
            Request::UploadCheckpoint { .. } => {
                // Uploads are not carried: the copies must make none.
                self.violation("the session asked to upload a checkpoint".to_owned());
            }
        }
    }

    fn read_log(&mut self, cx: &mut Context<'_, GlobalMessage>, key: u64) {
        let read_id = self.next_read_id;
        self.next_read_id += 1;
        let wait = self.log_read_wait;
        let answer_due = self.log_read_timeout + wait;
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        cancel(cx, stream.read_timer.take());
        stream.previous_read_id = stream.read_id;
        stream.read_id = read_id;
        stream.credit = LOG_READ_CREDIT;
        stream.read_timer = Some(cx.set_timer(answer_due));
        cx.send(
            stream.node_id,
            GlobalMessage::ReadLog(ReadLogRequest {
                request_id: read_id,
                from_position: stream.next_position,
                wait_us: u64::try_from(wait.as_micros()).unwrap_or(u64::MAX),
                answers_max: LOG_READ_CREDIT,
                stream_id: key,
            }),
        );
    }

    fn handle_log_entries(&mut self, cx: &mut Context<'_, GlobalMessage>, answer: LogEntries) {
        // Read ids are unique across the driver's streams: the answer names its stream.
        let Some((&key, stream)) = self.streams.iter_mut().find(|(_, stream)| {
            stream.read_id == answer.request_id || stream.previous_read_id == answer.request_id
        }) else {
            return;
        };
        let current = answer.request_id == stream.read_id;
        if answer.from_position > stream.next_position {
            // A gap: an answer before it was lost or overtaken. Production's stream never
            // loses or reorders a piece, so the driver asks again at once from where the
            // stream stands rather than waiting for its timer; an overtaken answer that comes
            // later is still taken.
            if current {
                self.read_log(cx, key);
            }
            return;
        }
        // Entries below where the stream stands came in an earlier answer (the member answered
        // a renewal from where the stream stood when it went out, while pushes it had sent for
        // the replaced read were on their way): only the rest is new. An answer with nothing
        // new counts only when it starts where the stream stands (the member's sign that it
        // has applied nothing since).
        if answer.through_position < stream.next_position
            && answer.from_position != stream.next_position
        {
            return;
        }
        if current {
            stream.credit = stream.credit.saturating_sub(1);
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
        let first_new = stream.next_position;
        self.log_reads += 1;
        // The member filters as production's stream does: records of other objects are left
        // out, the ends of epochs are kept.
        let entries = answer
            .entries
            .iter()
            .filter(|(position, _)| *position >= first_new)
            .filter_map(|(position, entry)| entry_for_session(*position, entry, &stream.object_ids))
            .collect();
        stream.next_position = answer.through_position + 1;
        // The member holds the read again for the next answer; a renewal goes out at half the
        // credit, so that the member never runs out while the renewal travels.
        if stream.credit <= LOG_READ_CREDIT / 2 {
            self.read_log(cx, key);
        } else {
            let answer_due = self.log_read_timeout + self.log_read_wait;
            stream.read_timer = Some(cx.set_timer(answer_due));
        }
        for (position, entry) in answer
            .entries
            .iter()
            .filter(|(position, _)| *position >= first_new)
        {
            if let LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                ..
            } = entry
            {
                self.order_keys
                    .insert(*position, (*epoch_number, *index_in_epoch));
            }
        }
        while self.order_keys.len() > ORDER_KEYS_KEPT_MAX {
            self.order_keys.pop_first();
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
            Reply::Proposed { position, .. } => {
                self.acknowledged.push((sequence.0, position));
                Response::Proposed { position }
            }
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

    /// Hands a member's answer to the session. Every message an instance gets is an answer to
    /// its session; anything else is noted as a problem.
    pub fn handle_message(
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
                        Ok(()) => Response::SessionOpened { log_session_id: 0 },
                        Err(OpenSessionError::NotLeader { leader_hint }) => {
                            Response::NotLeader { leader_hint }
                        }
                        Err(error @ OpenSessionError::Overloaded) => Response::Busy {
                            reason: error.to_string(),
                        },
                        Err(
                            error @ (OpenSessionError::Dropped | OpenSessionError::ClockFenced(_)),
                        ) => Response::Failed {
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
            GlobalMessage::SessionCloseReply(reply) => {
                if self.asked.remove(&reply.close_id).is_some() {
                    let response = match reply.result {
                        Ok(_) => Response::SessionClosed,
                        Err(CloseSessionError::NotLeader { leader_hint }) => {
                            Response::NotLeader { leader_hint }
                        }
                        Err(error @ CloseSessionError::Overloaded) => Response::Busy {
                            reason: error.to_string(),
                        },
                        Err(error @ CloseSessionError::Dropped) => Response::Failed {
                            reason: error.to_string(),
                        },
                        Err(error @ CloseSessionError::InvalidId) => Response::Refused {
                            reason: error.to_string(),
                        },
                    };
                    self.session
                        .handle_response(now_us, from, reply.close_id, response);
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
                        released_through_position: fetch.released_through,
                    };
                    self.session
                        .handle_response(now_us, from, request_id, response);
                }
            }
            GlobalMessage::CheckpointUploaded(reply) => {
                if self.asked.remove(&reply.upload_id).is_some() {
                    // As production's driver maps the gRPC answer and its status codes.
                    let response = match reply.result {
                        Ok(outcome) => Response::Uploaded {
                            hash_mismatch: outcome == CheckpointOutcome::HashMismatch,
                        },
                        Err(UploadError::NotLeader { leader_hint }) => {
                            Response::NotLeader { leader_hint }
                        }
                        Err(
                            error @ (UploadError::Overloaded | UploadError::ResourceExhausted(_)),
                        ) => Response::Busy {
                            reason: error.to_string(),
                        },
                        Err(error @ UploadError::Invalid(_)) => Response::Refused {
                            reason: error.to_string(),
                        },
                        Err(error @ UploadError::Dropped) => Response::Failed {
                            reason: error.to_string(),
                        },
                    };
                    self.session
                        .handle_response(now_us, from, reply.upload_id, response);
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
            other => self.violation(format!(
                "got a message meant for a node from {from}: {other:?}"
            )),
        }
    }

    /// Handles `timer` if it is the driver's: the session's deadline, or a stream's log read
    /// that went unanswered. Returns false for a timer of the application's.
    pub fn handle_timer(&mut self, cx: &mut Context<'_, GlobalMessage>, timer: TimerId) -> bool {
        let now_us = Self::now_us(cx);
        if self.session_timer.is_some_and(|(id, _)| id == timer) {
            self.session_timer = None;
            self.session_timer_fired_at = Some(now_us);
            self.session.handle_timeout(now_us);
            let overdue = self.session.overdue(now_us);
            if !overdue.is_empty() {
                // A deadline the session does not act on would spin the simulation at one
                // instant forever.
                self.violation(format!(
                    "deadlines still due after a timeout at {now_us} us: {overdue:?}"
                ));
            }
            return true;
        }
        if let Some((&key, stream)) = self
            .streams
            .iter_mut()
            .find(|(_, stream)| stream.read_timer == Some(timer))
        {
            // No answer (the member is down, paused, or the message was lost): ask it again;
            // the session moves the stream when it waits on it and it stalls.
            stream.read_timer = None;
            self.read_log(cx, key);
            return true;
        }
        false
    }
}

fn cancel(cx: &mut Context<'_, GlobalMessage>, timer: Option<TimerId>) {
    if let Some(timer) = timer {
        cx.cancel_timer(timer);
    }
}

/// `duration` in whole microseconds, saturating.
pub fn micros(duration: Duration) -> u64 {
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
        LogEntry::EpochSealed { skipped_from, .. } if *skipped_from > 0 => {
            SessionEntry::EpochsSkipped
        }
        LogEntry::EpochSealed { .. } => SessionEntry::Other,
        _ => return None,
    };
    Some(PositionedEntry { position, entry })
}
