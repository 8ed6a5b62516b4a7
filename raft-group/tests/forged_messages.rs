//! Forged raft messages stepped into real members of a group: each one stopped a node before
//! `RaftGroup::step` checked messages (a `fatal!`, an assertion, an overflow or a slice out of
//! range in raft-rs or in the group; or, for a snapshot request past the leader's log, starved
//! a follower for good), and is now refused with `StepError::Unsafe` naming the field, after
//! which the group commits as before. Then the other side: the sequence after which raft-rs's
//! `batch_append` would send entries away from their anchor is taken; a cluster driven through
//! elections, partitions, crashes, snapshots, membership changes and delayed, reordered and
//! duplicated delivery never has an honest message refused; random messages never stop a
//! node; and random unsafe messages change nothing, the group committing afterwards.
//! Reference: `raft-group/src/message_check.rs` for each rule and why it is safe.

mod common;

use std::collections::{HashSet, VecDeque};

use common::Journal;
use dsss_raft_group::message_check::{INDEX_MAX, TERM_MAX};
use dsss_raft_group::raft::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, Message, MessageType, Snapshot,
};
use dsss_raft_group::testing::{Network, TestNode};
use dsss_raft_group::{
    Applied, LogRetention, MemoryStore, RaftGroup, RaftGroupConfig, Role, StepError, StoreIo,
    decode_message,
};

/// A deterministic generator (xorshift), so that a failure replays.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[(self.next() % choices.len() as u64) as usize]
    }
}

/// How a member holds back what it receives: each message is held with probability
/// `hold_percent` and stepped at a later round, in a shuffled order, and stepped twice with
/// probability `duplicate_percent`. Raft tolerates delay, reordering and duplication, and so
/// must the checks.
struct Reordering {
    rng: Xorshift,
    hold_percent: u64,
    duplicate_percent: u64,
    held: VecDeque<Message>,
}

struct Member {
    group: Option<RaftGroup<Journal>>,
    store: MemoryStore,
    config: RaftGroupConfig,
    reordering: Option<Reordering>,
    /// Every message of the network this member refused as unsafe.
    unsafe_refusals: Vec<StepError>,
    /// The types of the messages of the network it stepped.
    stepped_types: HashSet<MessageType>,
    /// How many snapshots it restored.
    snapshots_restored: usize,
}

impl Member {
    fn step_counted(&mut self, message: Message) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        self.stepped_types.insert(message.get_msg_type());
        if let Err(error @ StepError::Unsafe { .. }) = group.step(message) {
            self.unsafe_refusals.push(error);
        }
    }
}

impl TestNode for Member {
    type Shared = ();

    fn receive(&mut self, bytes: &[u8]) -> bool {
        if self.group.is_none() {
            return false;
        }
        let message = decode_message(bytes).unwrap();
        let mut duplicated = false;
        if let Some(reordering) = self.reordering.as_mut() {
            if reordering.rng.chance(reordering.hold_percent) {
                reordering.held.push_back(message);
                return true;
            }
            duplicated = reordering.rng.chance(reordering.duplicate_percent);
        }
        if duplicated {
            self.step_counted(message.clone());
        }
        self.step_counted(message);
        true
    }

    fn ready(&mut self, _now_us: u64, _shared: &mut ()) -> Vec<Message> {
        // Held messages come out a round or more late, several at once and shuffled, as a
        // production node steps a batch of events before its ready round.
        let mut late = Vec::new();
        if let Some(reordering) = self.reordering.as_mut() {
            for _ in 0..reordering.held.len() {
                let message = reordering.held.pop_front().expect("counted");
                if reordering.rng.chance(50) {
                    let at = (reordering.rng.next() % (late.len() as u64 + 1)) as usize;
                    late.insert(at, message);
                } else {
                    reordering.held.push_back(message);
                }
            }
        }
        for message in late {
            self.step_counted(message);
        }
        let Some(group) = self.group.as_mut() else {
            return Vec::new();
        };
        let mut io = StoreIo::new(&mut self.store);
        let applied = group.handle_ready(&mut io).unwrap();
        self.snapshots_restored += applied
            .iter()
            .filter(|applied| matches!(applied, Applied::Snapshot { .. }))
            .count();
        io.outbox
    }

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

struct Cluster {
    network: Network<Member>,
    proposals: u64,
}

fn retention(entries_max: u64) -> LogRetention {
    LogRetention {
        entries_max,
        size_bytes_max: 64 * 1024 * 1024,
    }
}

impl Cluster {
    fn new(ids: &[u64], retention: LogRetention, seed: u64) -> Cluster {
        let mut cluster = Cluster {
            network: Network::new(0, 1),
            proposals: 0,
        };
        for &id in ids {
            let mut config = RaftGroupConfig::new(id, ids.to_vec());
            config.log_retention = retention;
            config.election_seed = seed * 1_000 + id;
            cluster.add_member(config);
        }
        cluster
    }

