//! The region's raft peer transport: the shared [`dsss_raft_group::transport`] over the
//! `RegionPeer` gRPC service.
//!
//! Each peer has one task and one bounded queue; see [`dsss_raft_group::transport::peer`] for
//! how messages are batched, dropped and retried, and for the WAN delay emulation.

use std::sync::{Arc, Mutex};

use dsss_raft_group::PeerClocks;
use dsss_raft_group::transport::{self, PeerDelays, SharedPeerClocks};
use dsss_wire::grpc::VersionedChannel;
use dsss_wire::proto::region_peer_client::RegionPeerClient;
use dsss_wire::tls::Security;

pub use dsss_raft_group::transport::{
    PEER_BACKOFF_US_MAX, PEER_BACKOFF_US_MIN, PEER_BATCH_BYTES_MAX, PEER_BATCH_MESSAGES_MAX,
    PEER_CALL_TIMEOUT_US, PEER_CONNECT_TIMEOUT_US, PEER_QUEUE_MESSAGES_MAX, PEERS_MAX,
};

/// The queues of the peer tasks, by node id, as the node loop sees them.
pub type PeerSenders = transport::PeerSenders<RegionPeerClient<VersionedChannel>>;

/// Starts one task per peer on the current tokio runtime, with no WAN delay, over plaintext
/// gRPC, measuring clocks against the default skew bound (tests). The tasks end when the
/// returned senders (and every clone) are dropped.
///
/// # Panics
///
/// When called outside a tokio runtime.
pub fn start_peers(node_id: u64, peers: &[crate::driver::PeerAddress]) -> PeerSenders {
    let clocks = Arc::new(Mutex::new(PeerClocks::new(
        crate::MAX_CLOCK_SKEW_US_DEFAULT,
    )));
    start_peers_with_delays(
        node_id,
        peers,
        PeerDelays::none(),
        Security::Plaintext,
        clocks,
    )
}

/// Starts one task per peer on the current tokio runtime, each message to a peer delayed as
/// `delays` says (WAN emulation), connecting as `security` says, stamping batches with probes
/// of `clocks`.
///
/// # Panics
///
/// When called outside a tokio runtime.
pub fn start_peers_with_delays(
    node_id: u64,
    peers: &[crate::driver::PeerAddress],
    delays: PeerDelays,
    security: Security,
    clocks: SharedPeerClocks,
) -> PeerSenders {
    let peers: Vec<(u64, String)> = peers
        .iter()
        .map(|peer| (peer.node_id, peer.address.clone()))
        .collect();
    PeerSenders::start(node_id, &peers, delays, security, clocks)
}
