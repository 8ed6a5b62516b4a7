//! Coordinator replicas of a real raft-rs group over in-memory stores, routed by hand: batch
//! acknowledgements, NotLeader answers, the hybrid clock's skew bound, suspicion of a silent
//! region, epoch delivery and resends, bounds, restarts, and a new leader that derives the
//! same epochs from the log. Reference: docs/global-protocol.md sections 4 to 9.

use std::collections::BTreeMap;

use dsss_global_coordinator::{
    CoordinatorConfig, CoordinatorLimits, CoordinatorNode, CoordinatorOutput, Epoch, InputError,
    Notice, PROPOSALS_PENDING_MAX, RegionMessage,
};
use dsss_raft_group::raft::eraftpb::{Message, MessageType};
use dsss_raft_group::testing::{Network, TestNode};
use dsss_raft_group::{ClockSample, ClockVerdict, MemoryStore, StoreIo};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
    proto,
};

const START_US: u64 = 1_700_000_000_000_000;
const TICK_US: u64 = 10_000;

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn record(name: &str, sequence: u64, physical_us: u64) -> proto::Record {
    proto::Record::from(Record {
        object_id: ObjectId::new("lobby/main").unwrap(),
        method_id: MethodId(1),
        arguments: Arguments::new(format!("{name}/{sequence}").into_bytes()).unwrap(),
        client_id: ClientId(3),
        request_sequence: RequestSequence(sequence),
        timestamp: Timestamp::new(physical_us, 0),
        scope: Scope::Global,
        origin_region: region(name),
    })
}

fn time(physical_us: u64) -> Option<proto::Timestamp> {
    Some(Timestamp::new(physical_us, 0).into())
}

struct Replica {
    node: Option<CoordinatorNode>,
    store: MemoryStore,
    config: CoordinatorConfig,
    outputs: Vec<CoordinatorOutput>,
    epoch_replies: Vec<(u64, proto::ReadSealedEpochReply)>,
    notices: Vec<Notice>,
    /// The offsets of the other replicas' clocks this replica measures, by node id (0 for
    /// those not named): its driver's clock samples, fresh at every tick.
    peer_clock_offsets_us: BTreeMap<u64, i64>,
}

impl TestNode for Replica {
    type Shared = ();

    fn receive(&mut self, message: &[u8]) -> bool {
        let Some(node) = self.node.as_mut() else {
            return false;
        };
        let _ = node.handle_raft_message(message);
        true
    }

    fn ready(&mut self, _now_us: u64, _shared: &mut ()) -> Vec<Message> {
        let Some(node) = self.node.as_mut() else {
            return Vec::new();
        };
        let mut io = StoreIo::new(&mut self.store);
        node.handle_ready(&mut io).unwrap();
        let outbox = std::mem::take(&mut io.outbox);
        while let Some(output) = node.poll_output() {
            match output {
                CoordinatorOutput::ToRegion { .. } => self.outputs.push(output),
                CoordinatorOutput::Notice(notice) => self.notices.push(notice),
                CoordinatorOutput::SealedEpochReply { read_id, reply } => {
                    self.epoch_replies.push((read_id, reply));
                }
            }
        }
        outbox
    }

    fn tick(&mut self, now_us: u64) {
        if let Some(node) = self.node.as_mut() {
            let samples = self
                .config
                .replica_ids
                .iter()
                .filter(|peer| **peer != self.config.node_id)
                .map(|&peer| {
                    let offset_us = self.peer_clock_offsets_us.get(&peer).copied();
                    let sample = ClockSample {
                        offset_us: offset_us.unwrap_or(0),
                        uncertainty_us: 1_000,
                        taken_at_us: now_us,
                    };
                    (peer, sample)
                })
                .collect();
            node.handle_clock_verdict(&ClockVerdict::Within, samples);
            node.handle_tick(now_us);
        }
    }

    fn is_leader(&self) -> bool {
        self.node.as_ref().is_some_and(CoordinatorNode::is_leader)
    }
}

/// Replicas over the in-memory test network.
struct Cluster {
    network: Network<Replica>,
}

impl Cluster {
    fn new(ids: &[u64], regions: &[&str], adjust: impl Fn(&mut CoordinatorConfig)) -> Cluster {
        let mut network = Network::new(START_US, TICK_US);
        for &id in ids {
            let mut config = CoordinatorConfig::new(
                id,
                ids.to_vec(),
                regions.iter().map(|name| region(name)).collect(),
            );
            config.suspicion_timeout_us = 300_000;
            config.resend_interval_us = 50_000;
            adjust(&mut config);
            let mut store = MemoryStore::new();
            let node = CoordinatorNode::open(config.clone(), &mut store).unwrap();
            network.insert(
                id,
                Replica {
                    node: Some(node),
                    store,
                    config,
                    outputs: Vec::new(),
                    epoch_replies: Vec::new(),
                    notices: Vec::new(),
                    peer_clock_offsets_us: BTreeMap::new(),
                },
            );
        }
        Cluster { network }
    }

    fn now_us(&self) -> u64 {
        self.network.now_us()
    }

    fn node(&self, id: u64) -> &CoordinatorNode {
        self.network.node(id).node.as_ref().unwrap()
    }

    fn node_mut(&mut self, id: u64) -> &mut CoordinatorNode {
        self.network.node_mut(id).node.as_mut().unwrap()
    }

    fn tick(&mut self, ticks: usize) {
        self.network.tick(ticks);
    }

    fn read_sealed_epoch(&mut self, to: u64, read_id: u64) {
        let now_us = self.now_us();
        let request = proto::ReadSealedEpochRequest {
            sender_node_id: 100,
            sender_time: time(now_us),
        };
        self.node_mut(to)
            .handle_read_sealed_epoch(now_us, read_id, request)
            .unwrap();
        self.network.settle();
    }

    fn notices(&self, id: u64) -> &[Notice] {
        &self.network.node(id).notices
    }

    fn take_epoch_replies(&mut self, id: u64) -> Vec<(u64, proto::ReadSealedEpochReply)> {
        std::mem::take(&mut self.network.node_mut(id).epoch_replies)
    }

    fn elect(&mut self) -> u64 {
        self.network.elect(3)
    }

    fn submit(
        &mut self,
        to: u64,
        name: &str,
        incarnation: u64,
        batch_number: u64,
        records: Vec<proto::Record>,
        closed_us: u64,
    ) -> Result<(), InputError> {
        let now_us = self.now_us();
        let batch = proto::RegionBatch {
            region: name.to_owned(),
            batch_number,
            records,
            closed_timestamp: time(closed_us),
            sender_node_id: 100,
            sender_time: time(now_us),
            incarnation,
        };
        let outcome = self.node_mut(to).handle_region_batch(now_us, batch);
        self.network.settle();
        outcome
    }

    fn acknowledge(&mut self, to: u64, name: &str, through: u64) {
        let now_us = self.now_us();
        let ack = proto::SealedEpochAck {
            region: name.to_owned(),
            appended_through_epoch_number: through,
            appended_parts_of_next_epoch: 0,
            not_leader: None,
            sender_time: time(now_us),
        };
        self.node_mut(to).handle_epoch_ack(now_us, ack).unwrap();
        self.network.settle();
    }

    fn take_outputs(&mut self, id: u64) -> Vec<CoordinatorOutput> {
        std::mem::take(&mut self.network.node_mut(id).outputs)
    }

