//! A three-node region as three `dsss node` OS processes on loopback, under concurrent clients,
//! with its leader killed by SIGKILL and restarted. Reference: docs/design.md section 1
//! (durability, exactly once, one order) and section 6 (how each guarantee is checked).
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use dsss::region_client::{Call, ClientError, RegionClient, RegionConnections};
use dsss_tests::processes::{
    Deadline, NodeProcesses, acknowledged_counts, free_ports, wait_for_acknowledgements,
};
use dsss_wire::proto::{self, log_entry};
use dsss_wire::{Record, Scope};

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Concurrent clients proposing while the leader is killed.
const CLIENTS: u64 = 4;

/// The most calls one client makes: the run is bounded in count as well as in time.
const CALLS_PER_CLIENT_MAX: u64 = 3_000;

/// Generous bound on any one wait of the test (a leader elected, a node caught up). The test
/// asserts nothing about how fast things happen, only that they happen within this.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Acknowledgements every client must have before the leader is killed, and again after the
/// new leader is elected and after the old one is back.
const ACKS_PER_PHASE: usize = 20;

/// The region's `dsss node` processes (killed when the value drops, so that no process
/// outlives the test) and the members' addresses.
struct RegionProcesses {
    processes: NodeProcesses,
    addresses: BTreeMap<u64, String>,
}

impl RegionProcesses {
    /// Writes a one-region topology with free loopback ports into a temporary directory.
    fn new() -> Self {
        Self::with_cluster_settings("")
    }

    /// As [`RegionProcesses::new`], with `extra` lines added to the `[cluster]` table.
    fn with_cluster_settings(extra: &str) -> Self {
        let addresses: BTreeMap<u64, String> = NODE_IDS
            .iter()
            .zip(free_ports(NODE_IDS.len()))
            .map(|(&node_id, port)| (node_id, format!("127.0.0.1:{port}")))
            .collect();
        let nodes: Vec<String> = addresses
            .iter()
            .map(|(node_id, address)| {
                format!(
                    "  {{ id = {node_id}, address = \"{address}\", data_dir = \"data/node-{node_id}\" }},"
                )
            })
            .collect();
        let text = format!(
            "[cluster]\nname = \"processes\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
             max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n{extra}\n\
             [coordinator]\nreplicas = [1]\npreferred_leader = 1\n\n\
             [[regions]]\nid = \"region-a\"\nnodes = [\n{}\n]\n",
            nodes.join("\n")
        );
        RegionProcesses {
            processes: NodeProcesses::new(&text),
            addresses,
        }
    }

    fn members(&self) -> Vec<(u64, String)> {
        self.addresses
            .iter()
            .map(|(node_id, address)| (*node_id, address.clone()))
            .collect()
    }

    /// Starts `dsss node` for `node_id`, its output in a log file of the temporary directory.
    fn start(&mut self, node_id: u64) {
        self.processes.start(node_id, &[]);
    }

    /// Kills `node_id` with SIGKILL and reaps it.
    fn kill(&mut self, node_id: u64) {
        self.processes.kill(node_id);
    }
}

/// Waits until one of `candidates` reports itself leader, and returns it.
async fn wait_for_leader(
    what: &'static str,
    connections: &RegionConnections,
    candidates: &[u64],
) -> u64 {
    let deadline = Deadline::new(what, WAIT_MAX);
    loop {
        if let Some(leader) = leader_among(connections, candidates).await {
            return leader;
        }
        deadline.check().await;
    }
}

/// A leader that one of `candidates` reports and that is itself one of `candidates`.
async fn leader_among(connections: &RegionConnections, candidates: &[u64]) -> Option<u64> {
    for &node_id in candidates {
        if let Ok(status) = connections.status(node_id).await
            && candidates.contains(&status.leader_node_id)
            && status.role == proto::NodeRole::Leader as i32
            && status.node_id == status.leader_node_id
        {
            return Some(node_id);
        }
    }
    None
}

/// What one client saw: the calls acknowledged, each with the position the region gave it.
#[derive(Debug, Default)]
struct ClientHistory {
    acknowledged: Vec<(u64, u64)>,
    given_up: Vec<(u64, ClientError)>,
}

fn call_for(client_id: u64, sequence: u64) -> Call {
    Call {
        object_id: format!("counter/{client_id}"),
        method_id: 1,
        arguments: format!("client {client_id} call {sequence}").into_bytes(),
        scope: Scope::Regional,
    }
}

