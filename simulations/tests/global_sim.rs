//! The global tier in the simulator: every region's raft group and the coordinator's raft
//! group, the real sans-IO code on the simulation kernel, under faults drawn from many seeds
//! (docs/design.md sections 2 and 6). Replay a failing seed with `DSSS_SEED=S`.

use std::cell::Cell;
use std::time::Duration;

use dsss_region_node::RegionStatus;
use dsss_simulations::workloads::global::{
    GlobalCluster, GlobalFaultPlan, GlobalRunSettings, run_global, run_global_traced,
};
use dsss_simulations::{SimTime, assert_deterministic, run_seeds};
use dsss_topology::Topology;
use dsss_wire::Scope;

fn local_topology() -> Topology {
    dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .expect("the embedded topology is valid")
}

fn global_topology() -> Topology {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/examples/global.toml"
    );
    dsss_topology::load(std::path::Path::new(path)).expect("the global example is valid")
}

fn suspicion(topology: &Topology) -> Duration {
    Duration::from_micros(topology.cluster.suspicion_timeout_us)
}

fn epoch(topology: &Topology) -> Duration {
    Duration::from_micros(topology.cluster.epoch_us)
}

fn d_max(topology: &Topology) -> Duration {
    Duration::from_micros(topology.latency.d_max_us())
}

fn at(duration: Duration) -> SimTime {
    SimTime::ZERO.saturating_add(duration)
}

#[test]
fn a_fault_free_local_cluster_seals_every_call_in_one_order() {
    let settings = GlobalRunSettings::new(1, local_topology());
    let report = run_global(&settings).expect("valid settings");
    assert!(report.passed(), "{report}");
    assert!(report.acknowledged_global > 100, "{report}");
    assert!(report.acknowledged_regional > 20, "{report}");
    assert_eq!(report.latency.len(), 3, "every region measured: {report}");
    assert_eq!(
        report.incarnations_max, 1,
        "no region was suspected: {report}"
    );
}

#[test]
fn a_fault_free_global_cluster_seals_every_call_in_one_order() {
    let settings = GlobalRunSettings::new(1, global_topology());
    let report = run_global(&settings).expect("valid settings");
    assert!(report.passed(), "{report}");
    assert_eq!(report.latency.len(), 6, "every region measured: {report}");
    assert_eq!(
        report.incarnations_max, 1,
        "no region was suspected: {report}"
    );
}

/// Runs `seeds` seeds of `topology` under the standard faults; every run must pass, and
/// together they must have exercised every kind of fault the global tier handles.
fn faulty_runs(name: &str, topology: &Topology, seeds: u64) {
    let readmissions = Cell::new(0_u64);
    let coordinator_leader_crashes = Cell::new(0_u32);
    let long_partitions = Cell::new(0_u32);
    let retries = Cell::new(0_u64);
    let duplicates = Cell::new(0_u64);
    run_seeds(name, seeds, |seed| {
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.faults = GlobalFaultPlan::standard(suspicion(topology));
        let report = run_global(&settings).expect("valid settings");
        assert!(report.passed(), "{report}");
        readmissions.set(readmissions.get() + report.incarnations_max.saturating_sub(1));
        coordinator_leader_crashes
            .set(coordinator_leader_crashes.get() + report.faults.coordinator_leader_crashes);
        long_partitions.set(long_partitions.get() + report.faults.long_region_partitions);
        retries.set(retries.get() + report.retries);
        duplicates.set(duplicates.get() + report.deliberate_duplicates);
    });
    // Coverage: with the default seed count, the faults that matter did happen.
    if std::env::var("DSSS_SEED").is_err() {
        assert!(
            readmissions.get() > 0,
            "no region was removed and readmitted"
        );
        assert!(
            coordinator_leader_crashes.get() > 0,
            "no coordinator leader crashed"
        );
        assert!(
            long_partitions.get() > 0,
            "no partition outlasted the suspicion timeout"
        );
        assert!(retries.get() > 0, "no client retried");
        assert!(duplicates.get() > 0, "no call was sent twice");
    }
}

#[test]
fn local_clusters_under_faults_keep_one_order_and_lose_nothing() {
    faulty_runs("global_local_faults", &local_topology(), 200);
}

#[test]
fn global_clusters_under_faults_keep_one_order_and_lose_nothing() {
    faulty_runs("global_global_faults", &global_topology(), 200);
}

#[test]
fn a_seed_replays_the_same_run() {
    assert_deterministic("global_determinism", 7, |seed| {
        let topology = local_topology();
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.faults = GlobalFaultPlan::standard(suspicion(&topology));
        settings.fault_window = Duration::from_secs(2);
        settings.keep_trace_lines = true;
        run_global_traced(&settings).expect("valid settings").1
    });
}

/// A region that reads released epochs back from another region's log does so the same way on
/// every replay of a seed: when to read, from whom, and how the parts go into raft are decided
/// by the sans-IO nodes alone.
#[test]
fn a_catch_up_replays_the_same_run() {
    assert_deterministic("global_catch_up_determinism", 3, |seed| {
        let topology = local_topology();
        let cut = Duration::from_secs(20);
        let cut_at = at(Duration::from_secs(2));
        let mut settings = GlobalRunSettings::new(seed, topology);
        settings.fault_window = cut + Duration::from_secs(4);
        settings.coordinator_limits.retained_epochs_max = 16;
        settings.keep_trace_lines = true;
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        cluster.simulation().run_until(cut_at);
        let cut_region = cluster
            .simulation()
            .network()
            .config()
            .region_named("local-b")
            .expect("the region is simulated");
        cluster.simulation().isolate_region(cut_region);
        cluster.simulation().run_until(cut_at.saturating_add(cut));
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
        let caught_up = total(&cluster.member_statuses("local-b"), |status| {
            status.counters.epoch_parts_caught_up
        });
        assert!(caught_up > 0, "seed {seed}: no epoch was read back");
        cluster.simulation().trace().clone()
    });
}

