//! `RegionEpochs`: the coordinator's sealed epochs, on every member of the region.
//!
//! The part goes to the node: the leader proposes it and answers what the region has appended
//! (`sealed_epoch_ack`); a follower answers with `not_leader` naming the leader and its
//! address, so the coordinator's sender follows the hint.
//!
//! `Acknowledge` takes the coordinator's acknowledgement sent unasked (it says closes are
//! wanted) into the node as if it answered a batch; a node that does not lead ignores it.
//!
//! `ReadEpochs` serves another region's read of released epochs from this member's log
//! (`RegionNode::answer_epochs_read`), on every member; `ReadCheckpoint` serves another
//! region's read of a global object's checkpoint, to adopt it
//! (`RegionNode::answer_checkpoint_read`), on every member.

use dsss_wire::proto::region_epochs_server::RegionEpochs;
use dsss_wire::proto::{
    ReadCheckpointReply, ReadCheckpointRequest, ReadEpochsReply, ReadEpochsRequest, RegionBatchAck,
    RegionBatchAckReceipt, SealedEpoch, SealedEpochAck,
};
use tonic::{Request, Response, Status};

use crate::GlobalMessageError;
use crate::driver::NodeEvent;
use crate::service::NodeLink;

/// The `RegionEpochs` service of one node.
#[derive(Clone, Debug)]
pub struct RegionEpochsService {
    link: NodeLink,
}

impl RegionEpochsService {
    /// The service over `link`.
    pub fn new(link: NodeLink) -> Self {
        RegionEpochsService { link }
    }
}

/// The gRPC status for a part the node did not take.
fn refusal(error: GlobalMessageError) -> Status {
    match error {
        GlobalMessageError::ClockSkew(_) => Status::failed_precondition(error.to_string()),
        GlobalMessageError::Overloaded(_) => Status::resource_exhausted(error.to_string()),
        GlobalMessageError::Invalid(_) => Status::invalid_argument(error.to_string()),
        GlobalMessageError::NotLeader { .. } => Status::unavailable(error.to_string()),
    }
}

#[tonic::async_trait]
impl RegionEpochs for RegionEpochsService {
    async fn deliver(
        &self,
        request: Request<SealedEpoch>,
    ) -> Result<Response<SealedEpochAck>, Status> {
        let epoch = request.into_inner();
        let outcome = self
            .link
            .ask(|reply| NodeEvent::SealedEpoch { epoch, reply })
            .await?;
        let mut ack = outcome.map_err(refusal)?;
        if let Some(not_leader) = ack.not_leader.as_mut() {
            let leader_hint = (not_leader.leader_node_id != 0).then_some(not_leader.leader_node_id);
            *not_leader = self.link.not_leader(leader_hint);
        }
        Ok(Response::new(ack))
    }

    async fn acknowledge(
        &self,
        request: Request<RegionBatchAck>,
    ) -> Result<Response<RegionBatchAckReceipt>, Status> {
        self.link.send(NodeEvent::BatchAck(request.into_inner()))?;
        Ok(Response::new(RegionBatchAckReceipt {}))
    }

    async fn read_epochs(
        &self,
        request: Request<ReadEpochsRequest>,
    ) -> Result<Response<ReadEpochsReply>, Status> {
        let request = request.into_inner();
        let reply = self
            .link
            .ask(|reply| NodeEvent::ReadEpochs { request, reply })
            .await?;
        Ok(Response::new(reply))
    }

    async fn read_checkpoint(
        &self,
        request: Request<ReadCheckpointRequest>,
    ) -> Result<Response<ReadCheckpointReply>, Status> {
        let request = request.into_inner();
        let reply = self
            .link
            .ask(|reply| NodeEvent::ReadCheckpoint { request, reply })
            .await?;
        Ok(Response::new(reply))
    }
}
