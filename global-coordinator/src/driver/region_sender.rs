//! The senders of sealed epochs: one task per region with a bounded queue, which delivers
//! each part in order through `RegionEpochs.Deliver` on the region's leader guess and feeds
//! every answer back to the coordinator as an epoch acknowledgement.
//!
//! The leader guess is the node that last submitted a batch for the region (only leaders
//! ship batches); a NotLeader answer moves it to the hinted leader, an error to the region's
//! next node. A part that finds no leader within [`REGION_DELIVERY_ATTEMPTS_MAX`] attempts is
//! dropped: the coordinator resends from the region's acknowledged point.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use dsss_raft_group::transport::DelayLine;
use dsss_wire::RegionId;
use dsss_wire::grpc::{VersionedChannel, region_epochs_client};
use dsss_wire::proto::{self, region_epochs_client::RegionEpochsClient};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

use super::config::NodeAddress;
use super::node_loop::CoordinatorEvent;

/// The most epoch parts queued for one region; beyond, new parts are dropped (resent later).
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
    queue: mpsc::Sender<(Instant, proto::SealedEpoch)>,
    leader_guess: Arc<AtomicU64>,
    node_ids: Arc<Vec<u64>>,
}

impl RegionSender {
    /// Starts the task of `region`, whose nodes are `nodes`, on the current runtime.
    pub(crate) fn start(
        region: RegionId,
        nodes: &[NodeAddress],
        line: DelayLine,
        events: SyncSender<CoordinatorEvent>,
    ) -> RegionSender {
        let (queue, receiver) = mpsc::channel(REGION_QUEUE_PARTS_MAX);
        let nodes: Vec<NodeAddress> = nodes.iter().take(REGION_NODES_MAX).cloned().collect();
        let first = nodes.first().map_or(0, |node| node.node_id);
        let leader_guess = Arc::new(AtomicU64::new(first));
        let node_ids = Arc::new(nodes.iter().map(|node| node.node_id).collect());
        let mut clients = Vec::with_capacity(nodes.len());
        for node in &nodes {
            match Endpoint::from_shared(format!("http://{}", node.address)) {
                Ok(endpoint) => clients.push((
                    node.node_id,
                    region_epochs_client(
                        endpoint
                            .connect_timeout(Duration::from_micros(REGION_CONNECT_TIMEOUT_US))
                            .tcp_nodelay(true)
                            .connect_lazy(),
                    ),
                )),
                Err(error) => {
                    tracing::error!(%region, node_id = node.node_id, address = %node.address, %error, "invalid region node address; no epochs go there");
                }
            }
        }
        tokio::spawn(run_region_sender(
            region,
            clients,
            leader_guess.clone(),
            receiver,
            line,
            events,
        ));
        RegionSender {
            queue,
            leader_guess,
            node_ids,
        }
    }

    /// Queues a part without waiting; a full queue drops it (the coordinator resends).
    pub(crate) fn send(&self, epoch: proto::SealedEpoch) {
        let _ = self.queue.try_send((Instant::now(), epoch));
    }

    /// Sends the next parts to `node_id`, when it is a node of the region.
    pub(crate) fn guess_leader(&self, node_id: u64) {
        if self.node_ids.contains(&node_id) {
            self.leader_guess.store(node_id, Ordering::Relaxed);
        }
    }
}

type Client = RegionEpochsClient<VersionedChannel>;

async fn run_region_sender(
    region: RegionId,
    mut clients: Vec<(u64, Client)>,
    leader_guess: Arc<AtomicU64>,
    mut queue: mpsc::Receiver<(Instant, proto::SealedEpoch)>,
    mut line: DelayLine,
    events: SyncSender<CoordinatorEvent>,
) {
    if clients.is_empty() {
        return;
    }
    let node_ids: Vec<u64> = clients.iter().map(|(node_id, _)| *node_id).collect();
    let mut failing = false;
    while let Some((enqueued_at, epoch)) = queue.recv().await {
        dsss_raft_group::transport::wait_until(line.send_at(enqueued_at)).await;
        for _ in 0..REGION_DELIVERY_ATTEMPTS_MAX {
            let target = leader_guess.load(Ordering::Relaxed);
            let index = clients
                .iter()
                .position(|(node_id, _)| *node_id == target)
                .unwrap_or(0);
            let (node_id, client) = &mut clients[index];
            let node_id = *node_id;
            let next = next_node(&node_ids, node_id);
            let call = client.deliver(epoch.clone());
            match tokio::time::timeout(Duration::from_micros(REGION_CALL_TIMEOUT_US), call).await {
                Ok(Ok(reply)) => {
                    let ack = reply.into_inner();
                    match &ack.not_leader {
                        Some(not_leader) => {
                            let hinted = not_leader.leader_node_id;
                            let known = clients.iter().any(|(id, _)| *id == hinted);
                            let guess = if known && hinted != node_id {
                                hinted
                            } else {
                                next
                            };
                            leader_guess.store(guess, Ordering::Relaxed);
                        }
                        None => {
                            if failing {
                                tracing::info!(%region, node_id, "region reachable again for sealed epochs");
                            }
                            failing = false;
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
                    leader_guess.store(next, Ordering::Relaxed);
                }
                Err(_) => {
                    if !failing {
                        tracing::warn!(%region, node_id, "sealed epoch delivery timed out; trying the region's next node");
                    }
                    failing = true;
                    leader_guess.store(next, Ordering::Relaxed);
                }
            }
        }
    }
}

/// The node after `current` in `nodes`, wrapping around (the first when `current` is not
/// there).
pub(crate) fn next_node(nodes: &[u64], current: u64) -> u64 {
    match nodes.iter().position(|&node| node == current) {
        Some(index) => nodes[(index + 1) % nodes.len()],
        None => nodes.first().copied().unwrap_or(current),
    }
}
