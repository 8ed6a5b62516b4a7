//! Scripted link faults (`link_delay`, `link_loss`) in `dsss sim run`'s scenarios: a slowed
//! link slows the global writes it carries while it stands, and only then; a lossy link keeps
//! every check; the example file runs. Replay a failing seed with `DSSS_SEED=S`.

use std::path::Path;
use std::time::Duration;

use dsss_simulations::run_seeds;
use dsss_simulations::scenario::results::completed_samples;
use dsss_simulations::scenario::{Scenario, ScenarioReport, parse_faults, parse_workload};

fn example(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/sim")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn scenario(seed: u64, faults: &str, duration: Duration) -> Scenario {
    Scenario {
        topology: dsss_topology::local_default(),
        workload: parse_workload(&example("workloads/registers.toml"))
            .expect("the example workload reads"),
        faults: parse_faults(faults).expect("the fault file reads"),
        seed,
        duration,
        node_costs: dsss_simulations::NodeCosts::FREE,
        planted_seal_without_a_region: false,
    }
}

fn run(scenario: &Scenario) -> ScenarioReport {
    let report = scenario.run().expect("the files are valid");
    assert!(
        report.passed(),
        "seed {}:\n{}",
        scenario.seed,
        report.session
    );
    report
}

/// The global-write latencies (ms) of `region`'s calls that began in `[from, until)` of the
/// operation window and ended before `until`, sorted.
fn latencies_ms(
    report: &ScenarioReport,
    region: &str,
    from: Duration,
    until: Duration,
) -> Vec<f64> {
    let samples = completed_samples(&report.histories, "global_write");
    let mut latencies: Vec<f64> = samples
        .get(region)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|(began, latency)| *began >= from && *began + *latency < until)
        .map(|(_, latency)| latency.as_secs_f64() * 1_000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    latencies
}

/// The median (lower middle) of sorted latencies.
fn p50(latencies: &[f64]) -> f64 {
    assert!(!latencies.is_empty(), "no global write in the interval");
    latencies[(latencies.len() - 1) / 2]
}

/// The topology's one-way delay between local-a and local-c, and the delay the fault sets.
const TOPOLOGY_DELAY_MS: f64 = 35.0;
const SLOW_DELAY_MS: f64 = 70.0;

/// The link between local-a (where the coordinator leads) and local-c goes from 35 ms to
/// 70 ms each way from 2 s to 6 s. Against a run of the same seed without the fault, the
/// global writes begun and finished while the delay stood are slower at the median: local-c's
/// by at least the added one-way delay (its writes cross the link to be sealed, and the seal
/// crosses it back), the other regions' by at least half of it (every seal waits for
/// local-c's closed timestamp, which crosses the link). Those begun a second after it ended
/// are back below the run without it plus the added delay. Simulated times: the same on every
/// machine.
#[test]
fn a_slow_link_raises_the_global_write_latency_while_it_stands() {
    let slow = format!(
        "[[fault]]\nat = \"2s\"\nkind = \"link_delay\"\nregions = [\"local-a\", \"local-c\"]\n\
         delay = \"{SLOW_DELAY_MS}ms\"\nfor = \"4s\"\n"
    );
    let added_ms = SLOW_DELAY_MS - TOPOLOGY_DELAY_MS;
    run_seeds("link_delay_latency", 2, |seed| {
        let duration = Duration::from_secs(9);
        let with = run(&scenario(seed, &slow, duration));
        let without = run(&scenario(seed, "", duration));
        assert_eq!(with.session.faults.link_changes, 2, "both ways");
        let during = (Duration::from_secs(2), Duration::from_secs(6));
        let after = (Duration::from_secs(7), duration);
        for region in ["local-a", "local-b", "local-c"] {
            let p50_of = |report: &ScenarioReport, (from, until): (Duration, Duration)| {
                p50(&latencies_ms(report, region, from, until))
            };
            let (slowed, plain) = (p50_of(&with, during), p50_of(&without, during));
            let (slowed_after, plain_after) = (p50_of(&with, after), p50_of(&without, after));
            println!(
                "seed {seed} {region}: global-write p50 while the link is slow {slowed:.1} ms \
                 (without the fault {plain:.1} ms); a second after it ended {slowed_after:.1} \
                 ms (without {plain_after:.1} ms)"
            );
            let rise_min = if region == "local-c" {
                added_ms
            } else {
                added_ms / 2.0
            };
            assert!(
                slowed >= plain + rise_min,
                "seed {seed} {region}: global-write p50 {slowed:.1} ms with the slow link, \
                 {plain:.1} ms without; expected a rise of at least {rise_min} ms"
            );
            assert!(
                slowed_after < plain_after + added_ms,
                "seed {seed} {region}: after the fault, p50 {slowed_after:.1} ms against \
                 {plain_after:.1} ms without it"
            );
        }
    });
}

