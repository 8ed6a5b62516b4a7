//! A researcher's run (`dsss sim run`): a topology, a workload file and a fault file, one seed
//! and a length, run as a session workload (application instances holding global and regional
//! registers through the SDK's own client session, on real region nodes and coordinator
//! replicas), checked like every session run, and measured ([`results`]).
//!
//! Checked on every run: one order across the global registers and per region across its
//! regional register, from the results alone (no position the system reports is trusted);
//! `sync()` reads linearizable; the final reads agree (convergence after the heal); and the
//! cluster's own checks (every region holds the same sealed epochs, no acknowledged call lost
//! or applied twice). docs/simulator.md describes the files and the results.

pub mod examples;
pub mod files;
pub mod history;
pub mod results;
pub mod sweep;

use std::collections::BTreeMap;
use std::time::Duration;

use dsss_topology::Topology;
use serde::Serialize;

pub use files::{ExampleObject, Faults, Workload, parse_duration, parse_faults, parse_workload};
pub use results::{RunResults, measure};

use crate::costs::NodeCosts;
use crate::workloads::global::{FAULT_WINDOW_MAX, GlobalFaultPlan, GlobalRunSettings};
use crate::workloads::session::{
    PAUSE_COUNT_MAX, PAUSE_DURATION_MAX, SessionHistories, SessionReport, SessionRunSettings,
    run_session_with_histories,
};

/// Everything one run needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// The cluster.
    pub topology: Topology,
    /// Who calls what, how often.
    pub workload: Workload,
    /// What breaks, when.
    pub faults: Faults,
    /// Every random choice of the run comes from it.
    pub seed: u64,
    /// How long the instances operate (and faults happen), in simulated time.
    pub duration: Duration,
    /// What the work of region nodes and coordinator replicas costs ([`crate::costs`]).
    pub node_costs: NodeCosts,
    /// Runs the coordinator with a planted bug (SEAL leaves out one region's closed
    /// timestamp), to show that the checks catch it. Never set outside such a demonstration.
    pub planted_seal_without_a_region: bool,
}

/// Why a run gave no report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScenarioError {
    /// A setting or file the run cannot honour.
    BadInput(String),
    /// An invariant asserted in the protocol code broke during the run: a found bug, like a
    /// failed check.
    InvariantBroken(String),
}

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScenarioError::BadInput(message) => formatter.write_str(message),
            ScenarioError::InvariantBroken(message) => {
                write!(formatter, "an invariant broke during the run: {message}")
            }
        }
    }
}

/// A run's outcome: its checks, the faults it had and its measures.
#[derive(Clone, Debug)]
pub struct ScenarioReport {
    /// What the nodes' work cost in the run.
    pub node_costs: NodeCosts,
    /// The session run's report: checks, counts, the faults drawn, the trace hash.
    pub session: SessionReport,
    /// The measures.
    pub results: RunResults,
    /// Every instance's history.
    pub histories: SessionHistories,
}

/// The JSON form of a report: a function of the seed and the files alone.
#[derive(Serialize)]
struct ReportJson<'a> {
    seed: u64,
    passed: bool,
    problems: &'a [String],
    simulated_s: f64,
    trace_hash: &'a str,
    /// Events the run recorded (messages sent and delivered, timers fired, and the rest).
    events: u64,
    /// Messages the processes sent.
    messages_sent: u64,
    node_costs: NodeCostsJson,
    instances: usize,
    faults: FaultsJson,
    results: &'a RunResults,
}

#[derive(Serialize)]
struct NodeCostsJson {
    disk_sync_us: f64,
    cpu_per_event_us: f64,
    /// The kinds of work with a CPU cost of their own, in microseconds
    /// ([`crate::costs::WorkKind`]); the others cost `cpu_per_event_us`.
    cpu_per_kind_us: BTreeMap<&'static str, f64>,
}

#[derive(Serialize)]
struct FaultsJson {
    crashes: u32,
    coordinator_leader_crashes: u32,
    pauses: u32,
    region_cuts: u32,
    region_cuts_beyond_suspicion: u32,
    clock_skew_ms_max: f64,
    loss: f64,
    duplication: f64,
    reordering: f64,
}

impl ScenarioReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.session.passed()
    }

    /// The history as JSON lines ([`history::history_lines`]).
    pub fn history_lines(&self) -> String {
        history::history_lines(&self.histories)
    }

    /// The report as JSON: the same seed and files give the same bytes.
    pub fn to_json(&self) -> String {
        let faults = &self.session.faults;
        let json = ReportJson {
            seed: self.session.seed,
            passed: self.passed(),
            problems: &self.session.problems,
            simulated_s: self.session.simulated.as_secs_f64(),
            trace_hash: &self.session.trace_hash,
            events: self.session.work.events,
            messages_sent: self.session.work.messages_sent,
            node_costs: NodeCostsJson {
                disk_sync_us: self.node_costs.disk_sync.as_nanos() as f64 / 1_000.0,
                cpu_per_event_us: self.node_costs.cpu_per_event.as_nanos() as f64 / 1_000.0,
                cpu_per_kind_us: crate::costs::WorkKind::SETTABLE
                    .into_iter()
                    .zip(self.node_costs.cpu_per_kind)
                    .filter_map(|(kind, cost)| {
                        Some((kind.name(), cost?.as_nanos() as f64 / 1_000.0))
                    })
                    .collect(),
            },
            instances: self.session.instances,
            faults: FaultsJson {
                crashes: faults.crashes,
                coordinator_leader_crashes: faults.coordinator_leader_crashes,
                pauses: faults.pauses,
                region_cuts: faults.region_partitions,
                region_cuts_beyond_suspicion: faults.long_region_partitions,
                clock_skew_ms_max: faults.clock_skew_us_max as f64 / 1_000.0,
                loss: faults.network.loss_probability,
                duplication: faults.network.duplication_probability,
                reordering: faults.network.reorder_probability,
            },
            results: &self.results,
        };
        // Plain data with string keys: serializing it cannot fail.
        serde_json::to_string_pretty(&json).expect("a report serializes") + "\n"
    }
}

