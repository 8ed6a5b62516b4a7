//! The tokio driver of a [`ClientSession`]: it moves bytes between the session and the region's
//! gRPC API and wakes the application's waits. It decides nothing: where a request goes, when
//! to retry, when the stream moves to another member, all come from the session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dsss_wire::proto::{self, close_session_reply, log_entry, open_session_reply, propose_reply};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::{Code, Request};

use crate::error::CallError;
use crate::region_client::RegionConnections;
use crate::session::{
    ClientSession, Event, FetchedCheckpoint, LogEntry, LogRecord, PositionedEntry,
    Request as SessionRequest, Response, Transmit,
};

/// The most answers and stream pieces waiting for the session; a full queue holds back the
/// stream (gRPC flow control then holds back the member).
const RESPONSES_QUEUED_MAX: usize = 256;

/// An answer for the session: the member, the request it answers, the answer.
type Answer = (u64, u64, Response);

/// Where the outcomes of the application's waits go.
#[derive(Default)]
pub(crate) struct Waits {
    pub(crate) opens: HashMap<u64, oneshot::Sender<Result<(), CallError>>>,
    pub(crate) calls: HashMap<u64, oneshot::Sender<Result<Vec<u8>, CallError>>>,
    pub(crate) syncs: HashMap<u64, oneshot::Sender<Result<(), CallError>>>,
    /// Every `Client::close` waiting (clones may close at once: the session closes once).
    pub(crate) closes: Vec<oneshot::Sender<Result<(), CallError>>>,
    /// How the session's close ended, once it did.
    pub(crate) closed: Option<Result<(), CallError>>,
}

/// How long a close sent by a dropped client may take; nobody waits for it.
const DROP_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the application's handles and the driver task share.
pub(crate) struct Shared {
    pub(crate) session: Mutex<ClientSession>,
    pub(crate) waits: Mutex<Waits>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) connections: RegionConnections,
    pub(crate) region: String,
    /// The id that names the client to the region (its subscriptions are counted by it).
    client_id: u64,
    started: Instant,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Shared {
    /// The last handle is gone: the driver stops, and the region session is closed without
    /// waiting, so that it frees its room in the region at once (best effort: when the close
    /// is lost, the region ends the session after its idle timeout).
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        let now_us = self.now_us();
        let Some(transmit) = lock(&self.session).close_session_now(now_us) else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(stub) = self.connections.stub(transmit.node_id) else {
            return;
        };
        let region = self.region.clone();
        let connections = self.connections.clone();
        runtime.spawn(async move {
            let node_id = transmit.node_id;
            let outcome = tokio::time::timeout(
                DROP_CLOSE_TIMEOUT,
                unary(stub, &connections, node_id, transmit.request),
            )
            .await;
            if !matches!(outcome, Ok(Response::SessionClosed)) {
                tracing::debug!(
                    region = %region,
                    node_id,
                    outcome = ?outcome,
                    "the close of a dropped client's session did not finish; the region ends \
                     it after its idle timeout"
                );
            }
        });
    }
}

impl Shared {
    /// Starts the driver of `session`.
    pub(crate) fn start(
        session: ClientSession,
        connections: RegionConnections,
        region: String,
    ) -> Arc<Shared> {
        let wake = Arc::new(Notify::new());
        let client_id = session.config().client_id;
        let shared = Arc::new(Shared {
            session: Mutex::new(session),
            waits: Mutex::new(Waits::default()),
            wake: Arc::clone(&wake),
            connections,
            region,
            client_id,
            started: Instant::now(),
            task: Mutex::new(None),
        });
        let task = tokio::spawn(run(Arc::downgrade(&shared), wake));
        *lock(&shared.task) = Some(task);
        shared
    }

