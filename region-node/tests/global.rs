//! The region side of the global tier, sans-IO: region nodes of real raft-rs groups routed by
//! hand, and a coordinator written in this file after docs/global-protocol.md (batches,
//! suspicion, readmission, sealing) that seals epochs from the batches the region leader ships.
//! Reference: docs/design.md section 2 ("global tier") and docs/global-protocol.md sections 3,
//! 6 and 7 (the region side).

use std::collections::{BTreeMap, BTreeSet};

use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::testing::{Network, TestNode};
use dsss_raft_group::{MemoryStore, StoreIo};
use dsss_region_node::global::adoption::{CheckpointRead, GlobalPoint};
use dsss_region_node::global::catch_up::{EPOCHS_READ_PARTS_MAX, EPOCHS_READ_REPLY_BYTES_MAX};
use dsss_region_node::global::{
    EPOCH_PARTS_PROPOSED_MAX, EpochPart, GLOBAL_UNSEALED_SIZE_BYTES_MAX, OUTGOING_BATCHES_MAX,
};
use dsss_region_node::{
    CheckpointUpload, EpochsRead, GlobalMessageError, LogEntry, LogEntryKind, ProposeError,
    ProposeRequest, RegionNode, RegionNodeConfig, RegionOutput, Reply, SessionReply, ToCoordinator,
};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
    proto,
};

const NOW_US: u64 = 1_700_000_000_000_000;
const TICK_US: u64 = 10_000;
const REGION: &str = "eu-west";
const OTHER_REGION: &str = "us-east";

fn call(client: u64, sequence: u64, scope: Scope, argument_bytes: usize) -> ProposeRequest {
    ProposeRequest {
        client_id: ClientId(client),
        request_sequence: RequestSequence(sequence),
        object_id: ObjectId::new("lobby/main").unwrap(),
        method_id: MethodId(1),
        arguments: Arguments::new(vec![7; argument_bytes]).unwrap(),
        scope,
    }
}

fn global_call(client: u64, sequence: u64) -> ProposeRequest {
    call(client, sequence, Scope::Global, 10)
}

// The coordinator, after docs/global-protocol.md sections 4 to 6, kept to what these tests
// need: one replica, epochs in one part unless asked otherwise.

struct CoordinatorRegion {
    incarnation: u64,
    member: bool,
    next_batch_number: u64,
    closed: Timestamp,
    floor: Timestamp,
}

struct FakeCoordinator {
    regions: BTreeMap<String, CoordinatorRegion>,
    watermark: Timestamp,
    next_epoch: u64,
    pending: Vec<Record>,
    epochs: Vec<proto::SealedEpoch>,
    /// The oldest epoch it still holds, as its acknowledgements say (0: not said).
    first_retained: u64,
    now: Timestamp,
}

impl FakeCoordinator {
    fn new(regions: &[&str]) -> FakeCoordinator {
        let regions = regions
            .iter()
            .map(|name| {
                (
                    (*name).to_owned(),
                    CoordinatorRegion {
                        incarnation: 1,
                        member: true,
                        next_batch_number: 1,
                        closed: Timestamp::ZERO,
                        floor: Timestamp::ZERO,
                    },
                )
            })
            .collect();
        FakeCoordinator {
            regions,
            watermark: Timestamp::ZERO,
            next_epoch: 1,
            pending: Vec::new(),
            epochs: Vec::new(),
            first_retained: 0,
            now: Timestamp::new(NOW_US, 0),
        }
    }

    fn handle_batch(&mut self, batch: proto::RegionBatch) -> proto::RegionBatchAck {
        let watermark = self.watermark;
        let region = self.regions.get_mut(&batch.region).unwrap();
        let accepted = if batch.incarnation < region.incarnation {
            false
        } else if batch.incarnation > region.incarnation && !region.member {
            region.incarnation = batch.incarnation;
            region.member = true;
            region.next_batch_number = 1;
            region.closed = region.closed.max(watermark);
            region.floor = watermark;
            true
        } else {
            region.member && batch.incarnation == region.incarnation
        };
        if accepted && batch.batch_number == region.next_batch_number {
            for record in batch.records {
                let mut record = Record::try_from(record).unwrap();
                record.timestamp = record.timestamp.max(region.floor.successor());
                region.floor = record.timestamp;
                self.pending.push(record);
            }
            let closed = Timestamp::try_from(batch.closed_timestamp.unwrap()).unwrap();
            region.closed = region.closed.max(closed).max(region.floor);
            region.next_batch_number += 1;
            self.seal();
        }
        let region = &self.regions[&batch.region];
        proto::RegionBatchAck {
            region: batch.region,
            acknowledged_through_batch_number: region.next_batch_number - 1,
            member: region.member,
            watermark: Some(self.watermark.into()),
            not_leader: None,
            sender_time: Some(self.now.into()),
            incarnation: region.incarnation,
            first_retained_epoch_number: self.first_retained,
            // These tests drive every close by hand; the fake always asks for them.
            closes_wanted: true,
            last_sealed_record: None,
            last_sealed_record_unknown: false,
            // A coordinator that does not say who leads in which term.
            leader_node_id: 0,
            leader_term: 0,
        }
    }

    /// A region whose batches this test does not ship: its closed timestamp is set by hand.
    fn advance_closed(&mut self, name: &str, closed: Timestamp) {
        let region = self.regions.get_mut(name).unwrap();
        region.closed = region.closed.max(closed);
        self.seal();
    }

    fn suspect(&mut self, name: &str) {
        let region = self.regions.get_mut(name).unwrap();
        region.member = false;
        self.pending
            .retain(|record| record.origin_region.as_str() != name);
        self.seal();
    }

    fn seal(&mut self) {
        let Some(new_watermark) = self
            .regions
            .values()
            .filter(|region| region.member)
            .map(|region| region.closed)
            .min()
        else {
            return;
        };
        if new_watermark <= self.watermark {
            return;
        }
        let key = |record: &Record| {
            (
                record.timestamp,
                record.origin_region.clone(),
                record.request_sequence,
            )
        };
        self.pending.sort_by_key(key);
        let (sealed, rest): (Vec<Record>, Vec<Record>) = self
            .pending
            .drain(..)
            .partition(|record| record.timestamp <= new_watermark);
        self.pending = rest;
        let previous = (self.next_epoch > 1).then_some(self.watermark.into());
        self.epochs.push(proto::SealedEpoch {
            epoch_number: self.next_epoch,
            watermark: Some(new_watermark.into()),
            previous_watermark: previous,
            records: sealed.into_iter().map(Into::into).collect(),
            part_index: 0,
            part_count: 1,
            member_regions: self
                .regions
                .iter()
                .filter(|(_, region)| region.member)
                .map(|(name, _)| name.clone())
                .collect(),
            sender_node_id: 100,
            sender_time: Some(self.now.into()),
        });
        self.watermark = new_watermark;
        self.next_epoch += 1;
    }
}

/// An epoch split into parts of `records_per_part` records.
fn split(epoch: &proto::SealedEpoch, records_per_part: usize) -> Vec<proto::SealedEpoch> {
    let chunks: Vec<&[proto::Record]> = epoch.records.chunks(records_per_part).collect();
    let part_count = chunks.len().max(1) as u32;
    (0..part_count)
        .map(|index| proto::SealedEpoch {
            records: chunks
                .get(index as usize)
                .map(|chunk| chunk.to_vec())
                .unwrap_or_default(),
            part_index: index,
            part_count,
            ..epoch.clone()
        })
        .collect()
}

/// A batch as shipped: (incarnation, batch number, closed, record keys), and the shipping
/// leader's next log position then.
type Shipped = (u64, u64, Timestamp, Vec<(u64, u64)>, u64);

struct Member {
    node: Option<RegionNode>,
    store: MemoryStore,
    config: RegionNodeConfig,
    replies: Vec<Reply>,
    sessions: Vec<SessionReply>,
    /// Reads of released epochs this member asked of other regions.
    epochs_reads: Vec<EpochsRead>,
    /// Reads of global objects' checkpoints this member asked of other regions.
    checkpoint_reads: Vec<CheckpointRead>,
}

/// The region's link to the coordinator, which every member's ready round ships through.
struct CoordinatorLink {
    coordinator: FakeCoordinator,
    /// Every batch shipped, in order.
    shipped: Vec<Shipped>,
    /// Whether shipped batches reach the coordinator.
    reachable: bool,
    /// What the coordinator's answers say of closes: the fake always wants them, unless a
    /// test makes the region idle.
    closes_wanted: bool,
}

impl TestNode for Member {
    type Shared = CoordinatorLink;

    fn receive(&mut self, message: &[u8]) -> bool {
        let Some(node) = self.node.as_mut() else {
            return false;
        };
        let _ = node.handle_raft_message(message);
        true
    }

    fn ready(&mut self, now_us: u64, link: &mut CoordinatorLink) -> Vec<Message> {
        let Some(node) = self.node.as_mut() else {
            return Vec::new();
        };
        let mut io = StoreIo::new(&mut self.store);
        node.handle_ready(&mut io).unwrap();
        let outbox = std::mem::take(&mut io.outbox);
        let next_position = node.region_log().next_position();
        while let Some(output) = node.poll_output() {
            match output {
                RegionOutput::Reply(reply) => self.replies.push(reply),
                RegionOutput::SessionReply(reply) => self.sessions.push(reply),
                RegionOutput::EpochsRead(read) => self.epochs_reads.push(read),
                RegionOutput::CheckpointRead(read) => self.checkpoint_reads.push(read),
                RegionOutput::ToCoordinator(ToCoordinator::Batch(batch)) => {
                    link.shipped.push((
                        batch.incarnation,
                        batch.batch_number,
                        Timestamp::try_from(batch.closed_timestamp.unwrap()).unwrap(),
                        batch
                            .records
                            .iter()
                            .map(|record| (record.client_id, record.request_sequence))
                            .collect(),
                        next_position,
                    ));
                    if link.reachable {
                        let mut ack = link.coordinator.handle_batch(batch);
                        ack.closes_wanted &= link.closes_wanted;
                        node.handle_batch_ack(now_us, ack).unwrap();
                    }
                }
                // Nobody here streams the log, waits on a barrier, uploads checkpoints or
                // closes a session, and no member falls behind the raft log far enough to need
                // a snapshot.
                RegionOutput::FetchLogRange(_)
                | RegionOutput::LogEvent(_)
                | RegionOutput::SyncReply(_)
                | RegionOutput::CheckpointReply(_)
                | RegionOutput::SessionCloseReply(_)
                | RegionOutput::SealedEpochRead(_)
                | RegionOutput::DivergenceAlarm(_) => {}
            }
        }
        outbox
    }