    fn crash(&mut self, id: u64) {
        let replica = self.network.node_mut(id);
        replica.node = None;
        replica.store.crash();
    }

    fn restart(&mut self, id: u64) {
        let replica = self.network.node_mut(id);
        replica.node =
            Some(CoordinatorNode::open(replica.config.clone(), &mut replica.store).unwrap());
    }

    fn epochs(&self, id: u64) -> Vec<Epoch> {
        self.node(id).state().retained_epochs().cloned().collect()
    }
}

/// Messages for regions, each with its region.
type ToRegions<T> = Vec<(RegionId, T)>;

/// The epoch parts among `outputs`, by region. (Batches are answered at once, with
/// `CoordinatorNode::current_batch_ack`.)
fn split(outputs: Vec<CoordinatorOutput>) -> ToRegions<proto::SealedEpoch> {
    let mut epochs = Vec::new();
    for output in outputs {
        let CoordinatorOutput::ToRegion { region, message } = output else {
            unreachable!("the cluster keeps only messages to regions here");
        };
        match message {
            RegionMessage::Epoch(epoch) => epochs.push((region, epoch)),
            // The unasked acknowledgements that wake idle regions are looked at by the tests
            // that need them (`records_wake_idle_regions_once`), and so are the announcements
            // of a new leader (`a_new_leader_announces_itself_to_every_member_region_with_its_term`).
            RegionMessage::BatchAck(_) | RegionMessage::LeaderAnnouncement(_) => {}
        }
    }
    epochs
}

/// A follower whose hybrid clock runs ahead of its physical clock (its wall clock leapt ahead
/// and back) fences itself and delivers none of the epochs it seals: regions would refuse its
/// sender time beyond the skew bound. The other follower and the leader deliver them.
#[test]
fn a_follower_whose_clock_runs_ahead_delivers_no_epochs() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let (ahead, other) = match leader {
        1 => (2, 3),
        2 => (1, 3),
        _ => (1, 2),
    };
    // Its wall clock reads a minute ahead at one tick, then is back.
    let now_us = cluster.now_us();
    cluster.node_mut(ahead).handle_tick(now_us + 60_000_000);
    cluster.tick(1);
    assert!(cluster.node(ahead).clock_fenced());
    assert!(cluster.node(ahead).clock_runs_ahead());
    let base = cluster.now_us();
    for number in 1..=3 {
        let at = base + number * 1_000;
        for name in ["a", "b"] {
            cluster
                .submit(
                    leader,
                    name,
                    1,
                    number,
                    vec![record(name, number, at - 500)],
                    at,
                )
                .unwrap();
        }
    }
    cluster.tick(2);
    assert_eq!(cluster.epochs(leader).len(), 3);
    assert_eq!(cluster.epochs(ahead), cluster.epochs(leader));
    assert!(!split(cluster.take_outputs(leader)).is_empty());
    assert_eq!(split(cluster.take_outputs(ahead)), vec![]);
    let delivered = |cluster: &Cluster, id| {
        cluster
            .node(id)
            .status()
            .counters
            .epochs_delivered_as_follower
    };
    assert_eq!(delivered(&cluster, ahead), 0);
    assert_eq!(
        delivered(&cluster, other),
        6,
        "three epochs to each of two regions"
    );
}

#[test]
fn a_new_leader_derives_the_same_epochs_from_the_log() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let base = cluster.now_us();
    for number in 1..=4 {
        let at = base + number * 1_000;
        cluster
            .submit(
                leader,
                "a",
                1,
                number,
                vec![record("a", number, at - 500)],
                at,
            )
            .unwrap();
        cluster
            .submit(
                leader,
                "b",
                1,
                number,
                vec![record("b", number, at - 500)],
                at,
            )
            .unwrap();
    }
    cluster.tick(2);
    let epochs = split(cluster.take_outputs(leader));
    let now_us = cluster.now_us();
    let ack = cluster
        .node_mut(leader)
        .current_batch_ack(now_us, "b")
        .unwrap();
    assert!(ack.acknowledged_through_batch_number == 4 && ack.member && ack.incarnation == 1);
    assert!(
        epochs
            .iter()
            .any(|(name, epoch)| *name == region("a") && epoch.epoch_number == 4)
    );
    let sealed = cluster.epochs(leader);
    assert_eq!(sealed.len(), 4);
    // Followers commit on their own synced copies and the leader's, and deliver what they
    // seal too: the same parts, whoever sends them.
    let parts = |sent: ToRegions<proto::SealedEpoch>| {
        sent.into_iter()
            .map(|(name, part)| (name, part.epoch_number, part.part_index, part.records))
            .collect::<Vec<_>>()
    };
    let delivered_by_leader = parts(epochs.clone());
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.epochs(id),
            sealed,
            "replica {id} sealed the same epochs"
        );
        if id != leader {
            let delivered = parts(split(cluster.take_outputs(id)));
            assert_eq!(delivered, delivered_by_leader, "replica {id}");
            assert_eq!(
                cluster
                    .node(id)
                    .status()
                    .counters
                    .epochs_delivered_as_follower,
                8,
                "replica {id}: four epochs to each of two regions"
            );
        }
    }

    cluster.crash(leader);
    let new_leader = cluster.elect();
    assert_ne!(new_leader, leader);
    // Region a resends batch 4 (a duplicate) and goes on; b goes on.
    let at = base + 10_000;
    cluster
        .submit(
            new_leader,
            "a",
            1,
            4,
            vec![record("a", 4, base + 3_500)],
            base + 4_000,
        )
        .unwrap();
    cluster
        .submit(new_leader, "a", 1, 5, vec![record("a", 5, at - 500)], at)
        .unwrap();
    cluster.submit(new_leader, "b", 1, 5, vec![], at).unwrap();
    let epochs_after = cluster.epochs(new_leader);
    assert_eq!(&epochs_after[..4], &sealed[..], "no sealed epoch changed");
    assert_eq!(epochs_after.len(), 5);
    assert_eq!(epochs_after[4].records.len(), 1);

    cluster.restart(leader);
    cluster.tick(20);
    let reference = cluster.node(new_leader).state().clone();
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.node(id).state(),
            &reference,
            "replica {id} caught up"
        );
    }
    // The new leader sent every retained epoch to both regions from their acknowledged point.
    let resent = split(cluster.take_outputs(new_leader));
    for name in ["a", "b"] {
        let numbers: Vec<u64> = resent
            .iter()
            .filter(|(to, _)| *to == region(name))
            .map(|(_, epoch)| epoch.epoch_number)
            .collect();
        assert!(
            (1..=5).all(|number| numbers.contains(&number)),
            "{name}: {numbers:?}"
        );
    }
}

#[test]
fn followers_answer_batches_with_a_leader_hint_and_take_nothing() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a"], |config| {
        config.preferred_leader = Some(2)
    });
    let leader = cluster.elect();
    assert_eq!(leader, 2, "the preferred leader campaigns at start");
    let follower = 1;
    let now_us = cluster.now_us();
    cluster
        .submit(follower, "a", 1, 1, vec![record("a", 1, now_us)], now_us)
        .unwrap();
    assert!(split(cluster.take_outputs(follower)).is_empty());
    let ack = cluster
        .node_mut(follower)
        .current_batch_ack(now_us, "a")
        .unwrap();
    let not_leader = ack.not_leader.clone().expect("a NotLeader answer");
    assert_eq!(not_leader.leader_node_id, leader);
    assert_eq!(ack.acknowledged_through_batch_number, 0);
    assert!(ack.sender_time.is_some());
    assert_eq!(cluster.node(leader).state().pending_count(), 0);
}

