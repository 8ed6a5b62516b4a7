//! Scripted scenarios of the regional tier on the simulator, each with real raft-rs members:
//! a leader crash with acknowledged records, a follower far behind that catches up by
//! snapshot, a retry after a leader change applied once, a proposal at a follower, a leader
//! transfer, and region log retention. Every scenario ends with the same checks as the seeded
//! runs. Reference: docs/design.md sections 1 ("exactly once", "durability"), 2 and 6.

use std::collections::BTreeMap;
use std::time::Duration;

use dsss_region_node::{ProposeRequest, RegionLog, Reply};
use dsss_simulations::NodeId;
use dsss_simulations::workloads::region::{RegionCluster, RegionRunSettings, check_logs};
use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, RequestSequence, Scope};

/// A scripted client's id: not a process of the network, so replies reach the test.
const SCRIPTED_CLIENT: u64 = 5_000;

fn call(sequence: u64) -> ProposeRequest {
    ProposeRequest {
        client_id: ClientId(SCRIPTED_CLIENT),
        request_sequence: RequestSequence(sequence),
        object_id: ObjectId::new("scenario/counter").unwrap(),
        method_id: MethodId(2),
        arguments: Arguments::new(sequence.to_be_bytes().to_vec()).unwrap(),
        scope: Scope::Regional,
    }
}

fn cluster(seed: u64, member_count: usize, client_count: usize) -> RegionCluster {
    let mut settings = RegionRunSettings::new(seed, member_count);
    settings.client_count = client_count;
    RegionCluster::new(&settings).expect("valid settings")
}

/// The leader, once elected; the scripted client's session is open by then (opening it again
/// after a leader change is harmless).
fn leader(cluster: &mut RegionCluster) -> NodeId {
    let leader = cluster
        .run_until_leader(Duration::from_secs(5))
        .expect("a leader is elected");
    for _ in 0..200 {
        let mut open = false;
        cluster.command(leader, |node| {
            open = node.region_log().dedup().session(SCRIPTED_CLIENT).is_some();
        });
        if open {
            return leader;
        }
        cluster.open_session_external(leader, SCRIPTED_CLIENT);
        cluster.simulation().run_for(Duration::from_millis(5));
    }
    panic!("the scripted client's session never opened at node {leader}");
}

/// Proposes `sequence` at `member` and runs until its reply arrives (bounded).
fn propose_and_wait(cluster: &mut RegionCluster, member: NodeId, sequence: u64) -> Reply {
    cluster.propose_external(member, call(sequence));
    for _ in 0..200 {
        cluster.simulation().run_for(Duration::from_millis(1));
        let replies = cluster.take_external_replies();
        if let Some((_, reply)) = replies
            .into_iter()
            .find(|(_, reply)| reply.key().1 == RequestSequence(sequence))
        {
            return reply;
        }
    }
    panic!("no reply to sequence {sequence} from node {member}");
}

fn position(reply: &Reply) -> u64 {
    match reply {
        Reply::Proposed { position, .. } => *position,
        Reply::Refused { error, .. } => panic!("refused: {error}"),
    }
}

fn assert_clean(cluster: &RegionCluster) {
    let problems = cluster.check();
    assert!(problems.is_empty(), "{problems:#?}");
}

fn positions_of(cluster: &RegionCluster, member: NodeId, client: u64) -> Vec<(u64, u64)> {
    cluster
        .whole_log(member)
        .expect("the member is up")
        .expect("the member's log reads back whole")
        .cached_records()
        .filter_map(|log_record| {
            let record = log_record.entry.record()?;
            (record.client_id == ClientId(client))
                .then(|| (record.request_sequence.get(), log_record.position))
        })
        .collect()
}

