//! Runs one `dsss sim run` scenario and prints its speed: a target for `perf record` when
//! the simulator's own speed is in question (docs/simulator.md, "Speed").
//!
//! `cargo run --release -p dsss-simulations --example scenario_speed -- TOPOLOGY WORKLOAD SECONDS`

use std::time::{Duration, Instant};

use dsss_simulations::NodeCosts;

/// The dsss binary's allocator (cli/src/main.rs), so that this profile is `dsss sim run`'s.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use dsss_simulations::scenario::{Scenario, parse_workload};

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (topology, workload, seconds, faults, seed) = match arguments.as_slice() {
        [topology, workload, seconds] => (topology, workload, seconds, None, 1),
        [topology, workload, seconds, faults, seed] => (
            topology,
            workload,
            seconds,
            Some(faults),
            seed.parse().expect("a seed"),
        ),
        _ => {
            eprintln!("usage: scenario_speed TOPOLOGY WORKLOAD SECONDS [FAULTS SEED]");
            std::process::exit(2);
        }
    };
    let read = |path: &str| {
        std::fs::read_to_string(path).unwrap_or_else(|error| {
            eprintln!("cannot read {path}: {error}");
            std::process::exit(2)
        })
    };
    let topology = dsss_topology::parse(topology, &read(topology)).expect("a valid topology");
    let workload = parse_workload(&read(workload)).expect("a valid workload");
    let seconds: u64 = seconds.parse().expect("whole seconds");
    let scenario = Scenario {
        topology,
        workload,
        faults: dsss_simulations::scenario::parse_faults(
            &faults.map(|path| read(path)).unwrap_or_default(),
        )
        .expect("a valid fault file"),
        seed,
        duration: Duration::from_secs(seconds),
        node_costs: NodeCosts::FREE,
        planted_seal_without_a_region: false,
    };
    let started = Instant::now();
    let report = scenario.run().expect("the run completes");
    let wall = started.elapsed();
    let simulated = report.session.simulated;
    println!(
        "passed {}; {:.1} s simulated in {:.2} s of wall time ({:.1}x)",
        report.passed(),
        simulated.as_secs_f64(),
        wall.as_secs_f64(),
        simulated.as_secs_f64() / wall.as_secs_f64()
    );
}