impl Scenario {
    /// Whether the workload holds example objects rather than registers.
    pub fn runs_examples(&self) -> bool {
        !self.workload.examples.is_empty()
    }

    /// Why the scenario cannot be run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.runs_examples() {
            examples::sdk_settings(self).map(|_| ())
        } else {
            self.session_settings().map(|_| ())
        }
    }

    /// Sets what the scenario asks of the cluster, whatever its instances hold: instances per
    /// region, the operation window, the faults (the swarm: every fault the global workload
    /// draws, and pauses of members), node costs and the planted bug; or says why the run's
    /// length cannot be honoured.
    pub(crate) fn set_cluster(&self, cluster: &mut GlobalRunSettings) -> Result<(), String> {
        if self.duration.is_zero() || self.duration > FAULT_WINDOW_MAX {
            return Err(format!(
                "--duration {:?} is outside 1 ns..={FAULT_WINDOW_MAX:?}",
                self.duration
            ));
        }
        if self.faults.standard_swarm {
            let suspicion = Duration::from_micros(self.topology.cluster.suspicion_timeout_us);
            cluster.faults = GlobalFaultPlan::standard(suspicion)
                .with_pauses(PAUSE_COUNT_MAX, PAUSE_DURATION_MAX);
        }
        cluster.clients_per_region = self.workload.instances_per_region;
        cluster.fault_window = self.duration;
        cluster.script = self.faults.script.clone();
        cluster.node_costs = self.node_costs;
        cluster.coordinator_limits.planted_seal_without_a_region =
            self.planted_seal_without_a_region;
        Ok(())
    }

    /// The session run this scenario asks for (a workload of registers), or why it cannot be
    /// run.
    pub fn session_settings(&self) -> Result<SessionRunSettings, String> {
        let mut settings = SessionRunSettings::new(self.seed, self.topology.clone());
        self.set_cluster(&mut settings.cluster)?;
        let workload = &self.workload;
        settings.global_objects = workload.global_registers;
        settings.regional_object = workload.regional_register;
        let instance = &mut settings.instance;
        instance.write_share = workload.write_share;
        instance.sync_read_share = workload.sync_share_of_reads();
        instance.popularity = workload.popularity;
        instance.think_time_min = workload.think_time_min;
        instance.think_time_max = workload.think_time_max;
        instance.operations_max = workload.operations_per_instance_max;
        instance.payload_bytes = workload.payload_bytes;
        // The run's rate, shared evenly: the sum of independent Poisson processes is one at
        // the summed rate.
        let instances = workload.instances_per_region * self.topology.regions.len();
        instance.open_loop_rate_per_s = workload
            .rate_per_second
            .map(|rate| rate / instances.max(1) as f64);
        settings.validate()?;
        Ok(settings)
    }

    /// Runs the scenario and checks it. An assertion of the protocol code that fails during
    /// the run ends it as [`ScenarioError::InvariantBroken`] rather than as a crash, so that
    /// the caller can name the seed that replays it.
    pub fn run(&self) -> Result<ScenarioReport, ScenarioError> {
        self.run_with_progress(&mut |_| {})
    }

    /// [`Scenario::run`], handing `progress` the simulated time into the operation window as
    /// the run goes (every [`crate::workloads::session::PROGRESS_EVERY`]).
    pub fn run_with_progress(
        &self,
        progress: &mut dyn FnMut(Duration),
    ) -> Result<ScenarioReport, ScenarioError> {
        self.validate().map_err(ScenarioError::BadInput)?;
        // The simulation is single-threaded and dropped whole on a panic: nothing it shares
        // with the caller is left half-updated.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if self.runs_examples() {
                examples::run_examples(self, progress)
            } else {
                let settings = self.session_settings()?;
                run_session_with_histories(&settings, progress)
            }
        }));
        let (session, histories) = match outcome {
            Ok(run) => run.map_err(ScenarioError::BadInput)?,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_owned()))
                    .unwrap_or_else(|| "a panic without a message".to_owned());
                return Err(ScenarioError::InvariantBroken(message));
            }
        };
        let results = measure(&self.topology, &histories);
        Ok(ScenarioReport {
            node_costs: self.node_costs,
            session,
            results,
            histories,
        })
    }
}
