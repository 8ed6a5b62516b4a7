//! The session workload: application instances that run the SDK's own
//! [`dsss::session::ClientSession`] with several registers open at once (global ones, plus one
//! regional register of their region), on the global workload's cluster of real region nodes
//! and coordinator replicas, under the same faults; and the position-free check that every
//! instance's history across all its objects fits one sequentially consistent order
//! (docs/design.md sections 1, 2 and 6).
//!
//! A run: every instance opens its registers (no faults yet); then, through the fault window,
//! instances write unique values, read locally and read after `sync()`, at random, while the
//! seed's faults happen; then the faults heal, the cluster converges, and every instance makes
//! a final barrier and reads every register. Checked on every run:
//! - one order across objects: the global registers' histories of all instances together, and
//!   each region's regional register with the instances of that region, have one sequentially
//!   consistent order in which every `sync()` read follows every write that completed before
//!   its barrier began ([`super::order_check`]; nothing the system reports is trusted: a
//!   register's write returns the value it replaced, which fixes each register's write order);
//! - convergence: the final reads of every register agree across the instances that hold it;
//! - the cluster's own checks (the same logs and epochs in every region).
//!
//! The process carries every log stream the session asks for, so the session's hidden
//! `planted_stream_per_object` mode (a stream per object, the bug a single client-wide stream
//! fixed) runs here too, and the checks must catch it
//! ([`InstanceSettings::planted_stream_per_object`]).

pub mod driver;
pub mod history;
pub mod instance;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss::session::SessionCounters;
use dsss_topology::Topology;
use dsss_wire::Scope;

pub use history::{InstanceHistory, SessionObserver, SessionOperation};
pub use instance::{InstanceSettings, Popularity, SessionInstance, ZIPF_EXPONENT_MAX};

use super::global::stages::CallStages;
use super::global::{
    ApplicationFactory, ApplicationPlace, CONVERGENCE_CHECK_INTERVAL, FaultsDrawn, GlobalCluster,
    GlobalFaultPlan, GlobalRunSettings, run_fault_window_observed,
};
use super::order_check;
use crate::simulation::RunWork;
use crate::time::SimTime;

/// The most global registers an instance may hold.
pub const GLOBAL_OBJECTS_MAX: usize = 16;

/// The most pauses of members the standard faults of a session run draw.
pub const PAUSE_COUNT_MAX: u32 = 4;

/// The longest pause of a member the standard faults draw: well past the default stall
/// timeout and attempt timeout of an instance, so that both fire while it lasts.
pub const PAUSE_DURATION_MAX: Duration = Duration::from_secs(2);

/// What a session run does.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionRunSettings {
    /// The cluster, its faults and windows; `clients_per_region` counts instances.
    pub cluster: GlobalRunSettings,
    /// How instances behave.
    pub instance: InstanceSettings,
    /// How many global registers every instance holds, 1 to [`GLOBAL_OBJECTS_MAX`].
    pub global_objects: usize,
    /// Whether every instance also holds its region's regional register.
    pub regional_object: bool,
    /// How long the fault-free opening of every register may take.
    pub setup_max: Duration,
    /// How long the final round may take after the cluster converged.
    pub final_round_max: Duration,
}

impl SessionRunSettings {
    /// A fault-free run on `topology`: two instances per region holding three global registers
    /// and their region's regional register, three seconds of operations.
    pub fn new(seed: u64, topology: Topology) -> SessionRunSettings {
        let d_max_us = topology.latency.d_max_us();
        let cluster = GlobalRunSettings::new(seed, topology);
        let instance = InstanceSettings {
            think_time_min: Duration::from_millis(2),
            think_time_max: Duration::from_millis(30),
            write_share: 0.5,
            sync_read_share: 0.3,
            operations_max: 10_000,
            // A global call is answered once sealed: a WAN round trip to the coordinator, its
            // quorum, the watermark and the way back.
            attempt_timeout: Duration::from_micros(dsss::session::attempt_timeout_us_for_d_max(
                d_max_us,
            )),
            stream_stall_timeout: Duration::from_micros(
                dsss::session::TOPOLOGY_STREAM_STALL_TIMEOUT_US,
            ),
            call_timeout: Duration::from_secs(30),
            log_read_timeout: Duration::from_millis(100),
            log_read_wait: Duration::from_millis(50),
            planted_stream_per_object: false,
            popularity: Popularity::Uniform,
            open_loop_rate_per_s: None,
            payload_bytes: (0, 0),
        };
        SessionRunSettings {
            cluster,
            instance,
            global_objects: 3,
            regional_object: true,
            setup_max: Duration::from_secs(60),
            final_round_max: Duration::from_secs(60),
        }
    }