    /// Microseconds since the driver started: the session's clock.
    pub(crate) fn now_us(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Runs `command` on the session and wakes the driver to send what it queued.
    pub(crate) fn command<R>(
        &self,
        command: impl FnOnce(&mut ClientSession, u64, &mut Waits) -> R,
    ) -> R {
        let now_us = self.now_us();
        let outcome = {
            let mut session = lock(&self.session);
            let mut waits = lock(&self.waits);
            command(&mut session, now_us, &mut waits)
        };
        self.wake.notify_one();
        outcome
    }
}

/// The driver loop: hand answers and timeouts to the session, send what it queues, deliver
/// its events; stops when the client is gone.
async fn run(shared: Weak<Shared>, wake: Arc<Notify>) {
    let (answers, mut received) = mpsc::channel::<Answer>(RESPONSES_QUEUED_MAX);
    let mut stream: Option<JoinHandle<()>> = None;
    let mut next: Option<Answer> = None;
    loop {
        let deadline = {
            let Some(shared) = shared.upgrade() else {
                break;
            };
            let now_us = shared.now_us();
            let mut events = Vec::new();
            let deadline = {
                let mut session = lock(&shared.session);
                let mut pending = next.take();
                while let Some((node_id, request_id, response)) =
                    pending.take().or_else(|| received.try_recv().ok())
                {
                    session.handle_response(now_us, node_id, request_id, response);
                }
                if session.poll_timeout().is_some_and(|at| at <= now_us) {
                    session.handle_timeout(now_us);
                }
                while let Some(transmit) = session.poll_transmit() {
                    send(&shared, transmit, &answers, &mut stream);
                }
                while let Some(event) = session.poll_event() {
                    events.push(event);
                }
                session.poll_timeout()
            };
            deliver(&shared, events);
            deadline.map(|at_us| shared.started + Duration::from_micros(at_us))
        };
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = wake.notified() => {}
            answer = received.recv() => next = answer,
            () = sleep => {}
        }
    }
    if let Some(stream) = stream {
        stream.abort();
    }
}

fn deliver(shared: &Shared, events: Vec<Event>) {
    if events.is_empty() {
        return;
    }
    let mut waits = lock(&shared.waits);
    for event in events {
        match event {
            Event::Opened { open_id, outcome } => {
                if let Some(wait) = waits.opens.remove(&open_id) {
                    let _ = wait.send(outcome);
                }
            }
            Event::CallDone { call_id, outcome } => {
                if let Some(wait) = waits.calls.remove(&call_id) {
                    let _ = wait.send(outcome);
                }
            }
            Event::SessionClosed { outcome, .. } => {
                for wait in waits.closes.drain(..) {
                    let _ = wait.send(outcome.clone());
                }
                waits.closed = Some(outcome);
            }
            Event::SyncDone { sync_id, outcome } => {
                if let Some(wait) = waits.syncs.remove(&sync_id) {
                    let _ = wait.send(outcome);
                }
            }
            Event::CheckpointDiverged {
                object_id,
                position,
            } => tracing::error!(
                region = %shared.region,
                object = %object_id,
                position,
                "checkpoint hash differs from another replica's at the same position: a method \
                 of this object is not deterministic"
            ),
        }
    }
}

/// Sends one transmit: a stream replaces the one before; every other request is one unary
/// call whose answer comes back through `answers`.
fn send(
    shared: &Shared,
    transmit: Transmit,
    answers: &mpsc::Sender<Answer>,
    stream: &mut Option<JoinHandle<()>>,
) {
    let Transmit {
        node_id,
        request_id,
        request,
    } = transmit;
    let answers = answers.clone();
    let stub = match shared.connections.stub(node_id) {
        Ok(stub) => stub,
        Err(error) => {
            // Members come from the session's own configuration: this cannot name another.
            let _ = answers.try_send((
                node_id,
                request_id,
                Response::Refused {
                    reason: error.to_string(),
                },
            ));
            return;
        }
    };
    // A correct session has one stream (one key), so the one task here is replaced by each
    // new subscription.
    if let SessionRequest::Subscribe {
        from_position,
        object_ids,
        ..
    } = request
    {
        if let Some(previous) = stream.take() {
            previous.abort();
        }
        let client_id = shared.client_id;
        let region = shared.region.clone();
        *stream = Some(tokio::spawn(async move {
            let request = proto::SubscribeRequest {
                from_position,
                object_ids,
                client_id,
            };
            let ended = follow(stub, node_id, request_id, request, &answers).await;
            let first_retained_position = first_retained_position(&ended);
            if !matches!(ended.code(), Code::Cancelled | Code::Unavailable) {
                // Bounds and refusals are worth an operator's eye; the session moves the
                // stream to another member after a backoff.
                tracing::warn!(
                    region = %region,
                    node_id,
                    code = ?ended.code(),
                    message = ended.message(),
                    "the log stream ended"
                );
            }
            let _ = answers
                .send((
                    node_id,
                    request_id,
                    Response::StreamEnded {
                        first_retained_position,
                        reason: format!("node {node_id}: {:?}: {}", ended.code(), ended.message()),
                    },
                ))
                .await;
        }));
        return;
    }
    let connections = shared.connections.clone();
    tokio::spawn(async move {
        let response = unary(stub, &connections, node_id, request).await;
        let _ = answers.send((node_id, request_id, response)).await;
    });
}