/// With one region cut off, global calls from the other regions complete within the
/// suspicion timeout plus a few epochs and round trips, and keep completing; after the heal
/// the cut-off region is readmitted and everything converges.
#[test]
fn with_one_region_cut_off_the_others_keep_completing_global_writes() {
    run_seeds("global_region_cut_off", 6, |seed| {
        let topology = local_topology();
        let regions: Vec<String> = topology
            .regions
            .iter()
            .map(|region| region.id.clone())
            .collect();
        let cut_region = regions[(seed % regions.len() as u64) as usize].clone();
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.fault_window = Duration::from_secs(9);
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        let cut_at = at(Duration::from_secs(1));
        cluster.simulation().run_until(cut_at);
        let simulated_region = cluster
            .simulation()
            .network()
            .config()
            .region_named(&cut_region)
            .expect("the region is simulated");
        cluster.simulation().isolate_region(simulated_region);
        let cut_until = at(Duration::from_secs(7));
        cluster.simulation().run_until(cut_until);

        // The suspicion timeout runs from the last closed timestamp the coordinator leader
        // took, or from its election when the cut took the leader away; then the removal is
        // replicated and sealed, and the epoch travels to the regions.
        // raft-rs draws an election timeout in [timeout, 2 * timeout).
        let coordinator = dsss_global_coordinator::CoordinatorConfig::from_topology(
            &topology,
            topology.coordinator.replicas[0],
        )
        .expect("a valid coordinator configuration");
        let election = epoch(&topology).saturating_mul(2 * coordinator.election_tick as u32);
        let slack = epoch(&topology).saturating_mul(10) + d_max(&topology).saturating_mul(6);
        // A call from another region completes within `slack` of the later of its start
        // and the moment the removal can have happened, and calls keep completing.
        let writes_resume_by = cut_at.saturating_add(suspicion(&topology) + election);
        let observer = cluster.observer();
        let mut completed = Vec::new();
        for call in observer.calls().values() {
            if call.region == cut_region || call.scope != Scope::Global || call.invoked_at < cut_at
            {
                continue;
            }
            let due = call.invoked_at.max(writes_resume_by).saturating_add(slack);
            if due > cut_until {
                continue;
            }
            let acknowledged = call.acknowledged_at.unwrap_or_else(|| {
                panic!(
                    "seed {seed}: a call from {} started at {} never completed ({cut_region} cut \
                     off)",
                    call.region, call.invoked_at
                )
            });
            assert!(
                acknowledged <= due,
                "seed {seed}: a call from {} started at {} completed at {acknowledged}, after \
                 {due} ({cut_region} cut off)",
                call.region,
                call.invoked_at
            );
            completed.push(acknowledged);
        }
        let mut window_start = writes_resume_by.saturating_add(slack);
        while window_start.saturating_add(Duration::from_secs(1)) <= cut_until {
            let window_end = window_start.saturating_add(Duration::from_secs(1));
            let in_window = completed
                .iter()
                .filter(|&&time| time >= window_start && time < window_end)
                .count();
            assert!(
                in_window > 0,
                "seed {seed}: no global call completed in [{window_start}, {window_end}) with \
                 {cut_region} cut off"
            );
            window_start = window_end;
        }
        drop(observer);
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    });
}

/// With every coordinator replica crashed (nodes 11, 21 and 31, which also serve their
/// regions) for two seconds, a region node whose batch or sealed-epoch read is refused sends it
/// on to the next replica at once at most `COORDINATOR_ATTEMPTS_MAX - 1` times since the last
/// answer, as a production call makes at most that many attempts; every later refusal is left
/// to the resend timers, so a coordinator that is down everywhere is not called in a loop of
/// refusals. Once the replicas restart, global calls complete again and every check passes.
#[test]
fn refused_calls_to_a_coordinator_down_everywhere_stop_at_the_attempt_bound() {
    run_seeds("global_refusal_bound", 2, |seed| {
        let topology = local_topology();
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.fault_window = Duration::from_secs(6);
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        let crash_at = at(Duration::from_secs(1));
        cluster.simulation().run_until(crash_at);
        let replicas = topology.coordinator.replicas.clone();
        for &replica in &replicas {
            assert!(
                cluster.simulation().crash(replica),
                "seed {seed}: {replica} was up"
            );
        }
        let restart_at = at(Duration::from_secs(3));
        cluster.simulation().run_until(restart_at);
        let survivors: Vec<u64> = topology
            .regions
            .iter()
            .flat_map(|region| region.nodes.iter().map(|node| node.id))
            .filter(|node| !replicas.contains(node))
            .collect();
        let mut left_to_timers = 0;
        for &node in &survivors {
            let counts = cluster.refusal_counts(node).expect("the node is up");
            // Nothing was refused before the crash, and no replica answered since.
            assert!(
                counts.resent_to_coordinator
                    <= (dsss_region_node::global::COORDINATOR_ATTEMPTS_MAX - 1) as u64,
                "seed {seed}: node {node} resent {counts:?}"
            );
            left_to_timers += counts.left_to_timers;
        }
        assert!(
            left_to_timers > 0,
            "seed {seed}: no refusal reached the attempt bound in two seconds"
        );
        for &replica in &replicas {
            assert!(
                cluster.simulation().restart(replica),
                "seed {seed}: {replica} was down"
            );
        }
        let resumed_by = at(Duration::from_secs(5));
        cluster.simulation().run_until(at(settings.fault_window));
        let observer = cluster.observer();
        for region in &topology.regions {
            assert!(
                observer
                    .calls()
                    .values()
                    .any(|call| call.region == region.id
                        && call.scope == Scope::Global
                        && call.invoked_at >= restart_at
                        && call
                            .acknowledged_at
                            .is_some_and(|acknowledged| acknowledged <= resumed_by)),
                "seed {seed}: no global call of {} completed within 2 s of the restart",
                region.id
            );
        }
        drop(observer);
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    });
}

