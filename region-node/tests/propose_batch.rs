//! `ProposeBatch` through the production driver: three nodes on loopback ports with RocksDB
//! stores, driven over gRPC. A batch orders each of its calls as `Propose` would, answers each
//! in the order of the request (refusals call by call), holds 1 to `PROPOSE_BATCH_CALLS_MAX`
//! calls; and the region client sends the calls its callers make at once on one connection in
//! such batches.

use std::collections::BTreeSet;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_wire::proto::{self, propose_batch_outcome, propose_reply};
use dsss_wire::{PROPOSE_BATCH_CALLS_MAX, Scope};
use tokio::task::JoinSet;
use tonic::Code;

mod support;

use support::{NODE_IDS, Region, open_session, wait_for_leader};

/// Closed-loop clients sharing one connection in the batching test.
const CLIENTS: u64 = 64;

/// Calls each of them makes, one after another.
const CALLS_PER_CLIENT: u64 = 5;

fn call(session_id: u64, sequence: u64, object_id: &str) -> proto::ProposeRequest {
    proto::ProposeRequest {
        object_id: object_id.to_owned(),
        method_id: 3,
        arguments: format!("call {sequence} of {session_id}").into_bytes(),
        client_id: session_id,
        request_sequence: sequence,
        scope: proto::Scope::Regional.into(),
    }
}

/// What one call of a batch got: its committed position and whether it repeats an earlier
/// commit, or the session the region did not know, or the refusal's code and message.
#[derive(Debug)]
enum Answer {
    Committed { position: u64, duplicate: bool },
    SessionUnknown(u64),
    Refused(Code, String),
}

fn answers(reply: proto::ProposeBatchReply) -> Vec<Answer> {
    reply
        .outcomes
        .into_iter()
        .map(|outcome| match outcome.outcome {
            Some(propose_batch_outcome::Outcome::Reply(reply)) => match reply.outcome {
                Some(propose_reply::Outcome::Committed(committed)) => Answer::Committed {
                    position: committed.position,
                    duplicate: committed.duplicate,
                },
                Some(propose_reply::Outcome::SessionUnknown(unknown)) => {
                    Answer::SessionUnknown(unknown.session_id)
                }
                other => panic!("an unexpected reply: {other:?}"),
            },
            Some(propose_batch_outcome::Outcome::Refused(refusal)) => {
                Answer::Refused(Code::from_i32(refusal.code), refusal.message)
            }
            None => panic!("an empty outcome"),
        })
        .collect()
}

fn committed(answer: &Answer) -> (u64, bool) {
    match answer {
        Answer::Committed {
            position,
            duplicate,
        } => (*position, *duplicate),
        other => panic!("expected a commit, got {other:?}"),
    }
}

