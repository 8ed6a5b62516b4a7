//! The production driver of a coordinator replica (feature `driver`; docs/design.md section 3):
//! tokio, tonic, RocksDB and the system clock around the sans-IO [`CoordinatorNode`](crate::CoordinatorNode).
//!
//! The driver is thin; every protocol decision stays in the replica:
//!
//! - [`node_loop`]: the replica on the shared [`dsss_raft_group::node_loop`]: one OS thread
//!   owns the replica and its RocksDB store in `<node data_dir>/coordinator`, ticks once per
//!   epoch, drains its bounded event channel, then runs ONE
//!   [`crate::CoordinatorNode::handle_ready`] whose writes are synced.
//! - [`service`]: `Coordinator.SubmitBatch` answers each batch at once with the region's
//!   current acknowledgement state (or NotLeader with the leader's id and address);
//!   `Coordinator.ReadSealedEpoch` answers the newest sealed epoch on the leader once it has
//!   confirmed its leadership (raft ReadIndex);
//!   `CoordinatorPeer.Deliver` takes raft messages from the other replicas.
//! - [`region_sender`]: per region, a task that delivers sealed epochs in order to the
//!   region's leader guess (`RegionEpochs.Deliver`) and feeds the answers back.
//! - raft messages between replicas go through the shared
//!   [`dsss_raft_group::transport`], with the topology's WAN delays when emulated.
//!
//! [`start`] wires it together; the caller serves [`RunningCoordinator::routes`] on its own
//! gRPC server (a `dsss node` serves them beside the region node's services).

pub mod config;
pub mod node_loop;
pub mod region_sender;
pub mod service;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use dsss_raft_group::PeerClocks;
use dsss_raft_group::transport::{DelayLine, PeerSenders, SharedPeerClocks};
use dsss_wire::access::{AccessPolicy, Guarded};
use dsss_wire::grpc::{coordinator_peer_server, coordinator_server};
use dsss_wire::latency::LatencyHistogram;
use tonic::service::Routes;

pub use config::{COORDINATOR_DATA_DIR_NAME, CoordinatorDriverConfig, NodeAddress};
pub use node_loop::{
    CoordinatorEvent, CoordinatorLoopError, CoordinatorLoopHandle, EVENTS_PER_ITERATION_MAX,
    EVENTS_QUEUED_MAX,
};
pub use region_sender::{
    REGION_CALL_TIMEOUT_US, REGION_CALLS_IN_FLIGHT_MAX, REGION_DELIVERY_ATTEMPTS_MAX,
    REGION_QUEUE_PARTS_MAX,
};
pub use service::{CoordinatorLink, CoordinatorPeerService, CoordinatorService, status_reply};

use region_sender::RegionSender;

/// A replica that runs: its node loop, raft transport and region senders. Dropping it stops
/// the loop; the tasks end once their queues close.
pub struct RunningCoordinator {
    node_id: u64,
    link: CoordinatorLink,
    clocks: SharedPeerClocks,
    sync_latency: Arc<LatencyHistogram>,
    node_loop: Option<CoordinatorLoopHandle>,
}

/// Starts the coordinator replica `config` on the current tokio runtime: opens (or creates)
/// its store, starts the raft transport to the other replicas, one epoch sender per region,
/// and the node loop. Serve [`RunningCoordinator::routes`] to make it reachable.
pub async fn start(
    config: CoordinatorDriverConfig,
) -> Result<RunningCoordinator, CoordinatorLoopError> {
    config
        .coordinator
        .validate()
        .map_err(|error| CoordinatorLoopError::Thread(error.to_string()))?;
    let node_id = config.coordinator.node_id;
    let peers: Vec<(u64, String)> = config
        .replicas
        .iter()
        .filter(|replica| replica.node_id != node_id)
        .map(|replica| (replica.node_id, replica.address.clone()))
        .collect();
    // What the replica knows of the other replicas' clocks: the transport stamps batches with
    // probes, the peer service takes the samples, the node loop gives the verdict to the node.
    let clocks = Arc::new(Mutex::new(PeerClocks::new(
        config.coordinator.max_clock_skew_us,
    )));
    let peers = PeerSenders::start(
        node_id,
        &peers,
        config.peer_delays.clone(),
        config.security.clone(),
        Arc::clone(&clocks),
    );
    let sync_latency = Arc::clone(peers.sync_latency());
    let (events, receiver) = dsss_raft_group::node_loop::event_channel();
    let mut region_senders = BTreeMap::new();
    for (seed, (region, nodes)) in (1u64..).zip(&config.regions) {
        let line = DelayLine::new(
            config.region_delays.get(region).copied(),
            node_id.rotate_left(32) ^ seed,
        );
        region_senders.insert(
            region.clone(),
            RegionSender::start(
                region.clone(),
                nodes,
                line,
                &config.security,
                events.clone(),
            ),
        );
    }
    let link = CoordinatorLink::new(node_id, events.clone());
    let data_dir = config.data_dir.clone();
    // Opening RocksDB and replaying the log blocks: keep it off the runtime's threads.
    let node_loop = tokio::task::spawn_blocking(move || {
        node_loop::spawn(config, peers, region_senders, (events, receiver))
    })
    .await
    .map_err(|error| {
        CoordinatorLoopError::Thread(format!("opening the coordinator did not finish: {error}"))
    })??;
    tracing::info!(node_id, data_dir = %data_dir.display(), "coordinator replica running");
    Ok(RunningCoordinator {
        node_id,
        link,
        clocks,
        sync_latency,
        node_loop: Some(node_loop),
    })
}

impl RunningCoordinator {
    /// The replica's node id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The replica's link, for status queries.
    pub fn link(&self) -> &CoordinatorLink {
        &self.link
    }

    /// How long the replica's synced store writes take.
    pub fn sync_latency(&self) -> &Arc<LatencyHistogram> {
        &self.sync_latency
    }

    /// The `Coordinator` and `CoordinatorPeer` services, with the protocol version check and
    /// the message size limit, admitting the callers `access` allows, to serve on a gRPC
    /// server.
    pub fn routes(&self, access: &Arc<AccessPolicy>) -> Routes {
        Routes::new(Guarded::new(
            coordinator_server(CoordinatorService::new(self.link.clone())),
            Arc::clone(access),
        ))
        .add_service(Guarded::new(
            coordinator_peer_server(CoordinatorPeerService::new(
                self.link.clone(),
                Arc::clone(&self.clocks),
            )),
            Arc::clone(access),
        ))
    }

    /// Resolves when the node loop stops on its own (a failed sync).
    pub async fn stopped(&mut self) {
        match self.node_loop.as_mut() {
            Some(node_loop) => node_loop.exited().await,
            None => std::future::pending().await,
        }
    }

    /// Stops the node loop after its current round (everything acknowledged is synced).
    pub async fn shutdown(mut self) -> Result<(), CoordinatorLoopError> {
        if let Some(node_loop) = self.node_loop.take() {
            tokio::task::spawn_blocking(move || node_loop.stop())
                .await
                .map_err(|error| {
                    CoordinatorLoopError::Thread(format!(
                        "stopping the coordinator did not finish: {error}"
                    ))
                })??;
        }
        tracing::info!(node_id = self.node_id, "coordinator replica stopped");
        Ok(())
    }
}