/// With every node of local-b crashed for two seconds, a coordinator replica whose epoch part
/// to local-b is refused sends it on to the region's next node at once at most
/// `REGION_DELIVERY_ATTEMPTS_MAX - 1` times since the region last answered; every later refusal
/// is left to the resend timer. Once local-b restarts, it catches up and every check passes.
#[test]
fn refused_epoch_deliveries_to_a_region_down_everywhere_stop_at_the_attempt_bound() {
    run_seeds("global_delivery_refusal_bound", 2, |seed| {
        let topology = local_topology();
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.fault_window = Duration::from_secs(6);
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        cluster.simulation().run_until(at(Duration::from_secs(1)));
        let region = topology
            .regions
            .iter()
            .find(|region| region.id == "local-b")
            .expect("local.toml has local-b");
        let down: Vec<u64> = region.nodes.iter().map(|node| node.id).collect();
        for &node in &down {
            assert!(
                cluster.simulation().crash(node),
                "seed {seed}: {node} was up"
            );
        }
        cluster.simulation().run_until(at(Duration::from_secs(3)));
        let mut left_to_timers = 0;
        for &replica in &topology.coordinator.replicas {
            if down.contains(&replica) {
                continue;
            }
            let counts = cluster.refusal_counts(replica).expect("the replica is up");
            assert!(
                counts.resent_to_regions
                    <= (dsss_global_coordinator::REGION_DELIVERY_ATTEMPTS_MAX - 1) as u64,
                "seed {seed}: replica {replica} resent {counts:?}"
            );
            left_to_timers += counts.left_to_timers;
        }
        assert!(
            left_to_timers > 0,
            "seed {seed}: no refused delivery reached the attempt bound in two seconds"
        );
        for &node in &down {
            assert!(
                cluster.simulation().restart(node),
                "seed {seed}: {node} was down"
            );
        }
        cluster.simulation().run_until(at(settings.fault_window));
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    });
}

/// Clock skew on a ladder around the topology's 250 ms bound: within the bound nothing is
/// refused and every call completes; beyond it, the skewed region's messages are refused and
/// counted, the other regions keep writing, and safety holds throughout.
#[test]
fn clock_skew_on_a_ladder_around_the_bound() {
    let topology = local_topology();
    assert_eq!(topology.cluster.max_clock_skew_us, 250_000);
    for skew_ms in [100_i64, 200, 250, 500, 5_000] {
        let mut settings = GlobalRunSettings::new(3, topology.clone());
        settings.fault_window = Duration::from_secs(6);
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        let skewed_region = topology.regions[2].clone();
        for node in &skewed_region.nodes {
            cluster
                .simulation()
                .set_clock_skew_us(node.id, skew_ms * 1_000);
        }
        cluster.simulation().run_until(at(settings.fault_window));
        let refused: u64 = cluster
            .nodes()
            .into_iter()
            .filter_map(|node| cluster.coordinator(node))
            .map(|coordinator| coordinator.status().counters.refused_for_skew)
            .sum();
        let completed_elsewhere = cluster
            .observer()
            .calls()
            .values()
            .filter(|call| {
                call.scope == Scope::Global
                    && call.region != skewed_region.id
                    && call.invoked_at >= at(Duration::from_secs(4))
                    && call.acknowledged_at.is_some()
            })
            .count();
        if skew_ms * 1_000 <= topology.cluster.max_clock_skew_us as i64 {
            assert_eq!(refused, 0, "skew {skew_ms} ms: nothing may be refused");
        } else {
            assert!(
                refused > 0,
                "skew {skew_ms} ms: the skewed region must be refused"
            );
        }
        assert!(
            completed_elsewhere > 0,
            "skew {skew_ms} ms: the other regions must keep writing"
        );
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "skew {skew_ms} ms: {problems:?}");
    }
}

