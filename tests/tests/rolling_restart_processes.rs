//! A rolling restart under load, as an operator upgrades or reconfigures a cluster: nine real
//! `dsss node` processes (the local topology on free ports, mutual TLS), application instances
//! in every region calling a global counter and their region's regional counter without pause,
//! and every node in turn stopped with SIGTERM, started again and waited for until its `/readyz`
//! says it serves. Not one call may fail, calls must keep completing while each node is down,
//! and afterwards every region's copy of the global counter holds exactly the calls that
//! completed, as each regional counter holds its region's.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use dsss::{Client, Config};
use dsss_examples::Counter;
use dsss_tests::processes::{Deadline, NodeProcesses, local_topology_on_free_ports};
use dsss_tests::run_dsss;
use dsss_topology::Topology;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(90);

/// The global object every region's instance calls.
const GLOBAL_COUNTER: &str = "rolling/global";

/// The regional object each region's instance calls.
const REGIONAL_COUNTER: &str = "rolling/regional";

/// What the instances of one region counted.
#[derive(Debug, Default)]
struct Tally {
    global_ok: AtomicU64,
    regional_ok: AtomicU64,
    failed: AtomicU64,
}

fn client_config(topology: &Topology, region: &str) -> Config {
    let mut config = Config::from_parsed_topology(topology, region).expect("the region exists");
    config.call_timeout = WAIT_MAX;
    config
}

/// Whether the node's `/readyz` answers 200.
async fn ready(metrics_address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(metrics_address).await else {
        return false;
    };
    if stream
        .write_all(b"GET /readyz HTTP/1.1\r\nHost: node\r\n\r\n")
        .await
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    answer.starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_restarted_in_turn_under_load_fails_no_call() {
    let (text, topology) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    let nodes: Vec<(u64, String)> = topology
        .nodes()
        .map(|(_, node)| {
            (
                node.id,
                node.metrics_listen
                    .clone()
                    .expect("the local topology gives every node a metrics address"),
            )
        })
        .collect();
    for (node_id, _) in &nodes {
        processes.start(*node_id, &[]);
    }
    let topology_path = processes.topology().to_str().expect("UTF-8").to_owned();
    let deadline = Deadline::new("the cluster is healthy", WAIT_MAX);
    while run_dsss(
        processes.directory(),
        ["status", "--topology", topology_path.as_str()],
    )
    .status
    .code()
        != Some(0)
    {
        deadline.check().await;
    }

    let model = processes.topology_model().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    let mut tallies = Vec::new();
    for region in &model.regions {
        let client = Client::connect(client_config(&model, &region.id))
            .await
            .expect("connect");
        let global = client.open::<Counter>(GLOBAL_COUNTER).await.expect("open");
        let regional = client
            .open_regional::<Counter>(REGIONAL_COUNTER)
            .await
            .expect("open regional");
        let tally = Arc::new(Tally::default());
        tallies.push((region.id.clone(), Arc::clone(&tally)));
        let stop = Arc::clone(&stop);
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                match global.add(1).await {
                    Ok(_) => tally.global_ok.fetch_add(1, Ordering::SeqCst),
                    Err(error) => {
                        failures.push(format!("global: {error}"));
                        tally.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                match regional.add(1).await {
                    Ok(_) => tally.regional_ok.fetch_add(1, Ordering::SeqCst),
                    Err(error) => {
                        failures.push(format!("regional: {error}"));
                        tally.failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
            (client, global, regional, failures)
        }));
    }
    let completed = |tallies: &[(String, Arc<Tally>)]| -> u64 {
        tallies
            .iter()
            .map(|(_, tally)| {
                tally.global_ok.load(Ordering::SeqCst) + tally.regional_ok.load(Ordering::SeqCst)
            })
            .sum()
    };
    // Some calls complete before the first restart.
    let deadline = Deadline::new("the instances complete calls", WAIT_MAX);
    while completed(&tallies) < 30 {
        deadline.check().await;
    }

    for (node_id, metrics_address) in &nodes {
        let before = completed(&tallies);
        let mut child = processes.take_child(*node_id).expect("the node runs");
        let stopped = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(stopped.success(), "SIGTERM to node {node_id}");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait for the node");
        assert!(status.success(), "node {node_id} stopped cleanly: {status}");
        // While it is down, the other nodes go on serving.
        let deadline = Deadline::new("calls complete while a node is down", WAIT_MAX);
        while completed(&tallies) < before + 10 {
            deadline.check().await;
        }
        processes.start(*node_id, &[]);
        let deadline = Deadline::new("the restarted node is ready", WAIT_MAX);
        while !ready(metrics_address).await {
            deadline.check().await;
        }
    }
    // And after the last.
    let after = completed(&tallies);
    let deadline = Deadline::new("calls complete after the rolling restart", WAIT_MAX);
    while completed(&tallies) < after + 10 {
        deadline.check().await;
    }
    stop.store(true, Ordering::SeqCst);

    let mut instances = Vec::new();
    for worker in workers {
        instances.push(worker.await.expect("the worker ends"));
    }
    let failures: Vec<&String> = instances
        .iter()
        .flat_map(|(_, _, _, failures)| failures)
        .collect();
    assert!(failures.is_empty(), "calls failed: {failures:#?}");
    let global_total: u64 = tallies
        .iter()
        .map(|(_, tally)| tally.global_ok.load(Ordering::SeqCst))
        .sum();
    for ((region, tally), (_, global, regional, _)) in tallies.iter().zip(&instances) {
        global.sync().await.expect("sync the global counter");
        regional.sync().await.expect("sync the regional counter");
        assert_eq!(
            global.read(|counter| counter.value()),
            global_total as i64,
            "region {region}'s copy of the global counter holds every completed call"
        );
        assert_eq!(
            regional.read(|counter| counter.value()),
            tally.regional_ok.load(Ordering::SeqCst) as i64,
            "region {region}'s regional counter holds its region's completed calls"
        );
    }
    eprintln!(
        "rolling restart of {} nodes: {} calls completed, none failed",
        nodes.len(),
        completed(&tallies)
    );
}
