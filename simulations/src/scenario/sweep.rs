//! Sweeps (`dsss sim sweep`): one scenario run across the values of one parameter, several
//! seeds per value, the runs spread over threads; one row per value and region.
//!
//! A parameter also sets a single value of a single run (`dsss sim run --set NAME=VALUE`), so
//! that any run of a sweep can be replayed alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Serialize;

use super::results::{Percentiles, latency_histogram, percentiles_of};
use super::{Scenario, ScenarioError, ScenarioReport};

/// The most values one sweep takes.
pub const SWEEP_VALUES_MAX: usize = 64;

/// The most seeds per value.
pub const SWEEP_SEEDS_MAX: u64 = 1_000;

/// The parameters a sweep can vary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SweepParameter {
    /// The epoch length, in milliseconds (the topology's `epoch_ms`).
    EpochMs,
    /// A factor on every one-way delay and jitter between regions.
    LatencyScale,
    /// The coordinator replica that should lead (a node id among the replicas).
    PreferredLeader,
    /// Application instances per region.
    InstancesPerRegion,
    /// The longest think time of an instance, in milliseconds (a shorter one raises the rate).
    ThinkTimeMaxMs,
    /// The open-loop arrival rate of the whole run, per second.
    RatePerSecond,
    /// The CPU time a region node or coordinator replica spends on each event, in
    /// microseconds ([`crate::costs`]): where a node stops keeping up.
    CpuPerEventUs,
    /// The time one disk sync of a region node or coordinator replica takes, in microseconds.
    DiskSyncUs,
}

impl SweepParameter {
    /// Every parameter with its name.
    pub const ALL: [(SweepParameter, &'static str); 8] = [
        (SweepParameter::EpochMs, "epoch_ms"),
        (SweepParameter::LatencyScale, "latency_scale"),
        (SweepParameter::PreferredLeader, "preferred_leader"),
        (SweepParameter::InstancesPerRegion, "instances_per_region"),
        (SweepParameter::ThinkTimeMaxMs, "think_time_max_ms"),
        (SweepParameter::RatePerSecond, "rate_per_second"),
        (SweepParameter::CpuPerEventUs, "cpu_per_event_us"),
        (SweepParameter::DiskSyncUs, "disk_sync_us"),
    ];

    /// The parameter's name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(parameter, _)| *parameter == self)
            .map(|(_, name)| *name)
            .expect("every parameter is listed")
    }

