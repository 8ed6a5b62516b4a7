//! The clock probe on the example topologies: the WAN model delivers within the configured
//! delays, and the hybrid logical clock stays monotonic, causal and skew-bounded under loss,
//! duplication, reordering, crashes, a region partition, clock skew and drift.
//! Reference: docs/design.md section 2 ("HLC") and section 6.

use std::time::Duration;

use dsss_simulations::workloads::probe::{ProbeRunSettings, run_probe};
use dsss_simulations::{NetworkFaults, run_seeds};
use dsss_topology::{Topology, local_default};

fn global_topology() -> Topology {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../topology/examples/global.toml"
    );
    dsss_topology::load(std::path::Path::new(path)).expect("the global example is valid")
}

#[test]
fn fault_free_delays_match_the_latency_matrix_on_every_pair() {
    let topology = global_topology();
    let report = run_probe(&topology, &ProbeRunSettings::new(1, Duration::from_secs(2)))
        .expect("valid settings");
    assert!(report.passed(), "{report}");
    assert_eq!(report.pairs.len(), 36);
    for pair in &report.pairs {
        assert!(
            pair.delivered > 0,
            "no probe went {} -> {}",
            pair.from,
            pair.to
        );
        let low = pair.configured_us.saturating_sub(pair.jitter_us) as f64;
        let high = (pair.configured_us + pair.jitter_us) as f64;
        assert!(
            pair.min_us >= low && pair.max_us <= high,
            "{} -> {}: measured {}..{} us outside {low}..{high} us",
            pair.from,
            pair.to,
            pair.min_us,
            pair.max_us
        );
    }
    assert_eq!(report.messages_dropped, 0);
    assert_eq!(report.receives_refused_for_skew, 0);
}

#[test]
fn clocks_hold_their_guarantees_under_faults_on_many_seeds() {
    let topology = local_default();
    let skew_bound_us = topology.cluster.max_clock_skew_us as i64;
    run_seeds("clock probe under faults (local.toml)", 60, |seed| {
        let mut settings = ProbeRunSettings::new(seed, Duration::from_millis(800));
        settings.probe_interval = Duration::from_millis(2);
        settings.faults = NetworkFaults {
            loss_probability: 0.05,
            duplication_probability: 0.05,
            reorder_probability: 0.1,
            reorder_delay_max: Duration::from_millis(30),
        };
        settings.crash_count = 4;
        settings.region_partition = true;
        // Half the nodes' skews land beyond the bound: their probes must be refused.
        settings.clock_skew_us_max = skew_bound_us * 2;
        settings.clock_drift_ppm_max = 200;
        let report = run_probe(&topology, &settings).expect("valid settings");
        assert_eq!(report.violation_count, 0, "{report}");
        assert!(report.receives_accepted > 0, "{report}");
    });
}

#[test]
fn skew_beyond_the_bound_is_refused_and_skew_within_it_is_adopted() {
    let topology = local_default();
    let bound_us = topology.cluster.max_clock_skew_us as i64;
    let mut within = ProbeRunSettings::new(5, Duration::from_millis(500));
    within.clock_skew_us_max = bound_us / 2;
    let report = run_probe(&topology, &within).expect("valid settings");
    assert!(report.passed(), "{report}");
    assert_eq!(report.receives_refused_for_skew, 0, "{report}");

    let mut beyond = ProbeRunSettings::new(5, Duration::from_millis(500));
    beyond.clock_skew_us_max = bound_us * 10;
    let report = run_probe(&topology, &beyond).expect("valid settings");
    assert!(report.passed(), "{report}");
    assert!(report.receives_refused_for_skew > 0, "{report}");
}

#[test]
fn a_probe_run_is_reproducible_from_its_seed() {
    let topology = local_default();
    let mut settings = ProbeRunSettings::new(9, Duration::from_millis(400));
    settings.faults = NetworkFaults {
        loss_probability: 0.1,
        duplication_probability: 0.1,
        reorder_probability: 0.1,
        reorder_delay_max: Duration::from_millis(10),
    };
    settings.crash_count = 3;
    settings.region_partition = true;
    settings.clock_skew_us_max = 300_000;
    let first = run_probe(&topology, &settings).expect("valid settings");
    let second = run_probe(&topology, &settings).expect("valid settings");
    assert_eq!(first.trace_hash, second.trace_hash);
    assert_eq!(first.to_string(), second.to_string());
    settings.seed = 10;
    let other = run_probe(&topology, &settings).expect("valid settings");
    assert_ne!(first.trace_hash, other.trace_hash);
}

#[test]
fn settings_outside_their_bounds_are_refused_with_the_setting_named() {
    let topology = local_default();
    let mut settings = ProbeRunSettings::new(1, Duration::from_millis(100));
    settings.probe_interval = Duration::from_nanos(10);
    let error = run_probe(&topology, &settings).expect_err("interval too small");
    assert!(error.starts_with("probe interval"), "{error}");
    let mut settings = ProbeRunSettings::new(1, Duration::from_millis(100));
    settings.faults.loss_probability = 1.5;
    let error = run_probe(&topology, &settings).expect_err("probability above one");
    assert!(error.starts_with("network faults"), "{error}");
}