    fn tick(&mut self, now_us: u64) {
        if let Some(node) = self.node.as_mut() {
            node.handle_tick(now_us);
        }
    }

    fn is_leader(&self) -> bool {
        self.node.as_ref().is_some_and(RegionNode::is_leader)
    }
}

/// The members of a region over the in-memory test network, linked to a fake coordinator.
struct Region {
    network: Network<Member>,
}

impl Region {
    fn new(ids: &[u64], coordinator_regions: &[&str]) -> Region {
        Region::named(REGION, ids, coordinator_regions)
    }

    /// The members `ids` of region `name`; the other `coordinator_regions` are the regions
    /// it reads released epochs from.
    fn named(name: &str, ids: &[u64], coordinator_regions: &[&str]) -> Region {
        Region::named_with(name, ids, coordinator_regions, |_| {})
    }

    /// As [`Region::named`], with every member's configuration changed by `configure`.
    fn named_with(
        name: &str,
        ids: &[u64],
        coordinator_regions: &[&str],
        configure: impl Fn(&mut RegionNodeConfig),
    ) -> Region {
        let link = CoordinatorLink {
            coordinator: FakeCoordinator::new(coordinator_regions),
            shipped: Vec::new(),
            reachable: true,
            closes_wanted: true,
        };
        let mut network = Network::with_shared(NOW_US, TICK_US, link);
        for &id in ids {
            let mut config = RegionNodeConfig::new(id, ids.to_vec(), RegionId::new(name).unwrap());
            config.catch_up_regions = coordinator_regions
                .iter()
                .filter(|other| **other != name)
                .map(|other| RegionId::new(*other).unwrap())
                .collect();
            config.proposal_timeout_ticks = 1_000;
            config.epoch_interval_us = 2 * TICK_US;
            configure(&mut config);
            let mut store = MemoryStore::new();
            let node = RegionNode::open(config.clone(), &mut store).unwrap();
            network.insert(
                id,
                Member {
                    node: Some(node),
                    store,
                    config,
                    replies: Vec::new(),
                    sessions: Vec::new(),
                    epochs_reads: Vec::new(),
                    checkpoint_reads: Vec::new(),
                },
            );
        }
        Region { network }
    }

    fn now_us(&self) -> u64 {
        self.network.now_us()
    }

    fn link(&self) -> &CoordinatorLink {
        self.network.shared()
    }

    fn link_mut(&mut self) -> &mut CoordinatorLink {
        self.network.shared_mut()
    }

    fn node(&self, id: u64) -> &RegionNode {
        self.network.node(id).node.as_ref().unwrap()
    }

    fn node_mut(&mut self, id: u64) -> &mut RegionNode {
        self.network.node_mut(id).node.as_mut().unwrap()
    }

    fn tick(&mut self, ticks: usize) {
        self.network.tick(ticks);
    }

    fn leader(&self) -> Option<u64> {
        self.network.leader()
    }

    /// Elects a leader, and opens the sessions of the test clients (ids 1 to 9) once:
    /// sessions are replicated state, so later leaders know them.
    fn elect(&mut self) -> u64 {
        let leader = self.network.elect(3);
        if self.node(leader).region_log().dedup().session_count() == 0 {
            let now_us = self.now_us();
            for client in 1..=9 {
                self.node_mut(leader)
                    .handle_open_session(now_us, client, client);
            }
            self.network.settle();
            let opened = std::mem::take(&mut self.network.node_mut(leader).sessions);
            assert_eq!(opened.len(), 9, "{opened:?}");
            assert!(
                opened.iter().all(|reply| reply.result.is_ok()),
                "{opened:?}"
            );
        }
        leader
    }

    fn propose(&mut self, id: u64, request: ProposeRequest) {
        let now_us = self.now_us();
        self.node_mut(id).handle_propose(now_us, request);
        self.network.settle();
    }

    fn take_replies(&mut self, id: u64) -> Vec<Reply> {
        std::mem::take(&mut self.network.node_mut(id).replies)
    }

    /// Delivers every epoch the coordinator sealed from `from_epoch` on to `to`, part by
    /// part, as the coordinator leader would; returns the errors of refused deliveries.
    fn deliver_epochs(&mut self, to: u64, from_epoch: u64) -> Vec<GlobalMessageError> {
        let epochs: Vec<proto::SealedEpoch> = self
            .link()
            .coordinator
            .epochs
            .iter()
            .filter(|epoch| epoch.epoch_number >= from_epoch)
            .cloned()
            .collect();
        let mut errors = Vec::new();
        for epoch in epochs {
            let now_us = self.now_us();
            if let Err(error) = self.node_mut(to).handle_sealed_epoch(now_us, epoch) {
                errors.push(error);
            }
            self.network.settle();
        }
        errors
    }

    /// The newest read of released epochs member `id` asked for, dropping older ones.
    fn take_epochs_read(&mut self, id: u64) -> Option<EpochsRead> {
        std::mem::take(&mut self.network.node_mut(id).epochs_reads).pop()
    }

    /// Member `id` serves `request` from its log and store.
    fn serve_epochs_read(
        &mut self,
        id: u64,
        request: proto::ReadEpochsRequest,
    ) -> proto::ReadEpochsReply {
        let now_us = self.now_us();
        let member = self.network.node_mut(id);
        let node = member.node.as_mut().unwrap();
        node.answer_epochs_read(&member.store, now_us, request)
    }

    /// Hands `reply` to member `id` as the answer to its read `read_id`.
    fn answer_epochs_read(
        &mut self,
        id: u64,
        read_id: u64,
        reply: proto::ReadEpochsReply,
    ) -> Result<usize, GlobalMessageError> {
        let now_us = self.now_us();
        let outcome = self
            .node_mut(id)
            .handle_epochs_read_reply(now_us, read_id, Ok(reply));
        self.network.settle();
        outcome
    }

    /// The global sequence in member `id`'s log: every sequenced record and epoch end, as
    /// (epoch, index in epoch or u32::MAX for an end, client, sequence, timestamp).
    fn global_sequence(&self, id: u64) -> Vec<(u64, u32, u64, u64, Timestamp)> {
        self.node(id)
            .region_log()
            .cached_records()
            .filter_map(|stored| match &stored.entry {
                LogEntry::SequencedGlobal {
                    epoch_number,
                    index_in_epoch,
                    record,
                } => Some((
                    *epoch_number,
                    *index_in_epoch,
                    record.client_id.get(),
                    record.request_sequence.get(),
                    record.timestamp,
                )),
                LogEntry::EpochSealed {
                    epoch_number,
                    watermark,
                    ..
                } => Some((*epoch_number, u32::MAX, 0, 0, *watermark)),
                _ => None,
            })
            .collect()
    }

    fn crash(&mut self, id: u64) {
        let member = self.network.node_mut(id);
        member.node = None;
        member.store.crash();
    }

    fn restart(&mut self, id: u64) {
        let member = self.network.node_mut(id);
        member.node = Some(RegionNode::open(member.config.clone(), &mut member.store).unwrap());
    }

    /// The entries of member `id`'s log: (position, kind, client, sequence, timestamp).
    fn entries(&self, id: u64) -> Vec<(u64, LogEntryKind, u64, u64, Timestamp)> {
        self.node(id)
            .region_log()
            .cached_records()
            .map(|stored| {
                let (client, sequence, timestamp) =
                    stored
                        .entry
                        .record()
                        .map_or((0, 0, Timestamp::ZERO), |record| {
                            (
                                record.client_id.get(),
                                record.request_sequence.get(),
                                record.timestamp,
                            )
                        });
                (
                    stored.position,
                    stored.entry.kind(),
                    client,
                    sequence,
                    timestamp,
                )
            })
            .collect()
    }
}

fn proposed(client: u64, sequence: u64, position: u64) -> Reply {
    Reply::Proposed {
        client_id: ClientId(client),
        request_sequence: RequestSequence(sequence),
        position,
    }
}

fn count_kind(
    entries: &[(u64, LogEntryKind, u64, u64, Timestamp)],
    kind: LogEntryKind,
    key: (u64, u64),
) -> usize {
    entries
        .iter()
        .filter(|entry| entry.1 == kind && (entry.2, entry.3) == key)
        .count()
}

#[test]
fn a_global_call_completes_only_when_sealed_at_its_sequenced_position() {
    let mut region = Region::new(&[1, 2, 3], &[REGION]);
    let leader = region.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    region.propose(follower, global_call(7, 1));
    region.propose(leader, call(8, 1, Scope::Regional, 10));
    assert_eq!(region.take_replies(leader), vec![proposed(8, 1, 2)]);
    assert!(
        region.take_replies(follower).is_empty(),
        "a pending global call is not answered"
    );
    // A retry while pending waits too and adds no second pending record.
    region.propose(follower, global_call(7, 1));
    region.propose(leader, global_call(7, 1));
    assert!(region.take_replies(follower).is_empty());
    // The pending record took position 1 and no other; as an entry of no object it never
    // holds truncation back, so the log may already have dropped it (docs/design.md section 2,
    // "Checkpoints"), but the region's global state keeps the one unsealed call.
    let log = region.node(follower).region_log();
    assert_eq!(log.next_position(), 3);
    let unsealed: Vec<(u64, u64)> = log
        .global()
        .unsealed()
        .map(|(_, unsealed)| {
            (
                unsealed.record.client_id.get(),
                unsealed.record.request_sequence.get(),
            )
        })
        .collect();
    assert_eq!(unsealed, vec![(7, 1)]);
    let entries = region.entries(follower);
    assert!(count_kind(&entries, LogEntryKind::PendingGlobal, (7, 1)) <= 1);

    // The next CloseBatch ships the record; the coordinator seals it at once (one region).
    region.tick(4);
    assert!(
        region
            .link()
            .shipped
            .iter()
            .any(|batch| batch.3 == vec![(7, 1)])
    );
    let epoch_with_record = region
        .link()
        .coordinator
        .epochs
        .iter()
        .find(|epoch| !epoch.records.is_empty())
        .unwrap()
        .epoch_number;
    assert!(
        region.take_replies(follower).is_empty(),
        "not delivered yet"
    );
    assert!(region.deliver_epochs(leader, 1).is_empty());
    region.tick(1);
    let entries = region.entries(follower);
    let sequenced = entries
        .iter()
        .find(|entry| entry.1 == LogEntryKind::SequencedGlobal && (entry.2, entry.3) == (7, 1))
        .unwrap()
        .0;
    assert_eq!(
        region.take_replies(follower),
        vec![proposed(7, 1, sequenced)]
    );
    assert_eq!(
        region.take_replies(leader),
        vec![proposed(7, 1, sequenced)],
        "the waiting retry at the leader completes too"
    );
    // Every epoch ends with its end entry; every member holds the same log.
    let ends = entries
        .iter()
        .filter(|entry| entry.1 == LogEntryKind::EpochSealed)
        .count();
    assert_eq!(ends as u64, region.link().coordinator.next_epoch - 1);
    assert!(epoch_with_record <= region.node(leader).status().global.epochs_applied_through);
    for id in [1, 2, 3] {
        assert_eq!(region.entries(id), entries, "member {id}");
    }
    // A later retry gets the sequenced position at once and appends nothing.
    let next_position = region.node(leader).region_log().next_position();
    region.propose(leader, global_call(7, 1));
    assert_eq!(region.take_replies(leader), vec![proposed(7, 1, sequenced)]);
    assert_eq!(
        region.node(leader).region_log().next_position(),
        next_position
    );
    // The leader acknowledged what it appended.
    let now_us = region.now_us();
    let last_ack = region.node_mut(leader).sealed_epoch_ack(now_us);
    assert_eq!(
        last_ack.appended_through_epoch_number,
        region.link().coordinator.next_epoch - 1
    );
    // A follower refuses deliveries.
    let errors = region.deliver_epochs(follower, 1);
    assert!(matches!(
        errors[0],
        GlobalMessageError::NotLeader { leader_hint: Some(hint) } if hint == leader
    ));
}

