//! The regional tier under faults, on many seeds: 3- and 5-member regions of real raft-rs
//! groups, with crashes and restarts, partitions, loss, duplication, reordering and leader
//! transfers, then a heal and a restart of every member. Every acknowledged record must be in
//! every member's log at its acknowledged position, every log a prefix of the longest, every
//! retried call applied once, and the members equal after the heal.
//! Reference: docs/design.md section 2 ("regional tier"), section 3 and section 6.

use std::cell::RefCell;

use dsss_region_node::RegionLogRetention;
use dsss_simulations::workloads::region::{
    RegionFaultPlan, RegionReport, RegionRunSettings, run_region, run_region_traced,
};
use dsss_simulations::{SeedPlan, assert_deterministic, run_seeds};

/// What many runs covered, so that a test proves it exercised the paths it claims to.
#[derive(Default)]
struct Coverage {
    runs: u64,
    acknowledged: usize,
    retries: u64,
    deliberate_duplicates: u64,
    snapshots_restored: u64,
    crashes: u32,
    partitions: u32,
    leader_transfers: u32,
}

impl Coverage {
    fn add(&mut self, report: &RegionReport) {
        self.runs += 1;
        self.acknowledged += report.acknowledged;
        self.retries += report.retries;
        self.deliberate_duplicates += report.deliberate_duplicates;
        self.snapshots_restored += report.snapshots_restored;
        self.crashes += report.faults.crashes;
        self.partitions += report.faults.partitions;
        self.leader_transfers += report.faults.leader_transfers;
    }

    /// Checked only on a full run of seeds, not when one seed is replayed.
    fn assert_broad(&self) {
        if self.runs < 50 {
            return;
        }
        assert!(
            self.acknowledged as u64 > 100 * self.runs,
            "too few calls acknowledged"
        );
        assert!(
            self.retries > 0 && self.deliberate_duplicates > 0,
            "no retries exercised"
        );
        assert!(
            self.snapshots_restored > 0,
            "no member caught up by snapshot"
        );
        assert!(
            self.crashes > 0 && self.partitions > 0 && self.leader_transfers > 0,
            "a kind of fault never happened"
        );
    }
}

fn faulty(seed: u64, member_count: usize) -> RegionRunSettings {
    let mut settings = RegionRunSettings::new(seed, member_count);
    settings.faults = RegionFaultPlan::standard();
    settings
}

fn run_many(name: &str, member_count: usize) {
    let coverage = RefCell::new(Coverage::default());
    run_seeds(name, 200, |seed| {
        let report = run_region(&faulty(seed, member_count)).expect("valid settings");
        assert!(report.passed(), "{report}");
        coverage.borrow_mut().add(&report);
    });
    coverage.borrow().assert_broad();
}

#[test]
fn three_member_regions_keep_every_acknowledged_record_under_faults() {
    run_many(
        "three_member_regions_keep_every_acknowledged_record_under_faults",
        3,
    );
}

#[test]
fn five_member_regions_keep_every_acknowledged_record_under_faults() {
    run_many(
        "five_member_regions_keep_every_acknowledged_record_under_faults",
        5,
    );
}

#[test]
fn a_fault_free_region_acknowledges_every_call_in_one_order() {
    run_seeds(
        "a_fault_free_region_acknowledges_every_call_in_one_order",
        10,
        |seed| {
            let report = run_region(&RegionRunSettings::new(seed, 3)).expect("valid settings");
            assert!(report.passed(), "{report}");
            // Every call ends acknowledged (clients idle at convergence), and nothing is
            // appended twice: the log holds exactly the acknowledged calls.
            assert_eq!(report.records, report.acknowledged as u64, "{report}");
            assert!(report.acknowledged > 300, "{report}");
            assert_eq!(report.messages_dropped, 0);
        },
    );
}

#[test]
fn a_region_run_replays_from_its_seed_with_real_raft_inside() {
    let plan = SeedPlan::from_environment(3).expect("valid seed variables");
    for seed in plan.seeds() {
        assert_deterministic(
            "a_region_run_replays_from_its_seed_with_real_raft_inside",
            seed,
            |seed| {
                let mut settings = faulty(seed, 5);
                settings.keep_trace_lines = true;
                let (report, trace) = run_region_traced(&settings).expect("valid settings");
                assert!(report.passed(), "{report}");
                assert!(report.acknowledged > 0, "raft ordered nothing: {report}");
                trace
            },
        );
    }
    // Different seeds draw different runs.
    let first = run_region(&faulty(1, 3)).expect("valid settings");
    let second = run_region(&faulty(2, 3)).expect("valid settings");
    assert_ne!(first.trace_hash, second.trace_hash);
}

/// Region logs with a quota far below what a run writes (16 KiB, releases past half of it):
/// the object that nobody checkpoints is released again and again while members crash and
/// restart, are partitioned, lose and reorder messages, and catch up by snapshot; every
/// check still holds (every member ends with the same history and retained log, and every
/// acknowledged record the log still retains sits at its acknowledged position).
#[test]
fn releases_of_records_nobody_covers_under_faults_keep_every_member_equal() {
    let released_runs = std::cell::Cell::new(0u64);
    let runs = std::cell::Cell::new(0u64);
    let snapshots = std::cell::Cell::new(0u64);
    run_seeds(
        "releases_of_records_nobody_covers_under_faults_keep_every_member_equal",
        100,
        |seed| {
            let mut settings = faulty(seed, 3);
            settings.region_log_retention = RegionLogRetention {
                size_bytes_max: 16 * 1024,
                release_share_percent: 50,
                release_age_us: 0,
                ..RegionLogRetention::default()
            };
            let report = run_region(&settings).expect("valid settings");
            assert!(report.passed(), "{report}");
            runs.set(runs.get() + 1);
            if report.releases > 0 && report.truncated_through > 0 {
                released_runs.set(released_runs.get() + 1);
            }
            snapshots.set(snapshots.get() + report.snapshots_restored);
        },
    );
    if runs.get() >= 50 {
        assert!(
            released_runs.get() * 2 > runs.get(),
            "only {} of {} runs released anything",
            released_runs.get(),
            runs.get()
        );
        assert!(snapshots.get() > 0, "no member caught up by snapshot");
    }
}