    /// Three members that elected a leader and committed three entries.
    fn started(seed: u64) -> Cluster {
        let mut cluster = Cluster::new(&[1, 2, 3], retention(1_000), seed);
        cluster.network.elect(0);
        for _ in 0..3 {
            cluster.propose_at_leader();
        }
        cluster.network.tick(2);
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
                reordering: None,
                unsafe_refusals: Vec::new(),
                stepped_types: HashSet::new(),
                snapshots_restored: 0,
            },
        );
    }

    fn group(&self, id: u64) -> &RaftGroup<Journal> {
        self.network.node(id).group.as_ref().unwrap()
    }

    fn group_mut(&mut self, id: u64) -> &mut RaftGroup<Journal> {
        self.network.node_mut(id).group.as_mut().unwrap()
    }

    fn running(&self) -> Vec<u64> {
        self.network
            .nodes()
            .filter(|(_, member)| member.group.is_some())
            .map(|(id, _)| id)
            .collect()
    }

    fn items(&self, id: u64) -> &[Vec<u8>] {
        &self.group(id).state_machine().items
    }

    fn leader(&self) -> u64 {
        self.network.leader().expect("a leader")
    }

    /// The leader, after electing one if none leads now.
    fn elected_leader(&mut self) -> u64 {
        self.network
            .leader()
            .unwrap_or_else(|| self.network.elect(0))
    }

    fn follower(&self) -> u64 {
        let leader = self.leader();
        self.running()
            .into_iter()
            .find(|&id| id != leader)
            .expect("a follower")
    }

    /// The term of the entry at `index` in the log of `id`.
    fn term_at(&self, id: u64, index: u64) -> u64 {
        self.group(id)
            .storage()
            .term_of(index)
            .unwrap_or_else(|| panic!("member {id} holds no entry {index}"))
    }

    /// Proposes a new item at the leader (electing one first if needed), delivers, and
    /// returns it.
    fn propose_at_leader(&mut self) -> Vec<u8> {
        let leader = self.elected_leader();
        self.proposals += 1;
        let item = format!("proposal {}", self.proposals).into_bytes();
        self.group_mut(leader).propose(item.clone()).unwrap();
        self.network.settle();
        item
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

    /// Steps `messages` into `target` one after the other, then lets the network deliver what
    /// followed; returns the fields of the unsafe refusals.
    fn step_forged(&mut self, target: u64, messages: Vec<Message>) -> Vec<String> {
        let mut fields = Vec::new();
        for message in messages {
            if let Err(StepError::Unsafe { reason, .. }) = self.group_mut(target).step(message) {
                fields.push(reason.field);
            }
        }
        self.network.settle();
        fields
    }

    /// The group still commits: a new proposal reaches every running member, all of which
    /// hold the same items.
    fn assert_still_commits(&mut self, context: &str) {
        let item = self.propose_at_leader();
        self.network.tick(4);
        let leader = self.leader();
        for id in self.running() {
            assert_eq!(
                self.items(id).last(),
                Some(&item),
                "{context}: member {id} did not apply the proposal made after the forgery"
            );
            assert_eq!(
                self.items(id),
                self.items(leader),
                "{context}: member {id} applied other items than the leader {leader}"
            );
        }
    }

    /// Where to forge a message for member `id` (see [`Target`]).
    fn target(&self, id: u64) -> Target {
        let group = self.group(id);
        let is_leader = group.role() == Role::Leader;
        let sender = if is_leader {
            self.running()
                .into_iter()
                .find(|&other| other != id)
                .expect("another member")
        } else {
            group.leader_id().unwrap_or(if id == 1 { 2 } else { 1 })
        };
        Target {
            id,
            sender,
            term: group.term() + u64::from(is_leader),
            last_index: group.last_index(),
            committed: group.commit_index(),
        }
    }

    fn unsafe_refusals(&self) -> Vec<&StepError> {
        self.network
            .nodes()
            .flat_map(|(_, member)| &member.unsafe_refusals)
            .collect()
    }
}

fn forged(msg_type: MessageType, from: u64, to: u64, term: u64) -> Message {
    let mut message = Message::default();
    message.set_msg_type(msg_type);
    message.from = from;
    message.to = to;
    message.term = term;
    message
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Entry::default()
    }
}

fn voters(ids: &[u64]) -> ConfState {
    ConfState {
        voters: ids.to_vec(),
        ..ConfState::default()
    }
}

/// A snapshot message whose data (no item) the state machine accepts.
fn forged_snapshot(
    from: u64,
    to: u64,
    term: u64,
    index: u64,
    snapshot_term: u64,
    conf_state: ConfState,
) -> Message {
    let mut message = forged(MessageType::MsgSnapshot, from, to, term);
    let mut snapshot = Snapshot::default();
    snapshot.mut_metadata().index = index;
    snapshot.mut_metadata().term = snapshot_term;
    snapshot.mut_metadata().set_conf_state(conf_state);
    message.set_snapshot(snapshot);
    message
}

/// Where a forged message goes: the member, a member it claims to come from, and the term it
/// claims (the member's own, or one above for a leader, which ignores leader messages of its
/// own term and is deposed by a higher one).
struct Target {
    id: u64,
    sender: u64,
    term: u64,
    last_index: u64,
    committed: u64,
}

/// Forges messages for a follower and, in a fresh cluster, for the leader; checks that each
/// is refused naming `fields`, lets `after` drive the cluster as the crash needed (ticks, a
/// restart), and checks that the group still commits.
fn against_a_follower_and_the_leader(
    seed: u64,
    forge: impl Fn(&Cluster, &Target) -> Vec<Message>,
    after: impl Fn(&mut Cluster, &Target),
    fields: &[&str],
) {
    against_each_role(seed, forge, after, [fields, fields]);
}

/// As [`against_a_follower_and_the_leader`], with the fields the follower and the leader
/// refuse on.
fn against_each_role(
    seed: u64,
    forge: impl Fn(&Cluster, &Target) -> Vec<Message>,
    after: impl Fn(&mut Cluster, &Target),
    fields: [&[&str]; 2],
) {
    for (leader_targeted, fields) in [false, true].into_iter().zip(fields) {
        let mut cluster = Cluster::started(seed);
        let id = if leader_targeted {
            cluster.leader()
        } else {
            cluster.follower()
        };
        let target = cluster.target(id);
        let messages = forge(&cluster, &target);
        let refused = cluster.step_forged(id, messages);
        after(&mut cluster, &target);
        let role = if leader_targeted {
            "leader"
        } else {
            "follower"
        };
        // Commits first: where the crash came later (a follower misled by the leader), the
        // unchecked code stops here.
        cluster.assert_still_commits(role);
        assert_eq!(refused, fields, "refusals by the {role}");
    }
}

fn nothing_after(_: &mut Cluster, _: &Target) {}

#[test]
fn a_heartbeat_committing_past_the_log_is_refused() {
    against_a_follower_and_the_leader(
        1,
        |_, target| {
            let mut heartbeat = forged(
                MessageType::MsgHeartbeat,
                target.sender,
                target.id,
                target.term,
            );
            heartbeat.commit = u64::MAX;
            vec![heartbeat]
        },
        nothing_after,
        &["commit"],
    );
}

#[test]
fn an_append_rewriting_a_committed_entry_is_refused() {
    against_a_follower_and_the_leader(
        2,
        |cluster, target| {
            let committed_term = cluster.term_at(target.id, target.committed);
            let mut append = forged(
                MessageType::MsgAppend,
                target.sender,
                target.id,
                target.term,
            );
            append.index = target.committed;
            append.log_term = committed_term;
            append.commit = target.committed;
            append.set_entries(vec![entry(target.committed, committed_term + 1)].into());
            vec![append]
        },
        nothing_after,
        &["entries[0].index"],
    );
}

