//! `RegionPeer`: raft messages from the other members of the region.
//!
//! A batch is checked whole before any of it reaches the node: it must be addressed to this
//! node, hold at most [`PEER_BATCH_MESSAGES_MAX`] messages, and every message must decode and
//! come from the batch's sender, which must be the node whose certificate made the call
//! (`dsss_wire::access`; only nodes of this region reach this service at all). Decoding happens here, on the runtime's threads, so the node
//! loop only steps messages. When the node's queue is full a `Deliver` batch is dropped and
//! still acknowledged: raft retransmits, and the sender has nothing better to do with it. On a
//! `DeliverStream` the same ends the stream with the error (and so does a stopped node), so
//! that a sender never streams on into a node that is gone: it backs off and opens a new one.

use dsss_raft_group::decode_message;
use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::transport::{SharedPeerClocks, observe_probe};
use dsss_wire::access::{caller_of, check_claimed_node};
use dsss_wire::proto::region_peer_server::RegionPeer;
use dsss_wire::proto::{self, RaftBatch, RaftBatchAck};
use dsss_wire::{PhysicalClock, SystemClock};
use tonic::{Request, Response, Status, Streaming};

use crate::driver::{NodeEvent, PEER_BATCH_MESSAGES_MAX};
use crate::service::NodeLink;

/// The `RegionPeer` service of one node.
#[derive(Clone, Debug)]
pub struct RegionPeerService {
    link: NodeLink,
    clocks: SharedPeerClocks,
}

impl RegionPeerService {
    /// The service over `link`, measuring peers' clocks into `clocks` from the probes their
    /// batches carry.
    pub fn new(link: NodeLink, clocks: SharedPeerClocks) -> Self {
        RegionPeerService { link, clocks }
    }
}

fn invalid(field: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("raft batch field {field}: {error}"))
}

fn ack() -> RaftBatchAck {
    RaftBatchAck {
        sender_time: Some(proto::Timestamp {
            physical_us: SystemClock.now_us(),
            logical: 0,
        }),
    }
}

#[tonic::async_trait]
impl RegionPeer for RegionPeerService {
    async fn deliver(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchAck>, Status> {
        check_claimed_node(
            &request,
            request.get_ref().from_node_id,
            "the raft batch's from_node_id",
        )?;
        let batch = request.into_inner();
        let from = batch.from_node_id;
        let probe = batch.clock_probe;
        let messages = self.check(batch)?;
        observe_probe(&self.clocks, from, probe.as_ref());
        if !messages.is_empty() {
            // A full queue drops the batch: raft retransmits what is not acknowledged.
            if let Err(status) = self.link.send(NodeEvent::RaftMessages(messages)) {
                tracing::debug!(
                    node_id = self.link.node_id(),
                    from,
                    message = status.message(),
                    "raft batch dropped"
                );
            }
        }
        Ok(Response::new(ack()))
    }

    async fn read_log_range(
        &self,
        request: Request<proto::LogRangeRequest>,
    ) -> Result<Response<proto::LogRangeReply>, Status> {
        let request = request.into_inner();
        let state = match request.state {
            None => None,
            Some(state) => {
                let space = u8::try_from(state.space)
                    .map_err(|_| format!("checkpoint space {} is unknown (0 to 2)", state.space))
                    .and_then(crate::CheckpointSpace::from_tag)
                    .map_err(|reason| Status::invalid_argument(format!("state.space: {reason}")))?;
                Some(crate::StateRequest {
                    view_index: state.view_index,
                    space,
                    after_key: state.after_key,
                })
            }
        };
        let reply = self
            .link
            .answer_log_range(crate::LogRangeRequest {
                fetch_id: request.fetch_id,
                from_position: request.from_position,
                end_position: request.end_position,
                state,
            })
            .await?;
        Ok(Response::new(proto::LogRangeReply {
            fetch_id: reply.fetch_id,
            entries: reply.entries,
            first_retained_position: reply.first_retained_position,
            next_position: reply.next_position,
            state: reply.state.map(|piece| {
                let (keys, values) = piece.pairs.into_iter().unzip();
                proto::LogRangeStatePiece {
                    keys,
                    values,
                    done: piece.done,
                }
            }),
        }))
    }

    async fn deliver_stream(
        &self,
        request: Request<Streaming<RaftBatch>>,
    ) -> Result<Response<RaftBatchAck>, Status> {
        let caller = caller_of(&request);
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            caller.check_claimed_node(batch.from_node_id, "the raft batch's from_node_id")?;
            let (from, probe) = (batch.from_node_id, batch.clock_probe);
            let messages = self.check(batch)?;
            observe_probe(&self.clocks, from, probe.as_ref());
            if !messages.is_empty() {
                // A node that stopped, or is too busy to queue the batch, ends the stream:
                // the sender drops what it held, backs off and opens a new one (raft
                // retransmits), rather than stream on into a node that is gone.
                self.link.send(NodeEvent::RaftMessages(messages))?;
            }
        }
        Ok(Response::new(ack()))
    }
}

impl RegionPeerService {
    /// Checks `batch` whole and decodes its messages.
    fn check(&self, batch: RaftBatch) -> Result<Vec<Message>, Status> {
        let node_id = self.link.node_id();
        if batch.to_node_id != node_id {
            return Err(invalid(
                "to_node_id",
                format!(
                    "the batch is for node {} but reached node {node_id}",
                    batch.to_node_id
                ),
            ));
        }
        if batch.messages.len() > PEER_BATCH_MESSAGES_MAX {
            return Err(invalid(
                "messages",
                format!(
                    "{} messages, more than the {PEER_BATCH_MESSAGES_MAX} a batch may hold",
                    batch.messages.len()
                ),
            ));
        }
        let mut messages = Vec::with_capacity(batch.messages.len());
        for (index, bytes) in batch.messages.iter().enumerate() {
            let message = decode_message(bytes)
                .map_err(|error| invalid(&format!("messages[{index}]"), error))?;
            if message.from != batch.from_node_id {
                return Err(invalid(
                    &format!("messages[{index}].from"),
                    format!(
                        "node {} in a batch from node {}",
                        message.from, batch.from_node_id
                    ),
                ));
            }
            messages.push(message);
        }
        Ok(messages)
    }
}
