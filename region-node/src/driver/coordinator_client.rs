//! The region's side of the global tier in production: [`GlobalSettings`] (where the
//! coordinator's replicas are, and the WAN delays to emulate) and the coordinator client task
//! that ships the region leader's batches.
//!
//! The node loop hands every `ToCoordinator::Batch` output to [`CoordinatorSender::send`]
//! without waiting (a full queue drops it: the leader resends unacknowledged batches). The
//! task takes the batches in order, waits for the WAN delay when emulated, and calls
//! `Coordinator.SubmitBatch` on the replica its [`LeaderTracker`] names: first the topology's
//! preferred leader, then the leader a NotLeader answer names, or the next replica after an
//! error. It does not wait for an answer before the next call: up to
//! [`COORDINATOR_BATCHES_IN_FLIGHT_MAX`] calls are open at once ([`CallsInFlight`]), so that
//! a WAN round trip longer than an epoch does not hold batches back. Each acknowledgement
//! goes back to the node loop ([`NodeEvent::BatchAck`]) after the return leg of the emulated
//! link.
//! Acknowledgements of sealed epochs travel the other way, as the answers to
//! `RegionEpochs.Deliver`.
//!
//! A second task serves the node's sealed epoch reads (the barriers behind `Sync`): it takes
//! every read queued so far, calls `Coordinator.ReadSealedEpoch` once for all of them (the call
//! starts after each of them was asked, so its answer serves them all), following NotLeader
//! answers as the batch task does, and hands the answer to the node loop
//! ([`NodeEvent::SealedEpochRead`]) with the newest read's id. A read does not wait for the
//! answer to an earlier one: up to [`SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX`] calls are open at
//! once (answers may come out of order; the node serves each barrier with the first answer
//! to a read asked after it). With WAN emulation, the request and the answer each wait for the
//! one-way delay.
//!
//! A third task serves the leader's reads of released epochs from other regions (a region
//! that missed epochs the coordinator no longer holds, docs/global-protocol.md section 7): it
//! calls `RegionEpochs.ReadEpochs` on a node of the named region (successive reads go to
//! successive nodes, so an unreachable one is passed over) and hands the answer to the node
//! loop ([`NodeEvent::EpochsRead`]). With WAN emulation, the request and the answer each wait
//! for the one-way delay to that region.
//!
//! A fourth task serves the node's reads of global objects' checkpoints from other regions
//! (an object the region released, adopted from another region, docs/design.md section 2.8):
//! each read runs on its own (the node bounds how many wait, `ADOPTIONS_IN_FLIGHT_MAX`),
//! calls `RegionEpochs.ReadCheckpoint` on a node of the named region the same way, and hands
//! the answer to the node loop ([`NodeEvent::CheckpointRead`]).

use std::collections::HashMap;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use dsss_raft_group::transport::{CallsInFlight, DelayLine, OneWayDelay, PeerDelays};
use dsss_topology::Topology;
use dsss_wire::LeaderTracker;
use dsss_wire::grpc::{VersionedChannel, coordinator_client, region_epochs_client};
use dsss_wire::proto::region_epochs_client::RegionEpochsClient;
use dsss_wire::proto::{self, coordinator_client::CoordinatorClient};
use dsss_wire::tls::Security;
use tokio::sync::{mpsc, watch};
use tonic::Code;
use tonic::transport::Endpoint;

use crate::driver::{DriverConfigError, NodeEvent, PeerAddress};
use crate::global::adoption::CheckpointRead;
use crate::node::{EpochsRead, SealedEpochRead};
use crate::topology_config::TopologyConfigError;

/// The most batches queued for the coordinator; beyond, new ones are dropped (resent later).
pub const COORDINATOR_QUEUE_BATCHES_MAX: usize = 1_024;

/// The most batch submissions open at once. A region leader closes a batch every epoch
/// interval and each call takes a WAN round trip: with 10 ms epochs, 64 calls keep up with
/// round trips of up to 640 ms (the farthest regions of `global.toml` are about 330 ms
/// apart); beyond, batches wait in the queue for a free call.
pub const COORDINATOR_BATCHES_IN_FLIGHT_MAX: usize = 64;

pub use crate::global::{COORDINATOR_ATTEMPTS_MAX, COORDINATOR_CALL_TIMEOUT_US};

/// How long connecting to a coordinator replica may take, in microseconds.
pub const COORDINATOR_CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most sealed epoch reads queued for the reader task; beyond, a read is answered at once
/// with an error (its barriers are refused and asked again by their callers).
pub const COORDINATOR_QUEUE_READS_MAX: usize = 256;

/// The most sealed epoch read calls open at once. Each call serves every read queued before it
/// started; past the bound, the reads queued meanwhile share the next call.
pub const SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX: usize = 16;

/// The most reads of released epochs queued for the reader task; beyond, a read is answered at
/// once with an error (the leader asks again after its resend interval).
pub const EPOCHS_READS_QUEUED_MAX: usize = 16;

/// The most checkpoint reads queued for their task; beyond, a read is answered at once with an
/// error (the adoption asks the next region).
pub const CHECKPOINT_READS_QUEUED_MAX: usize = 64;

/// The most coordinator replicas, as in topology files.
pub const COORDINATOR_REPLICAS_MAX: usize = 9;

/// Where the global tier is, as a region node sees it, and the WAN delays to emulate.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GlobalSettings {
    /// The coordinator's replicas; empty when the node ships nothing (a region alone).
    pub coordinator_replicas: Vec<PeerAddress>,
    /// The replica tried first.
    pub preferred_leader: u64,
    /// The one-way delay to each coordinator replica (empty: no emulation).
    pub coordinator_delays: HashMap<u64, OneWayDelay>,
    /// The one-way delay of raft messages to the region's other members (empty: none).
    pub peer_delays: PeerDelays,
    /// The nodes of every other region, which serve reads of released epochs.
    pub other_regions: Vec<(String, Vec<PeerAddress>)>,
    /// The one-way delay to each other region (empty: no emulation).
    pub region_delays: HashMap<String, OneWayDelay>,
    /// How connections to the coordinator and the other regions are secured; the node's
    /// start takes it from its [`DriverConfig`](crate::driver::DriverConfig).
    pub security: Security,
}