#[test]
fn acknowledged_records_survive_a_leader_crash() {
    let mut cluster = cluster(11, 3, 4);
    let first_leader = leader(&mut cluster);
    cluster.simulation().run_for(Duration::from_millis(500));
    let acknowledged_before = cluster.observer().acknowledged().len();
    assert!(acknowledged_before > 50, "the clients made progress");
    cluster.simulation().crash(first_leader);
    cluster.simulation().run_for(Duration::from_millis(600));
    let second_leader = cluster.leader().expect("the survivors elect a leader");
    assert_ne!(second_leader, first_leader);
    assert!(
        cluster.observer().acknowledged().len() > acknowledged_before,
        "the region kept acknowledging without its old leader"
    );
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    assert_clean(&cluster);
}

#[test]
fn a_follower_far_behind_catches_up_by_snapshot() {
    let mut cluster = cluster(12, 3, 4);
    let first_leader = leader(&mut cluster);
    let lagging = cluster
        .members()
        .iter()
        .copied()
        .find(|&member| member != first_leader)
        .unwrap();
    cluster.simulation().isolate(lagging);
    cluster.simulation().run_for(Duration::from_secs(1));
    let leader_now = cluster.leader().expect("a leader");
    let leader_node = cluster.node(leader_now).unwrap();
    let behind = cluster.node(lagging).unwrap().status().applied_index;
    assert!(
        leader_node.status().first_raft_index > behind + 1,
        "the leader compacted the entries the follower lacks"
    );
    assert_eq!(cluster.observer().snapshots_restored(lagging), 0);
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    assert!(cluster.observer().snapshots_restored(lagging) >= 1);
    assert_clean(&cluster);
}

#[test]
fn a_retry_after_a_leader_change_is_applied_once() {
    let mut cluster = cluster(13, 3, 0);
    let first_leader = leader(&mut cluster);
    let first = position(&propose_and_wait(&mut cluster, first_leader, 1));
    // Sequence 2 is ordered, but its reply is lost with the leader.
    let lost_reply = position(&propose_and_wait(&mut cluster, first_leader, 2));
    cluster.simulation().crash(first_leader);
    let survivor = cluster
        .members()
        .iter()
        .copied()
        .find(|&member| member != first_leader)
        .unwrap();
    let second_leader = leader(&mut cluster);
    assert_ne!(second_leader, first_leader);
    // The client retries the same sequence at another member.
    let retried = position(&propose_and_wait(&mut cluster, survivor, 2));
    assert_eq!(
        retried, lost_reply,
        "the retry gets the first copy's position"
    );
    // Sequence 3 reaches the new leader, which crashes at once; the retry goes elsewhere.
    cluster.propose_external(second_leader, call(3));
    cluster.simulation().run_for(Duration::from_micros(600));
    cluster.simulation().crash(second_leader);
    cluster.simulation().restart(first_leader);
    let third_leader = leader(&mut cluster);
    let third = position(&propose_and_wait(&mut cluster, third_leader, 3));
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    assert_clean(&cluster);
    for &member in cluster.members() {
        assert_eq!(
            positions_of(&cluster, member, SCRIPTED_CLIENT),
            vec![(1, first), (2, lost_reply), (3, third)],
            "node {member} holds each call once"
        );
    }
}

#[test]
fn a_follower_forwards_a_proposal_and_answers_it() {
    let mut cluster = cluster(14, 5, 0);
    let current = leader(&mut cluster);
    // Let every member hear from the leader.
    cluster.simulation().run_for(Duration::from_millis(100));
    let follower = cluster
        .members()
        .iter()
        .copied()
        .find(|&member| member != current)
        .unwrap();
    cluster.propose_external(follower, call(1));
    let mut answered_by = None;
    for _ in 0..100 {
        cluster.simulation().run_for(Duration::from_millis(1));
        if let Some((from, reply)) = cluster.take_external_replies().pop() {
            assert_eq!(position(&reply), 1);
            answered_by = Some(from);
            break;
        }
    }
    assert_eq!(
        answered_by,
        Some(follower),
        "the follower answers its own caller"
    );
    cluster
        .heal_and_converge(Duration::from_secs(5))
        .expect("the region converges");
    for &member in cluster.members() {
        assert_eq!(
            positions_of(&cluster, member, SCRIPTED_CLIENT),
            vec![(1, 1)]
        );
    }
    assert_clean(&cluster);
}