#[test]
fn an_append_leaving_a_gap_after_its_anchor_is_refused() {
    against_a_follower_and_the_leader(
        3,
        |cluster, target| {
            let mut append = forged(
                MessageType::MsgAppend,
                target.sender,
                target.id,
                target.term,
            );
            append.index = target.last_index;
            append.log_term = cluster.term_at(target.id, target.last_index);
            append.commit = target.committed;
            append.set_entries(vec![entry(target.last_index + 3, target.term)].into());
            vec![append]
        },
        nothing_after,
        &["entries[0].index"],
    );
}

#[test]
fn an_append_anchored_past_the_log_with_term_0_is_refused() {
    against_a_follower_and_the_leader(
        4,
        |_, target| {
            let mut append = forged(
                MessageType::MsgAppend,
                target.sender,
                target.id,
                target.term,
            );
            append.index = target.last_index + 10;
            append.log_term = 0;
            append.commit = target.last_index + 10;
            vec![append]
        },
        nothing_after,
        &["log_term"],
    );
}

/// Terms that fall along the log are written, and the store refuses the log at restart: the
/// node could never start again.
#[test]
fn an_append_whose_terms_fall_is_refused_so_the_node_restarts() {
    against_a_follower_and_the_leader(
        5,
        |cluster, target| {
            assert!(
                target.term >= 2,
                "an elected leader's term is above the bootstrap term"
            );
            let mut append = forged(
                MessageType::MsgAppend,
                target.sender,
                target.id,
                target.term,
            );
            append.index = target.last_index;
            append.log_term = cluster.term_at(target.id, target.last_index);
            append.commit = target.committed;
            append.set_entries(
                vec![
                    entry(target.last_index + 1, target.term),
                    entry(target.last_index + 2, 1),
                ]
                .into(),
            );
            vec![append]
        },
        |cluster, target| {
            cluster.crash(target.id);
            cluster.restart(target.id);
        },
        &["entries[1].term"],
    );
}

/// raft-rs campaigns at term + 1, which overflows after a forged term of `u64::MAX`.
#[test]
fn a_term_beyond_the_maximum_is_refused() {
    against_a_follower_and_the_leader(
        6,
        |_, target| {
            vec![forged(
                MessageType::MsgHeartbeat,
                target.sender,
                target.id,
                u64::MAX,
            )]
        },
        |cluster, _| cluster.network.tick(40),
        &["term"],
    );
}

/// A granted vote answers with the request's term, and raft-rs stops at a fatal error
/// sending a vote answer without one. A leader grants only its own vote again: it is refused
/// first as coming from the leader itself.
#[test]
fn a_vote_request_without_a_term_is_refused() {
    against_each_role(
        7,
        |cluster, target| {
            // The candidate this member voted for: a repeated request is granted again.
            let voted_for = cluster.group(target.id).storage().hard_state().vote;
            assert_ne!(voted_for, 0, "member {} voted in the election", target.id);
            let mut vote = forged(MessageType::MsgRequestVote, voted_for, target.id, 0);
            vote.index = target.last_index + 1;
            vote.log_term = cluster.group(target.id).term();
            vec![vote]
        },
        nothing_after,
        [&["term"], &["from"]],
    );
}

/// A message without a term skips raft-rs's term checks and reaches a (pre-)candidate, which
/// asserts that an append is of its own term.
#[test]
fn an_append_without_a_term_to_a_candidate_is_refused() {
    let mut cluster = Cluster::started(8);
    let leader = cluster.leader();
    let follower = cluster.follower();
    cluster.network.isolate(follower);
    for _ in 0..40 {
        if cluster.group(follower).role() != Role::Follower {
            break;
        }
        cluster.group_mut(follower).tick();
        cluster.network.settle();
    }
    assert_eq!(cluster.group(follower).role(), Role::PreCandidate);
    let last_index = cluster.group(follower).last_index();
    let mut append = forged(MessageType::MsgAppend, leader, follower, 0);
    append.index = last_index;
    append.log_term = cluster.term_at(follower, last_index);
    append.commit = cluster.group(follower).commit_index();
    let refused = cluster.step_forged(follower, vec![append]);
    cluster.network.rejoin(follower);
    cluster.network.tick(30);
    cluster.assert_still_commits("pre-candidate");
    assert_eq!(refused, ["term"]);
}

/// An acknowledgement past the leader's log: at `u64::MAX` raft-rs overflows at once; a few
/// entries past, the leader later anchors appends past the follower's log with term 0 and
/// commits past it, and the follower stops.
#[test]
fn an_acknowledgement_past_the_leader_log_is_refused() {
    for past in [5, u64::MAX] {
        let mut cluster = Cluster::started(9);
        let leader = cluster.leader();
        let follower = cluster.follower();
        let mut acknowledgement = forged(
            MessageType::MsgAppendResponse,
            follower,
            leader,
            cluster.group(leader).term(),
        );
        acknowledgement.index = cluster.group(leader).last_index().saturating_add(past);
        let refused = cluster.step_forged(leader, vec![acknowledgement]);
        cluster.assert_still_commits(&format!("{past} past"));
        assert_eq!(refused, ["index"]);
    }
}

/// raft-rs probes at min(rejected, hint + 1) when the follower's progress is probing: a hint
/// of `u64::MAX` overflows. The first, honest-looking rejection turns a replicating progress
/// into a probing one.
#[test]
fn a_rejection_hinting_past_the_leader_log_is_refused() {
    let mut cluster = Cluster::started(10);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let term = cluster.group(leader).term();
    let matched = cluster.group(leader).last_index();
    // A new entry in flight to the follower.
    cluster
        .group_mut(leader)
        .propose(b"in flight".to_vec())
        .unwrap();
    let mut rejection = forged(MessageType::MsgAppendResponse, follower, leader, term);
    rejection.reject = true;
    rejection.index = matched + 1;
    rejection.reject_hint = matched;
    rejection.log_term = cluster.term_at(leader, matched);
    let mut overflowing = forged(MessageType::MsgAppendResponse, follower, leader, term);
    overflowing.reject = true;
    overflowing.index = matched;
    overflowing.reject_hint = u64::MAX;
    let refused = cluster.step_forged(leader, vec![rejection, overflowing]);
    cluster.assert_still_commits("leader");
    assert_eq!(refused, ["reject_hint"]);
}