/// client.proto `ProposeBatch`: each call is ordered once and answered in the order of the
/// request, whatever its neighbours got; a follower serves a batch as the leader does; a
/// retry in a later batch gets the first commit back; an empty batch and one past
/// `PROPOSE_BATCH_CALLS_MAX` are refused whole, naming the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_orders_each_call_once_and_answers_each_in_order() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;
    let follower = NODE_IDS
        .into_iter()
        .find(|node_id| *node_id != leader)
        .expect("three members");
    let mut stub = region.stub(follower);
    for session_id in [101, 102] {
        open_session(&mut stub, session_id)
            .await
            .expect("the session opens");
    }

    let batch = proto::ProposeBatchRequest {
        calls: vec![
            call(101, 1, "object/a"),
            call(102, 1, "object/b"),
            call(101, 2, "object/a"),
            call(101, 3, ""),
            call(103, 1, "object/c"),
        ],
    };
    let first = answers(
        stub.propose_batch(batch)
            .await
            .expect("the follower serves the batch")
            .into_inner(),
    );
    assert_eq!(first.len(), 5, "one answer per call: {first:?}");
    let (position_a1, duplicate) = committed(&first[0]);
    assert!(!duplicate);
    let (position_b1, _) = committed(&first[1]);
    let (position_a2, _) = committed(&first[2]);
    assert!(
        position_a1 < position_a2,
        "a session's calls keep their order: {first:?}"
    );
    let positions: BTreeSet<u64> = [position_a1, position_b1, position_a2].into();
    assert_eq!(
        positions.len(),
        3,
        "each call has its own record: {first:?}"
    );
    match &first[3] {
        Answer::Refused(Code::InvalidArgument, message) => {
            assert!(message.contains("object_id"), "{message}");
        }
        other => panic!("the call without an object id was not refused: {other:?}"),
    }
    match &first[4] {
        Answer::SessionUnknown(103) => {}
        other => panic!("the call of a session never opened was taken: {other:?}"),
    }

    // The retry of a committed call, in a later batch and at another member, repeats its
    // first commit.
    let mut leader_stub = region.stub(leader);
    let retry = answers(
        leader_stub
            .propose_batch(proto::ProposeBatchRequest {
                calls: vec![call(101, 1, "object/a"), call(102, 2, "object/b")],
            })
            .await
            .expect("the leader serves the batch")
            .into_inner(),
    );
    assert_eq!(committed(&retry[0]), (position_a1, true), "{retry:?}");
    let (position_b2, duplicate) = committed(&retry[1]);
    assert!(!duplicate && position_b2 > position_a2, "{retry:?}");

    // The bound on calls per batch, reached and passed.
    for count in [0, PROPOSE_BATCH_CALLS_MAX + 1] {
        let calls = (0..count as u64)
            .map(|index| call(102, 100 + index, "object/b"))
            .collect();
        let refused = leader_stub
            .propose_batch(proto::ProposeBatchRequest { calls })
            .await
            .expect_err("refused whole");
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(
            refused.message().contains("PROPOSE_BATCH_CALLS_MAX"),
            "{refused:?}"
        );
    }
    // A batch of the largest size, from many sessions (each at most 16 in flight).
    let sessions: Vec<u64> = (0..PROPOSE_BATCH_CALLS_MAX as u64 / 16)
        .map(|index| 1_000 + index)
        .collect();
    for session_id in &sessions {
        open_session(&mut leader_stub, *session_id)
            .await
            .expect("the session opens");
    }
    let calls: Vec<proto::ProposeRequest> = sessions
        .iter()
        .flat_map(|session_id| {
            (1..=16)
                .map(move |sequence| call(*session_id, sequence, &format!("object/{session_id}")))
        })
        .collect();
    assert_eq!(calls.len(), PROPOSE_BATCH_CALLS_MAX);
    let largest = answers(
        leader_stub
            .propose_batch(proto::ProposeBatchRequest { calls })
            .await
            .expect("a batch at the bound is served")
            .into_inner(),
    );
    let positions: BTreeSet<u64> = largest.iter().map(|answer| committed(answer).0).collect();
    assert_eq!(positions.len(), PROPOSE_BATCH_CALLS_MAX);
}

/// `dsss::region_client`: 64 clients proposing at once over one connection commit every call
/// once, in each client's order, and their calls travel in fewer requests than calls (the
/// calls that wait while requests are in flight leave together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_made_at_once_on_one_connection_travel_together() {
    let region = Region::start(false).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections).await;
    let mut clients = JoinSet::new();
    for index in 0..CLIENTS {
        let mut client = RegionClient::new(connections.clone(), 5_000 + index);
        client.prefer(leader).expect("a member");
        clients.spawn(async move {
            let mut positions = Vec::new();
            for sequence in 1..=CALLS_PER_CLIENT {
                let committed = client
                    .propose(&Call {
                        object_id: format!("counter/{index}"),
                        method_id: 1,
                        arguments: sequence.to_be_bytes().to_vec(),
                        scope: Scope::Regional,
                    })
                    .await
                    .expect("the call commits");
                assert_eq!(committed.request_sequence, sequence);
                assert!(!committed.duplicate);
                positions.push(committed.position);
            }
            positions
        });
    }
    let mut every_position = BTreeSet::new();
    while let Some(positions) = clients.join_next().await {
        let positions = positions.expect("the client ran");
        assert!(
            positions.windows(2).all(|pair| pair[0] < pair[1]),
            "a client's calls keep their order: {positions:?}"
        );
        every_position.extend(positions);
    }
    assert_eq!(
        every_position.len() as u64,
        CLIENTS * CALLS_PER_CLIENT,
        "every call has a record of its own"
    );
    let counts = connections.propose_batch_counts(leader).expect("a member");
    // Session opens are not proposals: only the calls (and any retries of them) count.
    assert!(counts.calls >= CLIENTS * CALLS_PER_CLIENT, "{counts:?}");
    assert!(
        counts.requests < counts.calls,
        "calls proposed at once never shared a request: {counts:?}"
    );
}
