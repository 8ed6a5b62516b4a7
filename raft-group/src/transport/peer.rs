//! [`PeerSenders`]: raft messages to the other members of a raft group over gRPC.
//!
//! Each peer has one task and one bounded queue. The node loop puts messages in the queue
//! without waiting ([`PeerSenders::send`]); a full queue drops the message, which is safe
//! because raft retransmits whatever is not acknowledged. The task keeps one long-lived gRPC
//! stream open to the peer and sends every queued message (up to [`PEER_BATCH_MESSAGES_MAX`]
//! and [`PEER_BATCH_BYTES_MAX`]) as one batch on it, without waiting for an answer per batch:
//! a raft round costs one HTTP/2 data frame per peer and direction instead of a whole call.
//! The stream holds at most [`PEER_STREAM_BATCHES_MAX`] batches in flight; while it is full,
//! messages gather in the queue and the next batch carries them all. A stream that ends
//! (the peer went away) or takes no batch for [`PEER_CALL_TIMEOUT_US`] is dropped with
//! whatever it held, the task waits with exponential backoff, drops what queued meanwhile
//! (stale by then) and opens a new one; tonic reconnects the channel on its own.
//!
//! The stream is the [`RaftDelivery`] of the group: `RegionPeer.DeliverStream` for a region,
//! `CoordinatorPeer.DeliverStream` for the coordinator. With a [`OneWayDelay`] for a peer,
//! every message waits for its [`DelayLine`] send time first (WAN emulation).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dsss_wire::grpc::{VersionedChannel, coordinator_peer_client, region_peer_client};
use dsss_wire::latency::LatencyHistogram;
use dsss_wire::proto::coordinator_peer_client::CoordinatorPeerClient;
use dsss_wire::proto::region_peer_client::RegionPeerClient;
use dsss_wire::proto::{self, RaftBatch};
use dsss_wire::tls::Security;
use dsss_wire::{PhysicalClock, SystemClock};
use raft::eraftpb::Message;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tonic::transport::{Channel, Endpoint};

use super::delay::{DelayLine, OneWayDelay};
use crate::encode_message;
use crate::peer_clocks::{CLOCK_PROBE_INTERVAL_US, ClockProbe, PeerClocks};

/// This node's view of its peers' clocks, shared by the peer tasks (which stamp outgoing
/// batches with probes), the service that receives batches (which takes the samples) and the
/// node loop (which reads the verdict).
pub type SharedPeerClocks = Arc<Mutex<PeerClocks>>;

/// The probe for a batch to `peer_id`, as of now.
pub fn probe_for(clocks: &SharedPeerClocks, peer_id: u64) -> proto::ClockProbe {
    let probe = lock_clocks(clocks).probe_for(peer_id, SystemClock.now_us());
    proto::ClockProbe {
        sent_at_us: probe.sent_at_us,
        echo_sent_at_us: probe.echo_sent_at_us,
        echo_held_us: probe.echo_held_us,
    }
}

/// Takes the probe of a batch from `peer_id` that arrived now. Returns the sample it gave.
pub fn observe_probe(
    clocks: &SharedPeerClocks,
    peer_id: u64,
    probe: Option<&proto::ClockProbe>,
) -> Option<crate::ClockSample> {
    let probe = probe?;
    let probe = ClockProbe {
        sent_at_us: probe.sent_at_us,
        echo_sent_at_us: probe.echo_sent_at_us,
        echo_held_us: probe.echo_held_us,
    };
    lock_clocks(clocks).observe(peer_id, probe, SystemClock.now_us())
}

/// Microseconds of this process's monotonic clock, from an arbitrary start: what
/// [`PeerClocks::observe_local_clock`] compares the wall clock with.
pub fn monotonic_us() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The clocks, even if a holder panicked: they hold only samples.
pub fn lock_clocks(clocks: &SharedPeerClocks) -> std::sync::MutexGuard<'_, PeerClocks> {
    clocks
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The most raft messages queued for one peer; beyond, new messages are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4_096;

/// The most raft messages in one call.
pub const PEER_BATCH_MESSAGES_MAX: usize = 1_024;

