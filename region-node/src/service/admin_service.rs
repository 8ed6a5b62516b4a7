//! `RegionAdmin`: membership changes for operators.
//!
//! A node joins a running region in three steps, which `dsss region add-node` takes in order:
//! every member learns the new node's address (`AddPeer`), the leader adds it as a learner
//! (it catches up, by snapshot when far behind, without counting for the quorum), and once it
//! has caught up the leader promotes it to voter. The raft group applies one change at a time;
//! a change proposed while another is pending is refused with `FAILED_PRECONDITION`.

use dsss_wire::ObjectId;
use dsss_wire::proto::region_admin_server::RegionAdmin;
use dsss_wire::proto::{self, MembershipAction};
use tonic::{Request, Response, Status};

use crate::checkpoint::CheckpointOutcome;
use crate::driver::{MembershipChange, NodeEvent};
use crate::node::UploadError;
use crate::service::NodeLink;

/// The most bytes of a peer address.
pub const PEER_ADDRESS_BYTES_MAX: usize = 1_024;

/// The `RegionAdmin` service of one node.
#[derive(Clone, Debug)]
pub struct RegionAdminService {
    link: NodeLink,
}

impl RegionAdminService {
    /// The service over `link`.
    pub fn new(link: NodeLink) -> Self {
        RegionAdminService { link }
    }
}

fn invalid(request: &str, field: &str, error: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{request} field {field}: {error}"))
}

#[tonic::async_trait]
impl RegionAdmin for RegionAdminService {
    async fn add_peer(
        &self,
        request: Request<proto::AddPeerRequest>,
    ) -> Result<Response<proto::AddPeerReply>, Status> {
        let request = request.into_inner();
        if request.node_id == 0 {
            return Err(invalid(
                "add peer",
                "node_id",
                "0 is reserved for \"no node\"",
            ));
        }
        let address = request.address;
        if address.is_empty() || address.len() > PEER_ADDRESS_BYTES_MAX {
            return Err(invalid(
                "add peer",
                "address",
                format!("must be 1 to {PEER_ADDRESS_BYTES_MAX} bytes of host:port"),
            ));
        }
        let uri = format!("http://{address}").parse::<tonic::transport::Uri>();
        if uri.is_err() || uri.is_ok_and(|uri| uri.port().is_none() || uri.path() != "/") {
            return Err(invalid(
                "add peer",
                "address",
                format!("{address:?} is not a host:port"),
            ));
        }
        let node_id = request.node_id;
        let added = self
            .link
            .ask(|reply| NodeEvent::AddPeer {
                node_id,
                address,
                reply,
            })
            .await?;
        Ok(Response::new(proto::AddPeerReply { added }))
    }

    async fn change_membership(
        &self,
        request: Request<proto::ChangeMembershipRequest>,
    ) -> Result<Response<proto::ChangeMembershipReply>, Status> {
        let request = request.into_inner();
        if request.node_id == 0 {
            return Err(invalid(
                "change membership",
                "node_id",
                "0 is reserved for \"no node\"",
            ));
        }
        let change = match MembershipAction::try_from(request.action) {
            Ok(MembershipAction::AddLearner) => MembershipChange::AddLearner(request.node_id),
            Ok(MembershipAction::Promote) => MembershipChange::Promote(request.node_id),
            Ok(MembershipAction::Remove) => MembershipChange::Remove(request.node_id),
            Ok(MembershipAction::TransferLeader) => {
                MembershipChange::TransferLeader(request.node_id)
            }
            Ok(MembershipAction::Unspecified) | Err(_) => {
                return Err(invalid(
                    "change membership",
                    "action",
                    format!("{} is not a membership action", request.action),
                ));
            }
        };
        let status = self.link.status().await?;
        if status.node.leader_id != Some(status.node.node_id) {
            return Ok(Response::new(proto::ChangeMembershipReply {
                not_leader: Some(self.link.not_leader(status.node.leader_id)),
            }));
        }
        self.link
            .ask(|reply| NodeEvent::Membership { change, reply })
            .await?
            .map_err(|reason| {
                Status::failed_precondition(format!(
                    "node {}: the raft group refused {change:?}: {reason}",
                    self.link.node_id()
                ))
            })?;
        Ok(Response::new(proto::ChangeMembershipReply {
            not_leader: None,
        }))
    }

    async fn clear_alarm(
        &self,
        request: Request<proto::ClearAlarmRequest>,
    ) -> Result<Response<proto::ClearAlarmReply>, Status> {
        let object_id = ObjectId::new(request.into_inner().object_id)
            .map_err(|error| invalid("clear alarm", "object_id", error.to_string()))?;
        let node_id = self.link.node_id();
        let outcome = self
            .link
            .ask(|reply| NodeEvent::ClearAlarm {
                object_id: object_id.clone(),
                reply,
            })
            .await?;
        match outcome {
            Ok(CheckpointOutcome::AlarmCleared) => {
                tracing::warn!(node_id, %object_id, "divergence alarm cleared by an operator");
                Ok(Response::new(proto::ClearAlarmReply { was_alarmed: true }))
            }
            Ok(_) => Ok(Response::new(proto::ClearAlarmReply { was_alarmed: false })),
            Err(UploadError::NotLeader { .. }) => Err(Status::unavailable(format!(
                "node {node_id} knows no leader of its region; retry after a short wait"
            ))),
            Err(error) => Err(Status::unavailable(format!("node {node_id}: {error}"))),
        }
    }

    async fn members(
        &self,
        _request: Request<proto::MembersRequest>,
    ) -> Result<Response<proto::MembersReply>, Status> {
        let status = self.link.status().await?;
        let node = status.node;
        Ok(Response::new(proto::MembersReply {
            node_id: node.node_id,
            leader_node_id: node.leader_id.unwrap_or(0),
            voters: node.voters,
            learners: node.learners,
            applied_position: node.next_position.saturating_sub(1),
        }))
    }
}
