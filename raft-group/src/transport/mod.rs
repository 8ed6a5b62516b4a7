//! The raft peer transport of the production drivers (feature `driver`): tokio tasks that
//! carry raft messages to the other members of a raft group over gRPC, shared by the region
//! node (`RegionPeer.Deliver`) and the global coordinator (`CoordinatorPeer.Deliver`).
//!
//! - [`peer`]: [`PeerSenders`], one task and one bounded queue per peer, generic over the
//!   gRPC call that delivers a [`RaftBatch`](dsss_wire::proto::RaftBatch) ([`RaftDelivery`]).
//! - [`delay`]: [`DelayLine`], the WAN delay emulation `dsss up` turns on: a per-destination
//!   one-way delay with jitter, applied before sending, that keeps per-destination order.
//! - [`calls`]: [`CallsInFlight`], the unary calls a sender keeps open at once (region batches
//!   to the coordinator, sealed epoch parts to the regions), so that a WAN round trip does not
//!   cap them at one call per round trip.

pub mod calls;
pub mod delay;
pub mod peer;

pub use calls::CallsInFlight;
#[cfg(feature = "testing")]
pub use calls::OpenCallsGate;
pub use delay::{DELAY_US_MAX, DelayLine, OneWayDelay, wait_until};
pub use peer::{
    PEER_BACKOFF_US_MAX, PEER_BACKOFF_US_MIN, PEER_BATCH_BYTES_MAX, PEER_BATCH_MESSAGES_MAX,
    PEER_CALL_TIMEOUT_US, PEER_CONNECT_TIMEOUT_US, PEER_QUEUE_MESSAGES_MAX,
    PEER_STREAM_BATCHES_MAX, PEERS_MAX, PeerDelays, PeerSenders, RaftDelivery, SharedPeerClocks,
    lock_clocks, monotonic_us, observe_probe, probe_for,
};
