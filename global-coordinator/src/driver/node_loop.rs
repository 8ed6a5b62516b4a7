//! The coordinator replica on the shared node loop ([`dsss_raft_group::node_loop`], which
//! documents the iteration): one dedicated OS thread owns the [`CoordinatorNode`] and its
//! RocksDB store, ticks once per epoch, and the gRPC services and the region senders send it
//! [`CoordinatorEvent`]s.
//!
//! Its outputs ([`CoordinatorNode::poll_output`]) go in one exhaustive `match`: sealed epochs
//! to the region senders, and the answers to sealed epoch reads (which the replica gives only
//! after confirming its leadership) to the waiting `ReadSealedEpoch` calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Duration;

use dsss_raft_group::node_loop::{LoopHandle, LoopNode, LoopSettings, LoopThreadError, PeerIo};
use dsss_raft_group::transport::{PeerSenders, lock_clocks, monotonic_us};
use dsss_raft_group::{RAFT_LOG, RAFT_STATE, ReadyError, StoreError};
use dsss_rocksdb_store::RocksDbStore;
use dsss_wire::grpc::VersionedChannel;
use dsss_wire::proto::coordinator_peer_client::CoordinatorPeerClient;
use dsss_wire::proto::{self, RaftBatch};
use dsss_wire::{PhysicalClock, RegionId, SystemClock};
use tokio::sync::oneshot;

use super::config::CoordinatorDriverConfig;
use super::region_sender::RegionSender;
use crate::{
    COORDINATOR_EPOCHS, COORDINATOR_PENDING, COORDINATOR_STATE, CoordinatorNode,
    CoordinatorNodeError, CoordinatorOutput, CoordinatorStatus, InputError,
};

pub use dsss_raft_group::node_loop::{EVENTS_PER_ITERATION_MAX, EVENTS_QUEUED_MAX};

/// The coordinator group's raft peer transport.
pub type CoordinatorPeers = PeerSenders<CoordinatorPeerClient<VersionedChannel>>;

/// An event for the coordinator's node loop.
#[derive(Debug)]
pub enum CoordinatorEvent {
    /// A region leader's batch; the answer is the region's acknowledgement state at once.
    SubmitBatch {
        /// The batch.
        batch: proto::RegionBatch,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<proto::RegionBatchAck, InputError>>,
    },
    /// Raft messages from another replica.
    RaftBatch(RaftBatch),
    /// A region's answer to a sealed epoch delivery.
    EpochAck(proto::SealedEpochAck),
    /// A read of the newest sealed epoch, for `ReadSealedEpoch`; answered once the replica
    /// has confirmed that it leads.
    ReadSealedEpoch {
        /// The request.
        request: proto::ReadSealedEpochRequest,
        /// Where the answer goes.
        reply: oneshot::Sender<Result<proto::ReadSealedEpochReply, InputError>>,
    },
    /// A status query.
    Status(oneshot::Sender<CoordinatorStatus>),
}

/// Why the node loop could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum CoordinatorLoopError {
    /// The RocksDB store could not be opened.
    #[error("opening the coordinator store in {path}: {error}")]
    OpenStore {
        /// The data directory.
        path: std::path::PathBuf,
        /// What RocksDB said.
        error: StoreError,
    },
    /// The replica could not be opened over its store.
    #[error("opening the coordinator replica from {path}: {error}")]
    OpenNode {
        /// The data directory.
        path: std::path::PathBuf,
        /// What went wrong.
        error: CoordinatorNodeError,
    },
    /// A round of raft work failed (a sync failed): the replica stopped.
    #[error("a coordinator raft round failed, the replica stopped: {0}")]
    Ready(#[from] ReadyError),
    /// The thread could not be started or ended without a word.
    #[error("the coordinator thread: {0}")]
    Thread(String),
}

impl From<LoopThreadError> for CoordinatorLoopError {
    fn from(error: LoopThreadError) -> Self {
        CoordinatorLoopError::Thread(error.0)
    }
}

/// The running loop: [`CoordinatorLoopHandle::events`] sends it events,
/// [`CoordinatorLoopHandle::stop`] stops it.
pub type CoordinatorLoopHandle = LoopHandle<CoordinatorEvent, CoordinatorLoopError>;