/// A coordinator leader and a region leader whose clocks leap an hour ahead (a bad NTP step)
/// find it from the probes their raft messages carry: each fences itself (stops leading,
/// stamps nothing, stands for no election) while every region keeps completing global calls;
/// once their clocks are right again the cluster converges with nothing lost
/// (docs/design.md section 2.6).
#[test]
fn nodes_whose_clocks_leap_an_hour_fence_themselves_while_every_region_keeps_writing() {
    const HOUR_US: i64 = 3_600_000_000;
    let topology = local_topology();
    for seed in 0..3 {
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.fault_window = Duration::from_secs(16);
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        let leap_at = at(Duration::from_secs(4));
        cluster.simulation().run_until(leap_at);
        let leader_of = |cluster: &GlobalCluster, members: &[u64]| {
            members.iter().copied().find(|&node| {
                cluster
                    .region_node(node)
                    .is_some_and(|region| region.is_leader())
            })
        };
        let coordinator_leader = cluster
            .nodes()
            .into_iter()
            .find(|&node| cluster.coordinator(node).is_some_and(|c| c.is_leader()))
            .unwrap_or_else(|| panic!("seed {seed}: no coordinator leader at 4 s"));
        // A region leader that hosts no coordinator replica, so that the replicas' majority
        // keeps its clock; when every leader hosts one, a follower of another region.
        let replicas = &topology.coordinator.replicas;
        let region_members = |index: usize| -> Vec<u64> {
            topology.regions[index]
                .nodes
                .iter()
                .map(|node| node.id)
                .collect()
        };
        let leapt_region = (0..topology.regions.len())
            .map(region_members)
            .find(|members| {
                leader_of(&cluster, members).is_some_and(|leader| {
                    !replicas.contains(&leader) && !members.contains(&coordinator_leader)
                })
            });
        let (region_b, region_leader, was_leader) = match leapt_region {
            Some(members) => {
                let leader = leader_of(&cluster, &members).expect("found above");
                (members, leader, true)
            }
            None => {
                let members = (0..topology.regions.len())
                    .map(region_members)
                    .find(|members| !members.contains(&coordinator_leader))
                    .expect("a region without the coordinator leader");
                let follower = members
                    .iter()
                    .copied()
                    .find(|node| !replicas.contains(node))
                    .expect("a node without a replica");
                (members, follower, false)
            }
        };
        let leapt = [coordinator_leader, region_leader];
        for node in leapt {
            cluster.simulation().set_clock_skew_us(node, HOUR_US);
        }
        cluster.simulation().run_until(at(Duration::from_secs(12)));
        let fences = cluster.observer().clock_fences;
        assert!(
            fences >= 2,
            "seed {seed}: {fences} fences for two clocks an hour ahead"
        );
        assert!(
            !cluster
                .coordinator(coordinator_leader)
                .is_some_and(|coordinator| coordinator.is_leader()),
            "seed {seed}: the leapt coordinator replica {coordinator_leader} still leads"
        );
        let fenced = cluster
            .region_node(region_leader)
            .and_then(|region| region.clock_fence());
        assert!(
            fenced.is_some(),
            "seed {seed}: region node {region_leader} is not fenced"
        );
        assert!(
            leader_of(&cluster, &region_b).is_some_and(|leader| leader != region_leader),
            "seed {seed}: the region of {region_leader} (its leader: {was_leader}) has no other \
             leader"
        );
        for region in &topology.regions {
            let completed = cluster
                .observer()
                .calls()
                .values()
                .filter(|call| {
                    call.scope == Scope::Global
                        && call.region == region.id
                        && call.invoked_at >= at(Duration::from_secs(8))
                        && call.acknowledged_at.is_some()
                })
                .count();
            assert!(
                completed > 0,
                "seed {seed}: region {} completed no global call while the clocks were off",
                region.id
            );
        }
        for node in leapt {
            cluster.simulation().set_clock_skew_us(node, 0);
        }
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    }
}

/// Regions are cut off, one after another and again, each time for longer than the
/// suspicion timeout, with its clocks behind the others' (within the skew bound), while every
/// region keeps making global calls: each cut region is removed and readmitted, and after the
/// heal every region holds the same global sequence with every acknowledged call in it and
/// no region holds an unsealed call (docs/global-protocol.md sections 3 and 6). After a
/// readmission the coordinator holds the region's closed timestamp at the watermark, above
/// the closed timestamps of the region's next batches: those batches must still reach it.
#[test]
fn repeated_suspicion_and_readmission_lose_no_global_call() {
    const CYCLES: u64 = 4;
    run_seeds("global_readmission_cycles", 8, |seed| {
        let topology = local_topology();
        let regions: Vec<String> = topology
            .regions
            .iter()
            .map(|region| region.id.clone())
            .collect();
        let skew_us = -(topology.cluster.max_clock_skew_us as i64) * 4 / 5;
        let cut = suspicion(&topology) + Duration::from_millis(1_500);
        let between = Duration::from_millis(1_500);
        let mut settings = GlobalRunSettings::new(seed, topology.clone());
        settings.fault_window = (cut + between).saturating_mul(CYCLES as u32) + between;
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        cluster.simulation().run_for(between);
        let mut readmitted = 0;
        for cycle in 0..CYCLES {
            let name = regions[((seed + cycle) % regions.len() as u64) as usize].clone();
            let members = cluster.members_of(&name);
            let incarnation_before = most(&cluster.member_statuses(&name), |status| {
                status.global.incarnation
            });
            let simulated_region = cluster
                .simulation()
                .network()
                .config()
                .region_named(&name)
                .expect("the region is simulated");
            for &node in &members {
                cluster.simulation().set_clock_skew_us(node, skew_us);
            }
            cluster.simulation().isolate_region(simulated_region);
            cluster.simulation().run_for(cut);
            cluster.simulation().heal_all();
            cluster.simulation().run_for(between);
            for &node in &members {
                cluster.simulation().set_clock_skew_us(node, 0);
            }
            let incarnation_after = most(&cluster.member_statuses(&name), |status| {
                status.global.incarnation
            });
            if incarnation_after > incarnation_before {
                readmitted += 1;
            }
        }
        assert!(
            readmitted > 0,
            "seed {seed}: no cut region was removed: {}",
            cluster.describe()
        );
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    });
}

/// A cluster cut short of one region: the run the cut tests share.
struct CutRun {
    cluster: GlobalCluster,
    settings: GlobalRunSettings,
    cut_region: String,
    cut_at: SimTime,
    cut_until: SimTime,
}

/// Runs a cluster on `topology` under the usual faults (but no partition or pause of their
/// own: the cut is the test's) with the coordinator retaining `retained_epochs`, cuts the
/// seed's region off from the others at 2 s and runs on through `cut`.
/// The region a seed cuts off: the topology's regions in turn.
fn region_of_seed(seed: u64, topology: &Topology) -> String {
    let index = (seed % topology.regions.len() as u64) as usize;
    topology.regions[index].id.clone()
}

fn cut_off_under_faults(
    seed: u64,
    topology: &Topology,
    cut: Duration,
    retained_epochs: usize,
) -> CutRun {
    let cut_region = region_of_seed(seed, topology);
    let cut_at = at(Duration::from_secs(2));
    let cut_until = cut_at.saturating_add(cut);
    let mut settings = GlobalRunSettings::new(seed, topology.clone());
    settings.fault_window = cut + Duration::from_secs(6);
    let mut faults = GlobalFaultPlan::standard(suspicion(topology));
    faults.region_partition_count_max = 0;
    faults.pause_count_max = 0;
    settings.faults = faults;
    settings.coordinator_limits.retained_epochs_max = retained_epochs;
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    cluster.simulation().run_until(cut_at);
    let simulated_region = cluster
        .simulation()
        .network()
        .config()
        .region_named(&cut_region)
        .expect("the region is simulated");
    cluster.simulation().isolate_region(simulated_region);
    cluster.simulation().run_until(cut_until);
    CutRun {
        cluster,
        settings,
        cut_region,
        cut_at,
        cut_until,
    }
}

