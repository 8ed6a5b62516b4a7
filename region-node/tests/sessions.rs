//! Client sessions through the production driver: three nodes on loopback ports with RocksDB
//! stores, driven over gRPC. A session closed by its client frees its room among the region's
//! live sessions at once, and its calls are refused from then on, never applied again
//! (docs/design.md section 2.7, "Closing"; section 8, `SESSIONS_MAX`).

use std::future::Future;
use std::task::Poll;

use dsss::region_client::RegionConnections;
use dsss_region_node::SESSIONS_MAX;
use dsss_wire::proto::{self, close_session_reply, propose_reply};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep};
use tonic::Code;

mod support;

use support::{NODE_IDS, POLL_INTERVAL, Region, Stub, WAIT_MAX, open_session, wait_for_leader};

/// Opens in flight at once through each node while the region fills up.
const OPENS_IN_FLIGHT_PER_NODE: u64 = 128;

/// Closes `session_id` through `stub`, retrying what may pass; returns whether it lived.
async fn close_session(stub: &mut Stub, session_id: u64) -> Result<bool, tonic::Status> {
    let started = Instant::now();
    loop {
        match stub
            .close_session(proto::CloseSessionRequest { session_id })
            .await
        {
            Ok(reply) => {
                if let Some(close_session_reply::Outcome::Closed(closed)) =
                    reply.into_inner().outcome
                {
                    return Ok(closed.was_open);
                }
            }
            Err(status) if status.code() == Code::InvalidArgument => return Err(status),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "session {session_id} never closed"
        );
        sleep(POLL_INTERVAL).await;
    }
}

fn propose_request(session_id: u64, sequence: u64) -> proto::ProposeRequest {
    proto::ProposeRequest {
        object_id: format!("object/{session_id}"),
        method_id: 3,
        arguments: format!("call {sequence}").into_bytes(),
        client_id: session_id,
        request_sequence: sequence,
        scope: proto::Scope::Regional.into(),
    }
}

/// Waits until every member reports `sessions` live sessions; returns the highest applied
/// position they report then.
async fn wait_for_sessions(connections: &RegionConnections, sessions: u64) -> u64 {
    let started = Instant::now();
    loop {
        let mut counts = Vec::new();
        let mut applied = 0;
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await {
                counts.push(status.sessions);
                applied = applied.max(status.applied_position);
            }
        }
        if counts.len() == NODE_IDS.len() && counts.iter().all(|&count| count == sessions) {
            return applied;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "the members never all reported {sessions} live sessions: {counts:?}"
        );
        sleep(POLL_INTERVAL).await;
    }
}