#[test]
fn records_applied_after_a_close_batch_exceed_its_closed_timestamp_across_leader_changes() {
    let mut region = Region::new(&[1, 2, 3], &[REGION]);
    region.link_mut().reachable = false;
    let mut leader = region.elect();
    let mut client_sequence = 0;
    for round in 0..4 {
        for _ in 0..3 {
            client_sequence += 1;
            let scope = if client_sequence % 2 == 0 {
                Scope::Global
            } else {
                Scope::Regional
            };
            // A proposer whose clock is far behind: its stamp is below every closed
            // timestamp already promised.
            let stale_us = NOW_US - 5_000_000;
            region
                .node_mut(leader)
                .handle_propose(stale_us, call(1, client_sequence, scope, 10));
            region.network.settle();
        }
        region.tick(3);
        // Hand leadership to another member.
        let next = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
        region.node_mut(leader).transfer_leader(next);
        region.network.settle();
        region.tick(5);
        leader = region.leader().unwrap();
        assert!(round < 4);
    }
    assert!(
        region.link().shipped.len() >= 4,
        "batches were closed and shipped"
    );
    let entries = region.entries(leader);
    let timestamps: Vec<Timestamp> = entries.iter().map(|entry| entry.4).collect();
    assert!(
        timestamps.windows(2).all(|pair| pair[0] < pair[1]),
        "timestamps increase strictly in log order: {timestamps:?}"
    );
    // Every entry applied after a batch was closed (and shipped) has a greater timestamp,
    // and every record the batch holds a lower or equal one: the closed-timestamp promise.
    let mut previous_closed = Timestamp::ZERO;
    let mut seen = BTreeSet::new();
    // Resends repeat a batch: each counts from its first shipping.
    let first_shipped = region
        .link()
        .shipped
        .iter()
        .filter(|batch| seen.insert((batch.0, batch.1)));
    for (_, _, closed, keys, next_position) in first_shipped {
        assert!(
            *closed >= previous_closed,
            "closed timestamps do not go back"
        );
        previous_closed = *closed;
        for entry in entries.iter().filter(|entry| entry.0 >= *next_position) {
            assert!(
                entry.4 > *closed,
                "{entry:?} applied after closing at {closed}"
            );
        }
        for entry in entries
            .iter()
            .filter(|entry| keys.contains(&(entry.2, entry.3)))
        {
            assert!(
                entry.4 <= *closed,
                "{entry:?} in a batch closed at {closed}"
            );
        }
    }
    assert!(
        region.node(leader).status().global.last_assigned >= previous_closed,
        "the promise is replicated state"
    );
    for id in [1, 2, 3] {
        assert_eq!(region.entries(id), entries, "member {id}");
    }
}

#[test]
fn duplicate_epochs_and_parts_are_ignored() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    for sequence in 1..=5 {
        region.propose(leader, global_call(3, sequence));
    }
    region.tick(3);
    // The other region's closed timestamp lets the coordinator seal.
    let far = Timestamp::new(NOW_US + 60_000_000, 0);
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, far);
    let epoch = region
        .link()
        .coordinator
        .epochs
        .iter()
        .find(|epoch| epoch.records.len() == 5)
        .cloned()
        .unwrap();
    // Earlier epochs first (they may be empty).
    for earlier in region.link().coordinator.epochs.clone() {
        if earlier.epoch_number < epoch.epoch_number {
            let now_us = region.now_us();
            region
                .node_mut(leader)
                .handle_sealed_epoch(now_us, earlier)
                .unwrap();
            region.network.settle();
        }
    }
    let parts = split(&epoch, 2);
    assert_eq!(parts.len(), 3);
    let now_us = region.now_us();
    // Out of order, then in order with every part twice.
    for part in [
        &parts[1], &parts[0], &parts[0], &parts[2], &parts[1], &parts[1], &parts[2],
    ] {
        region
            .node_mut(leader)
            .handle_sealed_epoch(now_us, part.clone())
            .unwrap();
        region.network.settle();
    }
    let entries = region.entries(leader);
    assert_eq!(
        entries
            .iter()
            .filter(|entry| entry.1 == LogEntryKind::SequencedGlobal)
            .count(),
        5
    );
    assert_eq!(
        entries
            .iter()
            .filter(|entry| entry.1 == LogEntryKind::EpochSealed)
            .count() as u64,
        epoch.epoch_number
    );
    // Sequenced records keep their index in the epoch across parts.
    let log = region.node(leader).region_log();
    let indexes: Vec<u32> = log
        .cached_records()
        .filter_map(|stored| match &stored.entry {
            LogEntry::SequencedGlobal { index_in_epoch, .. } => Some(*index_in_epoch),
            _ => None,
        })
        .collect();
    assert_eq!(indexes, vec![0, 1, 2, 3, 4]);
    let next_position = log.next_position();
    let replies = region.take_replies(leader);
    assert_eq!(replies.len(), 5, "each call answered once: {replies:?}");
    let now_us = region.now_us();
    let ack = region.node_mut(leader).sealed_epoch_ack(now_us);
    assert_eq!(ack.appended_through_epoch_number, epoch.epoch_number);
    assert_eq!(ack.appended_parts_of_next_epoch, 0);
    // The whole epoch once more: acknowledged, nothing appended.
    assert!(region.deliver_epochs(leader, 1).is_empty());
    assert_eq!(
        region.node(leader).region_log().next_position(),
        next_position
    );
}

#[test]
fn a_removed_region_reships_its_unsealed_records_in_its_next_incarnation() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    for sequence in 1..=3 {
        region.propose(leader, global_call(5, sequence));
    }
    region.tick(3);
    assert!(region.link().shipped.iter().any(|batch| batch.3.len() == 3));
    // The coordinator suspects the region (it dropped the region's records) and seals
    // without it.
    region.link_mut().coordinator.suspect(REGION);
    let far = Timestamp::new(NOW_US + 60_000_000, 0);
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, far);
    assert!(region.deliver_epochs(leader, 1).is_empty());
    let status = region.node(leader).status().global;
    assert!(!status.member);
    assert_eq!(status.incarnation, 2);
    assert_eq!(status.unsealed_records, 3, "nothing was sealed");
    // The next CloseBatch ships them as batch 1 of incarnation 2; the coordinator readmits
    // the region and seals them above the watermark it had reached.
    let first_new_epoch = region.link().coordinator.next_epoch;
    region.tick(3);
    let reshipped = region
        .link()
        .shipped
        .iter()
        .find(|batch| batch.0 == 2 && batch.1 == 1)
        .unwrap();
    assert_eq!(reshipped.3, vec![(5, 1), (5, 2), (5, 3)]);
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + 120_000_000, 0));
    assert!(region.deliver_epochs(leader, first_new_epoch).is_empty());
    region.tick(1);
    let status = region.node(leader).status().global;
    assert!(status.member, "listed again");
    assert_eq!(status.unsealed_records, 0);
    let entries = region.entries(leader);
    for sequence in 1..=3 {
        assert_eq!(
            count_kind(&entries, LogEntryKind::SequencedGlobal, (5, sequence)),
            1,
            "sealed exactly once"
        );
    }
    let mut replies = region.take_replies(leader);
    replies.sort_by_key(Reply::key);
    assert_eq!(replies.len(), 3);
    for reply in replies {
        let Reply::Proposed { position, .. } = reply else {
            panic!("{reply:?}");
        };
        let entry = entries
            .iter()
            .find(|entry| entry.0 == position)
            .expect("the log holds the sequenced record");
        assert_eq!(entry.1, LogEntryKind::SequencedGlobal);
    }
    for id in [1, 2, 3] {
        assert_eq!(region.entries(id), entries, "member {id}");
    }
}

