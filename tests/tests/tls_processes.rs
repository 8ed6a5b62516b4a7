//! Mutual TLS between real `dsss node` processes: a region of three nodes started from a
//! topology with `[tls]` (certificates from `dsss certs generate`) commits calls from the
//! region client, refuses callers without the cluster's certificates, and takes renewed
//! certificates without a restart; nodes without `[tls]` or with unusable files refuse to start,
//! and so do nodes on another node's data directory or on an empty one.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, one_region_topology};
use dsss_wire::Scope;
use dsss_wire::proto;
use dsss_wire::tls::{Security, TlsFiles, node_id_of_certificate};

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// A one-region topology on free loopback ports, with `tls` (a `[tls]` table or nothing).
fn topology_text(tls: &str) -> String {
    one_region_topology("tls", &NODE_IDS, tls)
}

const TLS_TABLE: &str = "[tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n";

fn members(processes: &NodeProcesses) -> Vec<(u64, String)> {
    processes.topology_model().regions[0]
        .nodes
        .iter()
        .map(|node| (node.id, node.address.clone()))
        .collect()
}

fn call(sequence: u64) -> Call {
    Call {
        object_id: "counter/tls".to_owned(),
        method_id: 1,
        arguments: format!("call {sequence}").into_bytes(),
        scope: Scope::Regional,
    }
}

async fn wait_for_leader(connections: &RegionConnections) -> u64 {
    let deadline = Deadline::new("a leader is elected over TLS", WAIT_MAX);
    loop {
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await
                && status.role == proto::NodeRole::Leader as i32
            {
                return node_id;
            }
        }
        deadline.check().await;
    }
}