#[test]
fn messages_beyond_the_clock_skew_are_refused_and_counted() {
    let mut cluster = Cluster::new(&[1], &["a"], |config| config.max_clock_skew_us = 1_000);
    let leader = cluster.elect();
    let now_us = cluster.now_us();
    let batch = proto::RegionBatch {
        region: "a".to_owned(),
        batch_number: 1,
        records: vec![],
        closed_timestamp: time(now_us),
        sender_node_id: 100,
        sender_time: time(now_us + 5_000),
        incarnation: 1,
    };
    let error = cluster
        .node_mut(leader)
        .handle_region_batch(now_us, batch.clone())
        .unwrap_err();
    assert!(matches!(error, InputError::ClockSkew { .. }), "{error}");
    assert!(error.to_string().contains("maximum skew"), "{error}");
    let ack = proto::SealedEpochAck {
        region: "a".to_owned(),
        sender_time: time(now_us + 9_000),
        ..proto::SealedEpochAck::default()
    };
    assert!(
        cluster
            .node_mut(leader)
            .handle_epoch_ack(now_us, ack)
            .is_err()
    );
    assert_eq!(cluster.node(leader).status().counters.refused_for_skew, 2);
    let missing = proto::RegionBatch {
        sender_time: None,
        ..batch.clone()
    };
    let error = cluster
        .node_mut(leader)
        .handle_region_batch(now_us, missing)
        .unwrap_err();
    assert!(
        matches!(error, InputError::MissingSenderTime { .. }),
        "{error}"
    );
    // Within the skew, the clock moves past the sender's time.
    let ahead = proto::RegionBatch {
        sender_time: time(now_us + 800),
        ..batch
    };
    cluster
        .node_mut(leader)
        .handle_region_batch(now_us, ahead)
        .unwrap();
    assert!(cluster.node(leader).clock().last() > Timestamp::new(now_us + 800, 0));
}

#[test]
fn invalid_batches_and_acknowledgements_are_refused_with_clear_errors() {
    let mut cluster = Cluster::new(&[1], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let now_us = cluster.now_us();
    let error = cluster
        .submit(leader, "zz", 1, 1, vec![], now_us)
        .unwrap_err();
    assert!(matches!(error, InputError::UnknownRegion { .. }), "{error}");
    let error = cluster
        .submit(leader, "Not A Region", 1, 1, vec![], now_us)
        .unwrap_err();
    assert!(matches!(error, InputError::UnknownRegion { .. }), "{error}");
    let error = cluster
        .submit(leader, "a", 1, 1, vec![record("b", 1, now_us)], now_us)
        .unwrap_err();
    assert!(error.to_string().contains("origin region"), "{error}");
    let mut unscoped = record("a", 1, now_us);
    unscoped.scope = 0;
    let error = cluster
        .submit(leader, "a", 1, 1, vec![unscoped], now_us)
        .unwrap_err();
    assert!(
        error.to_string().contains("record 0") && error.to_string().contains("scope"),
        "{error}"
    );
    let error = cluster
        .submit(leader, "a", 1, 0, vec![], now_us)
        .unwrap_err();
    assert!(error.to_string().contains("batch number 0"), "{error}");
    let ack = proto::SealedEpochAck {
        region: "a".to_owned(),
        appended_through_epoch_number: 3,
        sender_time: time(now_us),
        ..proto::SealedEpochAck::default()
    };
    let error = cluster
        .node_mut(leader)
        .handle_epoch_ack(now_us, ack)
        .unwrap_err();
    assert!(
        error.to_string().contains("beyond the newest sealed epoch"),
        "{error}"
    );
    assert_eq!(cluster.node(leader).state().pending_count(), 0);
}

#[test]
fn a_silent_region_is_suspected_and_readmitted_in_a_new_incarnation() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b", "c"], |_| {});
    let leader = cluster.elect();
    let start = cluster.now_us();
    for name in ["a", "b", "c"] {
        cluster
            .submit(leader, name, 1, 1, vec![record(name, 1, start - 10)], start)
            .unwrap();
    }
    assert_eq!(cluster.node(leader).state().newest_epoch_number(), 1);
    cluster.take_outputs(leader);
    // a and b keep closing every tick; c falls silent with a record pending.
    cluster
        .submit(
            leader,
            "c",
            1,
            2,
            vec![record("c", 2, start + 5_000)],
            start + 5_000,
        )
        .unwrap();
    let mut removed_at = None;
    for batch_number in 2..62 {
        cluster.tick(1);
        let now_us = cluster.now_us();
        for name in ["a", "b"] {
            cluster
                .submit(leader, name, 1, batch_number, vec![], now_us)
                .unwrap();
        }
        let c = cluster
            .node(leader)
            .state()
            .region(&region("c"))
            .unwrap()
            .clone();
        if !c.member {
            removed_at = Some(now_us);
            break;
        }
    }
    let removed_at = removed_at.expect("c was suspected");
    assert!(
        removed_at - start >= 300_000,
        "not before the suspicion timeout"
    );
    let state = cluster.node(leader).state();
    assert!(
        state
            .pending_records()
            .all(|record| record.origin_region != region("c"))
    );
    let newest = state.epoch(state.newest_epoch_number()).unwrap();
    assert_eq!(newest.member_regions, vec![region("a"), region("b")]);
    // c, still in incarnation 1, is told it is out; the epochs reach it too.
    cluster
        .submit(leader, "c", 1, 3, vec![], removed_at)
        .unwrap();
    let epochs = split(cluster.take_outputs(leader));
    let ack = cluster
        .node_mut(leader)
        .current_batch_ack(removed_at, "c")
        .unwrap();
    assert!(!ack.member && ack.incarnation == 1 && ack.acknowledged_through_batch_number == 2);
    assert!(epochs.iter().any(
        |(name, epoch)| *name == region("c") && !epoch.member_regions.contains(&"c".to_owned())
    ));
    // c learns, and returns in incarnation 2 with its unsealed record.
    let watermark = cluster.node(leader).state().watermark();
    let newest_before = cluster.node(leader).state().newest_epoch_number();
    cluster
        .submit(
            leader,
            "c",
            2,
            1,
            vec![record("c", 2, start + 5_000)],
            removed_at,
        )
        .unwrap();
    let c = cluster
        .node(leader)
        .state()
        .region(&region("c"))
        .unwrap()
        .clone();
    assert!(c.member && c.incarnation == 2);
    // The record is pending, or sealed by the readmission already when the others' closed
    // timestamps had passed the watermark.
    let state = cluster.node(leader).state();
    let lifted = state
        .pending_records()
        .chain(
            state
                .retained_epochs()
                .filter(|epoch| epoch.number > newest_before)
                .flat_map(|epoch| epoch.records.iter()),
        )
        .find(|record| record.origin_region == region("c") && record.request_sequence.get() == 2)
        .unwrap()
        .timestamp;
    assert!(
        lifted > watermark,
        "the re-sent record is lifted above the watermark"
    );
    assert_eq!(cluster.node(leader).status().counters.regions_readmitted, 1);
    // The leader said each step once, for the operator's log.
    let notices = cluster.notices(leader);
    let suspected = notices
        .iter()
        .filter(|notice| matches!(notice, Notice::RegionSuspected { region: r, .. } if *r == region("c")))
        .count();
    assert_eq!(suspected, 1, "{notices:?}");
    assert!(
        notices.iter().any(
            |notice| matches!(notice, Notice::RegionRemoved { region: r, .. } if *r == region("c"))
        ),
        "{notices:?}"
    );
    assert!(
        notices.contains(&Notice::RegionReadmitted {
            region: region("c")
        }),
        "{notices:?}"
    );
}

