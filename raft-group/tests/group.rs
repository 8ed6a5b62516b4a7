//! A raft group of real raft-rs members over in-memory stores, routed by hand: the Ready order
//! (nothing that promises persisted state leaves before the persist), recovery after a crash,
//! catch-up by snapshot, membership changes, and seeded election timeouts.
//! Reference: docs/design.md section 3 (one `handle_ready` order), raft thesis 3.8 and 4.

mod common;

use std::collections::BTreeSet;

use common::Journal;
use dsss_raft_group::raft::eraftpb::{ConfChange, ConfChangeType, HardState, Message, MessageType};
use dsss_raft_group::testing::{Network, TestNode};
use dsss_raft_group::{
    Applied, DurableStore, LogRetention, MemoryStore, RAFT_LOG, RAFT_STATE, RaftGroup,
    RaftGroupConfig, ReadyIo, Role, StoreError, WriteBatch, decode_message,
};
use protobuf::Message as _;

/// The durable last index and hard state of a store, as a crash would leave them.
fn durable_view(store: &MemoryStore) -> (u64, HardState) {
    let hard_state = store
        .get_durable(RAFT_STATE, b"hard_state")
        .map(|bytes| HardState::parse_from_bytes(bytes).unwrap())
        .unwrap_or_default();
    let compacted = store
        .get_durable(RAFT_STATE, b"compacted")
        .map(|bytes| u64::from_be_bytes(bytes[..8].try_into().unwrap()))
        .unwrap_or(0);
    let mut last = compacted;
    while store
        .get_durable(RAFT_LOG, &(last + 1).to_be_bytes())
        .is_some()
    {
        last += 1;
    }
    (last, hard_state)
}

/// A `ReadyIo` that persists into a `MemoryStore` and, at every send, checks that each message
/// that promises persisted state finds that state durable already.
struct CheckingIo<'a> {
    node: u64,
    /// Whether the node's appends promise that its entries are durable
    /// (`RaftGroupConfig::followers_commit_synced_entries`).
    appends_promise_durable: bool,
    store: &'a mut MemoryStore,
    outbox: &'a mut Vec<Message>,
}

impl ReadyIo for CheckingIo<'_> {
    fn persist(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(batch, true)
    }

    // Written as the production store writes it: a crash loses it (see `Cluster::crash`),
    // so the checks at `send` see only what was synced.
    fn write_unsynced(&mut self, batch: WriteBatch) -> Result<(), StoreError> {
        self.store.write(batch, false)
    }

    fn send(&mut self, messages: Vec<Message>) {
        let (durable_last, durable_hard_state) = durable_view(self.store);
        for message in &messages {
            match message.get_msg_type() {
                MessageType::MsgAppendResponse if !message.reject => assert!(
                    message.index <= durable_last,
                    "node {}: acknowledged entries through {} with only {} durable",
                    self.node,
                    message.index,
                    durable_last
                ),
                MessageType::MsgAppend if self.appends_promise_durable => {
                    if let Some(last) = message.entries.last() {
                        assert!(
                            last.index <= durable_last,
                            "node {}: sent entries through {} with only {} durable",
                            self.node,
                            last.index,
                            durable_last
                        );
                    }
                }
                MessageType::MsgRequestVote => assert!(
                    durable_hard_state.term >= message.term && durable_hard_state.vote == self.node,
                    "node {}: asked for votes in term {} before persisting its own vote \
                     (durable {:?})",
                    self.node,
                    message.term,
                    durable_hard_state
                ),
                MessageType::MsgRequestVoteResponse if !message.reject => assert!(
                    durable_hard_state.term == message.term
                        && durable_hard_state.vote == message.to,
                    "node {}: granted a vote to {} in term {} before persisting it \
                     (durable {:?})",
                    self.node,
                    message.to,
                    message.term,
                    durable_hard_state
                ),
                _ => {}
            }
        }
        self.outbox.extend(messages);
    }

    fn with_store(&mut self, reads: &mut dyn FnMut(&dyn DurableStore)) {
        reads(&*self.store);
    }
}

