//! [`start`]: one production node, from its configuration to a serving gRPC server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dsss_wire::access::Guarded;
use dsss_wire::call_metrics::CallMetrics;
use dsss_wire::grpc::{
    region_admin_server, region_client_server, region_epochs_server, region_peer_server,
};
use dsss_wire::latency::LatencyHistogram;
use dsss_wire::proto;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::service::Routes;

use crate::driver::coordinator_client::GlobalSettings;
use crate::driver::node_loop::{self, NodeLoopHandle, NodeLoopSettings};
use crate::driver::peer::start_peers_with_delays;
use crate::driver::{DriverConfig, DriverConfigError, NodeLoopError};
use crate::service::{
    NodeLink, RegionAdminService, RegionClientService, RegionEpochsService, RegionPeerService,
};
use dsss_raft_group::PeerClocks;

/// How long a stopping node waits for its open requests to finish, in microseconds, before it
/// closes their connections.
pub const SHUTDOWN_GRACE_US: u64 = 3_000_000;

/// Why a node could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] DriverConfigError),
    /// The listening address could not be bound.
    #[error("cannot listen on {address}: {error}")]
    Bind {
        /// The address.
        address: String,
        /// What the system said.
        error: std::io::Error,
    },
    /// The node loop could not start, or failed.
    #[error(transparent)]
    Node(#[from] NodeLoopError),
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Server(String),
}

/// A node that serves: its node loop, peer transport and gRPC server. Dropping it stops the
/// node too, without waiting for open requests.
pub struct RunningNode {
    node_id: u64,
    local_address: SocketAddr,
    stopping: watch::Sender<bool>,
    server_shutdown: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    node_loop: Option<NodeLoopHandle>,
    observed: NodeObservations,
}

/// What a running node lets its host read about it while it runs: its status as the `Status`
/// method answers it, the calls its services answered, and how long its store syncs take.
/// Clones read the same node.
#[derive(Clone, Debug)]
pub struct NodeObservations {
    client_service: RegionClientService,
    calls: Arc<CallMetrics>,
    sync_latency: Arc<LatencyHistogram>,
}

impl NodeObservations {
    /// The node's status, as its `Status` method answers.
    pub async fn status(&self) -> Result<proto::StatusReply, tonic::Status> {
        self.client_service.node_status().await
    }

    /// Calls by method and answer since the node started (every service of its server,
    /// including routes it was given to serve beside its own).
    pub fn calls(&self) -> &Arc<CallMetrics> {
        &self.calls
    }

    /// How long the node's synced store writes take.
    pub fn sync_latency(&self) -> &Arc<LatencyHistogram> {
        &self.sync_latency
    }
}

/// Starts node `config` on its listening address: opens (or creates) its store, starts the
/// node loop and the peer transport, and serves `RegionClient`, `RegionPeer` and
/// `RegionAdmin`.
pub async fn start(config: DriverConfig) -> Result<RunningNode, StartError> {
    config.validate()?;
    let listener = TcpListener::bind(&config.listen_address)
        .await
        .map_err(|error| StartError::Bind {
            address: config.listen_address.clone(),
            error,
        })?;
    start_with_listener(config, listener).await
}

/// Starts node `config` on an already bound `listener` (tests bind port 0 first). The node
/// ships its global records nowhere: see [`start_with_global`].
pub async fn start_with_listener(
    config: DriverConfig,
    listener: TcpListener,
) -> Result<RunningNode, StartError> {
    start_with_global(config, listener, GlobalSettings::none(), Routes::default()).await
}