impl GlobalSettings {
    /// No coordinator and no delays: batches are dropped (the region runs alone).
    pub fn none() -> Self {
        GlobalSettings::default()
    }

    /// The settings of node `node_id` of `topology`. With `emulate_wan`, messages wait for
    /// the latency matrix's one-way delay (with jitter) from the node's region to the
    /// destination's region.
    pub fn from_topology(
        topology: &Topology,
        node_id: u64,
        emulate_wan: bool,
    ) -> Result<GlobalSettings, DriverConfigError> {
        let own_region_index =
            topology
                .region_index_of(node_id)
                .ok_or_else(|| TopologyConfigError::UnknownNode {
                    node_id,
                    known: topology.nodes().map(|(_, node)| node.id).collect(),
                })?;
        let delay_to = |other_node_id: u64| {
            let link = topology.latency.link(
                own_region_index,
                topology
                    .region_index_of(other_node_id)
                    .unwrap_or(own_region_index),
            );
            OneWayDelay {
                one_way_us: link.one_way_us,
                jitter_us: link.jitter_us,
            }
        };
        let coordinator_replicas: Vec<PeerAddress> = topology
            .coordinator
            .replicas
            .iter()
            .filter_map(|&replica| {
                topology.node(replica).map(|node| PeerAddress {
                    node_id: replica,
                    address: node.address.clone(),
                })
            })
            .collect();
        let own_region_id = topology.regions[own_region_index].id.clone();
        let other_regions: Vec<(String, Vec<PeerAddress>)> = topology
            .regions
            .iter()
            .filter(|region| region.id != own_region_id)
            .map(|region| {
                let nodes = region
                    .nodes
                    .iter()
                    .map(|node| PeerAddress {
                        node_id: node.id,
                        address: node.address.clone(),
                    })
                    .collect();
                (region.id.clone(), nodes)
            })
            .collect();
        let mut settings = GlobalSettings {
            preferred_leader: topology.coordinator.preferred_leader,
            coordinator_replicas,
            other_regions,
            ..GlobalSettings::default()
        };
        if emulate_wan {
            for replica in &settings.coordinator_replicas {
                settings
                    .coordinator_delays
                    .insert(replica.node_id, delay_to(replica.node_id));
            }
            for (region, nodes) in &settings.other_regions {
                if let Some(node) = nodes.first() {
                    settings
                        .region_delays
                        .insert(region.clone(), delay_to(node.node_id));
                }
            }
            let intra = topology.latency.link(own_region_index, own_region_index);
            settings.peer_delays.default = Some(OneWayDelay {
                one_way_us: intra.one_way_us,
                jitter_us: intra.jitter_us,
            });
        }
        Ok(settings)
    }
}

/// The newest coordinator leader heard of (`RegionBatchAck.leader_node_id` and
/// `leader_term`), as (node id, term): the node loop publishes it from every acknowledgement,
/// asked or unasked, and every task that calls the coordinator follows it before its next
/// call ([`LeaderTracker::handle_leader`]), so that calls leave a former leader that went
/// silent without failing them as soon as its successor speaks, not after each call's timeout.
#[derive(Clone, Debug)]
struct LeaderNews {
    sender: watch::Sender<(u64, u64)>,
}

impl LeaderNews {
    fn new() -> Self {
        LeaderNews {
            sender: watch::Sender::new((0, 0)),
        }
    }

    /// Publishes `leader` of `term` unless a higher term was heard of; 0s say nothing.
    fn publish(&self, leader: u64, term: u64) {
        if leader == 0 || term == 0 {
            return;
        }
        self.sender.send_if_modified(|news| {
            let newer = term >= news.1 && (leader, term) != *news;
            if newer {
                *news = (leader, term);
            }
            newer
        });
    }
}

/// Brings `leader` up to the newest leader `news` holds, if it changed since the last look.
fn follow_news(news: &mut watch::Receiver<(u64, u64)>, leader: &mut LeaderTracker) {
    if news.has_changed().unwrap_or(false) {
        let (node, term) = *news.borrow_and_update();
        leader.handle_leader(node, term);
    }
}

/// The node loop's handle on the coordinator client task.
#[derive(Clone, Debug)]
pub struct CoordinatorSender {
    news: LeaderNews,
    queue: mpsc::Sender<(Instant, proto::RegionBatch)>,
    reads: mpsc::Sender<SealedEpochRead>,
    epochs_reads: mpsc::Sender<EpochsRead>,
    checkpoint_reads: mpsc::Sender<CheckpointRead>,
    events: SyncSender<NodeEvent>,
}

type Client = CoordinatorClient<VersionedChannel>;

