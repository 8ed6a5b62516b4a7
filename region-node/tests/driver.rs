//! The production driver in one process: three nodes on loopback ports with RocksDB stores in
//! a temporary directory, driven through their gRPC services. Reference: docs/design.md section 1
//! (exactly once) and section 3 (thin drivers around the sans-IO node).

use std::collections::BTreeMap;
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_raft_group::encode_message;
use dsss_raft_group::raft::eraftpb::{Message, MessageType};
use dsss_region_node::RegionNodeConfig;
use dsss_region_node::service::CLIENT_PROPOSALS_IN_FLIGHT_MAX;
use dsss_wire::grpc::region_peer_client;
use dsss_wire::proto::region_client_client::RegionClientClient;
use dsss_wire::proto::{self, log_entry, propose_reply};
use dsss_wire::{RegionId, Scope};
use tokio::time::{Instant, sleep};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};

mod support;

use support::{NODE_IDS, POLL_INTERVAL, Region, TICK_INTERVAL_US, WAIT_MAX};

async fn wait_for_leader(connections: &RegionConnections, candidates: &[u64]) -> u64 {
    let started = Instant::now();
    loop {
        for &node_id in candidates {
            if let Ok(status) = connections.status(node_id).await
                && status.role == proto::NodeRole::Leader as i32
            {
                return node_id;
            }
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "no leader among {candidates:?}"
        );
        sleep(POLL_INTERVAL).await;
    }
}

async fn raw_stub(address: &str) -> RegionClientClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    RegionClientClient::new(channel)
}

fn versioned<T>(message: T, timeout: Option<Duration>) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        dsss_wire::PROTOCOL_VERSION_HEADER,
        dsss_wire::PROTOCOL_VERSION.into(),
    );
    if let Some(timeout) = timeout {
        request.set_timeout(timeout);
    }
    request
}

/// Opens the session `session_id` through `stub`, retrying while no leader is known.
async fn open_session(stub: &mut RegionClientClient<Channel>, session_id: u64) {
    let started = Instant::now();
    loop {
        let reply = stub
            .open_session(versioned(proto::OpenSessionRequest { session_id }, None))
            .await;
        if let Ok(reply) = reply
            && let Some(proto::open_session_reply::Outcome::Opened(_)) = reply.into_inner().outcome
        {
            return;
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "session {session_id} never opened"
        );
        sleep(POLL_INTERVAL).await;
    }
}

fn propose_request(client_id: u64, sequence: u64) -> proto::ProposeRequest {
    proto::ProposeRequest {
        object_id: format!("object/{client_id}"),
        method_id: 3,
        arguments: format!("call {sequence}").into_bytes(),
        client_id,
        request_sequence: sequence,
        scope: proto::Scope::Regional.into(),
    }
}

fn call(sequence: u64) -> Call {
    Call {
        object_id: "lobby/main".to_owned(),
        method_id: 1,
        arguments: format!("join {sequence}").into_bytes(),
        scope: Scope::Regional,
    }
}