#[test]
fn leadership_moves_on_request() {
    let mut cluster = cluster(15, 5, 2);
    let current = leader(&mut cluster);
    let target = cluster
        .members()
        .iter()
        .copied()
        .rfind(|&member| member != current)
        .unwrap();
    assert!(cluster.transfer_leader(target));
    cluster.simulation().run_for(Duration::from_millis(200));
    assert_eq!(cluster.leader(), Some(target));
    cluster
        .heal_and_converge(Duration::from_secs(5))
        .expect("the region converges");
    assert_clean(&cluster);
}

#[test]
fn a_lagging_member_catches_up_by_snapshot_and_nothing_uncovered_is_dropped() {
    // The region drops log entries only below checkpoints that replicas agreed on; these
    // clients upload none, so every member must keep the whole log, and the member cut off
    // while the leader compacted its raft log catches up from a snapshot that carries it.
    let settings = RegionRunSettings::new(16, 3);
    let mut cluster = RegionCluster::new(&settings).expect("valid settings");
    let first_leader = leader(&mut cluster);
    let lagging = cluster
        .members()
        .iter()
        .copied()
        .find(|&member| member != first_leader)
        .unwrap();
    cluster.simulation().isolate(lagging);
    cluster.simulation().run_for(Duration::from_secs(1));
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    assert!(cluster.observer().snapshots_restored(lagging) >= 1);
    let record_counts: Vec<usize> = cluster
        .members()
        .iter()
        .map(|&member| {
            cluster
                .whole_log(member)
                .unwrap()
                .expect("the member's log reads back whole")
                .cached_records()
                .count()
        })
        .collect();
    for &member in cluster.members() {
        let log = cluster.node(member).unwrap().region_log();
        assert_eq!(
            log.truncated_through(),
            0,
            "node {member} truncated without agreed checkpoints"
        );
        assert_eq!(
            log.first_retained_position(),
            1,
            "node {member} kept its whole log"
        );
    }
    assert!(
        record_counts.windows(2).all(|pair| pair[0] == pair[1]) && record_counts[0] > 0,
        "every member holds the same records: {record_counts:?}"
    );
    assert_clean(&cluster);
}