impl CoordinatorSender {
    /// Starts the task on `runtime` for node `node_id`, feeding acknowledgements to `events`.
    /// `None` when `settings` names no coordinator replica.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        node_id: u64,
        settings: &GlobalSettings,
        events: SyncSender<NodeEvent>,
    ) -> Option<CoordinatorSender> {
        let mut clients = Vec::new();
        for replica in settings
            .coordinator_replicas
            .iter()
            .take(COORDINATOR_REPLICAS_MAX)
        {
            match Endpoint::from_shared(format!("http://{}", replica.address)) {
                Ok(endpoint) => clients.push((
                    replica.node_id,
                    coordinator_client(
                        settings.security.connect_lazy(
                            endpoint
                                .connect_timeout(Duration::from_micros(
                                    COORDINATOR_CONNECT_TIMEOUT_US,
                                ))
                                .tcp_nodelay(true),
                        ),
                    ),
                )),
                Err(error) => {
                    tracing::error!(replica = replica.node_id, address = %replica.address, %error, "invalid coordinator address; no batches go there");
                }
            }
        }
        if clients.is_empty() {
            return None;
        }
        let (queue, receiver) = mpsc::channel(COORDINATOR_QUEUE_BATCHES_MAX);
        let (reads, reads_receiver) = mpsc::channel(COORDINATOR_QUEUE_READS_MAX);
        let leader = leader_tracker(&clients, settings.preferred_leader);
        let news = LeaderNews::new();
        let reader = EpochReader {
            clients: clients.clone(),
            leader: leader.clone(),
            news: news.sender.subscribe(),
            delays: settings.coordinator_delays.clone(),
            line: DelayLine::new(None, node_id.rotate_left(17)),
            events: events.clone(),
        };
        let task = CoordinatorTask {
            clients,
            leader,
            news: news.sender.subscribe(),
            delays: settings.coordinator_delays.clone(),
            line: DelayLine::new(None, node_id),
            events: events.clone(),
            failing: false,
        };
        let (epochs_reads, epochs_reads_receiver) = mpsc::channel(EPOCHS_READS_QUEUED_MAX);
        let epochs_reader = RegionEpochsReader {
            regions: settings.other_regions.clone(),
            security: settings.security.clone(),
            delays: settings.region_delays.clone(),
            line: DelayLine::new(None, node_id.rotate_left(31)),
            events: events.clone(),
        };
        let (checkpoint_reads, checkpoint_reads_receiver) =
            mpsc::channel(CHECKPOINT_READS_QUEUED_MAX);
        let checkpoint_reader = RegionEpochsReader {
            line: DelayLine::new(None, node_id.rotate_left(43)),
            ..epochs_reader.clone()
        };
        runtime.spawn(task.run(receiver));
        runtime.spawn(reader.run(reads_receiver));
        runtime.spawn(epochs_reader.run(epochs_reads_receiver));
        runtime.spawn(checkpoint_reader.run_checkpoint_reads(checkpoint_reads_receiver));
        Some(CoordinatorSender {
            news,
            queue,
            reads,
            epochs_reads,
            checkpoint_reads,
            events,
        })
    }

    /// A coordinator acknowledgement reached the node (an answer, or sent unasked by a leader
    /// that just took over): the next calls go to the leader it names, if its term is the
    /// highest heard of.
    pub fn heard_acknowledgement(&self, ack: &proto::RegionBatchAck) {
        self.news.publish(ack.leader_node_id, ack.leader_term);
    }

    /// Queues a read of a global object's checkpoint from another region without waiting; a
    /// full queue answers it at once with an error, through the node loop's channel.
    pub fn read_checkpoint(&self, read: CheckpointRead) {
        if let Err(error) = self.checkpoint_reads.try_send(read) {
            let read = match error {
                mpsc::error::TrySendError::Full(read) | mpsc::error::TrySendError::Closed(read) => {
                    read
                }
            };
            let _ = self.events.try_send(NodeEvent::CheckpointRead {
                read_id: read.read_id,
                reply: Err(format!(
                    "{CHECKPOINT_READS_QUEUED_MAX} checkpoint reads wait \
                     (CHECKPOINT_READS_QUEUED_MAX)"
                )),
            });
        }
    }

    /// Queues a read of released epochs from another region without waiting; a full queue
    /// answers it at once with an error, through the node loop's channel.
    pub fn read_epochs(&self, read: EpochsRead) {
        if let Err(error) = self.epochs_reads.try_send(read) {
            let read = match error {
                mpsc::error::TrySendError::Full(read) | mpsc::error::TrySendError::Closed(read) => {
                    read
                }
            };
            let _ = self.events.try_send(NodeEvent::EpochsRead {
                read_id: read.read_id,
                reply: Err(format!(
                    "{EPOCHS_READS_QUEUED_MAX} reads of released epochs wait \
                     (EPOCHS_READS_QUEUED_MAX)"
                )),
            });
        }
    }

    /// Queues a batch without waiting; a full queue drops it (the leader resends).
    pub fn send(&self, batch: proto::RegionBatch) {
        let _ = self.queue.try_send((Instant::now(), batch));
    }

    /// Queues a sealed epoch read without waiting; a full queue answers it at once with an
    /// error, through the node loop's channel.
    pub fn read_sealed_epoch(&self, read: SealedEpochRead) {
        if let Err(error) = self.reads.try_send(read) {
            let read = match error {
                mpsc::error::TrySendError::Full(read) | mpsc::error::TrySendError::Closed(read) => {
                    read
                }
            };
            let _ = self.events.try_send(NodeEvent::SealedEpochRead {
                read_id: read.read_id,
                reply: Err(format!(
                    "{COORDINATOR_QUEUE_READS_MAX} sealed epoch reads wait for the coordinator \
                     (COORDINATOR_QUEUE_READS_MAX)"
                )),
            });
        }
    }
}

/// The task that asks the coordinator leader for its newest sealed epoch.
struct EpochReader {
    clients: Vec<(u64, Client)>,
    leader: LeaderTracker,
    news: watch::Receiver<(u64, u64)>,
    delays: HashMap<u64, OneWayDelay>,
    line: DelayLine,
    events: SyncSender<NodeEvent>,
}

/// One sealed epoch read (standing for every read queued before it) on its way through its
/// attempts.
struct EpochReadAttempt {
    read: SealedEpochRead,
    /// The attempts made, this one included.
    attempt: usize,
    replica: u64,
    outcome:
        Result<Result<proto::ReadSealedEpochReply, tonic::Status>, tokio::time::error::Elapsed>,
}

impl EpochReader {
    /// Serves the queued reads until the queue closes, up to
    /// [`SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX`] calls open at once.
    async fn run(mut self, mut queue: mpsc::Receiver<SealedEpochRead>) {
        let mut calls = CallsInFlight::new(SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX);
        loop {
            tokio::select! {
                Some(attempted) = calls.next(), if !calls.is_empty() => {
                    self.settle(&mut calls, attempted);
                }
                queued = queue.recv(), if calls.has_room() => match queued {
                    Some(mut read) => {
                        // Every read queued now was asked before the call below starts: one
                        // answer serves them all, and the newest carries the freshest sender
                        // time.
                        while let Ok(newer) = queue.try_recv() {
                            read = newer;
                        }
                        self.start(&mut calls, read, 1);
                    }
                    None => return,
                },
            }
        }
    }