struct Member {
    group: Option<RaftGroup<Journal>>,
    store: MemoryStore,
    config: RaftGroupConfig,
    applied: Vec<Applied<usize>>,
}

impl TestNode for Member {
    type Shared = ();

    fn receive(&mut self, message: &[u8]) -> bool {
        let Some(group) = self.group.as_mut() else {
            return false;
        };
        let _ = group.step(decode_message(message).unwrap());
        true
    }

    fn ready(&mut self, _now_us: u64, _shared: &mut ()) -> Vec<Message> {
        let Some(group) = self.group.as_mut() else {
            return Vec::new();
        };
        let mut outbox = Vec::new();
        let mut io = CheckingIo {
            node: self.config.node_id,
            appends_promise_durable: self.config.followers_commit_synced_entries,
            store: &mut self.store,
            outbox: &mut outbox,
        };
        let applied = group.handle_ready(&mut io).unwrap();
        self.applied.extend(applied);
        outbox
    }

    // A raft group keeps no clock: a tick is a tick.
    fn tick(&mut self, _now_us: u64) {
        if let Some(group) = self.group.as_mut() {
            group.tick();
        }
    }

    fn is_leader(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|group| group.role() == Role::Leader)
    }
}

/// Members over the in-memory test network.
struct Cluster {
    network: Network<Member>,
}

impl Cluster {
    fn new(ids: &[u64], retention: LogRetention, seed: u64) -> Cluster {
        Cluster::with_synced_copy_commits(ids, retention, seed, false)
    }

    fn with_synced_copy_commits(
        ids: &[u64],
        retention: LogRetention,
        seed: u64,
        followers_commit_synced_entries: bool,
    ) -> Cluster {
        let mut cluster = Cluster {
            network: Network::new(0, 1),
        };
        for &id in ids {
            let mut config = RaftGroupConfig::new(id, ids.to_vec());
            config.followers_commit_synced_entries = followers_commit_synced_entries;
            config.log_retention = retention;
            config.election_seed = seed * 1_000 + id;
            cluster.add_member(config);
        }
        cluster
    }

    fn add_member(&mut self, config: RaftGroupConfig) {
        let mut store = MemoryStore::new();
        let group = RaftGroup::open(config.clone(), Journal::default(), &mut store).unwrap();
        self.network.insert(
            config.node_id,
            Member {
                group: Some(group),
                store,
                config,
                applied: Vec::new(),
            },
        );
    }

    fn member(&self, id: u64) -> &Member {
        self.network.node(id)
    }

    fn group(&self, id: u64) -> &RaftGroup<Journal> {
        self.member(id).group.as_ref().unwrap()
    }

    fn group_mut(&mut self, id: u64) -> &mut RaftGroup<Journal> {
        self.network.node_mut(id).group.as_mut().unwrap()
    }

    fn elect(&mut self) -> u64 {
        self.network.elect(0)
    }

    fn propose(&mut self, id: u64, data: &[u8]) {
        self.group_mut(id).propose(data.to_vec()).unwrap();
        self.network.settle();
    }

    fn crash(&mut self, id: u64) {
        let member = self.network.node_mut(id);
        member.group = None;
        member.store.crash();
    }

    fn restart(&mut self, id: u64) {
        let member = self.network.node_mut(id);
        let group =
            RaftGroup::open(member.config.clone(), Journal::default(), &mut member.store).unwrap();
        member.group = Some(group);
    }

    fn items(&self, id: u64) -> Vec<Vec<u8>> {
        self.group(id).state_machine().items.clone()
    }
}

fn retention(entries_max: u64) -> LogRetention {
    LogRetention {
        entries_max,
        size_bytes_max: 64 * 1024 * 1024,
    }
}

