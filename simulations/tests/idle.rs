//! An idle global tier: with no calls, regions close batches only at their idle pace and the
//! coordinator seals no empty epoch, so raft logs grow slowly; a region is not suspected for
//! being idle; and the first global calls after a long quiet spell complete and keep one
//! order, with faults (docs/global-protocol.md sections 3 and 5). Replay a failing seed with
//! `DSSS_SEED=S`.

use std::time::Duration;

use dsss_simulations::workloads::global::{
    GlobalCluster, GlobalFaultPlan, GlobalRunSettings, run_fault_window,
};
use dsss_simulations::{NetworkFaults, SimTime, run_seeds};
use dsss_topology::Topology;
use dsss_wire::Scope;

fn local_topology() -> Topology {
    dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .expect("the embedded topology is valid")
}

fn at(duration: Duration) -> SimTime {
    SimTime::ZERO.saturating_add(duration)
}

/// The highest applied index over the members of each region, and over the coordinator
/// replicas: how many raft entries each group has applied.
fn applied_indexes(cluster: &GlobalCluster) -> (Vec<(String, u64)>, u64) {
    let regions = cluster
        .regions()
        .iter()
        .map(|(region, members)| {
            let applied = members
                .iter()
                .filter_map(|&node| cluster.region_node(node))
                .map(|node| node.status().applied_index)
                .max()
                .unwrap_or(0);
            (region.clone(), applied)
        })
        .collect();
    let coordinator = cluster
        .nodes()
        .into_iter()
        .filter_map(|node| cluster.coordinator(node))
        .map(|coordinator| coordinator.group().applied_index())
        .max()
        .unwrap_or(0);
    (regions, coordinator)
}

/// Ten simulated minutes without a call cost no raft entry, not one (or more) per epoch:
/// idle regions close no batch but send liveness asks (a quarter of the suspicion timeout
/// apart), which the coordinator answers without an entry, and it seals nothing.
#[test]
fn an_idle_cluster_writes_few_raft_entries() {
    let topology = local_topology();
    let mut settings = GlobalRunSettings::new(1, topology.clone());
    // Calls for the first three seconds, then none.
    settings.fault_window = Duration::from_secs(3);
    let mut cluster = GlobalCluster::new(&settings).expect("valid settings");
    let idle_from = at(Duration::from_secs(5));
    let idle = Duration::from_secs(600);
    cluster.simulation().run_until(idle_from);
    assert!(
        cluster.observer().acknowledged_count() > 50,
        "the cluster served calls before the idle spell: {}",
        cluster.describe()
    );
    let epochs_before = cluster.newest_sealed_epoch();
    let (regions_before, coordinator_before) = applied_indexes(&cluster);
    cluster
        .simulation()
        .run_until(idle_from.saturating_add(idle));
    let epochs_after = cluster.newest_sealed_epoch();
    let (regions_after, coordinator_after) = applied_indexes(&cluster);

    let epoch_us = topology.cluster.epoch_us;
    let idle_us = u64::try_from(idle.as_micros()).expect("a short spell");
    // Entries of the last calls' tail, a session expiring, no more (one close per idle
    // interval would be 1,200).
    let closes_max = 8;
    assert!(
        epochs_after - epochs_before <= 3,
        "{} epochs sealed in {idle:?} without a call (one per {epoch_us} us epoch would be {})",
        epochs_after - epochs_before,
        idle_us / epoch_us
    );
    for ((region, before), (_, after)) in regions_before.iter().zip(&regions_after) {
        assert!(
            after - before <= closes_max,
            "region {region} applied {} raft entries in {idle:?} without a call (at most \
             {closes_max} expected; one per epoch would be {})",
            after - before,
            idle_us / epoch_us
        );
    }
    let regions = regions_before.len() as u64;
    assert!(
        coordinator_after - coordinator_before <= regions * closes_max,
        "the coordinator applied {} raft entries in {idle:?} without a call (at most {} \
         expected)",
        coordinator_after - coordinator_before,
        regions * closes_max
    );
    // Idle is not silent: the regions asked, no region was suspected, and the cluster still
    // checks out.
    let idle_asks_min = idle_us / (topology.cluster.suspicion_timeout_us / 4);
    for node in cluster.nodes() {
        if let Some(region) = cluster.region_node(node) {
            assert_eq!(region.status().global.incarnation, 1, "node {node}");
        }
        if let Some(coordinator) = cluster.coordinator(node)
            && coordinator.is_leader()
        {
            let answered = coordinator.status().counters.liveness_asks_answered;
            assert!(
                answered >= regions * idle_asks_min * 9 / 10,
                "the coordinator leader answered {answered} liveness asks in {idle:?}"
            );
        }
    }
    let problems = cluster.check();
    assert!(problems.is_empty(), "{problems:?}");
}

/// Settings for a run with calls for two seconds, a quiet spell of `quiet`, then calls for
/// three seconds more, under `faults` drawn over the whole window.
fn quiet_settings(seed: u64, quiet: Duration, faults: GlobalFaultPlan) -> GlobalRunSettings {
    let mut settings = GlobalRunSettings::new(seed, local_topology());
    let quiet_from = at(Duration::from_secs(2));
    let quiet_until = quiet_from.saturating_add(quiet);
    settings.client.quiet = Some((quiet_from, quiet_until));
    settings.fault_window = Duration::from_secs(5) + quiet;
    settings.faults = faults;
    settings
}

