//! A compressed month: application instances running the SDK's own client session open,
//! write and abandon thousands of journals (most owned by one instance, some shared by many,
//! some global and never opened in one region) while the region log crosses its quota many
//! times over and ended sessions pass the region's idle timeout. No region may refuse a write
//! for a full log, no member's retained log may pass the quota nor its cache
//! `LOG_CACHE_BYTES_MAX`, and every copy must agree at the end (docs/design.md section 6).
//! Replay a failing seed with `DSSS_SEED=S`; `DSSS_SEEDS=N` runs more seeds.

use std::time::Duration;

use dsss_simulations::run_seeds;
use dsss_simulations::workloads::global::{GlobalFaultPlan, ScriptedCut};
use dsss_simulations::workloads::month::{MonthSettings, run_month};
use dsss_topology::Topology;

fn local_topology() -> Topology {
    dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .expect("the embedded topology is valid")
}

#[test]
fn a_month_of_instances_that_come_and_go_keeps_every_region_writable_and_bounded() {
    run_seeds("month", 1, |seed| {
        let settings = MonthSettings::new(seed, local_topology());
        let report = run_month(&settings).expect("valid settings");
        println!("{report}");
        assert!(report.passed(), "seed {seed}:\n{report}");
        // The run is the month it claims to be: thousands of objects, instances of every
        // ending, the log written many times its quota, and sessions past the idle timeout.
        assert!(report.objects_opened >= 2_000, "seed {seed}:\n{report}");
        assert!(report.global_objects_opened >= 10, "seed {seed}:\n{report}");
        assert_eq!(report.endings.len(), 3, "seed {seed}:\n{report}");
        assert!(report.holders > 0, "seed {seed}:\n{report}");
        // Every holder opens a global object nobody in its region followed, whose records the
        // region released: the region adopts another region's checkpoint of it, and the copy
        // agrees with the other regions' (`passed`).
        assert!(report.late_opens.0 > 0, "seed {seed}:\n{report}");
        assert!(report.checkpoints_adopted > 0, "seed {seed}:\n{report}");
        // Shared objects whose last instance ended within the idle interval of its last append
        // hold records no checkpoint covers; past 75% of the quota the region releases them, so
        // later opens fail saying so (counted apart, never a refusal of a write). Copies that
        // do open are compared at the end (`passed`); the control below, where nothing is
        // released, compares shared objects on every run.
        for region in &report.regions {
            assert!(
                region.payload_bytes_appended >= 5 * region.quota_bytes,
                "seed {seed}: {} was written less than five times its quota:\n{report}",
                region.region
            );
            assert!(
                region.truncation_moves >= 5,
                "seed {seed}: {} truncated fewer than five times:\n{report}",
                region.region
            );
        }
        assert!(
            report.simulated.as_secs() >= 3 * 30 * 60,
            "seed {seed}: the run must pass the region's 30-minute idle timeout several \
             times:\n{report}"
        );
    });
}

/// The control of the month above: the same instances, objects and endings with a quota the
/// run never reaches (the topology's default) pass every check, so what fails above is the
/// log reaching its quota and nothing else; and the copies' checkpoints reach the region.
#[test]
fn the_month_workload_passes_when_the_log_never_reaches_its_quota() {
    run_seeds("month_control", 1, |seed| {
        let mut settings = MonthSettings::new(seed, local_topology());
        settings.topology.cluster.region_log_quota_bytes = 1024 * 1024 * 1024;
        // A shorter month, still past the sessions' idle timeout: the holders' sessions end in
        // the regions during the quiet spell and their final calls go in renewed sessions.
        settings.arrivals_for = Duration::from_secs(15 * 60);
        settings.quiet_for = Duration::from_secs(31 * 60);
        let report = run_month(&settings).expect("valid settings");
        println!("{report}");
        assert!(report.passed(), "seed {seed}:\n{report}");
        assert_eq!(report.log_full_refusal_count(), 0, "seed {seed}:\n{report}");
        assert!(report.idle_checkpoints > 0, "seed {seed}:\n{report}");
        assert!(report.objects_compared > 0, "seed {seed}:\n{report}");
        assert!(report.objects_opened >= 500, "seed {seed}:\n{report}");
    });
}

/// A shorter month with the 2 MiB quota under faults through its half hour of arrivals: loss,
/// duplication and reordering of messages, crashes of region members and of the coordinator
/// leader, pauses and clock skew (no region partitions: the global simulations cover those).
/// Every check holds: no write refused for a full log, logs under the quota, no open or call
/// failing for another reason than a release, the late opens complete by adopting checkpoints
/// of global objects released in their region, and every copy agrees.
#[test]
fn a_month_under_faults_keeps_every_region_writable_and_its_copies_equal() {
    run_seeds("month_faults", 1, |seed| {
        let mut settings = MonthSettings::new(seed, local_topology());
        let suspicion = Duration::from_micros(settings.topology.cluster.suspicion_timeout_us);
        settings.faults = GlobalFaultPlan {
            region_partition_count_max: 0,
            ..GlobalFaultPlan::standard(suspicion)
        };
        settings.arrivals_for = Duration::from_secs(30 * 60);
        settings.quiet_for = Duration::from_secs(31 * 60);
        let report = run_month(&settings).expect("valid settings");
        println!("{report}");
        assert!(report.passed(), "seed {seed}:\n{report}");
        assert!(report.late_opens.0 > 0, "seed {seed}:\n{report}");
        assert_eq!(
            report.late_opens.0, report.late_opens.1,
            "seed {seed}:\n{report}"
        );
        assert!(report.checkpoints_adopted > 0, "seed {seed}:\n{report}");
    });
}

/// A shorter month in which one region is cut off from the others for its last twenty minutes
/// of arrivals, while the other regions' logs cross their quota and truncate and the
/// coordinator keeps only 64 sealed epochs: back, no log holds the epochs the region missed,
/// so it skips them (docs/global-protocol.md section 7, "When no region holds them"). Its
/// holders' copies of global journals restart from checkpoints the region adopts from other
/// regions and read what the other regions' copies read; nothing fails but the cut region's
/// opens and calls during the cut and its recovery (`CUT_OFF`) and opens of released objects,
/// no write is refused for a full log, and the cluster's checks pass.
#[test]
fn a_month_with_a_region_cut_off_past_every_log_skips_the_epochs_and_its_copies_agree() {
    run_seeds("month_skip", 2, |seed| {
        let mut settings = MonthSettings::new(seed, local_topology());
        let regions = settings.topology.regions.len() as u64;
        settings.arrivals_for = Duration::from_secs(30 * 60);
        settings.quiet_for = Duration::from_secs(31 * 60);
        settings.faults = GlobalFaultPlan {
            scripted_region_cut: Some(ScriptedCut {
                region_index: (seed % regions) as usize,
                after: Duration::from_secs(10 * 60),
                length: Duration::from_secs(20 * 60),
            }),
            ..GlobalFaultPlan::NONE
        };
        settings.coordinator_limits.retained_epochs_max = 64;
        let report = run_month(&settings).expect("valid settings");
        println!("{report}");
        assert!(report.passed(), "seed {seed}:\n{report}");
        assert!(
            report.epoch_skips > 0,
            "seed {seed}: no region skipped:\n{report}"
        );
        assert!(
            report.copies_behind_skipped_epochs > 0,
            "seed {seed}: no copy restarted after the skip:\n{report}"
        );
        assert!(report.objects_compared > 0, "seed {seed}:\n{report}");
    });
}