    /// The same settings under every kind of fault the global workload draws, plus pauses of
    /// members that keep their links up (up to [`PAUSE_COUNT_MAX`], each up to
    /// [`PAUSE_DURATION_MAX`]): only a member that stops answering without closing its stream
    /// makes the session's stall failover and attempt timeout do the work.
    pub fn with_standard_faults(mut self) -> SessionRunSettings {
        let suspicion = Duration::from_micros(self.cluster.topology.cluster.suspicion_timeout_us);
        self.cluster.faults =
            GlobalFaultPlan::standard(suspicion).with_pauses(PAUSE_COUNT_MAX, PAUSE_DURATION_MAX);
        self
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.cluster.validate()?;
        if self.cluster.clients_per_region == 0 {
            return Err("clients_per_region: 0; a run needs instances".to_owned());
        }
        self.instance
            .validate()
            .map_err(|error| format!("instance: {error}"))?;
        if !(1..=GLOBAL_OBJECTS_MAX).contains(&self.global_objects) {
            return Err(format!(
                "global_objects: {} is outside 1..={GLOBAL_OBJECTS_MAX}",
                self.global_objects
            ));
        }
        for (name, duration) in [
            ("setup_max", self.setup_max),
            ("final_round_max", self.final_round_max),
        ] {
            if duration.is_zero() || duration > Duration::from_secs(600) {
                return Err(format!("{name}: {duration:?} is outside 1 ns..=600 s"));
            }
        }
        Ok(())
    }

    /// The registers an instance of `region` holds.
    pub fn objects_in(&self, region: &str) -> Vec<(String, Scope)> {
        let mut objects: Vec<(String, Scope)> = (0..self.global_objects)
            .map(|index| (format!("register/global-{index}"), Scope::Global))
            .collect();
        if self.regional_object {
            objects.push((format!("register/{region}"), Scope::Regional));
        }
        objects
    }
}

/// The result of a session run.
#[derive(Clone, Debug)]
pub struct SessionReport {
    /// The seed.
    pub seed: u64,
    /// Application instances.
    pub instances: usize,
    /// The faults the seed drew.
    pub faults: FaultsDrawn,
    /// Total simulated time.
    pub simulated: Duration,
    /// Writes that returned the value they replaced.
    pub writes: usize,
    /// Writes that failed (their effect is unknown).
    pub writes_failed: usize,
    /// Local reads.
    pub reads: usize,
    /// Reads after a `sync()` barrier.
    pub sync_reads: usize,
    /// Barriers that gave up.
    pub syncs_failed: usize,
    /// Proposal attempts passed over without an answer (the session's attempt timeout).
    pub proposals_unanswered: usize,
    /// What the instances' sessions counted, summed.
    pub counters: SessionCounters,
    /// Skips of sealed epochs no log held any longer, summed over the regions (each counted
    /// once, by the member that applied the most).
    pub epoch_skips: u64,
    /// What the run checked, as the report's last line names it when every check passed.
    pub checked: String,
    /// What the report adds about its checks (a search the history was too large for).
    pub remarks: Vec<String>,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
    /// The events and messages of the run.
    pub work: RunWork,
    /// The command that replays the run, printed when a check failed.
    pub replay: String,
}

/// What a register run checks.
pub const REGISTER_CHECKS: &str =
    "one order across objects, linearizable sync() reads, convergence";

impl SessionReport {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Counts the writes (and calls), failed ones, local reads and `sync()` reads of
    /// `instances`; barriers that gave up are counted by the observer as they happen.
    pub fn count_operations(&mut self, instances: &BTreeMap<u64, InstanceHistory>) {
        for history in instances.values() {
            for operation in &history.operations {
                match operation {
                    SessionOperation::Write {
                        replaced: Some(_), ..
                    }
                    | SessionOperation::Call {
                        outcome: Some(_), ..
                    } => self.writes += 1,
                    SessionOperation::Write { replaced: None, .. }
                    | SessionOperation::Call { outcome: None, .. } => self.writes_failed += 1,
                    SessionOperation::Read { synced: true, .. }
                    | SessionOperation::Query { synced: true, .. } => self.sync_reads += 1,
                    SessionOperation::Read { .. } | SessionOperation::Query { .. } => {
                        self.reads += 1
                    }
                    SessionOperation::SyncFailed { .. } => {}
                }
            }
        }
    }
}