    fn named(name: &str) -> Result<SweepParameter, String> {
        Self::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(parameter, _)| *parameter)
            .ok_or_else(|| {
                format!(
                    "no parameter {name:?}; the parameters are {}",
                    Self::ALL
                        .iter()
                        .map(|(_, name)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }

    /// Sets the parameter to `value` in `scenario`, or says why the value cannot be used.
    pub fn apply(self, scenario: &mut Scenario, value: f64) -> Result<(), String> {
        let name = self.name();
        let whole = |low: u64, high: u64| -> Result<u64, String> {
            if value.fract() == 0.0 && value >= low as f64 && value <= high as f64 {
                Ok(value as u64)
            } else {
                Err(format!(
                    "{name} = {value}: a whole number from {low} to {high}"
                ))
            }
        };
        match self {
            SweepParameter::EpochMs => {
                let epoch_ms = whole(1, dsss_topology::EPOCH_MS_MAX)?;
                let suspicion_ms = scenario.topology.cluster.suspicion_timeout_us / 1_000;
                if suspicion_ms < 2 * epoch_ms {
                    return Err(format!(
                        "{name} = {epoch_ms}: the topology's suspicion timeout ({suspicion_ms} \
                         ms) must be at least twice the epoch"
                    ));
                }
                scenario.topology.cluster.epoch_us = epoch_ms * 1_000;
            }
            SweepParameter::LatencyScale => {
                if !(value > 0.0 && value <= 100.0) {
                    return Err(format!("{name} = {value}: a factor above 0, at most 100"));
                }
                let matrix = &mut scenario.topology.latency;
                let count = matrix.region_count();
                for a in 0..count {
                    for b in a + 1..count {
                        let link = matrix.link(a, b);
                        let scaled = dsss_topology::Link {
                            one_way_us: (link.one_way_us as f64 * value).round() as u64,
                            jitter_us: (link.jitter_us as f64 * value).round() as u64,
                        };
                        matrix.set_link(a, b, scaled);
                    }
                }
            }
            SweepParameter::PreferredLeader => {
                let node = whole(0, u64::from(u32::MAX))?;
                if !scenario.topology.coordinator.replicas.contains(&node) {
                    return Err(format!(
                        "{name} = {node}: not a coordinator replica (the replicas are {:?})",
                        scenario.topology.coordinator.replicas
                    ));
                }
                scenario.topology.coordinator.preferred_leader = node;
            }
            SweepParameter::InstancesPerRegion => {
                scenario.workload.instances_per_region =
                    whole(1, super::files::INSTANCES_PER_REGION_MAX as u64)? as usize;
            }
            SweepParameter::ThinkTimeMaxMs => {
                if scenario.workload.rate_per_second.is_some() {
                    return Err(format!(
                        "{name}: the workload is open loop (rate_per_second); sweep \
                         rate_per_second instead"
                    ));
                }
                let think_ms = whole(0, 3_600_000)?;
                let think = std::time::Duration::from_millis(think_ms);
                scenario.workload.think_time_max = think;
                scenario.workload.think_time_min = scenario.workload.think_time_min.min(think);
            }
            SweepParameter::RatePerSecond => {
                let maximum = super::files::RATE_PER_SECOND_MAX;
                if scenario.workload.rate_per_second.is_none() {
                    return Err(format!(
                        "{name}: the workload is closed loop (think_time); sweep \
                         think_time_max_ms instead, or give it [arrival] rate_per_second"
                    ));
                }
                if !(value > 0.0 && value <= maximum) {
                    return Err(format!(
                        "{name} = {value}: a rate above 0, at most {maximum}"
                    ));
                }
                scenario.workload.rate_per_second = Some(value);
            }
            SweepParameter::CpuPerEventUs | SweepParameter::DiskSyncUs => {
                let maximum_us = crate::costs::NODE_COST_MAX.as_micros() as u64;
                let cost = std::time::Duration::from_micros(whole(0, maximum_us)?);
                if self == SweepParameter::CpuPerEventUs {
                    scenario.node_costs.cpu_per_event = cost;
                } else {
                    scenario.node_costs.disk_sync = cost;
                }
            }
        }
        Ok(())
    }
}

/// Reads `NAME=V1,V2,...` (a sweep) or `NAME=V` (one value).
pub fn parse_assignment(text: &str) -> Result<(SweepParameter, Vec<f64>), String> {
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write NAME=VALUE[,VALUE...], e.g. epoch_ms=1,2,5"))?;
    let parameter = SweepParameter::named(name.trim())?;
    let values = values
        .split(',')
        .map(|value| {
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .ok_or_else(|| format!("{name}: {value:?} is not a number"))
        })
        .collect::<Result<Vec<f64>, String>>()?;
    if values.len() > SWEEP_VALUES_MAX {
        return Err(format!(
            "{name}: {} values; a sweep takes at most {SWEEP_VALUES_MAX}",
            values.len()
        ));
    }
    Ok((parameter, values))
}

/// One run of a sweep.
#[derive(Debug)]
pub struct SweepRun {
    /// The parameter's value.
    pub value: f64,
    /// The seed.
    pub seed: u64,
    /// Its outcome.
    pub outcome: Result<ScenarioReport, ScenarioError>,
}

/// Runs `base` with `parameter` at each of `values`, on seeds `first_seed..first_seed +
/// seeds`, over `threads` threads; the runs come back in (value, seed) order whatever the
/// threads did. A value the parameter refuses is an error before anything runs.
pub fn run_sweep(
    base: &Scenario,
    parameter: SweepParameter,
    values: &[f64],
    first_seed: u64,
    seeds: u64,
    threads: usize,
) -> Result<Vec<SweepRun>, String> {
    if seeds == 0 || seeds > SWEEP_SEEDS_MAX {
        return Err(format!("seeds: {seeds} is outside 1..={SWEEP_SEEDS_MAX}"));
    }
    let mut jobs = Vec::new();
    for &value in values {
        for seed in first_seed..first_seed.saturating_add(seeds) {
            let mut scenario = base.clone();
            parameter.apply(&mut scenario, value)?;
            scenario.seed = seed;
            scenario.validate()?;
            jobs.push((value, scenario));
        }
    }
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<SweepRun>>> = Mutex::new((0..jobs.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let index = {
                        let mut next = next.lock().unwrap_or_else(|poison| poison.into_inner());
                        let index = *next;
                        *next += 1;
                        index
                    };
                    let Some((value, scenario)) = jobs.get(index) else {
                        break;
                    };
                    let run = SweepRun {
                        value: *value,
                        seed: scenario.seed,
                        outcome: scenario.run(),
                    };
                    results.lock().unwrap_or_else(|poison| poison.into_inner())[index] = Some(run);
                }
            });
        }
    });
    Ok(results
        .into_inner()
        .unwrap_or_else(|poison| poison.into_inner())
        .into_iter()
        .map(|run| run.expect("every job ran"))
        .collect())
}