#[test]
fn members_that_catch_up_by_snapshot_in_turn_each_hold_every_retained_entry() {
    // No checkpoint covers anything, so every entry since position 1 is retained. Each member
    // in turn is cut off while the others move the raft log on, and catches up by snapshot.
    // A snapshot carries no entries: each member fetches the ones it lacks before raft takes
    // the snapshot, so in the end every member holds the whole log, and none was ever
    // counted as caught up without it. (The seeds are ones where every member's turn needs a
    // snapshot; in some, such as 32, a member's turn ends while the leader still holds the
    // entries it lacks, and it catches up by appends instead.)
    for seed in [31, 33, 34] {
        let mut settings = RegionRunSettings::new(seed, 3);
        // The clients call through every member's turn.
        settings.fault_window = Duration::from_secs(10);
        let mut cluster = RegionCluster::new(&settings).expect("valid settings");
        leader(&mut cluster);
        let members = cluster.members().to_vec();
        for &member in &members {
            cluster.simulation().isolate(member);
            cluster.simulation().run_for(Duration::from_secs(1));
            cluster
                .heal_and_converge(Duration::from_secs(10))
                .unwrap_or_else(|problem| panic!("seed {seed}: {problem}"));
            assert!(
                cluster.observer().snapshots_restored(member) >= 1,
                "seed {seed}: node {member} caught up by snapshot"
            );
            let status = cluster.node(member).unwrap().status();
            assert!(
                status
                    .snapshot_catch_up
                    .counters
                    .snapshots_taken_after_fetch
                    >= 1,
                "seed {seed}: node {member} fetched the entries its snapshot stands on: {:?}",
                status.snapshot_catch_up
            );
            // The records' objects have no checkpoint: they are tracked as uncovered, and that
            // state travels apart from the snapshot too, from the view its sender pinned.
            assert!(
                status.checkpoints.uncovered_objects > 0
                    && status.snapshot_catch_up.counters.state_pieces_fetched >= 1,
                "seed {seed}: node {member} fetched the checkpoint state: {:?} {:?}",
                status.checkpoints,
                status.snapshot_catch_up
            );
        }
        let checkpoint_states: Vec<_> = members
            .iter()
            .map(|&member| cluster.node(member).unwrap().status().checkpoints)
            .collect();
        assert!(
            checkpoint_states.windows(2).all(|pair| pair[0] == pair[1]),
            "seed {seed}: every member tracks the same objects: {checkpoint_states:?}"
        );
        let mut whole_logs = Vec::new();
        for &member in &members {
            let log = cluster.node(member).unwrap().region_log();
            assert_eq!(log.truncated_through(), 0, "seed {seed}");
            assert_eq!(
                log.first_retained_position(),
                1,
                "seed {seed}: node {member} holds the whole retained log"
            );
            let whole = cluster
                .whole_log(member)
                .unwrap()
                .unwrap_or_else(|error| panic!("seed {seed}: node {member}: {error}"));
            whole_logs.push(whole.cached_records().cloned().collect::<Vec<_>>());
        }
        assert!(
            whole_logs[0].len() > 100,
            "seed {seed}: the clients made progress"
        );
        assert!(
            whole_logs.windows(2).all(|pair| pair[0] == pair[1]),
            "seed {seed}: every member holds the same entries"
        );
        let problems = cluster.check();
        assert!(problems.is_empty(), "seed {seed}: {problems:#?}");
    }
}

/// Runs `change` on the current leader and returns what it answered.
fn change_membership(
    cluster: &mut RegionCluster,
    change: impl FnOnce(&mut dsss_region_node::RegionNode) -> Result<(), dsss_raft_group::ProposeError>,
) {
    let current = leader(cluster);
    let mut outcome = None;
    cluster.command(current, |node| outcome = Some(change(node)));
    outcome
        .expect("the leader is up")
        .expect("the leader takes the change");
}

#[test]
fn a_new_member_joins_as_learner_then_votes_and_an_old_one_leaves() {
    let mut settings = RegionRunSettings::new(17, 3);
    settings.spare_count = 1;
    let mut cluster = RegionCluster::new(&settings).expect("valid settings");
    leader(&mut cluster);
    cluster.simulation().run_for(Duration::from_millis(300));
    let joining = cluster.spares()[0];
    assert!(
        cluster.node(joining).unwrap().status().voters.is_empty(),
        "a spare starts outside the group"
    );

    change_membership(&mut cluster, |node| node.add_learner(joining));
    cluster.simulation().run_for(Duration::from_millis(300));
    let status = cluster.node(joining).unwrap().status();
    assert_eq!(status.learners, vec![joining]);
    assert_eq!(status.voters, vec![1, 2, 3]);
    assert!(
        cluster.observer().snapshots_restored(joining) >= 1,
        "the learner caught up by snapshot, which carries the membership"
    );
    assert!(status.next_position > 50, "the learner holds the log");

    change_membership(&mut cluster, |node| node.promote_member(joining));
    cluster.simulation().run_for(Duration::from_millis(200));
    let current = leader(&mut cluster);
    assert_eq!(
        cluster.node(current).unwrap().status().voters,
        vec![1, 2, 3, joining]
    );

    let leaving = [1, 2, 3]
        .into_iter()
        .find(|&member| member != current)
        .unwrap();
    change_membership(&mut cluster, |node| node.remove_member(leaving));
    cluster.simulation().run_for(Duration::from_millis(200));
    let mut remaining: Vec<NodeId> = vec![1, 2, 3, joining];
    remaining.retain(|&member| member != leaving);
    let current = leader(&mut cluster);
    assert_eq!(cluster.node(current).unwrap().status().voters, remaining);
    // The removed member is switched off for good; the group goes on without it.
    cluster.simulation().crash(leaving);
    cluster.set_members(remaining);
    cluster.simulation().run_for(Duration::from_millis(500));
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    assert_clean(&cluster);
}