/// A link that loses, duplicates and reorders many of its messages both ways, beside a link
/// slowed one way and the seeded swarm of faults: every check passes (one order across
/// objects, linearizable `sync()` reads, convergence, the cluster's own checks).
#[test]
fn a_lossy_link_keeps_every_check() {
    let faults = r#"
[swarm]
preset = "standard"

[[fault]]
at = "1s"
kind = "link_loss"
regions = ["local-a", "local-b"]
loss = 0.4
duplicate = 0.2
reorder = 0.3
reorder_delay_max = "80ms"
for = "4s"

[[fault]]
at = "3s"
kind = "link_delay"
from = "local-c"
to = "local-b"
delay = "400ms"
jitter = "100ms"
for = "5s"
"#;
    run_seeds("link_loss_checks", 4, |seed| {
        // The window ends at 6 s: the delay still stands and is lifted by the heal.
        let report = run(&scenario(seed, faults, Duration::from_secs(6)));
        println!("{}", report.session);
        assert_eq!(report.session.faults.link_changes, 3, "seed {seed}");
        for (region, results) in &report.results.regions {
            assert!(
                results.operations["global_write"].completed > 0,
                "seed {seed}: {region} completed no global write"
            );
        }
    });
}

/// A link at the largest delay (60 s, far beyond every timeout) for a while keeps every check:
/// messages still in flight at the heal arrive a minute late, as stale copies.
#[test]
fn a_link_at_the_largest_delay_keeps_every_check() {
    let faults = "[[fault]]\nat = \"1s\"\nkind = \"link_delay\"\nregions = [\"local-b\", \
                  \"local-c\"]\ndelay = \"60s\"\njitter = \"60s\"\nfor = \"2s\"\n";
    run_seeds("link_delay_largest", 2, |seed| {
        let report = run(&scenario(seed, faults, Duration::from_secs(4)));
        println!("{}", report.session);
        assert_eq!(report.session.faults.link_changes, 2, "seed {seed}");
    });
}

/// `examples/sim/faults/slow-link.toml` runs as written and keeps every check.
#[test]
fn the_slow_link_example_keeps_every_check() {
    run_seeds("link_example", 2, |seed| {
        let report = run(&scenario(
            seed,
            &example("faults/slow-link.toml"),
            Duration::from_secs(10),
        ));
        println!("{}\n{}", report.session, report.results.table());
        // Both ways of one link, one way of another, one way lossy.
        assert_eq!(report.session.faults.link_changes, 4, "seed {seed}");
    });
}

/// The same seed and link faults give the same run.
#[test]
fn the_same_seed_gives_the_same_run_with_link_faults() {
    let run = |seed| {
        scenario(
            seed,
            &example("faults/slow-link.toml"),
            Duration::from_secs(9),
        )
        .run()
        .expect("runs")
        .to_json()
    };
    assert_eq!(run(5), run(5));
}

/// A link slow enough that a round trip to the coordinator leader takes longer than an
/// instance's attempt timeout (local-a <-> local-c at 150 ms each way, a 300 ms round trip;
/// instances give an attempt 340 ms on this topology, and the coordinator's confirmation of its
/// leadership adds the 40 ms round trip to local-b) still lets local-c's `sync()` barriers
/// through in about one round trip: the region waits for the coordinator as long as the
/// production driver waits for a call (2 s), and an instance takes the answer to an attempt it
/// gave up on (every attempt names a valid barrier). Before both, the region leader tried
/// other replicas after 210 ms of silence and instances dropped the late answers, and the
/// slowest `sync()` took 1.4 to 3.2 s on seeds 0 to 5.
#[test]
fn sync_reads_take_one_round_trip_through_a_link_slower_than_the_attempt_timeout() {
    let faults = "[[fault]]\nat = \"2s\"\nkind = \"link_delay\"\nregions = [\"local-a\", \
                  \"local-c\"]\ndelay = \"150ms\"\nfor = \"6s\"\n";
    run_seeds("link_faults_slow_sync", 2, |seed| {
        let report = run(&scenario(seed, faults, Duration::from_secs(9)));
        let samples = completed_samples(&report.histories, "sync_read");
        let during: Vec<Duration> = samples["local-c"]
            .iter()
            .filter(|(began, latency)| {
                *began >= Duration::from_secs(3) && *began + *latency < Duration::from_secs(8)
            })
            .map(|(_, latency)| *latency)
            .collect();
        assert!(
            during.len() >= 2,
            "seed {seed}: only {} of local-c's sync() reads completed while the link was slow",
            during.len()
        );
        let slowest = during.iter().max().expect("some sync() reads");
        println!(
            "seed {seed}: local-c's slowest of {} sync() reads while the link was slow took \
             {slowest:?}",
            during.len()
        );
        assert!(
            *slowest < Duration::from_millis(500),
            "seed {seed}: a sync() read took {slowest:?} through a 300 ms round trip"
        );
    });
}
