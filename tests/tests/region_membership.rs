//! Membership changes of a running region with `dsss region add-node` and `remove-node`, on
//! `dsss node` OS processes over loopback. Reference: docs/design.md section 2 (membership and
//! failure) and section 1 (durability: a region that changes members loses nothing).
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::{dsss_binary, run_dsss};
use dsss_wire::Scope;
use dsss_wire::grpc::region_admin_client;
use dsss_wire::proto;
use tokio::time::{Instant, sleep};
use tonic::transport::Endpoint;

/// The founding members.
const FOUNDERS: [u64; 3] = [1, 2, 3];

/// The node that joins. The grown topology lists a fifth node too (a region lists an odd
/// number of nodes), which never runs.
const JOINER: u64 = 4;

/// Every node the grown topology lists.
const LISTED: [u64; 5] = [1, 2, 3, 4, 5];

/// Generous bound on every wait; nothing asserts how fast a change happens.
const WAIT_MAX: Duration = Duration::from_secs(60);

const POLL_INTERVAL: Duration = Duration::from_millis(50);

struct Processes {
    directory: tempfile::TempDir,
    addresses: BTreeMap<u64, String>,
    children: HashMap<u64, Child>,
}

impl Processes {
    fn new() -> Self {
        let addresses = LISTED
            .iter()
            .map(|&node_id| {
                let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
                let port = listener.local_addr().expect("address").port();
                (node_id, format!("127.0.0.1:{port}"))
            })
            .collect();
        Processes {
            directory: tempfile::tempdir().expect("temporary directory"),
            addresses,
            children: HashMap::new(),
        }
    }

    /// Writes a topology of region `region-a` with `nodes`, returning its path.
    fn topology(&self, name: &str, nodes: &[u64]) -> PathBuf {
        let lines: Vec<String> = nodes
            .iter()
            .map(|node_id| {
                format!(
                    "  {{ id = {node_id}, address = \"{}\", data_dir = \"data/node-{node_id}\" }},",
                    self.addresses[node_id]
                )
            })
            .collect();
        let text = format!(
            "[cluster]\nname = \"membership\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
             max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n\n\
             [coordinator]\nreplicas = [1]\npreferred_leader = 1\n\n\
             [[regions]]\nid = \"region-a\"\nnodes = [\n{}\n]\n",
            lines.join("\n")
        );
        let path = self.directory.path().join(name);
        fs::write(&path, text).expect("write the topology");
        path
    }

    fn start(&mut self, node_id: u64, topology: &Path, join: bool) {
        self.start_with(node_id, topology, join, &[]);
    }

    /// Starts `dsss node` with `extra` arguments after the usual ones.
    fn start_with(&mut self, node_id: u64, topology: &Path, join: bool, extra: &[&str]) {
        let log = File::create(self.directory.path().join(format!("node-{node_id}.log")))
            .expect("create the log");
        let mut command = Command::new(dsss_binary());
        command
            .args(["node", "--topology"])
            .arg(topology)
            .args(["--id", &node_id.to_string()]);
        if join {
            command.arg("--join");
        }
        // Membership changes run over plaintext here (the topology has no [tls]); the
        // process tests of the local topology run mutual TLS.
        command.arg("--insecure");
        command.args(extra);
        let child = command
            .current_dir(self.directory.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log)
            .spawn()
            .expect("start dsss node");
        self.children.insert(node_id, child);
    }

    fn log_text(&self, node_id: u64) -> String {
        fs::read_to_string(self.directory.path().join(format!("node-{node_id}.log")))
            .unwrap_or_default()
    }