impl fmt::Display for SessionReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "seed {}: {} instances, {:.1} s simulated; faults: {} crashes ({} of the \
             coordinator leader), {} pauses, {} region partitions ({} beyond the suspicion \
             timeout), clock skew up to {} ms, loss {:.3}",
            self.seed,
            self.instances,
            self.simulated.as_secs_f64(),
            self.faults.crashes,
            self.faults.coordinator_leader_crashes,
            self.faults.pauses,
            self.faults.region_partitions,
            self.faults.long_region_partitions,
            self.faults.clock_skew_us_max / 1_000,
            self.faults.network.loss_probability,
        )?;
        if self.faults.link_changes > 0 {
            writeln!(
                formatter,
                "  scripted link changes: {}",
                self.faults.link_changes
            )?;
        }
        writeln!(
            formatter,
            "  writes {} (failed {}), local reads {}, sync() reads {}, barriers given up {}; \
             sessions: {} stream moves ({} stalls), {} call retries ({} after no answer), {} \
             copies joined; {} epoch skips, {} copies behind one",
            self.writes,
            self.writes_failed,
            self.reads,
            self.sync_reads,
            self.syncs_failed,
            self.counters.stream_moves,
            self.counters.stream_stalls,
            self.counters.call_retries,
            self.proposals_unanswered,
            self.counters.copies_joined,
            self.epoch_skips,
            self.counters.copies_behind_skipped_epochs,
        )?;
        for remark in &self.remarks {
            writeln!(formatter, "  {remark}")?;
        }
        if self.problems.is_empty() {
            write!(
                formatter,
                "  {}: ok; trace {}",
                self.checked,
                &self.trace_hash[..16.min(self.trace_hash.len())]
            )
        } else {
            write!(formatter, "  FAILED:")?;
            for problem in &self.problems {
                write!(formatter, "\n  - {problem}")?;
            }
            write!(formatter, "\n  replay: {}", self.replay)
        }
    }
}

/// Runs a session workload with `settings` and checks it.
pub fn run_session(settings: &SessionRunSettings) -> Result<SessionReport, String> {
    run_session_with_histories(settings, &mut |_| {}).map(|(report, _)| report)
}

/// How often, in simulated time, a run tells its caller how far it got through the operation
/// window. Running in such steps processes the same events as running straight through.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the instances of a run did, for measures beyond the report's counts.
#[derive(Clone, Debug)]
pub struct SessionHistories {
    /// Every instance's history, by instance index.
    pub instances: BTreeMap<u64, InstanceHistory>,
    /// When the instances began operating (every register opened).
    pub operations_from: SimTime,
    /// When they stopped (the end of the fault window), before the final round.
    pub operations_until: SimTime,
    /// Where the time of each answered global call went, stage by stage.
    pub global_call_stages: Vec<CallStages>,
    /// For each region, the share of the operation window each of its nodes spent working,
    /// by node id: all zero without node costs ([`crate::costs`]); empty when unknown (real
    /// processes).
    pub node_busy_shares: BTreeMap<String, BTreeMap<u64, f64>>,
}

/// How long each node of each region worked so far ([`crate::Simulation::busy_time`]).
fn busy_times(
    cluster: &mut GlobalCluster,
    topology: &dsss_topology::Topology,
) -> BTreeMap<String, BTreeMap<u64, Duration>> {
    topology
        .regions
        .iter()
        .map(|region| {
            let nodes = region
                .nodes
                .iter()
                .map(|node| (node.id, cluster.simulation().busy_time(node.id)))
                .collect::<BTreeMap<_, _>>();
            (region.id.clone(), nodes)
        })
        .collect()
}