/// Forwards the pieces of one log stream until it ends; returns why it ended.
async fn follow(
    mut stub: dsss_wire::proto::region_client_client::RegionClientClient<
        dsss_wire::grpc::VersionedChannel,
    >,
    node_id: u64,
    request_id: u64,
    request: proto::SubscribeRequest,
    answers: &mpsc::Sender<Answer>,
) -> tonic::Status {
    let mut pieces = match stub.subscribe(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => return status,
    };
    loop {
        match pieces.message().await {
            Ok(Some(reply)) => {
                let piece = Response::LogPiece {
                    entries: reply.entries.into_iter().map(entry_from_wire).collect(),
                    through_position: reply.through_position,
                };
                if answers.send((node_id, request_id, piece)).await.is_err() {
                    return tonic::Status::cancelled("the client is gone");
                }
            }
            Ok(None) => return tonic::Status::unavailable("the log stream ended"),
            Err(status) => return status,
        }
    }
}

/// The oldest position the member keeps, when `ended` says the stream needed one below it:
/// only a member's own truncation answer carries it. Any other `OUT_OF_RANGE` (a message over
/// a size limit, say) is a failure like the rest, never a truncation.
fn first_retained_position(ended: &tonic::Status) -> Option<u64> {
    if ended.code() != Code::OutOfRange {
        return None;
    }
    ended
        .metadata()
        .get(dsss_wire::FIRST_RETAINED_POSITION_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn entry_from_wire(entry: proto::LogEntry) -> PositionedEntry {
    let record = |record: proto::Record| LogRecord {
        object_id: record.object_id,
        client_id: record.client_id,
        request_sequence: record.request_sequence,
        method_id: record.method_id,
        arguments: record.arguments,
    };
    let kind = match entry.entry {
        Some(log_entry::Entry::Regional(regional)) => LogEntry::Regional(record(regional)),
        Some(log_entry::Entry::Global(sequenced)) => match sequenced.record {
            Some(global) => LogEntry::SequencedGlobal(record(global)),
            None => LogEntry::Other,
        },
        Some(log_entry::Entry::EpochSealed(sealed)) if sealed.first_skipped_epoch_number > 0 => {
            LogEntry::EpochsSkipped
        }
        _ => LogEntry::Other,
    };
    PositionedEntry {
        position: entry.position,
        entry: kind,
    }
}

/// One unary request, mapped to what the session understands; a proposal travels in the
/// connection's next `ProposeBatch` request ([`crate::propose_batcher`]). The session bounds
/// the wait itself; the gRPC deadline only frees the connection's resources.
async fn unary(
    mut stub: dsss_wire::proto::region_client_client::RegionClientClient<
        dsss_wire::grpc::VersionedChannel,
    >,
    connections: &RegionConnections,
    node_id: u64,
    request: SessionRequest,
) -> Response {
    let deadline = Duration::from_secs(30);
    let outcome = match request {
        SessionRequest::OpenSession { session_id } => {
            let mut request = Request::new(proto::OpenSessionRequest { session_id });
            request.set_timeout(deadline);
            stub.open_session(request)
                .await
                .map(|reply| match reply.into_inner().outcome {
                    Some(open_session_reply::Outcome::Opened(opened)) => Response::SessionOpened {
                        log_session_id: opened.log_session_id,
                    },
                    Some(open_session_reply::Outcome::NotLeader(not_leader)) => {
                        Response::NotLeader {
                            leader_hint: (not_leader.leader_node_id != 0)
                                .then_some(not_leader.leader_node_id),
                        }
                    }
                    None => Response::Failed {
                        reason: format!("node {node_id} sent an empty reply"),
                    },
                })
        }
        SessionRequest::CloseSession { session_id } => {
            let mut request = Request::new(proto::CloseSessionRequest { session_id });
            request.set_timeout(deadline);
            stub.close_session(request)
                .await
                .map(|reply| match reply.into_inner().outcome {
                    Some(close_session_reply::Outcome::Closed(_)) => Response::SessionClosed,
                    Some(close_session_reply::Outcome::NotLeader(not_leader)) => {
                        Response::NotLeader {
                            leader_hint: (not_leader.leader_node_id != 0)
                                .then_some(not_leader.leader_node_id),
                        }
                    }
                    None => Response::Failed {
                        reason: format!("node {node_id} sent an empty reply"),
                    },
                })
        }
        SessionRequest::Propose {
            object_id,
            scope,
            method_id,
            arguments,
            client_id,
            request_sequence,
        } => {
            let request = proto::ProposeRequest {
                object_id,
                method_id,
                arguments,
                client_id,
                request_sequence,
                scope: proto::Scope::from(scope).into(),
            };
            let answer = match connections.propose(node_id, request, deadline).await {
                Ok(answer) => answer,
                // Members come from the session's own configuration: this cannot name another.
                Err(error) => {
                    return Response::Refused {
                        reason: error.to_string(),
                    };
                }
            };
            answer.map(|reply| match reply.outcome {
                Some(propose_reply::Outcome::Committed(committed)) => Response::Proposed {
                    position: committed.position,
                },
                Some(propose_reply::Outcome::NotLeader(not_leader)) => Response::NotLeader {
                    leader_hint: (not_leader.leader_node_id != 0)
                        .then_some(not_leader.leader_node_id),
                },
                Some(propose_reply::Outcome::SessionUnknown(unknown)) => Response::SessionUnknown {
                    session_id: unknown.session_id,
                },
                None => Response::Failed {
                    reason: format!("node {node_id} sent an empty reply"),
                },
            })
        }
        SessionRequest::FetchCheckpoint { object_id, scope } => {
            let mut request = Request::new(proto::FetchCheckpointRequest {
                object_id,
                scope: proto::Scope::from(scope) as i32,
            });
            request.set_timeout(deadline);
            stub.fetch_checkpoint(request).await.map(|reply| {
                let reply = reply.into_inner();
                Response::Checkpoint {
                    checkpoint: reply.checkpoint.map(|checkpoint| FetchedCheckpoint {
                        position: checkpoint.position,
                        state: checkpoint.state,
                        state_hash: checkpoint.state_hash,
                    }),
                    truncated_through_position: reply.truncated_through_position,
                    released_through_position: reply.released_through_position,
                }
            })
        }
        SessionRequest::UploadCheckpoint {
            object_id,
            position,
            state,
            state_hash,
            client_id,
        } => {
            let mut request = Request::new(proto::UploadCheckpointRequest {
                checkpoint: Some(proto::Checkpoint {
                    object_id,
                    position,
                    state,
                    state_hash: state_hash.to_vec(),
                }),
                client_id,
            });
            request.set_timeout(deadline);
            stub.upload_checkpoint(request).await.map(|reply| {
                let reply = reply.into_inner();
                match reply.not_leader {
                    Some(not_leader) => Response::NotLeader {
                        leader_hint: (not_leader.leader_node_id != 0)
                            .then_some(not_leader.leader_node_id),
                    },
                    None => Response::Uploaded {
                        hash_mismatch: reply.outcome
                            == proto::CheckpointOutcome::HashMismatch as i32,
                    },
                }
            })
        }
        SessionRequest::Sync { object_ids } => {
            let mut request = Request::new(proto::SyncRequest { object_ids });
            request.set_timeout(deadline);
            stub.sync(request).await.map(|reply| Response::Barrier {
                apply_through_position: reply.into_inner().apply_through_position,
            })
        }
        SessionRequest::Subscribe { .. } => unreachable!("streams are sent by `send`"),
    };
    outcome.unwrap_or_else(|status| response_from_status(node_id, &status))
}

/// What a failed gRPC call means to the session.
fn response_from_status(node_id: u64, status: &tonic::Status) -> Response {
    let reason = format!("node {node_id}: {:?}: {}", status.code(), status.message());
    match status.code() {
        Code::InvalidArgument
        | Code::FailedPrecondition
        | Code::OutOfRange
        | Code::Unimplemented
        | Code::PermissionDenied
        | Code::Unauthenticated => Response::Refused { reason },
        Code::ResourceExhausted => Response::Busy { reason },
        _ => Response::Failed { reason },
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_members_truncation_answer_reads_as_truncation() {
        // What tonic says when a reply passes the message size limit.
        let too_large = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 41943040 bytes, the limit is: \
             33554432 bytes",
        );
        assert_eq!(first_retained_position(&too_large), None);

        let mut truncated = tonic::Status::out_of_range("position 3 is no longer retained");
        truncated
            .metadata_mut()
            .insert(dsss_wire::FIRST_RETAINED_POSITION_HEADER, 17u64.into());
        assert_eq!(first_retained_position(&truncated), Some(17));

        let mut garbled = tonic::Status::out_of_range("position 3 is no longer retained");
        garbled.metadata_mut().insert(
            dsss_wire::FIRST_RETAINED_POSITION_HEADER,
            "seventeen".parse().expect("ASCII"),
        );
        assert_eq!(first_retained_position(&garbled), None);

        let mut other = tonic::Status::unavailable("stopping");
        other
            .metadata_mut()
            .insert(dsss_wire::FIRST_RETAINED_POSITION_HEADER, 17u64.into());
        assert_eq!(first_retained_position(&other), None);
    }
}
