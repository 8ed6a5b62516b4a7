//! The coordinator's gRPC services: `Coordinator` (region batches, sealed epoch reads that the
//! replica answers only after confirming its leadership) and
//! `CoordinatorPeer` (raft traffic between replicas). They decide nothing: they check
//! requests, hand them to the node loop and turn its answers into replies.

use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use dsss_raft_group::transport::{PEER_BATCH_MESSAGES_MAX, SharedPeerClocks, observe_probe};
use dsss_wire::access::{caller_of, check_claimed_node, check_claimed_region};
use dsss_wire::proto::coordinator_peer_server::CoordinatorPeer;
use dsss_wire::proto::coordinator_server::Coordinator;
use dsss_wire::proto::{self, RaftBatch, RaftBatchAck};
use dsss_wire::{PhysicalClock, SystemClock};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

use super::node_loop::{CoordinatorEvent, EVENTS_QUEUED_MAX};
use crate::InputError;

/// How long a request waits for the node loop's answer, in microseconds: the loop answers
/// within one round, so only a stalled disk comes near it.
pub const LOOP_ANSWER_TIMEOUT_US: u64 = 5_000_000;

/// What the services hold of the replica: its id and the node loop's channel.
#[derive(Clone, Debug)]
pub struct CoordinatorLink {
    node_id: u64,
    events: SyncSender<CoordinatorEvent>,
}

impl CoordinatorLink {
    /// A link to replica `node_id` through its loop's channel.
    pub fn new(node_id: u64, events: SyncSender<CoordinatorEvent>) -> Self {
        CoordinatorLink { node_id, events }
    }

    fn send(&self, event: CoordinatorEvent) -> Result<(), Status> {
        self.events.try_send(event).map_err(|error| match error {
            TrySendError::Full(_) => Status::unavailable(format!(
                "coordinator replica {} is busy: its queue holds {EVENTS_QUEUED_MAX} events \
                 (EVENTS_QUEUED_MAX); retry later",
                self.node_id
            )),
            TrySendError::Disconnected(_) => self.stopped(),
        })
    }

    async fn ask<T>(
        &self,
        event: impl FnOnce(oneshot::Sender<T>) -> CoordinatorEvent,
    ) -> Result<T, Status> {
        let (sender, receiver) = oneshot::channel();
        self.send(event(sender))?;
        match tokio::time::timeout(Duration::from_micros(LOOP_ANSWER_TIMEOUT_US), receiver).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(_)) => Err(self.stopped()),
            Err(_) => Err(Status::unavailable(format!(
                "coordinator replica {} did not answer within {LOOP_ANSWER_TIMEOUT_US} us",
                self.node_id
            ))),
        }
    }

    fn stopped(&self) -> Status {
        Status::unavailable(format!(
            "coordinator replica {} is stopping or stopped; try another replica",
            self.node_id
        ))
    }

    /// The replica's status.
    pub async fn status(&self) -> Result<crate::CoordinatorStatus, Status> {
        self.ask(CoordinatorEvent::Status).await
    }
}

/// The gRPC status for a batch the replica did not take.
fn input_status(error: InputError) -> Status {
    match error {
        InputError::ClockSkew { .. } => Status::failed_precondition(error.to_string()),
        InputError::Overloaded { .. } => Status::resource_exhausted(error.to_string()),
        _ => Status::invalid_argument(error.to_string()),
    }
}

/// The `Coordinator` service of one replica.
#[derive(Clone, Debug)]
pub struct CoordinatorService {
    link: CoordinatorLink,
}