#[test]
fn epochs_are_resent_from_the_acknowledged_point_and_dropped_once_all_appended() {
    let mut cluster = Cluster::new(&[1], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let base = cluster.now_us();
    for number in 1..=3 {
        for name in ["a", "b"] {
            // Each epoch carries a record of a: an epoch without records is sealed only for
            // a membership change.
            let records = if name == "a" {
                vec![record(name, number, base + number)]
            } else {
                vec![]
            };
            cluster
                .submit(leader, name, 1, number, records, base + number)
                .unwrap();
        }
    }
    assert_eq!(cluster.node(leader).state().newest_epoch_number(), 3);
    cluster.acknowledge(leader, "a", 3);
    cluster.acknowledge(leader, "b", 1);
    cluster.take_outputs(leader);
    cluster.tick(6);
    let resent = split(cluster.take_outputs(leader));
    let to = |name: &str| -> Vec<u64> {
        resent
            .iter()
            .filter(|(region_id, _)| *region_id == region(name))
            .map(|(_, epoch)| epoch.epoch_number)
            .collect()
    };
    assert!(to("a").is_empty(), "a appended everything: {:?}", to("a"));
    assert!(
        !to("b").is_empty() && to("b").iter().all(|&number| number >= 2),
        "{:?}",
        to("b")
    );
    let state = cluster.node(leader).state();
    assert_eq!(state.region(&region("a")).unwrap().acknowledged_epoch, 3);
    assert_eq!(state.retained_epochs().next().unwrap().number, 2);
    cluster.acknowledge(leader, "b", 3);
    cluster.tick(1);
    // Only the newest epoch stays, which every region appended: a region that skipped to it
    // through another region's log learns nothing else while no epoch is sealed.
    let state = cluster.node(leader).state();
    assert_eq!(state.retained_epoch_count(), 1);
    assert_eq!(state.retained_epochs().next().unwrap().number, 3);
}

#[test]
fn bounds_refuse_batches_as_overloaded_instead_of_growing() {
    let mut cluster = Cluster::new(&[1], &["a", "b"], |config| {
        config.limits = CoordinatorLimits {
            pending_records_bytes_max: 300,
            ..CoordinatorLimits::default()
        };
    });
    let leader = cluster.elect();
    let now_us = cluster.now_us();
    let records: Vec<proto::Record> = (1..=12)
        .map(|sequence| record("a", sequence, now_us + sequence))
        .collect();
    let error = cluster
        .submit(leader, "a", 1, 1, records, now_us + 20)
        .unwrap_err();
    assert!(matches!(error, InputError::Overloaded { .. }), "{error}");
    assert!(error.to_string().contains("pending records"), "{error}");

    // Proposals waiting for the next round are bounded too.
    let node = cluster.node_mut(leader);
    let mut refused = None;
    for number in 1..=PROPOSALS_PENDING_MAX as u64 + 1 {
        let batch = proto::RegionBatch {
            region: "b".to_owned(),
            batch_number: number,
            records: vec![],
            closed_timestamp: time(now_us),
            sender_node_id: 100,
            sender_time: time(now_us),
            incarnation: 1,
        };
        if let Err(error) = node.handle_region_batch(now_us, batch) {
            refused = Some((number, error));
            break;
        }
    }
    let (number, error) = refused.expect("the queue is bounded");
    assert_eq!(number, PROPOSALS_PENDING_MAX as u64 + 1);
    assert!(matches!(error, InputError::Overloaded { .. }), "{error}");
    assert!(node.status().counters.batches_overloaded >= 2);
    cluster.network.settle();
    assert_eq!(
        cluster
            .node(leader)
            .state()
            .region(&region("b"))
            .unwrap()
            .next_batch_number,
        PROPOSALS_PENDING_MAX as u64 + 1
    );
}

#[test]
fn a_restarted_replica_recovers_its_state_from_the_store() {
    let mut cluster = Cluster::new(&[1], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let now_us = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 1, vec![record("a", 1, now_us - 5)], now_us)
        .unwrap();
    cluster
        .submit(
            leader,
            "b",
            1,
            1,
            vec![record("b", 1, now_us - 3)],
            now_us - 1,
        )
        .unwrap();
    cluster
        .submit(
            leader,
            "b",
            1,
            2,
            vec![record("b", 2, now_us + 10)],
            now_us + 20,
        )
        .unwrap();
    let before = cluster.node(leader).state().clone();
    // b's second record waits for a, whose closed timestamp rose past nothing pending: no
    // second epoch.
    assert!(before.pending_count() == 1 && before.newest_epoch_number() == 1);
    cluster.crash(leader);
    cluster.restart(leader);
    // What applying the last entries wrote may be lost with the crash (it is written without
    // a sync, see RaftGroup::handle_ready); the entries are durable in the raft log, and the
    // replica applies them again once it leads, to the same state.
    cluster.elect();
    assert_eq!(cluster.node(leader).state(), &before);
    assert!(cluster.node(leader).clock().last() >= before.watermark());
    cluster
        .submit(leader, "b", 1, 2, vec![], now_us + 20)
        .unwrap();
    let ack = cluster
        .node_mut(leader)
        .current_batch_ack(now_us + 20, "b")
        .unwrap();
    assert_eq!(
        ack.acknowledged_through_batch_number, 2,
        "answered as a duplicate"
    );
}

#[test]
fn a_configuration_comes_from_the_topology() {
    let topology = dsss_topology::local_default();
    let replica = topology.coordinator.replicas[0];
    let config = CoordinatorConfig::from_topology(&topology, replica).unwrap();
    assert_eq!(config.regions.len(), topology.regions.len());
    assert!(config.regions.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(
        config.preferred_leader,
        Some(topology.coordinator.preferred_leader)
    );
    assert_eq!(config.epoch_interval_us, topology.cluster.epoch_us);
    assert_eq!(config.max_clock_skew_us, topology.cluster.max_clock_skew_us);
    assert!(
        config.election_tick as u64 * config.epoch_interval_us >= 10 * topology.latency.d_max_us()
    );
    // Three heartbeats before the shortest election timeout.
    assert_eq!(config.heartbeat_tick, config.election_tick / 3);
    assert!(3 * config.heartbeat_tick <= config.election_tick);
    let error = CoordinatorConfig::from_topology(&topology, 999_999).unwrap_err();
    assert_eq!(error.field, "node_id");
}

/// Reference: docs/global-protocol.md section 8 (the sealed-epoch read behind `Sync`): the
/// leader answers a sealed epoch read only after a quorum confirms it still leads; a deposed
/// leader cut off from the others never answers with its stale epoch.
#[test]
fn sealed_epoch_reads_are_answered_only_by_a_confirmed_leader() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a"], |_| {});
    let leader = cluster.elect();
    let base = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 1, vec![record("a", 1, base - 500)], base)
        .unwrap();
    cluster.tick(2);
    assert_eq!(cluster.node(leader).state().newest_epoch_number(), 1);

    cluster.read_sealed_epoch(leader, 7);
    let replies = cluster.take_epoch_replies(leader);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, 7);
    assert_eq!(replies[0].1.epoch_number, 1);
    assert!(replies[0].1.not_leader.is_none());
    assert!(replies[0].1.watermark.is_some());

    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    cluster.read_sealed_epoch(follower, 8);
    let replies = cluster.take_epoch_replies(follower);
    assert_eq!(replies.len(), 1);
    assert_eq!(
        replies[0]
            .1
            .not_leader
            .as_ref()
            .map(|hint| hint.leader_node_id),
        Some(leader)
    );

    // The leader is cut off: it still believes it leads, but cannot confirm it.
    cluster.network.isolate(leader);
    cluster.read_sealed_epoch(leader, 9);
    cluster.tick(1);
    assert!(
        cluster.take_epoch_replies(leader).is_empty(),
        "no quorum confirmed the read"
    );
    // The others elect a new leader and seal a newer epoch.
    let new_leader = cluster.elect();
    assert_ne!(new_leader, leader);
    let at = cluster.now_us();
    cluster
        .submit(new_leader, "a", 1, 2, vec![record("a", 2, at - 500)], at)
        .unwrap();
    cluster.tick(2);
    assert_eq!(cluster.node(new_leader).state().newest_epoch_number(), 2);
    // The old leader gives up within two election timeouts, without ever naming epoch 1.
    let election_tick = cluster.network.node(leader).config.election_tick;
    cluster.tick(2 * election_tick);
    let replies = cluster.take_epoch_replies(leader);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, 9);
    assert!(replies[0].1.not_leader.is_some(), "{replies:?}");
    assert_eq!(replies[0].1.epoch_number, 0);
    assert!(
        cluster
            .node(leader)
            .status()
            .counters
            .epoch_reads_not_leader
            >= 1
    );
}

