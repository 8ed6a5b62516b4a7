//! Identities checked against what calls claim, between real `dsss node` processes: the nine
//! nodes of the local topology run with mutual TLS (certificates from `dsss certs generate`),
//! and calls made with the cluster's own certificates, but by the wrong identity or claiming
//! someone else, are refused with `PERMISSION_DENIED` while the cluster goes on serving:
//! - a node whose certificate names node 12 sending raft messages as node 13;
//! - a node of another region sending raft messages into a region;
//! - a sealed epoch from a node that hosts no coordinator replica;
//! - a region's batch submitted by a node of another region;
//! - admin calls from a client identity, client calls from an admin or a node identity.
//!
//! Reference: docs/design.md section 2.11 ("who may call what"). Build the binary first
//! (`cargo build --workspace`, or `cargo test --workspace`).

use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, local_topology_on_free_ports};
use dsss_wire::Scope;
use dsss_wire::grpc::{
    VersionedChannel, coordinator_client, region_admin_client, region_client_client,
    region_epochs_client, region_peer_client,
};
use dsss_wire::proto;
use dsss_wire::tls::{Security, TlsFiles};
use tonic::transport::Endpoint;

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Whose certificate a test call presents.
enum As {
    Node(u64),
    Client,
    Admin,
}

struct Cluster {
    processes: NodeProcesses,
}

impl Cluster {
    fn security(&self, who: &As) -> Security {
        let tls = self
            .processes
            .topology_model()
            .tls
            .as_ref()
            .expect("the local topology has [tls]");
        let (cert, key) = match who {
            As::Node(node_id) => (tls.node_cert_path(*node_id), tls.node_key_path(*node_id)),
            As::Client => (tls.client_cert.clone(), tls.client_key.clone()),
            As::Admin => (tls.admin_cert_path(), tls.admin_key_path()),
        };
        Security::tls(TlsFiles {
            ca_cert: tls.ca_cert.clone(),
            cert,
            key,
        })
        .expect("the generated files load")
    }

    fn address(&self, node_id: u64) -> String {
        self.processes
            .topology_model()
            .nodes()
            .find(|(_, node)| node.id == node_id)
            .map(|(_, node)| node.address.clone())
            .expect("a node of the topology")
    }

    fn channel(&self, who: &As, node_id: u64) -> tonic::transport::Channel {
        let endpoint = Endpoint::from_shared(format!("http://{}", self.address(node_id)))
            .expect("a valid endpoint");
        self.security(who).connect_lazy(endpoint)
    }

    fn members(&self, region: &str) -> Vec<(u64, String)> {
        self.processes
            .topology_model()
            .regions
            .iter()
            .find(|found| found.id == region)
            .expect("a region of the topology")
            .nodes
            .iter()
            .map(|node| (node.id, node.address.clone()))
            .collect()
    }
}

fn raft_batch(from: u64, to: u64) -> proto::RaftBatch {
    proto::RaftBatch {
        from_node_id: from,
        to_node_id: to,
        sender_time: None,
        messages: Vec::new(),
        clock_probe: None,
    }
}

/// Asserts that `outcome` is a `PERMISSION_DENIED` whose message holds every one of `words`.
fn assert_denied<T: std::fmt::Debug>(outcome: Result<T, tonic::Status>, words: &[&str]) {
    let status = outcome.expect_err("the call is refused");
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "refused as not permitted: {status:?}"
    );
    for word in words {
        assert!(
            status.message().contains(word),
            "the refusal says {word:?}: {}",
            status.message()
        );
    }
}