/// A region cut off for long enough that the coordinator released epochs it never appended
/// (docs/global-protocol.md section 7) comes back and catches up from another region's log.
/// A day-long cut is compressed: the coordinator retains at most `RETAINED_EPOCHS` epochs
/// instead of 65,536, so that during a one-minute cut under a steady load it releases the
/// epochs the cut region lacks many times over, as it would during a day at the production
/// bound. Throughout the cut, global calls of the other regions keep completing (checked per
/// ten-second window of simulated time); after the heal the cut region reads the released
/// epochs from another region, is readmitted, and every copy agrees.
#[test]
fn a_region_cut_off_past_the_coordinators_retention_catches_up_and_agrees() {
    const RETAINED_EPOCHS: usize = 64;
    run_seeds("global_region_returns", 4, |seed| {
        let topology = local_topology();
        let cut = Duration::from_secs(60);
        let CutRun {
            mut cluster,
            settings,
            cut_region,
            cut_at,
            cut_until,
        } = cut_off_under_faults(seed, &topology, cut, RETAINED_EPOCHS);
        let newest_epoch_at_heal = cluster
            .nodes()
            .into_iter()
            .filter_map(|node| cluster.region_node(node))
            .map(|node| node.status().global.epochs_applied_through)
            .max()
            .unwrap_or(0);

        // Once the coordinator removed the cut region (suspicion timeout, plus an election
        // when the cut took its leader), the other regions' calls complete again.
        let resume_by = cut_at.saturating_add(suspicion(&topology).saturating_mul(3));
        let window = Duration::from_secs(10);
        let observer = cluster.observer();
        let mut window_start = resume_by;
        while window_start.saturating_add(window) <= cut_until {
            let window_end = window_start.saturating_add(window);
            let completed = observer
                .calls()
                .values()
                .filter(|call| {
                    call.region != cut_region
                        && call.scope == Scope::Global
                        && call.invoked_at >= window_start
                        && call.invoked_at < window_end
                        && call.acknowledged_at.is_some()
                })
                .count();
            assert!(
                completed > 0,
                "seed {seed}: no global call started in [{window_start}, {window_end}) \
                 completed with {cut_region} cut off"
            );
            window_start = window_end;
        }
        drop(observer);
        assert!(
            newest_epoch_at_heal > 4 * RETAINED_EPOCHS as u64,
            "seed {seed}: only {newest_epoch_at_heal} epochs were sealed during the cut, too \
             few for the coordinator to release any the cut region lacks"
        );
        let caught_up = heal_and_check_caught_up(&mut cluster, &settings, &cut_region, cut_until);
        println!(
            "seed {seed}: {cut_region} cut off for {} s; {newest_epoch_at_heal} epochs sealed \
             meanwhile, the coordinator retaining {RETAINED_EPOCHS}; {caught_up}",
            cut.as_secs()
        );
    });
}

/// A region cut off longer than every other region keeps the epochs it lacks: the others
/// release the records nobody follows (a log age bound of 10 s) and truncate their logs past
/// them, and the coordinator releases them too, so no log serves them. Back, the region skips
/// them to an epoch end another region's log holds, answers the calls they sealed at the skip,
/// ships its other records again, and agrees with the others: every acknowledged call is
/// sealed exactly once and where every log that holds its epoch has it
/// (docs/global-protocol.md section 7, "When no region holds them").
#[test]
fn a_region_cut_off_past_every_regions_log_skips_the_epochs_and_agrees() {
    const RETAINED_EPOCHS: usize = 64;
    run_seeds("global_region_skips", 4, |seed| {
        let mut topology = local_topology();
        topology.cluster.region_log_release_age_us = 10_000_000;
        let cut = Duration::from_secs(60);
        let CutRun {
            mut cluster,
            settings,
            cut_region,
            ..
        } = cut_off_under_faults(seed, &topology, cut, RETAINED_EPOCHS);
        let applied_at_heal = most(&cluster.member_statuses(&cut_region), |status| {
            status.global.epochs_applied_through
        });
        let problems = cluster.heal_and_check(settings.convergence_max);
        let statuses = cluster.member_statuses(&cut_region);
        let skips = most(&statuses, |status| status.counters.epoch_skips_applied);
        let skipped = most(&statuses, |status| status.counters.epochs_skipped);
        let applied_now = most(&statuses, |status| status.global.epochs_applied_through);
        let answered_at_skip = most(&statuses, |status| {
            status.counters.records_sealed_in_skipped_epochs
        });
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
        assert!(
            skips > 0,
            "seed {seed}: {cut_region} never skipped epochs; the other regions' logs still held \
             what it lacked: {}",
            cluster.describe()
        );
        println!(
            "seed {seed}: {cut_region} cut off for {} s with the others releasing records after \
             10 s; back at epoch {applied_at_heal}, it skipped {skipped} epochs in {skips} \
             skip(s), answering {answered_at_skip} of its records they had sealed, and \
             appended through epoch {applied_now}",
            cut.as_secs()
        );
    });
}

/// The largest of `field` over `statuses`, 0 when there is none.
fn most(statuses: &[RegionStatus], field: impl Fn(&RegionStatus) -> u64) -> u64 {
    statuses.iter().map(field).max().unwrap_or(0)
}

/// The sum of `field` over `statuses`.
fn total(statuses: &[RegionStatus], field: impl Fn(&RegionStatus) -> u64) -> u64 {
    statuses.iter().map(field).sum()
}