fn key_of(entry: &proto::LogEntry) -> (u64, u64) {
    match &entry.entry {
        Some(log_entry::Entry::Regional(record)) => (record.client_id, record.request_sequence),
        other => panic!(
            "position {}: not a regional record: {other:?}",
            entry.position
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_commit_and_every_member_streams_the_same_log_resumably() {
    let region = Region::start(true).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections, &NODE_IDS).await;
    let mut client = RegionClient::new(connections.clone(), 5);
    let mut positions = Vec::new();
    for sequence in 1..=40 {
        let committed = client.propose(&call(sequence)).await.expect("committed");
        assert_eq!(committed.request_sequence, sequence);
        assert!(!committed.duplicate);
        positions.push(committed.position);
    }
    assert_eq!(
        positions,
        (1..=40).collect::<Vec<u64>>(),
        "dense positions in order"
    );

    // A retry of an applied call gets its first position and adds nothing.
    let retried = client
        .propose_with_sequence(37, &call(37))
        .await
        .expect("answered");
    assert_eq!((retried.position, retried.duplicate), (37, true));
    // A sequence below the client's dedup window is refused rather than applied again.
    let too_old = client
        .propose_with_sequence(1, &call(1))
        .await
        .expect_err("refused");
    assert!(too_old.to_string().contains("too old"), "{too_old}");

    let status = connections.status(leader).await.expect("status");
    assert_eq!(status.node_id, leader);
    assert_eq!(status.region, "test-region");
    assert_eq!(status.protocol_version, dsss_wire::PROTOCOL_VERSION);
    assert_eq!(status.applied_position, 40);

    for node_id in NODE_IDS {
        let entries = connections
            .read_log(node_id, 1, 40, WAIT_MAX)
            .await
            .expect("read the log");
        let keys: Vec<(u64, u64)> = entries.iter().map(key_of).collect();
        assert_eq!(
            keys,
            (1..=40).map(|sequence| (5, sequence)).collect::<Vec<_>>()
        );
        // Resuming from the middle yields exactly the rest.
        let rest = connections
            .read_log(node_id, 26, 40, WAIT_MAX)
            .await
            .expect("resume");
        assert_eq!(
            rest.iter().map(|entry| entry.position).collect::<Vec<_>>(),
            (26..=40).collect::<Vec<_>>()
        );
    }

    // A subscription that is caught up follows new records as they are applied.
    let follower = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    let mut stub = connections.stub(follower).expect("stub");
    let mut stream = stub
        .subscribe(proto::SubscribeRequest {
            from_position: 41,
            object_ids: vec!["lobby/main".to_owned()],
            client_id: 0,
        })
        .await
        .expect("subscribe")
        .into_inner();
    for sequence in 41..=45 {
        client.propose(&call(sequence)).await.expect("committed");
    }
    let mut followed = Vec::new();
    while followed.len() < 5 {
        let reply = tokio::time::timeout(WAIT_MAX, stream.message())
            .await
            .expect("the stream delivers within the bound")
            .expect("no error")
            .expect("the stream stays open");
        followed.extend(reply.entries.iter().map(|entry| entry.position));
    }
    assert_eq!(followed, vec![41, 42, 43, 44, 45]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_name_the_field_and_the_node_keeps_serving() {
    let region = Region::start(true).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections, &NODE_IDS).await;
    let address = region.configs[&leader].listen_address.clone();
    let mut stub = raw_stub(&address).await;

    let mut cases = Vec::new();
    let mut bad = propose_request(9, 1);
    bad.object_id = String::new();
    cases.push((bad, "object_id"));
    let mut bad = propose_request(9, 1);
    bad.scope = 0;
    cases.push((bad, "scope"));
    let mut bad = propose_request(9, 1);
    bad.scope = 9;
    cases.push((bad, "scope"));
    let mut bad = propose_request(9, 1);
    bad.object_id = "o".repeat(dsss_wire::ids::OBJECT_ID_BYTES_MAX + 1);
    cases.push((bad, "object_id"));
    let mut bad = propose_request(9, 1);
    bad.arguments = vec![1; dsss_wire::ARGUMENTS_BYTES_MAX + 1];
    cases.push((bad, "arguments"));
    let mut bad = propose_request(9, 1);
    bad.arguments = vec![1; 3 * dsss_wire::ARGUMENTS_BYTES_MAX];
    cases.push((bad, "arguments"));
    // A follower checks a proposal the same way before it forwards anything.
    let follower = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    let mut follower_stub = raw_stub(&region.configs[&follower].listen_address).await;
    for (request, field) in cases {
        for stub in [&mut stub, &mut follower_stub] {
            let status = stub
                .propose(versioned(request.clone(), None))
                .await
                .expect_err("refused");
            assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
            assert!(
                status.message().contains(&format!("field {field}")),
                "{}",
                status.message()
            );
        }
    }
    let status = stub
        .subscribe(versioned(
            proto::SubscribeRequest {
                from_position: 0,
                object_ids: Vec::new(),
                client_id: 0,
            },
            None,
        ))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("from_position"),
        "{}",
        status.message()
    );

    // Without the protocol version header, nothing is served.
    let status = stub
        .status(Request::new(proto::StatusRequest {}))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::FailedPrecondition);

    // Garbage raft messages are refused whole, naming the message.
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut peer = region_peer_client(channel);
    let other = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("another node");
    let mut valid = Message::default();
    valid.set_msg_type(MessageType::MsgHeartbeatResponse);
    valid.from = other;
    valid.to = leader;
    let status = peer
        .deliver(proto::RaftBatch {
            from_node_id: other,
            to_node_id: leader,
            sender_time: None,
            messages: vec![encode_message(&valid), vec![0xff, 0x00, 0x13]],
            clock_probe: None,
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("messages[1]"),
        "{}",
        status.message()
    );
    let status = peer
        .deliver(proto::RaftBatch {
            from_node_id: other,
            to_node_id: leader + 100,
            sender_time: None,
            messages: Vec::new(),
            clock_probe: None,
        })
        .await
        .expect_err("refused");
    assert!(
        status.message().contains("to_node_id"),
        "{}",
        status.message()
    );

    // The node still serves.
    open_session(&mut stub, 9).await;
    let reply = stub
        .propose(versioned(propose_request(9, 1), None))
        .await
        .expect("served")
        .into_inner();
    assert!(
        matches!(reply.outcome, Some(propose_reply::Outcome::Committed(_))),
        "{reply:?}"
    );
}

/// client.proto: a follower serves Propose by forwarding the call to the leader through raft,
/// and answers with the record's position once it applied it; NotLeader is only for a node
/// that knows no leader. Status tells the raft commit index apart from the applied position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_proposals_and_status_reports_commit_apart_from_applied() {
    let region = Region::start(true).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections, &NODE_IDS).await;
    let follower = NODE_IDS
        .into_iter()
        .find(|&node_id| node_id != leader)
        .expect("a follower");
    let mut stub = raw_stub(&region.configs[&follower].listen_address).await;
    open_session(&mut stub, 17).await;
    let mut positions = Vec::new();
    for sequence in 1..=5 {
        let reply = stub
            .propose(versioned(propose_request(17, sequence), None))
            .await
            .expect("a follower serves proposals")
            .into_inner();
        match reply.outcome {
            Some(propose_reply::Outcome::Committed(committed)) => {
                assert!(!committed.duplicate);
                positions.push(committed.position);
            }
            other => panic!("call {sequence} on follower {follower}: {other:?}"),
        }
    }
    assert_eq!(positions, vec![1, 2, 3, 4, 5]);
    let leader_log = connections
        .read_log(leader, 1, 5, WAIT_MAX)
        .await
        .expect("read the leader's log");
    let keys: Vec<(u64, u64)> = leader_log.iter().map(key_of).collect();
    assert_eq!(
        keys,
        (1..=5).map(|sequence| (17, sequence)).collect::<Vec<_>>()
    );

    // Raft indices count entries (the bootstrap, each leader's empty entry, batches of
    // records), not records: both indices run ahead of the five positions, and a member never
    // applies past what it knows committed.
    let status = stub
        .status(versioned(proto::StatusRequest {}, None))
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.applied_position, 5);
    assert_eq!(status.leader_node_id, leader);
    assert!(status.applied_index > status.applied_position, "{status:?}");
    assert!(status.commit_index >= status.applied_index, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadlines_and_in_flight_bounds_hold_and_retries_apply_once() {
    let mut region = Region::start(true).await;
    let connections = RegionConnections::new(&region.members()).expect("members");
    let leader = wait_for_leader(&connections, &NODE_IDS).await;
    let followers: Vec<u64> = NODE_IDS
        .into_iter()
        .filter(|&node_id| node_id != leader)
        .collect();
    // Without its followers the leader cannot commit anything.
    for &node_id in &followers {
        region.stop(node_id).await;
    }
    let address = region.configs[&leader].listen_address.clone();
    let stub = raw_stub(&address).await;
    let client_id = 21;
    let attempts = CLIENT_PROPOSALS_IN_FLIGHT_MAX as u64 + 4;
    let mut calls = Vec::new();
    for sequence in 1..=attempts {
        let mut stub = stub.clone();
        calls.push(tokio::spawn(async move {
            let request = versioned(
                propose_request(client_id, sequence),
                Some(Duration::from_millis(1_500)),
            );
            (sequence, stub.propose(request).await)
        }));
    }
    let mut deadline_exceeded = Vec::new();
    let mut exhausted = 0;
    for call in calls {
        let (sequence, outcome) = call.await.expect("task");
        let status = outcome.expect_err("nothing commits without a quorum");
        match status.code() {
            Code::DeadlineExceeded => {
                assert!(
                    status.message().contains("same request_sequence"),
                    "{}",
                    status.message()
                );
                deadline_exceeded.push(sequence);
            }
            Code::ResourceExhausted => {
                assert!(
                    status
                        .message()
                        .contains(&CLIENT_PROPOSALS_IN_FLIGHT_MAX.to_string()),
                    "{}",
                    status.message()
                );
                exhausted += 1;
            }
            other => panic!(
                "call {sequence}: unexpected {other:?}: {}",
                status.message()
            ),
        }
    }
    assert_eq!(deadline_exceeded.len(), CLIENT_PROPOSALS_IN_FLIGHT_MAX);
    assert_eq!(
        exhausted,
        attempts as usize - CLIENT_PROPOSALS_IN_FLIGHT_MAX
    );

    // Back to a quorum, every call retried with its sequence is applied exactly once.
    for &node_id in &followers {
        region.restart(node_id).await;
    }
    let mut client = RegionClient::new(connections.clone(), client_id);
    let mut last_position = 0;
    for sequence in 1..=attempts {
        let committed = client
            .propose_with_sequence(
                sequence,
                &Call {
                    object_id: format!("object/{client_id}"),
                    method_id: 3,
                    arguments: format!("call {sequence}").into_bytes(),
                    scope: Scope::Regional,
                },
            )
            .await
            .expect("committed after the quorum is back");
        last_position = last_position.max(committed.position);
    }
    let entries = connections
        .read_log(leader, 1, last_position, WAIT_MAX)
        .await
        .expect("read the log");
    let mut seen = BTreeMap::new();
    for entry in &entries {
        *seen.entry(key_of(entry)).or_insert(0) += 1;
    }
    for sequence in 1..=attempts {
        assert_eq!(
            seen.get(&(client_id, sequence)),
            Some(&1),
            "call {sequence}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_proposals_share_raft_entries_and_syncs() {
    use dsss_region_node::ProposeRequest;
    use dsss_region_node::driver::node_loop::{NodeLoopSettings, spawn};
    use dsss_region_node::driver::peer::start_peers;
    use dsss_region_node::driver::{NodeEvent, ProposeOutcome};
    use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, RequestSequence};

    const PROPOSALS: u64 = 1_000;
    let directory = tempfile::tempdir().expect("temporary directory");
    let settings = NodeLoopSettings {
        node: RegionNodeConfig::new(1, vec![1], RegionId::new("one-node").expect("valid region")),
        data_dir: directory.path().join("node-1"),
        tick_interval: Duration::from_micros(TICK_INTERVAL_US),
        peers: start_peers(1, &[]),
    };
    let node_loop = tokio::task::spawn_blocking(move || spawn(settings))
        .await
        .expect("task")
        .expect("the node opens");
    let events = node_loop.events();
    let started = Instant::now();
    loop {
        let (reply, status) = tokio::sync::oneshot::channel();
        events.try_send(NodeEvent::Status(reply)).expect("queued");
        if status.await.expect("answered").node.leader_id == Some(1) {
            break;
        }
        assert!(started.elapsed() < WAIT_MAX, "the one node never led");
        sleep(POLL_INTERVAL).await;
    }

    for session_id in 1..=PROPOSALS {
        let (reply, answer) = tokio::sync::oneshot::channel();
        events
            .try_send(NodeEvent::OpenSession { session_id, reply })
            .expect("the queue holds them all");
        assert_eq!(answer.await.expect("answered"), Ok(()));
    }
    // Every proposal is queued before most of them can be handled: the loop takes all that
    // wait at each iteration, so they share few raft entries and few syncs.
    let mut answers = Vec::new();
    for sequence in 1..=PROPOSALS {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let request = ProposeRequest {
            client_id: ClientId(sequence),
            request_sequence: RequestSequence(1),
            object_id: ObjectId::new("batch/test").expect("valid object"),
            method_id: MethodId(1),
            arguments: Arguments::new(vec![7; 256]).expect("small arguments"),
            scope: Scope::Regional,
        };
        events
            .try_send(NodeEvent::Propose { request, reply })
            .expect("the queue holds them all");
        answers.push(answer);
    }
    let mut positions = Vec::new();
    for answer in answers {
        match answer.await.expect("answered") {
            ProposeOutcome::Committed { position, .. } => positions.push(position),
            ProposeOutcome::Refused(error) => panic!("refused: {error}"),
        }
    }
    positions.sort_unstable();
    assert_eq!(positions, (1..=PROPOSALS).collect::<Vec<u64>>());
    let (reply, status) = tokio::sync::oneshot::channel();
    events.try_send(NodeEvent::Status(reply)).expect("queued");
    let counters = status.await.expect("answered").node.counters;
    assert_eq!(counters.records_proposed, PROPOSALS);
    assert!(
        counters.entries_proposed <= PROPOSALS / 10,
        "{} records took {} raft entries",
        PROPOSALS,
        counters.entries_proposed
    );
    drop(events);
    tokio::task::spawn_blocking(move || node_loop.stop())
        .await
        .expect("task")
        .expect("clean stop");
}