async fn wait_until_serving(cluster: &Cluster, region: &str) -> u64 {
    let connections = RegionConnections::with_security(
        &cluster.members(region),
        &cluster.processes.client_security(),
    )
    .expect("members");
    let deadline = Deadline::new("a leader with sealed epochs", WAIT_MAX);
    loop {
        for node_id in connections.node_ids() {
            if let Ok(status) = connections.status(node_id).await
                && status.role == proto::NodeRole::Leader as i32
                && status.sealed_epoch_number > 0
            {
                return node_id;
            }
        }
        deadline.check().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_admitted_by_the_identity_their_certificate_names_and_claims_must_match_it() {
    let (text, topology) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    for (_, node) in topology.nodes() {
        processes.start(node.id, &[]);
    }
    let cluster = Cluster { processes };
    wait_until_serving(&cluster, "local-a").await;

    // Raft: node 12 may speak to node 11 as itself, and only as itself.
    let mut as_12 = region_peer_client(cluster.channel(&As::Node(12), 11));
    as_12
        .deliver(raft_batch(12, 11))
        .await
        .expect("a member speaks to its region as itself");
    assert_denied(
        as_12.deliver(raft_batch(13, 11)).await,
        &["claims node 13", "node 12"],
    );
    // A node of another region is no member of this one, whatever it claims.
    let mut as_21 = region_peer_client(cluster.channel(&As::Node(21), 11));
    assert_denied(
        as_21.deliver(raft_batch(21, 11)).await,
        &["node 21", "region local-b"],
    );
    assert_denied(
        as_21.deliver(raft_batch(12, 11)).await,
        &["node 21", "region local-b"],
    );

    // Sealed epochs come only from coordinator replicas (11, 21, 31).
    let epoch = proto::SealedEpoch {
        epoch_number: 1,
        ..Default::default()
    };
    let mut epochs_as_12: proto::region_epochs_client::RegionEpochsClient<VersionedChannel> =
        region_epochs_client(cluster.channel(&As::Node(12), 21));
    assert_denied(
        epochs_as_12.deliver(epoch.clone()).await,
        &["node 12", "coordinator replica"],
    );
    let mut epochs_as_client = region_epochs_client(cluster.channel(&As::Client, 21));
    assert_denied(epochs_as_client.deliver(epoch).await, &["client"]);

    // A region's batch comes from a node of that region, naming itself as sender.
    let batch = |region: &str, sender: u64| proto::RegionBatch {
        region: region.to_owned(),
        batch_number: 1,
        sender_node_id: sender,
        ..Default::default()
    };
    let mut coordinator_as_12 = coordinator_client(cluster.channel(&As::Node(12), 11));
    assert_denied(
        coordinator_as_12.submit_batch(batch("local-b", 12)).await,
        &["claims region local-b", "node 12 of region local-a"],
    );
    assert_denied(
        coordinator_as_12.submit_batch(batch("local-a", 13)).await,
        &["claims node 13", "node 12"],
    );

    // Admin calls need an admin identity; client calls a client identity.
    let mut admin_as_client = region_admin_client(cluster.channel(&As::Client, 11));
    assert_denied(
        admin_as_client
            .change_membership(proto::ChangeMembershipRequest {
                action: proto::MembershipAction::Remove as i32,
                node_id: 13,
            })
            .await,
        &["admin identity", "client"],
    );
    assert_denied(
        admin_as_client.members(proto::MembersRequest {}).await,
        &["admin identity"],
    );
    let mut admin_as_node = region_admin_client(cluster.channel(&As::Node(12), 11));
    assert_denied(
        admin_as_node.members(proto::MembersRequest {}).await,
        &["admin identity", "node 12"],
    );
    let members = region_admin_client(cluster.channel(&As::Admin, 11))
        .members(proto::MembersRequest {})
        .await
        .expect("an admin reads the members")
        .into_inner();
    assert_eq!(members.voters.len(), 3, "nobody was removed: {members:?}");
    for who in [As::Admin, As::Node(12)] {
        let mut stub = region_client_client(cluster.channel(&who, 11));
        assert_denied(
            stub.propose(proto::ProposeRequest::default()).await,
            &["client identity"],
        );
        // Anyone of the cluster may read a node's status.
        stub.status(proto::StatusRequest {})
            .await
            .expect("status is open to every identity");
    }

    // After all of that, every region still commits calls.
    for region in ["local-a", "local-b", "local-c"] {
        let leader = wait_until_serving(&cluster, region).await;
        let connections = RegionConnections::with_security(
            &cluster.members(region),
            &cluster.processes.client_security(),
        )
        .expect("members");
        let mut client = RegionClient::new(connections, 7);
        client.prefer(leader).expect("a member");
        let outcome = client
            .propose_with_sequence(
                1,
                &Call {
                    object_id: format!("counter/{region}"),
                    method_id: 1,
                    arguments: b"still serving".to_vec(),
                    scope: Scope::Regional,
                },
            )
            .await
            .expect("the region commits a client's call");
        assert!(outcome.position >= 1);
    }
    // Every refusal was logged by the node that refused it, with the caller.
    let log = std::fs::read_to_string(cluster.processes.directory().join("node-11.start-1.log"))
        .expect("node 11's log");
    assert!(
        log.contains("call refused") && log.contains("claims node 13"),
        "node 11 logged the refusals:\n{log}"
    );
}
