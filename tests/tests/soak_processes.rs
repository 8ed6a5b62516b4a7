//! `dsss bench soak` at a small size against three regions of three `dsss node --emulate-wan`
//! processes: the command a user runs for hours, kept from rotting. It must write its load
//! through the SDK, find every node's process and status, see each region's truncation point
//! move past the checkpoints of every object it writes, and pass its own checks (no failed
//! call, copies that agree with each other and with the calls acknowledged, memory and logs
//! within their bounds).
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::time::Duration;

use dsss::region_client::RegionConnections;
use dsss_tests::processes::{
    Deadline, NodeProcesses, client_security_of, local_topology_on_free_ports,
};
use dsss_tests::run_dsss;
use dsss_wire::proto;

/// Generous bound on the wait for the cluster; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Waits until every region has a leader whose log holds sealed epochs.
async fn wait_until_ready(topology: &dsss_topology::Topology) {
    let deadline = Deadline::new(
        "every region has a leader and appends sealed epochs",
        WAIT_MAX,
    );
    loop {
        let mut ready = 0;
        for region in &topology.regions {
            let members: Vec<(u64, String)> = region
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect();
            let connections =
                RegionConnections::with_security(&members, &client_security_of(topology))
                    .expect("members");
            for node_id in connections.node_ids() {
                if let Ok(status) = connections.status(node_id).await
                    && status.role == proto::NodeRole::Leader as i32
                    && status.sealed_epoch_number > 0
                {
                    ready += 1;
                    break;
                }
            }
        }
        if ready == topology.regions.len() {
            return;
        }
        deadline.check().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_passes_its_checks_and_moves_every_truncation_point() {
    let (text, _) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    // The model's [tls] paths are absolute, for the test's own clients.
    let topology = processes.topology_model().clone();
    for (_, node) in topology.nodes() {
        processes.start(node.id, &["--emulate-wan"]);
    }
    wait_until_ready(&topology).await;

    // 8 MiB of records of about 1 KiB, a checkpoint every 50 records of an object: each
    // object, global ones included, checkpoints several times.
    let topology_path = processes.topology().to_owned();
    let directory = processes.directory().to_owned();
    let output = tokio::task::spawn_blocking(move || {
        run_dsss(
            &directory,
            [
                "bench".as_ref(),
                "soak".as_ref(),
                "--topology".as_ref(),
                topology_path.as_os_str(),
                "--total-mib".as_ref(),
                "8".as_ref(),
                "--payload-bytes".as_ref(),
                "512-1536".as_ref(),
                "--checkpoint-every".as_ref(),
                "50".as_ref(),
                "--report-seconds".as_ref(),
                "2".as_ref(),
            ],
        )
    })
    .await
    .expect("the soak runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        processes.print_logs();
    }
    assert!(
        output.status.success() && stdout.contains("soak passed every check"),
        "the soak failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    // Every node's process was found and measured.
    assert!(
        !stdout.contains("=?"),
        "a node's memory was not read:\n{stdout}"
    );
    // The summary's last column is each region's log at the end: "MiB @ truncation point".
    for region in &topology.regions {
        let line = stdout
            .lines()
            .rev()
            .find(|line| line.trim_start().starts_with(&format!("{} ", region.id)))
            .unwrap_or_else(|| panic!("no summary line of {}:\n{stdout}", region.id));
        let truncated_through: u64 = line
            .rsplit('@')
            .next()
            .and_then(|last| last.trim().parse().ok())
            .unwrap_or_else(|| panic!("no truncation point in {line:?}"));
        assert!(
            truncated_through > 1,
            "the truncation point of {} never moved: {line}\n{stdout}",
            region.id
        );
    }
}
