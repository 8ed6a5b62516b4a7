//! Region nodes of real raft-rs groups over in-memory stores, routed by hand: batching bounds,
//! forwarding from followers, replies and their errors, exactly-once across retries and leader
//! changes, restarts. Reference: docs/design.md sections 1 ("exactly once") and 2 ("regional
//! tier").

use dsss_raft_group::raft::eraftpb::Message;
use dsss_raft_group::testing::{Network, TestNode};
use dsss_raft_group::{MemoryStore, StoreIo};
use dsss_region_node::{
    BATCH_RECORDS_MAX, CheckpointOutcome, CheckpointReply, CheckpointSpace, CheckpointUpload,
    ClockFence, ClockSample, ClockVerdict, LogEvent, LogRangeFetch, OpenSessionError,
    PROPOSALS_PENDING_MAX, ProposeError, ProposeRequest, RegionNode, RegionNodeConfig,
    RegionOutput, Reply, SESSION_OPENS_IN_FLIGHT_MAX, STATE_PIECE_BYTES_MAX, SYNCS_IN_FLIGHT_MAX,
    SealedEpochRead, SessionCloseReply, SessionReply, SyncError, SyncReply, UploadError,
};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, RegionId, RequestSequence, Scope, Timestamp, proto,
};

const NOW_US: u64 = 1_700_000_000_000_000;

/// Every output the node has queued, in order, as a driver drains them.
fn take_outputs(node: &mut RegionNode) -> Vec<RegionOutput> {
    std::iter::from_fn(|| node.poll_output()).collect()
}

