//! What an operator watches, on nine real `dsss node` processes (the local topology on free
//! ports, mutual TLS): `dsss status` says the cluster is healthy, every node's metrics endpoint
//! answers Prometheus text with the region, raft, sync-latency, call and coordinator families,
//! `/readyz` and the gRPC health service say a member is ready; a node killed with SIGKILL
//! shows in `dsss status` (exit 1, the node named) while its region keeps committing calls, and
//! restarting it makes the status healthy again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, local_topology_on_free_ports};
use dsss_tests::run_dsss;
use dsss_wire::Scope;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Endpoint;

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(90);

/// The node the test kills: a follower or the leader of local-a, whichever it is then.
const KILLED: u64 = 13;

/// `GET path` on a node's monitoring endpoint: the status line and the body.
async fn http_get(address: &str, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address)
        .await
        .unwrap_or_else(|error| panic!("connect to the metrics endpoint {address}: {error}"));
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .expect("send the request");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("read the answer");
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("an HTTP answer: {answer:?}"));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

/// Checks the text format's rules on `page` (every sample's family announced by `# HELP` and
/// `# TYPE` first, every value a number) and returns the families announced and the samples by
/// name with labels.
fn parse_exposition(page: &str) -> (Vec<String>, BTreeMap<String, f64>) {
    let mut announced: Vec<String> = Vec::new();
    let mut samples = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("a type line names a kind");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(
                !announced.contains(&name.to_owned()),
                "{name} announced twice"
            );
            announced.push(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("{line}: the value is not a number")),
        };
        let name = series.split('{').next().unwrap_or(series);
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| announced.iter().any(|announced| announced == family))
            .unwrap_or(name);
        assert!(
            announced.iter().any(|announced| announced == family),
            "{line}: its family was not announced first"
        );
        samples.insert(series.to_owned(), value);
    }
    (announced, samples)
}

/// Every `dsss_` metric family the dashboard and the alert rules in `deploy/` refer to.
fn families_used_in_deploy() -> BTreeSet<String> {
    let root = dsss_tests::workspace_root();
    let mut used = BTreeSet::new();
    for file in [
        "deploy/grafana/dsss-dashboard.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|error| panic!("read {file}: {error}"));
        let mut rest = text.as_str();
        while let Some(start) = rest.find("dsss_") {
            let name: String = rest[start..]
                .chars()
                .take_while(|character| character.is_ascii_alphanumeric() || *character == '_')
                .collect();
            rest = &rest[start + name.len()..];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(&name);
            used.insert(family.to_owned());
        }
    }
    used
}