/// Starts node `config` on `listener` as a member of the global tier: its batches go to the
/// coordinator `global` names (with its WAN delays), and its server also serves
/// `extra_routes` (a coordinator replica hosted on the same node and port). The server and
/// every connection the node makes are secured as `config.security` says (it replaces
/// `global.security`).
pub async fn start_with_global(
    config: DriverConfig,
    listener: TcpListener,
    mut global: GlobalSettings,
    extra_routes: Routes,
) -> Result<RunningNode, StartError> {
    config.validate()?;
    global.security = config.security.clone();
    let node_id = config.node.group.node_id;
    let local_address = listener.local_addr().map_err(|error| StartError::Bind {
        address: config.listen_address.clone(),
        error,
    })?;
    // What the node knows of its peers' clocks: the transport stamps batches with probes,
    // the peer service takes the samples, and the node loop gives the verdict to the node.
    let clocks = Arc::new(Mutex::new(PeerClocks::new(config.node.max_clock_skew_us)));
    let peers = start_peers_with_delays(
        node_id,
        &config.peers,
        global.peer_delays.clone(),
        config.security.clone(),
        Arc::clone(&clocks),
    );
    let sync_latency = Arc::clone(peers.sync_latency());
    let settings = NodeLoopSettings {
        node: config.node.clone(),
        data_dir: config.data_dir.clone(),
        tick_interval: Duration::from_micros(config.tick_interval_us),
        peers,
    };
    // Opening RocksDB and replaying the logs blocks: keep it off the runtime's threads.
    let runtime = tokio::runtime::Handle::current();
    let opened = tokio::task::spawn_blocking(move || {
        node_loop::spawn_with_global(settings, &global, Some(&runtime))
    })
    .await
    .map_err(|error| NodeLoopError::Thread(format!("opening the node did not finish: {error}")));
    let node_loop = match opened {
        Ok(Ok(node_loop)) => node_loop,
        // The peer tasks end with the node loop, which dropped their queues.
        Ok(Err(error)) | Err(error) => return Err(error.into()),
    };
    let mut addresses: HashMap<u64, String> = config
        .peers
        .iter()
        .map(|peer| (peer.node_id, peer.address.clone()))
        .collect();
    addresses.insert(node_id, config.advertised_address.clone());
    let (stopping, stopping_receiver) = watch::channel(false);
    let link = NodeLink::new(
        node_loop.events(),
        node_loop.log_events(),
        node_id,
        addresses,
        stopping_receiver,
    );
    let (server_shutdown, shutdown_signal) = oneshot::channel::<()>();
    let client_service = RegionClientService::new(link.clone());
    let observed = NodeObservations {
        client_service: client_service.clone(),
        calls: Arc::clone(config.access.call_metrics()),
        sync_latency,
    };
    // Every service admits only the identities its methods allow (dsss_wire::access).
    let access = Arc::new(config.access.clone());
    // The topology's [limits]: connections, keepalive, idleness and requests in flight.
    let limits = access.limits().clone();
    let router = dsss_wire::tls::server_builder(&limits)
        .add_routes(extra_routes)
        .add_service(Guarded::new(
            region_epochs_server(RegionEpochsService::new(link.clone())),
            Arc::clone(&access),
        ))
        .add_service(Guarded::new(
            region_client_server(client_service.clone()),
            Arc::clone(&access),
        ))
        .add_service(Guarded::new(
            region_peer_server(RegionPeerService::new(link.clone(), clocks)),
            Arc::clone(&access),
        ))
        .add_service(Guarded::new(
            region_admin_server(RegionAdminService::new(link)),
            Arc::clone(&access),
        ));
    let security = config.security.clone();
    let server = tokio::spawn(async move {
        security
            .serve(router, listener, &limits, async {
                let _ = shutdown_signal.await;
            })
            .await
    });
    let transport = if config.security.is_tls() {
        "mutual TLS"
    } else {
        "plaintext"
    };
    tracing::info!(node_id, address = %local_address, advertised = %config.advertised_address, data_dir = %config.data_dir.display(), transport, "region node serving");
    Ok(RunningNode {
        node_id,
        local_address,
        stopping,
        server_shutdown: Some(server_shutdown),
        server: Some(server),
        node_loop: Some(node_loop),
        observed,
    })
}

impl RunningNode {
    /// The node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The address the gRPC server listens on.
    pub fn local_address(&self) -> SocketAddr {
        self.local_address
    }

    /// What its host may read about the node while it runs.
    pub fn observations(&self) -> NodeObservations {
        self.observed.clone()
    }

    /// Resolves when the node stops on its own: its loop failed (a sync failed) or the server
    /// did. [`RunningNode::shutdown`] then says why.
    pub async fn stopped(&mut self) {
        let Some(node_loop) = self.node_loop.as_mut() else {
            return;
        };
        let server_ended = match self.server.as_mut() {
            Some(server) => {
                tokio::select! {
                    _ = node_loop.exited() => false,
                    _ = server => true,
                }
            }
            None => {
                node_loop.exited().await;
                false
            }
        };
        if server_ended {
            self.server = None;
        }
    }

    /// Stops the node: open subscriptions are told to resume elsewhere, the server stops
    /// taking requests and waits up to [`SHUTDOWN_GRACE_US`] for the open ones, then the node
    /// loop stops after its current round (everything acknowledged is already synced).
    pub async fn shutdown(mut self) -> Result<(), StartError> {
        let _ = self.stopping.send(true);
        if let Some(shutdown) = self.server_shutdown.take() {
            let _ = shutdown.send(());
        }
        let mut server_outcome = Ok(());
        if let Some(mut server) = self.server.take() {
            match tokio::time::timeout(Duration::from_micros(SHUTDOWN_GRACE_US), &mut server).await
            {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(error))) => server_outcome = Err(StartError::Server(error.to_string())),
                Ok(Err(error)) => server_outcome = Err(StartError::Server(error.to_string())),
                Err(_) => server.abort(),
            }
        }
        // The peer tasks end once the node loop drops their queues.
        if let Some(node_loop) = self.node_loop.take() {
            tokio::task::spawn_blocking(move || node_loop.stop())
                .await
                .map_err(|error| {
                    NodeLoopError::Thread(format!("stopping the node did not finish: {error}"))
                })??;
        }
        tracing::info!(node_id = self.node_id, "region node stopped");
        server_outcome
    }
}

impl Drop for RunningNode {
    fn drop(&mut self) {
        let _ = self.stopping.send(true);
        if let Some(shutdown) = self.server_shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
        // Dropping the node loop handle stops its thread and waits for it.
        self.node_loop.take();
    }
}