/// A snapshot request the leader can never serve: it only ever tries to send that follower a
/// snapshot, and the follower never catches up again in this term.
#[test]
fn a_snapshot_request_past_the_leader_log_is_refused() {
    let mut cluster = Cluster::started(11);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let matched = cluster.group(leader).last_index();
    let mut rejection = forged(
        MessageType::MsgAppendResponse,
        follower,
        leader,
        cluster.group(leader).term(),
    );
    rejection.reject = true;
    rejection.index = matched;
    rejection.reject_hint = matched;
    rejection.log_term = cluster.term_at(leader, matched);
    rejection.request_snapshot = matched + 100;
    let refused = cluster.step_forged(leader, vec![rejection]);
    cluster.assert_still_commits("leader");
    assert_eq!(refused, ["request_snapshot"]);
}

/// raft-rs stops at a fatal error restoring a membership it cannot build ("removed all
/// voters") or that builds as another (a voter listed as learner too).
#[test]
fn a_snapshot_whose_membership_raft_cannot_restore_is_refused() {
    let learner_only = |target: &Target| ConfState {
        learners: vec![target.id],
        ..ConfState::default()
    };
    let voter_and_learner = |target: &Target| ConfState {
        learners: vec![target.id],
        ..voters(&[1, 2, 3])
    };
    for conf_state in [learner_only, voter_and_learner] {
        against_a_follower_and_the_leader(
            12,
            |_, target| {
                vec![forged_snapshot(
                    target.sender,
                    target.id,
                    target.term,
                    target.last_index + 5,
                    target.term,
                    conf_state(target),
                )]
            },
            nothing_after,
            &["snapshot.metadata.conf_state"],
        );
    }
}

/// A snapshot of term 0 past the log "matches" it (raft-rs reads the term of an index past
/// its log as 0) and raft-rs commits past the log; at index `u64::MAX` raft-rs overflows.
#[test]
fn a_snapshot_of_term_0_or_at_the_last_possible_index_is_refused() {
    against_a_follower_and_the_leader(
        13,
        |_, target| {
            vec![forged_snapshot(
                target.sender,
                target.id,
                target.term,
                target.last_index + 10,
                0,
                voters(&[1, 2, 3]),
            )]
        },
        nothing_after,
        &["snapshot.metadata.term"],
    );
    against_a_follower_and_the_leader(
        14,
        |_, target| {
            vec![forged_snapshot(
                target.sender,
                target.id,
                target.term,
                u64::MAX,
                target.term,
                voters(&[1, 2, 3]),
            )]
        },
        nothing_after,
        &["snapshot.metadata.index"],
    );
}

/// A snapshot ending at the commit index with another term than the committed entry's: raft
/// restores it over a state the group already applied through that index, and the group
/// asserts that never happens.
#[test]
fn a_snapshot_contradicting_the_committed_entry_is_refused() {
    against_a_follower_and_the_leader(
        15,
        |cluster, target| {
            assert_eq!(cluster.group(target.id).applied_index(), target.committed);
            let committed_term = cluster.term_at(target.id, target.committed);
            // One term up, so that the snapshot's term stays within the message's.
            let term = cluster.group(target.id).term() + 1;
            vec![forged_snapshot(
                target.sender,
                target.id,
                term,
                target.committed,
                committed_term + 1,
                voters(&[1, 2, 3]),
            )]
        },
        nothing_after,
        &["snapshot.metadata.term"],
    );
}

/// An empty proposal stops the leader at a fatal error, an empty read at an index out of
/// range; a follower forwards both to its leader.
#[test]
fn a_proposal_or_read_without_an_entry_is_refused() {
    for msg_type in [MessageType::MsgPropose, MessageType::MsgReadIndex] {
        against_a_follower_and_the_leader(
            16,
            |_, target| vec![forged(msg_type, target.sender, target.id, 0)],
            nothing_after,
            &["entries"],
        );
    }
}

/// A follower forwards proposals, reads and leader transfers to its leader, and raft-rs stops
/// at a fatal error sending a forwarded message that carries a term. Only a follower forwards.
#[test]
fn a_message_a_follower_would_forward_with_a_term_is_refused() {
    for msg_type in [
        MessageType::MsgPropose,
        MessageType::MsgReadIndex,
        MessageType::MsgTransferLeader,
    ] {
        let mut cluster = Cluster::started(17);
        let follower = cluster.follower();
        let other = cluster
            .running()
            .into_iter()
            .find(|&id| id != follower && id != cluster.leader())
            .unwrap();
        let mut message = forged(msg_type, other, follower, cluster.group(follower).term());
        message.set_entries(vec![entry(0, 0)].into());
        let refused = cluster.step_forged(follower, vec![message]);
        cluster.assert_still_commits(&format!("{msg_type:?}"));
        assert_eq!(refused, ["term"], "{msg_type:?}");
    }
}

/// A read answer without a term skips raft-rs's term checks, and one whose term 0 matches
/// the term raft-rs reads past its log commits past the log.
#[test]
fn a_read_answer_without_a_term_is_refused() {
    let mut cluster = Cluster::started(18);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let mut answer = forged(MessageType::MsgReadIndexResp, leader, follower, 0);
    answer.index = cluster.group(follower).last_index() + 10;
    answer.set_entries(vec![entry(0, 0)].into());
    let refused = cluster.step_forged(follower, vec![answer]);
    cluster.assert_still_commits("follower");
    assert_eq!(refused, ["term"]);
}

/// A one-member group that leads and committed a proposal, and a forged append of the next
/// term that would add an entry to its log (from a member that does not exist).
fn only_voter_with_a_forged_append(seed: u64) -> (Cluster, Message) {
    let mut cluster = Cluster::new(&[1], retention(1_000), seed);
    cluster.network.elect(0);
    cluster.propose_at_leader();
    let term = cluster.group(1).term() + 1;
    let last_index = cluster.group(1).last_index();
    let mut append = forged(MessageType::MsgAppend, 2, 1, term);
    append.index = last_index;
    append.log_term = cluster.term_at(1, last_index);
    append.commit = cluster.group(1).commit_index();
    append.set_entries(vec![entry(last_index + 1, term)].into());
    (cluster, append)
}

/// The only voter told to time out wins its campaign at once, and raft-rs asserts a new
/// leader's log is persisted: a forged append of a higher term made it a follower with an
/// entry not yet persisted (a production node steps a batch of messages before its round).
#[test]
fn a_timeout_making_the_only_voter_leader_before_its_log_is_persisted_is_refused() {
    let (mut cluster, append) = only_voter_with_a_forged_append(19);
    let term = append.term;
    let timeout = forged(MessageType::MsgTimeoutNow, 2, 1, term);
    let refused = cluster.step_forged(1, vec![append, timeout]);
    cluster.network.tick(40);
    cluster.assert_still_commits("the only voter");
    assert_eq!(refused, ["msg_type"]);
}