#[test]
fn three_members_elect_replicate_and_apply_in_one_order() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 1);
    let leader = cluster.elect();
    for round in 0..20u32 {
        let proposer = [1, 2, 3][round as usize % 3];
        cluster.propose(proposer, format!("item {round}").as_bytes());
    }
    cluster.network.tick(4);
    let expected = cluster.items(leader);
    assert_eq!(
        expected.len(),
        20,
        "every proposal, forwarded or not, applied once"
    );
    for id in [1, 2, 3] {
        assert_eq!(
            cluster.items(id),
            expected,
            "member {id} applied another order"
        );
        let group = cluster.group(id);
        assert_eq!(group.applied_index(), cluster.group(leader).applied_index());
        assert_eq!(group.voters(), vec![1, 2, 3]);
    }
}

#[test]
fn a_round_that_only_learns_of_commits_does_not_sync_and_a_crash_after_it_loses_nothing() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 4);
    let leader = cluster.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    let syncs_before = cluster.member(follower).store.sync_count();
    let writes_before = cluster.member(follower).store.write_count();
    cluster.propose(leader, b"one");
    cluster.network.tick(2);
    assert_eq!(cluster.items(follower), vec![b"one".to_vec()]);
    let store = &cluster.member(follower).store;
    assert_eq!(
        store.sync_count() - syncs_before,
        1,
        "one sync, for the appended entry"
    );
    assert!(
        store.write_count() - writes_before >= 2,
        "applying the committed entry is written too, without a sync"
    );
    // The crash loses the unsynced application; the member applies the entry again from its
    // durable raft log and ends where it was.
    cluster.crash(follower);
    cluster.restart(follower);
    cluster.network.tick(3);
    assert_eq!(cluster.items(follower), vec![b"one".to_vec()]);
    cluster.propose(leader, b"two");
    cluster.network.tick(2);
    assert_eq!(cluster.items(follower), cluster.items(leader));
}

/// Three members whose leader hears no append acknowledgement: it commits nothing new, so
/// whatever a follower applies it committed on its own.
fn proposals_without_acknowledgements(
    followers_commit_synced_entries: bool,
) -> (Cluster, u64, Vec<u64>) {
    let mut cluster = Cluster::with_synced_copy_commits(
        &[1, 2, 3],
        retention(1_000),
        9,
        followers_commit_synced_entries,
    );
    let leader = cluster.elect();
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    cluster.propose(leader, b"before");
    cluster.network.tick(2);
    cluster.network.ignore(MessageType::MsgAppendResponse);
    for round in 0..3u32 {
        cluster.propose(leader, format!("item {round}").as_bytes());
    }
    (cluster, leader, followers)
}

#[test]
fn a_follower_of_three_applies_what_it_synced_from_its_leader_before_the_leader_commits_it() {
    let (mut cluster, leader, followers) = proposals_without_acknowledgements(true);
    let expected: Vec<Vec<u8>> = ["before", "item 0", "item 1", "item 2"]
        .iter()
        .map(|item| item.as_bytes().to_vec())
        .collect();
    assert_eq!(
        cluster.items(leader),
        expected[..1],
        "the leader heard of no copy"
    );
    for &follower in &followers {
        assert_eq!(cluster.items(follower), expected, "follower {follower}");
        assert!(
            cluster
                .group(follower)
                .counters()
                .commits_from_synced_copies
                > 0
        );
        assert!(cluster.group(follower).commit_index() > cluster.group(leader).commit_index());
    }
    // Once the acknowledgements flow, the leader commits the same entries.
    cluster.network.recover();
    cluster.propose(leader, b"after");
    cluster.network.tick(2);
    for id in [1, 2, 3] {
        assert_eq!(cluster.items(id).len(), 5, "member {id}");
        assert_eq!(cluster.items(id)[..4], expected[..], "member {id}");
    }
}

#[test]
fn without_the_setting_a_follower_waits_for_the_leaders_commit_index() {
    let (cluster, leader, followers) = proposals_without_acknowledgements(false);
    for id in [leader, followers[0], followers[1]] {
        assert_eq!(cluster.items(id), vec![b"before".to_vec()], "member {id}");
        assert_eq!(cluster.group(id).counters().commits_from_synced_copies, 0);
    }
}

