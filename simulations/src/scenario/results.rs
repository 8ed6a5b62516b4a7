//! What a `dsss sim run` measured, from the instances' histories alone: latency per region and
//! operation class, throughput, availability and the longest stall, each latency beside d_max
//! and the region's sequential-consistency bound; written as a terminal table, JSON and CSV.
//!
//! Everything here is a function of the run's histories, so the same seed and files give the
//! same bytes. Latencies go into HDR histograms of microseconds with three significant digits:
//! a percentile is the top of its bucket, at most 0.1% above the exact value; memory stays
//! bounded however long the run; and the histograms of several seeds merge exactly (a sweep's
//! percentiles pool every run's samples rather than averaging percentiles).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use dsss_topology::Topology;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::time::SimTime;
use crate::workloads::global::stages::STAGES;
use crate::workloads::session::{SessionHistories, SessionOperation};

/// The operation classes measured, in report order.
pub const OPERATION_CLASSES: [&str; 4] =
    ["global_write", "regional_write", "sync_read", "local_read"];

/// One class of operations of one region.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ClassResults {
    /// Operations that completed (a write that returned, a read).
    pub completed: u64,
    /// Operations that failed (a write whose effect is unknown, a barrier that gave up).
    pub failed: u64,
    /// Latency percentiles of the completed operations, in milliseconds (absent when none
    /// completed).
    pub latency_ms: Option<Percentiles>,
    /// The p50 and p99 latency over d_max.
    pub over_d_max: Option<[f64; 2]>,
    /// The p50 and p99 latency over the region's sequential-consistency bound.
    pub over_sc_bound: Option<[f64; 2]>,
    /// Every completed operation's latency, in microseconds (absent when none completed).
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// One region's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RegionResults {
    /// The largest one-way delay from this region to another (the intra-region delay with
    /// one region), in milliseconds: with local reads, a sequentially consistent write from
    /// here cannot complete faster (docs/design.md section 7).
    pub sc_bound_ms: f64,
    /// Completed operations per second of the operation window.
    pub throughput_per_s: f64,
    /// The share of operations that completed, of those that completed, failed, or (open
    /// loop) arrived while the instance's backlog was full.
    pub availability: f64,
    /// Open loop: operations that arrived in the window (0 in a closed loop).
    pub arrivals: u64,
    /// Open loop: operations that arrived while their instance's backlog was full and were
    /// never run (counted against availability).
    pub arrivals_shed: u64,
    /// The longest stretch of the operation window in which no operation of the region's
    /// instances completed, in milliseconds.
    pub longest_stall_ms: f64,
    /// By operation class.
    pub operations: BTreeMap<String, ClassResults>,
    /// Where the time of the region's global writes went, by stage (batch_wait,
    /// to_coordinator, coordinator_round, watermark_wait, fan_out, apply; see
    /// [`crate::workloads::global::stages`]): percentiles in milliseconds over the global calls
    /// that reached the region in the window and were answered with every stage seen.
    pub global_write_stages_ms: BTreeMap<String, Percentiles>,
    /// The region's node that spent the largest share of the operation window working, and
    /// that share (0 to 1), with node costs ([`crate::costs`]); absent without them. A share
    /// near 1 is a node that cannot keep up: what waits for it waits longer and longer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub busiest_node: Option<BusiestNode>,
}

/// A region's busiest node in the operation window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BusiestNode {
    /// Its id.
    pub node: u64,
    /// The share of the window it spent working.
    pub busy_share: f64,
}

/// A run's results.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RunResults {
    /// The length of the operation window, in seconds.
    pub operation_window_s: f64,
    /// d_max of the topology, in milliseconds.
    pub d_max_ms: f64,
    /// By region name.
    pub regions: BTreeMap<String, RegionResults>,
}

/// Rounds to a thousandth, so that the files read well and stay the same across platforms'
/// last-digit formatting.
fn thousandths(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

fn ms(duration: Duration) -> f64 {
    thousandths(duration.as_secs_f64() * 1_000.0)
}

/// The longest latency a histogram tells apart, in microseconds; longer ones count as it.
const LATENCY_US_MAX: u64 = 3_600_000_000;

/// An empty latency histogram: microseconds, three significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("the bounds are valid")
}

/// The percentiles of `histogram`, which holds at least one sample, in milliseconds.
pub fn percentiles_of(histogram: &Histogram<u64>) -> Percentiles {
    let at = |quantile: f64| us_to_ms(histogram.value_at_quantile(quantile));
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
        p999: at(0.999),
        max: us_to_ms(histogram.max()),
    }
}

