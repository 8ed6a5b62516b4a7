//! A node binds one address and is reached at another (behind NAT, in a container): three
//! `dsss node` processes over mutual TLS bind `127.0.0.2` (the topology's `listen`) while
//! the topology's `address`, which peers and clients dial, is a forwarder on `127.0.0.1`, as a
//! NAT or a Kubernetes service would be. The region forms through the forwarders only, commits
//! calls, and its leader hints name the advertised addresses; a node started with
//! `--data-dir` keeps its data where the flag says.

use std::collections::BTreeMap;
use std::time::Duration;

use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_tests::processes::{Deadline, NodeProcesses, free_ports};
use dsss_wire::Scope;
use dsss_wire::proto;
use tokio::net::{TcpListener, TcpStream};

/// The nodes of the test region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// Where the nodes bind: another loopback address than the one they are reached at.
const BIND_HOST: &str = "127.0.0.2";

/// Forwards every connection to `listener` to `target`, both ways, until the test ends.
async fn forward(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_bind_one_address_and_are_reached_at_another_form_a_region() {
    let advertised_ports = free_ports(NODE_IDS.len());
    let bound_ports = free_ports(NODE_IDS.len());
    let nodes: Vec<String> = NODE_IDS
        .iter()
        .zip(advertised_ports.iter().zip(&bound_ports))
        .map(|(node_id, (advertised, bound))| {
            format!(
                "  {{ id = {node_id}, address = \"127.0.0.1:{advertised}\", listen = \
                 \"{BIND_HOST}:{bound}\", data_dir = \"data/node-{node_id}\" }},"
            )
        })
        .collect();
    let text = format!(
        "[cluster]\nname = \"listen\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
         max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n\n\
         [tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n\n\
         [coordinator]\nreplicas = [1]\npreferred_leader = 1\n\n\
         [[regions]]\nid = \"region-a\"\nnodes = [\n{}\n]\n",
        nodes.join("\n")
    );
    let mut processes = NodeProcesses::new(&text);
    // The forwarders stand for the NAT: nothing listens on the advertised addresses but them.
    for (advertised, bound) in advertised_ports.iter().zip(&bound_ports) {
        let listener = TcpListener::bind(("127.0.0.1", *advertised))
            .await
            .expect("bind the forwarder");
        tokio::spawn(forward(listener, format!("{BIND_HOST}:{bound}")));
    }
    // Node 3 keeps its data where the command line says, not where the topology does.
    let elsewhere = processes.directory().join("volume-of-node-3");
    let elsewhere_text = elsewhere.to_str().expect("a UTF-8 path").to_owned();
    for node_id in NODE_IDS {
        if node_id == 3 {
            processes.start(node_id, &["--data-dir", &elsewhere_text]);
        } else {
            processes.start(node_id, &[]);
        }
    }
    let members: Vec<(u64, String)> = NODE_IDS
        .iter()
        .zip(&advertised_ports)
        .map(|(node_id, port)| (*node_id, format!("127.0.0.1:{port}")))
        .collect();
    let connections = RegionConnections::with_security(&members, &processes.client_security())
        .expect("valid members");
    let deadline = Deadline::new("a leader is elected through the forwarders", WAIT_MAX);
    let leader = 'found: loop {
        for node_id in NODE_IDS {
            if let Ok(status) = connections.status(node_id).await
                && status.role == proto::NodeRole::Leader as i32
            {
                break 'found node_id;
            }
        }
        deadline.check().await;
    };
    let mut client = RegionClient::new(connections.clone(), 9);
    client.prefer(leader).expect("a member");
    let call = Call {
        object_id: "counter/listen".to_owned(),
        method_id: 1,
        arguments: b"through the forwarder".to_vec(),
        scope: Scope::Regional,
    };
    client
        .propose_with_sequence(1, &call)
        .await
        .expect("a call commits");

    // A follower's answer names the leader by its advertised address, never the bound one.
    let follower = NODE_IDS
        .into_iter()
        .find(|node_id| *node_id != leader)
        .expect("a follower");
    let follower_address = &members
        .iter()
        .find(|(node_id, _)| *node_id == follower)
        .expect("a member")
        .1;
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{follower_address}"))
        .expect("a valid endpoint");
    let mut admin =
        dsss_wire::grpc::region_admin_client(processes.admin_security().connect_lazy(endpoint));
    let reply = admin
        .change_membership(proto::ChangeMembershipRequest {
            action: proto::MembershipAction::TransferLeader as i32,
            node_id: follower,
        })
        .await
        .expect("served")
        .into_inner();
    let hint = reply
        .not_leader
        .unwrap_or_else(|| panic!("follower {follower} took a membership change"));
    let advertised: BTreeMap<u64, String> = members.iter().cloned().collect();
    assert_eq!(
        hint.leader_address, advertised[&leader],
        "the hint names the leader's advertised address: {hint:?}"
    );
    assert!(
        elsewhere.join("DSSS_IDENTITY").is_file(),
        "node 3 keeps its data under --data-dir"
    );
    assert!(
        !processes.directory().join("data/node-3").exists(),
        "node 3 wrote nothing where the topology says"
    );
}