#[test]
fn what_followers_committed_on_their_copies_outlives_a_crash_of_the_leader() {
    let (mut cluster, leader, followers) = proposals_without_acknowledgements(true);
    let committed = cluster.items(followers[0]);
    assert_eq!(committed.len(), 4);
    // The leader synced its entries before sending them, so its crash loses none of them.
    cluster.crash(leader);
    cluster.network.recover();
    cluster.network.tick(40);
    let new_leader = cluster
        .network
        .leader()
        .expect("the two followers elect a leader");
    assert_ne!(new_leader, leader);
    cluster.propose(new_leader, b"next term");
    cluster.restart(leader);
    cluster.network.tick(10);
    for id in [1, 2, 3] {
        let items = cluster.items(id);
        assert_eq!(items[..4], committed[..], "member {id}");
        assert_eq!(items.len(), 5, "member {id}");
    }
}

#[test]
fn a_follower_of_five_does_not_count_two_copies_as_a_majority() {
    let mut cluster =
        Cluster::with_synced_copy_commits(&[1, 2, 3, 4, 5], retention(1_000), 3, true);
    let leader = cluster.elect();
    cluster.network.ignore(MessageType::MsgAppendResponse);
    cluster.propose(leader, b"item");
    for id in [1, 2, 3, 4, 5] {
        assert!(cluster.items(id).is_empty(), "member {id}");
        assert_eq!(cluster.group(id).counters().commits_from_synced_copies, 0);
    }
}

#[test]
fn a_crashed_member_recovers_its_state_and_catches_up() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 2);
    let leader = cluster.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    for round in 0..5u32 {
        cluster.propose(leader, format!("before {round}").as_bytes());
    }
    cluster.network.tick(2);
    let applied_before = cluster.group(follower).applied_index();
    let items_before = cluster.items(follower);
    assert_eq!(items_before.len(), 5);
    cluster.crash(follower);
    // Every entry it had applied is in its durable raft log.
    assert!(durable_view(&cluster.member(follower).store).0 >= applied_before);
    for round in 0..5u32 {
        cluster.propose(leader, format!("during {round}").as_bytes());
    }
    cluster.restart(follower);
    // Without any message, the restarted member holds a prefix of what it had applied:
    // applying is written without a sync, so the crash may have taken the last applications
    // back (the entries stay, and are applied again once the commit is known).
    let items_restarted = cluster.items(follower);
    assert!(cluster.group(follower).applied_index() <= applied_before);
    assert_eq!(items_restarted[..], items_before[..items_restarted.len()]);
    cluster.network.tick(10);
    assert_eq!(cluster.items(follower), cluster.items(leader));
    assert_eq!(cluster.items(follower).len(), 10);
}

#[test]
fn a_member_behind_the_compacted_log_catches_up_by_snapshot() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(8), 3);
    let leader = cluster.elect();
    let lagging = if leader == 3 { 2 } else { 3 };
    cluster.network.isolate(lagging);
    for round in 0..40u32 {
        cluster.propose(leader, format!("item {round}").as_bytes());
    }
    let first_index = cluster.group(leader).first_index();
    assert!(
        first_index > 20,
        "the leader compacted its applied log (first index {first_index})"
    );
    assert!(
        cluster.group(leader).storage().entry_count() <= 8 + 2,
        "retention bounds the log held"
    );
    cluster.network.rejoin(lagging);
    cluster.network.tick(20);
    assert_eq!(cluster.items(lagging), cluster.items(leader));
    assert!(
        cluster
            .member(lagging)
            .applied
            .iter()
            .any(|applied| matches!(applied, Applied::Snapshot { .. })),
        "the lagging member restored a snapshot"
    );
    // And the snapshot it installed survives a crash.
    cluster.crash(lagging);
    cluster.restart(lagging);
    assert_eq!(cluster.items(lagging), cluster.items(leader));
}

