//! The gRPC services of a production region node (feature `driver`).
//!
//! - [`client_service`]: `RegionClient`, what application instances call: `Propose`,
//!   `Subscribe`, `FetchCheckpoint`, `UploadCheckpoint`, `Sync`, `Status`.
//! - [`peer_service`]: `RegionPeer`, raft traffic from the other members of the region.
//! - [`admin_service`]: `RegionAdmin`, membership changes for operators.
//! - [`epochs_service`]: `RegionEpochs`, the coordinator's sealed epochs.
//!
//! The services decide nothing about the protocol: they check requests, turn them into
//! [`NodeEvent`]s for the node loop and turn its answers into replies. Every request carries
//! the protocol version (the servers are built with the interceptors of
//! [`dsss_wire::grpc`]), and every bound is a named constant of this module.

pub mod admin_service;
pub mod client_service;
pub mod epochs_service;
pub mod peer_service;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use dsss_raft_group::Role;
use dsss_wire::proto;
use tokio::sync::{broadcast, oneshot, watch};
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::LogEvent;
use crate::driver::{LogRead, NodeEvent, NodeStatus};

pub use admin_service::RegionAdminService;
pub use client_service::{
    CHECKPOINT_UPLOAD_BYTES_IN_FLIGHT_MAX, CLIENT_PROPOSALS_IN_FLIGHT_MAX, CLIENTS_IN_FLIGHT_MAX,
    DIVERGED_OBJECTS_LISTED_MAX, PROPOSE_DEADLINE_US_DEFAULT, PROPOSE_DEADLINE_US_MAX,
    RegionClientService, SUBSCRIBE_BUFFERED_BYTES_MAX, SUBSCRIBE_REPLY_BYTES_MAX,
    SUBSCRIBE_STREAM_REPLIES_BUFFERED_MAX, SUBSCRIBE_STREAMS_MAX, SUBSCRIPTIONS_PER_CLIENT_MAX,
    SUBSCRIPTIONS_PER_CONNECTION_MAX,
};
pub use epochs_service::RegionEpochsService;
pub use peer_service::RegionPeerService;

/// What every service holds of its node: the node loop's channel, the log events, the
/// addresses of the region's members, and the signal that the node is stopping.
#[derive(Clone, Debug)]
pub struct NodeLink {
    events: SyncSender<NodeEvent>,
    log_events: broadcast::Sender<Arc<LogEvent>>,
    node_id: u64,
    addresses: Arc<HashMap<u64, String>>,
    stopping: watch::Receiver<bool>,
}

impl NodeLink {
    /// A link to node `node_id` through its loop's channels. `addresses` lists the region's
    /// members (this node included), so that a NotLeader answer can say where the leader is.
    pub fn new(
        events: SyncSender<NodeEvent>,
        log_events: broadcast::Sender<Arc<LogEvent>>,
        node_id: u64,
        addresses: HashMap<u64, String>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        NodeLink {
            events,
            log_events,
            node_id,
            addresses: Arc::new(addresses),
            stopping,
        }
    }

    /// The node's id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// The address of a member of the region, as the topology lists it.
    pub fn address_of(&self, node_id: u64) -> Option<&str> {
        self.addresses.get(&node_id).map(String::as_str)
    }

    /// Hands an event to the node loop without waiting.
    ///
    /// # Errors
    ///
    /// `UNAVAILABLE` when the loop's queue is full or the loop has stopped.
    pub fn send(&self, event: NodeEvent) -> Result<(), Status> {
        self.events.try_send(event).map_err(|error| match error {
            TrySendError::Full(_) => Status::unavailable(format!(
                "node {} is busy: its queue holds {} events (EVENTS_QUEUED_MAX); retry later",
                self.node_id,
                crate::driver::EVENTS_QUEUED_MAX
            )),
            TrySendError::Disconnected(_) => node_stopped(self.node_id),
        })
    }

    /// Sends an event built around a oneshot sender and waits for the answer.
    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> NodeEvent,
    ) -> Result<T, Status> {
        let (sender, receiver) = oneshot::channel();
        self.send(event(sender))?;
        receiver.await.map_err(|_| node_stopped(self.node_id))
    }

    /// The node's status.
    pub async fn status(&self) -> Result<NodeStatus, Status> {
        self.ask(NodeEvent::Status).await
    }

    /// Records of the log from `from_position`, at most `records_max`.
    pub async fn read_log(
        &self,
        from_position: u64,
        records_max: usize,
    ) -> Result<LogRead, Status> {
        self.ask(|reply| NodeEvent::ReadLog {
            from_position,
            records_max,
            reply,
        })
        .await?
        .map_err(Status::internal)
    }

    /// Entries a peer's snapshot stands on (see [`crate::snapshot_catch_up`]).
    pub async fn answer_log_range(
        &self,
        request: crate::LogRangeRequest,
    ) -> Result<crate::LogRangeReply, Status> {
        self.ask(|reply| NodeEvent::AnswerLogRange { request, reply })
            .await?
            .map_err(Status::internal)
    }

    /// Subscribes to the node's log events.
    pub fn subscribe_log(&self) -> broadcast::Receiver<Arc<LogEvent>> {
        self.log_events.subscribe()
    }

    /// A receiver that turns true when the node begins to stop.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// The NotLeader answer naming `leader_hint`, with its address when known.
    pub fn not_leader(&self, leader_hint: Option<u64>) -> proto::NotLeader {
        let leader_node_id = leader_hint.unwrap_or(0);
        proto::NotLeader {
            leader_node_id,
            leader_address: self
                .address_of(leader_node_id)
                .map(str::to_owned)
                .unwrap_or_default(),
        }
    }
}

/// The status for a request that reached a node whose loop has stopped.
fn node_stopped(node_id: u64) -> Status {
    Status::unavailable(format!(
        "node {node_id} is stopping or stopped; try another member of the region"
    ))
}

/// The wire form of a raft role.
pub fn role_to_wire(role: Role) -> proto::NodeRole {
    match role {
        Role::Leader => proto::NodeRole::Leader,
        Role::Follower => proto::NodeRole::Follower,
        Role::Candidate => proto::NodeRole::Candidate,
        Role::PreCandidate => proto::NodeRole::PreCandidate,
    }
}

/// The deadline a caller gave in the `grpc-timeout` header, or `default` when it gave none or
/// one that does not parse, never more than `max`.
pub fn request_deadline(metadata: &MetadataMap, default: Duration, max: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|value| value.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(default)
        .min(max)
}

/// Parses a `grpc-timeout` value: at most 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    const DIGITS_MAX: usize = 8;
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > DIGITS_MAX || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3_600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_every_unit_and_refuse_the_rest() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(parse_grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3_600)));
        assert_eq!(parse_grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(parse_grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn deadlines_fall_back_to_the_default_and_stay_below_the_maximum() {
        let default = Duration::from_secs(10);
        let max = Duration::from_secs(60);
        let mut metadata = MetadataMap::new();
        assert_eq!(request_deadline(&metadata, default, max), default);
        metadata.insert("grpc-timeout", "250m".parse().expect("ascii"));
        assert_eq!(
            request_deadline(&metadata, default, max),
            Duration::from_millis(250)
        );
        metadata.insert("grpc-timeout", "99999H".parse().expect("ascii"));
        assert_eq!(request_deadline(&metadata, default, max), max);
    }
}
