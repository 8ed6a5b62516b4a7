//! A flood from one client of a real region: three `dsss node` processes over mutual TLS,
//! one client (with the cluster's client certificate) sending, as fast as it can and all at
//! once, proposals larger than a message may be, proposals whose fields are malformed,
//! connections that send bytes that are not TLS, and subscriptions from the start of the log
//! that it never reads. Meanwhile another client's calls must all commit, and every node must stay
//! under the memory bound the README states for a node under a flood (1 GiB: its buffers for
//! subscribers that do not read are bounded node-wide at 256 MiB, uploads at 64 MiB).
//!
//! Nothing is asserted about speed; the calls' latencies are printed. Build the binary first
//! (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, one_region_topology};
use dsss_wire::Scope;
use dsss_wire::proto;
use dsss_wire::tls::Security;
use tokio::io::AsyncWriteExt;

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// How long the flood lasts at least.
const FLOOD: Duration = Duration::from_secs(8);

/// The calls the other client makes during the flood, however long they take; the flood goes
/// on until they are done.
const CALM_CALLS: u64 = 20;

/// The memory a node under a flood stays under (README, "Mutual TLS").
const NODE_RESIDENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn topology_text() -> String {
    one_region_topology(
        "flood",
        &NODE_IDS,
        "[tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n",
    )
}

fn stub(
    address: &str,
    security: &Security,
) -> proto::region_client_client::RegionClientClient<dsss_wire::grpc::VersionedChannel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid endpoint")
        .connect_timeout(Duration::from_secs(5));
    dsss_wire::grpc::region_client_client(security.connect_lazy(endpoint))
}

