//! The production driver of a region node (feature `driver`; docs/design.md section 3): tokio,
//! tonic over real sockets, RocksDB and the system clock around the sans-IO [`RegionNode`](crate::RegionNode).
//!
//! The driver is thin. Every protocol decision stays in the node; the driver pumps
//! events between the sockets, a tick timer, RocksDB and the node:
//!
//! - [`node_loop`]: the node on the shared [`dsss_raft_group::node_loop`]: one dedicated OS
//!   thread owns the node and its [`RocksDbStore`](dsss_rocksdb_store::RocksDbStore). It
//!   takes events from a bounded channel, ticks raft at a fixed interval, drains every queued
//!   event (up to a bound) and then calls the ONE shared [`crate::RegionNode::handle_ready`]
//!   path with a [`ReadyIo`](dsss_raft_group::ReadyIo) that syncs RocksDB and hands messages
//!   to the peer transport. While one fsync runs, the next requests queue up and share the
//!   next sync.
//! - [`peer`]: per peer a task with a bounded queue that sends raft messages in batches over
//!   the `RegionPeer` gRPC service and reconnects with backoff. A full queue drops messages
//!   (raft retransmits); the node loop never waits for the network.
//! - [`coordinator_client`]: the region leader's batches to the global coordinator
//!   (`Coordinator.SubmitBatch`), their acknowledgements back to the node, and the sealed
//!   epoch reads behind barriers (`Coordinator.ReadSealedEpoch`); sealed epochs come in
//!   through the `RegionEpochs` service.
//! - [`crate::service`]: the gRPC services that turn requests into node events.
//!
//! [`start`] wires it all together for one node of a topology.

pub mod config;
pub mod coordinator_client;
pub mod identity;
pub mod node_loop;
pub mod peer;
pub mod server;

pub use config::{DriverConfig, DriverConfigError, PeerAddress, TICK_INTERVAL_US_DEFAULT};
pub use coordinator_client::{
    COORDINATOR_ATTEMPTS_MAX, COORDINATOR_BATCHES_IN_FLIGHT_MAX, COORDINATOR_CALL_TIMEOUT_US,
    COORDINATOR_QUEUE_BATCHES_MAX, COORDINATOR_QUEUE_READS_MAX, CoordinatorSender, GlobalSettings,
    SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX,
};
pub use node_loop::{
    Barrier, EVENTS_PER_ITERATION_MAX, EVENTS_QUEUED_MAX, LOG_EVENTS_BROADCAST_MAX,
    LOG_READ_BYTES_MAX, LOG_READ_RECORDS_MAX, LogRead, MembershipChange, NodeEvent, NodeLoopError,
    NodeStatus, PROPOSE_WAITERS_MAX, ProposeOutcome,
};
pub use peer::{PEER_BATCH_BYTES_MAX, PEER_BATCH_MESSAGES_MAX, PEER_QUEUE_MESSAGES_MAX};
pub use server::{
    NodeObservations, RunningNode, SHUTDOWN_GRACE_US, StartError, start, start_with_global,
    start_with_listener,
};