#[test]
fn a_new_member_joins_as_learner_then_votes_and_a_member_leaves() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 4);
    let leader = cluster.elect();
    for round in 0..5u32 {
        cluster.propose(leader, format!("item {round}").as_bytes());
    }
    // Node 4 starts empty (no initial voters) and waits for the group.
    cluster.add_member(RaftGroupConfig::new(4, Vec::new()));
    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::AddLearnerNode);
    change.node_id = 4;
    cluster
        .group_mut(leader)
        .propose_conf_change(change)
        .unwrap();
    cluster.network.tick(20);
    assert_eq!(cluster.group(leader).learners(), vec![4]);
    assert_eq!(cluster.items(4), cluster.items(leader));
    assert_eq!(cluster.group(4).learners(), vec![4]);

    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::AddNode);
    change.node_id = 4;
    cluster
        .group_mut(leader)
        .propose_conf_change(change)
        .unwrap();
    cluster.network.tick(10);
    assert_eq!(cluster.group(leader).voters(), vec![1, 2, 3, 4]);

    let leaving = if leader == 1 { 2 } else { 1 };
    let mut change = ConfChange::default();
    change.set_change_type(ConfChangeType::RemoveNode);
    change.node_id = leaving;
    cluster
        .group_mut(leader)
        .propose_conf_change(change)
        .unwrap();
    cluster.network.tick(10);
    let mut voters = vec![1, 2, 3, 4];
    voters.retain(|&id| id != leaving);
    assert_eq!(cluster.group(leader).voters(), voters);
    cluster.propose(leader, b"after the change");
    cluster.network.tick(4);
    assert_eq!(cluster.items(4), cluster.items(leader));
    assert!(
        cluster
            .member(4)
            .applied
            .iter()
            .any(|applied| matches!(applied, Applied::Membership { .. })),
        "the new member applied the later changes itself"
    );
}

#[test]
fn a_leader_transfer_hands_over_leadership() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 5);
    let leader = cluster.elect();
    cluster.propose(leader, b"one");
    let target = if leader == 3 { 1 } else { 3 };
    cluster.group_mut(leader).transfer_leader(target);
    cluster.network.settle();
    cluster.network.tick(2);
    assert_eq!(cluster.network.leader(), Some(target));
    cluster.propose(target, b"two");
    cluster.network.tick(2);
    assert_eq!(
        cluster.items(leader),
        vec![b"one".to_vec(), b"two".to_vec()]
    );
}

#[test]
fn election_timeouts_come_from_the_seed_so_runs_replay() {
    fn run(seed: u64) -> (u64, u64, Vec<usize>) {
        let mut cluster = Cluster::new(&[1, 2, 3, 4, 5], retention(1_000), seed);
        let leader = cluster.elect();
        let timeouts = (1..=5)
            .map(|id| cluster.group(id).election_timeout_ticks())
            .collect();
        (leader, cluster.network.delivered(), timeouts)
    }
    let outcomes: Vec<_> = (0..6).map(run).collect();
    for (seed, outcome) in outcomes.iter().enumerate() {
        assert_eq!(&run(seed as u64), outcome, "seed {seed} did not replay");
        for &ticks in &outcome.2 {
            assert!((10..20).contains(&ticks), "timeout {ticks} out of range");
        }
    }
    let leaders: BTreeSet<u64> = outcomes.iter().map(|outcome| outcome.0).collect();
    assert!(leaders.len() > 1, "the seed decides who wins: {leaders:?}");
}

#[test]
fn messages_for_another_node_and_bad_snapshots_are_refused() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 6);
    cluster.elect();
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = 2;
    message.to = 3;
    let error = cluster.group_mut(1).step(message).unwrap_err();
    assert!(error.to_string().contains("node 3"), "{error}");

    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgSnapshot);
    message.from = 2;
    message.to = 1;
    message.term = 99;
    message.mut_snapshot().mut_metadata().index = 500;
    message.mut_snapshot().data = vec![0, 0, 0, 9, 1].into();
    let error = cluster.group_mut(1).step(message).unwrap_err();
    assert!(error.to_string().contains("truncated"), "{error}");
    // The refused snapshot changed nothing: not even the term.
    assert!(cluster.group(1).term() < 99);
}