fn us_to_ms(us: u64) -> f64 {
    thousandths(us as f64 / 1_000.0)
}

/// The sequential-consistency bound of each region of `topology`, in microseconds.
fn sc_bounds_us(topology: &Topology) -> BTreeMap<String, u64> {
    let count = topology.regions.len();
    topology
        .regions
        .iter()
        .enumerate()
        .map(|(index, region)| {
            let bound = (0..count)
                .filter(|&other| other != index || count == 1)
                .map(|other| topology.latency.link(index, other).one_way_us)
                .max()
                .unwrap_or(0);
            (region.id.clone(), bound)
        })
        .collect()
}

/// The class of `operation` (none for the final round's failed barrier).
fn class_of(operation: &SessionOperation) -> Option<&'static str> {
    match operation {
        SessionOperation::Write { object, .. } if object.starts_with("register/global-") => {
            Some("global_write")
        }
        SessionOperation::Write { .. } => Some("regional_write"),
        SessionOperation::Call { global: true, .. } => Some("global_write"),
        SessionOperation::Call { global: false, .. } => Some("regional_write"),
        SessionOperation::Read { synced: true, .. }
        | SessionOperation::Query { synced: true, .. } => Some("sync_read"),
        SessionOperation::Read { .. } | SessionOperation::Query { .. } => Some("local_read"),
        SessionOperation::SyncFailed {
            object: Some(_), ..
        } => Some("sync_read"),
        SessionOperation::SyncFailed { object: None, .. } => None,
    }
}

/// When `operation` began and ended, and whether it completed.
fn span_of(operation: &SessionOperation) -> (SimTime, SimTime, bool) {
    match operation {
        SessionOperation::Write {
            began_at,
            ended_at,
            replaced,
            ..
        } => (*began_at, *ended_at, replaced.is_some()),
        SessionOperation::Call {
            began_at,
            ended_at,
            outcome,
            ..
        } => (*began_at, *ended_at, outcome.is_some()),
        SessionOperation::Read {
            began_at, ended_at, ..
        }
        | SessionOperation::Query {
            began_at, ended_at, ..
        } => (*began_at, *ended_at, true),
        SessionOperation::SyncFailed {
            began_at, ended_at, ..
        } => (*began_at, *ended_at, false),
    }
}