/// After a readmission the coordinator holds the region's closed timestamp at or above the
/// watermark it had reached, far above the closed timestamps of the batches the region closes
/// next. A sealed epoch that lists the region again must not make it forget those batches
/// before the coordinator took them: they are resent until acknowledged, and their records
/// are sealed once each (docs/global-protocol.md sections 3 and 6).
#[test]
fn batches_closed_after_a_readmission_are_resent_until_the_coordinator_takes_them() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    for sequence in 1..=3 {
        region.propose(leader, global_call(5, sequence));
    }
    region.tick(3);
    // Removed while the other region's closed timestamp runs far ahead of this region's.
    region.link_mut().coordinator.suspect(REGION);
    let far = Timestamp::new(NOW_US + 60_000_000, 0);
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, far);
    assert!(region.deliver_epochs(leader, 1).is_empty());
    assert_eq!(region.node(leader).status().global.incarnation, 2);
    // Batch 1 of incarnation 2 readmits the region.
    let first_new_epoch = region.link().coordinator.next_epoch;
    region.tick(3);
    assert!(
        region
            .link()
            .shipped
            .iter()
            .any(|batch| batch.0 == 2 && batch.1 == 1),
        "batch 1 of incarnation 2 was shipped"
    );
    assert!(region.link().coordinator.regions[REGION].member);
    // The next batches, one holding a new call, do not reach the coordinator.
    region.link_mut().reachable = false;
    region.propose(leader, global_call(6, 1));
    region.tick(3);
    let unacknowledged: Vec<u64> = region
        .link()
        .shipped
        .iter()
        .filter(|batch| batch.0 == 2 && batch.1 > 1)
        .map(|batch| batch.1)
        .collect();
    assert!(!unacknowledged.is_empty());
    assert!(
        region
            .link()
            .shipped
            .iter()
            .any(|batch| batch.0 == 2 && batch.3.contains(&(6, 1))),
        "the new call was shipped in incarnation 2"
    );
    // The epoch sealed at the readmission lists the region again, with a watermark above the
    // closed timestamps of those batches.
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + 120_000_000, 0));
    assert!(region.deliver_epochs(leader, first_new_epoch).is_empty());
    assert!(region.node(leader).status().global.member);
    // The coordinator is reachable again: the region resends batch 2 and on, the coordinator
    // takes them in order, and the new call is sealed.
    region.link_mut().reachable = true;
    let resend_ticks =
        (region.network.node(leader).config.batch_resend_interval_us / TICK_US) as usize;
    region.tick(2 * resend_ticks + 3);
    let next_expected = region.link().coordinator.regions[REGION].next_batch_number;
    let last_closed = region
        .node(leader)
        .region_log()
        .global()
        .last_batch_number();
    assert_eq!(
        next_expected,
        last_closed + 1,
        "the coordinator took every batch of incarnation 2 (the region closed {last_closed})"
    );
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + 180_000_000, 0));
    assert!(region.deliver_epochs(leader, 1).is_empty());
    region.tick(1);
    let status = region.node(leader).status().global;
    assert_eq!(status.unsealed_records, 0, "every call was sealed");
    let entries = region.entries(leader);
    for key in [(5, 1), (5, 2), (5, 3), (6, 1)] {
        assert_eq!(
            count_kind(&entries, LogEntryKind::SequencedGlobal, key),
            1,
            "{key:?} sealed exactly once"
        );
    }
    assert!(
        region
            .take_replies(leader)
            .iter()
            .any(|reply| reply.key() == (ClientId(6), RequestSequence(1))),
        "the new call completed"
    );
    for id in [1, 2, 3] {
        assert_eq!(region.entries(id), entries, "member {id}");
    }
}

/// A region that comes back after the coordinator released epochs it had not appended
/// learns it from the coordinator's answer: it never appends a later epoch (that would leave
/// a hole in its global sequence), says why in its status, and refuses new global calls with
/// that reason (docs/global-protocol.md section 7).
#[test]
fn a_region_that_missed_released_epochs_refuses_to_append_past_the_hole() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    region.propose(leader, global_call(5, 1));
    region.tick(3);
    region.link_mut().coordinator.suspect(REGION);
    for step in 1..=3 {
        region
            .link_mut()
            .coordinator
            .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + step * 60_000_000, 0));
    }
    assert_eq!(region.link().coordinator.epochs.len(), 3);
    // The coordinator released epochs 1 and 2; it still holds epoch 3.
    region.link_mut().coordinator.first_retained = 3;
    region.tick(3);
    let status = region.node(leader).status().global;
    assert_eq!(status.epochs_missed, Some((1, 3)));
    let error = region.node(leader).global_catch_up_error().unwrap();
    assert!(error.contains("epochs 1 to 2"), "{error}");
    // Epoch 3 does not follow what the region appended: it is not appended.
    let errors = region.deliver_epochs(leader, 3);
    region.tick(3);
    assert_eq!(
        region.node(leader).status().global.epochs_applied_through,
        0,
        "{errors:?}"
    );
    assert_eq!(
        count_kind(
            &region.entries(leader),
            LogEntryKind::SequencedGlobal,
            (5, 1)
        ),
        0
    );
    // New global calls are refused, naming the reason; regional calls go on.
    region.take_replies(leader);
    region.propose(leader, global_call(6, 1));
    let replies = region.take_replies(leader);
    assert!(
        replies.iter().any(|reply| matches!(
            reply,
            Reply::Refused { error: ProposeError::GlobalOverloaded { bound }, .. }
                if bound.contains("released sealed epochs")
        )),
        "{replies:?}"
    );
    region.propose(leader, call(6, 2, Scope::Regional, 10));
    region.tick(3);
    assert!(
        region
            .take_replies(leader)
            .iter()
            .any(|reply| matches!(reply, Reply::Proposed { .. })),
        "a regional call completes"
    );
}

#[test]
fn beyond_the_bounds_global_calls_are_refused_naming_the_bound() {
    let mut region = Region::new(&[1], &[REGION]);
    region.link_mut().reachable = false;
    let leader = region.elect();
    // Megabyte records: the unsealed bytes bound takes three of them.
    let admitted = GLOBAL_UNSEALED_SIZE_BYTES_MAX / (1024 * 1024 + 200);
    for sequence in 1..=admitted + 1 {
        region.propose(leader, call(2, sequence, Scope::Global, 1024 * 1024));
    }
    let replies = region.take_replies(leader);
    assert!(
        matches!(
            &replies[..],
            [Reply::Refused { error: ProposeError::GlobalOverloaded { bound }, .. }]
                if bound.contains("GLOBAL_UNSEALED_SIZE_BYTES_MAX")
        ),
        "{replies:?}"
    );
    // Regional calls are not held back.
    region.propose(leader, call(2, 100, Scope::Regional, 10));
    assert!(matches!(
        region.take_replies(leader)[..],
        [Reply::Proposed { .. }]
    ));
    // Without a coordinator, outgoing batches pile up to their bound, then stop.
    region.tick(OUTGOING_BATCHES_MAX * 2 + 10);
    let status = region.node(leader).status().global;
    assert_eq!(status.outgoing_batches, OUTGOING_BATCHES_MAX);
    // The admitted calls waited longer than the proposal timeout: their callers retry.
    let replies = region.take_replies(leader);
    assert!(
        replies.iter().all(|reply| matches!(
            reply,
            Reply::Refused {
                error: ProposeError::Dropped,
                ..
            }
        )),
        "{replies:?}"
    );
    region.propose(leader, call(3, 1, Scope::Global, 10));
    let replies = region.take_replies(leader);
    assert!(
        matches!(
            &replies[..],
            [Reply::Refused { error: ProposeError::GlobalOverloaded { bound }, .. }]
                if bound.contains("OUTGOING_BATCHES_MAX")
        ),
        "{replies:?}"
    );
}

#[test]
fn restarts_keep_the_global_state_and_a_new_leader_resends_unacknowledged_batches() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    for sequence in 1..=3 {
        region.propose(leader, global_call(4, sequence));
    }
    region.tick(3);
    let follower = if leader == 1 { 2 } else { 1 };
    let before = region.node(follower).region_log().clone();
    assert_eq!(before.global().unsealed().count(), 3);
    region.crash(follower);
    region.restart(follower);
    // The restart may have lost the last applications (written without a sync); the member
    // applies them again from its raft log, and holds the leader's state once caught up.
    region.tick(1);
    assert_eq!(
        region.node(follower).region_log(),
        region.node(leader).region_log()
    );
    assert_eq!(
        region
            .node(follower)
            .region_log()
            .global()
            .unsealed()
            .count(),
        3
    );
    assert!(region.node(follower).status().global.last_assigned >= before.last_assigned());
    // The coordinator loses contact; a new leader ships every batch the region still holds.
    region.link_mut().reachable = false;
    region.tick(2);
    let shipped_before = region.link().shipped.len();
    region.node_mut(leader).transfer_leader(follower);
    region.network.settle();
    region.tick(3);
    assert_eq!(region.leader(), Some(follower));
    let resent: BTreeSet<u64> = region.link().shipped[shipped_before..]
        .iter()
        .map(|batch| batch.1)
        .collect();
    let held: BTreeSet<u64> = region
        .node(follower)
        .region_log()
        .global()
        .outgoing()
        .map(|batch| batch.batch_number)
        .collect();
    assert!(held.is_subset(&resent), "held {held:?}, resent {resent:?}");
}

#[test]
fn a_sender_clock_beyond_the_skew_is_refused_and_counted() {
    let mut region = Region::new(&[1], &[REGION]);
    let leader = region.elect();
    let now_us = region.now_us();
    let ahead = proto::SealedEpoch {
        epoch_number: 1,
        watermark: Some(Timestamp::new(now_us, 0).into()),
        previous_watermark: None,
        records: Vec::new(),
        part_index: 0,
        part_count: 1,
        member_regions: vec![REGION.to_owned()],
        sender_node_id: 100,
        sender_time: Some(Timestamp::new(now_us + 60_000_000, 0).into()),
    };
    let error = region
        .node_mut(leader)
        .handle_sealed_epoch(now_us, ahead)
        .unwrap_err();
    assert!(matches!(error, GlobalMessageError::ClockSkew(_)), "{error}");
    assert_eq!(region.node(leader).status().counters.clock_skew_refused, 1);
    let malformed = proto::RegionBatchAck {
        region: OTHER_REGION.to_owned(),
        sender_time: Some(Timestamp::new(now_us, 0).into()),
        ..proto::RegionBatchAck::default()
    };
    let error = region
        .node_mut(leader)
        .handle_batch_ack(now_us, malformed)
        .unwrap_err();
    assert!(error.to_string().contains(OTHER_REGION), "{error}");
}

