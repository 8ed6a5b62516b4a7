//! Per-node clocks: skew, drift and backwards steps are visible in `Context::now_us`.

mod support;

use std::time::Duration;

use dsss_simulations::{CLOCK_SKEW_US_MAX, SimTime, Simulation, WALL_CLOCK_START_US};
use support::{Recorder, recorders};

/// What node `node` reads from its clock inside a handler, now.
fn read_clock_us(simulation: &mut Simulation<Recorder>, node: u64) -> u64 {
    simulation
        .with_process(node, |_, cx| cx.now_us())
        .expect("the node is up")
}

#[test]
fn without_faults_every_clock_reads_the_virtual_time() {
    let mut simulation = recorders(1);
    simulation.run_until(SimTime::from_millis(1_500));
    for node in simulation.node_ids() {
        assert_eq!(
            read_clock_us(&mut simulation, node),
            WALL_CLOCK_START_US + 1_500_000
        );
    }
}

#[test]
fn skew_offsets_one_node_only() {
    let mut simulation = recorders(2);
    simulation.set_clock_skew_us(1, 5_000);
    simulation.set_clock_skew_us(2, -7_000);
    simulation.run_until(SimTime::from_secs(1));
    let virtual_us = WALL_CLOCK_START_US + 1_000_000;
    assert_eq!(read_clock_us(&mut simulation, 1), virtual_us + 5_000);
    assert_eq!(read_clock_us(&mut simulation, 2), virtual_us - 7_000);
    assert_eq!(read_clock_us(&mut simulation, 3), virtual_us);
    assert_eq!(simulation.clock_now_us(1), virtual_us + 5_000);
}

#[test]
fn drift_makes_a_clock_run_fast_or_slow() {
    let mut simulation = recorders(3);
    simulation.set_clock_drift_ppm(1, 1_000);
    simulation.set_clock_drift_ppm(2, -500);
    simulation.run_until(SimTime::from_secs(10));
    let virtual_us = WALL_CLOCK_START_US + 10_000_000;
    // 1000 ppm of 10 s is 10 ms fast; -500 ppm is 5 ms slow.
    assert_eq!(read_clock_us(&mut simulation, 1), virtual_us + 10_000);
    assert_eq!(read_clock_us(&mut simulation, 2), virtual_us - 5_000);

    // Removing the drift keeps the clock where it is and restores the rate.
    simulation.set_clock_drift_ppm(1, 0);
    simulation.run_for(Duration::from_secs(10));
    assert_eq!(
        read_clock_us(&mut simulation, 1),
        virtual_us + 10_000 + 10_000_000
    );
}

#[test]
fn a_backwards_step_is_visible_to_the_node() {
    let mut simulation = recorders(4);
    simulation.run_until(SimTime::from_secs(1));
    let before = read_clock_us(&mut simulation, 3);
    simulation.set_clock_skew_us(3, -250_000);
    simulation.run_for(Duration::from_millis(100));
    let after = read_clock_us(&mut simulation, 3);
    assert_eq!(after, before + 100_000 - 250_000);
    assert!(after < before, "the clock did not step backwards");
    assert!(
        simulation
            .trace()
            .lines()
            .iter()
            .any(|line| line.ends_with("clock 3 skew_us=-250000"))
    );
}

#[test]
fn the_clock_survives_a_crash_because_it_belongs_to_the_machine() {
    let mut simulation = recorders(5);
    simulation.set_clock_skew_us(4, 42_000);
    simulation.crash(4);
    simulation.restart(4);
    let restarted = simulation.process(4).unwrap();
    assert_eq!(
        restarted.clock_readings_us,
        [WALL_CLOCK_START_US + 42_000],
        "handle_start of the new process reads the skewed clock"
    );
}

#[test]
fn randomized_clocks_stay_within_their_bounds_and_follow_the_seed() {
    let readings = |seed: u64| {
        let mut simulation = recorders(seed);
        simulation.randomize_clocks(20_000, 200);
        simulation.run_until(SimTime::from_secs(100));
        let nodes = simulation.node_ids();
        nodes
            .into_iter()
            .map(|node| {
                let clock = simulation.clock(node);
                assert!(clock.skew_us().abs() <= 20_000);
                assert!(clock.drift_ppm().abs() <= 200);
                simulation.clock_now_us(node)
            })
            .collect::<Vec<u64>>()
    };
    let first = readings(6);
    assert_eq!(first, readings(6));
    assert_ne!(first, readings(7));
    // Skew of 20 ms plus 200 ppm of 100 s (20 ms) bounds every reading.
    let virtual_us = WALL_CLOCK_START_US + 100_000_000;
    for reading in &first {
        assert!(reading.abs_diff(virtual_us) <= 40_000, "reading {reading}");
    }
    assert!(first.iter().any(|&reading| reading != virtual_us));
}

#[test]
#[should_panic(expected = "beyond the maximum")]
fn a_skew_beyond_the_bound_is_refused() {
    recorders(8).set_clock_skew_us(1, -CLOCK_SKEW_US_MAX - 1);
}