/// The resident memory of process `pid`, from `/proc`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_flooded_by_one_client_keeps_serving_the_others_within_its_memory_bound() {
    let mut processes = NodeProcesses::new(&topology_text());
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members: Vec<(u64, String)> = processes.topology_model().regions[0]
        .nodes
        .iter()
        .map(|node| (node.id, node.address.clone()))
        .collect();
    let security = processes.client_security();
    let connections = RegionConnections::with_security(&members, &security).expect("valid members");
    let deadline = Deadline::new("a leader", WAIT_MAX);
    let leader = loop {
        if let Some(leader) = connections.find_leader().await {
            break leader;
        }
        deadline.check().await;
    };
    let address = members
        .iter()
        .find(|(node_id, _)| *node_id == leader)
        .map(|(_, address)| address.clone())
        .expect("the leader is a member");
    // Some log for the subscriptions to read.
    let mut writer = RegionClient::new(connections.clone(), 11);
    writer.prefer(leader).expect("a member");
    for sequence in 1..=200 {
        writer
            .propose_with_sequence(
                sequence,
                &Call {
                    object_id: "flood/log".to_owned(),
                    method_id: 1,
                    arguments: vec![7; 16 * 1024],
                    scope: Scope::Regional,
                },
            )
            .await
            .expect("the log fills");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let mut flood = Vec::new();
    // Proposals larger than a message may be.
    for _ in 0..2 {
        let (stop, sent, mut client) = (stop.clone(), sent.clone(), stub(&address, &security));
        flood.push(tokio::spawn(async move {
            let oversized = vec![1_u8; dsss_wire::GRPC_MESSAGE_BYTES_MAX + 1024];
            while !stop.load(Ordering::Relaxed) {
                let _ = client
                    .propose(proto::ProposeRequest {
                        object_id: "flood/big".to_owned(),
                        method_id: 1,
                        arguments: oversized.clone(),
                        client_id: 99,
                        request_sequence: 1,
                        scope: proto::Scope::Regional as i32,
                    })
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Proposals whose fields are malformed.
    {
        let (stop, sent, mut client) = (stop.clone(), sent.clone(), stub(&address, &security));
        flood.push(tokio::spawn(async move {
            let mut round = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let _ = client
                    .propose(proto::ProposeRequest {
                        object_id: "\u{0}".repeat((round % 5000) as usize),
                        method_id: u32::MAX,
                        arguments: Vec::new(),
                        client_id: round,
                        request_sequence: 0,
                        scope: (round % 7) as i32,
                    })
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    // Connections that send bytes that are not TLS, some left open.
    {
        let (stop, sent, address) = (stop.clone(), sent.clone(), address.clone());
        flood.push(tokio::spawn(async move {
            let garbage: Vec<u8> = (0..64 * 1024_u32)
                .map(|index| (index as u8).wrapping_mul(31) ^ 0x5a)
                .collect();
            let mut open = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut tcp) = tokio::net::TcpStream::connect(&address).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = tcp.write_all(&garbage).await;
                sent.fetch_add(1, Ordering::Relaxed);
                // Every other one stays open, up to the per-address bound and beyond.
                if open.len() < 1_024 && sent.load(Ordering::Relaxed) % 2 == 0 {
                    open.push(tcp);
                }
            }
        }));
    }
    // Subscriptions from the start of the log that are never read, held open.
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicU64::new(0));
    for task in 0..4_u64 {
        let (stop, sent, held) = (stop.clone(), sent.clone(), held.clone());
        let refused = refused.clone();
        let address = address.clone();
        let security = security.clone();
        flood.push(tokio::spawn(async move {
            let mut round = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                round += 1;
                let mut client = stub(&address, &security);
                let outcome = client
                    .subscribe(proto::SubscribeRequest {
                        from_position: 1,
                        object_ids: Vec::new(),
                        client_id: 1_000_000 * (task + 1) + round,
                    })
                    .await;
                match outcome {
                    Ok(stream) => held.lock().await.push((client, stream)),
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
                if held.lock().await.len() >= 2_000 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }

    // Meanwhile, another client's calls all commit.
    let started = Instant::now();
    let mut client = RegionClient::new(connections.clone(), 12);
    client.prefer(leader).expect("a member");
    let mut latencies = Vec::new();
    let mut sequence = 0;
    while started.elapsed() < FLOOD || sequence < CALM_CALLS {
        sequence += 1;
        let call_started = Instant::now();
        client
            .propose_with_sequence(
                sequence,
                &Call {
                    object_id: "flood/calm".to_owned(),
                    method_id: 1,
                    arguments: sequence.to_be_bytes().to_vec(),
                    scope: Scope::Regional,
                },
            )
            .await
            .unwrap_or_else(|error| panic!("call {sequence} of the calm client: {error}"));
        latencies.push(call_started.elapsed());
    }
    let mut peak = BTreeMap::new();
    for node_id in NODE_IDS {
        let pid = processes
            .child_mut(node_id)
            .map(|child| child.id())
            .expect("the node runs");
        peak.insert(node_id, resident_bytes(pid).expect("the node's memory"));
    }
    stop.store(true, Ordering::Relaxed);
    for task in flood {
        let _ = task.await;
    }
    let subscriptions_held = held.lock().await.len();
    latencies.sort();
    println!(
        "flood: {} requests sent, {subscriptions_held} unread subscriptions held, {} refused; calm client: {} calls, p50 {:?}, max {:?}; node memory (MiB): {:?}",
        sent.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        latencies.len(),
        latencies[latencies.len() / 2],
        latencies.last().expect("calls"),
        peak.iter()
            .map(|(node, bytes)| (*node, bytes / (1024 * 1024)))
            .collect::<Vec<_>>()
    );
    for (node_id, bytes) in &peak {
        assert!(
            *bytes < NODE_RESIDENT_BYTES_MAX,
            "node {node_id} holds {} MiB under the flood",
            bytes / (1024 * 1024)
        );
    }
    // Every node still serves.
    for node_id in NODE_IDS {
        connections
            .status(node_id)
            .await
            .unwrap_or_else(|error| panic!("node {node_id} after the flood: {error}"));
    }
}
