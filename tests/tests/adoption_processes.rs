//! Adopting another region's checkpoint of a global object, across real processes: three
//! regions of three `dsss node --emulate-wan` processes on loopback (`local.toml` with a 1 MiB
//! region log quota and releases past half of it), a global journal written from one region
//! whose copy there checkpoints, and nobody following it in the two others. Those regions
//! release its records once their logs pass half the quota; an instance that opens the journal
//! there afterwards gets it from a checkpoint its region adopted from the writing region
//! (`RegionEpochs.ReadCheckpoint` over mutual TLS), and reads what the writer reads.
//! Reference: docs/design.md section 2.8 ("Adopting a global object's checkpoint") and
//! section 6.
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::time::Duration;

use dsss::replica::ReplicaConfig;
use dsss::{Client, Config};
use dsss_examples::Journal;
use dsss_tests::processes::{
    Deadline, NodeProcesses, client_security_of, local_topology_on_free_ports,
};
use dsss_topology::Topology;
use dsss_wire::grpc::region_client_client;
use dsss_wire::proto;
use tokio::time::sleep;
use tonic::transport::Endpoint;

/// The journal's entries, each [`ENTRY_BYTES`]: together more than the quota, so the regions
/// that follow nobody release them.
const ENTRIES: usize = 96;
const ENTRY_BYTES: usize = 16 * 1024;
/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(90);

fn client_config(topology: &Topology, region: &str) -> Config {
    let mut config = Config::from_parsed_topology(topology, region).expect("the region exists");
    config.replica = ReplicaConfig {
        checkpoint_every_records: 8,
        ..ReplicaConfig::default()
    };
    config.call_timeout = WAIT_MAX;
    config
}

/// Every node's status in `region`, from the nodes that answer.
async fn statuses(topology: &Topology, region: &str) -> Vec<proto::StatusReply> {
    let security = client_security_of(topology);
    let mut replies = Vec::new();
    let nodes = topology
        .regions
        .iter()
        .find(|candidate| candidate.id == region)
        .map(|region| region.nodes.clone())
        .unwrap_or_default();
    for node in nodes {
        let Ok(endpoint) = Endpoint::from_shared(format!("http://{}", node.address)) else {
            continue;
        };
        let mut stub = region_client_client(security.connect_lazy(endpoint));
        if let Ok(reply) = stub.status(proto::StatusRequest {}).await {
            replies.push(reply.into_inner());
        }
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_that_released_a_global_object_opens_it_from_another_regions_checkpoint() {
    let (text, _) = local_topology_on_free_ports();
    let text = text.replacen(
        "[cluster]\n",
        "[cluster]\nregion_log_quota_mb = 1\nregion_log_release_share_percent = 50\n",
        1,
    );
    let mut processes = NodeProcesses::new(&text);
    let topology = processes.topology_model().clone();
    let node_ids: Vec<u64> = topology.nodes().map(|(_, node)| node.id).collect();
    for &node_id in &node_ids {
        processes.start(node_id, &["--emulate-wan"]);
    }
    let regions: Vec<String> = topology
        .regions
        .iter()
        .map(|region| region.id.clone())
        .collect();
    let (writer_region, late_region) = (&regions[1], &regions[0]);

    // The writer's copy follows the journal and checkpoints every 8 entries.
    let writer = Client::connect(client_config(&topology, writer_region))
        .await
        .expect("connect");
    let journal = writer
        .open::<Journal>("journal/audit")
        .await
        .unwrap_or_else(|error| {
            processes.print_logs();
            panic!("open the journal in {writer_region}: {error}")
        });
    for entry in 0..ENTRIES {
        let payload = vec![entry as u8; ENTRY_BYTES];
        journal.append(payload).await.unwrap_or_else(|error| {
            processes.print_logs();
            panic!("append {entry}: {error}")
        });
    }
    journal.sync().await.expect("sync");

    // The late region released the journal's records: nobody there followed them.
    let deadline = Deadline::new("the late region releases the journal", WAIT_MAX);
    loop {
        let released = statuses(&topology, late_region)
            .await
            .iter()
            .any(|status| status.released_objects > 0);
        if released {
            break;
        }
        if deadline.expired() {
            processes.print_logs();
            panic!("{late_region} released nothing");
        }
        sleep(Duration::from_millis(200)).await;
    }

    // An instance there opens it: its region adopts the writer region's checkpoint, and the
    // copy reads what the writer's reads.
    let late = Client::connect(client_config(&topology, late_region))
        .await
        .expect("connect");
    let late_journal = late
        .open::<Journal>("journal/audit")
        .await
        .unwrap_or_else(|error| {
            processes.print_logs();
            panic!("open the journal in {late_region}: {error}")
        });
    late_journal.sync().await.expect("sync");
    let summary = |journal: &Journal| (journal.entries(), journal.bytes(), journal.digest());
    let expected = journal.read(summary);
    assert_eq!(expected.0, ENTRIES as u64);
    assert_eq!(late_journal.read(summary), expected);
    let adopted: u64 = statuses(&topology, late_region)
        .await
        .iter()
        .map(|status| status.checkpoints_adopted)
        .sum();
    assert!(adopted >= 1, "{late_region} adopted no checkpoint");

    // Both go on together: an append from the late region reaches the writer's copy.
    late_journal
        .append(b"from the late region".to_vec())
        .await
        .expect("append from the late region");
    journal.sync().await.expect("sync");
    late_journal.sync().await.expect("sync");
    assert_eq!(journal.read(summary), late_journal.read(summary));
    assert_eq!(journal.read(summary).0, ENTRIES as u64 + 1);
}