/// One row of a sweep's summary: a value and a region over its seeds. Latencies pool every
/// run's samples (their histograms merged); availability and throughput are averaged.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepRow {
    /// The parameter's value.
    pub value: f64,
    /// The region.
    pub region: String,
    /// Runs that gave a report.
    pub runs: u64,
    /// Global-write p50 and p99 in ms, over the global writes of every run.
    pub global_write_p50_ms: Option<f64>,
    /// See above.
    pub global_write_p99_ms: Option<f64>,
    /// The pooled global-write p50 over d_max.
    pub global_write_p50_over_d_max: Option<f64>,
    /// `sync()` read p50 in ms, over the `sync()` reads of every run.
    pub sync_read_p50_ms: Option<f64>,
    /// Availability, averaged.
    pub availability: f64,
    /// Throughput per second, averaged.
    pub throughput_per_s: f64,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty())
        .then(|| (values.iter().sum::<f64>() / values.len() as f64 * 1_000.0).round() / 1_000.0)
}

/// The summary rows of `runs`, by value (in the order given) and region.
pub fn summarize(runs: &[SweepRun]) -> Vec<SweepRow> {
    let mut order: Vec<f64> = Vec::new();
    let mut by_value: BTreeMap<(usize, String), Vec<&ScenarioReport>> = BTreeMap::new();
    for run in runs {
        let index = match order.iter().position(|value| *value == run.value) {
            Some(index) => index,
            None => {
                order.push(run.value);
                order.len() - 1
            }
        };
        if let Ok(report) = &run.outcome {
            for region in report.results.regions.keys() {
                by_value
                    .entry((index, region.clone()))
                    .or_default()
                    .push(report);
            }
        }
    }
    by_value
        .into_iter()
        .map(|((index, region), reports)| {
            let of = |pick: &dyn Fn(&ScenarioReport) -> Option<f64>| -> Vec<f64> {
                reports.iter().filter_map(|report| pick(report)).collect()
            };
            // Every run's samples of a class, pooled.
            let pooled = |class: &str| -> Option<Percentiles> {
                let mut merged = latency_histogram();
                for report in &reports {
                    let histogram = report.results.regions[&region]
                        .operations
                        .get(class)
                        .and_then(|results| results.histogram.as_ref());
                    if let Some(histogram) = histogram {
                        // Same bounds and precision: the merge cannot fail.
                        merged.add(histogram).expect("latency histograms merge");
                    }
                }
                (!merged.is_empty()).then(|| percentiles_of(&merged))
            };
            let global_write = pooled("global_write");
            let d_max_ms = reports
                .first()
                .map_or(0.0, |report| report.results.d_max_ms);
            SweepRow {
                value: order[index],
                region: region.clone(),
                runs: reports.len() as u64,
                global_write_p50_ms: global_write.map(|p| p.p50),
                global_write_p99_ms: global_write.map(|p| p.p99),
                global_write_p50_over_d_max: global_write
                    .filter(|_| d_max_ms > 0.0)
                    .map(|p| (p.p50 / d_max_ms * 1_000.0).round() / 1_000.0),
                sync_read_p50_ms: pooled("sync_read").map(|p| p.p50),
                availability: mean(&of(&|report| {
                    Some(report.results.regions[&region].availability)
                }))
                .unwrap_or(0.0),
                throughput_per_s: mean(&of(&|report| {
                    Some(report.results.regions[&region].throughput_per_s)
                }))
                .unwrap_or(0.0),
            }
        })
        .collect()
}