/// The most bytes of encoded raft messages in one call; a larger message (a snapshot) travels
/// alone. Well below the gRPC message limit, so that a batch of appends never comes near it.
pub const PEER_BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The first wait after a failed call, in microseconds.
pub const PEER_BACKOFF_US_MIN: u64 = 20_000;

/// The longest wait between two calls to a peer that keeps failing, in microseconds.
pub const PEER_BACKOFF_US_MAX: u64 = 1_000_000;

/// The most batches in flight on one peer stream: sent but not yet taken by HTTP/2.
pub const PEER_STREAM_BATCHES_MAX: usize = 16;

/// How long a stream may take no batch, in microseconds, before it is given up.
pub const PEER_CALL_TIMEOUT_US: u64 = 5_000_000;

/// How long connecting to a peer may take, in microseconds.
pub const PEER_CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most peers one node keeps a transport for: the most members a raft group may have.
pub const PEERS_MAX: usize = 9;

/// The gRPC call that carries batches of raft messages to one peer.
pub trait RaftDelivery: Clone + Send + 'static {
    /// A client over `channel` (connected lazily).
    fn over(channel: Channel) -> Self;

    /// Sends every batch `batches` yields on one stream; ends when the stream does (the
    /// sender closed it, or the call failed).
    fn deliver_stream(
        &mut self,
        batches: ReceiverStream<RaftBatch>,
    ) -> impl Future<Output = Result<(), Status>> + Send;
}

impl RaftDelivery for RegionPeerClient<VersionedChannel> {
    fn over(channel: Channel) -> Self {
        region_peer_client(channel)
    }

    async fn deliver_stream(&mut self, batches: ReceiverStream<RaftBatch>) -> Result<(), Status> {
        self.deliver_stream(batches).await.map(|_| ())
    }
}

impl RaftDelivery for CoordinatorPeerClient<VersionedChannel> {
    fn over(channel: Channel) -> Self {
        coordinator_peer_client(channel)
    }

    async fn deliver_stream(&mut self, batches: ReceiverStream<RaftBatch>) -> Result<(), Status> {
        self.deliver_stream(batches).await.map(|_| ())
    }
}

/// The WAN delays of a node's peers: per peer id, and a default for peers learned later
/// (their region is not known here). Empty means no emulation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerDelays {
    /// The delay to each known peer.
    pub by_peer: HashMap<u64, OneWayDelay>,
    /// The delay to a peer not in `by_peer`.
    pub default: Option<OneWayDelay>,
}

impl PeerDelays {
    /// No delay to any peer.
    pub fn none() -> Self {
        PeerDelays::default()
    }

    /// The delay to `peer_id`, if any.
    pub fn of(&self, peer_id: u64) -> Option<OneWayDelay> {
        self.by_peer.get(&peer_id).copied().or(self.default)
    }
}

/// A message and when it was queued.
struct Queued {
    enqueued_at: Instant,
    message: Message,
}

/// The queues of the peer tasks, by node id, as the node loop sees them.
#[derive(Debug)]
pub struct PeerSenders<D: RaftDelivery> {
    node_id: u64,
    queues: HashMap<u64, mpsc::Sender<Queued>>,
    addresses: HashMap<u64, String>,
    delays: PeerDelays,
    dropped: Arc<AtomicU64>,
    runtime: tokio::runtime::Handle,
    security: Security,
    clocks: SharedPeerClocks,
    /// How long the node's synced store writes take: the loop that owns these senders times
    /// each one ([`crate::node_loop::PeerIo`]), the metrics endpoint reads it.
    sync_latency: Arc<LatencyHistogram>,
    delivery: std::marker::PhantomData<fn() -> D>,
}

impl std::fmt::Debug for Queued {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "queued raft message to {}", self.message.to)
    }
}

impl<D: RaftDelivery> Clone for PeerSenders<D> {
    fn clone(&self) -> Self {
        PeerSenders {
            node_id: self.node_id,
            queues: self.queues.clone(),
            addresses: self.addresses.clone(),
            delays: self.delays.clone(),
            dropped: self.dropped.clone(),
            runtime: self.runtime.clone(),
            security: self.security.clone(),
            clocks: self.clocks.clone(),
            sync_latency: Arc::clone(&self.sync_latency),
            delivery: std::marker::PhantomData,
        }
    }
}