/// Opens the store and the replica on a new thread and starts the loop. Returns once the
/// replica is open (or could not be opened). `events` is the channel the loop reads (from
/// [`dsss_raft_group::node_loop::event_channel`]; the region senders hold its sender already).
pub(crate) fn spawn(
    config: CoordinatorDriverConfig,
    peers: CoordinatorPeers,
    region_senders: BTreeMap<RegionId, RegionSender>,
    events: (SyncSender<CoordinatorEvent>, Receiver<CoordinatorEvent>),
) -> Result<CoordinatorLoopHandle, CoordinatorLoopError> {
    let settings = LoopSettings {
        thread_name: format!("dsss-coordinator-{}", config.coordinator.node_id),
        // One tick per epoch.
        tick_interval: Duration::from_micros(config.coordinator.epoch_interval_us),
    };
    dsss_raft_group::node_loop::spawn(settings, events, move || {
        let (node, store) = open(&config)?;
        Ok(CoordinatorLoop {
            node,
            store,
            peers,
            region_senders,
            config,
            epoch_reads: HashMap::new(),
            next_read_id: 1,
            fence_logged: false,
        })
    })
}

fn open(
    config: &CoordinatorDriverConfig,
) -> Result<(CoordinatorNode, RocksDbStore), CoordinatorLoopError> {
    let path = config.data_dir.clone();
    let mut store = RocksDbStore::open(
        &path,
        &[
            RAFT_LOG,
            RAFT_STATE,
            COORDINATOR_STATE,
            COORDINATOR_PENDING,
            COORDINATOR_EPOCHS,
        ],
    )
    .map_err(|error| CoordinatorLoopError::OpenStore {
        path: path.clone(),
        error,
    })?;
    let node = CoordinatorNode::open(config.coordinator.clone(), &mut store)
        .map_err(|error| CoordinatorLoopError::OpenNode { path, error })?;
    Ok((node, store))
}

/// The replica as the shared loop drives it, with the answer channels of its waiting callers.
struct CoordinatorLoop {
    node: CoordinatorNode,
    store: RocksDbStore,
    peers: CoordinatorPeers,
    region_senders: BTreeMap<RegionId, RegionSender>,
    config: CoordinatorDriverConfig,
    /// The `ReadSealedEpoch` calls waiting for the replica's answer, by read id.
    epoch_reads: HashMap<u64, oneshot::Sender<Result<proto::ReadSealedEpochReply, InputError>>>,
    next_read_id: u64,
    /// Whether the log last said the replica is fenced (the fence may also start or end at a
    /// tick, when the hybrid clock runs ahead or catches up).
    fence_logged: bool,
}

impl CoordinatorLoop {
    /// Gives the replica the verdict on its clock from what the peer transport measured, and
    /// logs when it fences itself or resumes.
    fn judge_clock(&mut self, now_us: u64) {
        let (verdict, samples) = {
            let mut clocks = lock_clocks(self.peers.clocks());
            // The two clocks read together: `now_us` may have been read a while ago.
            let (wall_us, steady_us) = (SystemClock.now_us(), monotonic_us());
            clocks.observe_local_clock(wall_us, steady_us);
            let verdict = clocks.verdict(self.node.id(), &self.node.voters(), now_us);
            (verdict, clocks.fresh_samples(now_us))
        };
        self.node.handle_clock_verdict(&verdict, samples);
        let fenced = self.node.clock_fenced();
        if fenced == self.fence_logged {
            return;
        }
        self.fence_logged = fenced;
        match (fenced, self.node.clock_runs_ahead()) {
            (true, true) => tracing::error!(
                node_id = self.node.id(),
                max_skew_ms = self.config.coordinator.max_clock_skew_us / 1_000,
                "this coordinator replica's hybrid clock runs ahead of its physical clock by more \
                 than the tolerated skew (the physical clock leapt ahead and back); it will not \
                 lead until its physical clock catches up"
            ),
            (true, false) => tracing::error!(
                node_id = self.node.id(),
                offset_ms = verdict.own_offset_us() / 1_000,
                max_skew_ms = self.config.coordinator.max_clock_skew_us / 1_000,
                "this coordinator replica's clock is beyond the tolerated skew from a majority \
                 of the replicas; it will not lead until its clock is back within the bound"
            ),
            (false, _) => tracing::warn!(
                node_id = self.node.id(),
                "this coordinator replica's clock is back within the bound; it may lead again"
            ),
        }
    }
}