/// Followers of three replicas commit what they stored from the leader, seal the epochs it
/// closes and deliver them before the leader hears a single acknowledgement. A region that
/// appended such an epoch may acknowledge it to the leader, which reads that as "through the
/// newest" (and refuses an acknowledgement further ahead than its unapplied entries allow),
/// and a sealed-epoch read at the leader waits until the leader has applied those entries,
/// so that a `sync()` never misses a call a region has answered.
#[test]
fn epochs_followers_delivered_before_the_leader_knew_are_covered_by_reads_and_acknowledgements() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b"], |_| {});
    let leader = cluster.elect();
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    cluster.network.ignore(MessageType::MsgAppendResponse);
    let base = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 1, vec![record("a", 1, base - 500)], base)
        .unwrap();
    cluster.submit(leader, "b", 1, 1, vec![], base).unwrap();
    cluster.tick(1);
    assert_eq!(cluster.node(leader).state().newest_epoch_number(), 0);
    for &follower in &followers {
        assert_eq!(cluster.node(follower).state().newest_epoch_number(), 1);
        let delivered = split(cluster.take_outputs(follower));
        assert!(
            delivered
                .iter()
                .any(|(name, part)| *name == region("a") && part.epoch_number == 1),
            "follower {follower} delivered {delivered:?}"
        );
    }

    // The read waits: the leader has confirmed its leadership but not applied the entry.
    cluster.read_sealed_epoch(leader, 11);
    cluster.tick(2);
    assert!(cluster.take_epoch_replies(leader).is_empty());
    let now_us = cluster.now_us();
    let ack = |through| proto::SealedEpochAck {
        region: "a".to_owned(),
        appended_through_epoch_number: through,
        sender_time: time(now_us),
        ..proto::SealedEpochAck::default()
    };
    cluster
        .node_mut(leader)
        .handle_epoch_ack(now_us, ack(1))
        .unwrap();
    let error = cluster
        .node_mut(leader)
        .handle_epoch_ack(now_us, ack(100))
        .unwrap_err();
    assert!(
        error.to_string().contains("beyond the newest sealed epoch"),
        "{error}"
    );

    cluster.network.recover();
    cluster.tick(2);
    assert_eq!(cluster.node(leader).state().newest_epoch_number(), 1);
    let replies = cluster.take_epoch_replies(leader);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, 11);
    assert_eq!(replies[0].1.epoch_number, 1, "{replies:?}");
}

/// What lets the driver of an idle replica sleep between ticks: a follower with nothing to
/// serve reports the ticks before its election timeout as quiet, and after that many ticks
/// without hearing from the leader it still campaigns on the next one; a replica that has not
/// ticked yet (the preferred leader campaigns on its first tick) reports none.
#[test]
fn an_idle_follower_reports_quiet_ticks_and_campaigns_after_them() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b"], |_| {});
    assert_eq!(
        cluster.node(1).quiet_ticks(START_US, TICK_US),
        0,
        "before the first tick"
    );
    let leader = cluster.elect();
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let quiet = cluster
        .node(follower)
        .quiet_ticks(cluster.now_us(), TICK_US);
    assert!(quiet > 0, "an idle follower reported no quiet tick");

    // Cut off from the leader, the follower ticks through its quiet ticks as a follower, and
    // the tick after them starts an election.
    cluster.network.isolate(follower);
    for _ in 0..quiet {
        cluster.node_mut(follower).handle_tick(START_US);
        assert!(!cluster.node(follower).has_ready(), "a quiet tick acted");
    }
    cluster.node_mut(follower).handle_tick(START_US);
    assert!(
        cluster.node(follower).has_ready(),
        "no campaign after the quiet ticks"
    );
}

/// A region leader's batch of incarnation 1 sent at `now_us`, closing at `now_us`, without
/// records.
fn empty_batch(name: &str, batch_number: u64, now_us: u64) -> proto::RegionBatch {
    proto::RegionBatch {
        region: name.to_owned(),
        batch_number,
        records: vec![],
        closed_timestamp: time(now_us),
        sender_node_id: 100,
        sender_time: time(now_us),
        incarnation: 1,
    }
}

/// Replica 1 takes [`empty_batch`], then the network settles.
fn close_at(cluster: &mut Cluster, name: &str, batch_number: u64, now_us: u64) {
    let batch = empty_batch(name, batch_number, now_us);
    cluster
        .node_mut(1)
        .handle_region_batch(now_us, batch)
        .unwrap();
    cluster.network.settle();
}