impl CoordinatorService {
    /// The service over `link`.
    pub fn new(link: CoordinatorLink) -> Self {
        CoordinatorService { link }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn submit_batch(
        &self,
        request: Request<proto::RegionBatch>,
    ) -> Result<Response<proto::RegionBatchAck>, Status> {
        // Only a node of the region a batch names may submit it.
        check_claimed_region(&request, &request.get_ref().region, "the batch's region")?;
        check_claimed_node(
            &request,
            request.get_ref().sender_node_id,
            "the batch's sender_node_id",
        )?;
        let batch = request.into_inner();
        let outcome = self
            .link
            .ask(|reply| CoordinatorEvent::SubmitBatch { batch, reply })
            .await?;
        outcome.map(Response::new).map_err(input_status)
    }

    async fn read_sealed_epoch(
        &self,
        request: Request<proto::ReadSealedEpochRequest>,
    ) -> Result<Response<proto::ReadSealedEpochReply>, Status> {
        let request = request.into_inner();
        let outcome = self
            .link
            .ask(|reply| CoordinatorEvent::ReadSealedEpoch { request, reply })
            .await?;
        outcome.map(Response::new).map_err(input_status)
    }

    async fn status(
        &self,
        _request: Request<proto::CoordinatorStatusRequest>,
    ) -> Result<Response<proto::CoordinatorStatusReply>, Status> {
        Ok(Response::new(status_reply(&self.link.status().await?)))
    }
}

/// What `Coordinator.Status` answers for a replica in `status`.
pub fn status_reply(status: &crate::CoordinatorStatus) -> proto::CoordinatorStatusReply {
    proto::CoordinatorStatusReply {
        node_id: status.node_id,
        leader: status.role == dsss_raft_group::Role::Leader,
        leader_node_id: status.leader_id.unwrap_or(0),
        term: status.term,
        commit_index: status.commit_index,
        applied_index: status.applied_index,
        newest_epoch: status.newest_epoch,
        watermark_physical_us: status.watermark.physical_us,
        retained_epochs: status.retained_epochs as u64,
        retained_bytes: status.retained_size_bytes,
        pending_records: status.pending_records as u64,
        regions: status
            .regions
            .iter()
            .map(|region| proto::CoordinatorRegionStatus {
                region: region.region.as_str().to_owned(),
                member: region.member,
                incarnation: region.incarnation,
                closed_physical_us: region.closed.physical_us,
                acknowledged_epoch: region.acknowledged_epoch,
                has_leader_view: region.closed_advanced_at_us.is_some(),
                closed_advanced_at_us: region.closed_advanced_at_us.unwrap_or(0),
                suspected_at_us: region.suspected_at_us.unwrap_or(0),
            })
            .collect(),
        now_us: status.now_us,
        voters: status.voters.clone(),
        leader_changes: status.raft.leader_changes,
        epochs_sealed: status.counters.epochs_sealed,
        regions_removed: status.counters.regions_removed,
        regions_readmitted: status.counters.regions_readmitted,
        readmissions_refused: status.counters.readmissions_refused,
        batches_overloaded: status.counters.batches_overloaded,
        refused_for_skew: status.counters.refused_for_skew,
        clock_fences: status.counters.clock_fences,
        snapshots_sent: status.raft.snapshots_sent,
    }
}

/// The `CoordinatorPeer` service of one replica.
#[derive(Clone, Debug)]
pub struct CoordinatorPeerService {
    link: CoordinatorLink,
    clocks: SharedPeerClocks,
}

impl CoordinatorPeerService {
    /// The service over `link`, measuring the other replicas' clocks into `clocks` from the
    /// probes their batches carry.
    pub fn new(link: CoordinatorLink, clocks: SharedPeerClocks) -> Self {
        CoordinatorPeerService { link, clocks }
    }
}

fn peer_ack() -> RaftBatchAck {
    RaftBatchAck {
        sender_time: Some(proto::Timestamp {
            physical_us: SystemClock.now_us(),
            logical: 0,
        }),
    }
}

#[tonic::async_trait]
impl CoordinatorPeer for CoordinatorPeerService {
    async fn deliver(&self, request: Request<RaftBatch>) -> Result<Response<RaftBatchAck>, Status> {
        check_claimed_node(
            &request,
            request.get_ref().from_node_id,
            "the raft batch's from_node_id",
        )?;
        let batch = request.into_inner();
        self.check(&batch)?;
        observe_probe(&self.clocks, batch.from_node_id, batch.clock_probe.as_ref());
        // A full queue drops the batch: raft retransmits what is not acknowledged.
        if let Err(status) = self.link.send(CoordinatorEvent::RaftBatch(batch)) {
            tracing::debug!(
                node_id = self.link.node_id,
                message = status.message(),
                "coordinator raft batch dropped"
            );
        }
        Ok(Response::new(peer_ack()))
    }

    async fn deliver_stream(
        &self,
        request: Request<tonic::Streaming<RaftBatch>>,
    ) -> Result<Response<RaftBatchAck>, Status> {
        let caller = caller_of(&request);
        let mut batches = request.into_inner();
        while let Some(batch) = batches.message().await? {
            caller.check_claimed_node(batch.from_node_id, "the raft batch's from_node_id")?;
            self.check(&batch)?;
            observe_probe(&self.clocks, batch.from_node_id, batch.clock_probe.as_ref());
            // A replica that stopped, or is too busy to queue the batch, ends the stream: the
            // sender backs off and opens a new one (raft retransmits), rather than stream on
            // into a replica that is gone.
            self.link.send(CoordinatorEvent::RaftBatch(batch))?;
        }
        Ok(Response::new(peer_ack()))
    }
}

impl CoordinatorPeerService {
    /// Checks `batch`'s addressing and size.
    fn check(&self, batch: &RaftBatch) -> Result<(), Status> {
        let node_id = self.link.node_id;
        if batch.to_node_id != node_id {
            return Err(Status::invalid_argument(format!(
                "raft batch field to_node_id: the batch is for node {} but reached coordinator \
                 replica {node_id}",
                batch.to_node_id
            )));
        }
        if batch.messages.len() > PEER_BATCH_MESSAGES_MAX {
            return Err(Status::invalid_argument(format!(
                "raft batch field messages: {} messages, more than the \
                 {PEER_BATCH_MESSAGES_MAX} a batch may hold",
                batch.messages.len()
            )));
        }
        Ok(())
    }
}