    /// Starts an attempt of `read` on the leader guess, over its link both ways.
    fn start(
        &mut self,
        calls: &mut CallsInFlight<EpochReadAttempt>,
        read: SealedEpochRead,
        attempt: usize,
    ) {
        follow_news(&mut self.news, &mut self.leader);
        let replica = self.leader.target();
        self.line.set_delay(self.delays.get(&replica).copied());
        let send_at = self.line.send_at(Instant::now());
        let answer_delay = self.line.answer_delay();
        let mut client = client_of(&mut self.clients, replica).clone();
        calls.start(send_at, answer_delay, async move {
            let call = client.read_sealed_epoch(read.request);
            let outcome =
                tokio::time::timeout(Duration::from_micros(COORDINATOR_CALL_TIMEOUT_US), call)
                    .await
                    .map(|answered| answered.map(tonic::Response::into_inner));
            EpochReadAttempt {
                read,
                attempt,
                replica,
                outcome,
            }
        });
    }

    /// Takes an attempt's outcome: the answer goes to the node loop; a refusal or a failure
    /// moves the leader guess and the read goes again, until the attempts run out and the
    /// last error goes to the node loop.
    fn settle(&mut self, calls: &mut CallsInFlight<EpochReadAttempt>, attempted: EpochReadAttempt) {
        let EpochReadAttempt {
            read,
            attempt,
            replica,
            outcome,
        } = attempted;
        let error = match outcome {
            Ok(Ok(reply)) => match &reply.not_leader {
                Some(not_leader) => {
                    // The attempts are bounded and the barriers behind the read are asked
                    // again: no wait before the next replica.
                    let _ = self
                        .leader
                        .handle_not_leader(replica, not_leader.leader_hint());
                    format!("coordinator replica {replica} does not lead")
                }
                None => {
                    self.leader.handle_success(replica);
                    // A full loop queue drops the answer: the barriers time out and are asked
                    // again.
                    let _ = self.events.try_send(NodeEvent::SealedEpochRead {
                        read_id: read.read_id,
                        reply: Ok(reply),
                    });
                    return;
                }
            },
            Ok(Err(status)) => {
                self.leader.handle_failure(replica);
                format!(
                    "coordinator replica {replica} answered {:?}: {}",
                    status.code(),
                    status.message()
                )
            }
            Err(_) => {
                self.leader.handle_failure(replica);
                format!(
                    "coordinator replica {replica} did not answer within \
                     {COORDINATOR_CALL_TIMEOUT_US} us"
                )
            }
        };
        if attempt < COORDINATOR_ATTEMPTS_MAX {
            self.start(calls, read, attempt + 1);
        } else {
            let _ = self.events.try_send(NodeEvent::SealedEpochRead {
                read_id: read.read_id,
                reply: Err(error),
            });
        }
    }
}

/// The task that reads released epochs (and, a second one, checkpoints) from other regions'
/// nodes.
#[derive(Clone)]
struct RegionEpochsReader {
    regions: Vec<(String, Vec<PeerAddress>)>,
    security: Security,
    delays: HashMap<String, OneWayDelay>,
    line: DelayLine,
    events: SyncSender<NodeEvent>,
}

impl RegionEpochsReader {
    async fn run(mut self, mut queue: mpsc::Receiver<EpochsRead>) {
        while let Some(read) = queue.recv().await {
            let read_id = read.read_id;
            let reply = self
                .call(
                    read.region.as_str(),
                    read.read_id,
                    |mut client| async move { client.read_epochs(read.request).await },
                )
                .await;
            // A full loop queue drops the answer: the leader asks again after its resend
            // interval.
            let _ = self
                .events
                .try_send(NodeEvent::EpochsRead { read_id, reply });
        }
    }

    /// Runs each checkpoint read on its own: one slow region does not hold the others back.
    async fn run_checkpoint_reads(self, mut queue: mpsc::Receiver<CheckpointRead>) {
        while let Some(read) = queue.recv().await {
            let mut reader = self.clone();
            tokio::spawn(async move {
                let read_id = read.read_id;
                let reply = reader
                    .call(
                        read.region.as_str(),
                        read.read_id,
                        |mut client| async move { client.read_checkpoint(read.request).await },
                    )
                    .await;
                // A full loop queue drops the answer: the adoption asks the next region after
                // its timeout.
                let _ = reader
                    .events
                    .try_send(NodeEvent::CheckpointRead { read_id, reply });
            });
        }
    }

    /// Calls a node of `region` (the one `read_id` picks) with `call`, over the emulated WAN
    /// delay both ways.
    async fn call<Reply, Call, Answer>(
        &mut self,
        region: &str,
        read_id: u64,
        call: Call,
    ) -> Result<Reply, String>
    where
        Call: FnOnce(RegionEpochsClient<VersionedChannel>) -> Answer,
        Answer: std::future::Future<Output = Result<tonic::Response<Reply>, tonic::Status>>,
    {
        let nodes = self
            .regions
            .iter()
            .find(|(name, _)| name == region)
            .map(|(_, nodes)| nodes.as_slice())
            .unwrap_or_default();
        if nodes.is_empty() {
            return Err(format!("region {region} is not in the topology"));
        }
        let node = &nodes[(read_id as usize) % nodes.len()];
        let endpoint = Endpoint::from_shared(format!("http://{}", node.address))
            .map_err(|error| format!("node {} of region {region}: {error}", node.node_id))?;
        let client: RegionEpochsClient<VersionedChannel> = region_epochs_client(
            self.security.connect_lazy(
                endpoint
                    .connect_timeout(Duration::from_micros(COORDINATOR_CONNECT_TIMEOUT_US))
                    .tcp_nodelay(true),
            ),
        );
        self.line.set_delay(self.delays.get(region).copied());
        dsss_raft_group::transport::wait_until(self.line.send_at(Instant::now())).await;
        match tokio::time::timeout(
            Duration::from_micros(COORDINATOR_CALL_TIMEOUT_US),
            call(client),
        )
        .await
        {
            Ok(Ok(reply)) => {
                // The answer travels back over the same emulated link.
                dsss_raft_group::transport::wait_until(self.line.send_at(Instant::now())).await;
                Ok(reply.into_inner())
            }
            Ok(Err(status)) => Err(format!(
                "node {} of region {region} answered {:?}: {}",
                node.node_id,
                status.code(),
                status.message()
            )),
            Err(_) => Err(format!(
                "node {} of region {region} did not answer within {COORDINATOR_CALL_TIMEOUT_US} us",
                node.node_id
            )),
        }
    }
}

