//! A region of three production nodes in one test process: loopback listeners, RocksDB stores in
//! a temporary directory, the real gRPC services. Shared by the driver test files.

// Each test file is its own crate and uses a part of the harness.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use dsss::region_client::RegionConnections;
use dsss_region_node::RegionNodeConfig;
use dsss_region_node::driver::{DriverConfig, PeerAddress, RunningNode, start_with_listener};
use dsss_wire::RegionId;
use dsss_wire::grpc::{VersionedChannel, region_client_client};
use dsss_wire::proto::region_client_client::RegionClientClient;
use dsss_wire::proto::{self, open_session_reply};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};
use tonic::Code;
use tonic::transport::Endpoint;

/// The members of every test region.
pub const NODE_IDS: [u64; 3] = [1, 2, 3];

/// Generous bound on every wait; nothing here asserts how fast anything happens.
pub const WAIT_MAX: Duration = Duration::from_secs(60);

/// How often a test polls a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Raft ticks of the test nodes: elections after 200 to 400 ms.
pub const TICK_INTERVAL_US: u64 = 20_000;

/// A client stub of one node, with the protocol version header.
pub type Stub = RegionClientClient<VersionedChannel>;

/// Three running nodes of one region.
pub struct Region {
    _directory: tempfile::TempDir,
    /// Each node's configuration, kept to restart it on the same address and data.
    pub configs: BTreeMap<u64, DriverConfig>,
    nodes: BTreeMap<u64, RunningNode>,
    stubs: BTreeMap<u64, Stub>,
}

impl Region {
    /// Starts the three nodes; with `global_tier` false the region is a deployment of one
    /// region (it closes no batches and refuses global calls).
    pub async fn start(global_tier: bool) -> Region {
        Region::start_with(global_tier, |_| {}).await
    }

    /// As [`Region::start`], with each node's settings changed by `adjust` first.
    pub async fn start_with(global_tier: bool, adjust: impl Fn(&mut RegionNodeConfig)) -> Region {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut listeners = BTreeMap::new();
        for node_id in NODE_IDS {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            listeners.insert(node_id, listener);
        }
        let addresses: BTreeMap<u64, String> = listeners
            .iter()
            .map(|(node_id, listener)| {
                (
                    *node_id,
                    listener.local_addr().expect("address").to_string(),
                )
            })
            .collect();
        let mut configs = BTreeMap::new();
        for node_id in NODE_IDS {
            let mut node = RegionNodeConfig::new(
                node_id,
                NODE_IDS.to_vec(),
                RegionId::new("test-region").expect("valid region"),
            );
            node.global_tier = global_tier;
            adjust(&mut node);
            let config = DriverConfig {
                node,
                listen_address: addresses[&node_id].clone(),
                advertised_address: addresses[&node_id].clone(),
                data_dir: directory.path().join(format!("node-{node_id}")),
                peers: addresses
                    .iter()
                    .filter(|(peer, _)| **peer != node_id)
                    .map(|(peer, address)| PeerAddress {
                        node_id: *peer,
                        address: address.clone(),
                    })
                    .collect(),
                tick_interval_us: TICK_INTERVAL_US,
                // The in-process tests run plaintext; mutual TLS is tested over real
                // processes (tests/tests/tls_processes.rs) and in dsss-wire.
                security: dsss_wire::tls::Security::Plaintext,
                access: dsss_wire::access::AccessPolicy::default(),
            };
            configs.insert(node_id, config);
        }
        let mut region = Region {
            _directory: directory,
            configs,
            nodes: BTreeMap::new(),
            stubs: BTreeMap::new(),
        };
        for (node_id, listener) in listeners {
            region.start_node(node_id, listener).await;
        }
        region
    }

    async fn start_node(&mut self, node_id: u64, listener: TcpListener) {
        let config = self.configs[&node_id].clone();
        let address = config.listen_address.clone();
        let node = start_with_listener(config, listener)
            .await
            .expect("start node");
        self.nodes.insert(node_id, node);
        let channel = Endpoint::from_shared(format!("http://{address}"))
            .expect("uri")
            .connect_lazy();
        self.stubs.insert(node_id, region_client_client(channel));
    }

    /// The members as (node id, address).
    pub fn members(&self) -> Vec<(u64, String)> {
        self.configs
            .iter()
            .map(|(node_id, config)| (*node_id, config.listen_address.clone()))
            .collect()
    }

    /// A client stub of `node_id`.
    pub fn stub(&self, node_id: u64) -> Stub {
        self.stubs[&node_id].clone()
    }

    /// Shuts `node_id` down cleanly.
    pub async fn stop(&mut self, node_id: u64) {
        let node = self.nodes.remove(&node_id).expect("running");
        node.shutdown().await.expect("clean shutdown");
    }

    /// Starts `node_id` again on its address and data, shutting it down first if it runs.
    pub async fn restart(&mut self, node_id: u64) {
        if self.nodes.contains_key(&node_id) {
            self.stop(node_id).await;
        }
        let listener = TcpListener::bind(&self.configs[&node_id].listen_address)
            .await
            .expect("bind the same address again");
        self.start_node(node_id, listener).await;
    }
}

/// Waits until a member of `connections` says it leads; returns its id.
pub async fn wait_for_leader(connections: &RegionConnections) -> u64 {
    let started = Instant::now();
    loop {
        if let Some(leader) = connections.find_leader().await {
            return leader;
        }
        assert!(started.elapsed() < WAIT_MAX, "no leader");
        sleep(POLL_INTERVAL).await;
    }
}

/// Opens `session_id` through `stub`, retrying what may pass (no leader yet, a lost open);
/// returns the region's refusal if it refuses.
pub async fn open_session(stub: &mut Stub, session_id: u64) -> Result<(), tonic::Status> {
    let started = Instant::now();
    loop {
        match stub
            .open_session(proto::OpenSessionRequest { session_id })
            .await
        {
            Ok(reply) => {
                if let Some(open_session_reply::Outcome::Opened(_)) = reply.into_inner().outcome {
                    return Ok(());
                }
            }
            Err(status) if status.code() == Code::ResourceExhausted => {
                if status.message().contains("session opens wait") {
                    // The node's own bound on opens in flight: wait and retry.
                } else {
                    return Err(status);
                }
            }
            Err(status) if status.code() == Code::InvalidArgument => return Err(status),
            Err(_) => {}
        }
        assert!(
            started.elapsed() < WAIT_MAX,
            "session {session_id} never opened"
        );
        sleep(POLL_INTERVAL).await;
    }
}