/// A region whose missed epochs were released reads them from another region's log: a reply
/// that is not the next epoch (a wrong number, a wrong previous watermark, a forged record) is
/// refused naming what was wrong and changes nothing; the right one is appended, the region
/// takes the coordinator's epochs again, is readmitted, and its log holds the same global
/// sequence as the other region's (docs/global-protocol.md section 7).
#[test]
fn a_region_that_missed_released_epochs_catches_up_from_another_regions_log() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let mut other = Region::named(OTHER_REGION, &[4, 5, 6], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    let other_leader = other.elect();
    region.propose(leader, global_call(5, 1));
    region.tick(3);
    region.link_mut().coordinator.suspect(REGION);
    for step in 1..=3 {
        // A global call of the other region in every epoch: the object has no checkpoint,
        // so the other region's log keeps the epochs.
        let record = global_call(7, step).into_record(
            Timestamp::new(NOW_US + step * 60_000_000 - 1_000, 0),
            RegionId::new(OTHER_REGION).unwrap(),
        );
        region.link_mut().coordinator.pending.push(record);
        region
            .link_mut()
            .coordinator
            .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + step * 60_000_000, 0));
    }
    // The other region appended every epoch, which carries records of its own.
    let epochs = region.link().coordinator.epochs.clone();
    append_sealed(&mut other, other_leader, &epochs, 1);
    assert_eq!(epochs.len(), 3);
    region.link_mut().coordinator.first_retained = 3;
    region.tick(3);
    assert_eq!(
        region.node(leader).status().global.epochs_missed,
        Some((1, 3))
    );
    let error = region.node(leader).global_catch_up_error().unwrap();
    assert!(error.contains("reading them from other regions"), "{error}");

    let read = region.take_epochs_read(leader).expect("the leader asks");
    assert_eq!(read.region.as_str(), OTHER_REGION);
    assert_eq!((read.request.epoch_number, read.request.part_index), (1, 0));
    let good = other.serve_epochs_read(other_leader, read.request.clone());
    assert_eq!(good.unavailable, 0, "{}", good.detail);
    // Epochs 1 and 2, the ones released, and epoch 3, the newest the other region appended.
    assert_eq!(good.parts.len(), 3);

    // Wrong replies are refused whole, naming what was wrong, and append nothing.
    type Forge = Box<dyn Fn(&mut proto::ReadEpochsReply)>;
    let forgeries: Vec<(Forge, &str)> = vec![
        (
            Box::new(|reply| {
                reply.parts.remove(0);
            }),
            "the region appends epoch 1 part 0 next",
        ),
        (
            Box::new(|reply| {
                reply.parts[0].previous_watermark = Some(Timestamp::new(NOW_US, 0).into());
            }),
            "starts after",
        ),
        (
            Box::new(|reply| {
                // A record the coordinator never sealed, stamped past the epoch's watermark.
                let record = global_call(9, 9).into_record(
                    Timestamp::new(NOW_US + 1_000_000_000, 0),
                    RegionId::new(OTHER_REGION).unwrap(),
                );
                reply.parts[1].records.push(record.into());
            }),
            "outside",
        ),
        (
            Box::new(|reply| reply.region = "ap-south".to_owned()),
            "names region",
        ),
    ];
    let mut read = read;
    for (forge, expected) in forgeries {
        let mut reply = good.clone();
        forge(&mut reply);
        let error = region
            .answer_epochs_read(leader, read.read_id, reply)
            .unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{error} lacks {expected}"
        );
        assert_eq!(
            region.node(leader).status().global.epochs_applied_through,
            0
        );
        assert!(region.node(leader).status().global.epochs_missed.is_some());
        read = region
            .take_epochs_read(leader)
            .expect("the leader asks again");
    }
    // The right answer is appended: the region catches up to the coordinator's epochs.
    let proposed = region
        .answer_epochs_read(leader, read.read_id, good)
        .unwrap();
    assert_eq!(proposed, 3);
    region.tick(3);
    let status = region.node(leader).status();
    assert_eq!(status.global.epochs_applied_through, 3);
    assert_eq!(status.global.epochs_missed, None);
    assert_eq!(status.counters.epoch_parts_caught_up, 3);
    assert_eq!(status.counters.epochs_reads_refused, 4);
    // Epoch 1 did not list the region: it learned it was removed and reships its call in
    // its next incarnation. The coordinator's copy of epoch 3 is a duplicate now.
    assert_eq!(status.global.incarnation, 2);
    assert!(region.deliver_epochs(leader, 3).is_empty());
    region.tick(6);
    region
        .link_mut()
        .coordinator
        .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + 600_000_000, 0));
    let newest = region.link().coordinator.epochs.len() as u64;
    assert!(region.deliver_epochs(leader, 4).is_empty());
    region.tick(3);
    let epochs = region.link().coordinator.epochs.clone();
    for epoch in epochs.into_iter().skip(3) {
        let now_us = other.now_us();
        other
            .node_mut(other_leader)
            .handle_sealed_epoch(now_us, epoch)
            .unwrap();
        other.network.settle();
    }
    let status = region.node(leader).status().global;
    assert!(status.member, "readmitted");
    assert_eq!(status.epochs_applied_through, newest);
    assert_eq!(status.unsealed_records, 0, "the call was sealed");
    assert!(
        region
            .take_replies(leader)
            .iter()
            .any(|reply| reply.key() == (ClientId(5), RequestSequence(1))
                && matches!(reply, Reply::Proposed { .. })),
        "the call completed"
    );
    let sequence = region.global_sequence(leader);
    assert_eq!(sequence, other.global_sequence(other_leader));
    for id in [1, 2, 3] {
        assert_eq!(region.global_sequence(id), sequence, "member {id}");
    }
}

/// Region `REGION` (`members`) was cut off while the coordinator sealed `epochs` epochs, each
/// with one global call of `OTHER_REGION` of `argument_bytes` bytes, which the other region
/// (member 4 alone) appended; the coordinator released every epoch but the newest. Returns
/// both regions and their leaders, the region's leader with its alarm raised.
fn a_region_that_missed(
    members: &[u64],
    epochs: u64,
    argument_bytes: usize,
) -> (Region, Region, u64, u64) {
    let mut region = Region::new(members, &[REGION, OTHER_REGION]);
    let mut other = Region::named(OTHER_REGION, &[4], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    let other_leader = other.elect();
    region.link_mut().coordinator.suspect(REGION);
    for step in 1..=epochs {
        // A call in every epoch: the object has no checkpoint, so the other region's log keeps
        // the epochs.
        let record = call(7, step, Scope::Global, argument_bytes).into_record(
            Timestamp::new(NOW_US + step * 1_000 - 500, 0),
            RegionId::new(OTHER_REGION).unwrap(),
        );
        let coordinator = &mut region.link_mut().coordinator;
        coordinator.pending.push(record);
        coordinator.advance_closed(OTHER_REGION, Timestamp::new(NOW_US + step * 1_000, 0));
    }
    let sealed = region.link().coordinator.epochs.clone();
    assert_eq!(sealed.len() as u64, epochs);
    append_sealed(
        &mut other,
        other_leader,
        &sealed,
        EPOCH_PARTS_PROPOSED_MAX / 2,
    );
    region.link_mut().coordinator.first_retained = epochs;
    region.tick(3);
    assert_eq!(
        region.node(leader).status().global.epochs_missed,
        Some((1, epochs))
    );
    (region, other, leader, other_leader)
}

/// Hands `epochs` to the leader of `region`, `chunk` at a time with the network settled
/// between, and checks that it applied them all.
fn append_sealed(region: &mut Region, leader: u64, epochs: &[proto::SealedEpoch], chunk: usize) {
    for epochs_now in epochs.chunks(chunk) {
        for epoch in epochs_now {
            let now_us = region.now_us();
            region
                .node_mut(leader)
                .handle_sealed_epoch(now_us, epoch.clone())
                .unwrap();
        }
        region.network.settle();
    }
    assert_eq!(
        region.node(leader).status().global.epochs_applied_through,
        epochs.last().map_or(0, |epoch| epoch.epoch_number)
    );
}

/// The wire size of `parts` as a reply's bound counts it.
fn reply_bytes(parts: &[proto::SealedEpoch]) -> u64 {
    parts
        .iter()
        .map(|part| EpochPart::from_wire(part.clone()).unwrap().wire_len())
        .sum()
}

/// Reads member `id` of `region` asks for, served by `other_leader` of `other` and answered,
/// until the region has appended every epoch the other region holds; returns the number of
/// parts of each answer.
fn catch_up_fully(
    region: &mut Region,
    id: u64,
    other: &mut Region,
    other_leader: u64,
) -> Vec<usize> {
    let newest = other
        .node(other_leader)
        .status()
        .global
        .epochs_applied_through;
    let mut answers = Vec::new();
    while region.node(id).status().global.epochs_applied_through < newest {
        assert!(answers.len() < 100, "no progress after {answers:?}");
        let read = region
            .take_epochs_read(id)
            .expect("the leader asks while it lacks epochs");
        let reply = other.serve_epochs_read(other_leader, read.request);
        assert_eq!(reply.unavailable, 0, "{}", reply.detail);
        answers.push(reply.parts.len());
        region.answer_epochs_read(id, read.read_id, reply).unwrap();
        region.tick(1);
    }
    answers
}

/// A reply holds at most `EPOCHS_READ_PARTS_MAX` parts, and a forged one with more is refused
/// whole. The leader proposes a reply's parts `EPOCH_PARTS_PROPOSED_MAX` at a time, the rest
/// as earlier ones apply, and asks its next read only once all of them are applied, from where
/// the log stands. (A region of one member: the test store copies itself on every synced
/// write, which thousands of entries over three members make slow.)
#[test]
fn a_long_catch_up_reads_replies_of_bounded_parts_and_proposes_them_in_bounded_rounds() {
    let epochs = EPOCHS_READ_PARTS_MAX as u64 + 4;
    let (mut region, mut other, leader, other_leader) = a_region_that_missed(&[1], epochs, 10);
    let read = region.take_epochs_read(leader).expect("the leader asks");
    assert_eq!((read.request.epoch_number, read.request.part_index), (1, 0));
    let good = other.serve_epochs_read(other_leader, read.request);
    assert_eq!(good.unavailable, 0, "{}", good.detail);
    assert_eq!(
        good.parts.len(),
        EPOCHS_READ_PARTS_MAX,
        "the parts bound ends the reply"
    );
    assert!(reply_bytes(&good.parts) <= EPOCHS_READ_REPLY_BYTES_MAX);

    // One part more than the bound: refused whole, nothing proposed.
    let mut forged = good.clone();
    let last = forged.parts.last().unwrap().clone();
    forged.parts.push(proto::SealedEpoch {
        epoch_number: last.epoch_number + 1,
        previous_watermark: last.watermark,
        watermark: Some(Timestamp::new(NOW_US + epochs * 1_000, 0).into()),
        records: Vec::new(),
        ..last
    });
    let error = region
        .answer_epochs_read(leader, read.read_id, forged)
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains(&format!("more than the maximum of {EPOCHS_READ_PARTS_MAX}")),
        "{error}"
    );
    let status = region.node(leader).status();
    assert_eq!(status.counters.epoch_parts_proposed, 0);
    assert_eq!(status.global.epochs_applied_through, 0);

    // The right answer: the first EPOCH_PARTS_PROPOSED_MAX parts go into raft at once, the
    // rest wait for them, and no read is asked meanwhile.
    let read = region
        .take_epochs_read(leader)
        .expect("the leader asks again");
    let now_us = region.now_us();
    let taken = region
        .node_mut(leader)
        .handle_epochs_read_reply(now_us, read.read_id, Ok(good))
        .unwrap();
    assert_eq!(taken, EPOCHS_READ_PARTS_MAX);
    let counters = region.node(leader).status().counters;
    assert_eq!(
        counters.epoch_parts_proposed,
        EPOCH_PARTS_PROPOSED_MAX as u64
    );
    assert_eq!(
        counters.epoch_parts_caught_up,
        EPOCH_PARTS_PROPOSED_MAX as u64
    );
    assert_eq!(counters.epochs_reads_sent, 2);
    // As a node loop does, ready rounds run until none is left.
    while region.node(leader).has_ready() {
        region.network.settle();
    }
    let status = region.node(leader).status();
    assert_eq!(
        status.global.epochs_applied_through,
        EPOCHS_READ_PARTS_MAX as u64
    );
    assert_eq!(
        status.counters.epoch_parts_caught_up,
        EPOCHS_READ_PARTS_MAX as u64
    );

    // One read was asked meanwhile, once every part was applied: it starts where the log
    // stands, and the rest is appended.
    let reads = std::mem::take(&mut region.network.node_mut(leader).epochs_reads);
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert_eq!(status.counters.epochs_reads_sent, 3);
    let read = reads.into_iter().next().unwrap();
    assert_eq!(
        (read.request.epoch_number, read.request.part_index),
        (EPOCHS_READ_PARTS_MAX as u64 + 1, 0)
    );
    let rest = other.serve_epochs_read(other_leader, read.request);
    assert_eq!(rest.parts.len(), 4);
    assert_eq!(region.answer_epochs_read(leader, read.read_id, rest), Ok(4));
    region.tick(3);
    let status = region.node(leader).status();
    assert_eq!(status.global.epochs_applied_through, epochs);
    assert_eq!(status.global.epochs_missed, None);
    assert_eq!(
        region.global_sequence(leader),
        other.global_sequence(other_leader)
    );
}