struct CoordinatorTask {
    clients: Vec<(u64, Client)>,
    leader: LeaderTracker,
    news: watch::Receiver<(u64, u64)>,
    delays: HashMap<u64, OneWayDelay>,
    line: DelayLine,
    events: SyncSender<NodeEvent>,
    failing: bool,
}

/// One batch on its way through its attempts.
struct Submission {
    batch: proto::RegionBatch,
    /// The attempts made, this one included.
    attempt: usize,
    /// A `not_leader` answer that no later attempt made up for: the node learns that the
    /// batch was not taken and resends soon instead of after its backoff, as the simulator's
    /// region nodes do.
    refusal: Option<proto::RegionBatchAck>,
}

/// An attempt of a submission, answered or timed out.
struct Attempted {
    submission: Submission,
    replica: u64,
    outcome: Result<Result<proto::RegionBatchAck, tonic::Status>, tokio::time::error::Elapsed>,
}

impl CoordinatorTask {
    /// Ships the queued batches in order, up to [`COORDINATOR_BATCHES_IN_FLIGHT_MAX`] calls at
    /// once, until the queue closes.
    async fn run(mut self, mut queue: mpsc::Receiver<(Instant, proto::RegionBatch)>) {
        let mut calls = CallsInFlight::new(COORDINATOR_BATCHES_IN_FLIGHT_MAX);
        loop {
            tokio::select! {
                Some(attempted) = calls.next(), if !calls.is_empty() => {
                    self.settle(&mut calls, attempted);
                }
                queued = queue.recv(), if calls.has_room() => match queued {
                    Some((enqueued_at, batch)) => {
                        let submission = Submission {
                            batch,
                            attempt: 1,
                            refusal: None,
                        };
                        self.start(&mut calls, enqueued_at, submission);
                    }
                    None => return,
                },
            }
        }
    }

    /// Starts an attempt on the leader guess, over its link.
    fn start(
        &mut self,
        calls: &mut CallsInFlight<Attempted>,
        enqueued_at: Instant,
        submission: Submission,
    ) {
        follow_news(&mut self.news, &mut self.leader);
        let replica = self.leader.target();
        self.line.set_delay(self.delays.get(&replica).copied());
        let send_at = self.line.send_at(enqueued_at);
        let answer_delay = self.line.answer_delay();
        let mut client = client_of(&mut self.clients, replica).clone();
        calls.start(send_at, answer_delay, async move {
            let call = client.submit_batch(submission.batch.clone());
            let outcome =
                tokio::time::timeout(Duration::from_micros(COORDINATOR_CALL_TIMEOUT_US), call)
                    .await
                    .map(|answered| answered.map(tonic::Response::into_inner));
            Attempted {
                submission,
                replica,
                outcome,
            }
        });
    }

    /// Takes an attempt's outcome: the acknowledgement goes to the node loop, a refusal or a
    /// failure moves the leader guess and the batch goes again (the next attempt goes to
    /// another replica, over its own link), until the attempts run out.
    fn settle(&mut self, calls: &mut CallsInFlight<Attempted>, attempted: Attempted) {
        let Attempted {
            mut submission,
            replica,
            outcome,
        } = attempted;
        match outcome {
            Ok(Ok(ack)) => {
                if let Some(not_leader) = &ack.not_leader {
                    // The attempts are bounded and the leader resends what stays
                    // unacknowledged: no wait before the next replica.
                    let _ = self
                        .leader
                        .handle_not_leader(replica, not_leader.leader_hint());
                    submission.refusal = Some(ack);
                } else {
                    if self.failing {
                        tracing::info!(replica, "coordinator reachable again");
                    }
                    self.failing = false;
                    // An answer of a deposed leader's term (it answered before it learned)
                    // moves nothing; the node loop publishes the term for the other tasks.
                    let (leader, term) = ack.leader_of_term(replica);
                    self.leader.handle_leader(leader, term);
                    // A full loop queue drops the acknowledgement: the next answer repeats it.
                    let _ = self.events.try_send(NodeEvent::BatchAck(ack));
                    return;
                }
            }
            Ok(Err(status)) => {
                let refused = matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition | Code::ResourceExhausted
                );
                if !self.failing || refused {
                    tracing::warn!(replica, code = ?status.code(), message = status.message(), "batch submission failed");
                }
                if refused {
                    // The leader answered and refused it: another replica would not take it
                    // either. The batch is resent later.
                    return;
                }
                self.failing = true;
                self.leader.handle_failure(replica);
            }
            Err(_) => {
                if !self.failing {
                    tracing::warn!(
                        replica,
                        "batch submission timed out; trying the next replica"
                    );
                }
                self.failing = true;
                self.leader.handle_failure(replica);
            }
        }
        if submission.attempt < COORDINATOR_ATTEMPTS_MAX {
            submission.attempt += 1;
            self.start(calls, Instant::now(), submission);
        } else if let Some(refusal) = submission.refusal {
            // A full loop queue drops it: the resend then waits for the backoff.
            let _ = self.events.try_send(NodeEvent::BatchAck(refusal));
        }
    }
}