/// Ticks `id` alone, without delivering anything, and returns whether a ready round waits.
fn tick_alone(cluster: &mut Cluster, id: u64) -> bool {
    cluster.group_mut(id).tick();
    cluster.group(id).has_ready()
}

/// What lets an idle driver sleep through ticks: the ticks a member reports quiet do nothing
/// but count (no message, no ready round, no change of role), and the tick right after them
/// acts, for a leader (its heartbeat) and for a follower (its election).
#[test]
fn quiet_ticks_only_count_and_the_tick_after_them_acts() {
    let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), 3);
    let leader = cluster.elect();
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();

    // The leader, right after a heartbeat went out: heartbeat_tick (2) minus one quiet tick.
    cluster.network.tick(1);
    for _ in 0..4 {
        let quiet = cluster.group(leader).quiet_ticks();
        assert!(
            quiet < 2,
            "a leader heartbeats every 2 ticks, {quiet} quiet"
        );
        for tick in 0..quiet {
            assert!(!tick_alone(&mut cluster, leader), "quiet tick {tick} acted");
        }
        assert!(
            tick_alone(&mut cluster, leader),
            "the tick after {quiet} quiet ticks sends the heartbeat"
        );
        cluster.network.settle();
    }

    // A follower that just heard from its leader: quiet until its election timeout.
    cluster.network.settle();
    let quiet = cluster.group(follower).quiet_ticks();
    let timeout = cluster.group(follower).election_timeout_ticks() as u64;
    assert!(
        quiet > 0 && quiet < timeout,
        "{quiet} quiet ticks of a {timeout}-tick timeout"
    );
    for tick in 0..quiet {
        assert!(
            !tick_alone(&mut cluster, follower),
            "quiet tick {tick} acted"
        );
        assert_eq!(cluster.group(follower).role(), Role::Follower);
        assert_eq!(cluster.group(follower).quiet_ticks(), quiet - tick - 1);
    }
    assert!(
        tick_alone(&mut cluster, follower),
        "the tick after the quiet ones starts an election"
    );
    assert_ne!(cluster.group(follower).role(), Role::Follower);
}

/// A member ticked late, all its quiet ticks at once right before a message, ends in the same
/// state as a twin ticked one tick at a time: only when the counting happens moves.
#[test]
fn quiet_ticks_run_late_before_a_message_change_nothing() {
    let mut ticked = Cluster::new(&[1, 2, 3], retention(1_000), 5);
    let mut late = Cluster::new(&[1, 2, 3], retention(1_000), 5);
    let leader = ticked.elect();
    assert_eq!(late.elect(), leader, "twins elect the same leader");
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    for round in 0..3u32 {
        let quiet = late.group(follower).quiet_ticks();
        assert_eq!(ticked.group(follower).quiet_ticks(), quiet);
        assert!(quiet >= 2, "round {round}: {quiet} quiet ticks");
        // The twin ticked on time sees the ticks one by one; the late one sees none yet.
        for _ in 0..quiet - 1 {
            ticked.group_mut(follower).tick();
            ticked.network.settle();
        }
        // The leader's message arrives: the late twin runs the ticks it slept through first.
        for _ in 0..quiet - 1 {
            late.group_mut(follower).tick();
        }
        for cluster in [&mut ticked, &mut late] {
            cluster.propose(leader, format!("round {round}").as_bytes());
        }
        assert_eq!(
            ticked.group(follower).quiet_ticks(),
            late.group(follower).quiet_ticks(),
            "round {round}"
        );
        assert_eq!(ticked.group(follower).role(), late.group(follower).role());
        assert_eq!(ticked.items(follower), late.items(follower));
    }
}

/// A group of members 1, 2 and 3 with these election priorities.
fn prioritized_cluster(priorities: [u32; 3]) -> Cluster {
    let mut cluster = Cluster {
        network: Network::new(0, 1),
    };
    for (id, priority) in (1..=3).zip(priorities) {
        let mut config = RaftGroupConfig::new(id, vec![1, 2, 3]);
        config.election_priority = priority;
        cluster.add_member(config);
    }
    cluster
}