/// Measures the operations that began inside the operation window of `histories`.
pub fn measure(topology: &Topology, histories: &SessionHistories) -> RunResults {
    let from = histories.operations_from;
    let until = histories.operations_until;
    let window = until.saturating_duration_since(from);
    let d_max_us = topology.latency.d_max_us();
    let bounds = sc_bounds_us(topology);
    // Per region: per class, the latencies of completed operations and the failures; and
    // every completion time.
    let mut samples: BTreeMap<&str, BTreeMap<&str, (Histogram<u64>, u64)>> = BTreeMap::new();
    let mut completions: BTreeMap<&str, Vec<SimTime>> = BTreeMap::new();
    let mut shed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut arrived: BTreeMap<&str, u64> = BTreeMap::new();
    for region in &topology.regions {
        samples.insert(region.id.as_str(), BTreeMap::new());
        completions.insert(region.id.as_str(), Vec::new());
    }
    for history in histories.instances.values() {
        let region = history.region.as_str();
        *shed.entry(region).or_default() += history.arrivals_shed;
        *arrived.entry(region).or_default() += history.arrivals;
        for operation in &history.operations {
            let Some(class) = class_of(operation) else {
                continue;
            };
            let (began_at, ended_at, completed) = span_of(operation);
            if began_at < from || began_at >= until {
                continue;
            }
            let entry = samples
                .entry(region)
                .or_default()
                .entry(class)
                .or_insert_with(|| (latency_histogram(), 0));
            if completed {
                let latency_us = ended_at.saturating_duration_since(began_at).as_micros();
                entry
                    .0
                    .saturating_record(u64::try_from(latency_us).unwrap_or(u64::MAX));
                completions.entry(region).or_default().push(ended_at);
            } else {
                entry.1 += 1;
            }
        }
    }
    let ratio = |latency_us: f64, bound_us: u64| {
        if bound_us == 0 {
            0.0
        } else {
            thousandths(latency_us / bound_us as f64)
        }
    };
    let mut regions = BTreeMap::new();
    for (region, classes) in samples {
        let bound_us = bounds.get(region).copied().unwrap_or(0);
        let mut results = RegionResults {
            sc_bound_ms: thousandths(bound_us as f64 / 1_000.0),
            ..RegionResults::default()
        };
        let arrivals_shed = shed.get(region).copied().unwrap_or(0);
        results.arrivals_shed = arrivals_shed;
        results.arrivals = arrived.get(region).copied().unwrap_or(0);
        let (mut completed_total, mut failed_total) = (0u64, arrivals_shed);
        for class in OPERATION_CLASSES {
            let Some((histogram, failed)) = classes.get(class) else {
                continue;
            };
            completed_total += histogram.len();
            failed_total += failed;
            let mut class_results = ClassResults {
                completed: histogram.len(),
                failed: *failed,
                ..ClassResults::default()
            };
            if !histogram.is_empty() {
                let p50_us = histogram.value_at_quantile(0.5) as f64;
                let p99_us = histogram.value_at_quantile(0.99) as f64;
                class_results.latency_ms = Some(percentiles_of(histogram));
                class_results.over_d_max = Some([ratio(p50_us, d_max_us), ratio(p99_us, d_max_us)]);
                class_results.over_sc_bound =
                    Some([ratio(p50_us, bound_us), ratio(p99_us, bound_us)]);
                class_results.histogram = Some(histogram.clone());
            }
            results.operations.insert(class.to_owned(), class_results);
        }
        results.throughput_per_s = if window.is_zero() {
            0.0
        } else {
            thousandths(completed_total as f64 / window.as_secs_f64())
        };
        results.availability = if completed_total + failed_total == 0 {
            1.0
        } else {
            thousandths(completed_total as f64 / (completed_total + failed_total) as f64)
        };
        let mut times = completions.remove(region).unwrap_or_default();
        times.retain(|time| *time >= from && *time <= until);
        times.sort_unstable();
        let mut last = from;
        let mut longest = Duration::ZERO;
        for time in times.into_iter().chain(std::iter::once(until)) {
            longest = longest.max(time.saturating_duration_since(last));
            last = time;
        }
        results.longest_stall_ms = ms(longest);
        results.busiest_node = histories
            .node_busy_shares
            .get(region)
            .and_then(|shares| {
                shares
                    .iter()
                    .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
                    .filter(|(_, share)| **share > 0.0)
            })
            .map(|(node, share)| BusiestNode {
                node: *node,
                busy_share: thousandths(*share),
            });
        regions.insert(region.to_owned(), results);
    }
    let mut stages: BTreeMap<&str, Vec<Histogram<u64>>> = BTreeMap::new();
    for call in &histories.global_call_stages {
        if call.arrived < from || call.arrived >= until {
            continue;
        }
        let histograms = stages
            .entry(call.region.as_str())
            .or_insert_with(|| STAGES.iter().map(|_| latency_histogram()).collect());
        for (histogram, length) in histograms.iter_mut().zip(call.stages) {
            histogram.saturating_record(u64::try_from(length.as_micros()).unwrap_or(u64::MAX));
        }
    }
    for (region, histograms) in stages {
        if let Some(results) = regions.get_mut(region) {
            results.global_write_stages_ms = STAGES
                .iter()
                .zip(&histograms)
                .map(|(stage, histogram)| ((*stage).to_owned(), percentiles_of(histogram)))
                .collect();
        }
    }
    RunResults {
        operation_window_s: thousandths(window.as_secs_f64()),
        d_max_ms: thousandths(d_max_us as f64 / 1_000.0),
        regions,
    }
}

impl RunResults {
    /// One CSV row per region and stage of its global writes, with a header.
    pub fn stages_csv(&self) -> String {
        let mut out = String::from("region,stage,p50_ms,p90_ms,p99_ms,p999_ms,max_ms\n");
        for (region, results) in &self.regions {
            for stage in STAGES {
                if let Some(p) = results.global_write_stages_ms.get(stage) {
                    let _ = writeln!(
                        out,
                        "{region},{stage},{},{},{},{},{}",
                        p.p50, p.p90, p.p99, p.p999, p.max
                    );
                }
            }
        }
        out
    }