/// A call acknowledged just before every member restarts is in no member's applied log at
/// first: the restarted members know only the commit index they had persisted, and the entry
/// is committed again, and applied, only once the new leader commits an entry of its own
/// term. The region must not count as converged before that, or the final check would read
/// logs that lack an acknowledged record which is in fact safe in every raft log.
#[test]
fn a_region_restarted_right_after_an_acknowledgement_converges_only_once_it_is_applied() {
    let mut cluster = cluster(7, 3, 0);
    let leader = leader(&mut cluster);
    cluster.simulation().run_for(Duration::from_millis(100));
    // Event by event up to the reply, so that nothing else is proposed meanwhile.
    cluster.propose_external(leader, call(1));
    let mut reply = None;
    for _ in 0..10_000 {
        assert!(cluster.simulation().step(), "the simulation ran dry");
        if let Some((_, found)) = cluster.take_external_replies().into_iter().next() {
            reply = Some(found);
            break;
        }
    }
    let acknowledged = position(&reply.expect("the call is answered"));
    // The followers learn that the entry is committed, and keep that only in writes a crash
    // loses (restarting at once would let them learn it again from messages still in flight,
    // and the new leader would commit it by vote).
    cluster.simulation().run_for(Duration::from_millis(1));
    cluster.heal(true);
    let applied_everywhere = |cluster: &RegionCluster| {
        cluster.members().iter().all(|&member| {
            cluster
                .node(member)
                .is_some_and(|node| node.region_log().next_position() > acknowledged)
        })
    };
    assert!(
        !applied_everywhere(&cluster),
        "the scenario needs a restart that leaves the acknowledged record unapplied"
    );
    // The first instant the region counts as converged, event by event.
    for _ in 0..100_000 {
        if cluster.is_converged() {
            break;
        }
        assert!(cluster.simulation().step(), "the simulation ran dry");
    }
    assert!(cluster.is_converged(), "the region converges");
    assert!(
        applied_everywhere(&cluster),
        "converged before every member applied the record acknowledged at {acknowledged}"
    );
    assert_eq!(
        positions_of(&cluster, leader, SCRIPTED_CLIENT),
        vec![(1, acknowledged)]
    );
    assert_clean(&cluster);
}

/// The final check fails when an acknowledged record is truly lost: acknowledged at a position
/// the logs never reached, or at one that holds another record. The logs are a real region's;
/// the acknowledgements are made by hand, as a region that lost the records would have given.
#[test]
fn the_final_check_reports_acknowledged_records_the_logs_lack() {
    let mut cluster = cluster(3, 3, 0);
    let leader = leader(&mut cluster);
    let held = position(&propose_and_wait(&mut cluster, leader, 1));
    cluster
        .heal_and_converge(Duration::from_secs(10))
        .expect("the region converges");
    let logs: BTreeMap<NodeId, &RegionLog> = cluster
        .members()
        .iter()
        .map(|&member| (member, cluster.node(member).unwrap().region_log()))
        .collect();
    let next_position = logs[&leader].next_position();

    let truthful = BTreeMap::from([((SCRIPTED_CLIENT, 1), held)]);
    assert_eq!(check_logs(&logs, &truthful), Vec::<String>::new());

    let beyond = BTreeMap::from([
        ((SCRIPTED_CLIENT, 1), held),
        ((SCRIPTED_CLIENT, 2), next_position),
    ]);
    let problems = check_logs(&logs, &beyond);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems.iter().all(|problem| problem.contains(&format!(
            "acknowledged c{SCRIPTED_CLIENT} s2 at position {next_position} is beyond its log"
        ))),
        "{problems:#?}"
    );

    let elsewhere = BTreeMap::from([((SCRIPTED_CLIENT, 2), held)]);
    let problems = check_logs(&logs, &elsewhere);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems.iter().all(|problem| problem.contains(&format!(
            "position {held} holds Some(({SCRIPTED_CLIENT}, 1)) (client, sequence), but \
             c{SCRIPTED_CLIENT} s2 was acknowledged there"
        ))),
        "{problems:#?}"
    );
}