    fn members(&self) -> Vec<(u64, String)> {
        self.addresses
            .iter()
            .map(|(node_id, address)| (*node_id, address.clone()))
            .collect()
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            for node_id in self.addresses.keys() {
                let log = self.directory.path().join(format!("node-{node_id}.log"));
                let text = fs::read_to_string(&log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!(
                    "--- node {node_id}\n{}",
                    lines[lines.len().saturating_sub(30)..].join("\n")
                );
            }
        }
    }
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

async fn members_of(address: &str) -> Option<proto::MembersReply> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .ok()?
        .connect()
        .await
        .ok()?;
    region_admin_client(channel)
        .members(proto::MembersRequest {})
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

fn call(sequence: u64) -> Call {
    Call {
        object_id: "registry/main".to_owned(),
        method_id: 2,
        arguments: format!("entry {sequence}").into_bytes(),
        scope: Scope::Regional,
    }
}

/// The voters as the leader among `candidates` sees them.
async fn voters(processes: &Processes, candidates: &[u64]) -> Vec<u64> {
    let started = Instant::now();
    loop {
        for node_id in candidates {
            if let Some(reply) = members_of(&processes.addresses[node_id]).await
                && reply.leader_node_id == reply.node_id
            {
                return reply.voters;
            }
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "no leader within {WAIT_MAX:?}"
        );
        sleep(POLL_INTERVAL).await;
    }
}

fn membership_command(
    processes: &Processes,
    command: &str,
    topology: &Path,
    node_id: u64,
) -> String {
    let output = run_dsss(
        processes.directory.path(),
        [
            "region",
            command,
            "--topology",
            topology.to_str().expect("utf-8 path"),
            "--id",
            &node_id.to_string(),
            "--wait-seconds",
            "60",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joins_as_learner_becomes_voter_and_a_founder_leaves() {
    let mut processes = Processes::new();
    let founding = processes.topology("three.toml", &FOUNDERS);
    let grown = processes.topology("five.toml", &LISTED);
    for node_id in FOUNDERS {
        processes.start(node_id, &founding, false);
    }
    let connections = RegionConnections::new(&processes.members()).expect("members");
    let mut client = RegionClient::new(connections.clone(), 31);
    for sequence in 1..=30 {
        client
            .propose(&call(sequence))
            .await
            .expect("the founders commit");
    }
    assert_eq!(voters(&processes, &FOUNDERS).await, FOUNDERS.to_vec());

    // The joiner starts empty and catches up as a learner before it votes.
    processes.start(JOINER, &grown, true);
    let stdout = membership_command(&processes, "add-node", &grown, JOINER);
    assert!(
        stdout.contains(&format!("node {JOINER} is a learner")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("node {JOINER} is a voter")),
        "{stdout}"
    );
    assert_eq!(voters(&processes, &FOUNDERS).await, vec![1, 2, 3, JOINER]);
    for sequence in 31..=60 {
        client
            .propose(&call(sequence))
            .await
            .expect("four voters commit");
    }
    let founder_log = connections
        .read_log(1, 1, 60, WAIT_MAX)
        .await
        .expect("read node 1");
    let joiner_log = connections
        .read_log(JOINER, 1, 60, WAIT_MAX)
        .await
        .expect("read the joiner");
    assert!(
        joiner_log == founder_log,
        "the joiner's log differs from node 1's"
    );

    // A founder leaves; the other three go on committing.
    let stdout = membership_command(&processes, "remove-node", &grown, 3);
    assert!(stdout.contains("node 3 removed"), "{stdout}");
    assert_eq!(
        voters(&processes, &[1, 2, JOINER]).await,
        vec![1, 2, JOINER]
    );
    let committed = client
        .propose(&call(61))
        .await
        .expect("three voters commit");
    assert_eq!(committed.position, 61);
}

/// The raft log entries every node of the snapshot test keeps: a handful, so that the leader
/// compacts its log after a few dozen calls and joiners can only catch up by snapshot.
const SMALL_RAFT_LOG_ENTRIES_MAX: &str = "8";

/// Proposes calls `from..=through` one after another, each its own raft entry.
async fn propose_range(client: &mut RegionClient, from: u64, through: u64) -> u64 {
    let mut position = 0;
    for sequence in from..=through {
        position = client
            .propose(&call(sequence))
            .await
            .expect("the region commits")
            .position;
    }
    position
}

/// Adds `node_id` (started with `--join`) with `dsss region add-node`, asserting both steps.
fn add_node(processes: &Processes, topology: &Path, node_id: u64) {
    let stdout = membership_command(processes, "add-node", topology, node_id);
    assert!(
        stdout.contains(&format!("node {node_id} is a learner")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("node {node_id} is a voter")),
        "{stdout}"
    );
}

/// Two nodes join one after the other after the leader compacted its raft log, so each one
/// catches up by snapshot (the second from a snapshot that must include the first's joining,
/// not one built before it), then one of them leaves. Every remaining member ends with the
/// same log. Reference: docs/design.md section 2 (membership and failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_join_by_snapshot_after_compaction_and_every_member_keeps_one_log() {
    let mut processes = Processes::new();
    let founding = processes.topology("three.toml", &FOUNDERS);
    let grown = processes.topology("five.toml", &LISTED);
    let small_log = ["--raft-log-entries-max", SMALL_RAFT_LOG_ENTRIES_MAX];
    for node_id in FOUNDERS {
        processes.start_with(node_id, &founding, false, &small_log);
    }
    let connections = RegionConnections::new(&processes.members()).expect("members");
    let mut client = RegionClient::new(connections.clone(), 41);
    // Each call is its own raft entry: far more entries than the leader keeps.
    propose_range(&mut client, 1, 40).await;

    processes.start_with(JOINER, &grown, true, &small_log);
    add_node(&processes, &grown, JOINER);
    propose_range(&mut client, 41, 80).await;

    let second_joiner = 5;
    processes.start_with(second_joiner, &grown, true, &small_log);
    add_node(&processes, &grown, second_joiner);
    assert_eq!(voters(&processes, &FOUNDERS).await, LISTED.to_vec());
    propose_range(&mut client, 81, 100).await;

    // The first joiner leaves again; the other four go on committing.
    let stdout = membership_command(&processes, "remove-node", &grown, JOINER);
    assert!(
        stdout.contains(&format!("node {JOINER} removed")),
        "{stdout}"
    );
    let remaining = [1, 2, 3, second_joiner];
    assert_eq!(voters(&processes, &remaining).await, remaining.to_vec());
    let last_position = propose_range(&mut client, 101, 120).await;
    assert_eq!(last_position, 120);

    for joiner in [JOINER, second_joiner] {
        assert!(
            processes
                .log_text(joiner)
                .contains("restored a snapshot of the region log"),
            "node {joiner} caught up without a snapshot; its log:\n{}",
            processes.log_text(joiner)
        );
    }
    let reference = connections
        .read_log(1, 1, last_position, WAIT_MAX)
        .await
        .expect("read node 1");
    assert_eq!(reference.len() as u64, last_position);
    for node_id in [2, 3, second_joiner] {
        let log = connections
            .read_log(node_id, 1, last_position, WAIT_MAX)
            .await
            .expect("read a member");
        assert!(
            log == reference,
            "node {node_id}'s log differs from node 1's"
        );
    }
}

#[test]
fn add_node_refuses_a_node_missing_from_the_topology() {
    let processes = Processes::new();
    let founding = processes.topology("three.toml", &FOUNDERS);
    let output = run_dsss(
        processes.directory.path(),
        [
            "region",
            "add-node",
            "--topology",
            founding.to_str().expect("utf-8 path"),
            "--id",
            "9",
        ],
    );
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("node 9 is not in the topology"),
        "{}",
        describe(&output)
    );
}
