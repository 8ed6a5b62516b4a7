//! Backing up a region and restoring it, as docs/operations.md says: with every node of the
//! region stopped (SIGTERM), a copy of each node's data directory is a consistent backup of the
//! region; restored (every node's copy put back, all of them from the same backup) the region
//! starts again from exactly what it held then: the same applied position and the same
//! records, and it takes new calls. Three `dsss node` processes over mutual TLS.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, TLS_TABLE, one_region_topology};
use dsss_wire::Scope;
use dsss_wire::proto;

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn call(label: &str) -> Call {
    Call {
        object_id: "ledger/backed-up".to_owned(),
        method_id: 1,
        arguments: label.as_bytes().to_vec(),
        scope: Scope::Regional,
    }
}

/// Stops every node with SIGTERM and waits for each to exit cleanly.
fn stop_all(processes: &mut NodeProcesses) {
    for node_id in NODE_IDS {
        let mut child = processes.take_child(node_id).expect("the node runs");
        let signalled = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(signalled.success());
        let status = child.wait().expect("wait for the node");
        assert!(status.success(), "node {node_id} stopped cleanly: {status}");
    }
}

/// Copies directory `from` to `to` (which must not exist), keeping modes.
fn copy_directory(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}

/// The highest applied position any node reports, once every node answers with a leader known.
async fn applied_everywhere(connections: &RegionConnections) -> u64 {
    let deadline = Deadline::new("every node answers with a leader", WAIT_MAX);
    loop {
        let mut positions = Vec::new();
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await
                && status.leader_node_id != 0
            {
                positions.push(status.applied_position);
            }
        }
        if positions.len() == NODE_IDS.len() && positions.windows(2).all(|pair| pair[0] == pair[1])
        {
            return positions[0];
        }
        deadline.check().await;
    }
}

async fn propose(client: &mut RegionClient, sequence: u64, label: &str) -> u64 {
    let deadline = Deadline::new("a call commits", WAIT_MAX);
    loop {
        match client.propose_with_sequence(sequence, &call(label)).await {
            Ok(committed) => return committed.position,
            Err(_) => deadline.check().await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_restored_from_a_backup_of_every_node_holds_what_it_held_then() {
    let text = one_region_topology("backup", &NODE_IDS, TLS_TABLE);
    let mut processes = NodeProcesses::new(&text);
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let connections =
        RegionConnections::with_security(&processes.members(), &processes.client_security())
            .expect("valid members");
    let mut client = RegionClient::new(connections.clone(), 77);
    let mut last = 0;
    for sequence in 1..=20 {
        last = propose(
            &mut client,
            sequence,
            &format!("before the backup {sequence}"),
        )
        .await;
    }
    let backed_up = applied_everywhere(&connections).await;
    assert!(backed_up >= last);

    // The backup: every node stopped, every data directory copied.
    stop_all(&mut processes);
    let data = processes.directory().join("data");
    let backup = processes.directory().join("backup");
    copy_directory(&data, &backup);

    // Life goes on after the backup.
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let mut client = RegionClient::new(connections.clone(), 78);
    for sequence in 1..=10 {
        propose(
            &mut client,
            sequence,
            &format!("after the backup {sequence}"),
        )
        .await;
    }
    let later = applied_everywhere(&connections).await;
    assert!(later > backed_up, "calls after the backup took positions");

    // The restore: every node stopped, every data directory replaced by its copy.
    stop_all(&mut processes);
    std::fs::remove_dir_all(&data).expect("remove the data");
    copy_directory(&backup, &data);
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let restored = applied_everywhere(&connections).await;
    assert_eq!(
        restored, backed_up,
        "the restored region holds exactly what it held at the backup"
    );
    // The records are those of before the backup, in order.
    let mut read_client = RegionClient::new(connections.clone(), 79);
    read_client.prefer(NODE_IDS[0]).expect("a member");
    let records = connections
        .read_log(NODE_IDS[0], 1, restored, WAIT_MAX)
        .await
        .expect("read the restored log");
    let labels: Vec<String> = records
        .iter()
        .filter_map(|entry| match &entry.entry {
            Some(proto::log_entry::Entry::Regional(record)) => {
                Some(String::from_utf8_lossy(&record.arguments).into_owned())
            }
            _ => None,
        })
        .collect();
    let expected: Vec<String> = (1..=20)
        .map(|sequence| format!("before the backup {sequence}"))
        .collect();
    assert_eq!(labels, expected);
    // And it takes new calls.
    let position = propose(&mut read_client, 1, "after the restore").await;
    assert!(position > restored);
}
