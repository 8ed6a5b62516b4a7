//! The senders of sealed epochs: one task per region with a bounded queue, which delivers
//! each part in order through `RegionEpochs.Deliver` on the region's leader guess and feeds
//! every answer back to the coordinator as an epoch acknowledgement. Calls start in order and
//! do not wait for the answers of earlier ones: up to [`REGION_CALLS_IN_FLIGHT_MAX`] are open
//! at once ([`CallsInFlight`]), so that a WAN round trip longer than an epoch does not hold
//! the region's epochs back (the region holds parts that overtake an earlier one until the
//! gap fills). With WAN emulation an answer is taken after the return leg of the link. The same queue carries
//! the acknowledgements the coordinator sends unasked (`RegionEpochs.Acknowledge`), tried
//! once on the leader guess (a lost one is made up by the region's next idle close), and a
//! new coordinator leader's announcement, tried once on every node of the region.
//!
//! Each region's [`LeaderTracker`] names the node a part goes to: the node that last submitted
//! a batch for the region (only leaders ship batches); a NotLeader answer moves it to the
//! hinted leader, an error to the region's next node. A batch from another node while a
//! delivery is in flight ends that delivery's wait: the region elected that node, and the old
//! leader, paused or cut off, may hold the call until its timeout (a SIGSTOPped process keeps
//! its connections open). A part that finds no leader within
//! [`REGION_DELIVERY_ATTEMPTS_MAX`] attempts is dropped: the coordinator resends from the
//! region's acknowledged point.

use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dsss_raft_group::transport::{CallsInFlight, DelayLine};
use dsss_wire::grpc::{VersionedChannel, region_epochs_client};
use dsss_wire::proto;
use dsss_wire::proto::region_epochs_client::RegionEpochsClient;
use dsss_wire::tls::Security;
use dsss_wire::{LeaderTracker, RegionId};
use tokio::sync::{mpsc, watch};
use tonic::transport::Endpoint;

use super::config::NodeAddress;
use super::node_loop::CoordinatorEvent;
use crate::RegionMessage;

/// The most messages (epoch parts) queued for one region; beyond, new ones are dropped (parts
/// are resent later).
pub const REGION_QUEUE_PARTS_MAX: usize = 1_024;

pub use crate::REGION_DELIVERY_ATTEMPTS_MAX;

/// The most calls (deliveries and acknowledgements) open at once to one region. The
/// coordinator seals an epoch every epoch interval and each call takes a WAN round trip: with
/// 10 ms epochs, 64 calls keep up with round trips of up to 640 ms; beyond, parts wait in the
/// queue for a free call.
pub const REGION_CALLS_IN_FLIGHT_MAX: usize = 64;

/// How long one delivery may take, in microseconds.
pub const REGION_CALL_TIMEOUT_US: u64 = 2_000_000;

/// How long connecting to a region node may take, in microseconds.
pub const REGION_CONNECT_TIMEOUT_US: u64 = 1_000_000;

/// The most nodes a region may have, as in topology files.
pub const REGION_NODES_MAX: usize = 9;

/// The loop's handle on one region's sender task.
#[derive(Clone, Debug)]
pub(crate) struct RegionSender {
    queue: mpsc::Sender<(Instant, RegionMessage)>,
    /// Shared with the task: the loop learns leaders from batches, the task from answers.
    /// `None` when no node of the region has a usable address.
    leader: Option<Arc<Mutex<LeaderTracker>>>,
    /// Counts the leaders the loop learned from batches, so that the task gives up a delivery
    /// in flight to a node the region no longer follows.
    leader_moves: watch::Sender<u64>,
}

impl RegionSender {
    /// Starts the task of `region`, whose nodes are `nodes`, on the current runtime.
    pub(crate) fn start(
        region: RegionId,
        nodes: &[NodeAddress],
        line: DelayLine,
        security: &Security,
        events: SyncSender<CoordinatorEvent>,
    ) -> RegionSender {
        Self::start_with_call_timeout(
            region,
            nodes,
            line,
            security,
            events,
            Duration::from_micros(REGION_CALL_TIMEOUT_US),
        )
    }