/// Runs `settings`, heals, converges and checks; returns the cluster for more questions.
fn run_checked(seed: u64, settings: &GlobalRunSettings) -> GlobalCluster {
    let mut cluster = GlobalCluster::new(settings).expect("valid settings");
    run_fault_window(&mut cluster, settings);
    let problems = cluster.heal_and_check(settings.convergence_max);
    assert!(problems.is_empty(), "seed {seed}: {problems:?}");
    cluster
}

/// The global calls made after `from` that were acknowledged, and those made.
fn global_calls_after(cluster: &GlobalCluster, from: SimTime) -> (usize, usize) {
    let observer = cluster.observer();
    let calls: Vec<_> = observer
        .calls()
        .values()
        .filter(|call| call.scope == Scope::Global && call.invoked_at >= from)
        .collect();
    let acknowledged = calls
        .iter()
        .filter(|call| call.acknowledged_at.is_some())
        .count();
    (acknowledged, calls.len())
}

/// After a quiet spell of a minute (thirty suspicion timeouts) under message loss,
/// duplication, reordering and clock skew, but no crash or partition: no region was removed
/// for being idle, and the calls after the spell complete in one order.
#[test]
fn an_idle_region_is_not_suspected_and_calls_after_the_quiet_complete() {
    run_seeds("idle_not_suspected", 4, |seed| {
        let faults = GlobalFaultPlan {
            network: NetworkFaults {
                loss_probability: 0.05,
                duplication_probability: 0.05,
                reorder_probability: 0.1,
                reorder_delay_max: Duration::from_millis(20),
            },
            clock_skew_share_max: 0.5,
            ..GlobalFaultPlan::NONE
        };
        let quiet = Duration::from_secs(60);
        let settings = quiet_settings(seed, quiet, faults);
        let cluster = run_checked(seed, &settings);
        for node in cluster.nodes() {
            if let Some(region) = cluster.region_node(node) {
                assert_eq!(
                    region.status().global.incarnation,
                    1,
                    "seed {seed}: node {node} was removed while idle: {}",
                    cluster.describe()
                );
            }
            if let Some(coordinator) = cluster.coordinator(node) {
                assert_eq!(
                    coordinator.status().counters.regions_removed,
                    0,
                    "seed {seed}: replica {node} removed a region"
                );
            }
        }
        let quiet_until = at(Duration::from_secs(2) + quiet);
        let (acknowledged, made) = global_calls_after(&cluster, quiet_until);
        assert!(
            made > 0 && acknowledged == made,
            "seed {seed}: {acknowledged} of {made} global calls after the quiet spell completed"
        );
        // For the record, not a check: how long the first global call of each region after
        // the quiet spell took, beside calls in a busy cluster.
        let observer = cluster.observer();
        let busy: Vec<Duration> = observer
            .calls()
            .values()
            .filter(|call| {
                call.scope == Scope::Global
                    && call.invoked_at >= at(Duration::from_secs(1))
                    && call.invoked_at < at(Duration::from_secs(2))
            })
            .filter_map(|call| {
                call.acknowledged_at
                    .map(|done| done.saturating_duration_since(call.invoked_at))
            })
            .collect();
        let mut first_after: Vec<(String, Duration)> = Vec::new();
        for (region, _) in cluster.regions() {
            let first = observer
                .calls()
                .values()
                .filter(|call| {
                    call.scope == Scope::Global
                        && &call.region == region
                        && call.invoked_at >= quiet_until
                })
                .min_by_key(|call| call.invoked_at);
            let latency = first.and_then(|call| {
                call.acknowledged_at
                    .map(|done| done.saturating_duration_since(call.invoked_at))
            });
            if let Some(latency) = latency {
                first_after.push((region.clone(), latency));
            }
        }
        let mean_busy = busy.iter().sum::<Duration>() / u32::try_from(busy.len().max(1)).unwrap();
        eprintln!(
            "seed {seed}: global calls in a busy cluster took {mean_busy:?} on average; the \
             first after the quiet spell: {first_after:?}"
        );
    });
}

/// The standard faults (loss, duplication, reordering, skew, crashes, coordinator leader
/// crashes, partitions longer than the suspicion timeout) drawn over a window that is mostly
/// a quiet spell: every run converges with one order and nothing lost, and global calls made
/// after the spell complete.
#[test]
fn calls_after_a_quiet_spell_complete_under_faults() {
    run_seeds("idle_then_calls_under_faults", 6, |seed| {
        let topology = local_topology();
        let suspicion = Duration::from_micros(topology.cluster.suspicion_timeout_us);
        let quiet = Duration::from_secs(20);
        let settings = quiet_settings(seed, quiet, GlobalFaultPlan::standard(suspicion));
        let cluster = run_checked(seed, &settings);
        let quiet_until = at(Duration::from_secs(2) + quiet);
        let (acknowledged, made) = global_calls_after(&cluster, quiet_until);
        assert!(
            acknowledged > 0,
            "seed {seed}: none of {made} global calls after the quiet spell completed"
        );
    });
}
