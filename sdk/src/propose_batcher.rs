//! [`ProposeBatcher`]: the calls proposed at once on one connection to one member, carried
//! together by `ProposeBatch` requests.
//!
//! Every `Propose` is a gRPC call of its own: an HTTP/2 stream opened and closed, headers
//! encoded and parsed on both sides, a task on the node. Under load that per-call work was a
//! large share of a region's CPU time, and the raft leader orders the calls of one round
//! together anyway. So the callers of one connection hand their calls to one task, which sends
//! them to the member in `ProposeBatch` requests: each request takes every call waiting when
//! it leaves (up to [`PROPOSE_BATCH_CALLS_MAX`] calls and [`PROPOSE_BATCH_ARGUMENTS_BYTES_MAX`]
//! bytes of arguments): the calls that came while the task was sending the last request leave
//! together in the next. At most [`BATCHES_IN_FLIGHT_MAX`] requests are in flight at once. A
//! lone call leaves at once, alone: nothing waits for company.
//!
//! Each call keeps its own outcome, and its caller keeps its own timeout and retries; a batch
//! that fails as a whole (the member unreachable, the request refused) fails each of its calls
//! with that status, as their own `Propose` would have failed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsss_wire::grpc::VersionedChannel;
use dsss_wire::proto::region_client_client::RegionClientClient;
use dsss_wire::proto::{self, propose_batch_outcome};
use dsss_wire::{PROPOSE_BATCH_ARGUMENTS_BYTES_MAX, PROPOSE_BATCH_CALLS_MAX};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tonic::{Code, Request, Status};

/// The most `ProposeBatch` requests in flight to one member from one connection: more calls
/// wait for one to come back, and leave together with the next. A bound, not a pacing: on the
/// development machine (`dsss bench region`, 4 connections, 64 clients) 1, 2 or 4 requests in
/// flight per connection committed about 12,700 records/s, and 64 about 15,000, with less CPU
/// per record on the nodes: calls held back for a request to return reach the leader in bursts,
/// while calls sent as they come keep its next raft round filled.
pub const BATCHES_IN_FLIGHT_MAX: usize = 64;

/// The most calls waiting for a batch on one connection to one member; a caller beyond waits
/// for room before its call is queued.
pub const CALLS_QUEUED_MAX: usize = 4_096;

/// What a caller gets back: the member's answer to its call, or the status its call failed
/// with.
pub type ProposeAnswer = Result<proto::ProposeReply, Status>;

/// One call waiting for a batch.
struct QueuedCall {
    call: proto::ProposeRequest,
    timeout: Duration,
    answer: oneshot::Sender<ProposeAnswer>,
}

/// How many `ProposeBatch` requests one connection sent to one member, and how many calls
/// they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProposeBatchCounts {
    /// Requests sent.
    pub requests: u64,
    /// Calls they carried.
    pub calls: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    calls: AtomicU64,
}

/// The batching task of one connection to one member, started by the first call (it needs the
/// caller's tokio runtime) and again when the runtime it ran on is gone.
#[derive(Debug)]
pub struct ProposeBatcher {
    client: RegionClientClient<VersionedChannel>,
    queue: Mutex<Option<mpsc::Sender<QueuedCall>>>,
    counters: Arc<Counters>,
}

impl ProposeBatcher {
    /// A batcher that sends over `client`; no task runs until the first call.
    pub fn new(client: RegionClientClient<VersionedChannel>) -> Self {
        ProposeBatcher {
            client,
            queue: Mutex::new(None),
            counters: Arc::default(),
        }
    }

    /// The requests sent so far and the calls they carried.
    pub fn counts(&self) -> ProposeBatchCounts {
        ProposeBatchCounts {
            requests: self.counters.requests.load(Ordering::Relaxed),
            calls: self.counters.calls.load(Ordering::Relaxed),
        }
    }

    /// Proposes `call` in the next batch, and gives the member's answer to it. `timeout`
    /// bounds the batch's request on the member (the caller bounds its own wait).
    pub async fn propose(&self, call: proto::ProposeRequest, timeout: Duration) -> ProposeAnswer {
        let (answer, answered) = oneshot::channel();
        let mut queued = QueuedCall {
            call,
            timeout,
            answer,
        };
        // A queue whose task is gone (its runtime shut down) is replaced once.
        for _ in 0..2 {
            let queue = self.queue();
            match queue.send(queued).await {
                Ok(()) => {
                    return answered.await.unwrap_or_else(|_| {
                        Err(Status::unavailable(
                            "the connection's batching task stopped before the call was answered",
                        ))
                    });
                }
                Err(mpsc::error::SendError(returned)) => {
                    queued = returned;
                    let mut slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                    if slot.as_ref().is_some_and(|held| held.same_channel(&queue)) {
                        *slot = None;
                    }
                }
            }
        }
        Err(Status::unavailable(
            "the connection's batching task could not be started",
        ))
    }