fn optional(value: Option<f64>) -> String {
    value.map_or_else(String::new, |value| value.to_string())
}

/// The rows as CSV with a header; the parameter's name heads the first column.
pub fn rows_csv(parameter: SweepParameter, rows: &[SweepRow]) -> String {
    let mut out = format!(
        "{},region,runs,global_write_p50_ms,global_write_p99_ms,global_write_p50_over_d_max,\
         sync_read_p50_ms,availability,throughput_per_s\n",
        parameter.name()
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            row.value,
            row.region,
            row.runs,
            optional(row.global_write_p50_ms),
            optional(row.global_write_p99_ms),
            optional(row.global_write_p50_over_d_max),
            optional(row.sync_read_p50_ms),
            row.availability,
            row.throughput_per_s
        );
    }
    out
}

/// The rows as a terminal table.
pub fn rows_table(parameter: SweepParameter, rows: &[SweepRow]) -> String {
    let cell = |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
    let mut out = format!(
        "{:>20} {:<16} {:>4} {:>10} {:>10} {:>9} {:>10} {:>7} {:>10}\n",
        parameter.name(),
        "region",
        "runs",
        "global p50",
        "global p99",
        "p50/d",
        "sync p50",
        "avail",
        "ops/s"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:>20} {:<16} {:>4} {:>10} {:>10} {:>9} {:>10} {:>7.3} {:>10.1}",
            row.value,
            row.region,
            row.runs,
            cell(row.global_write_p50_ms),
            cell(row.global_write_p99_ms),
            cell(row.global_write_p50_over_d_max),
            cell(row.sync_read_p50_ms),
            row.availability,
            row.throughput_per_s
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_costs_are_swept_in_whole_microseconds_up_to_the_bound() {
        let mut scenario = Scenario {
            topology: dsss_topology::local_default(),
            workload: super::super::files::parse_workload(include_str!(
                "../../../examples/sim/workloads/registers.toml"
            ))
            .expect("the example workload reads"),
            faults: super::super::files::parse_faults("").expect("no faults"),
            seed: 1,
            duration: std::time::Duration::from_secs(1),
            node_costs: crate::NodeCosts::FREE,
            planted_seal_without_a_region: false,
        };
        SweepParameter::CpuPerEventUs
            .apply(&mut scenario, 450.0)
            .unwrap();
        SweepParameter::DiskSyncUs
            .apply(&mut scenario, 130.0)
            .unwrap();
        assert_eq!(
            scenario.node_costs,
            crate::NodeCosts::uniform(
                std::time::Duration::from_micros(130),
                std::time::Duration::from_micros(450)
            )
        );
        let beyond = SweepParameter::CpuPerEventUs
            .apply(&mut scenario, 1_000_001.0)
            .unwrap_err();
        assert!(beyond.contains("cpu_per_event_us = 1000001"), "{beyond}");
        assert!(
            SweepParameter::DiskSyncUs
                .apply(&mut scenario, 1.5)
                .is_err()
        );
    }

    #[test]
    fn assignments_name_a_known_parameter_and_numbers() {
        assert_eq!(
            parse_assignment("epoch_ms=1,2, 5").unwrap(),
            (SweepParameter::EpochMs, vec![1.0, 2.0, 5.0])
        );
        assert!(
            parse_assignment("epoch=1")
                .unwrap_err()
                .contains("the parameters are epoch_ms")
        );
        assert!(
            parse_assignment("epoch_ms")
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert!(
            parse_assignment("latency_scale=1,x")
                .unwrap_err()
                .contains("\"x\" is not a number")
        );
    }
}