/// The idle leader's driver sleeps through the ticks its duties leave quiet (the coordinator
/// leader of an idle `dsss up` used to be woken every epoch), and the leader still acts when
/// it would ticked every interval: one twin is ticked every interval, the other only when it
/// reports no quiet tick left or a batch arrives (then it runs the ticks it slept through
/// first, all with the batch's time, as the node loop does). Region a closes every 100 ms and
/// b falls silent: both twins suspect b on the same tick, keep a, and hold the same epochs,
/// while the late twin wakes for a fraction of the ticks.
#[test]
fn a_leader_sleeping_through_its_quiet_ticks_suspects_on_the_same_tick() {
    // Raft's own ticks would wake the leader every other tick: make them rare, so that the
    // leader's duties are what bounds its sleep.
    let rare_heartbeats = |config: &mut CoordinatorConfig| {
        config.election_tick = 100;
        config.heartbeat_tick = 60;
    };
    let mut on_time = Cluster::new(&[1], &["a", "b"], rare_heartbeats);
    let mut late = Cluster::new(&[1], &["a", "b"], rare_heartbeats);
    assert_eq!(on_time.elect(), 1);
    assert_eq!(late.elect(), 1);
    let start_us = on_time.now_us();
    assert_eq!(late.now_us(), start_us);
    for cluster in [&mut on_time, &mut late] {
        for name in ["a", "b"] {
            close_at(cluster, name, 1, start_us);
        }
    }
    let steps = 100u64;
    let mut a_batch_number = 1;
    let (mut owed, mut quiet_left, mut late_wakes) = (0u64, 0u64, 0u64);
    let mut b_removed_at_step = [None, None];
    for step in 1..=steps {
        let now_us = start_us + step * TICK_US;
        let a_closes = step % 10 == 0;
        if a_closes {
            a_batch_number += 1;
        }
        on_time.node_mut(1).handle_tick(now_us);
        on_time.network.settle();
        if a_closes {
            close_at(&mut on_time, "a", a_batch_number, now_us);
        }
        if quiet_left > 0 && !a_closes {
            owed += 1;
            quiet_left -= 1;
        } else {
            late_wakes += 1;
            for _ in 0..=owed {
                late.node_mut(1).handle_tick(now_us);
            }
            owed = 0;
            late.network.settle();
            if a_closes {
                close_at(&mut late, "a", a_batch_number, now_us);
            }
            quiet_left = late.node(1).quiet_ticks(now_us, TICK_US);
        }
        for (twin, cluster) in [&on_time, &late].into_iter().enumerate() {
            let b_member = cluster.node(1).state().region(&region("b")).unwrap().member;
            if !b_member && b_removed_at_step[twin].is_none() {
                b_removed_at_step[twin] = Some(step);
            }
        }
    }
    let removed_at_step = b_removed_at_step[0].expect("the silent region was suspected");
    // The suspicion timeout is 300 ms: 30 ticks of 10 ms.
    assert!(
        removed_at_step >= 30,
        "suspected after {removed_at_step} ticks"
    );
    assert_eq!(b_removed_at_step[1], Some(removed_at_step), "the late twin");
    for cluster in [&on_time, &late] {
        assert!(cluster.node(1).state().region(&region("a")).unwrap().member);
    }
    assert_eq!(on_time.epochs(1), late.epochs(1));
    assert!(
        late_wakes * 2 < steps,
        "the late twin woke for {late_wakes} of {steps} ticks"
    );
}

/// The leadership announcements among `outputs`, by region.
fn announcements(outputs: Vec<CoordinatorOutput>) -> Vec<(RegionId, proto::RegionBatchAck)> {
    unasked_acknowledgements(outputs, true)
}

/// The acknowledgements that wake idle regions among `outputs`, by region.
fn wake_ups(outputs: Vec<CoordinatorOutput>) -> Vec<(RegionId, proto::RegionBatchAck)> {
    unasked_acknowledgements(outputs, false)
}

/// The acknowledgements sent unasked among `outputs`, by region: the announcements of a new
/// leader, or the others.
fn unasked_acknowledgements(
    outputs: Vec<CoordinatorOutput>,
    announcements: bool,
) -> Vec<(RegionId, proto::RegionBatchAck)> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            CoordinatorOutput::ToRegion {
                region,
                message: RegionMessage::LeaderAnnouncement(ack),
            } if announcements => Some((region, ack)),
            CoordinatorOutput::ToRegion {
                region,
                message: RegionMessage::BatchAck(ack),
            } if !announcements => Some((region, ack)),
            _ => None,
        })
        .collect()
}

/// Idle regions do not ask whether closes are wanted: the leader tells them, once, when the
/// first records arrive after an idle spell. Every member region but the one that sent the
/// records hears `closes_wanted`; further records while closes are wanted wake nobody again,
/// nor do batches without records; once the records are sealed and the resend interval has
/// passed, the next records wake the others again.
#[test]
fn records_after_an_idle_spell_wake_the_other_regions_once() {
    let mut cluster = Cluster::new(&[1], &["a", "b", "c"], |_| {});
    let leader = cluster.elect();
    let base = cluster.now_us();
    for name in ["a", "b", "c"] {
        cluster.submit(leader, name, 1, 1, vec![], base).unwrap();
    }
    cluster.tick(10);
    cluster.take_outputs(leader);
    let now_us = cluster.now_us();
    let idle_ack = cluster.node_mut(leader).current_batch_ack(now_us, "b");
    assert!(
        !idle_ack.unwrap().closes_wanted,
        "nothing waits: closes are not wanted"
    );

    let now_us = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 2, vec![record("a", 1, now_us)], now_us)
        .unwrap();
    let woken = wake_ups(cluster.take_outputs(leader));
    let regions: Vec<&str> = woken.iter().map(|(region, _)| region.as_str()).collect();
    assert_eq!(
        regions,
        ["b", "c"],
        "every other member is told, the sender is not"
    );
    for (region, ack) in &woken {
        assert!(ack.closes_wanted, "{region}: {ack:?}");
        assert_eq!(ack.region, region.as_str());
        assert!(ack.not_leader.is_none());
        assert_eq!(ack.acknowledged_through_batch_number, 1, "{region}");
    }

    // While closes are wanted, more records and empty closes wake nobody.
    let now_us = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 3, vec![record("a", 2, now_us)], now_us)
        .unwrap();
    cluster.submit(leader, "b", 1, 2, vec![], now_us).unwrap();
    assert!(wake_ups(cluster.take_outputs(leader)).is_empty());

    // Every region closes past the records: they are sealed, and after the resend interval
    // closes are no longer wanted; new records wake the others again.
    let now_us = cluster.now_us() + 1;
    cluster.submit(leader, "a", 1, 4, vec![], now_us).unwrap();
    cluster.submit(leader, "b", 1, 3, vec![], now_us).unwrap();
    cluster.submit(leader, "c", 1, 2, vec![], now_us).unwrap();
    cluster.tick(10);
    let now_us = cluster.now_us();
    let ack = cluster.node_mut(leader).current_batch_ack(now_us, "c");
    assert!(!ack.unwrap().closes_wanted);
    cluster.take_outputs(leader);
    let now_us = cluster.now_us();
    cluster
        .submit(leader, "c", 1, 3, vec![record("c", 1, now_us)], now_us)
        .unwrap();
    let woken = wake_ups(cluster.take_outputs(leader));
    let regions: Vec<&str> = woken.iter().map(|(region, _)| region.as_str()).collect();
    assert_eq!(regions, ["a", "b"]);
    assert_eq!(cluster.node(leader).status().counters.idle_regions_woken, 4);
}