/// client.proto `CloseSession`: with the region at its bound of live sessions, a new session is
/// refused; a closed session makes room for one at once (not after the 30 minutes of the idle
/// timeout), and the closed session's calls are refused as unknown, the retry of a call it made
/// never applied again. The close is replicated state: a restarted member holds it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_sessions_free_their_room_at_the_bound_and_their_calls_are_never_applied_again() {
    let mut region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;

    // Fill the region: SESSIONS_MAX sessions, opened through every member at once.
    let mut opening = JoinSet::new();
    let workers = OPENS_IN_FLIGHT_PER_NODE * NODE_IDS.len() as u64;
    for worker in 0..workers {
        let mut stub = region.stub(NODE_IDS[(worker % NODE_IDS.len() as u64) as usize]);
        opening.spawn(async move {
            let mut session_id = 1 + worker;
            while session_id <= SESSIONS_MAX as u64 {
                open_session(&mut stub, session_id)
                    .await
                    .unwrap_or_else(|status| panic!("session {session_id}: {status:?}"));
                session_id += workers;
            }
        });
    }
    while let Some(opened) = opening.join_next().await {
        opened.expect("every open worker finishes");
    }
    wait_for_sessions(&connections, SESSIONS_MAX as u64).await;

    let mut stub = region.stub(leader);
    let newcomer = SESSIONS_MAX as u64 + 1;
    let refusal = open_session(&mut stub, newcomer)
        .await
        .expect_err("the region holds as many sessions as it may");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");
    assert!(
        refusal.message().contains("16384 live client sessions"),
        "the refusal names the bound: {}",
        refusal.message()
    );

    // Session 1 makes a call, then its client closes it.
    let committed = stub
        .propose(propose_request(1, 1))
        .await
        .expect("served")
        .into_inner();
    let Some(propose_reply::Outcome::Committed(committed)) = committed.outcome else {
        panic!("the call of a live session commits: {committed:?}");
    };
    assert!(
        close_session(&mut stub, 1).await.expect("closes"),
        "session 1 lived until its close"
    );
    let applied_at_close = wait_for_sessions(&connections, SESSIONS_MAX as u64 - 1).await;
    assert_eq!(
        applied_at_close, committed.position,
        "a close takes no log position"
    );

    // Its calls are refused from now on: the retry of the applied call and a new one.
    for sequence in [1, 2] {
        let reply = stub
            .propose(propose_request(1, sequence))
            .await
            .expect("answered")
            .into_inner();
        assert!(
            matches!(
                reply.outcome,
                Some(propose_reply::Outcome::SessionUnknown(ref unknown)) if unknown.session_id == 1
            ),
            "sequence {sequence} of the closed session: {reply:?}"
        );
    }
    let log = connections
        .read_log(leader, 1, committed.position, WAIT_MAX)
        .await
        .expect("read the log");
    assert_eq!(log.len(), 1, "the call is in the log once");
    let status = connections.status(leader).await.expect("status");
    assert_eq!(
        status.applied_position, committed.position,
        "nothing of the closed session was applied after its close"
    );

    // The room the close freed takes the new session; then the region is full again.
    open_session(&mut stub, newcomer)
        .await
        .expect("the closed session's room is free");
    wait_for_sessions(&connections, SESSIONS_MAX as u64).await;
    let refusal = open_session(&mut stub, newcomer + 1)
        .await
        .expect_err("full again");
    assert_eq!(refusal.code(), Code::ResourceExhausted, "{refusal:?}");

    // A retried close changes nothing; session id 0 is refused with the field named.
    assert!(
        !close_session(&mut stub, 1).await.expect("answered"),
        "the session had been closed"
    );
    let invalid = close_session(&mut stub, 0)
        .await
        .expect_err("session id 0 is never valid");
    assert!(invalid.message().contains("session_id"), "{invalid:?}");

    // The close is replicated state: a member restarted from its store holds it.
    let follower = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    region.restart(follower).await;
    wait_for_sessions(&connections, SESSIONS_MAX as u64).await;
    let mut follower_stub = region.stub(follower);
    // Until the restarted member hears from the leader it answers "not leader" without a hint;
    // then it forwards the proposal and answers with what the region applied.
    let mut reply = None;
    for _ in 0..200 {
        let answer = follower_stub
            .propose(propose_request(1, 1))
            .await
            .expect("answered")
            .into_inner();
        if !matches!(answer.outcome, Some(propose_reply::Outcome::NotLeader(_))) {
            reply = Some(answer);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let reply = reply.expect("the restarted member learns the leader within 10 s");
    assert!(
        matches!(
            reply.outcome,
            Some(propose_reply::Outcome::SessionUnknown(_))
        ),
        "after a restart: {reply:?}"
    );
}

/// A counter, for the client tests.
#[dsss::shared_object]
#[derive(Default, Debug, Serialize, Deserialize)]
pub struct Counter {
    value: u64,
}

#[dsss::methods]
impl Counter {
    /// Adds one; returns the new value.
    #[mutate(id = 1)]
    pub fn bump(&mut self) -> u64 {
        self.value += 1;
        self.value
    }

    /// The value.
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// `Client::close` ends the client's session in the region (the live session count goes down
/// on every member) after its calls completed, and the client takes no call after it; a
/// client whose last handle is dropped ends its session too, without anyone waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_closes_or_is_dropped_ends_its_region_session() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    wait_for_leader(&connections).await;
    let config = dsss::Config::new("test-region", region.members());

    let closing = dsss::Client::connect(config.clone())
        .await
        .expect("connect");
    let counter = tokio::time::timeout(WAIT_MAX, closing.open_regional::<Counter>("counter"))
        .await
        .expect("opens within the bound")
        .expect("opens");
    assert_eq!(counter.bump().await.expect("bumped"), 1);
    let dropped = dsss::Client::connect(config).await.expect("connect");
    let dropped_counter =
        tokio::time::timeout(WAIT_MAX, dropped.open_regional::<Counter>("counter"))
            .await
            .expect("opens within the bound")
            .expect("opens");
    assert_eq!(dropped_counter.bump().await.expect("bumped"), 2);
    wait_for_sessions(&connections, 2).await;

    // A close waits for the calls the region has not acknowledged yet: this one completes.
    // (Polled once, the call is handed to the session before the close is.)
    let mut in_flight = Box::pin(counter.bump());
    let first_poll = std::future::poll_fn(|cx| Poll::Ready(in_flight.as_mut().poll(cx))).await;
    assert!(first_poll.is_pending(), "the call waits for the region");
    tokio::time::timeout(WAIT_MAX, closing.close())
        .await
        .expect("the close is bounded")
        .expect("the region confirmed the close");
    let bumped = tokio::time::timeout(WAIT_MAX, in_flight)
        .await
        .expect("the call completes within the bound");
    assert_eq!(bumped.expect("the call made before the close completes"), 3);
    wait_for_sessions(&connections, 1).await;
    let refused = counter
        .bump()
        .await
        .expect_err("a closed client takes no call");
    assert!(refused.to_string().contains("closed"), "{refused}");
    assert_eq!(counter.read(Counter::value), 3, "reads still work");
    closing
        .close()
        .await
        .expect("a second close answers as the first");

    // The other client goes away without a word: its session ends all the same.
    drop(dropped_counter);
    drop(dropped);
    wait_for_sessions(&connections, 0).await;
}