    /// [`RegionSender::start`], with deliveries given up after `call_timeout`.
    fn start_with_call_timeout(
        region: RegionId,
        nodes: &[NodeAddress],
        line: DelayLine,
        security: &Security,
        events: SyncSender<CoordinatorEvent>,
        call_timeout: Duration,
    ) -> RegionSender {
        let (queue, receiver) = mpsc::channel(REGION_QUEUE_PARTS_MAX);
        let nodes: Vec<NodeAddress> = nodes.iter().take(REGION_NODES_MAX).cloned().collect();
        let mut clients = Vec::with_capacity(nodes.len());
        for node in &nodes {
            match Endpoint::from_shared(format!("http://{}", node.address)) {
                Ok(endpoint) => clients.push((
                    node.node_id,
                    region_epochs_client(
                        security.connect_lazy(
                            endpoint
                                .connect_timeout(Duration::from_micros(REGION_CONNECT_TIMEOUT_US))
                                .tcp_nodelay(true),
                        ),
                    ),
                )),
                Err(error) => {
                    tracing::error!(%region, node_id = node.node_id, address = %node.address, %error, "invalid region node address; no epochs go there");
                }
            }
        }
        let (leader_moves, moves) = watch::channel(0);
        let leader = (!clients.is_empty()).then(|| {
            let node_ids = clients.iter().map(|(node_id, _)| *node_id).collect();
            Arc::new(Mutex::new(LeaderTracker::new(node_ids, 0)))
        });
        if let Some(leader) = &leader {
            tokio::spawn(
                SenderTask {
                    region,
                    clients,
                    leader: leader.clone(),
                    leader_moves: moves,
                    queue: receiver,
                    line,
                    events,
                    call_timeout,
                    failing: false,
                }
                .run(),
            );
        }
        RegionSender {
            queue,
            leader,
            leader_moves,
        }
    }

    /// Queues a message without waiting; a full queue drops it (the coordinator resends
    /// parts, and the region's next idle close brings what an acknowledgement said).
    pub(crate) fn send(&self, message: RegionMessage) {
        let _ = self.queue.try_send((Instant::now(), message));
    }

    /// Sends the next parts to `node_id`, when it is a node of the region.
    pub(crate) fn guess_leader(&self, node_id: u64) {
        if let Some(leader) = &self.leader {
            let mut tracker = lock(leader);
            if tracker.target() != node_id && tracker.prefer(node_id) {
                drop(tracker);
                self.leader_moves.send_modify(|moves| *moves += 1);
            }
        }
    }
}

type Client = RegionEpochsClient<VersionedChannel>;

/// The tracker, also after a panic elsewhere while it was held: its state is always whole.
fn lock(leader: &Mutex<LeaderTracker>) -> std::sync::MutexGuard<'_, LeaderTracker> {
    leader.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The task that delivers one region's messages, and what it owns.
struct SenderTask {
    region: RegionId,
    clients: Vec<(u64, Client)>,
    leader: Arc<Mutex<LeaderTracker>>,
    leader_moves: watch::Receiver<u64>,
    queue: mpsc::Receiver<(Instant, RegionMessage)>,
    line: DelayLine,
    events: SyncSender<CoordinatorEvent>,
    call_timeout: Duration,
    failing: bool,
}

/// One epoch part on its way through its attempts.
struct Delivery {
    epoch: proto::SealedEpoch,
    /// The attempts made, this one included.
    attempt: usize,
    /// A `not_leader` answer from a node that every later attempt did not make up for: the
    /// coordinator learns that the part was not taken, and resends soon instead of after its
    /// backoff, as the simulator's replicas do.
    refusal: Option<proto::SealedEpochAck>,
}

/// How one call of the task ended.
enum Attempted {
    /// A delivery's attempt on `node_id`.
    Delivery {
        delivery: Box<Delivery>,
        node_id: u64,
        outcome: DeliveryOutcome,
    },
    /// An acknowledgement sent unasked, tried once.
    Acknowledgement,
}

/// What a delivery's attempt came to.
enum DeliveryOutcome {
    /// The node answered (or the call failed).
    Answered(Result<proto::SealedEpochAck, tonic::Status>),
    /// No answer within the call timeout.
    TimedOut,
    /// A batch came from another node of the region while the call was open.
    LeaderMoved,
}