/// A reply holds at most `EPOCHS_READ_REPLY_BYTES_MAX` bytes of parts (a first part alone may
/// be larger), and one beyond it is refused whole; epochs of large records are read over
/// several replies.
#[test]
fn a_reply_holds_at_most_its_bytes_bound() {
    const ARGUMENT_BYTES: usize = 1_000_000;
    let epochs = 7;
    let (mut region, mut other, leader, other_leader) =
        a_region_that_missed(&[1, 2, 3], epochs, ARGUMENT_BYTES);
    let read = region.take_epochs_read(leader).expect("the leader asks");
    let first = other.serve_epochs_read(other_leader, read.request.clone());
    assert_eq!(first.unavailable, 0, "{}", first.detail);
    let per_part = reply_bytes(&first.parts[..1]);
    let fitting = (EPOCHS_READ_REPLY_BYTES_MAX / per_part) as usize;
    assert!(fitting < epochs as usize - 1, "the bound must be reached");
    assert_eq!(first.parts.len(), fitting, "the bytes bound ends the reply");
    assert!(reply_bytes(&first.parts) <= EPOCHS_READ_REPLY_BYTES_MAX);

    // The same parts and the next one: past the bound, refused whole.
    let mut after = read.request.clone();
    after.epoch_number += fitting as u64;
    let next = other.serve_epochs_read(other_leader, after);
    let mut forged = first.clone();
    forged.parts.push(next.parts[0].clone());
    assert!(reply_bytes(&forged.parts) > EPOCHS_READ_REPLY_BYTES_MAX);
    let error = region
        .answer_epochs_read(leader, read.read_id, forged)
        .unwrap_err();
    assert!(error.to_string().contains("bytes in all"), "{error}");
    assert_eq!(
        region.node(leader).status().global.epochs_applied_through,
        0
    );

    let answers = catch_up_fully(&mut region, leader, &mut other, other_leader);
    assert!(answers.len() >= 2, "{answers:?}");
    assert!(answers.iter().all(|&parts| parts <= fitting), "{answers:?}");
    region.tick(3);
    assert_eq!(region.node(leader).status().global.epochs_missed, None);
    assert_eq!(
        region.global_sequence(leader),
        other.global_sequence(other_leader)
    );
}

/// Answers that are not the one awaited change nothing: an answer that came after the read
/// timed out and the next was asked, the same answer twice, an answer to a read never asked.
/// Only the awaited one is appended, once.
#[test]
fn late_duplicate_and_unknown_answers_to_epochs_reads_are_ignored() {
    let (mut region, mut other, leader, other_leader) = a_region_that_missed(&[1, 2, 3], 5, 10);
    let first = region.take_epochs_read(leader).expect("the leader asks");
    let late = other.serve_epochs_read(other_leader, first.request.clone());
    // No answer within the resend interval: the leader asks again.
    let interval_ticks = RegionNodeConfig::new(1, vec![1], RegionId::new(REGION).unwrap())
        .batch_resend_interval_us
        / TICK_US;
    region.tick(interval_ticks as usize + 1);
    let second = region
        .take_epochs_read(leader)
        .expect("the leader asks again after the resend interval");
    assert_ne!(second.read_id, first.read_id);
    assert_eq!(second.request.epoch_number, 1);

    // The late answer to the first read: ignored, although its parts are right.
    assert_eq!(
        region.answer_epochs_read(leader, first.read_id, late.clone()),
        Ok(0)
    );
    // An answer to a read never asked.
    assert_eq!(
        region.answer_epochs_read(leader, second.read_id + 100, late),
        Ok(0)
    );
    let status = region.node(leader).status();
    assert_eq!(status.counters.epoch_parts_proposed, 0);
    assert_eq!(status.counters.epochs_reads_refused, 0);
    assert_eq!(status.global.epochs_applied_through, 0);

    // The awaited answer is appended; the same answer again is ignored.
    let reply = other.serve_epochs_read(other_leader, second.request);
    assert_eq!(
        region.answer_epochs_read(leader, second.read_id, reply.clone()),
        Ok(5)
    );
    assert_eq!(
        region.answer_epochs_read(leader, second.read_id, reply),
        Ok(0)
    );
    region.tick(3);
    let status = region.node(leader).status();
    assert_eq!(status.counters.epoch_parts_proposed, 5);
    assert_eq!(status.counters.epoch_parts_caught_up, 5);
    assert_eq!(status.global.epochs_applied_through, 5);
    assert_eq!(status.global.epochs_missed, None);
    assert_eq!(
        region.global_sequence(leader),
        other.global_sequence(other_leader)
    );
}

/// A leader cut off from its region with parts of an answer proposed and more held loses its
/// leadership: the answer it then receives is not proposed, the parts it held are dropped,
/// and the new leader reads from what the region's log appended. Every member ends with the
/// other region's global sequence.
#[test]
fn an_answer_that_reaches_a_deposed_leader_is_dropped_and_the_new_leader_reads_again() {
    let epochs = EPOCH_PARTS_PROPOSED_MAX as u64 + 44;
    let (mut region, mut other, leader, other_leader) =
        a_region_that_missed(&[1, 2, 3], epochs, 10);
    let old_read = region.take_epochs_read(leader).expect("the leader asks");
    let reply = other.serve_epochs_read(other_leader, old_read.request);
    assert_eq!(reply.parts.len() as u64, epochs);

    // Cut off, the leader takes the answer: it proposes what fits, holds the rest, and none
    // of it commits.
    region.network.isolate(leader);
    let now_us = region.now_us();
    assert_eq!(
        region.node_mut(leader).handle_epochs_read_reply(
            now_us,
            old_read.read_id,
            Ok(reply.clone())
        ),
        Ok(epochs as usize)
    );
    assert_eq!(
        region.node(leader).status().counters.epoch_parts_proposed,
        EPOCH_PARTS_PROPOSED_MAX as u64
    );
    let new_leader = region.elect();
    assert_ne!(new_leader, leader);
    region.tick(3);
    let read = region
        .take_epochs_read(new_leader)
        .expect("the new leader asks");
    assert_eq!((read.request.epoch_number, read.request.part_index), (1, 0));

    // Back, the old leader steps down and drops what it held; the answer it gets again is not
    // proposed.
    region.network.rejoin(leader);
    region.tick(3);
    assert!(!region.node(leader).is_leader());
    let proposed = region.node(leader).status().counters.epoch_parts_proposed;
    let again = region.answer_epochs_read(leader, old_read.read_id, reply);
    assert!(
        matches!(again, Ok(0) | Err(GlobalMessageError::NotLeader { .. })),
        "{again:?}"
    );
    assert_eq!(
        region.node(leader).status().counters.epoch_parts_proposed,
        proposed
    );
    region.take_epochs_read(leader);

    // The new leader catches up from where the region's log stands.
    let applied = region
        .node(new_leader)
        .status()
        .global
        .epochs_applied_through;
    assert_eq!(
        applied, 0,
        "nothing the deposed leader proposed was committed"
    );
    let reply = other.serve_epochs_read(other_leader, read.request);
    assert_eq!(
        region.answer_epochs_read(new_leader, read.read_id, reply),
        Ok(epochs as usize)
    );
    region.tick(3);
    let status = region.node(new_leader).status();
    assert_eq!(status.global.epochs_missed, None);
    let sequence = region.global_sequence(new_leader);
    assert_eq!(sequence, other.global_sequence(other_leader));
    for id in [1, 2, 3] {
        assert_eq!(region.global_sequence(id), sequence, "member {id}");
    }
}