/// Runs the fault window from `start`, handing `progress` the simulated time into it every
/// [`PROGRESS_EVERY`]; returns the faults drawn and, for each region, the share of the window
/// each of its nodes spent working, by node id.
pub fn run_operation_window(
    cluster: &mut GlobalCluster,
    settings: &GlobalRunSettings,
    start: SimTime,
    progress: &mut dyn FnMut(Duration),
) -> (FaultsDrawn, BTreeMap<String, BTreeMap<u64, f64>>) {
    let busy_at_start = busy_times(cluster, &settings.topology);
    let faults =
        run_fault_window_observed(cluster, settings, start, PROGRESS_EVERY, &mut |cluster| {
            progress(cluster.simulation().now().saturating_duration_since(start))
        });
    let window = cluster.simulation().now().saturating_duration_since(start);
    let node_busy_shares = busy_times(cluster, &settings.topology)
        .into_iter()
        .map(|(region, nodes)| {
            let shares = nodes
                .into_iter()
                .map(|(node, busy)| {
                    let before = busy_at_start[&region][&node];
                    let share = if window.is_zero() {
                        0.0
                    } else {
                        (busy - before).as_secs_f64() / window.as_secs_f64()
                    };
                    (node, share)
                })
                .collect();
            (region, shares)
        })
        .collect();
    (faults, node_busy_shares)
}

/// [`run_session`], also handing back every instance's history, and handing `progress` the
/// simulated time into the operation window every [`PROGRESS_EVERY`].
pub fn run_session_with_histories(
    settings: &SessionRunSettings,
    progress: &mut dyn FnMut(Duration),
) -> Result<(SessionReport, SessionHistories), String> {
    settings.validate()?;
    let observer = Rc::new(RefCell::new(SessionObserver::default()));
    // Instances idle until the opening is done, then operate to the end of the fault window.
    let operations_until = Rc::new(Cell::new(SimTime::ZERO));
    let final_round = Rc::new(Cell::new(false));
    let factory = instance_factory(settings, &operations_until, &final_round, &observer);
    let mut cluster = GlobalCluster::with_applications(&settings.cluster, factory)?;
    let instances = settings.cluster.topology.regions.len() * settings.cluster.clients_per_region;
    let mut problems = Vec::new();
    if let Err(problem) = wait_for(
        &mut cluster,
        settings.setup_max,
        || observer.borrow().opened >= instances,
        "every instance opened its registers",
    ) {
        problems.push(problem);
    }
    let start = cluster.simulation().now();
    operations_until.set(start.saturating_add(settings.cluster.fault_window));
    let (faults, node_busy_shares) =
        run_operation_window(&mut cluster, &settings.cluster, start, progress);
    cluster.heal();
    if let Err(problem) = cluster.converge(settings.cluster.convergence_max) {
        problems.push(problem);
    }
    final_round.set(true);
    if let Err(problem) = wait_for(
        &mut cluster,
        settings.final_round_max,
        || observer.borrow().finished >= instances,
        "every instance finished its final barrier and reads",
    ) {
        problems.push(problem);
    }
    problems.extend(cluster.check());
    let observer = observer.borrow();
    problems.extend(observer.violations().iter().cloned());
    problems.extend(check_histories(&observer.instances));
    let mut report = SessionReport {
        seed: settings.cluster.seed,
        instances,
        faults,
        simulated: cluster.simulation().now().since_start(),
        writes: 0,
        writes_failed: 0,
        reads: 0,
        sync_reads: 0,
        syncs_failed: observer.syncs_failed,
        proposals_unanswered: observer.proposals_unanswered,
        counters: observer.counters,
        epoch_skips: cluster.epoch_skips(),
        checked: REGISTER_CHECKS.to_owned(),
        remarks: Vec::new(),
        problems,
        trace_hash: cluster.simulation().trace_hash(),
        work: cluster.simulation().work(),
        // The caller that knows the command line (`dsss sim run` and its presets) replaces it.
        replay: format!(
            "the same session run settings with seed {}",
            settings.cluster.seed
        ),
    };
    let histories = SessionHistories {
        instances: observer.instances.clone(),
        operations_from: start,
        operations_until: operations_until.get(),
        global_call_stages: cluster.observer().stages.finished().to_vec(),
        node_busy_shares,
    };
    report.count_operations(&histories.instances);
    Ok((report, histories))
}