    /// The queue of the running task, started now if none runs.
    fn queue(&self) -> mpsc::Sender<QueuedCall> {
        let mut slot = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(CALLS_QUEUED_MAX);
            tokio::spawn(send_batches(
                self.client.clone(),
                receiver,
                Arc::clone(&self.counters),
            ));
            sender
        })
        .clone()
    }
}

/// The task: takes every call waiting whenever a request may leave, and sends them as one.
/// Ends when every sender is gone (the connections were dropped).
async fn send_batches(
    client: RegionClientClient<VersionedChannel>,
    mut queue: mpsc::Receiver<QueuedCall>,
    counters: Arc<Counters>,
) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT_MAX));
    let mut carried: Option<QueuedCall> = None;
    loop {
        let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
            return;
        };
        let first = match carried.take() {
            Some(call) => call,
            None => match queue.recv().await {
                Some(call) => call,
                None => return,
            },
        };
        let mut batch = vec![first];
        let mut arguments_bytes = batch[0].call.arguments.len();
        while batch.len() < PROPOSE_BATCH_CALLS_MAX {
            let Ok(next) = queue.try_recv() else {
                break;
            };
            if next.answer.is_closed() {
                // Its caller gave up waiting: the call is not sent in this attempt.
                continue;
            }
            if arguments_bytes + next.call.arguments.len() > PROPOSE_BATCH_ARGUMENTS_BYTES_MAX {
                carried = Some(next);
                break;
            }
            arguments_bytes += next.call.arguments.len();
            batch.push(next);
        }
        counters.requests.fetch_add(1, Ordering::Relaxed);
        counters
            .calls
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let client = client.clone();
        tokio::spawn(async move {
            send_batch(client, batch).await;
            drop(permit);
        });
    }
}

/// Sends one batch and hands each caller its answer.
async fn send_batch(mut client: RegionClientClient<VersionedChannel>, batch: Vec<QueuedCall>) {
    let timeout = batch
        .iter()
        .map(|queued| queued.timeout)
        .max()
        .unwrap_or_default();
    let mut calls = Vec::with_capacity(batch.len());
    let mut answers = Vec::with_capacity(batch.len());
    for queued in batch {
        calls.push(queued.call);
        answers.push(queued.answer);
    }
    let count = calls.len();
    let mut request = Request::new(proto::ProposeBatchRequest { calls });
    request.set_timeout(timeout);
    let reply = match tokio::time::timeout(timeout, client.propose_batch(request)).await {
        Ok(Ok(reply)) => reply.into_inner(),
        Ok(Err(status)) => return fail_all(answers, &status),
        Err(_) => {
            return fail_all(
                answers,
                &Status::deadline_exceeded("the batch of calls timed out"),
            );
        }
    };
    if reply.outcomes.len() != count {
        let status = Status::internal(format!(
            "the member answered {} outcomes to a batch of {count} calls",
            reply.outcomes.len()
        ));
        return fail_all(answers, &status);
    }
    for (answer, outcome) in answers.into_iter().zip(reply.outcomes) {
        let _ = answer.send(answer_of(outcome));
    }
}

/// One call's answer as its caller takes it.
fn answer_of(outcome: proto::ProposeBatchOutcome) -> ProposeAnswer {
    match outcome.outcome {
        Some(propose_batch_outcome::Outcome::Reply(reply)) => Ok(reply),
        Some(propose_batch_outcome::Outcome::Refused(refusal)) => {
            let code = Code::from_i32(refusal.code);
            if code == Code::Ok {
                return Err(Status::internal(
                    "the member refused a call of the batch with status code OK",
                ));
            }
            Err(Status::new(code, refusal.message))
        }
        None => Err(Status::internal(
            "the member answered a call of the batch with an empty outcome",
        )),
    }
}

fn fail_all(answers: Vec<oneshot::Sender<ProposeAnswer>>, status: &Status) {
    for answer in answers {
        let _ = answer.send(Err(Status::new(status.code(), status.message().to_owned())));
    }
}
