//! The peer transport: raft messages to the other members of the region over the
//! `RegionPeer` gRPC service.
//!
//! Each peer has one task and one bounded queue. The node loop puts messages in the queue
//! without waiting ([`PeerSenders::send`]); a full queue drops the message, which is safe
//! because raft retransmits whatever is not acknowledged. The task takes every queued message
//! (up to [`PEER_BATCH_MESSAGES_MAX`] and [`PEER_BATCH_BYTES_MAX`]) into one `Deliver` call,
//! so under load one call carries many messages. A failed call drops its batch and whatever
//! queued meanwhile (stale by the time the peer is back), then waits with exponential backoff
//! before the next call; tonic reconnects the channel on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dsss_raft_group::encode_message;
use dsss_raft_group::raft::eraftpb::Message;
use dsss_wire::grpc::region_peer_client;
use dsss_wire::proto::{self, RaftBatch};
use dsss_wire::{PhysicalClock, SystemClock};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;

/// The most raft messages queued for one peer; beyond, new messages are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4_096;

/// The most raft messages in one `Deliver` call.
pub const PEER_BATCH_MESSAGES_MAX: usize = 1_024;

/// The most bytes of encoded raft messages in one `Deliver` call; a larger message (a
/// snapshot) travels alone. Well below the gRPC message limit, so that a batch of appends
/// never comes near it.
pub const PEER_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The first wait after a failed call, in microseconds.
pub const PEER_BACKOFF_US_MIN: u64 = 20_000;

/// The longest wait between two calls to a peer that keeps failing, in microseconds.
pub const PEER_BACKOFF_US_MAX: u64 = 1_000_000;

/// How long one `Deliver` call may take, in microseconds, before the batch is given up.
pub const PEER_CALL_TIMEOUT_US: u64 = 5_000_000;

/// How long connecting to a peer may take, in microseconds.
pub const PEER_CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most peers one node keeps a transport for: the most members a region may have.
pub const PEERS_MAX: usize = 9;

/// The queues of the peer tasks, by node id, as the node loop sees them.
#[derive(Clone, Debug)]
pub struct PeerSenders {
    node_id: u64,
    queues: HashMap<u64, mpsc::Sender<Message>>,
    addresses: HashMap<u64, String>,
    dropped: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
}

impl PeerSenders {
    /// Starts a transport to `peer_id` at `address`, replacing one to another address. True
    /// when something changed; false when the peer was already known at that address, or is
    /// this node, or [`PEERS_MAX`] peers are known.
    pub fn add(&mut self, peer_id: u64, address: &str) -> bool {
        if peer_id == self.node_id
            || self.addresses.get(&peer_id).map(String::as_str) == Some(address)
            || (!self.queues.contains_key(&peer_id) && self.queues.len() >= PEERS_MAX)
        {
            return false;
        }
        let (sender, receiver) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        // Replacing the sender ends the old task, which sees its queue close.
        self.queues.insert(peer_id, sender);
        self.addresses.insert(peer_id, address.to_owned());
        self.runtime.spawn(run_peer(
            self.node_id,
            peer_id,
            address.to_owned(),
            receiver,
        ));
        tracing::info!(node_id = self.node_id, peer_id, %address, "raft peer added");
        true
    }