impl SenderTask {
    /// Delivers until the queue closes (the coordinator loop is gone): each message in order,
    /// up to [`REGION_CALLS_IN_FLIGHT_MAX`] calls open at once.
    async fn run(mut self) {
        let mut calls = CallsInFlight::new(REGION_CALLS_IN_FLIGHT_MAX);
        loop {
            tokio::select! {
                Some(attempted) = calls.next(), if !calls.is_empty() => {
                    self.settle(&mut calls, attempted);
                }
                queued = self.queue.recv(), if calls.has_room() => match queued {
                    Some((enqueued_at, RegionMessage::Epoch(epoch))) => {
                        let delivery = Box::new(Delivery {
                            epoch,
                            attempt: 1,
                            refusal: None,
                        });
                        self.start_delivery(&mut calls, enqueued_at, delivery);
                    }
                    Some((enqueued_at, RegionMessage::BatchAck(ack))) => {
                        let (node_id, client) = self.target();
                        self.start_acknowledgement(&mut calls, enqueued_at, ack, node_id, client);
                    }
                    Some((enqueued_at, RegionMessage::LeaderAnnouncement(ack))) => {
                        // Every node, each over its own call (bounded like the others: the
                        // queue waits while no call is free).
                        for (node_id, client) in self.clients.clone() {
                            self.start_acknowledgement(
                                &mut calls,
                                enqueued_at,
                                ack.clone(),
                                node_id,
                                client,
                            );
                        }
                    }
                    None => return,
                },
            }
        }
    }

    /// The leader guess and its client.
    fn target(&self) -> (u64, Client) {
        let node_id = lock(&self.leader).target();
        let client = self
            .clients
            .iter()
            .find(|(id, _)| *id == node_id)
            .map(|(_, client)| client.clone())
            .expect("the leader tracker names only nodes with a client");
        (node_id, client)
    }

    /// Sends an acknowledgement, once, to `node_id`.
    fn start_acknowledgement(
        &mut self,
        calls: &mut CallsInFlight<Attempted>,
        enqueued_at: Instant,
        ack: proto::RegionBatchAck,
        node_id: u64,
        mut client: Client,
    ) {
        let send_at = self.line.send_at(enqueued_at);
        let answer_delay = self.line.answer_delay();
        let region = self.region.clone();
        let call_timeout = self.call_timeout;
        calls.start(send_at, answer_delay, async move {
            let answered = tokio::time::timeout(call_timeout, client.acknowledge(ack)).await;
            if !matches!(answered, Ok(Ok(_))) {
                tracing::debug!(%region, node_id, "an acknowledgement sent unasked was lost");
            }
            Attempted::Acknowledgement
        });
    }

    /// Starts an attempt of `delivery` on the leader guess. A batch from another node of the
    /// region while the call is open ends the call's wait: the region elected that node, and
    /// the old leader, paused or cut off, may hold the call until its timeout.
    fn start_delivery(
        &mut self,
        calls: &mut CallsInFlight<Attempted>,
        enqueued_at: Instant,
        delivery: Box<Delivery>,
    ) {
        let (node_id, mut client) = self.target();
        let send_at = self.line.send_at(enqueued_at);
        let answer_delay = self.line.answer_delay();
        let mut leader_moves = self.leader_moves.clone();
        leader_moves.borrow_and_update();
        let call_timeout = self.call_timeout;
        calls.start(send_at, answer_delay, async move {
            let call = client.deliver(delivery.epoch.clone());
            let moved = async {
                if leader_moves.changed().await.is_err() {
                    // The loop is gone; the queue closes next.
                    std::future::pending::<()>().await;
                }
            };
            let outcome = tokio::select! {
                answered = tokio::time::timeout(call_timeout, call) => match answered {
                    Ok(answered) => {
                        DeliveryOutcome::Answered(answered.map(tonic::Response::into_inner))
                    }
                    Err(_) => DeliveryOutcome::TimedOut,
                },
                () = moved => DeliveryOutcome::LeaderMoved,
            };
            Attempted::Delivery {
                delivery,
                node_id,
                outcome,
            }
        });
    }