impl<D: RaftDelivery> PeerSenders<D> {
    /// Starts one task per peer (`(node id, host:port)`) on the current tokio runtime, with
    /// the WAN `delays`, connecting as `security` says (mutual TLS or plaintext), stamping
    /// every batch with a probe from `clocks`. The tasks end when the returned senders (and
    /// every clone) are dropped.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn start(
        node_id: u64,
        peers: &[(u64, String)],
        delays: PeerDelays,
        security: Security,
        clocks: SharedPeerClocks,
    ) -> Self {
        let mut senders = PeerSenders {
            node_id,
            queues: HashMap::new(),
            addresses: HashMap::new(),
            delays,
            dropped: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
            security,
            clocks,
            sync_latency: Arc::default(),
            delivery: std::marker::PhantomData,
        };
        for (peer_id, address) in peers {
            senders.add(*peer_id, address);
        }
        senders
    }

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
        let line = DelayLine::new(
            self.delays.of(peer_id),
            self.node_id.rotate_left(32) ^ peer_id,
        );
        self.runtime.spawn(run_peer::<D>(
            self.node_id,
            peer_id,
            address.to_owned(),
            self.security.clone(),
            self.clocks.clone(),
            receiver,
            line,
        ));
        tracing::info!(node_id = self.node_id, peer_id, %address, "raft peer added");
        true
    }

    /// Queues `messages` for their receivers without waiting. A message for a full queue or
    /// for a node without a transport is dropped and counted.
    pub fn send(&self, messages: Vec<Message>) {
        let enqueued_at = Instant::now();
        for message in messages {
            let delivered = self.queues.get(&message.to).is_some_and(|queue| {
                queue
                    .try_send(Queued {
                        enqueued_at,
                        message,
                    })
                    .is_ok()
            });
            if !delivered {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The address of `peer_id`, when a transport to it runs.
    pub fn address(&self, peer_id: u64) -> Option<&str> {
        self.addresses.get(&peer_id).map(String::as_str)
    }

    /// How the transport connects to peers, for other calls to them.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The runtime the transport's tasks run on, for other calls to peers.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// This node's view of its peers' clocks, which the transport's batches measure.
    pub fn clocks(&self) -> &SharedPeerClocks {
        &self.clocks
    }

    /// Messages dropped since the transport started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// How long the node's synced store writes take (shared by every clone).
    pub fn sync_latency(&self) -> &Arc<LatencyHistogram> {
        &self.sync_latency
    }
}

/// A message taken from the queue and encoded, with the time it may leave.
struct Timed {
    send_at: Instant,
    encoded: Vec<u8>,
}

async fn run_peer<D: RaftDelivery>(
    from_node_id: u64,
    to_node_id: u64,
    address: String,
    security: Security,
    clocks: SharedPeerClocks,
    mut queue: mpsc::Receiver<Queued>,
    mut line: DelayLine,
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
    let client = D::over(security.connect_lazy(endpoint));
    let mut backoff_us = PEER_BACKOFF_US_MIN;
    let mut failing = false;
    let mut stream: Option<PeerStream> = None;
    // A message taken from the queue that did not fit in the previous batch, or whose send
    // time had not come.
    let mut carried: Option<Timed> = None;
    loop {
        let first = match carried.take() {
            Some(timed) => Some(timed),
            None => {
                // An idle link still carries a probe now and then, so that both ends keep
                // measuring their clocks.
                let idle = Duration::from_micros(CLOCK_PROBE_INTERVAL_US);
                match tokio::time::timeout(idle, queue.recv()).await {
                    Ok(Some(queued)) => Some(timed(&mut line, queued)),
                    Ok(None) => return,
                    Err(_) => None,
                }
            }
        };
        let mut batch = match first {
            Some(first) => {
                super::delay::wait_until(first.send_at).await;
                let (batch, rest) =
                    collect_batch(from_node_id, to_node_id, first, &mut queue, &mut line);
                carried = rest;
                batch
            }
            None => RaftBatch {
                from_node_id,
                to_node_id,
                ..RaftBatch::default()
            },
        };
        batch.clock_probe = Some(probe_for(&clocks, to_node_id));
        let open = stream.get_or_insert_with(|| PeerStream::open(&client));
        let sent = tokio::time::timeout(
            Duration::from_micros(PEER_CALL_TIMEOUT_US),
            open.batches.send(batch),
        )
        .await;
        match sent {
            Ok(Ok(())) => {
                // A stream that has carried batches for a while reaches the peer: a failing
                // one ends within a round trip of opening.
                if failing && open.opened.elapsed() >= Duration::from_micros(PEER_BACKOFF_US_MAX) {
                    tracing::info!(to_node_id, %address, "peer reachable again");
                    failing = false;
                    backoff_us = PEER_BACKOFF_US_MIN;
                }
            }
            Ok(Err(_)) | Err(_) => {
                let ended = stream.take().expect("a stream was open");
                if !failing {
                    match ended.close().await {
                        Some(status) => {
                            tracing::warn!(to_node_id, %address, code = ?status.code(), message = status.message(), "raft messages to peer failed; retrying with backoff");
                        }
                        None => {
                            tracing::warn!(to_node_id, %address, "raft messages to peer stalled; retrying with backoff");
                        }
                    }
                }
                failing = true;
                carried = None;
                backoff(&mut queue, &mut backoff_us).await;
            }
        }
    }
}

/// An open stream of batches to one peer.
struct PeerStream {
    batches: mpsc::Sender<RaftBatch>,
    call: JoinHandle<Result<(), Status>>,
    opened: Instant,
}

impl PeerStream {
    fn open<D: RaftDelivery>(client: &D) -> PeerStream {
        let (batches, receiver) = mpsc::channel(PEER_STREAM_BATCHES_MAX);
        let mut client = client.clone();
        let call =
            tokio::spawn(async move { client.deliver_stream(ReceiverStream::new(receiver)).await });
        PeerStream {
            batches,
            call,
            opened: Instant::now(),
        }
    }

    /// Ends the stream; the call's error, if it ended on one.
    async fn close(self) -> Option<Status> {
        drop(self.batches);
        if !self.call.is_finished() {
            // Stalled: nothing will come of it.
            self.call.abort();
            return None;
        }
        match self.call.await {
            Ok(Err(status)) => Some(status),
            _ => None,
        }
    }
}

fn timed(line: &mut DelayLine, queued: Queued) -> Timed {
    Timed {
        send_at: line.send_at(queued.enqueued_at),
        encoded: encode_message(&queued.message),
    }
}

/// Waits out the backoff, then drops what queued meanwhile: raft will send fresh messages.
async fn backoff(queue: &mut mpsc::Receiver<Queued>, backoff_us: &mut u64) {
    tokio::time::sleep(Duration::from_micros(*backoff_us)).await;
    *backoff_us = (*backoff_us * 2).min(PEER_BACKOFF_US_MAX);
    while queue.try_recv().is_ok() {}
}

/// Builds one batch from `first` and the queued messages whose send time has come, within
/// the batch bounds. Returns the message taken from the queue that did not go, if any.
fn collect_batch(
    from_node_id: u64,
    to_node_id: u64,
    first: Timed,
    queue: &mut mpsc::Receiver<Queued>,
    line: &mut DelayLine,
) -> (RaftBatch, Option<Timed>) {
    let mut size_bytes = first.encoded.len();
    let mut messages = vec![first.encoded];
    let mut rest = None;
    let now = Instant::now();
    while messages.len() < PEER_BATCH_MESSAGES_MAX {
        let Ok(queued) = queue.try_recv() else {
            break;
        };
        let next = timed(line, queued);
        if next.send_at > now || size_bytes + next.encoded.len() > PEER_BATCH_BYTES_MAX {
            rest = Some(next);
            break;
        }
        size_bytes += next.encoded.len();
        messages.push(next.encoded);
    }
    let batch = RaftBatch {
        from_node_id,
        to_node_id,
        sender_time: Some(proto::Timestamp {
            physical_us: SystemClock.now_us(),
            logical: 0,
        }),
        messages,
        clock_probe: None,
    };
    (batch, rest)
}