    /// The terminal table of where global writes' time went: per region, each stage's p50
    /// and p99 in milliseconds.
    pub fn stages_table(&self) -> String {
        let mut out = format!("{:<16} {:<10}", "global writes", "ms");
        for stage in STAGES {
            let _ = write!(out, " {stage:>17}");
        }
        for (region, results) in &self.regions {
            if results.global_write_stages_ms.is_empty() {
                continue;
            }
            for (label, pick) in [
                ("p50", (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64),
                ("p99", |p: &Percentiles| p.p99),
            ] {
                let _ = write!(out, "\n{region:<16} {label:<10}");
                for stage in STAGES {
                    match results.global_write_stages_ms.get(stage) {
                        Some(p) => {
                            let _ = write!(out, " {:>17.2}", pick(p));
                        }
                        None => {
                            let _ = write!(out, " {:>17}", "-");
                        }
                    }
                }
            }
        }
        out
    }

    /// One CSV row per region and operation class, with a header.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "region,class,completed,failed,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,p50_over_d_max,\
             p99_over_d_max,p50_over_sc_bound,p99_over_sc_bound,region_availability,\
             region_longest_stall_ms,region_arrivals_shed\n",
        );
        for (region, results) in &self.regions {
            for (class, class_results) in &results.operations {
                let latency = class_results.latency_ms.map_or_else(
                    || ",,,,".to_owned(),
                    |p| format!("{},{},{},{},{}", p.p50, p.p90, p.p99, p.p999, p.max),
                );
                let pair = |value: Option<[f64; 2]>| {
                    value.map_or_else(|| ",".to_owned(), |[a, b]| format!("{a},{b}"))
                };
                let _ = writeln!(
                    out,
                    "{region},{class},{},{},{latency},{},{},{},{},{}",
                    class_results.completed,
                    class_results.failed,
                    pair(class_results.over_d_max),
                    pair(class_results.over_sc_bound),
                    results.availability,
                    results.longest_stall_ms,
                    results.arrivals_shed
                );
            }
        }
        out
    }

    /// The terminal table: one block per region.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:<15} {:>7} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8}",
            "region",
            "operation",
            "done",
            "failed",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms",
            "p50/d",
            "p50/sc"
        );
        for (region, results) in &self.regions {
            for (class, class_results) in &results.operations {
                let (latency, ratios) = match (
                    class_results.latency_ms,
                    class_results.over_d_max,
                    class_results.over_sc_bound,
                ) {
                    (Some(p), Some([d, _]), Some([sc, _])) => (
                        format!(
                            "{:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                            p.p50, p.p90, p.p99, p.p999, p.max
                        ),
                        format!("{d:>8.2} {sc:>8.2}"),
                    ),
                    _ => (format!("{:>49}", "-"), format!("{:>17}", "-")),
                };
                let _ = writeln!(
                    out,
                    "{region:<16} {class:<15} {:>7} {:>6} {latency} {ratios}",
                    class_results.completed, class_results.failed
                );
            }
            let mut shed = if results.arrivals_shed > 0 {
                format!(", {} arrivals shed", results.arrivals_shed)
            } else {
                String::new()
            };
            if let Some(busiest) = results.busiest_node {
                shed += &format!(
                    ", busiest node {} {:.0}% busy",
                    busiest.node,
                    busiest.busy_share * 100.0
                );
            }
            let _ = writeln!(
                out,
                "{region:<16} throughput {:.1}/s, availability {:.3}, longest stall {:.1} ms, \
                 sc bound {:.1} ms{shed}",
                results.throughput_per_s,
                results.availability,
                results.longest_stall_ms,
                results.sc_bound_ms
            );
        }
        let _ = write!(
            out,
            "d_max {:.1} ms; operation window {:.1} s",
            self.d_max_ms, self.operation_window_s
        );
        out
    }
}