/// The leader tracker over the replicas of `clients`, whose first guess is `preferred` (the
/// first replica when `preferred` is none of them).
fn leader_tracker(clients: &[(u64, Client)], preferred: u64) -> LeaderTracker {
    let mut leader = LeaderTracker::new(clients.iter().map(|(node_id, _)| *node_id).collect(), 0);
    leader.prefer(preferred);
    leader
}

/// The client of `replica`, one of the tracker's members (the tracker is built over `clients`).
fn client_of(clients: &mut [(u64, Client)], replica: u64) -> &mut Client {
    let index = clients
        .iter()
        .position(|(node_id, _)| *node_id == replica)
        .expect("the leader tracker names only replicas with a client");
    &mut clients[index].1
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::mpsc::{Receiver, sync_channel};

    use dsss_raft_group::transport::OpenCallsGate;
    use dsss_wire::RegionId;

    use super::*;

    /// Settings whose coordinator replica and other region listen nowhere (a port that was
    /// bound and let go): every call fails at once with "connection refused".
    fn settings_of_unreachable_peers() -> GlobalSettings {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        let address = listener.local_addr().expect("an address").to_string();
        drop(listener);
        let peer = PeerAddress {
            node_id: 7,
            address,
        };
        GlobalSettings {
            coordinator_replicas: vec![peer.clone()],
            preferred_leader: 7,
            other_regions: vec![("far".to_owned(), vec![peer])],
            ..GlobalSettings::none()
        }
    }

    /// The read ids answered on `events`, with their errors, once `expected` answers came.
    fn answers(events: &Receiver<NodeEvent>, expected: usize) -> BTreeMap<u64, String> {
        let mut answers = BTreeMap::new();
        while answers.len() < expected {
            let event = events
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("only {} of {expected} reads answered", answers.len()));
            let (read_id, error) = match event {
                NodeEvent::CheckpointRead { read_id, reply } => {
                    (read_id, reply.expect_err("nothing listens"))
                }
                NodeEvent::EpochsRead { read_id, reply } => {
                    (read_id, reply.expect_err("nothing listens"))
                }
                _ => continue,
            };
            assert!(
                answers.insert(read_id, error).is_none(),
                "read {read_id} answered twice"
            );
        }
        answers
    }

    /// Reads queued faster than their task takes them: those past the bound are answered at
    /// once with an error that names it, and every read is answered exactly once.
    #[test]
    fn reads_past_the_queue_bounds_are_answered_at_once_and_none_is_lost() {
        // A runtime nobody drives yet: the tasks take nothing until `block_on` below.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        // Lazy channels are made inside a runtime's context, as the node's start does.
        let _context = runtime.enter();
        let (events, receiver) = sync_channel(1_024);
        let sender = CoordinatorSender::start(
            runtime.handle(),
            1,
            &settings_of_unreachable_peers(),
            events,
        )
        .expect("a replica is named");
        let region = RegionId::new("far").expect("a region id");
        let checkpoint_reads = CHECKPOINT_READS_QUEUED_MAX as u64 + 3;
        for read_id in 0..checkpoint_reads {
            sender.read_checkpoint(CheckpointRead {
                read_id,
                region: region.clone(),
                request: proto::ReadCheckpointRequest::default(),
            });
        }
        let epochs_reads = EPOCHS_READS_QUEUED_MAX as u64 + 2;
        for read_id in 1_000..1_000 + epochs_reads {
            sender.read_epochs(EpochsRead {
                read_id,
                region: region.clone(),
                request: proto::ReadEpochsRequest::default(),
            });
        }
        // The reads past each bound are answered before any task ran.
        let refused = answers(&receiver, 5);
        let expected: Vec<u64> = (CHECKPOINT_READS_QUEUED_MAX as u64..checkpoint_reads)
            .chain(1_000 + EPOCHS_READS_QUEUED_MAX as u64..1_000 + epochs_reads)
            .collect();
        assert_eq!(refused.keys().copied().collect::<Vec<_>>(), expected);
        for (read_id, error) in &refused {
            let bound = if *read_id < 1_000 {
                "CHECKPOINT_READS_QUEUED_MAX"
            } else {
                "EPOCHS_READS_QUEUED_MAX"
            };
            assert!(error.contains(bound), "read {read_id}: {error}");
        }
        // The queued ones are each answered once the tasks run (here with the failed call).
        let queued = CHECKPOINT_READS_QUEUED_MAX + EPOCHS_READS_QUEUED_MAX;
        let answered = runtime.block_on(async move {
            tokio::task::spawn_blocking(move || answers(&receiver, queued))
                .await
                .expect("the collector ends")
        });
        let expected: Vec<u64> = (0..CHECKPOINT_READS_QUEUED_MAX as u64)
            .chain(1_000..1_000 + EPOCHS_READS_QUEUED_MAX as u64)
            .collect();
        assert_eq!(answered.keys().copied().collect::<Vec<_>>(), expected);
        for (read_id, error) in &answered {
            assert!(error.contains("region far"), "read {read_id}: {error}");
        }
        drop(sender);
    }

    /// How a coordinator replica of the tests answers.
    enum Answers {
        /// It does not lead and knows no leader (an election is in progress): every batch is
        /// refused as not leader.
        NotLeader,
        /// It leads and passes every call through a gate that holds the answers until enough
        /// calls are open at once (or a second passed, half the client's call timeout, so
        /// that no attempt is repeated), as a coordinator across a WAN whose answers are still
        /// on their way back while the region sends more.
        Held(std::sync::Arc<OpenCallsGate>),
        /// It went silent (a paused process): it never answers.
        Never,
    }

    /// A coordinator replica of the tests: it answers batches and sealed-epoch reads as
    /// `answers` says and counts the calls it gets.
    struct TestReplica {
        answers: Answers,
        calls: std::sync::Arc<std::sync::atomic::AtomicU64>,
    }

    impl TestReplica {
        /// Serves a replica answering as `answers` on a loopback port: its address and its
        /// count of calls.
        async fn start(
            node_id: u64,
            answers: Answers,
        ) -> (PeerAddress, std::sync::Arc<std::sync::atomic::AtomicU64>) {
            let calls = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            let replica = TestReplica {
                answers,
                calls: std::sync::Arc::clone(&calls),
            };
            (serve_replica(node_id, replica).await, calls)
        }

        /// Serves a leading replica whose gate holds the answers until `together` calls are
        /// open ([`Answers::Held`]): its address and its gate.
        async fn holding(
            node_id: u64,
            together: usize,
        ) -> (PeerAddress, std::sync::Arc<OpenCallsGate>) {
            let gate = std::sync::Arc::new(OpenCallsGate::new(together, Duration::from_secs(1)));
            let (address, _) =
                TestReplica::start(node_id, Answers::Held(std::sync::Arc::clone(&gate))).await;
            (address, gate)
        }

        /// Counts the call and waits as the replica's answers say; false when it refuses.
        async fn take_call(&self) -> bool {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            match &self.answers {
                Answers::NotLeader => false,
                Answers::Held(gate) => {
                    gate.pass().await;
                    true
                }
                Answers::Never => std::future::pending().await,
            }
        }
    }

    #[tonic::async_trait]
    impl proto::coordinator_server::Coordinator for TestReplica {
        async fn submit_batch(
            &self,
            request: tonic::Request<proto::RegionBatch>,
        ) -> Result<tonic::Response<proto::RegionBatchAck>, tonic::Status> {
            if !self.take_call().await {
                return Ok(tonic::Response::new(proto::RegionBatchAck {
                    not_leader: Some(proto::NotLeader::default()),
                    ..proto::RegionBatchAck::default()
                }));
            }
            let batch = request.into_inner();
            Ok(tonic::Response::new(proto::RegionBatchAck {
                region: batch.region,
                acknowledged_through_batch_number: batch.batch_number,
                member: true,
                ..proto::RegionBatchAck::default()
            }))
        }

        async fn read_sealed_epoch(
            &self,
            _: tonic::Request<proto::ReadSealedEpochRequest>,
        ) -> Result<tonic::Response<proto::ReadSealedEpochReply>, tonic::Status> {
            if !self.take_call().await {
                return Err(tonic::Status::unimplemented("not in this test"));
            }
            Ok(tonic::Response::new(proto::ReadSealedEpochReply {
                epoch_number: 1,
                ..proto::ReadSealedEpochReply::default()
            }))
        }

        async fn status(
            &self,
            _: tonic::Request<proto::CoordinatorStatusRequest>,
        ) -> Result<tonic::Response<proto::CoordinatorStatusReply>, tonic::Status> {
            Err(tonic::Status::unimplemented("not in this test"))
        }
    }

    /// Serves `replica` as coordinator replica `node_id` on a loopback port.
    async fn serve_replica(
        node_id: u64,
        replica: impl proto::coordinator_server::Coordinator,
    ) -> PeerAddress {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binds");
        let address = listener.local_addr().expect("an address").to_string();
        let limits = dsss_wire::limits::ServerLimits::default();
        let router = dsss_wire::tls::server_builder(&limits)
            .add_service(dsss_wire::grpc::coordinator_server(replica));
        tokio::spawn(async move {
            let _ = Security::Plaintext
                .serve(router, listener, &limits, std::future::pending())
                .await;
        });
        PeerAddress { node_id, address }
    }

    /// Batches queued while earlier ones wait for their answers are not held back: the task
    /// keeps up to [`COORDINATOR_BATCHES_IN_FLIGHT_MAX`] calls open together, never more (a
    /// WAN round trip longer than an epoch interval would otherwise let one batch through per
    /// round trip, and the region's unsent batches would grow without end), and every
    /// acknowledgement reaches the node loop, those queued past the bound included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_shipped_without_waiting_for_earlier_answers_up_to_the_bound() {
        const BATCHES: usize = COORDINATOR_BATCHES_IN_FLIGHT_MAX + 8;
        let (replica, gate) = TestReplica::holding(7, COORDINATOR_BATCHES_IN_FLIGHT_MAX).await;
        let settings = GlobalSettings {
            coordinator_replicas: vec![replica],
            preferred_leader: 7,
            ..GlobalSettings::none()
        };
        let (events, received) = sync_channel(BATCHES);
        let sender =
            CoordinatorSender::start(&tokio::runtime::Handle::current(), 1, &settings, events)
                .expect("a replica is named");
        for batch_number in 1..=BATCHES as u64 {
            sender.send(proto::RegionBatch {
                region: "near".to_owned(),
                batch_number,
                ..proto::RegionBatch::default()
            });
        }
        let acknowledged = tokio::task::spawn_blocking(move || {
            let mut acknowledged = std::collections::BTreeSet::new();
            while acknowledged.len() < BATCHES {
                match received.recv_timeout(Duration::from_secs(60)) {
                    Ok(NodeEvent::BatchAck(ack)) => {
                        acknowledged.insert(ack.acknowledged_through_batch_number);
                    }
                    Ok(_) => {}
                    Err(error) => {
                        panic!("{} of {BATCHES} acknowledged: {error}", acknowledged.len())
                    }
                }
            }
            acknowledged
        })
        .await
        .expect("the receiver ends");
        assert_eq!(acknowledged, (1..=BATCHES as u64).collect());
        assert_eq!(
            gate.most_open(),
            COORDINATOR_BATCHES_IN_FLIGHT_MAX,
            "as many batches as the bound allows were in flight at once, and no more"
        );
        drop(sender);
    }

    /// The leader the region calls goes silent without failing its calls; its successor's
    /// acknowledgement (sent unasked as it takes over, and handed to the sender by the node
    /// loop) names it and its term. The next batch and the next sealed epoch read go to the
    /// successor at once, not after the silent leader's calls time out (2 s): the silent one
    /// gets the one batch it was sent before the news and nothing more.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn calls_follow_the_leader_of_the_newest_term_away_from_a_silent_one() {
        let (silent, silent_calls) = TestReplica::start(7, Answers::Never).await;
        let (successor, _gate) = TestReplica::holding(8, 1).await;
        let settings = GlobalSettings {
            coordinator_replicas: vec![silent, successor],
            preferred_leader: 7,
            ..GlobalSettings::none()
        };
        let (events, received) = sync_channel(64);
        let sender =
            CoordinatorSender::start(&tokio::runtime::Handle::current(), 1, &settings, events)
                .expect("replicas are named");
        let batch = |batch_number| proto::RegionBatch {
            region: "near".to_owned(),
            batch_number,
            ..proto::RegionBatch::default()
        };
        sender.send(batch(1));
        while silent_calls.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        sender.heard_acknowledgement(&proto::RegionBatchAck {
            region: "near".to_owned(),
            leader_node_id: 8,
            leader_term: 6,
            ..proto::RegionBatchAck::default()
        });
        sender.send(batch(2));
        sender.read_sealed_epoch(SealedEpochRead {
            read_id: 1,
            request: proto::ReadSealedEpochRequest::default(),
        });
        let (acknowledged, read) = tokio::task::spawn_blocking(move || {
            let (mut acknowledged, mut read) = (None, None);
            while acknowledged.is_none() || read.is_none() {
                match received.recv_timeout(Duration::from_secs(60)) {
                    Ok(NodeEvent::BatchAck(ack)) => {
                        acknowledged = Some(ack.acknowledged_through_batch_number)
                    }
                    Ok(NodeEvent::SealedEpochRead { read_id, reply }) => {
                        read = Some((read_id, reply.map(|reply| reply.epoch_number)))
                    }
                    Ok(_) => {}
                    Err(error) => panic!("no answer: {error}"),
                }
            }
            (acknowledged, read)
        })
        .await
        .expect("the receiver ends");
        assert_eq!(acknowledged, Some(2), "batch 2 was answered first");
        assert_eq!(read, Some((1, Ok(1))));
        assert_eq!(
            silent_calls.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "after the news nothing more went to the silent replica"
        );
        drop(sender);
    }

    /// A sealed epoch read asked while earlier ones wait for their answers gets a call of its
    /// own at once, up to [`SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX`] open together and never more: a
    /// read past the bound waits for a free call. Every read is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sealed_epoch_reads_do_not_wait_for_earlier_answers_up_to_the_bound() {
        // Never reached: the replica holds every call for its second.
        let (replica, gate) =
            TestReplica::holding(7, SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX + 1).await;
        let settings = GlobalSettings {
            coordinator_replicas: vec![replica],
            preferred_leader: 7,
            ..GlobalSettings::none()
        };
        let (events, received) = sync_channel(64);
        let sender =
            CoordinatorSender::start(&tokio::runtime::Handle::current(), 1, &settings, events)
                .expect("a replica is named");
        let reads = SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX as u64 + 1;
        for read_id in 1..=reads {
            sender.read_sealed_epoch(SealedEpochRead {
                read_id,
                request: proto::ReadSealedEpochRequest::default(),
            });
            // Each read is taken alone (reads queued together share a call): wait until its
            // call is open, up to the bound.
            // A reader that waited for each answer before the next call would never open a
            // second one: the wait ends after a minute with a failure instead of a hang.
            let open = (read_id as usize).min(SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX);
            let waiting_since = Instant::now();
            while gate.most_open() < open {
                assert!(
                    waiting_since.elapsed() < Duration::from_secs(60),
                    "read {read_id} found {} calls open, not {open}: the reader waits for \
                     earlier answers",
                    gate.most_open()
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        let answered = tokio::task::spawn_blocking(move || {
            let mut answered = std::collections::BTreeSet::new();
            while answered.len() < reads as usize {
                match received.recv_timeout(Duration::from_secs(60)) {
                    Ok(NodeEvent::SealedEpochRead { read_id, reply }) => {
                        assert_eq!(reply.expect("the replica answers").epoch_number, 1);
                        answered.insert(read_id);
                    }
                    Ok(_) => {}
                    Err(error) => panic!("{} of {reads} answered: {error}", answered.len()),
                }
            }
            answered
        })
        .await
        .expect("the receiver ends");
        assert_eq!(answered, (1..=reads).collect());
        assert_eq!(
            gate.most_open(),
            SEALED_EPOCH_READ_CALLS_IN_FLIGHT_MAX,
            "the read past the bound waited for a free call"
        );
        drop(sender);
    }

    /// Every coordinator replica answers that it does not lead: once the attempts ran out,
    /// the node loop is told of the refusal, so that the region leader resends the batch one
    /// resend interval after its last resend instead of after its backoff, as in the
    /// simulator.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_every_replica_refused_as_not_leader_is_reported_to_the_loop() {
        let (first, first_submitted) = TestReplica::start(7, Answers::NotLeader).await;
        let (second, second_submitted) = TestReplica::start(8, Answers::NotLeader).await;
        let settings = GlobalSettings {
            coordinator_replicas: vec![first, second],
            preferred_leader: 7,
            ..GlobalSettings::none()
        };
        let (events, received) = sync_channel(16);
        let sender =
            CoordinatorSender::start(&tokio::runtime::Handle::current(), 1, &settings, events)
                .expect("replicas are named");
        sender.send(proto::RegionBatch {
            region: "near".to_owned(),
            batch_number: 1,
            ..proto::RegionBatch::default()
        });
        let reported =
            tokio::task::spawn_blocking(move || received.recv_timeout(Duration::from_secs(60)))
                .await
                .expect("the receiver ends");
        match reported {
            Ok(NodeEvent::BatchAck(ack)) => assert!(ack.not_leader.is_some(), "{ack:?}"),
            Ok(_) => panic!("the sender fed back something other than a batch acknowledgement"),
            Err(error) => panic!("the refusal never reached the loop: {error}"),
        }
        let attempts = first_submitted.load(std::sync::atomic::Ordering::SeqCst)
            + second_submitted.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(attempts, COORDINATOR_ATTEMPTS_MAX as u64);
        drop(sender);
    }
}