/// The same campaign started by the member's own election timeout: a driver that ticks
/// between a step and its ready round would have the only voter lead before the forged
/// append's entry is persisted. The group does not count such ticks until the round persists
/// the entry.
#[test]
fn a_tick_cannot_make_the_only_voter_leader_before_its_log_is_persisted() {
    let (mut cluster, append) = only_voter_with_a_forged_append(23);
    cluster.group_mut(1).step(append).unwrap();
    for _ in 0..40 {
        cluster.group_mut(1).tick();
    }
    assert_eq!(cluster.group(1).role(), Role::Follower);
    cluster.network.tick(40);
    cluster.assert_still_commits("the only voter");
}

/// Votes granted before a candidate persisted its log would make it a leader with an
/// unpersisted log, which raft-rs asserts never happens: here a forged append left an entry
/// unpersisted and the member's election timeout ran before its next round.
#[test]
fn votes_making_a_candidate_with_an_unpersisted_log_leader_are_refused() {
    let mut cluster = Cluster::started(20);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let term = cluster.group(follower).term();
    let last_index = cluster.group(follower).last_index();
    let mut append = forged(MessageType::MsgAppend, leader, follower, term);
    append.index = last_index;
    append.log_term = cluster.term_at(follower, last_index);
    append.commit = cluster.group(follower).commit_index();
    append.set_entries(vec![entry(last_index + 1, term)].into());
    cluster.group_mut(follower).step(append).unwrap();
    for _ in 0..40 {
        if cluster.group(follower).role() != Role::Follower {
            break;
        }
        cluster.group_mut(follower).tick();
    }
    assert_eq!(cluster.group(follower).role(), Role::PreCandidate);
    let pre_vote = forged(
        MessageType::MsgRequestPreVoteResponse,
        leader,
        follower,
        term + 1,
    );
    cluster.group_mut(follower).step(pre_vote).unwrap();
    assert_eq!(cluster.group(follower).role(), Role::Candidate);
    let vote = forged(
        MessageType::MsgRequestVoteResponse,
        leader,
        follower,
        term + 1,
    );
    let refused = cluster.step_forged(follower, vec![vote]);
    cluster.network.tick(40);
    cluster.assert_still_commits("candidate");
    assert_eq!(refused, ["reject"]);
}

/// raft-rs (0.7, `batch_append`) adds the entries of an append to an earlier append without
/// entries to the same follower, keeping the earlier anchor, although the follower's progress
/// moved in between: honest raft-rs then sends entries that do not follow their anchor. A
/// follower that holds the anchor would take them one index off, acknowledge an entry it
/// lacks, and stop when the leader commits it. The group runs raft-rs without
/// `batch_append`, so the same round sends the entry in an append of its own, anchored right
/// before it: the follower takes it and nothing is refused.
#[test]
fn a_batched_append_goes_out_anchored_right_before_its_entries() {
    let mut cluster = Cluster::started(22);
    let leader = cluster.leader();
    let follower = cluster.follower();
    let term = cluster.group(leader).term();
    // The follower's answers are lost: it holds and has committed one more entry than the
    // leader knows of.
    cluster.network.drop_link(follower, leader);
    cluster.propose_at_leader();
    let held = cluster.group(follower).commit_index();
    assert_eq!(held, cluster.group(leader).last_index());
    cluster.network.recover();
    // In one round of the leader, what the follower sends: its answer to a heartbeat (the
    // leader then queues an append without entries, to carry its commit), and its rejection
    // of an append anchored at the new entry that had overtaken the entry itself (the leader
    // then moves the follower's progress back and batches the entry into the queued append).
    let mut heartbeat_answer = forged(MessageType::MsgHeartbeatResponse, follower, leader, term);
    heartbeat_answer.commit = held;
    let mut overtaken = forged(MessageType::MsgAppendResponse, follower, leader, term);
    overtaken.reject = true;
    overtaken.index = held;
    overtaken.reject_hint = held - 1;
    overtaken.log_term = cluster.term_at(leader, held - 1);
    let refused = cluster.step_forged(leader, vec![heartbeat_answer, overtaken]);
    cluster.assert_still_commits("after the batched append");
    assert!(refused.is_empty(), "{refused:?}");
    let refusals = cluster.unsafe_refusals();
    assert!(refusals.is_empty(), "honest messages refused: {refusals:?}");
}