fn instance_factory(
    settings: &SessionRunSettings,
    operations_until: &Rc<Cell<SimTime>>,
    final_round: &Rc<Cell<bool>>,
    observer: &Rc<RefCell<SessionObserver>>,
) -> ApplicationFactory {
    let settings = settings.clone();
    let operations_until = Rc::clone(operations_until);
    let final_round = Rc::clone(final_round);
    let observer = Rc::clone(observer);
    let mut next_index = 1u64;
    Box::new(move |place: &ApplicationPlace| {
        let index = next_index;
        next_index += 1;
        let instance = SessionInstance::new(
            settings.instance,
            index,
            place.node,
            place.region.clone(),
            place.members.clone(),
            &settings.objects_in(&place.region),
            Rc::clone(&operations_until),
            Rc::clone(&final_round),
            Rc::clone(&observer),
        )
        // The settings were checked before the cluster was built.
        .unwrap_or_else(|error| panic!("an instance of a checked run: {error}"));
        Box::new(instance)
    })
}

fn wait_for(
    cluster: &mut GlobalCluster,
    within: Duration,
    done: impl Fn() -> bool,
    what: &str,
) -> Result<(), String> {
    let deadline = cluster.simulation().now().saturating_add(within);
    while !done() {
        if cluster.simulation().now() >= deadline {
            return Err(format!(
                "not within {within:?}: {what}; {}",
                cluster.describe()
            ));
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
    Ok(())
}

/// The position-free checks of the histories: one order over the global registers of every
/// instance, one per region over its regional register, and agreement of the final reads.
pub fn check_histories(instances: &BTreeMap<u64, InstanceHistory>) -> Vec<String> {
    let mut problems = Vec::new();
    let regions: Vec<&str> = {
        let mut regions: Vec<&str> = instances
            .values()
            .map(|history| history.region.as_str())
            .collect();
        regions.sort_unstable();
        regions.dedup();
        regions
    };
    let global = order_check_input(instances, |_, object| {
        object.starts_with("register/global-")
    });
    if let Err(violation) = order_check::check(&global) {
        problems.push(format!(
            "one order across the global registers: {violation}"
        ));
    }
    for region in regions {
        let regional_name = format!("register/{region}");
        let regional = order_check_input(instances, |history, object| {
            history.region == region && object == regional_name
        });
        if let Err(violation) = order_check::check(&regional) {
            problems.push(format!(
                "one order of {region}'s regional register: {violation}"
            ));
        }
    }
    // Convergence: each instance's last read of a register is from the final round.
    let mut last_reads: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
    for (index, history) in instances {
        for operation in &history.operations {
            if let SessionOperation::Read { object, value, .. } = operation {
                last_reads
                    .entry(object.as_str())
                    .or_default()
                    .insert(*index, *value);
            }
        }
    }
    for (object, values) in last_reads {
        let mut distinct: Vec<u64> = values.values().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() > 1 {
            problems.push(format!(
                "convergence: the last reads of {object} differ across instances: {values:?}"
            ));
        }
    }
    problems
}

/// The histories restricted to the objects `keep` selects, in the order checker's form.
fn order_check_input(
    instances: &BTreeMap<u64, InstanceHistory>,
    keep: impl Fn(&InstanceHistory, &str) -> bool,
) -> Vec<order_check::ClientHistory> {
    instances
        .iter()
        .map(|(index, history)| order_check::ClientHistory {
            client: format!("instance {index} ({})", history.region),
            operations: history
                .operations
                .iter()
                .filter_map(|operation| match operation {
                    SessionOperation::Write {
                        object,
                        value,
                        replaced,
                        began_at,
                        ended_at,
                    } if keep(history, object) => Some(order_check::Operation::Write {
                        object: object.clone(),
                        value: *value,
                        replaced: *replaced,
                        began_at: began_at.as_nanos(),
                        ended_at: ended_at.as_nanos(),
                    }),
                    SessionOperation::Read {
                        object,
                        value,
                        synced,
                        began_at,
                        ended_at,
                        ..
                    } if keep(history, object) => Some(order_check::Operation::Read {
                        object: object.clone(),
                        value: *value,
                        synced: *synced,
                        began_at: began_at.as_nanos(),
                        ended_at: ended_at.as_nanos(),
                    }),
                    _ => None,
                })
                .collect(),
        })
        .collect()
}