/// The leader's machine clock steps an hour ahead while clients call. Over many seeds: the
/// members measure it from the probes on raft traffic, it fences itself within a few seconds,
/// hands leadership away and never takes it back while fenced (checked every 50 ms, also
/// after the new leader crashes), calls at the others commit, calls at it are refused naming
/// its clock, and once its clock steps back it takes calls again; every check still holds.
#[test]
fn a_leader_whose_clock_steps_an_hour_ahead_fences_itself_until_it_steps_back() {
    const HOUR_US: i64 = 3_600_000_000;
    for seed in 0..12 {
        let mut cluster = cluster(100 + seed, 5, 2);
        let skewed = leader(&mut cluster);
        cluster.simulation().set_clock_skew_us(skewed, HOUR_US);
        let mut fenced_after = None;
        for step in 0..200 {
            cluster.simulation().run_for(Duration::from_millis(50));
            if cluster
                .node(skewed)
                .is_some_and(|node| node.clock_fence().is_some())
            {
                fenced_after = Some(step);
                break;
            }
        }
        assert!(
            fenced_after.is_some(),
            "seed {seed}: node {skewed} never fenced"
        );
        let fence = cluster.node(skewed).and_then(|node| node.clock_fence());
        assert!(
            fence.is_some_and(|fence| fence.offset_us.abs_diff(HOUR_US) < 1_000_000),
            "seed {seed}: {fence:?}"
        );
        let mut others_lead = None;
        for _ in 0..100 {
            cluster.simulation().run_for(Duration::from_millis(50));
            let now = cluster.leader();
            if now.is_some() && now != Some(skewed) {
                others_lead = now;
                break;
            }
        }
        let new_leader = others_lead.unwrap_or_else(|| panic!("seed {seed}: leadership stayed"));
        let committed = propose_and_wait(&mut cluster, new_leader, 1);
        assert!(
            matches!(committed, Reply::Proposed { .. }),
            "seed {seed}: {committed:?}"
        );
        match propose_and_wait(&mut cluster, skewed, 2) {
            Reply::Refused { error, .. } => assert!(
                error.to_string().contains("ms ahead"),
                "seed {seed}: {error}"
            ),
            other => panic!("seed {seed}: the fenced node took a call: {other:?}"),
        }
        cluster.simulation().crash(new_leader);
        for _ in 0..60 {
            cluster.simulation().run_for(Duration::from_millis(50));
            assert_ne!(
                cluster.leader(),
                Some(skewed),
                "seed {seed}: the fenced node leads"
            );
        }
        cluster.simulation().restart(new_leader);
        cluster.simulation().set_clock_skew_us(skewed, 0);
        let mut resumed = false;
        for _ in 0..200 {
            cluster.simulation().run_for(Duration::from_millis(50));
            if cluster
                .node(skewed)
                .is_some_and(|node| node.clock_fence().is_none())
            {
                resumed = true;
                break;
            }
        }
        assert!(
            resumed,
            "seed {seed}: node {skewed} stayed fenced with its clock back"
        );
        assert!(cluster.observer().clock_fences >= 1);
        cluster
            .heal_and_converge(Duration::from_secs(10))
            .unwrap_or_else(|problem| panic!("seed {seed}: {problem}"));
        let problems = cluster.check();
        assert!(problems.is_empty(), "seed {seed}: {problems:#?}");
    }
}
