//! The coordinator's node loop: one dedicated OS thread that owns the [`CoordinatorNode`] and
//! its RocksDB store.
//!
//! RocksDB's fsync blocks, so the replica does not live on the tokio runtime: the gRPC
//! services and the region senders send it [`CoordinatorEvent`]s over a bounded channel. One
//! iteration of the loop:
//!
//! 1. waits for an event or for the next tick (one per epoch), whichever comes first;
//! 2. takes that event and every other queued one, up to [`EVENTS_PER_ITERATION_MAX`];
//! 3. calls [`CoordinatorNode::handle_tick`] when an epoch has passed;
//! 4. calls [`CoordinatorNode::handle_ready`] ONCE, whose [`ReadyIo`] syncs RocksDB and hands
//!    raft messages to the peer transport;
//! 5. drains [`CoordinatorNode::poll_output`] in one exhaustive `match`: sealed epochs to the
//!    region senders, and the answers to sealed epoch reads (which the replica gives only
//!    after confirming its leadership) to the waiting `ReadSealedEpoch` calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::transport::PeerSenders;
use dsss_raft_group::{RAFT_LOG, RAFT_STATE, ReadyError, ReadyIo, StoreError, WriteBatch};
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
    CoordinatorNodeError, CoordinatorOutput, CoordinatorStatus, InputError, RegionMessage,
};

/// The most events waiting in the loop's channel; a sender that finds it full gets an error
/// at once (the region resends its batch, raft retransmits).
pub const EVENTS_QUEUED_MAX: usize = 16_384;

/// The most events one iteration takes before it runs a round of raft work.
pub const EVENTS_PER_ITERATION_MAX: usize = 4_096;

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

/// The running loop.
pub struct CoordinatorLoopHandle {
    events: SyncSender<CoordinatorEvent>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), CoordinatorLoopError>>>,
    exited: Option<oneshot::Receiver<()>>,
}

impl CoordinatorLoopHandle {
    /// A sender of events to the loop.
    pub fn events(&self) -> SyncSender<CoordinatorEvent> {
        self.events.clone()
    }

    /// Resolves when the loop has stopped, by request or by failure.
    pub async fn exited(&mut self) {
        if let Some(exited) = self.exited.as_mut() {
            let _ = exited.await;
            self.exited = None;
        }
    }

    /// Asks the loop to stop and waits for its thread.
    pub fn stop(mut self) -> Result<(), CoordinatorLoopError> {
        self.stop.store(true, Ordering::SeqCst);
        self.join()
    }

    fn join(&mut self) -> Result<(), CoordinatorLoopError> {
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                Err(CoordinatorLoopError::Thread(
                    "the coordinator thread panicked; see the log above".to_owned(),
                ))
            }),
            None => Ok(()),
        }
    }
}

impl Drop for CoordinatorLoopHandle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.join();
    }
}

/// Opens the store and the replica on a new thread and starts the loop. Returns once the
/// replica is open (or could not be opened). `events` is the channel the loop reads (the
/// region senders hold its sender already).
pub(crate) fn spawn(
    config: CoordinatorDriverConfig,
    peers: CoordinatorPeers,
    region_senders: BTreeMap<RegionId, RegionSender>,
    events: (SyncSender<CoordinatorEvent>, Receiver<CoordinatorEvent>),
) -> Result<CoordinatorLoopHandle, CoordinatorLoopError> {
    let (events, receiver) = events;
    let stop = Arc::new(AtomicBool::new(false));
    let (opened_sender, opened_receiver) = std::sync::mpsc::channel();
    let (exited_sender, exited_receiver) = oneshot::channel();
    let thread_stop = stop.clone();
    let node_id = config.coordinator.node_id;
    let thread = std::thread::Builder::new()
        .name(format!("dsss-coordinator-{node_id}"))
        .spawn(move || {
            let outcome = match open(&config) {
                Ok((node, store)) => {
                    let _ = opened_sender.send(Ok(()));
                    let mut node_loop = CoordinatorLoop {
                        node,
                        store,
                        peers,
                        region_senders,
                        events: receiver,
                        stop: thread_stop,
                        tick_interval: Duration::from_micros(config.coordinator.epoch_interval_us),
                        config,
                        epoch_reads: HashMap::new(),
                        next_read_id: 1,
                    };
                    node_loop.run()
                }
                Err(error) => {
                    let _ = opened_sender.send(Err(error.to_string()));
                    Err(error)
                }
            };
            if let Err(error) = &outcome {
                tracing::error!(node_id, %error, "the coordinator loop stopped");
            }
            let _ = exited_sender.send(());
            outcome
        })
        .map_err(|error| {
            CoordinatorLoopError::Thread(format!("cannot start the coordinator thread: {error}"))
        })?;
    let mut handle = CoordinatorLoopHandle {
        events,
        stop,
        thread: Some(thread),
        exited: Some(exited_receiver),
    };
    match opened_receiver.recv() {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(_)) | Err(_) => match handle.join() {
            Err(error) => Err(error),
            Ok(()) => Err(CoordinatorLoopError::Thread(
                "the coordinator thread ended before opening the replica".to_owned(),
            )),
        },
    }
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

