//! A divergence alarm from the operator's side, on three `dsss node` processes over mutual
//! TLS: two clients report different state hashes for one object at one position (what copies
//! of an object with a method that is not deterministic do); `dsss status` then exits 1 and
//! names the object; `dsss region clear-alarm` clears it (and says so), after which the status
//! is healthy again, and clearing it a second time changes nothing.

use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, TLS_TABLE, one_region_topology};
use dsss_tests::run_dsss;
use dsss_wire::Scope;
use dsss_wire::proto;

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// The object whose copies disagree.
const OBJECT: &str = "ledger/diverged";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergence_alarm_shows_in_status_and_an_operator_clears_it() {
    let text = one_region_topology("alarm", &NODE_IDS, TLS_TABLE);
    let mut processes = NodeProcesses::new(&text);
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let connections =
        RegionConnections::with_security(&processes.members(), &processes.client_security())
            .expect("valid members");
    let mut client = RegionClient::new(connections.clone(), 5);
    let call = Call {
        object_id: OBJECT.to_owned(),
        method_id: 1,
        arguments: b"a record".to_vec(),
        scope: Scope::Regional,
    };
    let deadline = Deadline::new("a call commits", WAIT_MAX);
    let position = loop {
        match client.propose_with_sequence(1, &call).await {
            Ok(committed) => break committed.position,
            Err(_) => deadline.check().await,
        }
    };
    let node = client.current_node_id();

    // Two copies report different states at the same position.
    let mut stub = connections.stub(node).expect("a member");
    for (client_id, hash_byte) in [(21_u64, 1_u8), (22, 2)] {
        let reply = stub
            .upload_checkpoint(proto::UploadCheckpointRequest {
                checkpoint: Some(proto::Checkpoint {
                    object_id: OBJECT.to_owned(),
                    position,
                    state: vec![hash_byte; 8],
                    state_hash: vec![hash_byte; 32],
                }),
                client_id,
            })
            .await
            .expect("the upload is taken")
            .into_inner();
        assert!(reply.not_leader.is_none(), "{reply:?}");
    }

    let topology = processes.topology().to_str().expect("UTF-8").to_owned();
    let status = || {
        let output = run_dsss(processes.directory(), ["status", "--topology", &topology]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let deadline = Deadline::new("status names the diverged object", WAIT_MAX);
    loop {
        let (code, stdout) = status();
        if code == Some(1) && stdout.contains("has 1 objects with a divergence alarm") {
            assert!(stdout.contains(OBJECT), "{stdout}");
            break;
        }
        deadline.check().await;
    }

    let clear = |region: &str| {
        run_dsss(
            processes.directory(),
            [
                "region",
                "clear-alarm",
                "--topology",
                &topology,
                "--region",
                region,
                "--object",
                OBJECT,
            ],
        )
    };
    let cleared = clear("region-a");
    let said = String::from_utf8_lossy(&cleared.stdout);
    assert!(
        cleared.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&cleared.stderr)
    );
    assert!(
        said.contains("cleared the divergence alarm of ledger/diverged"),
        "{said}"
    );
    let deadline = Deadline::new("status is healthy once the alarm is cleared", WAIT_MAX);
    loop {
        let (code, stdout) = status();
        if code == Some(0) {
            assert!(stdout.contains("0 divergence alarms"), "{stdout}");
            break;
        }
        deadline.check().await;
    }
    let again = clear("region-a");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("has no divergence alarm"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    // A region that does not exist is named.
    let wrong = clear("region-z");
    assert_eq!(wrong.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("--region region-z"));
}