/// The completed operations of `class` begun inside the operation window, per region: when
/// each began (since the window opened) and its latency, in invocation order. What the plots
/// draw.
pub fn completed_samples(
    histories: &SessionHistories,
    class: &str,
) -> BTreeMap<String, Vec<(Duration, Duration)>> {
    let from = histories.operations_from;
    let until = histories.operations_until;
    let mut samples: BTreeMap<String, Vec<(Duration, Duration)>> = BTreeMap::new();
    for history in histories.instances.values() {
        for operation in &history.operations {
            if class_of(operation) != Some(class) {
                continue;
            }
            let (began_at, ended_at, completed) = span_of(operation);
            if !completed || began_at < from || began_at >= until {
                continue;
            }
            samples.entry(history.region.clone()).or_default().push((
                began_at.saturating_duration_since(from),
                ended_at.saturating_duration_since(began_at),
            ));
        }
    }
    for region_samples in samples.values_mut() {
        region_samples.sort_unstable();
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workloads::session::InstanceHistory;

    fn at_ms(ms: u64) -> SimTime {
        SimTime::from_millis(ms)
    }

    fn write(object: &str, began: u64, ended: u64, ok: bool) -> SessionOperation {
        SessionOperation::Write {
            object: object.to_owned(),
            value: 1,
            replaced: ok.then_some(0),
            began_at: at_ms(began),
            ended_at: at_ms(ended),
        }
    }

    #[test]
    fn results_count_latency_failures_and_stalls_per_region_and_class() {
        let topology = dsss_topology::local_default();
        let region = topology.regions[0].id.clone();
        let mut history = InstanceHistory::new(&region);
        // Ten global writes of 10..=100 ms back to back from 1 s, one failed write, one
        // regional write, a failed barrier; then nothing from 2.5 s to the end at 4 s.
        let mut now = 1_000;
        for index in 1..=10 {
            history.push(write("register/global-0", now, now + 10 * index, true));
            now += 10 * index;
        }
        history.push(write("register/global-1", 1_600, 2_000, false));
        history.push(write(&format!("register/{region}"), 2_000, 2_500, true));
        history.push(SessionOperation::SyncFailed {
            object: Some("register/global-0".to_owned()),
            began_at: at_ms(2_000),
            ended_at: at_ms(2_400),
        });
        // Before the window: not measured.
        history.push(write("register/global-0", 500, 900, true));
        let histories = SessionHistories {
            instances: BTreeMap::from([(1, history)]),
            operations_from: at_ms(1_000),
            operations_until: at_ms(4_000),
            global_call_stages: Vec::new(),
            node_busy_shares: BTreeMap::new(),
        };
        let results = measure(&topology, &histories);
        let measured = &results.regions[&region];
        let global = &measured.operations["global_write"];
        assert_eq!((global.completed, global.failed), (10, 1));
        // HDR buckets: each percentile is at most 0.1% above the exact nearest rank.
        let latency = global.latency_ms.unwrap();
        for (measured, exact) in [
            (latency.p50, 50.0),
            (latency.p90, 90.0),
            (latency.max, 100.0),
        ] {
            assert!(
                measured >= exact && measured <= exact * 1.001,
                "{measured} ms for an exact {exact} ms"
            );
        }
        assert_eq!(measured.operations["regional_write"].completed, 1);
        assert_eq!(measured.operations["sync_read"].failed, 1);
        assert_eq!(measured.availability, thousandths(11.0 / 13.0));
        assert_eq!(measured.longest_stall_ms, 1_500.0, "from 2.5 s to the end");
        assert_eq!(measured.throughput_per_s, thousandths(11.0 / 3.0));
        let d_max_ms = topology.latency.d_max_us() as f64 / 1_000.0;
        assert_eq!(
            global.over_d_max.unwrap()[0],
            thousandths(latency.p50 / d_max_ms)
        );
        // Regions without instances are listed with no operations.
        assert_eq!(results.regions.len(), topology.regions.len());
        let csv = results.to_csv();
        assert_eq!(csv.lines().count(), 1 + 3, "a header and three classes");
        assert!(results.table().contains("global_write"));
    }

    #[test]
    fn shed_arrivals_count_against_availability_and_histograms_pool_runs() {
        let topology = dsss_topology::local_default();
        let region = topology.regions[0].id.clone();
        let run = |latencies_ms: &[u64], shed: u64| {
            let mut history = InstanceHistory::new(&region);
            for (index, latency) in latencies_ms.iter().enumerate() {
                let began = 1_000 + 100 * index as u64;
                history.push(write("register/global-0", began, began + latency, true));
            }
            history.arrivals_shed = shed;
            let histories = SessionHistories {
                instances: BTreeMap::from([(1, history)]),
                operations_from: at_ms(1_000),
                operations_until: at_ms(4_000),
                global_call_stages: Vec::new(),
                node_busy_shares: BTreeMap::new(),
            };
            measure(&topology, &histories)
        };
        let first = run(&[10, 20, 30], 1);
        let measured = &first.regions[&region];
        assert_eq!(measured.arrivals_shed, 1);
        assert_eq!(measured.availability, thousandths(3.0 / 4.0));
        assert!(first.to_csv().lines().nth(1).unwrap().ends_with(",1"));
        assert!(first.table().contains("1 arrivals shed"));
        // Pooling two runs' histograms gives the percentiles of all six samples, not the
        // mean of each run's.
        let second = run(&[400, 500, 600], 0);
        let mut pooled = latency_histogram();
        for results in [&first, &second] {
            let class = &results.regions[&region].operations["global_write"];
            pooled.add(class.histogram.as_ref().unwrap()).unwrap();
        }
        let percentiles = percentiles_of(&pooled);
        assert_eq!(pooled.len(), 6);
        assert!((30.0..=30.03).contains(&percentiles.p50), "{percentiles:?}");
        assert!(
            (600.0..=600.6).contains(&percentiles.max),
            "{percentiles:?}"
        );
    }
}