/// Crashes the leader of a three-member group whose members have `priorities` (of members 1,
/// 2 and 3), makes the two others campaign at the same moment (as when their election
/// timeouts fire within a round trip of each other), delivers every message, and returns the
/// two, and who leads then.
fn campaigns_at_once_after_the_leader_crashed(priorities: [u32; 3]) -> ([u64; 2], Option<u64>) {
    let mut cluster = prioritized_cluster(priorities);
    let leader = cluster.elect();
    cluster.propose(leader, b"one");
    cluster.crash(leader);
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    for &id in &others {
        cluster.group_mut(id).campaign().unwrap();
    }
    cluster.network.settle();
    let leader_now = others
        .iter()
        .copied()
        .find(|id| cluster.group(*id).role() == Role::Leader);
    ([others[0], others[1]], leader_now)
}

#[test]
fn with_election_priorities_two_candidates_at_once_elect_the_higher_without_a_split_vote() {
    // Equal priorities (plain raft): both pass the pre-vote, raise their term, vote for
    // themselves and refuse each other; no one leads until another timeout.
    let (_, leader) = campaigns_at_once_after_the_leader_crashed([0, 0, 0]);
    assert_eq!(leader, None, "equal priorities split the votes");
    for priorities in [[3, 2, 1], [1, 2, 3], [2, 3, 1]] {
        let (candidates, leader) = campaigns_at_once_after_the_leader_crashed(priorities);
        let higher = *candidates
            .iter()
            .max_by_key(|id| priorities[**id as usize - 1])
            .unwrap();
        assert_eq!(
            leader,
            Some(higher),
            "priorities {priorities:?}: candidates {candidates:?}"
        );
    }
}

#[test]
fn a_member_that_may_not_campaign_does_not_hold_the_others_back_with_its_priority() {
    let mut cluster = prioritized_cluster([3, 2, 1]);
    let leader = cluster.elect();
    cluster.propose(leader, b"one");
    // The member of highest priority among the two that remain may not campaign (its clock
    // is fenced): the other must still be elected.
    cluster.crash(leader);
    let mut others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    others.sort_unstable();
    let (highest, lowest) = (others[0], others[1]);
    cluster.group_mut(highest).set_may_campaign(false);
    cluster.network.tick(100);
    assert_eq!(cluster.network.leader(), Some(lowest));
}

/// A leader hands leadership to a member that may not campaign (its clock is fenced): the
/// member drops the leader's request to take over at once, so its term does not rise and
/// depose the leader for an election it cannot win; the transfer times out and the leader
/// leads on, taking proposals again. The same transfer to a member that may campaign takes.
#[test]
fn a_transfer_to_a_member_that_may_not_campaign_does_not_take_and_the_leader_leads_on() {
    let mut cluster = prioritized_cluster([0, 0, 0]);
    let leader = cluster.elect();
    cluster.propose(leader, b"one");
    let term = cluster.group(leader).term();
    let to = if leader == 1 { 2 } else { 1 };
    cluster.group_mut(to).set_may_campaign(false);
    cluster.group_mut(leader).transfer_leader(to);
    assert!(cluster.group(leader).is_transferring_leadership());
    cluster.network.settle();
    cluster.network.tick(100);
    assert_eq!(cluster.network.leader(), Some(leader));
    assert!(!cluster.group(leader).is_transferring_leadership());
    for id in 1..=3 {
        assert_eq!(cluster.group(id).term(), term, "member {id}");
    }
    cluster.propose(leader, b"two");
    cluster.network.tick(5);
    assert_eq!(cluster.items(to), [b"one".to_vec(), b"two".to_vec()]);

    cluster.group_mut(to).set_may_campaign(true);
    cluster.group_mut(leader).transfer_leader(to);
    cluster.network.settle();
    cluster.network.tick(5);
    assert_eq!(cluster.network.leader(), Some(to));
    assert!(cluster.group(to).term() > term);
}
