//! The senders of sealed epochs: one task per region with a bounded queue, which delivers
//! each part in order through `RegionEpochs.Deliver` on the region's leader guess and feeds
//! every answer back to the coordinator as an epoch acknowledgement. The same queue carries
//! the acknowledgements the coordinator sends unasked (`RegionEpochs.Acknowledge`), tried
//! once on the leader guess: a lost one is made up by the region's next idle close.
//!
//! Each region's [`LeaderTracker`] names the node a part goes to: the node that last submitted
//! a batch for the region (only leaders ship batches); a NotLeader answer moves it to the
//! hinted leader, an error to the region's next node. A part that finds no leader within
//! [`REGION_DELIVERY_ATTEMPTS_MAX`] attempts is dropped: the coordinator resends from the
//! region's acknowledged point.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dsss_raft_group::transport::DelayLine;
use dsss_wire::grpc::{VersionedChannel, region_epochs_client};
use dsss_wire::proto::region_epochs_client::RegionEpochsClient;
use dsss_wire::tls::Security;
use dsss_wire::{LeaderTracker, RegionId};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use super::config::NodeAddress;
use super::node_loop::CoordinatorEvent;
use crate::RegionMessage;

/// The most messages (epoch parts) queued for one region; beyond, new ones are dropped (parts
/// are resent later).
pub const REGION_QUEUE_PARTS_MAX: usize = 1_024;

/// The most nodes one delivery tries before the part is dropped.
pub const REGION_DELIVERY_ATTEMPTS_MAX: usize = 4;

/// How long one delivery may take, in microseconds.
pub const REGION_CALL_TIMEOUT_US: u64 = 2_000_000;

/// How long connecting to a region node may take, in microseconds.
pub const REGION_CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most nodes a region may have, as in topology files.
pub const REGION_NODES_MAX: usize = 9;

/// The loop's handle on one region's sender task.
#[derive(Clone, Debug)]
pub(crate) struct RegionSender {
    queue: mpsc::Sender<(Instant, RegionMessage)>,
    /// Shared with the task: the loop learns leaders from batches, the task from answers.
    /// `None` when no node of the region has a usable address.
    leader: Option<Arc<Mutex<LeaderTracker>>>,
}

impl RegionSender {
    /// Starts the task of `region`, whose nodes are `nodes`, on the current runtime.
    pub(crate) fn start(
        region: RegionId,
        nodes: &[NodeAddress],
        line: DelayLine,
        security: &Security,
        events: SyncSender<CoordinatorEvent>,
    ) -> RegionSender {
        let (queue, receiver) = mpsc::channel(REGION_QUEUE_PARTS_MAX);
        let nodes: Vec<NodeAddress> = nodes.iter().take(REGION_NODES_MAX).cloned().collect();
        let mut clients = Vec::with_capacity(nodes.len());
        for node in &nodes {
            match Endpoint::from_shared(format!("http://{}", node.address)) {
                Ok(endpoint) => clients.push((
                    node.node_id,
                    region_epochs_client(
                        security.connect_lazy(
                            endpoint
                                .connect_timeout(Duration::from_micros(REGION_CONNECT_TIMEOUT_US))
                                .tcp_nodelay(true),
                        ),
                    ),
                )),
                Err(error) => {
                    tracing::error!(%region, node_id = node.node_id, address = %node.address, %error, "invalid region node address; no epochs go there");
                }
            }
        }
        let leader = (!clients.is_empty()).then(|| {
            let node_ids = clients.iter().map(|(node_id, _)| *node_id).collect();
            Arc::new(Mutex::new(LeaderTracker::new(node_ids, 0)))
        });
        if let Some(leader) = &leader {
            tokio::spawn(run_region_sender(
                region,
                clients,
                leader.clone(),
                receiver,
                line,
                events,
            ));
        }
        RegionSender { queue, leader }
    }

    /// Queues a message without waiting; a full queue drops it (the coordinator resends
    /// parts, and the region's next idle close brings what an acknowledgement said).
    pub(crate) fn send(&self, message: RegionMessage) {
        let _ = self.queue.try_send((Instant::now(), message));
    }

    /// Sends the next parts to `node_id`, when it is a node of the region.
    pub(crate) fn guess_leader(&self, node_id: u64) {
        if let Some(leader) = &self.leader {
            lock(leader).prefer(node_id);
        }
    }
}

type Client = RegionEpochsClient<VersionedChannel>;

/// The tracker, also after a panic elsewhere while it was held: its state is always whole.
fn lock(leader: &Mutex<LeaderTracker>) -> std::sync::MutexGuard<'_, LeaderTracker> {
    leader.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn run_region_sender(
    region: RegionId,
    mut clients: Vec<(u64, Client)>,
    leader: Arc<Mutex<LeaderTracker>>,
    mut queue: mpsc::Receiver<(Instant, RegionMessage)>,
    mut line: DelayLine,
    events: SyncSender<CoordinatorEvent>,
) {
    let mut failing = false;
    while let Some((enqueued_at, message)) = queue.recv().await {
        dsss_raft_group::transport::wait_until(line.send_at(enqueued_at)).await;
        let epoch = match message {
            RegionMessage::Epoch(epoch) => epoch,
            RegionMessage::BatchAck(ack) => {
                let node_id = lock(&leader).target();
                let index = clients
                    .iter()
                    .position(|(id, _)| *id == node_id)
                    .expect("the leader tracker names only nodes with a client");
                let call = clients[index].1.acknowledge(ack);
                let answered =
                    tokio::time::timeout(Duration::from_micros(REGION_CALL_TIMEOUT_US), call).await;
                if !matches!(answered, Ok(Ok(_))) {
                    tracing::debug!(%region, node_id, "an acknowledgement sent unasked was lost");
                }
                continue;
            }
        };
        for _ in 0..REGION_DELIVERY_ATTEMPTS_MAX {
            let node_id = lock(&leader).target();
            let index = clients
                .iter()
                .position(|(id, _)| *id == node_id)
                .expect("the leader tracker names only nodes with a client");
            let call = clients[index].1.deliver(epoch.clone());
            match tokio::time::timeout(Duration::from_micros(REGION_CALL_TIMEOUT_US), call).await {
                Ok(Ok(reply)) => {
                    let ack = reply.into_inner();
                    match &ack.not_leader {
                        Some(not_leader) => {
                            // The attempts are bounded and the coordinator resends from the
                            // region's acknowledged point: no wait before the next node.
                            let _ =
                                lock(&leader).handle_not_leader(node_id, not_leader.leader_hint());
                        }
                        None => {
                            if failing {
                                tracing::info!(%region, node_id, "region reachable again for sealed epochs");
                            }
                            failing = false;
                            lock(&leader).handle_success(node_id);
                            // A full loop queue drops the answer: the region answers again.
                            let _ = events.try_send(CoordinatorEvent::EpochAck(ack));
                            break;
                        }
                    }
                }
                Ok(Err(status)) => {
                    if !failing {
                        tracing::warn!(%region, node_id, code = ?status.code(), message = status.message(), "sealed epoch delivery failed; trying the region's next node");
                    }
                    failing = true;
                    lock(&leader).handle_failure(node_id);
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(%region, node_id, "sealed epoch delivery timed out; trying the region's next node");
                    }
                    failing = true;
                    lock(&leader).handle_failure(node_id);
                }
            }
        }
    }
}