    /// Takes an attempt's outcome: an acknowledgement goes to the coordinator loop, a refusal
    /// or a failure moves the leader guess and the part goes again, until the attempts run
    /// out.
    fn settle(&mut self, calls: &mut CallsInFlight<Attempted>, attempted: Attempted) {
        let Attempted::Delivery {
            mut delivery,
            node_id,
            outcome,
        } = attempted
        else {
            return;
        };
        let region = &self.region;
        match outcome {
            DeliveryOutcome::Answered(Ok(ack)) => match &ack.not_leader {
                Some(not_leader) => {
                    // The attempts are bounded and the coordinator resends from the region's
                    // acknowledged point: no wait before the next node.
                    let _ = lock(&self.leader).handle_not_leader(node_id, not_leader.leader_hint());
                    delivery.refusal = Some(ack);
                }
                None => {
                    if self.failing {
                        tracing::info!(%region, node_id, "region reachable again for sealed epochs");
                    }
                    self.failing = false;
                    lock(&self.leader).handle_success(node_id);
                    // A full loop queue drops the answer: the region answers again.
                    let _ = self.events.try_send(CoordinatorEvent::EpochAck(ack));
                    return;
                }
            },
            DeliveryOutcome::Answered(Err(status)) => {
                if !self.failing {
                    tracing::warn!(%region, node_id, code = ?status.code(), message = status.message(), "sealed epoch delivery failed; trying the region's next node");
                }
                self.failing = true;
                lock(&self.leader).handle_failure(node_id);
            }
            DeliveryOutcome::TimedOut => {
                if !self.failing {
                    tracing::warn!(%region, node_id, "sealed epoch delivery timed out; trying the region's next node");
                }
                self.failing = true;
                lock(&self.leader).handle_failure(node_id);
            }
            DeliveryOutcome::LeaderMoved => {
                tracing::debug!(%region, node_id, "a batch came from another node; delivering there");
            }
        }
        if delivery.attempt < REGION_DELIVERY_ATTEMPTS_MAX {
            delivery.attempt += 1;
            self.start_delivery(calls, Instant::now(), delivery);
        } else if let Some(refusal) = delivery.refusal {
            // A full loop queue drops it: the resend then waits for the backoff.
            let _ = self.events.try_send(CoordinatorEvent::EpochAck(refusal));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use dsss_raft_group::transport::OpenCallsGate;

    use dsss_wire::limits::ServerLimits;
    use dsss_wire::proto;
    use dsss_wire::proto::region_epochs_server::RegionEpochs;
    use tonic::{Request, Response, Status};

    use super::*;

    /// How a region node of the test answers deliveries.
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Answer {
        /// As the region's leader: the part is appended.
        Leader,
        /// Never (as a SIGSTOPped process with its connections open).
        Frozen,
        /// It does not lead and knows no leader (an election is in progress).
        NotLeader,
        /// As the region's leader, but each answer is held until `together` deliveries are
        /// open at once (or a second passed), then every answer comes at once: a region
        /// across a WAN, whose answers are on their way back while more epochs are sealed.
        HeldUntilOpen { together: usize },
    }

    /// A region node of the test.
    struct FakeRegionNode {
        answer: Answer,
        delivered: Arc<AtomicU64>,
        /// What [`Answer::HeldUntilOpen`] holds deliveries at.
        gate: Arc<OpenCallsGate>,
    }

    #[tonic::async_trait]
    impl RegionEpochs for FakeRegionNode {
        async fn deliver(
            &self,
            request: Request<proto::SealedEpoch>,
        ) -> Result<Response<proto::SealedEpochAck>, Status> {
            self.delivered.fetch_add(1, Ordering::SeqCst);
            match self.answer {
                Answer::HeldUntilOpen { .. } => {
                    self.gate.pass().await;
                    Ok(Response::new(proto::SealedEpochAck {
                        region: "region-a".to_owned(),
                        appended_through_epoch_number: request.into_inner().epoch_number,
                        ..proto::SealedEpochAck::default()
                    }))
                }
                Answer::Leader => Ok(Response::new(proto::SealedEpochAck {
                    region: "region-a".to_owned(),
                    appended_through_epoch_number: 1,
                    ..proto::SealedEpochAck::default()
                })),
                Answer::Frozen => std::future::pending().await,
                Answer::NotLeader => Ok(Response::new(proto::SealedEpochAck {
                    region: "region-a".to_owned(),
                    not_leader: Some(proto::NotLeader::default()),
                    ..proto::SealedEpochAck::default()
                })),
            }
        }

        async fn read_epochs(
            &self,
            _: Request<proto::ReadEpochsRequest>,
        ) -> Result<Response<proto::ReadEpochsReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn read_checkpoint(
            &self,
            _: Request<proto::ReadCheckpointRequest>,
        ) -> Result<Response<proto::ReadCheckpointReply>, Status> {
            Err(Status::unimplemented("not in this test"))
        }

        async fn acknowledge(
            &self,
            _: Request<proto::RegionBatchAck>,
        ) -> Result<Response<proto::RegionBatchAckReceipt>, Status> {
            Ok(Response::new(proto::RegionBatchAckReceipt {}))
        }
    }

    async fn start_node(node_id: u64, answer: Answer) -> (NodeAddress, Arc<AtomicU64>) {
        let (address, delivered, _) = start_node_counting_open(node_id, answer).await;
        (address, delivered)
    }

    /// [`start_node`], with the gate of an [`Answer::HeldUntilOpen`] node.
    async fn start_node_counting_open(
        node_id: u64,
        answer: Answer,
    ) -> (NodeAddress, Arc<AtomicU64>, Arc<OpenCallsGate>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let delivered = Arc::new(AtomicU64::new(0));
        let together = match answer {
            Answer::HeldUntilOpen { together } => together,
            _ => 1,
        };
        let gate = Arc::new(OpenCallsGate::new(together, Duration::from_secs(1)));
        let node = FakeRegionNode {
            answer,
            delivered: Arc::clone(&delivered),
            gate: Arc::clone(&gate),
        };
        let limits = ServerLimits::default();
        let router = dsss_wire::tls::server_builder(&limits)
            .add_service(dsss_wire::grpc::region_epochs_server(node));
        tokio::spawn(async move {
            let _ = Security::Plaintext
                .serve(router, listener, &limits, std::future::pending())
                .await;
        });
        (NodeAddress { node_id, address }, delivered, gate)
    }

    /// Parts sealed while earlier ones wait for their answers are not held back: the task
    /// keeps up to [`REGION_CALLS_IN_FLIGHT_MAX`] deliveries open together, never more (one
    /// delivery per WAN round trip would fall behind a sealed epoch per epoch interval without
    /// end), and every acknowledgement reaches the coordinator's loop, those queued past the
    /// bound included.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parts_are_delivered_without_waiting_for_earlier_answers_up_to_the_bound() {
        const PARTS: usize = REGION_CALLS_IN_FLIGHT_MAX + 8;
        let (node, delivered, gate) = start_node_counting_open(
            11,
            Answer::HeldUntilOpen {
                together: REGION_CALLS_IN_FLIGHT_MAX,
            },
        )
        .await;
        let (events, received) = std::sync::mpsc::sync_channel(PARTS);
        let sender = RegionSender::start(
            RegionId::new("region-a".to_owned()).unwrap(),
            &[node],
            DelayLine::new(None, 1),
            &Security::Plaintext,
            events,
        );
        for epoch_number in 1..=PARTS as u64 {
            sender.send(RegionMessage::Epoch(proto::SealedEpoch {
                epoch_number,
                ..proto::SealedEpoch::default()
            }));
        }
        let acknowledged = tokio::task::spawn_blocking(move || {
            let mut acknowledged = std::collections::BTreeSet::new();
            while acknowledged.len() < PARTS {
                match received.recv_timeout(Duration::from_secs(60)) {
                    Ok(CoordinatorEvent::EpochAck(ack)) => {
                        acknowledged.insert(ack.appended_through_epoch_number);
                    }
                    Ok(_) => {}
                    Err(error) => panic!("{} of {PARTS} acknowledged: {error}", acknowledged.len()),
                }
            }
            acknowledged
        })
        .await
        .unwrap();
        assert_eq!(acknowledged, (1..=PARTS as u64).collect());
        assert_eq!(delivered.load(Ordering::SeqCst), PARTS as u64);
        assert_eq!(
            gate.most_open(),
            REGION_CALLS_IN_FLIGHT_MAX,
            "as many parts as the bound allows were in flight at once, and no more"
        );
    }

    /// A region's leader froze with a sealed epoch part in flight to it, and the region elected
    /// another node, whose batch reached the coordinator: the part goes to the new leader at
    /// once instead of waiting out the call to the frozen one (here an hour, so only the
    /// batch can move it).
    #[tokio::test]
    async fn a_batch_from_a_new_leader_moves_a_delivery_stuck_on_a_frozen_one() {
        let (frozen, frozen_delivered) = start_node(11, Answer::Frozen).await;
        let (elected, elected_delivered) = start_node(12, Answer::Leader).await;
        let (events, received) = std::sync::mpsc::sync_channel(16);
        let region = RegionId::new("region-a".to_owned()).unwrap();
        let sender = RegionSender::start_with_call_timeout(
            region,
            &[frozen, elected],
            DelayLine::new(None, 1),
            &Security::Plaintext,
            events,
            Duration::from_secs(3_600),
        );
        sender.guess_leader(11);
        sender.send(RegionMessage::Epoch(proto::SealedEpoch {
            epoch_number: 1,
            ..proto::SealedEpoch::default()
        }));
        while frozen_delivered.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(elected_delivered.load(Ordering::SeqCst), 0);
        // Node 12 submitted a batch: it leads the region now.
        sender.guess_leader(12);
        let acknowledged =
            tokio::task::spawn_blocking(move || received.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap();
        match acknowledged {
            Ok(CoordinatorEvent::EpochAck(ack)) => {
                assert_eq!(ack.appended_through_epoch_number, 1);
            }
            Ok(_) => panic!("the sender fed back something other than an epoch acknowledgement"),
            Err(error) => panic!("the part never reached the new leader: {error}"),
        }
        assert_eq!(elected_delivered.load(Ordering::SeqCst), 1);
        // A guess that names the node already targeted moves nothing.
        assert_eq!(*sender.leader_moves.borrow(), 1);
        sender.guess_leader(12);
        assert_eq!(*sender.leader_moves.borrow(), 1);
    }

    /// Every node of a region answers that it does not lead (an election is in progress): once
    /// the attempts ran out, the coordinator's loop is told of the refusal, so that its replica
    /// resends the part one resend interval after the last instead of after its backoff, as
    /// in the simulator.
    #[tokio::test]
    async fn a_part_every_node_refused_as_not_leader_is_reported_to_the_loop() {
        let (first, first_delivered) = start_node(11, Answer::NotLeader).await;
        let (second, second_delivered) = start_node(12, Answer::NotLeader).await;
        let (events, received) = std::sync::mpsc::sync_channel(16);
        let region = RegionId::new("region-a".to_owned()).unwrap();
        let sender = RegionSender::start_with_call_timeout(
            region,
            &[first, second],
            DelayLine::new(None, 1),
            &Security::Plaintext,
            events,
            Duration::from_secs(60),
        );
        sender.send(RegionMessage::Epoch(proto::SealedEpoch {
            epoch_number: 1,
            ..proto::SealedEpoch::default()
        }));
        let reported =
            tokio::task::spawn_blocking(move || received.recv_timeout(Duration::from_secs(60)))
                .await
                .unwrap();
        match reported {
            Ok(CoordinatorEvent::EpochAck(ack)) => {
                assert!(ack.not_leader.is_some(), "{ack:?}");
                assert_eq!(ack.appended_through_epoch_number, 0);
            }
            Ok(_) => panic!("the sender fed back something other than an epoch acknowledgement"),
            Err(error) => panic!("the refusal never reached the loop: {error}"),
        }
        let attempts =
            first_delivered.load(Ordering::SeqCst) + second_delivered.load(Ordering::SeqCst);
        assert_eq!(attempts, REGION_DELIVERY_ATTEMPTS_MAX as u64);
    }
}