/// How a returning region caught up after the heal: the epochs it appended from the heal until
/// its alarm cleared, the simulated time from the heal until then, and the simulated time from
/// its first read of another region's log until then; `done` is false when the alarm still
/// stood at the end of the measure (then the times run to that end).
struct CatchUpPace {
    parts_read: u64,
    epochs: u64,
    since_heal: Duration,
    reading: Duration,
    done: bool,
}

impl CatchUpPace {
    /// Epochs appended per simulated second of reading.
    fn epochs_per_second(&self) -> f64 {
        self.epochs as f64 / self.reading.as_secs_f64().max(1e-6)
    }
}

impl std::fmt::Display for CatchUpPace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} epoch parts read from other regions after the heal; {} epochs appended in {:?} \
             of simulated time after the heal, {:?} of them reading ({:.0} epochs per \
             simulated second){}",
            self.parts_read,
            self.epochs,
            self.since_heal,
            self.reading,
            self.epochs_per_second(),
            if self.done { "" } else { ", not caught up yet" }
        )
    }
}

/// Heals the cut of `cut_region` (which ended at `cut_until`), lets the cluster run a few
/// seconds, measuring how fast the region reads back the released epochs, checks that it read
/// them from another region's log and that the cluster converges with every check passing;
/// returns the measure.
fn heal_and_check_caught_up(
    cluster: &mut GlobalCluster,
    settings: &GlobalRunSettings,
    cut_region: &str,
    cut_until: SimTime,
) -> CatchUpPace {
    // The measure's resolution.
    const STEP: Duration = Duration::from_millis(10);
    let seed = settings.seed;
    let members = cluster
        .regions()
        .iter()
        .find(|(region, _)| *region == cut_region)
        .map(|(_, members)| members.clone())
        .expect("the region is simulated");
    // Over the region's members that are up: (epochs appended, reads sent, parts read, whether
    // an alarm stands or no member leads).
    let region_state = |cluster: &GlobalCluster| {
        let nodes: Vec<_> = members
            .iter()
            .filter_map(|&node| cluster.region_node(node))
            .collect();
        let statuses: Vec<_> = nodes.iter().map(|node| node.status()).collect();
        (
            statuses
                .iter()
                .map(|status| status.global.epochs_applied_through)
                .max()
                .unwrap_or(0),
            statuses
                .iter()
                .map(|status| status.counters.epochs_reads_sent)
                .sum::<u64>(),
            statuses
                .iter()
                .map(|status| status.counters.epoch_parts_caught_up)
                .sum::<u64>(),
            statuses
                .iter()
                .any(|status| status.global.epochs_missed.is_some())
                || !nodes.iter().any(|node| node.is_leader()),
        )
    };
    cluster.simulation().heal_all();
    let healed_at = cluster.simulation().now();
    let (epochs_at_heal, reads_at_heal, _, _) = region_state(cluster);
    let settle_until = cut_until.saturating_add(Duration::from_secs(6));
    let mut first_read_at = None;
    let mut done = None;
    while cluster.simulation().now() < settle_until {
        let next = cluster.simulation().now().saturating_add(STEP);
        cluster.simulation().run_until(next.min(settle_until));
        if done.is_some() {
            continue;
        }
        let now = cluster.simulation().now();
        let (epochs, reads, parts, alarm) = region_state(cluster);
        if first_read_at.is_none() && reads > reads_at_heal {
            first_read_at = Some(now);
        }
        if parts > 0 && !alarm {
            done = Some((now, epochs));
        }
    }
    let (epochs_now, _, parts_read, _) = region_state(cluster);
    assert!(
        parts_read > 0,
        "seed {seed}: {cut_region} read no released epoch from another region: {}",
        cluster.describe()
    );
    let (done_at, epochs_at_done) = done.unwrap_or((cluster.simulation().now(), epochs_now));
    let pace = CatchUpPace {
        parts_read,
        epochs: epochs_at_done.saturating_sub(epochs_at_heal),
        since_heal: done_at.saturating_duration_since(healed_at),
        reading: done_at.saturating_duration_since(first_read_at.unwrap_or(healed_at)),
        done: done.is_some(),
    };
    let problems = cluster.heal_and_check(settings.convergence_max);
    assert!(problems.is_empty(), "seed {seed}: {problems:?} ({pace})");
    pace
}