/// A cluster driven through what an honest group goes through never has a message refused
/// as unsafe: elections with pre-vote, forwarded proposals and reads, a partitioned leader
/// with an uncommitted tail, heal and catch-up by snapshot, a leader transfer, a crash and
/// restart, a learner joining by snapshot, promotion and removal; with in-order delivery and
/// with delayed, reordered and duplicated delivery.
#[test]
fn an_honest_cluster_never_has_a_message_refused_as_unsafe() {
    let mut stepped_types = HashSet::new();
    for seed in 0..30u64 {
        // In order, then held back (and so reordered) and duplicated mildly, then heavily.
        let (hold_percent, duplicate_percent) = [(0, 0), (20, 10), (50, 25)][seed as usize % 3];
        let mut cluster = Cluster::new(&[1, 2, 3], retention(8), seed);
        for (id, member) in cluster.network.nodes_mut() {
            member.reordering = Some(Reordering {
                rng: Xorshift(0x9e37_79b9_7f4a_7c15 ^ (seed << 8) ^ id),
                hold_percent,
                duplicate_percent,
                held: VecDeque::new(),
            });
        }
        let context =
            format!("seed {seed}, {hold_percent}% held back, {duplicate_percent}% duplicated");
        let first = cluster.network.elect(0);
        for round in 0..12u64 {
            let proposer = 1 + round % 3;
            let _ = cluster
                .group_mut(proposer)
                .propose(format!("early {round}").into_bytes());
            cluster
                .group_mut(proposer)
                .read_index(format!("read {seed} {round}").into_bytes());
            cluster.network.tick(1);
        }

        // The leader is cut off; its proposals stay an uncommitted tail the others overwrite.
        cluster.network.isolate(first);
        for round in 0..3u64 {
            let _ = cluster
                .group_mut(first)
                .propose(format!("lost {round}").into_bytes());
        }
        cluster.network.tick(60);
        let second = cluster.elected_leader();
        assert_ne!(second, first, "{context}");
        for round in 0..20u64 {
            let _ = cluster
                .group_mut(second)
                .propose(format!("partitioned {round}").into_bytes());
            cluster.network.tick(1);
        }
        cluster.network.recover();
        cluster.network.tick(60);

        // A leader transfer asked of a follower, which forwards it to its leader; then a
        // crash and restart of a follower that misses entries.
        let leader = cluster.elected_leader();
        let target = cluster
            .running()
            .into_iter()
            .find(|&id| id != leader)
            .unwrap();
        cluster.group_mut(target).transfer_leader(target);
        cluster.network.tick(30);
        let leader = cluster.elected_leader();
        let crashed = cluster
            .running()
            .into_iter()
            .find(|&id| id != leader)
            .unwrap();
        cluster.crash(crashed);
        for round in 0..15u64 {
            let _ = cluster
                .group_mut(leader)
                .propose(format!("while down {round}").into_bytes());
            cluster.network.tick(1);
        }
        cluster.restart(crashed);
        cluster.network.tick(40);

        // A learner joins by snapshot and is promoted; a voter leaves.
        cluster.add_member(RaftGroupConfig::new(4, Vec::new()));
        let leader = cluster.elected_leader();
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddLearnerNode);
        change.node_id = 4;
        cluster
            .group_mut(leader)
            .propose_conf_change(change)
            .unwrap();
        cluster.network.tick(40);
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddNode);
        change.node_id = 4;
        let leader = cluster.elected_leader();
        cluster
            .group_mut(leader)
            .propose_conf_change(change)
            .unwrap();
        cluster.network.tick(40);
        let leader = cluster.elected_leader();
        let leaving = cluster
            .running()
            .into_iter()
            .find(|&id| id != leader && id != 4)
            .unwrap();
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::RemoveNode);
        change.node_id = leaving;
        cluster
            .group_mut(leader)
            .propose_conf_change(change)
            .unwrap();
        cluster.network.tick(40);
        cluster.crash(leaving);

        // Delayed messages drain with the ticks; every member ends with the leader's items.
        for member in cluster.network.nodes_mut().map(|(_, member)| member) {
            if let Some(reordering) = member.reordering.as_mut() {
                reordering.hold_percent = 0;
                reordering.duplicate_percent = 0;
            }
        }
        cluster.network.tick(40);
        cluster.assert_still_commits(&context);
        let refusals = cluster.unsafe_refusals();
        assert!(
            refusals.is_empty(),
            "{context}: honest messages refused: {refusals:?}"
        );
        assert!(
            cluster.items(4).len() > 40,
            "{context}: the learner caught up ({} items)",
            cluster.items(4).len()
        );
        let snapshots_restored: usize = cluster
            .network
            .nodes()
            .map(|(_, member)| member.snapshots_restored)
            .sum();
        assert!(
            snapshots_restored >= 2,
            "{context}: {snapshots_restored} snapshots restored"
        );
        for (_, member) in cluster.network.nodes() {
            stepped_types.extend(member.stepped_types.iter().copied());
        }
    }
    // Every type an honest member sends another went through the checks.
    for msg_type in [
        MessageType::MsgAppend,
        MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeat,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgSnapshot,
        MessageType::MsgRequestPreVote,
        MessageType::MsgRequestPreVoteResponse,
        MessageType::MsgRequestVote,
        MessageType::MsgRequestVoteResponse,
        MessageType::MsgPropose,
        MessageType::MsgReadIndex,
        MessageType::MsgReadIndexResp,
        MessageType::MsgTransferLeader,
        MessageType::MsgTimeoutNow,
    ] {
        assert!(
            stepped_types.contains(&msg_type),
            "no {msg_type:?} was stepped"
        );
    }
}

/// Every message type, local ones included.
const MESSAGE_TYPES: [MessageType; 19] = [
    MessageType::MsgHup,
    MessageType::MsgBeat,
    MessageType::MsgPropose,
    MessageType::MsgAppend,
    MessageType::MsgAppendResponse,
    MessageType::MsgRequestVote,
    MessageType::MsgRequestVoteResponse,
    MessageType::MsgSnapshot,
    MessageType::MsgHeartbeat,
    MessageType::MsgHeartbeatResponse,
    MessageType::MsgUnreachable,
    MessageType::MsgSnapStatus,
    MessageType::MsgCheckQuorum,
    MessageType::MsgTransferLeader,
    MessageType::MsgTimeoutNow,
    MessageType::MsgReadIndex,
    MessageType::MsgReadIndexResp,
    MessageType::MsgRequestPreVote,
    MessageType::MsgRequestPreVoteResponse,
];