async fn run_client(
    connections: RegionConnections,
    client_id: u64,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
) -> ClientHistory {
    let mut client = RegionClient::new(connections, client_id);
    let mut history = ClientHistory::default();
    for sequence in 1..=CALLS_PER_CLIENT_MAX {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match client
            .propose_with_sequence(sequence, &call_for(client_id, sequence))
            .await
        {
            Ok(committed) => {
                history.acknowledged.push((sequence, committed.position));
                acknowledged.fetch_add(1, Ordering::SeqCst);
            }
            // Not acknowledged: the call may or may not be in the log, and must not be twice.
            Err(error) => history.given_up.push((sequence, error)),
        }
    }
    history
}

fn record_of(entry: &proto::LogEntry) -> Record {
    let wire = match entry.entry.clone() {
        Some(log_entry::Entry::Regional(record)) => record,
        other => panic!(
            "position {}: expected a regional record, got {other:?}",
            entry.position
        ),
    };
    Record::try_from(wire).expect("records read back from a node are valid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_leader_loses_no_acknowledged_record_and_rejoins() {
    let mut region = RegionProcesses::new();
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let connections = RegionConnections::new(&region.members()).expect("valid members");

    let first_leader = wait_for_leader("a first leader is elected", &connections, &NODE_IDS).await;

    let stop = Arc::new(AtomicBool::new(false));
    let counters: Vec<Arc<AtomicUsize>> = (0..CLIENTS).map(|_| Arc::default()).collect();
    let clients: Vec<_> = (1..=CLIENTS)
        .map(|client_id| {
            tokio::spawn(run_client(
                connections.clone(),
                client_id,
                stop.clone(),
                counters[client_id as usize - 1].clone(),
            ))
        })
        .collect();
    wait_for_acknowledgements(
        "every client has calls acknowledged",
        &counters,
        &vec![0; counters.len()],
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;

    // SIGKILL the leader in the middle of the clients' calls.
    region.kill(first_leader);
    let before_kill = acknowledged_counts(&counters);
    let survivors: Vec<u64> = NODE_IDS
        .iter()
        .copied()
        .filter(|&node_id| node_id != first_leader)
        .collect();
    wait_for_leader("the survivors elect a new leader", &connections, &survivors).await;
    wait_for_acknowledgements(
        "every client gets calls acknowledged by the new leader",
        &counters,
        &before_kill,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;

    // The old leader comes back on the same data directory and catches up.
    region.start(first_leader);
    let before_restart = acknowledged_counts(&counters);
    wait_for_acknowledgements(
        "every client gets calls acknowledged after the restart",
        &counters,
        &before_restart,
        ACKS_PER_PHASE,
        WAIT_MAX,
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    let mut histories = BTreeMap::new();
    for (index, client) in clients.into_iter().enumerate() {
        histories.insert(index as u64 + 1, client.await.expect("client task"));
    }

    // Every member reaches the same last position, the restarted one included.
    let deadline = Deadline::new("every member has applied the same log", WAIT_MAX);
    let last_position = loop {
        let mut positions = Vec::new();
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await {
                positions.push(status.applied_position);
            }
        }
        if positions.len() == NODE_IDS.len()
            && positions[0] > 0
            && positions.iter().all(|&position| position == positions[0])
        {
            break positions[0];
        }
        deadline.check().await;
    };

    // Every member's log, read through Subscribe, holds the same records at the same
    // positions, with no position missing.
    let mut logs = BTreeMap::new();
    for node_id in NODE_IDS {
        let entries = connections
            .read_log(node_id, 1, last_position, WAIT_MAX)
            .await
            .unwrap_or_else(|error| panic!("read node {node_id}'s log: {error}"));
        let positions: Vec<u64> = entries.iter().map(|entry| entry.position).collect();
        let expected: Vec<u64> = (1..=last_position).collect();
        assert_eq!(
            positions, expected,
            "node {node_id}'s log has gaps or repeats"
        );
        logs.insert(node_id, entries);
    }
    let reference = &logs[&NODE_IDS[0]];
    for node_id in &NODE_IDS[1..] {
        assert!(
            logs[node_id] == *reference,
            "node {node_id}'s log differs from node {}'s",
            NODE_IDS[0]
        );
    }

    // No call is in the log twice, and every acknowledged call is there exactly once, at the
    // position its client was told.
    let mut positions_of_calls: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    for entry in reference {
        let record = record_of(entry);
        let key = (record.client_id.get(), record.request_sequence.get());
        assert_eq!(
            record.arguments.as_bytes(),
            call_for(key.0, key.1).arguments.as_slice(),
            "position {} holds the arguments of another call",
            entry.position
        );
        positions_of_calls
            .entry(key)
            .or_default()
            .push(entry.position);
    }
    for (key, positions) in &positions_of_calls {
        assert_eq!(
            positions.len(),
            1,
            "call {key:?} is in the log at {positions:?}"
        );
    }
    let mut acknowledged_total = 0;
    for (client_id, history) in &histories {
        for &(sequence, position) in &history.acknowledged {
            assert_eq!(
                positions_of_calls.get(&(*client_id, sequence)),
                Some(&vec![position]),
                "acknowledged call ({client_id}, {sequence}) is not at its position {position}"
            );
        }
        acknowledged_total += history.acknowledged.len();
        // A call given up on stays unacknowledged; the region may hold it once or not at all.
        for (sequence, error) in &history.given_up {
            eprintln!("client {client_id} gave up call {sequence}: {error}");
        }
    }
    eprintln!(
        "{acknowledged_total} calls acknowledged, {} records in every member's log; leader \
         {first_leader} was killed and restarted",
        last_position
    );
    assert!(
        acknowledged_total >= CLIENTS as usize * ACKS_PER_PHASE * 3,
        "only {acknowledged_total} calls acknowledged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_node_cleanly_and_its_data_survives_a_restart() {
    let mut region = RegionProcesses::new();
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let connections = RegionConnections::new(&region.members()).expect("valid members");
    let mut client = RegionClient::new(connections.clone(), 77);
    let mut last = None;
    for sequence in 1..=10 {
        last = Some(
            client
                .propose_with_sequence(sequence, &call_for(77, sequence))
                .await
                .expect("the region commits calls"),
        );
    }
    let last = last.expect("ten calls were made");

    // SIGTERM every node: each must exit with status 0.
    for node_id in NODE_IDS {
        let child = region
            .processes
            .child_mut(node_id)
            .expect("the node was started");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }
    for node_id in NODE_IDS {
        let mut child = region.processes.take_child(node_id).expect("started");
        let status = child.wait().expect("wait for the node");
        assert_eq!(
            status.code(),
            Some(0),
            "node {node_id} exit status after SIGTERM"
        );
    }
    assert!(
        region
            .processes
            .directory()
            .join(Path::new("data/node-1"))
            .is_dir(),
        "the data directory was created from the topology"
    );

    // Restarted on the same data, the region still has every record, and a retry of the last
    // call is answered with its first position rather than applied again.
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let retried = client
        .propose_with_sequence(10, &call_for(77, 10))
        .await
        .expect("the restarted region answers");
    assert_eq!(retried.position, last.position);
    assert!(
        retried.duplicate,
        "the retry is answered from the dedup table"
    );
    let entries = connections
        .read_log(retried.node_id, 1, last.position, WAIT_MAX)
        .await
        .expect("read the log");
    assert_eq!(entries.len() as u64, last.position);
}

/// One unauthenticated `RegionPeer.Deliver` call to a follower, carrying a single raft
/// heartbeat that names another member as its sender and commits `u64::MAX`, used to make
/// raft-rs stop the node (`to_commit ... is out of range`), and three such calls a region.
/// Now the follower refuses each such message (its term 0, then its current term) and keeps
/// running; so does every member, and the region still commits calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_heartbeat_committing_past_the_log_stops_no_node() {
    use dsss_raft_group::raft::eraftpb::{Message, MessageType};

    let mut region = RegionProcesses::new();
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let connections = RegionConnections::new(&region.members()).expect("valid members");
    let leader = wait_for_leader("a first leader", &connections, &NODE_IDS).await;
    let mut client = RegionClient::new(connections.clone(), 91);
    client
        .propose_with_sequence(1, &call_for(91, 1))
        .await
        .expect("the region commits calls");
    let term = connections
        .status(leader)
        .await
        .expect("the leader answers")
        .term;
    for follower in NODE_IDS.into_iter().filter(|&id| id != leader) {
        let channel = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            region.addresses[&follower]
        ))
        .expect("a valid address")
        .connect()
        .await
        .expect("the follower listens");
        let mut peer = dsss_wire::grpc::region_peer_client(channel);
        for forged_term in [0, term] {
            let mut heartbeat = Message::default();
            heartbeat.set_msg_type(MessageType::MsgHeartbeat);
            heartbeat.from = leader;
            heartbeat.to = follower;
            heartbeat.term = forged_term;
            heartbeat.commit = u64::MAX;
            let batch = proto::RaftBatch {
                from_node_id: leader,
                to_node_id: follower,
                sender_time: None,
                messages: vec![dsss_raft_group::encode_message(&heartbeat)],
                clock_probe: None,
            };
            // Delivery is acknowledged either way: raft tolerates lost messages, and the
            // node drops what it refuses.
            let _ = peer.deliver(batch).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for node_id in NODE_IDS {
        assert!(
            region.processes.is_running(node_id),
            "node {node_id} stopped after the forged heartbeats"
        );
    }
    for sequence in 2..=5 {
        client
            .propose_with_sequence(sequence, &call_for(91, sequence))
            .await
            .expect("the region still commits calls");
    }
    for node_id in NODE_IDS {
        let status = connections
            .status(node_id)
            .await
            .expect("every member answers");
        assert!(
            status.commit_index < u64::MAX / 2,
            "node {node_id} took the forged commit: {}",
            status.commit_index
        );
        if node_id != leader {
            assert!(
                status.raft_messages_refused >= 2,
                "node {node_id} counts the forged heartbeats it refused: {}",
                status.raft_messages_refused
            );
        }
    }
}

/// The quota of `region_log_quota_mb` with releases turned off
/// (`region_log_release_share_percent = 0`), reached by a client whose records no checkpoint
/// covers: the region refuses further records with an error that names the quota, every
/// member reports the same fill in its status, and the refusal outlives a restart (the fill is
/// replicated state, not a count in one node's memory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_at_its_log_quota_refuses_records_naming_it_and_reports_the_fill() {
    const QUOTA_BYTES: u64 = 1024 * 1024;
    let mut region = RegionProcesses::with_cluster_settings(
        "region_log_quota_mb = 1\nregion_log_release_share_percent = 0\n",
    );
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let connections = RegionConnections::new(&region.members()).expect("valid members");
    wait_for_leader("a leader is elected", &connections, &NODE_IDS).await;
    // A refusal at the quota is retried until the total timeout: keep it short.
    let mut client = RegionClient::new(connections.clone(), 91)
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(5));
    let large_call = |sequence: u64| Call {
        object_id: format!("sensor/{}", sequence % 10),
        method_id: 1,
        arguments: vec![sequence as u8; 4096],
        scope: Scope::Regional,
    };
    let mut acknowledged = 0u64;
    let refusal = loop {
        let sequence = acknowledged + 1;
        match client
            .propose_with_sequence(sequence, &large_call(sequence))
            .await
        {
            Ok(_) => acknowledged += 1,
            Err(error) => break error.to_string(),
        }
        assert!(
            acknowledged <= 2 * QUOTA_BYTES / 4096,
            "the region took {acknowledged} records of 4 KiB under a 1 MiB quota"
        );
    };
    assert!(
        refusal.contains("quota") && refusal.contains("region_log_quota_mb = 1 MiB"),
        "the refusal names the quota: {refusal}"
    );
    assert!(
        refusal.contains("sensor/"),
        "the refusal names objects holding truncation back: {refusal}"
    );
    assert!(
        acknowledged >= QUOTA_BYTES / 4200 - 1,
        "only {acknowledged} records were taken before the quota"
    );
    let fill = |status: &proto::StatusReply| (status.log_size_bytes, status.log_quota_bytes);
    let mut fills = Vec::new();
    for node_id in NODE_IDS {
        let deadline = Deadline::new("every member applies the last record", WAIT_MAX);
        loop {
            let status = connections.status(node_id).await.expect("status");
            if status.applied_position >= acknowledged {
                fills.push(fill(&status));
                assert!(
                    status.log_cache_bytes > 0 && status.log_cache_bytes <= status.log_size_bytes
                );
                break;
            }
            deadline.check().await;
        }
    }
    assert!(
        fills
            .iter()
            .all(|&(size, quota)| size >= QUOTA_BYTES && quota == QUOTA_BYTES),
        "every member reports the fill at the quota: {fills:?}"
    );

    // Restarted, the region still refuses, and still serves every record it took.
    for node_id in NODE_IDS {
        region.kill(node_id);
    }
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    wait_for_leader("a leader is elected again", &connections, &NODE_IDS).await;
    let mut restarted = RegionClient::new(connections.clone(), 92)
        .with_timeouts(Duration::from_secs(2), Duration::from_secs(10));
    let error = restarted
        .propose_with_sequence(1, &large_call(1))
        .await
        .expect_err("the region is still at its quota");
    assert!(error.to_string().contains("quota"), "{error}");
    let leader = wait_for_leader("a leader answers", &connections, &NODE_IDS).await;
    let entries = connections
        .read_log(leader, 1, acknowledged, WAIT_MAX)
        .await
        .expect("read the log");
    assert_eq!(entries.len() as u64, acknowledged);
}

/// What a new user ran into: a client of the raw region API writes records of ten objects that
/// no instance checkpoints, far past the region's quota (4 MiB of 4 KiB records under a 1 MiB
/// quota). With the default release rule the region never refuses one: past 75% of the quota it
/// releases the oldest records that no checkpoint covers, every member's log stays under the
/// quota, the status counts the objects released, and fetching one says its records were
/// released instead of serving a state without them. All of it outlives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_nobody_checkpoints_are_released_past_a_share_of_the_quota_and_never_refused() {
    const QUOTA_BYTES: u64 = 1024 * 1024;
    const RECORDS: u64 = 1_024;
    let mut region = RegionProcesses::with_cluster_settings("region_log_quota_mb = 1\n");
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    let connections = RegionConnections::new(&region.members()).expect("valid members");
    wait_for_leader("a leader is elected", &connections, &NODE_IDS).await;
    let mut client = RegionClient::new(connections.clone(), 93);
    let call = |sequence: u64| Call {
        object_id: format!("sensor/{}", sequence % 10),
        method_id: 1,
        arguments: vec![sequence as u8; 4096],
        scope: Scope::Regional,
    };
    let mut last_position = 0;
    for sequence in 1..=RECORDS {
        let committed = client
            .propose_with_sequence(sequence, &call(sequence))
            .await
            .unwrap_or_else(|error| panic!("record {sequence} was refused: {error}"));
        last_position = committed.position;
    }
    let applied = |status: &proto::StatusReply| status.applied_position >= last_position;
    let mut truncated_through = 0;
    for node_id in NODE_IDS {
        let deadline = Deadline::new("every member applies the last record", WAIT_MAX);
        let status = loop {
            let status = connections.status(node_id).await.expect("status");
            if applied(&status) {
                break status;
            }
            deadline.check().await;
        };
        assert!(
            status.log_size_bytes <= QUOTA_BYTES * 3 / 4 + 8192,
            "node {node_id} holds {} bytes above its truncation point under a quota of \
             {QUOTA_BYTES}",
            status.log_size_bytes
        );
        assert_eq!(status.released_objects, 10, "node {node_id}: {status:?}");
        assert!(status.releases >= 10, "node {node_id}: {status:?}");
        assert!(status.truncated_through_position > RECORDS / 2);
        truncated_through = status.truncated_through_position;
    }
    let fetch = |connections: RegionConnections| async move {
        let leader = connections.find_leader().await.expect("a leader");
        connections
            .stub(leader)
            .expect("a stub")
            .fetch_checkpoint(proto::FetchCheckpointRequest {
                object_id: "sensor/3".to_owned(),
                ..Default::default()
            })
            .await
            .expect("fetch")
            .into_inner()
    };
    let fetched = fetch(connections.clone()).await;
    assert!(fetched.checkpoint.is_none());
    assert!(
        fetched.released_through_position > 0
            && fetched.released_through_position <= truncated_through,
        "{fetched:?}"
    );

    for node_id in NODE_IDS {
        region.kill(node_id);
    }
    for node_id in NODE_IDS {
        region.start(node_id);
    }
    wait_for_leader("a leader is elected again", &connections, &NODE_IDS).await;
    let again = fetch(connections.clone()).await;
    assert_eq!(
        again.released_through_position,
        fetched.released_through_position
    );
    let more = client
        .propose_with_sequence(RECORDS + 1, &call(RECORDS + 1))
        .await
        .expect("the restarted region takes records");
    assert!(more.position > last_position);
}