/// One region cut off for `cut` of simulated time while the other regions keep making global
/// calls at a low rate all along (one every two to four seconds per client): their calls keep
/// completing within a bound that follows from the topology, the coordinator keeps a bounded
/// number of epochs (it releases what only the cut region still lacks), and the region, back,
/// reads what it missed from another region's log and agrees with the others. Returns the
/// line the run prints.
fn a_region_cut_off_for(seed: u64, cut: Duration) -> String {
    const RETAINED_EPOCHS: usize = 64;
    let wall_started = std::time::Instant::now();
    let topology = local_topology();
    let cut_region = region_of_seed(seed, &topology);
    let cut_at = at(Duration::from_secs(2));
    let cut_until = cut_at.saturating_add(cut);
    let mut settings = GlobalRunSettings::new(seed, topology.clone());
    settings.fault_window = cut + Duration::from_secs(6);
    // No fault but the cut: the calls' waits measure the cut's effect alone.
    settings.faults = GlobalFaultPlan::NONE;
    settings.client.think_time_min = Duration::from_secs(2);
    settings.client.think_time_max = Duration::from_secs(4);
    settings.client.global_share = 1.0;
    settings.coordinator_limits.retained_epochs_max = RETAINED_EPOCHS;
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    cluster.simulation().run_until(cut_at);
    let simulated_region = cluster
        .simulation()
        .network()
        .config()
        .region_named(&cut_region)
        .expect("the region is simulated");
    cluster.simulation().isolate_region(simulated_region);

    // The coordinator's retention is sampled every simulated minute of the cut.
    let mut retained_max = 0;
    let mut now = cut_at;
    while now < cut_until {
        now = now.saturating_add(Duration::from_secs(60)).min(cut_until);
        cluster.simulation().run_until(now);
        for replica in cluster.nodes() {
            if let Some(coordinator) = cluster.coordinator(replica) {
                let retained = coordinator.status().retained_epochs;
                assert!(
                    retained <= RETAINED_EPOCHS,
                    "seed {seed}: coordinator replica {replica} retains {retained} epochs at \
                     {now}, more than its bound of {RETAINED_EPOCHS}"
                );
                retained_max = retained_max.max(retained);
            }
        }
    }
    let newest_epoch_at_heal = cluster.newest_sealed_epoch();

    // Once the coordinator removed the cut region (suspicion timeout, plus an election when
    // the cut took a leader), a global call of another region waits for its epoch only: the
    // epoch, the other regions' idle poll and close, and a few WAN round trips; the client's
    // own timeout (eight times the largest one-way delay, and half a second) bounds it.
    let resume_by = cut_at.saturating_add(suspicion(&topology).saturating_mul(3));
    let wait_max = settings.client.request_timeout;
    let observer = cluster.observer();
    let mut completed = 0;
    let mut longest_wait = Duration::ZERO;
    for call in observer.calls().values() {
        if call.region == cut_region
            || call.scope != Scope::Global
            || call.invoked_at < resume_by
            || call.invoked_at.saturating_add(wait_max) > cut_until
        {
            continue;
        }
        let Some(acknowledged_at) = call.acknowledged_at else {
            panic!(
                "seed {seed}: a global call of {} made at {} was never acknowledged with \
                 {cut_region} cut off",
                call.region, call.invoked_at
            );
        };
        let wait = acknowledged_at.saturating_duration_since(call.invoked_at);
        assert!(
            wait <= wait_max,
            "seed {seed}: a global call of {} made at {} waited {wait:?}, more than \
             {wait_max:?}, with {cut_region} cut off",
            call.region,
            call.invoked_at
        );
        longest_wait = longest_wait.max(wait);
        completed += 1;
    }
    drop(observer);
    // Two regions, two clients each, a call every two to four seconds: about one a second.
    let expected_min = (cut.as_secs() / 4).saturating_sub(2 * suspicion(&topology).as_secs());
    assert!(
        completed >= expected_min,
        "seed {seed}: only {completed} global calls completed during the cut, fewer than \
         {expected_min}"
    );
    assert!(
        newest_epoch_at_heal > 4 * RETAINED_EPOCHS as u64,
        "seed {seed}: only {newest_epoch_at_heal} epochs were sealed during the cut, too few \
         for the coordinator to release any the cut region lacks"
    );

    let caught_up = heal_and_check_caught_up(&mut cluster, &settings, &cut_region, cut_until);
    let delivered = cluster.simulation().statistics().delivered;
    let wall = wall_started.elapsed();
    format!(
        "seed {seed}: {cut_region} cut off for {} s of simulated time; {completed} global calls \
         of the other regions completed meanwhile, the longest in {longest_wait:?} (bound \
         {wait_max:?}); {newest_epoch_at_heal} epochs sealed, the coordinator retaining at most \
         {retained_max} (bound {RETAINED_EPOCHS}); {caught_up}; {delivered} messages \
         delivered in {wall:?} of wall time ({:.0} per second)",
        cut.as_secs(),
        delivered as f64 / wall.as_secs_f64()
    )
}

/// The longest cut that keeps the test near a minute of wall time in a debug build (the
/// simulator runs about 66 simulated seconds per wall second here, ticks of every node
/// included): half an hour of simulated time.
#[test]
fn a_region_cut_off_for_half_an_hour_while_the_others_write_catches_up_and_agrees() {
    run_seeds("global_region_long_cut", 1, |seed| {
        println!(
            "{}",
            a_region_cut_off_for(seed, Duration::from_secs(30 * 60))
        );
    });
}

/// The same for a whole simulated day (about 109,000 epochs released while the region is cut
/// off): about 15 minutes of wall time in a debug build, nearly all of it simulating the day
/// (83 million messages, the 10 ms raft ticks of every node); the catch-up after the heal takes
/// about 1.3 s of simulated time. It runs on request (`--ignored`).
#[test]
#[ignore = "a simulated day takes about 15 minutes of wall time in a debug build"]
fn a_region_cut_off_for_a_day_while_the_others_write_catches_up_and_agrees() {
    run_seeds("global_region_day_cut", 1, |seed| {
        println!(
            "{}",
            a_region_cut_off_for(seed, Duration::from_secs(24 * 60 * 60))
        );
    });
}