/// A message of random type whose fields are drawn around the values that matter on
/// `target`: its term, last and commit indexes, the terms its log holds, the bounds, and
/// `u64::MAX`.
fn random_message(rng: &mut Xorshift, cluster: &Cluster, target: u64) -> Message {
    let group = cluster.group(target);
    let (term, last, committed) = (group.term(), group.last_index(), group.commit_index());
    let last_term = group.storage().term_of(last).unwrap_or(term);
    let leader = cluster.network.leader().unwrap_or(1);
    let jitter = rng.next() % 50;
    // Never within reach of TERM_MAX, from which honest elections would climb past it.
    let message_term = rng.pick(&[
        0,
        1,
        term.saturating_sub(1),
        term,
        term,
        term,
        term.saturating_add(1),
        term.saturating_add(jitter),
        TERM_MAX + 1,
        u64::MAX,
    ]);
    let indexes = [
        0,
        1,
        last.saturating_sub(1),
        last,
        last,
        last.saturating_add(1),
        last.saturating_add(5),
        committed,
        committed.saturating_add(1),
        INDEX_MAX + 1,
        u64::MAX,
    ];
    let terms = [
        0,
        1,
        last_term,
        term,
        term.saturating_add(1),
        rng.next() % 8,
    ];
    let from = rng.pick(&[0, 1, 2, 3, leader, leader, 99]);
    let mut message = forged(rng.pick(&MESSAGE_TYPES), from, target, message_term);
    message.index = rng.pick(&indexes);
    message.log_term = rng.pick(&terms);
    message.commit = rng.pick(&indexes);
    message.commit_term = rng.pick(&terms);
    message.reject = rng.chance(50);
    message.reject_hint = rng.pick(&indexes);
    if rng.chance(20) {
        message.request_snapshot = rng.pick(&indexes);
    }
    message.context = vec![rng.next() as u8; (rng.next() % 3) as usize].into();
    let consecutive = rng.chance(70);
    let entries: Vec<Entry> = (0..rng.next() % 4)
        .map(|position| {
            let index = if consecutive {
                message.index.wrapping_add(1 + position)
            } else {
                rng.pick(&indexes)
            };
            let mut entry = entry(index, rng.pick(&terms));
            entry.data = vec![rng.next() as u8; (rng.next() % 3) as usize].into();
            entry
        })
        .collect();
    message.set_entries(entries.into());
    if message.get_msg_type() == MessageType::MsgSnapshot || rng.chance(5) {
        let conf_state = match rng.next() % 8 {
            0 | 1 => voters(&[1, 2, 3]),
            2 => voters(&[target]),
            3 => ConfState {
                learners: vec![target],
                ..ConfState::default()
            },
            4 => ConfState {
                learners: vec![target],
                ..voters(&[1, 2, 3])
            },
            5 => voters(&[0, 1, 2, 3]),
            6 => ConfState {
                voters_outgoing: vec![1, 2, 3],
                learners_next: vec![3],
                ..voters(&[1, 2, 4])
            },
            _ => ConfState::default(),
        };
        let snapshot = forged_snapshot(
            from,
            target,
            message_term,
            rng.pick(&indexes),
            rng.pick(&terms),
            conf_state,
        );
        message.set_snapshot(snapshot.get_snapshot().clone());
        if rng.chance(10) {
            message.mut_snapshot().data = vec![0, 0, 0, 9].into();
        } else if rng.chance(30) {
            message.mut_snapshot().data = vec![0, 0, 0, 1, 7].into();
        }
    }
    message
}

/// Random messages stepped into a follower and into the leader of a live group, in batches
/// before a ready round as a production node steps them, with ticks in between and members
/// crashed and restarted now and then: none stops a node, and every store reopens.
///
/// Random values within the bounds are accepted, and among them are lies raft-rs cannot tell
/// from the truth without authenticated peers (a commit the leader never made, a vote never
/// cast): the members may then disagree on what is committed and stop making progress. So
/// this test asks for no more than that nothing stops a node; the next test asks for commits
/// after a flood of unsafe messages.
#[test]
fn random_messages_never_stop_a_node() {
    for seed in 0..8u64 {
        let mut rng = Xorshift(0x2545_f491_4f6c_dd1d ^ (seed << 17));
        let mut cluster = Cluster::started(30 + seed);
        // Two members told by forged messages that each other leads forward reads and
        // proposals to each other until an election: the in-memory network, which does not
        // tick while it delivers, would never fall quiet.
        cluster.network.ignore(MessageType::MsgPropose);
        cluster.network.ignore(MessageType::MsgReadIndex);
        let (mut refused_unsafe, mut taken) = (0, 0);
        for round in 0..4_000u64 {
            let target = match cluster.network.leader() {
                Some(leader) if round % 2 == 0 => leader,
                _ => 1 + rng.next() % 3,
            };
            let message = random_message(&mut rng, &cluster, target);
            match cluster.group_mut(target).step(message) {
                Err(StepError::Unsafe { .. }) => refused_unsafe += 1,
                Ok(()) => taken += 1,
                Err(_) => {}
            }
            // A driver that ticks between a step and its ready round.
            if rng.chance(5) {
                for _ in 0..rng.next() % 25 {
                    cluster.group_mut(target).tick();
                }
            }
            if round % 20 == 19 {
                cluster.network.tick(1);
            }
            if round % 500 == 499 {
                let id = 1 + rng.next() % 3;
                cluster.crash(id);
                cluster.restart(id);
            }
        }
        assert!(
            refused_unsafe > 1_000,
            "seed {seed}: {refused_unsafe} refused as unsafe"
        );
        assert!(taken > 500, "seed {seed}: {taken} taken");
        cluster.network.recover();
        cluster.network.tick(100);
        for id in 1..=3 {
            cluster.crash(id);
            cluster.restart(id);
        }
        cluster.network.tick(100);
    }
}

/// Turns one field of an honest message unsafe on its own; no later mutation makes it safe
/// again.
type Mutation = fn(&mut Message, &Target, &mut Xorshift);