/// Idle regions close no batch: their liveness asks (the newest acknowledged batch again,
/// without records) keep them members for many suspicion timeouts, and cost no raft entry.
/// Once records wait, asks no longer count: a region that asks but does not close is
/// suspected after the timeout, and the others go on without it.
#[test]
fn liveness_asks_keep_an_idle_region_but_not_one_that_holds_records_back() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b", "c"], |_| {});
    let leader = cluster.elect();
    let start = cluster.now_us();
    for name in ["a", "b", "c"] {
        cluster.submit(leader, name, 1, 1, vec![], start).unwrap();
    }
    cluster.tick(10);
    let applied_before = cluster.node(leader).group().applied_index();
    // Four seconds, thirteen suspicion timeouts: every region asks every 50 ms.
    for _ in 0..80 {
        cluster.tick(5);
        let now_us = cluster.now_us();
        for name in ["a", "b", "c"] {
            cluster.submit(leader, name, 1, 1, vec![], now_us).unwrap();
        }
    }
    let state = cluster.node(leader).state();
    for name in ["a", "b", "c"] {
        let region_state = state.region(&region(name)).unwrap();
        assert!(region_state.member, "{name} was suspected while it asked");
        assert_eq!(region_state.incarnation, 1, "{name}");
    }
    let counters = cluster.node(leader).status().counters;
    assert_eq!(counters.liveness_asks_answered, 240);
    assert_eq!(counters.regions_removed, 0);
    let applied = cluster.node(leader).group().applied_index() - applied_before;
    assert!(applied <= 2, "{applied} raft entries for asks alone");

    // a's record waits for every region's close; c closes, b only asks.
    let now_us = cluster.now_us();
    cluster
        .submit(leader, "a", 1, 2, vec![record("a", 1, now_us)], now_us)
        .unwrap();
    let mut removed = false;
    for batch_number in 2..60 {
        cluster.tick(1);
        let now_us = cluster.now_us();
        cluster
            .submit(leader, "a", 1, batch_number + 1, vec![], now_us)
            .unwrap();
        cluster
            .submit(leader, "c", 1, batch_number, vec![], now_us)
            .unwrap();
        cluster.submit(leader, "b", 1, 1, vec![], now_us).unwrap();
        if !cluster
            .node(leader)
            .state()
            .region(&region("b"))
            .unwrap()
            .member
        {
            removed = true;
            break;
        }
    }
    assert!(removed, "b held a's record back by asking without closing");
    let state = cluster.node(leader).state();
    assert!(
        state.newest_epoch_number() >= 1,
        "a's record was sealed without b"
    );
}

/// A membership change is shown by the next epoch, which needs every member's close past the
/// watermark: idle members, which close no batch, are told once that closes are wanted, and
/// are no longer asked once the epoch is sealed.
#[test]
fn a_membership_change_wakes_the_idle_members_until_its_epoch_is_sealed() {
    let mut cluster = Cluster::new(&[1], &["a", "b", "c"], |_| {});
    let leader = cluster.elect();
    let start = cluster.now_us();
    for name in ["a", "b", "c"] {
        cluster.submit(leader, name, 1, 1, vec![], start).unwrap();
    }
    cluster.tick(5);
    cluster.take_outputs(leader);
    // a and b ask every 50 ms; c falls silent and is removed after the suspicion timeout.
    let mut woken = Vec::new();
    for _ in 0..20 {
        cluster.tick(5);
        let now_us = cluster.now_us();
        for name in ["a", "b"] {
            cluster.submit(leader, name, 1, 1, vec![], now_us).unwrap();
        }
        woken.extend(wake_ups(cluster.take_outputs(leader)));
        if !woken.is_empty() {
            break;
        }
    }
    let state = cluster.node(leader).state();
    assert!(!state.region(&region("c")).unwrap().member, "c was removed");
    assert!(state.membership_unsealed());
    let regions: Vec<&str> = woken.iter().map(|(region, _)| region.as_str()).collect();
    assert_eq!(regions, ["a", "b"], "each member told once");
    assert!(woken.iter().all(|(_, ack)| ack.closes_wanted));
    // a and b close: the epoch that shows the removal is sealed, and closes are no longer
    // wanted.
    let now_us = cluster.now_us();
    cluster.submit(leader, "a", 1, 2, vec![], now_us).unwrap();
    cluster.submit(leader, "b", 1, 2, vec![], now_us).unwrap();
    cluster.tick(1);
    let state = cluster.node(leader).state();
    assert!(!state.membership_unsealed());
    let newest = state.epoch(state.newest_epoch_number()).unwrap();
    assert_eq!(newest.member_regions, vec![region("a"), region("b")]);
    let now_us = cluster.now_us();
    let ack = cluster
        .node_mut(leader)
        .current_batch_ack(now_us, "a")
        .unwrap();
    assert!(!ack.closes_wanted);
}

/// A replica that begins to lead tells every member region so at once, unasked, with its id
/// and raft term, and every acknowledgement it gives carries them: a region whose calls still
/// go to a former leader that went silent (paused) without failing them sends the next ones to
/// the leader of the highest term it heard of, instead of waiting out each call's timeout.
/// A follower's `not_leader` answer names no term.
#[test]
fn a_new_leader_announces_itself_to_every_member_region_with_its_term() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b", "c"], |config| {
        config.preferred_leader = Some(1)
    });
    let first = cluster.elect();
    let first_term = cluster.node(first).status().term;
    let announced = announcements(cluster.take_outputs(first));
    // The first three, at once; then repeats to the regions that sent no batch (none did),
    // once per resend interval, if the election took that long to be noticed.
    let regions: Vec<&str> = announced
        .iter()
        .map(|(region, _)| region.as_str())
        .collect();
    assert_eq!(regions[..3], ["a", "b", "c"]);
    assert_eq!(regions.len() % 3, 0, "{regions:?}");
    for (region, ack) in &announced {
        assert_eq!(
            (ack.leader_node_id, ack.leader_term),
            (first, first_term),
            "{region}"
        );
        assert!(
            ack.not_leader.is_none() && ack.closes_wanted,
            "{region}: {ack:?}"
        );
    }
    let now_us = cluster.now_us();
    let answer = cluster
        .node_mut(first)
        .current_batch_ack(now_us, "b")
        .unwrap();
    assert_eq!(
        (answer.leader_node_id, answer.leader_term),
        (first, first_term)
    );
    let follower = if first == 2 { 3 } else { 2 };
    let refusal = cluster
        .node_mut(follower)
        .current_batch_ack(now_us, "b")
        .unwrap();
    assert!(refusal.not_leader.is_some());
    assert_eq!((refusal.leader_node_id, refusal.leader_term), (0, 0));

    // The leader goes silent; the next one announces a higher term.
    cluster.crash(first);
    let second = cluster.elect();
    assert_ne!(second, first);
    let second_term = cluster.node(second).status().term;
    assert!(second_term > first_term);
    let announced = announcements(cluster.take_outputs(second));
    assert!(announced.len() >= 3, "{announced:?}");
    for (region, ack) in &announced {
        assert_eq!(
            (ack.leader_node_id, ack.leader_term),
            (second, second_term),
            "{region}"
        );
    }
    assert_eq!(
        cluster
            .node(second)
            .status()
            .counters
            .leadership_announcements,
        announced.len() as u64
    );
}