/// When the other regions' logs no longer hold the missed epochs (their checkpoints truncated
/// them) nor any epoch end to skip to, the region keeps refusing global calls, and says why
/// and what it waits for.
#[test]
fn a_region_keeps_its_alarm_when_no_region_holds_the_missed_epochs() {
    let mut region = Region::new(&[1, 2, 3], &[REGION, OTHER_REGION]);
    let mut other = Region::named(OTHER_REGION, &[4, 5, 6], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    let other_leader = other.elect();
    region.link_mut().coordinator.suspect(REGION);
    for step in 1..=3 {
        region
            .link_mut()
            .coordinator
            .advance_closed(OTHER_REGION, Timestamp::new(NOW_US + step * 60_000_000, 0));
    }
    // The epochs hold no record of any object, so the other region truncates them at once.
    let epochs = region.link().coordinator.epochs.clone();
    for epoch in epochs {
        let now_us = other.now_us();
        other
            .node_mut(other_leader)
            .handle_sealed_epoch(now_us, epoch)
            .unwrap();
        other.network.settle();
    }
    let other_log = other.node(other_leader).region_log();
    assert_eq!(
        other_log.first_retained_position(),
        other_log.next_position()
    );
    region.link_mut().coordinator.first_retained = 3;
    region.tick(3);
    let read = region.take_epochs_read(leader).expect("the leader asks");
    // The coordinator said the region has no sealed record: a skip may end at any epoch
    // from the next one on.
    assert_eq!(read.request.skip_from_epoch_number, 1);
    // An answer that names an epoch end to skip to which is no valid epoch end is refused
    // whole, and the region is asked again.
    let mut forged = other.serve_epochs_read(other_leader, read.request.clone());
    forged.held_from = Some(proto::HeldEpochEnd {
        epoch_number: 0,
        watermark: Some(Timestamp::new(NOW_US, 0).into()),
        member_regions: vec![OTHER_REGION.to_owned()],
    });
    let refused = region
        .answer_epochs_read(leader, read.read_id, forged)
        .unwrap_err();
    assert!(
        refused.to_string().contains("held epoch end names epoch 0"),
        "{refused}"
    );
    region.tick(3);
    let read = region
        .take_epochs_read(leader)
        .expect("the leader asks again");
    let reply = other.serve_epochs_read(other_leader, read.request);
    assert_eq!(
        reply.unavailable,
        proto::EpochsUnavailableReason::Truncated as i32,
        "{}",
        reply.detail
    );
    assert_eq!(
        reply.held_from, None,
        "the other region's log holds no epoch end to skip to"
    );
    assert_eq!(
        region.answer_epochs_read(leader, read.read_id, reply),
        Ok(0)
    );
    let error = region.node(leader).global_catch_up_error().unwrap();
    assert!(error.contains("no region still holds epoch 1"), "{error}");
    assert!(
        error.contains("us-east's log no longer holds the start of epoch 1"),
        "{error}"
    );
    assert!(
        error.contains("it skips them to an epoch end another region's log holds"),
        "{error}"
    );
    region.take_replies(leader);
    region.propose(leader, global_call(6, 1));
    let replies = region.take_replies(leader);
    assert!(
        replies.iter().any(|reply| matches!(
            reply,
            Reply::Refused { error: ProposeError::GlobalOverloaded { bound }, .. }
                if bound.contains("no region still holds")
        )),
        "{replies:?}"
    );
    assert_eq!(
        region.node(leader).status().global.epochs_applied_through,
        0
    );
}

/// What lets the driver of an idle region sleep between ticks: once the coordinator wants no
/// closes, the leader reports quiet ticks, and a tick it reported quiet ships nothing to the
/// coordinator (its idle closes come on the ticks it did not report quiet); followers
/// report the quiet ticks of their election timeout. A global call makes every tick of the
/// leader count again.
#[test]
fn an_idle_leader_ships_nothing_on_the_ticks_it_reports_quiet() {
    let mut region = Region::new(&[1, 2, 3], &[REGION]);
    region.link_mut().closes_wanted = false;
    let leader = region.elect();
    // Batch 1 is acknowledged and no close is wanted: the region is idle.
    region.tick(10);
    let closes_before = region.node(leader).status().counters.close_batches_proposed;
    let mut quiet_seen = 0;
    let mut shipped_on_unquiet_ticks = 0;
    for _ in 0..200 {
        let quiet = region.node(leader).quiet_ticks(region.now_us(), TICK_US);
        let shipped = region.link().shipped.len();
        region.tick(1);
        if quiet > 0 {
            quiet_seen += 1;
            assert_eq!(
                region.link().shipped.len(),
                shipped,
                "a tick reported quiet shipped a batch"
            );
        } else if region.link().shipped.len() > shipped {
            shipped_on_unquiet_ticks += 1;
        }
    }
    assert!(quiet_seen > 0, "an idle leader reported no quiet tick");
    // 200 ticks of 10 ms: a liveness ask every 500 ms went out, and nothing in between (an
    // idle region does not ask whether closes are wanted; it is told). The asks cost no raft
    // entry: the idle leader closed no batch.
    assert!(
        (3..=5).contains(&shipped_on_unquiet_ticks),
        "{shipped_on_unquiet_ticks} liveness asks"
    );
    let counters = region.node(leader).status().counters;
    assert_eq!(counters.close_batches_proposed, closes_before);
    assert!(counters.liveness_asks_sent >= 3, "{counters:?}");
    // It wakes for its raft heartbeats and its asks only.
    let heartbeats = 200 / dsss_region_node::REGION_HEARTBEAT_TICKS;
    assert!(
        200 - quiet_seen <= heartbeats + 16,
        "an idle leader woke on {} of 200 ticks ({heartbeats} heartbeats)",
        200 - quiet_seen
    );
    for follower in [1, 2, 3].into_iter().filter(|&id| id != leader) {
        assert!(region.node(follower).quiet_ticks(region.now_us(), TICK_US) > 0);
    }

    // The coordinator tells the idle leader unasked that records wait elsewhere: it closes
    // every epoch at once, not at its idle pace. Told the same, a follower ignores it.
    let &(incarnation, through, ..) = region.link().shipped.last().unwrap();
    let wake_up = proto::RegionBatchAck {
        region: REGION.to_owned(),
        acknowledged_through_batch_number: through,
        member: true,
        watermark: Some(region.link().coordinator.watermark.into()),
        not_leader: None,
        sender_time: Some(region.link().coordinator.now.into()),
        incarnation,
        first_retained_epoch_number: 0,
        closes_wanted: true,
        last_sealed_record: None,
        last_sealed_record_unknown: false,
        leader_node_id: 0,
        leader_term: 0,
    };
    let now_us = region.now_us();
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    region
        .node_mut(follower)
        .handle_batch_ack(now_us, wake_up.clone())
        .unwrap();
    assert!(region.node(follower).quiet_ticks(region.now_us(), TICK_US) > 0);
    region
        .node_mut(leader)
        .handle_batch_ack(now_us, wake_up)
        .unwrap();
    assert_eq!(
        region.node(leader).quiet_ticks(region.now_us(), TICK_US),
        0,
        "a leader told that closes are wanted closes every epoch"
    );
    region.link_mut().closes_wanted = true;
    let shipped = region.link().shipped.len();
    region.tick(20);
    assert!(
        region.link().shipped.len() >= shipped + 3,
        "20 ticks of 10 ms with closes wanted: {} closes",
        region.link().shipped.len() - shipped
    );
    region.link_mut().closes_wanted = false;
    region.tick(10);

    region.propose(leader, global_call(1, 1));
    for _ in 0..5 {
        assert_eq!(
            region.node(leader).quiet_ticks(region.now_us(), TICK_US),
            0,
            "a region with a global record closes every epoch"
        );
        region.tick(1);
    }
}

/// Seals one epoch per step in `region`'s coordinator, each holding one global call of the
/// other region on `lobby/main`.
fn seal_calls(region: &mut Region, steps: std::ops::RangeInclusive<u64>) {
    for step in steps {
        let record = global_call(7, step).into_record(
            Timestamp::new(NOW_US + step * 1_000 - 500, 0),
            RegionId::new(OTHER_REGION).unwrap(),
        );
        let coordinator = &mut region.link_mut().coordinator;
        coordinator.pending.push(record);
        coordinator.advance_closed(OTHER_REGION, Timestamp::new(NOW_US + step * 1_000, 0));
    }
}

/// Member `id` of `region` fetches `object`'s checkpoint as a caller that says whether the
/// object is global.
fn fetch(
    region: &mut Region,
    id: u64,
    object: &ObjectId,
    global: bool,
) -> dsss_region_node::CheckpointFetch {
    let now_us = region.now_us();
    let member = region.network.node_mut(id);
    let node = member.node.as_mut().unwrap();
    let fetch = node
        .fetch_checkpoint(&member.store, now_us, object, global)
        .unwrap();
    region.network.settle();
    fetch
}

/// Uploads a checkpoint of `object` at `position` to member `id`, as a client there would.
fn upload_state(region: &mut Region, id: u64, object: &ObjectId, position: u64, state: &[u8]) {
    use sha2::Digest;
    let now_us = region.now_us();
    let upload = CheckpointUpload {
        object_id: object.clone(),
        position,
        state: state.to_vec(),
        state_hash: sha2::Sha256::digest(state).into(),
        client_id: ClientId(8),
    };
    region
        .node_mut(id)
        .handle_upload_checkpoint(now_us, 1, upload);
    region.network.settle();
}

/// Member `id` serves another region's read of a checkpoint.
fn serve_checkpoint_read(
    region: &mut Region,
    id: u64,
    request: proto::ReadCheckpointRequest,
) -> proto::ReadCheckpointReply {
    let now_us = region.now_us();
    let member = region.network.node_mut(id);
    let node = member.node.as_mut().unwrap();
    node.answer_checkpoint_read(&member.store, now_us, request)
}

fn take_checkpoint_read(region: &mut Region, id: u64) -> Option<CheckpointRead> {
    let reads = std::mem::take(&mut region.network.node_mut(id).checkpoint_reads);
    assert!(reads.len() <= 1, "{reads:?}");
    reads.into_iter().next()
}

/// A global object that nobody in a region follows is released there once the log passes its
/// share; opened later, the region adopts the object's checkpoint from another region, at a
/// position where its own log stands inside the stretch of the global order the checkpoint
/// holds for, and the copy starts from it. An answer that breaks a rule is refused naming it,
/// and one for a stretch the log has passed is asked again.
#[test]
fn a_released_global_object_is_adopted_from_another_regions_checkpoint() {
    let mut region = Region::named_with(REGION, &[1, 2, 3], &[REGION, OTHER_REGION], |config| {
        config.log_retention.records_max = 64;
        config.log_retention.release_share_percent = 50;
    });
    let mut other = Region::named(OTHER_REGION, &[4, 5, 6], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    let other_leader = other.elect();
    region.link_mut().coordinator.suspect(REGION);
    let object = ObjectId::new("lobby/main").unwrap();
    seal_calls(&mut region, 1..=40);
    let epochs = region.link().coordinator.epochs.clone();
    append_sealed(&mut region, leader, &epochs, 8);
    append_sealed(&mut other, other_leader, &epochs, 8);
    let status = region.node(leader).status();
    assert_eq!(status.checkpoints.released_objects, 1);
    assert!(status.checkpoints.truncated_through > 0);

    // The other region follows the object: a client there checkpointed its last record.
    let other_last = other.node(other_leader).region_log().last_position();
    let state = b"the board after 40 calls".to_vec();
    upload_state(&mut other, other_leader, &object, other_last - 1, &state);

    // A caller that does not say the scope (an earlier release) starts no adoption.
    let released = fetch(&mut region, 2, &object, false);
    assert!(released.released_through > 0 && released.checkpoint.is_none());
    assert!(take_checkpoint_read(&mut region, 2).is_none());
    // A caller of a global object does: a follower asks the other region.
    assert!(fetch(&mut region, 2, &object, true).released_through > 0);
    let read = take_checkpoint_read(&mut region, 2).expect("a read");
    assert_eq!(read.region.as_str(), OTHER_REGION);
    assert_eq!(read.request.object_id, "lobby/main");
    // Asking again while it waits sends nothing more.
    fetch(&mut region, 2, &object, true);
    assert!(take_checkpoint_read(&mut region, 2).is_none());

    let good = serve_checkpoint_read(&mut other, 5, read.request.clone());
    assert_eq!(good.unavailable, "", "served");
    assert_eq!(good.state, state);
    // Valid from the epoch end after the object's last record, through where the other
    // region stands: the start of epoch 41.
    let end = proto::GlobalPoint {
        epoch_number: 41,
        records: 0,
    };
    assert_eq!(
        (good.valid_from, good.valid_through),
        (Some(end), Some(end))
    );

    // Forged answers are refused naming what was wrong; the next read goes out.
    type Forge = Box<dyn Fn(&mut proto::ReadCheckpointReply)>;
    let forgeries: Vec<(Forge, &str)> = vec![
        (Box::new(|reply| reply.state.push(0)), "SHA-256"),
        (
            Box::new(|reply| reply.object_id = "lobby/other".to_owned()),
            "is for object",
        ),
        (
            Box::new(|reply| reply.valid_from.as_mut().unwrap().epoch_number = 42),
            "lies past valid_through",
        ),
    ];
    let mut read = read;
    for (forge, expected) in forgeries {
        let mut reply = good.clone();
        forge(&mut reply);
        let now_us = region.now_us();
        let error = region
            .node_mut(2)
            .handle_checkpoint_read_reply(now_us, read.read_id, Ok(reply))
            .unwrap_err();
        assert!(
            error.to_string().contains(expected),
            "{error} lacks {expected}"
        );
        region.network.settle();
        read = take_checkpoint_read(&mut region, 2).expect("asked again");
    }
    assert_eq!(
        region.node(2).status().adoptions.counters.replies_refused,
        3
    );

    // Meanwhile the region appended one more epoch with a call on the object, which the
    // other region has not: the answer's stretch lies behind the log, and it asks again.
    seal_calls(&mut region, 41..=41);
    let newer = region.link().coordinator.epochs[40..].to_vec();
    append_sealed(&mut region, leader, &newer, 1);
    let now_us = region.now_us();
    let reply = serve_checkpoint_read(&mut other, 5, read.request.clone());
    assert!(
        region
            .node_mut(2)
            .handle_checkpoint_read_reply(now_us, read.read_id, Ok(reply))
            .unwrap()
    );
    region.network.settle();
    assert!(fetch(&mut region, 1, &object, false).released_through > 0);
    let read = take_checkpoint_read(&mut region, 2).expect("asked again past the stretch");

    // The other region takes the epoch too, and its client checkpoints the new record.
    let before = other.node(other_leader).region_log().last_position();
    append_sealed(&mut other, other_leader, &[epochs, newer].concat(), 41);
    let state = b"the board after 41 calls".to_vec();
    upload_state(&mut other, other_leader, &object, before + 1, &state);
    let reply = serve_checkpoint_read(&mut other, 6, read.request.clone());
    assert_eq!(
        reply.valid_through,
        Some(proto::GlobalPoint {
            epoch_number: 42,
            records: 0
        })
    );
    let now_us = region.now_us();
    assert!(
        region
            .node_mut(2)
            .handle_checkpoint_read_reply(now_us, read.read_id, Ok(reply))
            .unwrap()
    );
    region.network.settle();

    // Every member now serves the adopted checkpoint at the region's last position.
    let last = region.node(leader).region_log().last_position();
    for id in [1, 2, 3] {
        let adopted = fetch(&mut region, id, &object, true);
        assert_eq!(adopted.released_through, 0, "member {id}");
        let checkpoint = adopted.checkpoint.expect("adopted");
        assert_eq!(checkpoint.state, state, "member {id}");
        assert_eq!(checkpoint.uploaded_position, last, "member {id}");
        assert_eq!(region.node(id).status().checkpoints.released_objects, 0);
    }
    let status = region.node(2).status().adoptions;
    assert_eq!(
        (status.waiting, status.counters.adopted),
        (0, 1),
        "{status:?}"
    );
    assert!(take_checkpoint_read(&mut region, 2).is_none());
    assert_eq!(
        GlobalPoint::of(region.node(1).region_log()).epoch_number,
        42
    );
}

/// A region answers why it cannot serve a checkpoint: the object has records above the one it
/// keeps (or, keeping none, records at all).
#[test]
fn a_region_serves_no_checkpoint_that_misses_records_of_the_object() {
    let mut region = Region::new(&[1], &[REGION, OTHER_REGION]);
    let leader = region.elect();
    region.link_mut().coordinator.suspect(REGION);
    seal_calls(&mut region, 1..=3);
    let epochs = region.link().coordinator.epochs.clone();
    append_sealed(&mut region, leader, &epochs, 3);
    let request = proto::ReadCheckpointRequest {
        region: OTHER_REGION.to_owned(),
        sender_node_id: 9,
        object_id: "lobby/main".to_owned(),
        sender_time: Some(Timestamp::new(NOW_US, 0).into()),
    };
    // Without a checkpoint the region serves the default state only for an object that never
    // had a record; this one has three.
    let none = serve_checkpoint_read(&mut region, leader, request.clone());
    assert!(
        none.unavailable
            .contains("holds records of lobby/main above its newest checkpoint (at position 0)"),
        "{}",
        none.unavailable
    );
    let object = ObjectId::new("lobby/main").unwrap();
    // A checkpoint of the first record leaves two records above it.
    let first = region
        .node(leader)
        .region_log()
        .read(&region.network.node(leader).store, 1, 1, u64::MAX)
        .unwrap();
    assert_eq!(first[0].entry.kind(), LogEntryKind::SequencedGlobal);
    upload_state(
        &mut region,
        leader,
        &object,
        first[0].position,
        b"after one call",
    );
    let above = serve_checkpoint_read(&mut region, leader, request.clone());
    assert!(
        above
            .unavailable
            .contains("holds records of lobby/main above"),
        "{}",
        above.unavailable
    );
    assert!(above.state.is_empty());
    let mut bad = request;
    bad.object_id = String::new();
    let invalid = serve_checkpoint_read(&mut region, leader, bad);
    assert!(
        invalid.unavailable.contains("object_id"),
        "{}",
        invalid.unavailable
    );
}

/// An epoch shorter than a tick: a busy leader closes one batch per epoch only when its driver
/// wakes it at the time it names between ticks (`close_due_at_us`, `handle_close_due`); on
/// ticks alone it would close one per tick. Followers and an idle leader name no time.
#[test]
fn a_busy_leader_closes_a_batch_every_epoch_when_the_epoch_is_shorter_than_a_tick() {
    let mut region = Region::named_with(REGION, &[1, 2, 3], &[REGION], |config| {
        config.epoch_interval_us = TICK_US / 2;
    });
    let leader = region.elect();
    region.tick(5);
    for follower in [1, 2, 3].into_iter().filter(|&id| id != leader) {
        assert_eq!(region.node(follower).close_due_at_us(), None);
    }
    let closes = |region: &Region| region.node(leader).status().counters.close_batches_proposed;

    // Ticks alone: one close per tick.
    let before = closes(&region);
    region.tick(20);
    let on_ticks = closes(&region) - before;
    assert!(
        (19..=21).contains(&on_ticks),
        "{on_ticks} closes on 20 ticks"
    );

    // Woken between ticks at the time it names: one close per epoch, two per tick.
    let before = closes(&region);
    for _ in 0..20 {
        let now_us = region.now_us();
        let due_us = region
            .node(leader)
            .close_due_at_us()
            .expect("a busy leader names its next close");
        assert!(
            due_us > now_us && due_us < now_us + TICK_US,
            "the next close at {due_us}, the tick at {now_us}"
        );
        region.node_mut(leader).handle_close_due(due_us);
        region.network.settle();
        region.tick(1);
    }
    let woken = closes(&region) - before;
    assert!(
        (38..=41).contains(&woken),
        "{woken} closes on 20 ticks with wakes"
    );
    assert!(region.link().shipped.len() as u64 >= woken);

    // Woken early, before its time, it closes nothing.
    let before = closes(&region);
    let now_us = region.now_us();
    region.node_mut(leader).handle_close_due(now_us + 1);
    assert_eq!(closes(&region), before);

    // Idle (every batch acknowledged, no close wanted): no time named; it asks on ticks.
    region.link_mut().closes_wanted = false;
    region.tick(10);
    assert_eq!(region.node(leader).close_due_at_us(), None);
}

/// A leader resends only while the coordinator's acknowledgements stand still, and waits
/// twice as long after each resend that brought nothing, up to the upper bound: with the
/// coordinator unreachable, the oldest unacknowledged batch goes again one resend interval
/// after it was sent, then two, four, and four again (the bound is four intervals). Once the
/// coordinator answers again and its acknowledgements move, no batch is sent twice, as a
/// loaded but answering coordinator must not be sent copies of what it has not yet taken.
#[test]
fn a_leader_resends_only_while_acknowledgements_stand_still_and_backs_off() {
    let mut region = Region::named_with(REGION, &[1, 2, 3], &[REGION], |config| {
        config.batch_resend_interval_us = 100_000;
        config.batch_resend_interval_max_us = 400_000;
    });
    let leader = region.elect();
    region.tick(20);
    region.link_mut().reachable = false;
    let from = region.link().shipped.len();
    region.propose(leader, global_call(7, 1));
    while region.link().shipped.len() == from {
        region.tick(1);
    }
    let first_unacknowledged = region.link().shipped[from].1;
    let interval_ticks = (100_000 / TICK_US) as usize;
    let mut copies_at = Vec::new();
    let mut seen = region
        .link()
        .shipped
        .iter()
        .filter(|batch| batch.1 == first_unacknowledged)
        .count();
    for tick in 1..=16 * interval_ticks {
        region.tick(1);
        let now_seen = region
            .link()
            .shipped
            .iter()
            .filter(|batch| batch.1 == first_unacknowledged)
            .count();
        if now_seen > seen {
            copies_at.push(tick);
            seen = now_seen;
        }
    }
    let gaps: Vec<usize> = copies_at
        .windows(2)
        .map(|pair| (pair[1] - pair[0] + interval_ticks / 2) / interval_ticks)
        .collect();
    assert_eq!(
        copies_at.len(),
        5,
        "resends at ticks {copies_at:?} ({interval_ticks} ticks per interval)"
    );
    assert_eq!(gaps, vec![2, 4, 4, 4], "resends at ticks {copies_at:?}");
    assert!(copies_at[0] <= interval_ticks + 2, "{copies_at:?}");
    // The coordinator answers again: the next resend reaches it, acknowledgements move, and
    // from then on every batch goes once.
    region.link_mut().reachable = true;
    region.tick(5 * interval_ticks);
    let from = region.link().shipped.len();
    region.tick(10 * interval_ticks);
    let later: Vec<(u64, u64)> = region.link().shipped[from..]
        .iter()
        .map(|batch| (batch.0, batch.1))
        .collect();
    let distinct: std::collections::BTreeSet<(u64, u64)> = later.iter().copied().collect();
    assert!(later.len() >= 10, "{} batches shipped", later.len());
    assert_eq!(distinct.len(), later.len(), "a batch went twice: {later:?}");
}