/// An honest-looking message for `target`, and the ways of making it unsafe there. (A leader
/// transfer of a follower's own term has no honest form: it comes unsafe already.)
fn honest_and_mutations(
    cluster: &Cluster,
    target: &Target,
    rng: &mut Xorshift,
) -> (Message, Vec<Mutation>) {
    let group = cluster.group(target.id);
    let mut kinds = vec![0, 1, 2, 3, 4, 5, 6];
    if group.role() == Role::Leader {
        kinds.push(7);
    } else if group.leader_id().is_some() {
        kinds.push(8);
    }
    let mut mutations: Vec<Mutation> = vec![|message, _, _| message.from = 0, |message, _, rng| {
        message.term = TERM_MAX + 1 + rng.next() % 1_000
    }];
    let message = match rng.pick(&kinds) {
        0 => {
            let mut heartbeat = forged(
                MessageType::MsgHeartbeat,
                target.sender,
                target.id,
                target.term,
            );
            heartbeat.commit = target.committed;
            mutations.extend([
                (|message, target, rng| {
                    message.commit = target.last_index + 1 + rng.next() % 1_000_000
                }) as Mutation,
                |message, _, _| message.commit = u64::MAX,
                |message, _, _| message.term = 0,
                |message, target, _| message.from = target.id,
            ]);
            heartbeat
        }
        1 => {
            let mut append = forged(
                MessageType::MsgAppend,
                target.sender,
                target.id,
                target.term,
            );
            append.index = target.last_index;
            append.log_term = cluster.term_at(target.id, target.last_index);
            append.commit = target.committed;
            append.set_entries(vec![entry(target.last_index + 1, target.term)].into());
            mutations.extend([
                (|message, _, rng| {
                    let past_the_next = message.index.saturating_add(2 + rng.next() % 10);
                    if let Some(first) = message.mut_entries().first_mut() {
                        first.index = past_the_next;
                    }
                }) as Mutation,
                |message, target, rng| {
                    let rewritten = target.committed.saturating_sub(rng.next() % 2);
                    if let Some(first) = message.mut_entries().first_mut() {
                        first.index = rewritten;
                    }
                },
                // Terms fall: the entry before is of the message term, at least 2.
                |message, target, _| message.mut_entries().push(entry(target.last_index + 2, 1)),
                |message, target, rng| {
                    if let Some(first) = message.mut_entries().first_mut() {
                        first.term = target.term + 1 + rng.next() % 5;
                    }
                },
                |message, target, rng| {
                    message.log_term = 0;
                    message.index = target.last_index + 1 + rng.next() % 100;
                    message.clear_entries();
                },
                |message, _, rng| message.index = INDEX_MAX + 1 + rng.next() % 100,
                |message, _, _| message.term = 0,
            ]);
            append
        }
        2 => {
            let snapshot = forged_snapshot(
                target.sender,
                target.id,
                target.term,
                target.last_index + 5,
                target.term,
                voters(&[1, 2, 3]),
            );
            mutations.extend([
                (|message, _, rng| {
                    message.mut_snapshot().mut_metadata().index = INDEX_MAX + 1 + rng.next() % 100
                }) as Mutation,
                |message, _, _| message.mut_snapshot().mut_metadata().term = 0,
                |message, target, rng| {
                    message.mut_snapshot().mut_metadata().term = target.term + 1 + rng.next() % 5
                },
                |message, target, _| {
                    let conf_state = message.mut_snapshot().mut_metadata().mut_conf_state();
                    conf_state.learners = vec![target.id];
                },
                |message, target, _| {
                    *message.mut_snapshot().mut_metadata().mut_conf_state() = ConfState {
                        learners: vec![target.id],
                        ..ConfState::default()
                    }
                },
                |message, _, _| {
                    let conf_state = message.mut_snapshot().mut_metadata().mut_conf_state();
                    conf_state.voters.push(0);
                },
                |message, _, _| {
                    let conf_state = message.mut_snapshot().mut_metadata().mut_conf_state();
                    conf_state.learners_next = vec![2];
                },
            ]);
            snapshot
        }
        3 => {
            let mut vote = forged(
                MessageType::MsgRequestVote,
                target.sender,
                target.id,
                target.term,
            );
            vote.index = target.last_index;
            vote.log_term = target.term;
            mutations.push(|message, _, _| message.term = 0);
            vote
        }
        4 => {
            let msg_type = rng.pick(&[MessageType::MsgPropose, MessageType::MsgReadIndex]);
            let mut forwarded = forged(msg_type, target.sender, target.id, 0);
            forwarded.set_entries(vec![entry(0, 0)].into());
            mutations.extend([
                (|message, _, _| message.clear_entries()) as Mutation,
                |message, _, _| {
                    message.mut_entries().push(entry(0, 0));
                    message.mut_entries().push(entry(0, 0));
                },
                |message, target, rng| message.term = target.term + rng.next() % 3,
            ]);
            forwarded
        }
        5 => {
            let mut answer = forged(
                MessageType::MsgReadIndexResp,
                target.sender,
                target.id,
                target.term,
            );
            answer.index = target.committed;
            answer.set_entries(vec![entry(0, 0)].into());
            mutations.push(|message, _, _| message.term = 0);
            answer
        }
        6 => {
            let timeout = forged(
                MessageType::MsgTimeoutNow,
                target.sender,
                target.id,
                target.term,
            );
            mutations.extend([
                (|message, _, _| message.term = 0) as Mutation,
                |message, target, _| message.from = target.id,
            ]);
            timeout
        }
        7 => {
            // An answer to the leader, of its own term.
            let term = group.term();
            let mut answer = forged(
                MessageType::MsgAppendResponse,
                target.sender,
                target.id,
                term,
            );
            answer.index = target.last_index;
            mutations = vec![
                |message, _, _| message.from = 0,
                |message, target, rng| message.index = target.last_index + 1 + rng.next() % 1_000,
                |message, _, _| message.index = u64::MAX,
                |message, target, rng| {
                    message.reject = true;
                    message.reject_hint = target.last_index + 1 + rng.next() % 1_000;
                },
                |message, target, rng| {
                    message.reject = true;
                    message.request_snapshot = target.last_index + 1 + rng.next() % 1_000;
                },
            ];
            answer
        }
        _ => {
            let transfer = forged(
                MessageType::MsgTransferLeader,
                target.sender,
                target.id,
                group.term(),
            );
            mutations = vec![|message, _, _| message.from = 0, |message, _, _| {
                message.term = 0
            }];
            transfer
        }
    };
    (message, mutations)
}

/// What a refused message must leave untouched on a member.
fn observed(cluster: &Cluster, id: u64) -> impl PartialEq + std::fmt::Debug + use<> {
    let group = cluster.group(id);
    (
        group.term(),
        group.role(),
        group.leader_id(),
        group.last_index(),
        group.commit_index(),
        group.applied_index(),
        group.storage().hard_state().clone(),
        group.has_ready(),
    )
}

/// Thousands of random unsafe messages (an honest message with one to three fields turned
/// unsafe) stepped into the leader and the followers of a live group: each is refused before
/// raft-rs sees it, leaving the member exactly as it was, and the group commits afterwards.
#[test]
fn random_unsafe_messages_change_nothing_and_the_group_still_commits() {
    let mut rng = Xorshift(0x5851_f42d_4c95_7f2d);
    let mut cluster = Cluster::started(40);
    for round in 0..4_000u64 {
        let leader = cluster.leader();
        let id = if round % 2 == 0 {
            leader
        } else {
            1 + rng.next() % 3
        };
        let target = cluster.target(id);
        let (mut message, mutations) = honest_and_mutations(&cluster, &target, &mut rng);
        for _ in 0..1 + rng.next() % 3 {
            rng.pick(&mutations)(&mut message, &target, &mut rng);
        }
        let before = observed(&cluster, id);
        let outcome = cluster.group_mut(id).step(message.clone());
        assert!(
            matches!(outcome, Err(StepError::Unsafe { .. })),
            "round {round}: member {id} answered {outcome:?} to {message:?}"
        );
        assert_eq!(
            observed(&cluster, id),
            before,
            "round {round}: a refused message changed member {id}"
        );
        if round % 20 == 19 {
            cluster.network.tick(1);
        }
    }
    let refusals = cluster.unsafe_refusals();
    assert!(refusals.is_empty(), "honest messages refused: {refusals:?}");
    cluster.assert_still_commits("after the unsafe messages");
}