#[test]
fn a_node_missing_from_the_topology_is_refused_with_the_known_ids() {
    let region = RegionProcesses::new();
    let output = dsss_tests::run_dsss(
        region.processes.directory(),
        [
            "node",
            "--topology",
            region.processes.topology().to_str().expect("utf-8 path"),
            "--id",
            "7",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("node 7 is not in the topology (its nodes are [1, 2, 3])"),
        "{stderr}"
    );
}

/// One member runs on a machine whose clock is an hour ahead (`--clock-step-ms`). Its peers
/// measure that from the probes their raft batches carry; it fences itself: its status says
/// so with its offset, it refuses calls with an answer that names its clock, it never leads
/// (not even when the leader is killed and it could win the election), and the region keeps
/// committing calls through the other two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_clock_is_an_hour_ahead_fences_itself_and_the_region_serves_on() {
    const SKEWED: u64 = 3;
    const HOUR_US: i64 = 3_600_000_000;
    let mut region = RegionProcesses::new();
    region.start(1);
    region.start(2);
    region
        .processes
        .start(SKEWED, &["--clock-step-ms", "3600000"]);
    let connections = RegionConnections::new(&region.members()).expect("valid members");
    let deadline = Deadline::new("the skewed member fences itself", WAIT_MAX);
    let fenced = loop {
        if let Ok(status) = connections.status(SKEWED).await
            && let Some(clock) = status.clock
            && clock.fenced
        {
            break clock;
        }
        deadline.check().await;
    };
    assert!(
        fenced.own_offset_us.abs_diff(HOUR_US) < 1_000_000,
        "it knows it is an hour ahead: {fenced:?}"
    );
    assert_eq!(fenced.fences, 1);
    let leader = wait_for_leader("a leader among the others", &connections, &[1, 2]).await;
    for node_id in [1, 2] {
        let deadline = Deadline::new("a member measures the skewed one", WAIT_MAX);
        let clock = loop {
            let clock = connections
                .status(node_id)
                .await
                .expect("status")
                .clock
                .expect("clock health");
            if clock.peers.iter().any(|peer| peer.node_id == SKEWED) {
                break clock;
            }
            deadline.check().await;
        };
        assert!(!clock.fenced, "node {node_id}: {clock:?}");
        let skewed = clock
            .peers
            .iter()
            .find(|peer| peer.node_id == SKEWED)
            .expect("measured");
        assert!(
            skewed.offset_us.abs_diff(HOUR_US) < 1_000_000,
            "node {node_id} sees node {SKEWED} an hour ahead: {skewed:?}"
        );
    }
    // A call sent to it is refused, naming its clock, so that clients go elsewhere.
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", region.addresses[&SKEWED]))
            .expect("a valid address");
    let mut stub = dsss_wire::grpc::region_client_client(endpoint.connect_lazy());
    let refused = stub
        .propose(proto::ProposeRequest {
            object_id: "counter/7".to_owned(),
            method_id: 1,
            arguments: b"refused".to_vec(),
            client_id: 7,
            request_sequence: 1,
            scope: proto::Scope::Regional as i32,
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("ms ahead") && refused.message().contains("max_clock_skew_ms"),
        "{}",
        refused.message()
    );
    // Clients of the whole region are served by the others.
    let mut client = RegionClient::new(connections.clone(), 92);
    client
        .propose_with_sequence(1, &call_for(92, 1))
        .await
        .expect("the region commits calls");
    // With the leader gone, the skewed member could win an election (its log is as long as
    // the survivor's); it stands for none, votes, and the survivor leads.
    region.kill(leader);
    let survivor = if leader == 1 { 2 } else { 1 };
    let next = wait_for_leader("the survivor leads", &connections, &[survivor, SKEWED]).await;
    assert_eq!(next, survivor);
    client
        .propose_with_sequence(2, &call_for(92, 2))
        .await
        .expect("the region commits calls without its old leader");
    let status = connections.status(SKEWED).await.expect("status");
    assert_ne!(status.role, proto::NodeRole::Leader as i32);
    assert!(status.clock.expect("clock").fenced);
}