/// A member holds at most `PARKED_LOG_READS_MAX` log reads that wait for something new to be
/// applied; one more makes it answer the oldest at once (with nothing new: its reader asks
/// again), and the others keep waiting.
#[test]
fn a_member_holds_a_bounded_number_of_waiting_log_reads_and_answers_the_oldest_beyond_it() {
    use dsss_simulations::workloads::global::process::{
        GlobalMessage, PARKED_LOG_READS_MAX, ReadLogRequest,
    };
    let mut settings = GlobalRunSettings::new(1, local_topology());
    settings.clients_per_region = 0;
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    cluster.simulation().run_for(Duration::from_secs(1));
    let simulation = cluster.simulation();
    let now = simulation.now();
    // Far beyond anything the member will apply in this test, so every read waits.
    let from_position = 1_000_000_000;
    for request_id in 0..=PARKED_LOG_READS_MAX as u64 {
        let request = ReadLogRequest {
            request_id,
            from_position,
            wait_us: 60_000_000,
            answers_max: 1,
            stream_id: request_id,
        };
        simulation.inject(now, 11, GlobalMessage::ReadLog(request));
    }
    simulation.run_for(Duration::from_millis(200));
    let answered: Vec<u64> = simulation
        .take_external_messages()
        .into_iter()
        .filter_map(|message| match message.message {
            GlobalMessage::LogEntries(answer) => {
                assert!(answer.entries.is_empty(), "{answer:?}");
                Some(answer.request_id)
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        answered,
        [0],
        "only the oldest read is answered before its wait ends"
    );
}

/// A log read is a stream's credit: the member pushes one answer after another for it, each
/// starting where the one before ended, until its answers run out, and a newer read of the
/// same stream replaces the one it holds.
#[test]
fn a_member_pushes_a_log_read_answers_up_to_its_credit_and_a_newer_read_replaces_it() {
    use dsss_simulations::workloads::global::process::{
        GlobalMessage, LOG_READ_ANSWERS_MAX, ReadLogRequest,
    };
    // The cluster's clients keep writing, so the member keeps applying.
    let settings = GlobalRunSettings::new(1, local_topology());
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    cluster.simulation().run_for(Duration::from_secs(1));
    let simulation = cluster.simulation();
    let now = simulation.now();
    let read = |request_id, stream_id, from_position, answers_max| ReadLogRequest {
        request_id,
        from_position,
        wait_us: 10_000,
        answers_max,
        stream_id,
    };
    // Where the member's log starts (it may have truncated what came before).
    simulation.inject(now, 11, GlobalMessage::ReadLog(read(0, 6, 1, 1)));
    simulation.run_for(Duration::from_millis(100));
    let first_kept = simulation
        .take_external_messages()
        .into_iter()
        .find_map(|message| match message.message {
            GlobalMessage::LogEntries(answer) => Some(answer.truncated_below.unwrap_or(1)),
            _ => None,
        })
        .expect("the member answers a read it may not hold");
    let now = simulation.now();
    // From the start of the log: the first answer carries what the member applied, each
    // later one what it applied since.
    simulation.inject(now, 11, GlobalMessage::ReadLog(read(1, 7, first_kept, 4)));
    // Stream 8's second read replaces its first, which is never answered.
    simulation.inject(now, 11, GlobalMessage::ReadLog(read(2, 8, 1_000_000, 64)));
    simulation.inject(now, 11, GlobalMessage::ReadLog(read(3, 8, 1_000_000, 2)));
    // A read that asks for more answers than a member gives one read gets that bound: its
    // empty answers come once a millisecond, so the half second would hold many more.
    let greedy = ReadLogRequest {
        wait_us: 1_000,
        ..read(4, 9, 1_000_000, LOG_READ_ANSWERS_MAX * 10)
    };
    simulation.inject(now, 11, GlobalMessage::ReadLog(greedy));
    simulation.run_for(Duration::from_millis(500));
    let answers: Vec<_> = simulation
        .take_external_messages()
        .into_iter()
        .filter_map(|message| match message.message {
            GlobalMessage::LogEntries(answer) => Some(answer),
            _ => None,
        })
        .collect();
    let of = |request_id| -> Vec<_> {
        answers
            .iter()
            .filter(|answer| answer.request_id == request_id)
            .collect()
    };
    let first = of(1);
    assert_eq!(first.len(), 4, "{answers:?}");
    assert!(!first[0].entries.is_empty(), "{answers:?}");
    for pair in first.windows(2) {
        assert_eq!(
            pair[1].from_position,
            pair[0].through_position + 1,
            "{pair:?}"
        );
    }
    assert!(of(2).is_empty(), "{answers:?}");
    assert_eq!(of(3).len(), 2, "{answers:?}");
    assert_eq!(of(4).len(), LOG_READ_ANSWERS_MAX as usize);
}

/// A coordinator slowed by load is not swamped with copies, nor are its regions: a sender
/// resends only when the acknowledged point stood still for the resend interval, doubled per
/// resend that brought nothing (dsss_wire::ResendTimeout). When every interval resent
/// whatever was unacknowledged, 84% of the batches region leaders sent here were copies and
/// 73% of the coordinator's epoch parts, and the cluster fell to a fifth of its throughput.
/// Nodes pay a disk sync and CPU time per event, near the load the busiest node (which leads
/// a region and the coordinator) can carry.
#[test]
fn a_loaded_coordinator_is_sent_few_copies_and_sends_few() {
    run_seeds("loaded_coordinator", 3, |seed| {
        let mut settings = GlobalRunSettings::new(seed, local_topology());
        settings.clients_per_region = 4;
        settings.fault_window = Duration::from_secs(10);
        settings.node_costs = dsss_simulations::NodeCosts::uniform(
            Duration::from_micros(130),
            Duration::from_micros(450),
        );
        let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
        dsss_simulations::workloads::global::run_fault_window(&mut cluster, &settings);
        let (mut batches_sent, mut batches_resent) = (0, 0);
        let (mut epochs_sent, mut epochs_resent) = (0, 0);
        for node in cluster.nodes() {
            if let Some(region) = cluster.region_node(node) {
                let counters = region.status().counters;
                batches_sent += counters.batches_sent;
                batches_resent += counters.batches_resent;
            }
            if let Some(coordinator) = cluster.coordinator(node) {
                let counters = coordinator.status().counters;
                epochs_sent += counters.epoch_messages_sent;
                epochs_resent += counters.epoch_messages_resent;
            }
        }
        println!(
            "seed {seed}: {batches_resent} of {batches_sent} batches and {epochs_resent} of \
             {epochs_sent} epoch parts were copies"
        );
        assert!(
            batches_sent > 1_000,
            "seed {seed}: {batches_sent} batches sent"
        );
        assert!(
            batches_resent * 20 <= batches_sent,
            "seed {seed}: {batches_resent} of {batches_sent} batches were copies"
        );
        // Epoch parts go out again when a region's acknowledgements stand still for a
        // resend interval, which a loaded region leader's sometimes do.
        assert!(
            epochs_resent * 6 <= epochs_sent,
            "seed {seed}: {epochs_resent} of {epochs_sent} epoch parts were copies"
        );
        let problems = cluster.heal_and_check(settings.convergence_max);
        assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    });
}