/// The answers to proposals among `outputs`.
fn replies(outputs: &[RegionOutput]) -> Vec<Reply> {
    outputs
        .iter()
        .filter_map(|output| match output {
            RegionOutput::Reply(reply) => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

/// The answers to barriers among `outputs`.
fn sync_replies(outputs: &[RegionOutput]) -> Vec<SyncReply> {
    outputs
        .iter()
        .filter_map(|output| match output {
            RegionOutput::SyncReply(reply) => Some(reply.clone()),
            _ => None,
        })
        .collect()
}

/// The reads of the coordinator's sealed epoch among `outputs`.
fn sealed_epoch_reads(outputs: &[RegionOutput]) -> Vec<SealedEpochRead> {
    outputs
        .iter()
        .filter_map(|output| match output {
            RegionOutput::SealedEpochRead(read) => Some(read.clone()),
            _ => None,
        })
        .collect()
}

fn call(client: u64, sequence: u64, argument_bytes: usize) -> ProposeRequest {
    ProposeRequest {
        client_id: ClientId(client),
        request_sequence: RequestSequence(sequence),
        object_id: ObjectId::new("lobby/main").unwrap(),
        method_id: MethodId(1),
        arguments: Arguments::new(vec![7; argument_bytes]).unwrap(),
        scope: Scope::Regional,
    }
}

struct Member {
    node: Option<RegionNode>,
    store: MemoryStore,
    config: RegionNodeConfig,
    replies: Vec<Reply>,
    events: Vec<LogEvent>,
    syncs: Vec<SyncReply>,
    uploads: Vec<CheckpointReply>,
    sessions: Vec<SessionReply>,
    session_closes: Vec<SessionCloseReply>,
    /// Requests for entries a snapshot stands on, for [`Region::serve_log_fetches`].
    fetches: Vec<LogRangeFetch>,
}

impl TestNode for Member {
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
                RegionOutput::Reply(reply) => self.replies.push(reply),
                RegionOutput::LogEvent(event) => self.events.push(event),
                RegionOutput::SyncReply(reply) => self.syncs.push(reply),
                RegionOutput::CheckpointReply(reply) => self.uploads.push(reply),
                RegionOutput::SessionReply(reply) => self.sessions.push(reply),
                RegionOutput::SessionCloseReply(reply) => self.session_closes.push(reply),
                RegionOutput::FetchLogRange(fetch) => self.fetches.push(fetch),
                // These regions have no global tier (a barrier asks no coordinator), and the
                // tests read alarms from the node's status.
                RegionOutput::SealedEpochRead(_)
                | RegionOutput::DivergenceAlarm(_)
                | RegionOutput::EpochsRead(_)
                | RegionOutput::CheckpointRead(_)
                | RegionOutput::ToCoordinator(_) => {}
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

/// The members of a region over the in-memory test network.
struct Region {
    network: Network<Member>,
}

impl Region {
    fn new(ids: &[u64]) -> Region {
        let mut network = Network::new(NOW_US, 10_000);
        for &id in ids {
            let mut config =
                RegionNodeConfig::new(id, ids.to_vec(), RegionId::new("eu-west").unwrap());
            config.proposal_timeout_ticks = 30;
            let mut store = MemoryStore::new();
            let node = RegionNode::open(config.clone(), &mut store).unwrap();
            network.insert(
                id,
                Member {
                    node: Some(node),
                    store,
                    config,
                    replies: Vec::new(),
                    events: Vec::new(),
                    syncs: Vec::new(),
                    uploads: Vec::new(),
                    sessions: Vec::new(),
                    session_closes: Vec::new(),
                    fetches: Vec::new(),
                },
            );
        }
        Region { network }
    }

    /// Answers every request for log entries the members made, from the peer asked (a peer
    /// that is down or cut off gives no answer), then settles. Returns how many were answered.
    fn serve_log_fetches(&mut self) -> usize {
        let mut answered = 0;
        for id in self.network.ids() {
            let fetches = std::mem::take(&mut self.network.node_mut(id).fetches);
            for fetch in fetches {
                if self.network.is_isolated(id) || self.network.is_isolated(fetch.peer) {
                    continue;
                }
                let peer = self.network.node(fetch.peer);
                let Some(peer_node) = peer.node.as_ref() else {
                    continue;
                };
                let reply = peer_node
                    .answer_log_range(&peer.store, &fetch.request)
                    .map_err(|error| error.to_string());
                let member = self.network.node_mut(id);
                if let Some(node) = member.node.as_mut() {
                    node.handle_log_range(fetch.request.fetch_id, reply, &mut member.store)
                        .unwrap();
                    answered += 1;
                }
            }
        }
        self.network.settle();
        answered
    }

    fn now_us(&self) -> u64 {
        self.network.now_us()
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

    /// Elects a leader, then lets every member learn it, and opens the test clients'
    /// sessions (once per region: sessions are replicated state, so later leaders know them).
    fn elect(&mut self) -> u64 {
        let leader = self.network.elect(3);
        if self.node(leader).region_log().dedup().session_count() == 0 {
            let now_us = self.now_us();
            for client in TEST_CLIENTS {
                self.node_mut(leader)
                    .handle_open_session(now_us, client, client);
            }
            self.network.settle();
            let opened = std::mem::take(&mut self.network.node_mut(leader).sessions);
            assert_eq!(opened.len(), TEST_CLIENTS.count(), "{opened:?}");
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

    fn take_syncs(&mut self, id: u64) -> Vec<SyncReply> {
        std::mem::take(&mut self.network.node_mut(id).syncs)
    }

    fn take_uploads(&mut self, id: u64) -> Vec<CheckpointReply> {
        std::mem::take(&mut self.network.node_mut(id).uploads)
    }

    fn sync(&mut self, id: u64, sync_id: u64) {
        let now_us = self.now_us();
        self.node_mut(id).handle_sync(now_us, sync_id);
        self.network.settle();
    }

    fn upload(&mut self, id: u64, upload_id: u64, upload: CheckpointUpload) {
        let now_us = self.now_us();
        self.node_mut(id)
            .handle_upload_checkpoint(now_us, upload_id, upload);
        self.network.settle();
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

    /// A member other than `id`.
    fn other_than(&self, id: u64) -> u64 {
        self.network
            .ids()
            .into_iter()
            .find(|&other| other != id)
            .unwrap()
    }

    fn log(&self, id: u64) -> Vec<(u64, u64, u64)> {
        self.node(id)
            .region_log()
            .cached_records()
            .map(|log_record| {
                let record = log_record.entry.record().expect("regional records only");
                (
                    log_record.position,
                    record.client_id.get(),
                    record.request_sequence.get(),
                )
            })
            .collect()
    }
}

/// The clients of these tests (ids 1 to 9): each opens its session before its first call.
const TEST_CLIENTS: std::ops::RangeInclusive<u64> = 1..=9;

/// Opens the test clients' sessions on a single-member region led by `node`.
fn open_sessions(node: &mut RegionNode, store: &mut MemoryStore, now_us: u64) {
    for client in TEST_CLIENTS {
        node.handle_open_session(now_us, client, client);
    }
    node.handle_ready(&mut StoreIo::new(store)).unwrap();
    let mut opened = 0;
    for output in take_outputs(node) {
        if let RegionOutput::SessionReply(reply) = output {
            assert_eq!(reply.result, Ok(()), "{reply:?}");
            opened += 1;
        }
    }
    assert_eq!(opened, TEST_CLIENTS.count());
}

fn proposed(client: u64, sequence: u64, position: u64) -> Reply {
    Reply::Proposed {
        client_id: ClientId(client),
        request_sequence: RequestSequence(sequence),
        position,
    }
}

#[test]
fn many_proposals_travel_in_few_entries_and_one_round() {
    let mut store = MemoryStore::new();
    let config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west").unwrap());
    let mut node = RegionNode::open(config, &mut store).unwrap();
    let mut now_us = NOW_US;
    while !node.is_leader() {
        now_us += 10_000;
        node.handle_tick(now_us);
        node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    }
    open_sessions(&mut node, &mut store, now_us);
    let syncs_before = store.sync_count();
    let count = 2 * BATCH_RECORDS_MAX as u64 + 88;
    for sequence in 1..=count {
        node.handle_propose(now_us, call(1, sequence, 10));
    }
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    let status = node.status();
    assert_eq!(
        status.counters.entries_proposed, 3,
        "records per entry are bounded"
    );
    assert_eq!(status.counters.records_proposed, count);
    assert_eq!(status.next_position, count + 1);
    // One sync, for the appended entries. A lone member commits them only once it has
    // persisted them, so it applies them in the same round, and writes what applying them
    // changed without a sync: the entries are durable, and applying them again after a crash
    // gives the same outcome.
    assert_eq!(store.sync_count() - syncs_before, 1);
    let positions: Vec<u64> = replies(&take_outputs(&mut node))
        .into_iter()
        .map(|reply| match reply {
            Reply::Proposed { position, .. } => position,
            Reply::Refused { error, .. } => panic!("refused: {error}"),
        })
        .collect();
    assert_eq!(positions, (1..=count).collect::<Vec<_>>());
}

#[test]
fn large_records_are_batched_by_bytes() {
    let mut store = MemoryStore::new();
    let config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west").unwrap());
    let mut node = RegionNode::open(config, &mut store).unwrap();
    let mut now_us = NOW_US;
    while !node.is_leader() {
        now_us += 10_000;
        node.handle_tick(now_us);
        node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    }
    open_sessions(&mut node, &mut store, now_us);
    // Megabyte records: three fit in the 4 MiB batch bound, the fourth starts another.
    for sequence in 1..=5 {
        node.handle_propose(now_us, call(1, sequence, 1024 * 1024));
    }
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    assert_eq!(node.status().counters.entries_proposed, 2);
    assert_eq!(node.region_log().next_position(), 6);
}

#[test]
fn a_full_queue_is_overloaded_and_an_unknown_leader_refuses_at_once() {
    let mut region = Region::new(&[1, 2, 3]);
    // Before any election nobody knows a leader.
    region.propose(1, call(1, 1, 10));
    assert_eq!(
        region.take_replies(1),
        vec![Reply::Refused {
            client_id: ClientId(1),
            request_sequence: RequestSequence(1),
            error: ProposeError::NotLeader { leader_hint: None },
        }]
    );
    let leader = region.elect();
    let now_us = region.now_us();
    for sequence in 0..=PROPOSALS_PENDING_MAX as u64 {
        region
            .node_mut(leader)
            .handle_propose(now_us, call(2, sequence, 10));
    }
    region.network.settle();
    let replies = region.take_replies(leader);
    let overloaded: Vec<_> = replies
        .iter()
        .filter(|reply| {
            matches!(
                reply,
                Reply::Refused {
                    error: ProposeError::Overloaded,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(
        overloaded.len(),
        1,
        "only the proposal past the bound is refused"
    );
    assert_eq!(replies.len(), PROPOSALS_PENDING_MAX + 1);
}

#[test]
fn a_follower_forwards_and_answers_when_it_applies() {
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    let follower = if leader == 1 { 2 } else { 1 };
    region.propose(follower, call(5, 1, 10));
    region.propose(leader, call(6, 1, 10));
    region.tick(2);
    assert_eq!(region.take_replies(follower), vec![proposed(5, 1, 1)]);
    assert_eq!(region.take_replies(leader), vec![proposed(6, 1, 2)]);
    for id in [1, 2, 3] {
        assert_eq!(region.log(id), vec![(1, 5, 1), (2, 6, 1)]);
    }
    let events = &region.network.node(3).events;
    assert_eq!(events.len(), 2, "every member tells its subscribers");
}

#[test]
fn a_retry_after_a_leader_change_is_applied_once() {
    let mut region = Region::new(&[1, 2, 3]);
    let first_leader = region.elect();
    region.propose(first_leader, call(9, 1, 10));
    region.propose(first_leader, call(9, 2, 10));
    assert_eq!(
        region.take_replies(first_leader),
        vec![proposed(9, 1, 1), proposed(9, 2, 2)]
    );
    // The leader crashes before the client hears back about sequence 2 (say); the client
    // retries it at another node once a new leader is elected.
    region.crash(first_leader);
    region.network.isolate(first_leader);
    let second_leader = region.elect();
    assert_ne!(second_leader, first_leader);
    region.propose(second_leader, call(9, 2, 10));
    assert_eq!(region.take_replies(second_leader), vec![proposed(9, 2, 2)]);
    region.propose(second_leader, call(9, 3, 10));
    assert_eq!(region.take_replies(second_leader), vec![proposed(9, 3, 3)]);
    // The old leader returns, recovers what it persisted, and converges.
    region.network.rejoin(first_leader);
    region.restart(first_leader);
    region.tick(10);
    let expected = vec![(1, 9, 1), (2, 9, 2), (3, 9, 3)];
    for id in [1, 2, 3] {
        assert_eq!(region.log(id), expected, "member {id}");
    }
}

#[test]
fn an_unanswered_proposal_times_out_as_dropped() {
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    let followers: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != leader).collect();
    // The leader is cut off: the proposal reaches its log but can never commit.
    for &follower in &followers {
        region.network.isolate(follower);
    }
    region.propose(leader, call(4, 1, 10));
    region.tick(31);
    let replies = region.take_replies(leader);
    assert_eq!(
        replies,
        vec![Reply::Refused {
            client_id: ClientId(4),
            request_sequence: RequestSequence(1),
            error: ProposeError::Dropped,
        }]
    );
    assert!(region.node(leader).status().waiters == 0);
}

#[test]
fn a_restarted_member_keeps_its_log_and_dedup_table() {
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    for sequence in 1..=4 {
        region.propose(leader, call(3, sequence, 10));
    }
    region.tick(2);
    let follower = if leader == 3 { 1 } else { 3 };
    let before = region.node(follower).region_log().clone();
    region.crash(follower);
    region.restart(follower);
    // A crash may lose what the last rounds wrote without a sync (the application of
    // entries already durable in the raft log): the restarted member holds a prefix of its
    // log, applies the rest again from its raft log once it learns the commit, and ends with
    // the same region log and dedup table.
    let restarted = region.node(follower).region_log();
    assert!(restarted.next_position() <= before.next_position());
    assert!(
        restarted
            .cached_records()
            .zip(before.cached_records())
            .all(|(recovered, applied)| recovered == applied)
    );
    region.tick(3);
    let caught_up = region.node(follower).region_log();
    assert_eq!(caught_up, region.node(leader).region_log());
    assert!(caught_up.cached_records().eq(before.cached_records()));
    assert_eq!(caught_up.dedup(), before.dedup());
    // The restarted follower answers a retry from its own dedup table.
    region.propose(follower, call(3, 2, 10));
    assert_eq!(region.take_replies(follower), vec![proposed(3, 2, 2)]);
}

#[test]
fn a_region_without_a_global_tier_closes_no_batches_and_refuses_global_calls() {
    let mut store = MemoryStore::new();
    let mut config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west").unwrap());
    config.global_tier = false;
    let mut node = RegionNode::open(config, &mut store).unwrap();
    let mut now_us = NOW_US;
    // Many epochs pass: a region with a global tier would close a batch in each.
    for _ in 0..100 {
        now_us += 10_000;
        node.handle_tick(now_us);
        node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    }
    assert!(node.is_leader());
    assert_eq!(node.status().counters.close_batches_proposed, 0);
    open_sessions(&mut node, &mut store, now_us);
    let mut global = call(1, 1, 10);
    global.scope = Scope::Global;
    node.handle_propose(now_us, global);
    assert_eq!(
        replies(&take_outputs(&mut node)),
        vec![Reply::Refused {
            client_id: ClientId(1),
            request_sequence: RequestSequence(1),
            error: ProposeError::NoGlobalTier,
        }]
    );
    // Regional calls are ordered as ever, and the log holds nothing else.
    node.handle_propose(now_us, call(1, 2, 10));
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    assert_eq!(replies(&take_outputs(&mut node)), vec![proposed(1, 2, 1)]);
    assert_eq!(node.region_log().next_position(), 2);
}

fn new_region_without_global_tier(ids: &[u64]) -> Region {
    let mut region = Region::new(ids);
    for (id, member) in region.network.nodes_mut() {
        member.config.global_tier = false;
        member.store = MemoryStore::new();
        member.node = Some(RegionNode::open(member.config.clone(), &mut member.store).unwrap());
        assert_eq!(member.config.group.node_id, id);
    }
    region
}

fn upload(object: &str, position: u64, hash: u8, client: u64) -> CheckpointUpload {
    CheckpointUpload {
        object_id: ObjectId::new(object).unwrap(),
        position,
        state: vec![hash; 64],
        state_hash: [hash; 32],
        client_id: ClientId(client),
    }
}

/// Reference: docs/design.md section 1, "linearizable reads on request": a barrier asked of a
/// follower waits for the leader to confirm its commit point, and covers every call
/// acknowledged before it was asked.
#[test]
fn a_barrier_on_a_follower_waits_for_the_leader_and_covers_every_acknowledged_call() {
    let mut region = new_region_without_global_tier(&[1, 2, 3]);
    let leader = region.elect();
    let follower = region.other_than(leader);
    let mut acknowledged = 0;
    for sequence in 1..=5 {
        region.propose(leader, call(9, sequence, 8));
        for reply in region.take_replies(leader) {
            if let Reply::Proposed { position, .. } = reply {
                acknowledged = acknowledged.max(position);
            }
        }
    }
    assert_eq!(acknowledged, 5);
    // The leader is cut off: the follower's read cannot be confirmed.
    region.network.isolate(leader);
    region.sync(follower, 1);
    region.tick(2);
    assert!(
        region.take_syncs(follower).is_empty(),
        "no confirmation, no barrier"
    );
    region.network.rejoin(leader);
    for _ in 0..30 {
        region.tick(1);
        if !region.network.node(follower).syncs.is_empty() {
            break;
        }
    }
    let syncs = region.take_syncs(follower);
    let [
        SyncReply::Ready {
            sync_id: 1,
            apply_through_position,
            sealed_epoch_number: 0,
        },
    ] = syncs.as_slice()
    else {
        panic!("one barrier expected, got {syncs:?}");
    };
    assert!(*apply_through_position >= acknowledged);
    assert!(region.node(follower).region_log().last_position() >= *apply_through_position);
    assert!(region.node(follower).status().counters.read_indexes_asked >= 1);
}

#[test]
fn barriers_are_refused_without_a_leader_beyond_the_bound_and_after_the_timeout() {
    let mut region = new_region_without_global_tier(&[1, 2, 3]);
    region.sync(1, 7);
    assert_eq!(
        region.take_syncs(1),
        vec![SyncReply::Refused {
            sync_id: 7,
            error: SyncError::NotLeader { leader_hint: None },
        }]
    );
    let leader = region.elect();
    let follower = region.other_than(leader);
    region.network.isolate(leader);
    for sync_id in 0..SYNCS_IN_FLIGHT_MAX as u64 {
        region.sync(follower, sync_id);
    }
    region.sync(follower, u64::MAX);
    assert_eq!(
        region.take_syncs(follower),
        vec![SyncReply::Refused {
            sync_id: u64::MAX,
            error: SyncError::Overloaded,
        }]
    );
    // No leader confirms anything for longer than the timeout (30 ticks here).
    for id in [1, 2, 3] {
        region.network.isolate(id);
    }
    region.tick(31);
    let refused = region.take_syncs(follower);
    assert_eq!(refused.len(), SYNCS_IN_FLIGHT_MAX);
    assert!(refused.iter().all(|reply| matches!(
        reply,
        SyncReply::Refused {
            error: SyncError::TimedOut { .. },
            ..
        }
    )));
}

/// With a global tier, a barrier also waits until the node's log holds the sealed epoch the
/// coordinator leader confirmed.
#[test]
fn a_global_barrier_waits_for_the_confirmed_sealed_epoch_in_the_log() {
    let mut store = MemoryStore::new();
    let config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west").unwrap());
    let mut node = RegionNode::open(config, &mut store).unwrap();
    let mut now_us = NOW_US;
    while !node.is_leader() {
        now_us += 10_000;
        node.handle_tick(now_us);
        node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    }
    open_sessions(&mut node, &mut store, now_us);
    node.handle_propose(now_us, call(1, 1, 8));
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    node.handle_sync(now_us, 1);
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    let outputs = take_outputs(&mut node);
    let [read] = &sealed_epoch_reads(&outputs)[..] else {
        panic!("the node asks the coordinator once: {outputs:?}");
    };
    assert_eq!(read.request.sender_node_id, 1);
    assert_eq!(sync_replies(&outputs), [], "the epoch is not confirmed yet");
    let coordinator_time = Some(Timestamp::new(now_us, 0).into());
    node.handle_sealed_epoch_read(
        now_us,
        read.read_id,
        Ok(proto::ReadSealedEpochReply {
            epoch_number: 1,
            watermark: Some(Timestamp::new(now_us, 0).into()),
            not_leader: None,
            sender_time: coordinator_time,
        }),
    );
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    assert_eq!(
        sync_replies(&take_outputs(&mut node)),
        [],
        "epoch 1 is confirmed but not yet in this node's log"
    );
    let epoch = proto::SealedEpoch {
        epoch_number: 1,
        watermark: Some(Timestamp::new(now_us, 0).into()),
        previous_watermark: None,
        records: Vec::new(),
        part_index: 0,
        part_count: 1,
        member_regions: vec!["eu-west".to_owned()],
        sender_node_id: 100,
        sender_time: coordinator_time,
    };
    node.handle_sealed_epoch(now_us, epoch).unwrap();
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    let epoch_end = node.region_log().last_position();
    assert_eq!(
        sync_replies(&take_outputs(&mut node)),
        [SyncReply::Ready {
            sync_id: 1,
            apply_through_position: epoch_end,
            sealed_epoch_number: 1,
        }]
    );
    // A coordinator that cannot confirm refuses the barriers waiting for its answer.
    node.handle_sync(now_us, 2);
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    let outputs = take_outputs(&mut node);
    let [read] = &sealed_epoch_reads(&outputs)[..] else {
        panic!("the node asks the coordinator once: {outputs:?}");
    };
    node.handle_sealed_epoch_read(now_us, read.read_id, Err("unreachable".to_owned()));
    assert!(matches!(
        &sync_replies(&take_outputs(&mut node))[..],
        [SyncReply::Refused {
            sync_id: 2,
            error: SyncError::Coordinator { .. },
        }]
    ));
}

/// Reference: docs/design.md section 2, "Checkpoints": uploads go through raft from any member and
/// every member applies them alike.
#[test]
fn checkpoint_uploads_from_any_member_are_applied_by_every_member() {
    let mut region = new_region_without_global_tier(&[1, 2, 3]);
    let leader = region.elect();
    let followers: Vec<u64> = region
        .network
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();
    for sequence in 1..=3 {
        region.propose(leader, call(9, sequence, 8));
    }
    // Followers learn the commit index with the next heartbeat.
    region.tick(3);
    region.upload(followers[0], 1, upload("lobby/main", 3, 1, 100));
    assert_eq!(
        region.take_uploads(followers[0]),
        vec![CheckpointReply {
            upload_id: 1,
            result: Ok(CheckpointOutcome::Stored),
        }]
    );
    region.upload(followers[1], 1, upload("lobby/main", 3, 1, 200));
    assert_eq!(
        region.take_uploads(followers[1])[0].result,
        Ok(CheckpointOutcome::Agreed)
    );
    region.upload(leader, 5, upload("lobby/main", 3, 2, 300));
    assert_eq!(
        region.take_uploads(leader)[0].result,
        Ok(CheckpointOutcome::HashMismatch)
    );
    region.tick(3);
    for (_, member) in region.network.nodes() {
        let node = member.node.as_ref().unwrap();
        let status = node.status();
        assert_eq!(status.checkpoints.objects, 1);
        assert_eq!(status.checkpoints.alarms_raised, 1);
        assert_eq!(status.checkpoints.alarms[0].second_client_id, 300);
        assert_eq!(
            status.checkpoints.truncated_through, 3,
            "agreed before the alarm"
        );
        assert_eq!(node.region_log().first_retained_position(), 4);
    }
    // A position beyond what the node applied is refused naming the field.
    region.upload(leader, 6, upload("lobby/main", 99, 1, 100));
    let replies = region.take_uploads(leader);
    let Err(UploadError::Invalid(reason)) = &replies[0].result else {
        panic!("refused expected: {replies:?}");
    };
    assert!(reason.contains("checkpoint.position"), "{reason}");
}

#[test]
fn a_restarted_member_keeps_its_checkpoints_and_truncation_point() {
    let mut region = new_region_without_global_tier(&[1, 2, 3]);
    let leader = region.elect();
    for sequence in 1..=4 {
        region.propose(leader, call(9, sequence, 8));
    }
    region.upload(leader, 1, upload("lobby/main", 4, 1, 100));
    region.upload(leader, 2, upload("lobby/main", 4, 1, 200));
    region.tick(3);
    let member = region.other_than(leader);
    let before = region.node(member).status().checkpoints;
    assert_eq!(before.truncated_through, 4);
    region.crash(member);
    region.restart(member);
    region.tick(5);
    let after = region.node(member).status().checkpoints;
    assert_eq!(after, before);
    assert_eq!(
        region.node(member).region_log().first_retained_position(),
        5
    );
}

#[test]
fn a_session_closed_through_a_follower_is_closed_on_every_member_and_its_calls_are_refused() {
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    let follower = region.other_than(leader);
    region.propose(follower, call(1, 1, 8));
    assert!(
        matches!(
            region.take_replies(follower)[..],
            [Reply::Proposed { position: 1, .. }]
        ),
        "the call of a live session is applied"
    );
    let now_us = region.now_us();
    region
        .node_mut(follower)
        .handle_close_session(now_us, 70, 1);
    region.network.settle();
    let closes = std::mem::take(&mut region.network.node_mut(follower).session_closes);
    assert_eq!(
        closes,
        vec![SessionCloseReply {
            close_id: 70,
            session_id: 1,
            result: Ok(true)
        }]
    );
    for id in [1, 2, 3] {
        assert!(
            region.node(id).region_log().dedup().session(1).is_none(),
            "member {id} applied the close"
        );
        assert_eq!(
            region.node(id).status().sessions,
            TEST_CLIENTS.count() - 1,
            "member {id}"
        );
    }
    // The retry of the applied call and a new call are refused; nothing is appended.
    for sequence in [1, 2] {
        region.propose(leader, call(1, sequence, 8));
        let replies = region.take_replies(leader);
        assert!(
            matches!(
                replies[..],
                [Reply::Refused {
                    error: ProposeError::UnknownSession { session_id: 1, .. },
                    ..
                }]
            ),
            "sequence {sequence}: {replies:?}"
        );
    }
    assert_eq!(region.log(leader), vec![(1, 1, 1)]);
    // A retried close changes nothing and says so; id 0 is refused at once.
    let now_us = region.now_us();
    region.node_mut(leader).handle_close_session(now_us, 71, 1);
    region.node_mut(leader).handle_close_session(now_us, 72, 0);
    region.network.settle();
    let closes = std::mem::take(&mut region.network.node_mut(leader).session_closes);
    assert!(
        closes.contains(&SessionCloseReply {
            close_id: 71,
            session_id: 1,
            result: Ok(false)
        }) && closes.contains(&SessionCloseReply {
            close_id: 72,
            session_id: 0,
            result: Err(dsss_region_node::CloseSessionError::InvalidId)
        }),
        "{closes:?}"
    );
}

#[test]
fn session_opens_beyond_the_in_flight_bound_are_refused_at_once_and_the_rest_open() {
    let mut store = MemoryStore::new();
    let config = RegionNodeConfig::new(1, vec![1], RegionId::new("eu-west").unwrap());
    let mut node = RegionNode::open(config, &mut store).unwrap();
    let mut now_us = NOW_US;
    while !node.is_leader() {
        now_us += 10_000;
        node.handle_tick(now_us);
        node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    }
    take_outputs(&mut node);
    // Every open waits for its entry to apply, which needs a ready round: none runs until
    // one more than the bound has been asked.
    let bound = SESSION_OPENS_IN_FLIGHT_MAX as u64;
    for open_id in 1..=bound + 1 {
        node.handle_open_session(now_us, open_id, 1_000 + open_id);
    }
    let refused: Vec<SessionReply> = take_outputs(&mut node)
        .into_iter()
        .filter_map(|output| match output {
            RegionOutput::SessionReply(reply) => Some(reply),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].open_id, bound + 1);
    assert_eq!(refused[0].result, Err(OpenSessionError::Overloaded));
    let message = OpenSessionError::Overloaded.to_string();
    assert!(
        message.contains("SESSION_OPENS_IN_FLIGHT_MAX") && message.contains("1024"),
        "{message}"
    );
    // The ones taken open, and room is back for the refused one.
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    let opened = take_outputs(&mut node)
        .into_iter()
        .filter(
            |output| matches!(output, RegionOutput::SessionReply(reply) if reply.result.is_ok()),
        )
        .count();
    assert_eq!(opened as u64, bound);
    node.handle_open_session(now_us, bound + 1, 1_000 + bound + 1);
    node.handle_ready(&mut StoreIo::new(&mut store)).unwrap();
    assert!(take_outputs(&mut node).iter().any(|output| matches!(
        output,
        RegionOutput::SessionReply(SessionReply { open_id, result: Ok(()), .. }) if *open_id == bound + 1
    )));
    assert_eq!(node.region_log().dedup().session_count() as u64, bound + 1);
}

#[test]
fn a_member_behind_the_raft_log_takes_a_snapshot_only_once_it_holds_every_entry() {
    // A log of about 40 MiB above its truncation point (no checkpoint covers it), more than
    // one raft message; the leader keeps only a few raft entries, so a member cut off while
    // it grew catches up by snapshot. The snapshot carries the state; the member fetches the
    // entries in bounded pieces before raft takes it, and then holds the whole log.
    let mut region = Region::new(&[1, 2, 3]);
    for id in [1, 2, 3] {
        let member = region.network.node_mut(id);
        member.config.group.log_retention.entries_max = 8;
        member.node = Some(RegionNode::open(member.config.clone(), &mut member.store).unwrap());
    }
    let leader = region.elect();
    let lagging = region.other_than(leader);
    region.network.isolate(lagging);
    let large = dsss_wire::ARGUMENTS_BYTES_MAX;
    let records = 40;
    for sequence in 1..=records {
        region.propose(leader, call(1, sequence, large));
    }
    for sequence in records + 1..=records + 40 {
        region.propose(leader, call(1, sequence, 16));
    }
    assert_eq!(region.take_replies(leader).len() as u64, 2 * records);
    let log_bytes = region.node(leader).status().log_size_bytes;
    assert!(
        log_bytes > dsss_raft_group::RAFT_MESSAGE_BYTES_MAX as u64,
        "the log ({log_bytes} bytes) is larger than a raft message"
    );
    assert!(region.node(leader).group().first_index() > 2);
    region.network.rejoin(lagging);
    let mut rounds = 0;
    while region.node(lagging).region_log().next_position()
        < region.node(leader).region_log().next_position()
    {
        region.tick(1);
        region.serve_log_fetches();
        rounds += 1;
        assert!(rounds < 2_000, "the lagging member caught up");
    }
    let status = region.node(lagging).status();
    assert!(
        status
            .snapshot_catch_up
            .counters
            .snapshots_taken_after_fetch
            >= 1,
        "{:?}",
        status.snapshot_catch_up
    );
    assert!(status.snapshot_catch_up.counters.entries_fetched >= records);
    assert_eq!(status.snapshot_catch_up.missing, None);
    let lagging_log = region.node(lagging).region_log();
    assert_eq!(lagging_log.truncated_through(), 0);
    assert_eq!(
        lagging_log.first_retained_position(),
        1,
        "the member holds the whole retained log, not the part a message could carry"
    );
    let whole = |region: &Region, id: u64| {
        let member = region.network.node(id);
        member
            .node
            .as_ref()
            .unwrap()
            .region_log()
            .with_every_entry_cached(&member.store)
            .unwrap()
            .cached_records()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(whole(&region, lagging), whole(&region, leader));
    // It holds them in its store: after a restart it still serves every one.
    region.crash(lagging);
    region.restart(lagging);
    assert_eq!(whole(&region, lagging), whole(&region, leader));
}

/// The objects of [`region_with_a_member_behind_checkpoints`]: the first
/// [`LARGE_CHECKPOINTS`] have states of [`LARGE_STATE_BYTES`], the next [`SMALL_CHECKPOINTS`]
/// small ones, and every other small one a record above its checkpoint.
fn checkpointed_object(index: usize) -> ObjectId {
    ObjectId::new(format!("user/{index:04}")).unwrap()
}

const LARGE_CHECKPOINTS: usize = 6;
const SMALL_CHECKPOINTS: usize = 300;
const LARGE_STATE_BYTES: usize = 6 * 1024 * 1024;

/// A region (no global tier, raft logs of 8 entries) whose leader keeps 36 MiB of checkpoint
/// states, more than a raft message, written while one member was cut off: it can catch up
/// only by snapshot. Returns the region, the leader and that member, cut off no longer.
fn region_with_a_member_behind_checkpoints() -> (Region, u64, u64) {
    let mut region = new_region_without_global_tier(&[1, 2, 3]);
    for id in [1, 2, 3] {
        let member = region.network.node_mut(id);
        member.config.group.log_retention.entries_max = 8;
        member.node = Some(RegionNode::open(member.config.clone(), &mut member.store).unwrap());
    }
    let leader = region.elect();
    let lagging = region.other_than(leader);
    region.network.isolate(lagging);
    let object = checkpointed_object;
    let record_of = |index: usize, sequence: u64| ProposeRequest {
        object_id: object(index),
        ..call(1, sequence, 16)
    };
    let all = LARGE_CHECKPOINTS + SMALL_CHECKPOINTS;
    for index in 0..all {
        region.propose(leader, record_of(index, index as u64 + 1));
    }
    assert_eq!(region.take_replies(leader).len(), all);
    for index in 0..all {
        let mut checkpoint = upload(object(index).as_str(), index as u64 + 1, 1, 1);
        if index < LARGE_CHECKPOINTS {
            checkpoint.state = vec![index as u8; LARGE_STATE_BYTES];
        }
        region.upload(leader, index as u64 + 1, checkpoint);
    }
    for index in (LARGE_CHECKPOINTS..all).step_by(2) {
        region.propose(leader, record_of(index, (all + index) as u64));
    }
    let leader_status = region.node(leader).status();
    assert_eq!(leader_status.checkpoints.objects, all as u64);
    assert!(
        leader_status.checkpoints.checkpoint_bytes > dsss_raft_group::RAFT_MESSAGE_BYTES_MAX as u64,
        "{:?}",
        leader_status.checkpoints
    );
    assert!(region.node(leader).group().first_index() > 2);
    region.network.rejoin(lagging);
    (region, leader, lagging)
}

/// Checks that a member serves what the leader does, object by object, without printing
/// states of megabytes.
fn same_checkpoints(
    when: &str,
    on_member: &[dsss_region_node::CheckpointFetch],
    on_leader: &[dsss_region_node::CheckpointFetch],
) {
    let brief = |fetched: &dsss_region_node::CheckpointFetch| {
        (
            fetched
                .checkpoint
                .as_ref()
                .map(|c| (c.position, c.uploaded_position, c.state.len())),
            fetched.truncated_through,
            fetched.released_through,
        )
    };
    assert_eq!(on_member.len(), on_leader.len());
    for (index, (member, leader)) in on_member.iter().zip(on_leader).enumerate() {
        assert!(
            member == leader,
            "{when}: object {index}: {:?} against {:?}",
            brief(member),
            brief(leader)
        );
    }
}

/// What every member serves of every object of [`region_with_a_member_behind_checkpoints`].
fn fetch_every_checkpoint(region: &Region, id: u64) -> Vec<dsss_region_node::CheckpointFetch> {
    let member = region.network.node(id);
    let log = member.node.as_ref().unwrap().region_log();
    (0..LARGE_CHECKPOINTS + SMALL_CHECKPOINTS)
        .map(|index| {
            log.fetch_checkpoint(&member.store, &checkpointed_object(index))
                .unwrap()
        })
        .collect()
}

/// Reference: docs/design.md section 2.8, "Where the checkpoint state lives": the checkpoints
/// a region keeps are bounded by its storage, not by one raft message. A member behind the
/// raft log takes a snapshot whose checkpoint state (here 36 MiB of states, more than a raft
/// message and three times the bound the state had while snapshots carried it) moves in
/// pieces from a view the leader pinned with the snapshot, while the leader moves on.
#[test]
fn a_member_behind_fetches_checkpoint_state_larger_than_a_raft_message_in_pieces() {
    let (mut region, leader, lagging) = region_with_a_member_behind_checkpoints();
    let object = checkpointed_object;
    let record_of = |index: usize, sequence: u64| ProposeRequest {
        object_id: object(index),
        ..call(1, sequence, 16)
    };
    region.network.rejoin(lagging);
    let mut rounds = 0;
    let mut leader_moved_on = false;
    while region.node(lagging).group().applied_index() < region.node(leader).group().applied_index()
    {
        region.tick(1);
        // Once the member fetches state, the leader takes a newer checkpoint of a large
        // object: the pinned view keeps serving the state of the snapshot.
        if !leader_moved_on
            && region
                .node(lagging)
                .status()
                .snapshot_catch_up
                .counters
                .state_pieces_fetched
                > 0
        {
            let last = region.node(leader).region_log().last_position();
            let mut newer = upload(object(0).as_str(), last, 9, 1);
            newer.state = vec![9; 1024];
            region.upload(leader, 10_000, newer);
            leader_moved_on = true;
        }
        region.serve_log_fetches();
        rounds += 1;
        assert!(
            rounds < 2_000,
            "the lagging member caught up: {:?} applied {} of {}",
            region.node(lagging).status().snapshot_catch_up,
            region.node(lagging).group().applied_index(),
            region.node(leader).group().applied_index()
        );
    }
    assert!(leader_moved_on);
    let status = region.node(lagging).status();
    let counters = status.snapshot_catch_up.counters;
    assert!(counters.snapshots_taken_after_fetch >= 1, "{counters:?}");
    // A state larger than a piece's byte bound travels alone in its piece.
    const { assert!(LARGE_STATE_BYTES > STATE_PIECE_BYTES_MAX) };
    assert!(
        counters.state_pieces_fetched > LARGE_CHECKPOINTS as u64,
        "{counters:?}"
    );
    assert!(
        counters.state_bytes_fetched >= (LARGE_CHECKPOINTS * LARGE_STATE_BYTES) as u64,
        "{counters:?}"
    );
    assert_eq!(status.snapshot_catch_up.missing, None);
    assert_eq!(
        region.node(lagging).region_log().checkpoint_space(),
        CheckpointSpace::B,
        "the state was fetched into the space the member did not use"
    );
    let on_leader = fetch_every_checkpoint(&region, leader);
    let state_of = |fetched: &dsss_region_node::CheckpointFetch| {
        let state = &fetched.checkpoint.as_ref().unwrap().state;
        (state.len(), state.first().copied())
    };
    assert_eq!(state_of(&on_leader[0]), (1024, Some(9)));
    assert_eq!(state_of(&on_leader[1]), (LARGE_STATE_BYTES, Some(1)));
    // (Compared without printing: the states are megabytes.)
    let same = |when: &str, on_lagging: Vec<_>| same_checkpoints(when, &on_lagging, &on_leader);
    same("caught up", fetch_every_checkpoint(&region, lagging));
    assert_eq!(
        region.node(lagging).status().checkpoints,
        region.node(leader).status().checkpoints
    );
    // It is all in its store, in the space it switched to: after a crash it comes back at
    // the snapshot or later, replays what it lost, and serves every checkpoint again.
    region.crash(lagging);
    region.restart(lagging);
    assert_eq!(
        region.node(lagging).region_log().checkpoint_space(),
        CheckpointSpace::B
    );
    region.propose(leader, record_of(1, 100_000));
    region.tick(5);
    assert_eq!(
        region.node(lagging).region_log().next_position(),
        region.node(leader).region_log().next_position()
    );
    same("restarted", fetch_every_checkpoint(&region, lagging));
}

/// The sender of a snapshot is killed while a member fetches its checkpoint state: its view
/// is gone with it. The member's pieces from that view stay in the space it does not use, the
/// region goes on under whichever leader, and the member catches up from a later snapshot and
/// serves what the others do.
#[test]
fn a_member_catches_up_when_the_sender_of_its_snapshot_is_killed_mid_transfer() {
    let (mut region, leader, lagging) = region_with_a_member_behind_checkpoints();
    let mut rounds = 0;
    let mut killed = false;
    loop {
        region.tick(1);
        if !killed
            && region
                .node(lagging)
                .status()
                .snapshot_catch_up
                .counters
                .state_pieces_fetched
                > 0
        {
            region.crash(leader);
            region.restart(leader);
            killed = true;
        }
        region.serve_log_fetches();
        rounds += 1;
        let leading = region
            .network
            .ids()
            .into_iter()
            .find(|&id| region.node(id).is_leader());
        if killed
            && let Some(leading) = leading
            && region.node(lagging).group().applied_index()
                >= region.node(leading).group().applied_index()
        {
            break;
        }
        assert!(
            rounds < 3_000,
            "the member caught up: {:?}",
            region.node(lagging).status().snapshot_catch_up
        );
    }
    let status = region.node(lagging).status();
    assert!(
        status
            .snapshot_catch_up
            .counters
            .snapshots_taken_after_fetch
            >= 1,
        "{:?}",
        status.snapshot_catch_up
    );
    let others: Vec<u64> = region
        .network
        .ids()
        .into_iter()
        .filter(|&id| id != lagging)
        .collect();
    for other in others {
        same_checkpoints(
            "after the sender was killed",
            &fetch_every_checkpoint(&region, lagging),
            &fetch_every_checkpoint(&region, other),
        );
    }
}

/// What the driver says of a node an hour ahead of `peers`.
fn an_hour_ahead_of(peers: &[u64], now_us: u64) -> ClockVerdict {
    ClockVerdict::Beyond {
        peers: peers
            .iter()
            .map(|peer| {
                (
                    *peer,
                    ClockSample {
                        offset_us: -3_600_000_000,
                        uncertainty_us: 1_000,
                        taken_at_us: now_us,
                    },
                )
            })
            .collect(),
    }
}

#[test]
fn a_leader_whose_clock_is_off_refuses_calls_hands_leadership_away_and_resumes_within_the_bound() {
    let mut region = Region::new(&[1, 2, 3]);
    let fenced = region.elect();
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&id| id != fenced).collect();
    let now_us = region.now_us();
    let verdict = an_hour_ahead_of(&others, now_us);
    region
        .node_mut(fenced)
        .handle_clock_verdict(&verdict, Vec::new());
    let fence = ClockFence {
        offset_us: 3_600_000_000,
        max_skew_us: dsss_region_node::MAX_CLOCK_SKEW_US_DEFAULT,
        stepped: false,
    };
    assert_eq!(region.node(fenced).status().clock.fenced, Some(fence));
    region.propose(fenced, call(5, 1, 10));
    let refused = region.take_replies(fenced);
    assert_eq!(
        refused,
        vec![Reply::Refused {
            client_id: ClientId(5),
            request_sequence: RequestSequence(1),
            error: ProposeError::ClockFenced(fence),
        }]
    );
    let message = ProposeError::ClockFenced(fence).to_string();
    assert!(
        message.contains("3600000 ms ahead") && message.contains("call another member"),
        "{message}"
    );
    region.node_mut(fenced).handle_open_session(now_us, 77, 77);
    region.network.settle();
    let opens = std::mem::take(&mut region.network.node_mut(fenced).sessions);
    assert_eq!(
        opens
            .iter()
            .map(|reply| reply.result.clone())
            .collect::<Vec<_>>(),
        vec![Err(OpenSessionError::ClockFenced(fence))]
    );
    // The leader hands leadership to a peer within a few ticks, and never takes it back while
    // fenced, whatever happens to the others' elections.
    region.tick(20);
    assert!(!region.node(fenced).is_leader());
    let leader = region.network.elect(3);
    assert!(others.contains(&leader), "leader {leader}");
    region.propose(leader, call(5, 1, 10));
    assert_eq!(region.take_replies(leader), vec![proposed(5, 1, 1)]);
    let other = others.iter().copied().find(|&id| id != leader).unwrap();
    region.crash(leader);
    region.network.isolate(leader);
    region.tick(60);
    assert!(!region.node(fenced).is_leader());
    assert!(
        region.node(other).is_leader(),
        "the peer within the bound leads"
    );
    assert_eq!(region.node(fenced).status().counters.clock_fences, 1);
    // Back within the bound: it takes calls again.
    region
        .node_mut(fenced)
        .handle_clock_verdict(&ClockVerdict::Within, Vec::new());
    assert_eq!(region.node(fenced).clock_fence(), None);
    region.propose(fenced, call(5, 2, 10));
    region.tick(2);
    assert_eq!(region.take_replies(fenced), vec![proposed(5, 2, 2)]);
}

#[test]
fn an_unknown_verdict_does_not_fence() {
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    region
        .node_mut(leader)
        .handle_clock_verdict(&ClockVerdict::Unknown, Vec::new());
    region.propose(leader, call(5, 1, 10));
    assert_eq!(region.take_replies(leader), vec![proposed(5, 1, 1)]);
}

/// A member whose physical clock leapt an hour ahead and back between two ticks, before any
/// verdict could fence it, keeps a hybrid clock an hour ahead (it never moves back): as leader,
/// every record and closed timestamp it stamped would be an hour ahead. It fences itself at the
/// next tick, with no verdict: it refuses calls saying how far ahead it is and does not stand
/// for election when the leader goes away; once its physical clock has caught up, the fence
/// lifts.
#[test]
fn a_node_whose_hybrid_clock_ran_ahead_fences_itself_until_its_clock_catches_up() {
    const HOUR_US: u64 = 3_600_000_000;
    let mut region = Region::new(&[1, 2, 3]);
    let leader = region.elect();
    let leaped = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();
    let other = [1, 2, 3]
        .into_iter()
        .find(|&id| id != leader && id != leaped)
        .unwrap();
    let now_us = region.now_us();
    region.node_mut(leaped).handle_tick(now_us + HOUR_US);
    assert_eq!(
        region.node(leaped).clock_fence(),
        None,
        "no verdict said so yet"
    );
    region.node_mut(leaped).handle_tick(now_us);
    let fence = region
        .node(leaped)
        .clock_fence()
        .expect("the node fenced itself");
    assert!(
        fence.offset_us >= i64::try_from(HOUR_US).unwrap() - 1_000_000 && !fence.stepped,
        "{fence:?}"
    );
    region.propose(leaped, call(5, 1, 10));
    assert_eq!(
        region.take_replies(leaped),
        vec![Reply::Refused {
            client_id: ClientId(5),
            request_sequence: RequestSequence(1),
            error: ProposeError::ClockFenced(fence),
        }]
    );
    // The verdicts stay within the bound throughout: the hybrid clock alone fences it.
    region
        .node_mut(leaped)
        .handle_clock_verdict(&ClockVerdict::Within, Vec::new());
    assert_eq!(region.node(leaped).clock_fence(), Some(fence));
    region.crash(leader);
    region.network.isolate(leader);
    region.tick(60);
    assert!(!region.node(leaped).is_leader());
    assert!(
        region.node(other).is_leader(),
        "the member within the bound leads"
    );
    region.propose(other, call(5, 1, 10));
    assert_eq!(region.take_replies(other), vec![proposed(5, 1, 1)]);
    let caught_up_us = region.now_us() + HOUR_US;
    region.node_mut(leaped).handle_tick(caught_up_us);
    assert_eq!(region.node(leaped).clock_fence(), None);
    assert_eq!(region.node(leaped).status().counters.clock_fences, 1);
}