fn node_log(processes: &NodeProcesses, node_id: u64) -> String {
    std::fs::read_to_string(
        processes
            .directory()
            .join(format!("node-{node_id}.start-1.log")),
    )
    .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_region_commits_calls_refuses_strangers_and_takes_renewed_certificates() {
    let mut processes = NodeProcesses::new(&topology_text(TLS_TABLE));
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members = members(&processes);
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let leader = wait_for_leader(&connections).await;
    let mut client = RegionClient::new(connections.clone(), 7);
    client.prefer(leader).expect("the leader is a member");
    let first = client
        .propose_with_sequence(1, &call(1))
        .await
        .expect("the region commits a call over TLS");
    assert!(first.position >= 1);
    for node_id in NODE_IDS {
        assert!(
            node_log(&processes, node_id).contains("mutual TLS"),
            "node {node_id} says it runs mutual TLS:\n{}",
            node_log(&processes, node_id)
        );
    }

    // A plaintext client gets nothing from a node.
    let plaintext = RegionConnections::new(&members).expect("valid members");
    let refused = plaintext
        .status(leader)
        .await
        .expect_err("plaintext is refused");
    assert!(!refused.to_string().is_empty());

    // A client with a certificate of another CA gets nothing either.
    let stranger_dir = processes.directory().join("stranger");
    let output = dsss_tests::run_dsss(
        processes.directory(),
        [
            "certs",
            "generate",
            "--topology",
            processes.topology().to_str().expect("utf-8 path"),
            "--out",
            stranger_dir.to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    // The stranger trusts both CAs, so that its files load and it accepts the node: only
    // the node can refuse it.
    let cluster_ca = processes
        .topology_model()
        .tls
        .as_ref()
        .expect("tls")
        .ca_cert
        .clone();
    let both = stranger_dir.join("both-cas.crt");
    std::fs::write(
        &both,
        [
            std::fs::read_to_string(stranger_dir.join("ca.crt")).expect("stranger CA"),
            std::fs::read_to_string(&cluster_ca).expect("cluster CA"),
        ]
        .concat(),
    )
    .expect("write");
    let stranger = Security::tls(TlsFiles {
        ca_cert: both,
        cert: stranger_dir.join("client.crt"),
        key: stranger_dir.join("client.key"),
    })
    .expect("the stranger's files load");
    let strangers = RegionConnections::with_security(&members, &stranger).expect("members");
    strangers
        .status(leader)
        .await
        .expect_err("a certificate of another CA is refused");
    // The same call with the cluster's client certificate succeeds.
    connections
        .status(leader)
        .await
        .expect("the cluster's client is served");

    // Renewed certificates (same CA) are written while the nodes run: new connections use
    // them and the nodes say so.
    let output = dsss_tests::run_dsss(
        processes.directory(),
        [
            "certs",
            "generate",
            "--topology",
            processes.topology().to_str().expect("utf-8 path"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let renewed = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let mut client = RegionClient::new(renewed, 8);
    client
        .propose_with_sequence(1, &call(2))
        .await
        .expect("the region commits over renewed certificates");
    let deadline = Deadline::new("a node reloads its renewed certificate", WAIT_MAX);
    loop {
        if NODE_IDS
            .iter()
            .any(|&node_id| node_log(&processes, node_id).contains("TLS certificate files changed"))
        {
            break;
        }
        deadline.check().await;
    }
}

#[test]
fn certs_generate_names_the_node_and_keeps_keys_private() {
    let processes = NodeProcesses::new(&topology_text(TLS_TABLE));
    let tls = processes.topology_model().tls.clone().expect("tls");
    for node_id in NODE_IDS {
        let key = tls.node_key_path(node_id);
        let mode = std::fs::metadata(&key)
            .expect("key written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        let pem = std::fs::read(tls.node_cert_path(node_id)).expect("certificate written");
        use rustls_pki_types::pem::PemObject;
        let certificate =
            rustls_pki_types::CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
        assert_eq!(node_id_of_certificate(&certificate), Some(node_id));
    }
    for key in [
        tls.client_key.clone(),
        tls.admin_key_path(),
        tls.ca_cert.with_extension("key"),
    ] {
        let mode = std::fs::metadata(&key)
            .expect("key written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", key.display());
    }
}

#[test]
fn a_node_without_tls_or_insecure_refuses_to_start() {
    let processes = NodeProcesses::new(&topology_text(""));
    let output = dsss_tests::run_dsss(
        processes.directory(),
        [
            "node",
            "--topology",
            processes.topology().to_str().expect("utf-8 path"),
            "--id",
            "1",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("has no [tls] table"), "{stderr}");
    assert!(stderr.contains("--insecure"), "{stderr}");
}

#[test]
fn a_node_with_a_missing_key_names_the_file() {
    let processes = NodeProcesses::new(&topology_text(TLS_TABLE));
    let key = processes
        .topology_model()
        .tls
        .as_ref()
        .expect("tls")
        .node_key_path(2);
    std::fs::remove_file(&key).expect("remove the key");
    let output = dsss_tests::run_dsss(
        processes.directory(),
        [
            "node",
            "--topology",
            processes.topology().to_str().expect("utf-8 path"),
            "--id",
            "2",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: cannot read", key.display())),
        "{stderr}"
    );
}

/// Runs `dsss node --id <node_id>` in the foreground, expecting it to refuse to start; its
/// standard error.
fn refused_start(processes: &NodeProcesses, node_id: u64, extra: &[&str]) -> String {
    let id = node_id.to_string();
    let mut arguments = vec![
        "node",
        "--topology",
        processes.topology().to_str().expect("utf-8 path"),
        "--id",
        &id,
    ];
    arguments.extend_from_slice(extra);
    let output = dsss_tests::run_dsss(processes.directory(), arguments);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "node {node_id}: {stderr}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_and_empty_data_directories_refuse_to_start_naming_the_problem() {
    let mut processes = NodeProcesses::new(&topology_text(TLS_TABLE));
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members = members(&processes);
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let leader = wait_for_leader(&connections).await;
    let mut client = RegionClient::new(connections.clone(), 7);
    client.prefer(leader).expect("a member");
    client
        .propose_with_sequence(1, &call(1))
        .await
        .expect("the region commits a call");
    for node_id in NODE_IDS {
        processes.kill(node_id);
    }
    let data = |node_id: u64| processes.directory().join(format!("data/node-{node_id}"));

    // Node 1 started on node 2's data (and the other way round) would vote with its votes.
    let parked = processes.directory().join("data/parked");
    std::fs::rename(data(1), &parked).expect("move");
    std::fs::rename(data(2), data(1)).expect("move");
    std::fs::rename(&parked, data(2)).expect("move");
    let stderr = refused_start(&processes, 1, &[]);
    assert!(
        stderr.contains("belongs to node 2 of region region-a of cluster tls")
            && stderr.contains("node 2 is not 1")
            && stderr.contains("swapped"),
        "{stderr}"
    );
    // --initialize never takes over another node's data.
    let stderr = refused_start(&processes, 2, &["--initialize"]);
    assert!(stderr.contains("node 1 is not 2"), "{stderr}");
    std::fs::rename(data(1), &parked).expect("move");
    std::fs::rename(data(2), data(1)).expect("move");
    std::fs::rename(&parked, data(2)).expect("move");

    // An empty directory where node 3's data should be: a volume that did not mount.
    std::fs::remove_dir_all(data(3)).expect("empty node 3's directory");
    std::fs::create_dir(data(3)).expect("the mount point stays");
    let stderr = refused_start(&processes, 3, &[]);
    assert!(
        stderr.contains("exists but is empty") && stderr.contains("--initialize"),
        "{stderr}"
    );

    // The directories that are right start, and the region serves again.
    processes.start(1, &[]);
    processes.start(2, &[]);
    let leader = wait_for_leader(&connections).await;
    let mut client = RegionClient::new(connections, 8);
    client.prefer(leader).expect("a member");
    client
        .propose_with_sequence(1, &call(2))
        .await
        .expect("the region commits with its two members whose data is theirs");
}

/// A grant for the generated client certificate (`dsss://client/client`): calls and reads on
/// the objects under `bank/`, nothing else.
const GRANTS: &str =
    "[[grants]]\nclient = \"client\"\nobjects = [\"bank/\"]\nrights = [\"call\", \"read\"]\n";

/// Asserts that `outcome` was refused for want of a grant to `right`.
fn denied<T>(outcome: Result<tonic::Response<T>, tonic::Status>, right: &str, what: &str) {
    let Err(status) = outcome else {
        panic!("{what}: served");
    };
    assert_eq!(
        status.code(),
        tonic::Code::PermissionDenied,
        "{what}: {status:?}"
    );
    assert!(
        status.message().contains(&format!("no grant to {right}")),
        "{what}: {}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_may_do_only_what_its_grants_allow() {
    let mut processes = NodeProcesses::new(&topology_text(&format!("{TLS_TABLE}\n{GRANTS}")));
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members = members(&processes);
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let leader = wait_for_leader(&connections).await;
    let address = members
        .iter()
        .find(|(node_id, _)| *node_id == leader)
        .map(|(_, address)| address.clone())
        .expect("the leader is a member");
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid endpoint");
    let mut stub =
        dsss_wire::grpc::region_client_client(processes.client_security().connect_lazy(endpoint));

    // Granted: a call on bank/, and reading it.
    let mut client = RegionClient::new(connections.clone(), 7);
    client.prefer(leader).expect("a member");
    let mut granted = call(1);
    granted.object_id = "bank/alice".to_owned();
    client
        .propose_with_sequence(1, &granted)
        .await
        .expect("a granted call commits");
    stub.fetch_checkpoint(proto::FetchCheckpointRequest {
        object_id: "bank/alice".to_owned(),
        ..Default::default()
    })
    .await
    .expect("a granted read");

    // Refused, one right at a time, on an object outside the grant.
    denied(
        stub.propose(proto::ProposeRequest {
            object_id: "board/top".to_owned(),
            method_id: 1,
            arguments: b"x".to_vec(),
            client_id: 1,
            request_sequence: 1,
            scope: proto::Scope::Regional as i32,
        })
        .await,
        "call",
        "a call outside the grant",
    );
    // In a batch, the call outside the grant is refused alone and the granted one commits;
    // the region client, which sends its calls in batches, gets the refusal as its error.
    let mut outside = granted.clone();
    outside.object_id = "board/top".to_owned();
    let wire = |call: &Call, sequence: u64| proto::ProposeRequest {
        object_id: call.object_id.clone(),
        method_id: call.method_id,
        arguments: call.arguments.clone(),
        client_id: 7,
        request_sequence: sequence,
        scope: proto::Scope::Regional as i32,
    };
    let outcomes = stub
        .propose_batch(proto::ProposeBatchRequest {
            calls: vec![wire(&granted, 2), wire(&outside, 3)],
        })
        .await
        .expect("the batch is served")
        .into_inner()
        .outcomes;
    assert!(
        matches!(
            &outcomes[0].outcome,
            Some(proto::propose_batch_outcome::Outcome::Reply(
                proto::ProposeReply {
                    outcome: Some(proto::propose_reply::Outcome::Committed(_)),
                }
            ))
        ),
        "the granted call of the batch commits: {outcomes:?}"
    );
    match &outcomes[1].outcome {
        Some(proto::propose_batch_outcome::Outcome::Refused(refusal)) => {
            assert_eq!(
                refusal.code,
                tonic::Code::PermissionDenied as i32,
                "{refusal:?}"
            );
            assert!(refusal.message.contains("no grant to call"), "{refusal:?}");
        }
        other => panic!("the call outside the grant was taken: {other:?}"),
    }
    match client.propose_with_sequence(4, &outside).await {
        Err(dsss::region_client::ClientError::Refused { code, message, .. }) => {
            assert_eq!(code, tonic::Code::PermissionDenied, "{message}");
            assert!(message.contains("no grant to call"), "{message}");
        }
        other => panic!("the region client's call outside the grant: {other:?}"),
    }
    denied(
        stub.subscribe(proto::SubscribeRequest {
            from_position: 1,
            object_ids: vec!["board/top".to_owned()],
            client_id: 0,
        })
        .await,
        "read",
        "a subscription outside the grant",
    );
    denied(
        stub.subscribe(proto::SubscribeRequest {
            from_position: 1,
            object_ids: Vec::new(),
            client_id: 0,
        })
        .await,
        "read",
        "a whole-log subscription without a grant on every object",
    );
    denied(
        stub.fetch_checkpoint(proto::FetchCheckpointRequest {
            object_id: "board/top".to_owned(),
            ..Default::default()
        })
        .await,
        "read",
        "a checkpoint outside the grant",
    );
    denied(
        stub.upload_checkpoint(proto::UploadCheckpointRequest {
            checkpoint: Some(proto::Checkpoint {
                object_id: "bank/alice".to_owned(),
                position: 1,
                state: Vec::new(),
                state_hash: vec![0; 32],
            }),
            client_id: 7,
        })
        .await,
        "upload",
        "an upload without the upload right",
    );
    // The node logged each refusal.
    let log = std::fs::read_to_string(
        processes
            .directory()
            .join(format!("node-{leader}.start-1.log")),
    )
    .expect("the leader's log");
    assert!(log.contains("no grant"), "the refusals are logged:\n{log}");
}

/// The raw `RegionClient` stub of `security` on `address`.
fn region_stub(
    address: &str,
    security: &Security,
) -> dsss_wire::proto::region_client_client::RegionClientClient<dsss_wire::grpc::VersionedChannel> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("a valid endpoint");
    dsss_wire::grpc::region_client_client(security.connect_lazy(endpoint))
}

fn propose_as(session_id: u64, sequence: u64, text: &str) -> proto::ProposeRequest {
    proto::ProposeRequest {
        object_id: "counter/sessions".to_owned(),
        method_id: 1,
        arguments: text.as_bytes().to_vec(),
        client_id: session_id,
        request_sequence: sequence,
        scope: proto::Scope::Regional as i32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_call_retry_or_close_under_another_clients_session() {
    let mut processes = NodeProcesses::new(&topology_text(TLS_TABLE));
    // A second application, mallory, with a certificate of the same CA.
    let output = dsss_tests::run_dsss(
        processes.directory(),
        [
            "certs",
            "generate",
            "--topology",
            processes.topology().to_str().expect("utf-8 path"),
            "--client",
            "mallory",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members = members(&processes);
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let leader = wait_for_leader(&connections).await;
    let address = &members
        .iter()
        .find(|(node_id, _)| *node_id == leader)
        .expect("the leader is a member")
        .1;
    let tls = processes.topology_model().tls.clone().expect("tls");
    let mallory = Security::tls(TlsFiles {
        ca_cert: tls.ca_cert.clone(),
        cert: tls.cert_dir.join("client-mallory.crt"),
        key: tls.cert_dir.join("client-mallory.key"),
    })
    .expect("mallory's files load");
    let mut alice = region_stub(address, &processes.client_security());
    let mut mallory = region_stub(address, &mallory);

    // Alice opens session 1234; the region keeps it under an id of her own.
    let opened = alice
        .open_session(proto::OpenSessionRequest { session_id: 1234 })
        .await
        .expect("alice opens a session")
        .into_inner();
    let Some(proto::open_session_reply::Outcome::Opened(opened)) = opened.outcome else {
        panic!("opened: {opened:?}");
    };
    let kept = opened.log_session_id;
    assert!(kept != 0 && kept != 1234, "kept under {kept}");
    let committed = |reply: proto::ProposeReply| match reply.outcome {
        Some(proto::propose_reply::Outcome::Committed(committed)) => Some(committed.position),
        _ => None,
    };
    let first = committed(
        alice
            .propose(propose_as(1234, 1, "alice 1"))
            .await
            .expect("served")
            .into_inner(),
    )
    .expect("alice's call commits");

    // Mallory, who read the kept id in the log (or guessed the chosen one), reaches a session
    // of her own, which is not open: nothing of hers is applied under alice's session.
    for session_id in [kept, 1234] {
        let reply = mallory
            .propose(propose_as(session_id, 2, "mallory"))
            .await
            .expect("served")
            .into_inner();
        assert!(
            matches!(
                reply.outcome,
                Some(proto::propose_reply::Outcome::SessionUnknown(_))
            ),
            "mallory under session {session_id}: {reply:?}"
        );
        let closed = mallory
            .close_session(proto::CloseSessionRequest { session_id })
            .await
            .expect("served")
            .into_inner();
        assert!(
            matches!(
                closed.outcome,
                Some(proto::close_session_reply::Outcome::Closed(
                    proto::SessionClosed { was_open: false }
                ))
            ),
            "mallory closes nothing of alice's: {closed:?}"
        );
    }

    // Alice's session lives on: her retry gets her own position, her next call commits.
    let retried = committed(
        alice
            .propose(propose_as(1234, 1, "alice 1"))
            .await
            .expect("served")
            .into_inner(),
    );
    assert_eq!(
        retried,
        Some(first),
        "a retry gets the first copy's position"
    );
    let second = committed(
        alice
            .propose(propose_as(1234, 2, "alice 2"))
            .await
            .expect("served")
            .into_inner(),
    )
    .expect("alice's next call commits");
    assert!(second > first);

    // Nor can mallory report checkpoints as alice: an upload under alice's client id is
    // mallory's, so another hash at the position alice reported is a mismatch between two
    // clients (an alarm that names mallory), not alice's report replaced.
    let upload = |hash: u8| proto::UploadCheckpointRequest {
        checkpoint: Some(proto::Checkpoint {
            object_id: "counter/sessions".to_owned(),
            position: second,
            state: vec![hash; 8],
            state_hash: vec![hash; 32],
        }),
        client_id: 77,
    };
    let stored = alice
        .upload_checkpoint(upload(1))
        .await
        .expect("served")
        .into_inner();
    assert_eq!(
        stored.outcome,
        proto::CheckpointOutcome::Stored as i32,
        "{stored:?}"
    );
    let mismatch = mallory
        .upload_checkpoint(upload(2))
        .await
        .expect("served")
        .into_inner();
    assert_eq!(
        mismatch.outcome,
        proto::CheckpointOutcome::HashMismatch as i32,
        "{mismatch:?}"
    );
    // The alarm names two clients, neither by the raw id both sent: mallory's report is
    // hers, not alice's contradicting herself.
    let status = alice
        .status(proto::StatusRequest::default())
        .await
        .expect("served")
        .into_inner();
    let alarm = status
        .diverged_objects
        .iter()
        .find(|alarm| alarm.object_id == "counter/sessions")
        .unwrap_or_else(|| panic!("no alarm: {:?}", status.diverged_objects));
    assert_ne!(
        alarm.first_client_id, alarm.second_client_id,
        "one client id for alice and mallory: {alarm:?}"
    );
    assert!(
        alarm.first_client_id != 77 && alarm.second_client_id != 77,
        "a raw client id in the alarm: {alarm:?}"
    );
}

/// The token and the `[[tokens]]` table `dsss certs token --client NAME` prints.
fn token_for(client: &str) -> (String, String) {
    let output = dsss_tests::run_dsss(
        &std::env::temp_dir(),
        ["certs", "token", "--client", client],
    );
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    let token = printed
        .lines()
        .find(|line| line.starts_with("dsss_"))
        .unwrap_or_else(|| panic!("no token printed:\n{printed}"))
        .to_owned();
    let table = printed
        .split_once("[[tokens]]")
        .map(|(_, rest)| format!("[[tokens]]{rest}"))
        .unwrap_or_else(|| panic!("no table printed:\n{printed}"));
    assert!(!table.contains(&token), "the table holds the token itself");
    (token, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_makes_a_gateways_calls_its_clients_with_the_clients_grants() {
    let (alice_token, alice_table) = token_for("alice");
    let (revoked_token, _) = token_for("alice");
    // The gateway presents the topology's client certificate (dsss://client/client), which no
    // grant names: alone it may do nothing; alice may call and read under alice/.
    let grants =
        "[[grants]]\nclient = \"alice\"\nobjects = [\"alice/\"]\nrights = [\"call\", \"read\"]\n";
    let mut processes = NodeProcesses::new(&topology_text(&format!(
        "{TLS_TABLE}\n{grants}\n{alice_table}"
    )));
    for node_id in NODE_IDS {
        processes.start(node_id, &[]);
    }
    let members = members(&processes);
    let gateway = processes.client_security();
    let plain = RegionConnections::with_security(&members, &gateway).expect("valid members");
    let leader = wait_for_leader(&plain).await;
    let address = &members
        .iter()
        .find(|(node_id, _)| *node_id == leader)
        .expect("the leader is a member")
        .1;
    let stub_bearing = |token: Option<&str>| {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .expect("a valid endpoint");
        let attach = match token {
            Some(token) => {
                dsss_wire::grpc::AttachProtocolVersion::with_token(token).expect("a usable token")
            }
            None => dsss_wire::grpc::AttachProtocolVersion::default(),
        };
        dsss_wire::grpc::region_client_client_with(gateway.connect_lazy(endpoint), attach)
    };
    let propose = |object: &str| proto::ProposeRequest {
        object_id: object.to_owned(),
        method_id: 1,
        arguments: b"x".to_vec(),
        client_id: 0,
        request_sequence: 0,
        scope: proto::Scope::Regional as i32,
    };

    // With alice's token the gateway's calls are alice's: within her grant they commit...
    let with_token =
        RegionConnections::with_security_and_token(&members, &gateway, Some(&alice_token))
            .expect("valid members");
    let mut alice = RegionClient::new(with_token, 7);
    alice.prefer(leader).expect("a member");
    let mut granted = call(1);
    granted.object_id = "alice/counter".to_owned();
    alice
        .propose_with_sequence(1, &granted)
        .await
        .expect("a call within alice's grant commits");
    // ...outside it they are refused, naming alice.
    let refused = stub_bearing(Some(&alice_token))
        .propose(propose("bob/counter"))
        .await
        .expect_err("outside alice's grant");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("client \"alice\""),
        "{refused:?}"
    );
    // Without a token the gateway is itself, which no grant names.
    let refused = stub_bearing(None)
        .propose(propose("alice/counter"))
        .await
        .expect_err("the gateway alone");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("client \"client\""),
        "{refused:?}"
    );
    // A token the topology does not list (another one made for alice, never added) is refused
    // before anything else.
    let refused = stub_bearing(Some(&revoked_token))
        .propose(propose("alice/counter"))
        .await
        .expect_err("an unlisted token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("[[tokens]]"), "{refused:?}");
}