impl LoopNode for CoordinatorLoop {
    type Event = CoordinatorEvent;
    type Error = CoordinatorLoopError;

    fn handle_event(&mut self, now_us: u64, event: CoordinatorEvent) {
        self.handle_coordinator_event(now_us, event);
    }

    fn handle_tick(&mut self, now_us: u64) {
        self.judge_clock(now_us);
        self.node.handle_tick(now_us);
    }

    fn quiet_ticks(&self, now_us: u64, tick_interval: Duration) -> u64 {
        let tick_interval_us = u64::try_from(tick_interval.as_micros()).unwrap_or(u64::MAX);
        self.node.quiet_ticks(now_us, tick_interval_us)
    }

    fn has_ready(&self) -> bool {
        self.node.has_ready()
    }

    fn handle_ready(&mut self) -> Result<(), CoordinatorLoopError> {
        let mut io = PeerIo::new(&mut self.store, &self.peers);
        self.node.handle_ready(&mut io)?;
        Ok(())
    }

    fn route_outputs(&mut self, _now_us: u64) {
        self.route_coordinator_outputs();
    }
}

impl CoordinatorLoop {
    fn handle_coordinator_event(&mut self, now_us: u64, event: CoordinatorEvent) {
        match event {
            CoordinatorEvent::SubmitBatch { batch, reply } => {
                let region = batch.region.clone();
                let sender_node_id = batch.sender_node_id;
                let outcome = self.node.answer_region_batch(now_us, batch);
                if outcome.is_ok()
                    && let Some(sender) = RegionId::new(region)
                        .ok()
                        .and_then(|region| self.region_senders.get(&region))
                {
                    // Only a region's leader ships batches: epochs go to the node that last
                    // submitted one.
                    sender.guess_leader(sender_node_id);
                }
                let outcome = outcome.map(|mut ack| {
                    if let Some(not_leader) = ack.not_leader.as_mut() {
                        not_leader.leader_address = self
                            .config
                            .replica_address(not_leader.leader_node_id)
                            .unwrap_or_default()
                            .to_owned();
                    }
                    ack
                });
                let _ = reply.send(outcome);
            }
            CoordinatorEvent::RaftBatch(batch) => {
                if let Err(error) = self.node.handle_raft_batch(now_us, &batch) {
                    tracing::debug!(from = batch.from_node_id, %error, "coordinator raft batch refused");
                }
            }
            CoordinatorEvent::EpochAck(ack) => {
                if let Err(error) = self.node.handle_epoch_ack(now_us, ack) {
                    tracing::debug!(%error, "sealed epoch acknowledgement refused");
                }
            }
            CoordinatorEvent::ReadSealedEpoch { request, reply } => {
                if self.epoch_reads.len() >= crate::SEALED_EPOCH_READS_IN_FLIGHT_MAX {
                    let _ = reply.send(Err(InputError::Overloaded {
                        reason: format!(
                            "{} sealed epoch reads wait for confirmation \
                             (SEALED_EPOCH_READS_IN_FLIGHT_MAX)",
                            self.epoch_reads.len()
                        ),
                    }));
                    return;
                }
                let read_id = self.next_read_id;
                self.next_read_id += 1;
                match self.node.handle_read_sealed_epoch(now_us, read_id, request) {
                    Ok(()) => {
                        self.epoch_reads.insert(read_id, reply);
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
            CoordinatorEvent::Status(reply) => {
                let _ = reply.send(self.node.status());
            }
        }
    }

    fn route_coordinator_outputs(&mut self) {
        while let Some(output) = self.node.poll_output() {
            match output {
                CoordinatorOutput::SealedEpochReply { read_id, mut reply } => {
                    if let Some(not_leader) = reply.not_leader.as_mut() {
                        not_leader.leader_address = self
                            .config
                            .replica_address(not_leader.leader_node_id)
                            .unwrap_or_default()
                            .to_owned();
                    }
                    if let Some(sender) = self.epoch_reads.remove(&read_id) {
                        // The caller may have given up: nothing to do.
                        let _ = sender.send(Ok(reply));
                    }
                }
                CoordinatorOutput::Notice(notice) => {
                    tracing::warn!(node_id = self.node.id(), "{notice}");
                }
                CoordinatorOutput::ToRegion { region, message } => {
                    if let Some(sender) = self.region_senders.get(&region) {
                        sender.send(message);
                    }
                }
            }
        }
    }
}