/// Whether some sample's series starts with `name{` and contains each of `labels`.
fn has_sample(samples: &BTreeMap<String, f64>, name: &str, labels: &[&str]) -> bool {
    samples.keys().any(|series| {
        series.starts_with(&format!("{name}{{"))
            && labels.iter().all(|label| series.contains(label))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_metrics_and_health_follow_a_node_that_is_killed_and_restarted() {
    let (text, topology) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    let node_ids: Vec<u64> = topology.nodes().map(|(_, node)| node.id).collect();
    for node_id in &node_ids {
        processes.start(*node_id, &[]);
    }
    let topology_path = processes.topology().to_str().expect("UTF-8").to_owned();
    let status = |processes: &NodeProcesses| {
        run_dsss(
            processes.directory(),
            ["status", "--topology", topology_path.as_str()],
        )
    };

    // Healthy: exit 0 and the closing line says so.
    let deadline = Deadline::new("dsss status says the cluster is healthy", WAIT_MAX);
    loop {
        let output = status(&processes);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.code() == Some(0) {
            assert!(stdout.contains("\nhealthy: every node answers"), "{stdout}");
            assert!(stdout.contains("coordinator: leader"), "{stdout}");
            break;
        }
        if deadline.expired() {
            processes.print_logs();
            panic!("dsss status never said healthy; last:\n{stdout}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The JSON form carries the same judgement.
    let output = run_dsss(
        processes.directory(),
        ["status", "--topology", topology_path.as_str(), "--json"],
    );
    let json = String::from_utf8_lossy(&output.stdout);
    assert!(json.contains("\"problems\": []"), "{json}");
    assert!(json.contains("\"cluster\": \"local\""), "{json}");

    // Every node's metrics endpoint answers Prometheus text.
    let metrics_of = |node_id: u64| {
        topology
            .nodes()
            .find(|(_, node)| node.id == node_id)
            .and_then(|(_, node)| node.metrics_listen.clone())
            .expect("every node of the local topology has a metrics address")
    };
    let (status_line, page) = http_get(&metrics_of(11), "/metrics").await;
    assert_eq!(status_line, "HTTP/1.1 200 OK");
    let (announced, samples) = parse_exposition(&page);
    // The dashboard and the alerts shipped in deploy/ name only families a node exports (node
    // 11 hosts a coordinator replica, so it exports them all).
    let used = families_used_in_deploy();
    assert!(used.len() > 20, "{used:?}");
    let unknown: Vec<&String> = used
        .iter()
        .filter(|family| !announced.contains(family))
        .collect();
    assert!(
        unknown.is_empty(),
        "deploy/ refers to families no node exports: {unknown:?}"
    );
    let node_11 = "region=\"local-a\",node=\"11\"";
    for family in [
        "dsss_raft_term",
        "dsss_raft_leader_changes_total",
        "dsss_region_applied_position",
        "dsss_region_log_bytes",
        "dsss_region_log_quota_bytes",
        "dsss_region_truncated_through_position",
        "dsss_global_sealed_epoch",
        "dsss_clock_fenced",
        "dsss_client_subscriptions",
        "dsss_coordinator_is_leader",
        "dsss_coordinator_epochs_sealed_total",
    ] {
        assert!(
            has_sample(&samples, family, &[node_11]),
            "{family} missing:\n{page}"
        );
    }
    // Syncs of both raft groups the node runs.
    assert!(has_sample(
        &samples,
        "dsss_raft_sync_seconds_bucket",
        &["group=\"region\"", "le=\"+Inf\""]
    ));
    assert!(has_sample(
        &samples,
        "dsss_raft_sync_seconds_count",
        &["group=\"coordinator\""]
    ));
    // `dsss status` asked every node for its status: the calls are counted by method and code.
    assert!(
        has_sample(
            &samples,
            "dsss_grpc_calls_total",
            &["method=\"/dsss.v1.RegionClient/Status\"", "code=\"OK\""]
        ),
        "the status calls are not counted:\n{page}"
    );
    assert!(has_sample(
        &samples,
        "dsss_grpc_call_seconds_count",
        &["method=\"/dsss.v1.RegionClient/Status\""]
    ));
    let leader_region_sync = samples
        .iter()
        .find(|(series, _)| {
            series.starts_with("dsss_raft_sync_seconds_count{") && series.contains("\"region\"")
        })
        .map(|(_, count)| *count)
        .expect("a region sync count");
    assert!(leader_region_sync > 0.0, "the node synced its store");
    let (ready, body) = http_get(&metrics_of(12), "/readyz").await;
    assert_eq!(ready, "HTTP/1.1 200 OK", "{body}");
    let (healthy, _) = http_get(&metrics_of(12), "/healthz").await;
    assert_eq!(healthy, "HTTP/1.1 200 OK");

    // The standard gRPC health service, on the node's own port, over mutual TLS.
    let address_of = |node_id: u64| {
        topology
            .nodes()
            .find(|(_, node)| node.id == node_id)
            .map(|(_, node)| node.address.clone())
            .expect("a node of the topology")
    };
    let channel = processes.admin_security().connect_lazy(
        Endpoint::from_shared(format!("http://{}", address_of(21))).expect("an endpoint"),
    );
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let deadline = Deadline::new("the health service says RegionClient serves", WAIT_MAX);
    loop {
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "dsss.v1.RegionClient".to_owned(),
            })
            .await;
        if let Ok(answer) = answer
            && answer.into_inner().status
                == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            break;
        }
        deadline.check().await;
    }
    let coordinator = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "dsss.v1.Coordinator".to_owned(),
        })
        .await
        .expect("node 21 hosts a coordinator replica and reports it")
        .into_inner();
    assert_eq!(
        coordinator.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // A node killed: status names it and exits 1, while its region commits calls.
    processes.kill(KILLED);
    let deadline = Deadline::new("dsss status names the killed node", WAIT_MAX);
    loop {
        let output = status(&processes);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.code() == Some(1) {
            assert!(
                stdout.contains(&format!("node {KILLED} of region local-a at")),
                "{stdout}"
            );
            assert!(stdout.contains("UNREACHABLE"), "{stdout}");
            break;
        }
        if deadline.expired() {
            panic!("dsss status never named the killed node; last:\n{stdout}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let members: Vec<(u64, String)> = [11, 12, KILLED]
        .iter()
        .map(|node_id| (*node_id, address_of(*node_id)))
        .collect();
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let mut client = RegionClient::new(connections, 4_242);
    let call = Call {
        object_id: "counter/monitored".to_owned(),
        method_id: 1,
        arguments: b"while a node is down".to_vec(),
        scope: Scope::Regional,
    };
    for sequence in 1..=5 {
        let deadline = Deadline::new("a call commits with one node of three down", WAIT_MAX);
        loop {
            match client.propose_with_sequence(sequence, &call).await {
                Ok(_) => break,
                Err(_) => deadline.check().await,
            }
        }
    }

    // Restarted: healthy again.
    processes.start(KILLED, &[]);
    let deadline = Deadline::new("dsss status is healthy after the restart", WAIT_MAX);
    loop {
        let output = status(&processes);
        if output.status.code() == Some(0) {
            break;
        }
        if deadline.expired() {
            processes.print_logs();
            panic!(
                "dsss status stayed unhealthy after the restart:\n{}",
                String::from_utf8_lossy(&output.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (ready, body) = http_get(&metrics_of(KILLED), "/readyz").await;
    assert_eq!(ready, "HTTP/1.1 200 OK", "{body}");
}