/// The [`ReadyIo`] of the production replica: a batch raft must have durable is synced to
/// RocksDB before raft goes on, one that only applies committed entries is written without a
/// sync (a crash makes the replica apply them again, see `RaftGroup::handle_ready`), and
/// messages go to the peer transport's queues without waiting.
struct DriverIo<'a> {
    store: &'a mut RocksDbStore,
    peers: &'a CoordinatorPeers,
}

impl ReadyIo for DriverIo<'_> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        dsss_raft_group::DurableStore::write(self.store, batch, true)
    }

    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        dsss_raft_group::DurableStore::write(self.store, batch, false)
    }

    fn send(&mut self, messages: Vec<Message>) {
        self.peers.send(messages);
    }
}

struct CoordinatorLoop {
    node: CoordinatorNode,
    store: RocksDbStore,
    peers: CoordinatorPeers,
    region_senders: BTreeMap<RegionId, RegionSender>,
    events: Receiver<CoordinatorEvent>,
    stop: Arc<AtomicBool>,
    tick_interval: Duration,
    config: CoordinatorDriverConfig,
    /// The `ReadSealedEpoch` calls waiting for the replica's answer, by read id.
    epoch_reads: HashMap<u64, oneshot::Sender<Result<proto::ReadSealedEpochReply, InputError>>>,
    next_read_id: u64,
}

impl CoordinatorLoop {
    fn run(&mut self) -> Result<(), CoordinatorLoopError> {
        let mut next_tick = Instant::now();
        while !self.stop.load(Ordering::SeqCst) {
            let wait = if self.node.has_ready() {
                Duration::ZERO
            } else {
                next_tick.saturating_duration_since(Instant::now())
            };
            match self.events.recv_timeout(wait) {
                Ok(event) => self.handle_event(event),
                Err(RecvTimeoutError::Timeout) => {}
                // The region senders hold senders too: this happens only once everything
                // that could send stopped.
                Err(RecvTimeoutError::Disconnected) => break,
            }
            for _ in 1..EVENTS_PER_ITERATION_MAX {
                match self.events.try_recv() {
                    Ok(event) => self.handle_event(event),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                // One tick per epoch; epochs lost in a stall are not replayed, because raft
                // counts time in ticks and a burst of them would start elections.
                self.node.handle_tick(SystemClock.now_us());
                next_tick = (next_tick + self.tick_interval).max(now);
            }
            if self.node.has_ready() {
                let mut io = DriverIo {
                    store: &mut self.store,
                    peers: &self.peers,
                };
                self.node.handle_ready(&mut io)?;
            }
            self.route_outputs();
        }
        Ok(())
    }

    fn handle_event(&mut self, event: CoordinatorEvent) {
        let now_us = SystemClock.now_us();
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

    fn route_outputs(&mut self) {
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
                CoordinatorOutput::ToRegion {
                    region,
                    message: RegionMessage::Epoch(epoch),
                } => {
                    if let Some(sender) = self.region_senders.get(&region) {
                        sender.send(epoch);
                    }
                }
            }
        }
    }
}