/// After a failover the leader hands leadership back to the preferred replica once that one
/// holds what the leader held half an election timeout earlier and has stayed so for two
/// election timeouts (docs/global-protocol.md section 11): the order returns to where the
/// operator placed it, and the regions hear of the new term. A preferred replica whose clock
/// the leader measures beyond the skew bound (fenced, it would send no vote requests) is not
/// handed leadership until its clock is back within.
#[test]
fn leadership_returns_to_the_preferred_replica_once_it_is_a_healthy_follower_again() {
    const ELECTION_TICK: usize = 10;
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b"], |config| {
        config.preferred_leader = Some(1);
        config.election_tick = ELECTION_TICK;
    });
    assert_eq!(cluster.elect(), 1);
    cluster.crash(1);
    let second = cluster.elect();
    assert_ne!(second, 1);
    // The log grows while the preferred replica is down: it must catch up first.
    for batch_number in 1..=20 {
        let now_us = cluster.now_us();
        cluster
            .submit(second, "a", 1, batch_number, vec![], now_us)
            .unwrap();
        cluster.tick(1);
    }
    let second_term = cluster.node(second).status().term;
    // The leader measures the preferred replica's clock a second ahead: no transfer.
    cluster
        .network
        .node_mut(second)
        .peer_clock_offsets_us
        .insert(1, 1_000_000);
    cluster.restart(1);
    cluster.tick(20 * ELECTION_TICK);
    assert_eq!(cluster.network.leader(), Some(second));
    assert_eq!(cluster.node(second).status().counters.leadership_returns, 0);
    assert_eq!(
        cluster.node(1).status().applied_index,
        cluster.node(second).status().applied_index,
        "the preferred replica caught up"
    );

    // Its clock is back within the bound: after two election timeouts of health, leadership
    // goes back to it, in a new term it announces.
    cluster
        .network
        .node_mut(second)
        .peer_clock_offsets_us
        .clear();
    cluster.take_outputs(1);
    cluster.tick(2 * ELECTION_TICK);
    assert_eq!(
        cluster.network.leader(),
        Some(second),
        "not before the wait"
    );
    cluster.tick(2 * ELECTION_TICK);
    assert_eq!(cluster.network.leader(), Some(1));
    assert_eq!(cluster.node(second).status().counters.leadership_returns, 1);
    let term = cluster.node(1).status().term;
    assert!(term > second_term);
    let announced = announcements(cluster.take_outputs(1));
    let mut announced_to: Vec<RegionId> =
        announced.iter().map(|(region, _)| region.clone()).collect();
    // Repeated once per resend interval: region a sends no batch here.
    announced_to.dedup();
    // Region b, silent all along, was taken out of the membership.
    assert_eq!(announced_to, cluster.node(1).state().member_regions());
    assert_eq!(announced_to, [region("a")]);
    assert!(
        announced
            .iter()
            .all(|(_, ack)| (ack.leader_node_id, ack.leader_term) == (1, term))
    );
    // The preferred replica leads on: it hands leadership to no one.
    cluster.tick(20 * ELECTION_TICK);
    assert_eq!(cluster.network.leader(), Some(1));
    assert_eq!(cluster.node(1).status().counters.leadership_returns, 0);
    assert_eq!(cluster.node(1).status().term, term);
}

/// A member region none of whose batches reached the new leader hears its announcement again
/// every resend interval: a region that lost it would go on calling the former leader, and a
/// paused one holds those calls until their timeout. The repeats stop at the region's first
/// batch.
#[test]
fn the_announcement_is_repeated_to_each_region_until_a_batch_of_its_arrives() {
    let mut cluster = Cluster::new(&[1, 2, 3], &["a", "b", "c"], |config| {
        config.preferred_leader = Some(1)
    });
    let leader = cluster.elect();
    let first = announcements(cluster.take_outputs(leader));
    assert!(first.len() >= 3, "{first:?}");
    let resend_ticks = 5; // `resend_interval_us` of the test cluster, in 10 ms ticks
    let mut batch_number = 0;
    for (sends, hears_again) in [("a", ["b", "c"].as_slice()), ("b", &["c"]), ("c", &[])] {
        batch_number += 1;
        let now_us = cluster.now_us();
        cluster
            .submit(leader, sends, 1, batch_number, vec![], now_us)
            .unwrap();
        cluster.take_outputs(leader);
        cluster.tick(resend_ticks);
        let repeated = announcements(cluster.take_outputs(leader));
        let regions: Vec<&str> = repeated.iter().map(|(region, _)| region.as_str()).collect();
        assert_eq!(regions, hears_again, "after a batch of {sends}");
        let term = cluster.node(leader).status().term;
        assert!(
            repeated
                .iter()
                .all(|(_, ack)| (ack.leader_node_id, ack.leader_term) == (leader, term))
        );
    }
    cluster.tick(4 * resend_ticks);
    assert!(announcements(cluster.take_outputs(leader)).is_empty());
}

/// A replica whose physical clock leapt an hour ahead and back before any verdict fenced it
/// keeps a hybrid clock an hour ahead (it never moves back), and so stamps every message
/// beyond what regions accept: it fences itself until its physical clock catches up. Leading,
/// it hands leadership away; as the preferred replica, the leader's transfers back to it do
/// not take (it drops the request to take over), and the leader leads on in its own term,
/// taking again the batches whose proposals raft dropped during each transfer.
#[test]
fn a_replica_whose_hybrid_clock_ran_ahead_fences_itself_and_is_not_handed_leadership() {
    const HOUR_US: u64 = 3_600_000_000;
    let mut cluster = Cluster::new(&[1, 2, 3], &["a"], |config| {
        config.preferred_leader = Some(1);
        config.election_tick = 10;
    });
    assert_eq!(cluster.elect(), 1);
    let now_us = cluster.now_us();
    cluster.node_mut(1).handle_tick(now_us + HOUR_US);
    cluster.tick(1);
    assert!(cluster.node(1).clock_fenced());
    cluster.tick(50);
    let leader = cluster.network.leader().expect("another replica leads");
    assert_ne!(leader, 1);
    let term = cluster.node(leader).status().term;
    // Region a ships a batch every tick and, every resend interval, resends the ones not yet
    // taken, as regions do. raft drops the proposals made while a transfer is under way: the
    // leader must propose those batches again when they are resent, all of them, or it takes
    // one per resend interval and falls further behind with every tick.
    let taken = |cluster: &Cluster| {
        cluster
            .node(leader)
            .state()
            .region(&region("a"))
            .expect("a is known")
            .next_batch_number
    };
    let mut shipped = taken(&cluster) - 1;
    for tick in 0..400_u64 {
        let now_us = cluster.now_us();
        shipped += 1;
        let from = if tick.is_multiple_of(5) {
            taken(&cluster)
        } else {
            shipped
        };
        // All at once, as they arrive within a round trip, before any is applied.
        for batch_number in from..=shipped {
            let batch = empty_batch("a", batch_number, now_us);
            let _ = cluster.node_mut(leader).handle_region_batch(now_us, batch);
        }
        cluster.network.settle();
        cluster.tick(1);
    }
    assert!(cluster.node(leader).status().counters.proposals_dropped > 0);
    assert!(
        taken(&cluster) + 5 >= shipped,
        "the leader took batches through {} of {shipped}",
        taken(&cluster) - 1
    );
    assert_eq!(cluster.network.leader(), Some(leader));
    assert_eq!(cluster.node(leader).status().term, term);
    assert!(
        cluster.node(leader).status().counters.leadership_returns >= 2,
        "the leader tried, and tried again"
    );
    assert!(cluster.node(1).clock_fenced());
    assert_eq!(cluster.node(1).status().counters.clock_fences, 1);
}