    /// Queues `messages` for their receivers without waiting. A message for a full queue or
    /// for a node without a transport is dropped and counted.
    pub fn send(&self, messages: Vec<Message>) {
        for message in messages {
            let delivered = self
                .queues
                .get(&message.to)
                .is_some_and(|queue| queue.try_send(message).is_ok());
            if !delivered {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Messages dropped since the transport started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Starts one task per peer on the current tokio runtime. The tasks end when the returned
/// senders (and every clone) are dropped.
///
/// # Panics
///
/// When called outside a tokio runtime.
pub fn start_peers(node_id: u64, peers: &[crate::driver::PeerAddress]) -> PeerSenders {
    let mut senders = PeerSenders {
        node_id,
        queues: HashMap::new(),
        addresses: HashMap::new(),
        dropped: Arc::default(),
        runtime: tokio::runtime::Handle::current(),
    };
    for peer in peers {
        senders.add(peer.node_id, &peer.address);
    }
    senders
}

async fn run_peer(
    from_node_id: u64,
    to_node_id: u64,
    address: String,
    mut queue: mpsc::Receiver<Message>,
) {
    let endpoint = match Endpoint::from_shared(format!("http://{address}")) {
        Ok(endpoint) => endpoint
            .connect_timeout(Duration::from_micros(PEER_CONNECT_TIMEOUT_US))
            .tcp_nodelay(true),
        Err(error) => {
            tracing::error!(to_node_id, %address, %error, "invalid peer address; no raft traffic goes there");
            return;
        }
    };
    let mut client = region_peer_client(endpoint.connect_lazy());
    let mut backoff_us = PEER_BACKOFF_US_MIN;
    let mut failing = false;
    // A message taken from the queue that did not fit in the previous batch.
    let mut carried: Option<Vec<u8>> = None;
    loop {
        let first = match carried.take() {
            Some(encoded) => encoded,
            None => match queue.recv().await {
                Some(message) => encode_message(&message),
                None => return,
            },
        };
        let (batch, rest) = collect_batch(from_node_id, to_node_id, first, &mut queue);
        carried = rest;
        let call = client.deliver(batch);
        let outcome = tokio::time::timeout(Duration::from_micros(PEER_CALL_TIMEOUT_US), call).await;
        match outcome {
            Ok(Ok(_)) => {
                if failing {
                    tracing::info!(to_node_id, %address, "peer reachable again");
                }
                failing = false;
                backoff_us = PEER_BACKOFF_US_MIN;
            }
            Ok(Err(status)) => {
                if !failing {
                    tracing::warn!(to_node_id, %address, code = ?status.code(), message = status.message(), "raft messages to peer failed; retrying with backoff");
                }
                failing = true;
                carried = None;
                backoff(&mut queue, &mut backoff_us).await;
            }
            Err(_) => {
                if !failing {
                    tracing::warn!(to_node_id, %address, "raft messages to peer timed out; retrying with backoff");
                }
                failing = true;
                carried = None;
                backoff(&mut queue, &mut backoff_us).await;
            }
        }
    }
}

/// Waits out the backoff, then drops what queued meanwhile: raft will send fresh messages.
async fn backoff(queue: &mut mpsc::Receiver<Message>, backoff_us: &mut u64) {
    tokio::time::sleep(Duration::from_micros(*backoff_us)).await;
    *backoff_us = (*backoff_us * 2).min(PEER_BACKOFF_US_MAX);
    while queue.try_recv().is_ok() {}
}

/// Builds one batch from `first` and the queued messages, within the batch bounds. Returns
/// the message that did not fit, if one was taken from the queue.
fn collect_batch(
    from_node_id: u64,
    to_node_id: u64,
    first: Vec<u8>,
    queue: &mut mpsc::Receiver<Message>,
) -> (RaftBatch, Option<Vec<u8>>) {
    let mut size_bytes = first.len();
    let mut messages = vec![first];
    let mut rest = None;
    while messages.len() < PEER_BATCH_MESSAGES_MAX {
        let Ok(next) = queue.try_recv() else {
            break;
        };
        let encoded = encode_message(&next);
        if size_bytes + encoded.len() > PEER_BATCH_BYTES_MAX {
            rest = Some(encoded);
            break;
        }
        size_bytes += encoded.len();
        messages.push(encoded);
    }
    let batch = RaftBatch {
        from_node_id,
        to_node_id,
        sender_time: Some(proto::Timestamp {
            physical_us: SystemClock.now_us(),
            logical: 0,
        }),
        messages,
    };
    (batch, rest)
}
