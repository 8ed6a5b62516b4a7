//! The sdk workload: application instances that run the SDK's own sans-IO `ClientSession`
//! (as `dsss::Client` does in production) with several shared objects open at once (by
//! default a global bank, counter and lobby and a regional leaderboard in every region), on a
//! cluster of real region nodes and coordinator replicas (the global workload's), under the
//! same faults; and the checkers of the guarantees an application relies on (docs/design.md
//! sections 1, 2 and 6).
//!
//! A run goes like this. Every instance opens its objects (the session declares each
//! schema); the first instance of the first region makes the setup calls of the global
//! objects (for the bank: it opens the accounts), the first instance of every region those of
//! its region's regional objects; this setup runs without faults, until every copy shows it.
//! Then the fault window starts: instances call, read and `sync()`-read random objects at
//! random while the seed's faults happen. Then the faults heal, the cluster converges, and the
//! run drains: it goes on until every copy has applied every record of its object that the
//! final logs hold. The position checkers run on every object ([`checker`]); histories of at
//! most [`SdkRunSettings::exhaustive_operations_max`] operations are also searched for ONE
//! order across all objects with no help from the system ([`exhaustive`]).
//!
//! An object's part is an [`ObjectWorkload`]: which calls and reads to make and what must
//! hold of every read, and whether the object is global or regional; [`bank`], [`counter`] and
//! [`lobby`] are global objects, [`leaderboard`] a regional one. [`objects::erase`] lets one
//! instance hold objects of many types.

pub mod bank;
pub mod checker;
pub mod counter;
pub mod exhaustive;
pub mod history;
pub mod instance;
pub mod leaderboard;
pub mod lobby;
pub mod objects;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss::{MethodError, SharedObject};
use dsss_region_node::{LogEntry, RegionLog};
use dsss_topology::Topology;
use dsss_wire::Scope;

pub use exhaustive::{
    EXHAUSTIVE_OPERATIONS_MAX, ExhaustiveVerdict, find_joint_order, find_sequential_order,
};
pub use history::{
    ApplicationCounters, CallSpec, ClientHistory, DynValue, JointHistory, Operation, SdkHistory,
    SdkObserver,
};
pub use instance::{ApplicationSettings, SdkInstance};
pub use objects::{AnyObjectWorkload, erase};

use super::global::stages::CallStages;
use super::global::{
    ApplicationFactory, ApplicationPlace, CONVERGENCE_CHECK_INTERVAL, FaultsDrawn, GlobalCluster,
    GlobalFaultPlan, GlobalRunSettings,
};
use super::session::run_operation_window;
use crate::network::NodeId;
use crate::random::SimRng;
use crate::simulation::RunWork;
use crate::time::SimTime;
use crate::trace::Trace;

/// What an sdk run does with its object: the setup, the random calls and reads, and what
/// must hold of every read.
pub trait ObjectWorkload: 'static {
    /// The shared object's type.
    type Object: SharedObject;
    /// What a read asks of the local copy.
    type Read: Clone + fmt::Debug + PartialEq + 'static;
    /// What a read returns.
    type Value: Clone + fmt::Debug + PartialEq + 'static;

    /// The object's name (a valid object id).
    fn object_id(&self) -> &str;

    /// The calls that set the object up, made in order by one instance.
    fn setup_calls(&self) -> Vec<CallSpec>;

    /// Whether `object` shows the whole setup: instances make random operations only then.
    fn is_set_up(&self, object: &Self::Object) -> bool;

    /// A random call.
    fn random_call(&self, rng: &mut SimRng) -> CallSpec;

    /// A random read.
    fn random_read(&self, rng: &mut SimRng) -> Self::Read;

    /// Runs `read` on `object`.
    fn read(&self, object: &Self::Object, read: &Self::Read) -> Self::Value;

    /// What must hold of every read made after the setup, whatever the order (for the bank:
    /// the total is the sum of the opened balances). The error says what is wrong.
    fn check_read(&self, read: &Self::Read, value: &Self::Value) -> Result<(), String>;

    /// Whether the object refused `call` by its own result (for the bank: an overdraft).
    fn is_refusal(&self, call: &CallSpec, outcome: &Result<Vec<u8>, MethodError>) -> bool;

    /// Where the object lives (docs/design.md section 2): [`Scope::Global`], one object copied in
    /// every region and ordered by the coordinator, or [`Scope::Regional`], one object per
    /// region, copied and ordered in that region alone.
    fn scope(&self) -> Scope {
        Scope::Global
    }

    /// The name of the object the instances of `region` use: [`ObjectWorkload::object_id`]
    /// for a global object; for a regional one, the object id, a slash and the region, so
    /// that every region holds an object of its own.
    fn object_id_in(&self, region: &str) -> String {
        match self.scope() {
            Scope::Global => self.object_id().to_string(),
            Scope::Regional => format!("{}/{region}", self.object_id()),
        }
    }
}

/// The longest setup a run accepts.
pub const SETUP_MAX: Duration = Duration::from_secs(600);

/// The longest a run drains after the cluster converged.
pub const DRAIN_MAX: Duration = Duration::from_secs(600);

/// The most object workloads one run holds.
pub const OBJECT_WORKLOADS_MAX: usize = 16;

/// What an sdk run does.
#[derive(Clone, Debug, PartialEq)]
pub struct SdkRunSettings {
    /// The cluster, its faults and windows; `clients_per_region` counts application instances
    /// (at least one in the first region, which sets the objects up). `client` is not used.
    pub cluster: GlobalRunSettings,
    /// How instances behave.
    pub application: ApplicationSettings,
    /// How long the fault-free setup may take: every instance opens its objects, the setting
    /// up instances make the setup calls, and every copy must show the setup. The fault window
    /// starts then, and instances operate until it ends.
    pub setup_max: Duration,
    /// How long the run may drain after the cluster converged.
    pub drain_max: Duration,
    /// Histories of at most this many operations (of all clients on all objects) are also
    /// checked by the exhaustive search (0: never; at most [`EXHAUSTIVE_OPERATIONS_MAX`]).
    pub exhaustive_operations_max: usize,
}

impl SdkRunSettings {
    /// A fault-free run on `topology`: two instances per region, three seconds of calls and
    /// reads.
    pub fn new(seed: u64, topology: Topology) -> Self {
        let d_max_us = topology.latency.d_max_us();
        let cluster = GlobalRunSettings::new(seed, topology);
        let application = ApplicationSettings {
            think_time_min: Duration::from_millis(5),
            think_time_max: Duration::from_millis(40),
            call_share: 0.6,
            sync_read_share: 0.3,
            operations_max: 10_000,
            // A global call is answered once sealed: a WAN round trip to the coordinator, its
            // quorum, the watermark and the way back. A retry keeps the sequence, so retrying
            // early costs a message, while waiting long after a lost one costs the run time.
            attempt_timeout: Duration::from_micros(dsss::session::attempt_timeout_us_for_d_max(
                d_max_us,
            )),
            stream_stall_timeout: Duration::from_micros(
                dsss::session::TOPOLOGY_STREAM_STALL_TIMEOUT_US,
            ),
            call_timeout: Duration::from_secs(30),
            log_read_timeout: Duration::from_millis(100),
            log_read_wait: Duration::from_millis(50),
            checkpoint_every_records: 8,
            planted_stream_per_object: false,
        };
        SdkRunSettings {
            cluster,
            application,
            setup_max: Duration::from_secs(60),
            drain_max: Duration::from_secs(30),
            exhaustive_operations_max: 0,
        }
    }

    /// A small run for the exhaustive checker: one instance per region, `operations` random
    /// operations each, every history searched.
    pub fn small(seed: u64, topology: Topology, operations: usize) -> Self {
        let mut settings = SdkRunSettings::new(seed, topology);
        settings.cluster.clients_per_region = 1;
        settings.application.operations_max = operations;
        settings.exhaustive_operations_max = EXHAUSTIVE_OPERATIONS_MAX;
        settings
    }

    /// The same settings under every kind of fault the global workload draws.
    pub fn with_standard_faults(mut self) -> Self {
        let suspicion = Duration::from_micros(self.cluster.topology.cluster.suspicion_timeout_us);
        self.cluster.faults = GlobalFaultPlan::standard(suspicion);
        self
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.cluster.validate()?;
        if self.cluster.clients_per_region == 0 {
            return Err(
                "clients_per_region: 0; the first region needs an instance that sets \
                        the objects up"
                    .to_string(),
            );
        }
        self.application
            .validate()
            .map_err(|error| format!("application: {error}"))?;
        if self.setup_max.is_zero() || self.setup_max > SETUP_MAX {
            return Err(format!(
                "setup_max: {:?} is outside 1 ns..={SETUP_MAX:?}",
                self.setup_max
            ));
        }
        if self.drain_max.is_zero() || self.drain_max > DRAIN_MAX {
            return Err(format!(
                "drain_max: {:?} is outside 1 ns..={DRAIN_MAX:?}",
                self.drain_max
            ));
        }
        if self.exhaustive_operations_max > EXHAUSTIVE_OPERATIONS_MAX {
            return Err(format!(
                "exhaustive_operations_max: {} is above {EXHAUSTIVE_OPERATIONS_MAX}",
                self.exhaustive_operations_max
            ));
        }
        Ok(())
    }
}

/// The result of a run.
#[derive(Clone, Debug)]
pub struct SdkReport {
    /// The seed.
    pub seed: u64,
    /// The topology's cluster name.
    pub cluster_name: String,
    /// Regions.
    pub regions: usize,
    /// Application instances.
    pub instances: usize,
    /// The objects every instance holds (a regional one by its stem: each instance holds its
    /// region's).
    pub objects: Vec<String>,
    /// How long instances operated and faults happened.
    pub fault_window: Duration,
    /// The faults the seed drew.
    pub faults: FaultsDrawn,
    /// Total simulated time.
    pub simulated: Duration,
    /// How long the cluster took to converge and every copy to catch up after the heal
    /// (`None` if it did not).
    pub converged_after: Option<Duration>,
    /// The records of every object in its total order (for a regional object, summed over the
    /// regions), the sessions' schema declarations included.
    pub records_in_order: usize,
    /// Calls the applications made (the setup included).
    pub calls: usize,
    /// Calls that completed.
    pub calls_completed: usize,
    /// Completed calls an object refused by its own result (overdrafts, a full lobby).
    pub calls_refused_by_object: usize,
    /// Reads made.
    pub reads: usize,
    /// Reads made after a `sync()` barrier.
    pub sync_reads: usize,
    /// What the instances and their sessions counted.
    pub counters: ApplicationCounters,
    /// Epochs sealed.
    pub epochs: u64,
    /// The exhaustive search's verdict, when the history was small enough.
    pub exhaustive: Option<ExhaustiveVerdict>,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
    /// The events and messages of the run.
    pub work: RunWork,
}

impl SdkReport {
    /// True when the run converged and no guarantee was broken.
    pub fn passed(&self) -> bool {
        self.converged_after.is_some() && self.problems.is_empty()
    }
}

impl fmt::Display for SdkReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "sdk run on cluster \"{}\": seed {}, {} regions, {} application instances each \
             holding {}, {:?} of operations and faults",
            self.cluster_name,
            self.seed,
            self.regions,
            self.instances,
            self.objects.join(", "),
            self.fault_window
        )?;
        writeln!(
            formatter,
            "  faults drawn: {}; {} crashes ({} of the coordinator leader), {} region partitions \
             ({} longer than the suspicion timeout), clock skew up to {:.1} ms",
            self.faults.network,
            self.faults.crashes,
            self.faults.coordinator_leader_crashes,
            self.faults.region_partitions,
            self.faults.long_region_partitions,
            self.faults.clock_skew_us_max as f64 / 1_000.0
        )?;
        writeln!(
            formatter,
            "  {} calls ({} completed, {} refused by the object), {} reads ({} after sync, {} \
             barriers given up), {} records in the orders, {} epochs",
            self.calls,
            self.calls_completed,
            self.calls_refused_by_object,
            self.reads,
            self.sync_reads,
            self.counters.syncs_failed,
            self.records_in_order,
            self.epochs
        )?;
        let sessions = &self.counters.sessions;
        writeln!(
            formatter,
            "  sessions: {} call retries ({} after no answer), {} stream moves ({} stalls), {} \
             log reads; simulated {:?}, {}",
            sessions.call_retries,
            self.counters.proposals_unanswered,
            sessions.stream_moves,
            sessions.stream_stalls,
            self.counters.log_reads,
            self.simulated,
            match self.converged_after {
                Some(after) => format!("converged and drained {after:?} after the heal"),
                None => "DID NOT CONVERGE".to_string(),
            }
        )?;
        match &self.exhaustive {
            Some(ExhaustiveVerdict::Consistent {
                order,
                states_explored,
            }) => writeln!(
                formatter,
                "  exhaustive search: one order of {} operations across the objects explains \
                 the history ({} states)",
                order.len(),
                states_explored
            )?,
            Some(ExhaustiveVerdict::Inconsistent {
                states_explored, ..
            }) => writeln!(
                formatter,
                "  exhaustive search: NO order across the objects explains the history \
                 ({states_explored} states)"
            )?,
            Some(ExhaustiveVerdict::TooLarge { reason }) => {
                writeln!(formatter, "  exhaustive search: gave up, {reason}")?;
            }
            None => {}
        }
        for problem in &self.problems {
            writeln!(formatter, "  PROBLEM: {problem}")?;
        }
        write!(formatter, "  trace {}", self.trace_hash)
    }
}

/// A run's report, its joint history and its trace.
pub struct JointRun {
    /// The report.
    pub report: SdkReport,
    /// Every client's history across its objects, and every copy's applied records.
    pub history: JointHistory,
    /// The trace.
    pub trace: Trace,
    /// When the instances began their random operations (the setup visible everywhere).
    pub operations_from: SimTime,
    /// When they stopped: the end of the fault window.
    pub operations_until: SimTime,
    /// Where the time of each answered global call went, stage by stage.
    pub global_call_stages: Vec<CallStages>,
    /// For each region, the share of the operation window each of its nodes spent working,
    /// by node id (all zero without node costs).
    pub node_busy_shares: BTreeMap<String, BTreeMap<u64, f64>>,
    /// Skips of sealed epochs no log held any longer, summed over the regions.
    pub epoch_skips: u64,
}

/// A run of one object workload: its report, its typed history and its trace.
pub struct SdkRun<W: ObjectWorkload> {
    /// The report.
    pub report: SdkReport,
    /// Every client's history and every copy's applied records.
    pub history: SdkHistory<W::Read, W::Value>,
    /// The trace.
    pub trace: Trace,
}

/// The object workloads of a standard run: a global `dsss_examples::Bank` of
/// [`bank::BANK_ACCOUNT_COUNT`] accounts, a global `Counter`, a global `Lobby` and a regional
/// `Leaderboard` in every region.
pub fn example_objects() -> Vec<Rc<dyn AnyObjectWorkload>> {
    vec![
        erase(
            bank::bank_workload(bank::BANK_ACCOUNT_COUNT)
                .expect("the standard account count is in bounds"),
        ),
        erase(counter::counter_workload()),
        erase(lobby::lobby_workload()),
        erase(leaderboard::leaderboard_workload()),
    ]
}

/// Runs instances holding one object of each of `workloads` on the cluster of `settings` under
/// the faults its seed draws, heals, converges, drains, and checks every object and the joint
/// history. Returns the report, the history and the trace.
pub fn run_objects_traced(
    settings: &SdkRunSettings,
    workloads: Vec<Rc<dyn AnyObjectWorkload>>,
) -> Result<JointRun, String> {
    run_objects_with_progress(settings, workloads, &mut |_| {})
}

/// [`run_objects_traced`], handing `progress` the simulated time into the fault window every
/// [`crate::workloads::session::PROGRESS_EVERY`].
pub fn run_objects_with_progress(
    settings: &SdkRunSettings,
    workloads: Vec<Rc<dyn AnyObjectWorkload>>,
    progress: &mut dyn FnMut(Duration),
) -> Result<JointRun, String> {
    settings.validate()?;
    if !(1..=OBJECT_WORKLOADS_MAX).contains(&workloads.len()) {
        return Err(format!(
            "{} object workloads; a run holds 1..={OBJECT_WORKLOADS_MAX}",
            workloads.len()
        ));
    }
    for region in &settings.cluster.topology.regions {
        for (index, workload) in workloads.iter().enumerate() {
            let object_id = workload.object_id_in(&region.id);
            dsss_wire::ObjectId::new(object_id.as_str())
                .map_err(|error| format!("object id {object_id:?}: {error}"))?;
            if let Some(other) = workloads
                .iter()
                .enumerate()
                .find(|(other, workload)| *other != index && workload.holds(&object_id))
            {
                return Err(format!(
                    "object id {object_id:?} belongs to two workloads (numbers {} and {})",
                    index.min(other.0),
                    index.max(other.0)
                ));
            }
        }
    }
    let workloads = Rc::new(workloads);
    let observer = Rc::new(RefCell::new(SdkObserver::default()));
    // Set once the setup is visible everywhere, to the end of the fault window.
    let operations_until = Rc::new(Cell::new(SimTime::MAX));
    let factory = application_factory(
        &workloads,
        settings.application,
        &operations_until,
        &observer,
    );
    let mut cluster = GlobalCluster::with_applications(&settings.cluster, factory)?;
    let mut problems = Vec::new();
    let instances = settings.cluster.topology.regions.len() * settings.cluster.clients_per_region;
    if let Err(problem) = set_up(&mut cluster, &observer, instances, settings.setup_max) {
        problems.push(problem);
    }
    let start = cluster.simulation().now();
    operations_until.set(start.saturating_add(settings.cluster.fault_window));
    let (faults, node_busy_shares) =
        run_operation_window(&mut cluster, &settings.cluster, start, progress);
    cluster.heal();
    let heal_at = cluster.simulation().now();
    let converged = cluster
        .converge(settings.cluster.convergence_max)
        .and_then(|_| drain(&mut cluster, &observer, &workloads, settings.drain_max));
    let converged_after = match converged {
        Ok(()) => Some(
            cluster
                .simulation()
                .now()
                .saturating_duration_since(heal_at),
        ),
        Err(problem) => {
            problems.push(problem);
            None
        }
    };
    problems.extend(cluster.check());
    let history = {
        let mut observer = observer.borrow_mut();
        problems.extend(observer.violations());
        observer.take_history()
    };
    let (whole_logs, _) = cluster.whole_logs();
    let logs: BTreeMap<String, BTreeMap<NodeId, &RegionLog>> = whole_logs
        .iter()
        .map(|(region, logs)| {
            (
                region.clone(),
                logs.iter().map(|(&member, log)| (member, log)).collect(),
            )
        })
        .collect();
    for workload in workloads.iter() {
        problems.extend(workload.check(
            &history,
            settings.application.checkpoint_every_records,
            &logs,
        ));
    }
    let exhaustive = if history.operation_count() <= settings.exhaustive_operations_max {
        Some(find_joint_order(
            &workloads,
            &history.clients,
            exhaustive::EXHAUSTIVE_STATES_MAX,
        ))
    } else if settings.exhaustive_operations_max > 0 {
        // Asked for, but past the bound: said, so that nobody takes it as searched.
        Some(ExhaustiveVerdict::TooLarge {
            reason: format!(
                "the history holds {} operations, more than the {} it searches (a small run, \
                 such as `dsss sim sdk --small 6`, fits)",
                history.operation_count(),
                settings.exhaustive_operations_max
            ),
        })
    } else {
        None
    };
    if let Some(ExhaustiveVerdict::Inconsistent { longest_prefix, .. }) = &exhaustive {
        problems.push(format!(
            "sequential consistency (exhaustive search): no one order of the {} operations \
             across the objects explains every result and read; the longest explained prefix \
             places {} of them",
            history.operation_count(),
            longest_prefix.len()
        ));
    }
    drop(logs);
    let counts = OperationCounts::of(&workloads, &history);
    let topology = &settings.cluster.topology;
    let report = SdkReport {
        seed: settings.cluster.seed,
        cluster_name: topology.cluster.name.clone(),
        regions: topology.regions.len(),
        instances: history.clients.len(),
        objects: workloads
            .iter()
            .map(|workload| match workload.scope() {
                Scope::Global => format!("{} (global)", workload.object_id()),
                Scope::Regional => format!("{}/<region> (regional)", workload.object_id()),
            })
            .collect(),
        fault_window: settings.cluster.fault_window,
        faults,
        simulated: cluster.simulation().now().since_start(),
        converged_after,
        records_in_order: counts.records_in_order,
        calls: counts.calls,
        calls_completed: counts.calls_completed,
        calls_refused_by_object: counts.calls_refused_by_object,
        reads: counts.reads,
        sync_reads: counts.sync_reads,
        counters: observer.borrow().counters(),
        epochs: cluster.newest_sealed_epoch(),
        exhaustive,
        problems,
        trace_hash: cluster.simulation().trace_hash(),
        work: cluster.simulation().work(),
    };
    let trace = cluster.simulation().trace().clone();
    Ok(JointRun {
        report,
        history,
        trace,
        operations_from: start,
        operations_until: operations_until.get(),
        global_call_stages: cluster.observer().stages.finished().to_vec(),
        node_busy_shares,
        epoch_skips: cluster.epoch_skips(),
    })
}

/// Runs instances holding one object of `workload` (see [`run_objects_traced`]), and gives
/// its history typed.
pub fn run_sdk_traced<W: ObjectWorkload>(
    settings: &SdkRunSettings,
    workload: W,
) -> Result<SdkRun<W>, String> {
    let stem = workload.object_id().to_owned();
    let scope = workload.scope();
    let run = run_objects_traced(settings, vec![erase(workload)])?;
    let history = run.history.object_history(|name| match scope {
        Scope::Global => name == stem,
        Scope::Regional => name.starts_with(&format!("{stem}/")),
    });
    Ok(SdkRun {
        report: run.report,
        history,
        trace: run.trace,
    })
}

/// Runs `workload` on the cluster of `settings` and checks it; see [`run_objects_traced`].
pub fn run_sdk<W: ObjectWorkload>(
    settings: &SdkRunSettings,
    workload: W,
) -> Result<SdkReport, String> {
    run_objects_traced(settings, vec![erase(workload)]).map(|run| run.report)
}

/// The entry point of `dsss sim sdk`: instances holding every object of [`example_objects`]
/// at once on the cluster of `settings`, checked.
pub fn run_example_objects(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_objects_traced(settings, example_objects()).map(|run| run.report)
}

/// A bank run: `dsss_examples::Bank` with [`bank::BANK_ACCOUNT_COUNT`] accounts alone,
/// checked.
pub fn run_bank(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, bank::bank_workload(bank::BANK_ACCOUNT_COUNT)?)
}

/// A counter run: random adds to one global `dsss_examples::Counter` alone, checked.
pub fn run_counter(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, counter::counter_workload())
}

/// A lobby run: [`lobby::LOBBY_PLAYER_COUNT`] players joining and leaving one global
/// `dsss_examples::Lobby` of [`lobby::LOBBY_CAPACITY`] seats alone, checked.
pub fn run_lobby(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, lobby::lobby_workload())
}

/// A leaderboard run: random scores on a regional `dsss_examples::Leaderboard` in every
/// region alone, each region's board checked on its own.
pub fn run_leaderboard(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, leaderboard::leaderboard_workload())
}

/// Makes the instances: the first of the first region sets the global objects up, the first
/// of every region its regional objects.
fn application_factory(
    workloads: &Rc<Vec<Rc<dyn AnyObjectWorkload>>>,
    settings: ApplicationSettings,
    operations_until: &Rc<Cell<SimTime>>,
    observer: &Rc<RefCell<SdkObserver>>,
) -> ApplicationFactory {
    let workloads = Rc::clone(workloads);
    let observer = Rc::clone(observer);
    let operations_until = Rc::clone(operations_until);
    Box::new(move |place: &ApplicationPlace| {
        let sets_up: Vec<usize> = if place.index_in_region == 0 {
            workloads
                .iter()
                .enumerate()
                .filter(|(_, workload)| {
                    place.region_index == 0 || workload.scope() == Scope::Regional
                })
                .map(|(index, _)| index)
                .collect()
        } else {
            Vec::new()
        };
        let instance = SdkInstance::new(
            settings,
            place.node,
            &place.region,
            place.members.clone(),
            &workloads,
            &sets_up,
            Rc::clone(&operations_until),
            Rc::clone(&observer),
        )
        // The settings and the object ids were checked before the cluster was built, and a
        // topology's regions have members.
        .unwrap_or_else(|error| panic!("an instance of a checked run: {error}"));
        Box::new(instance)
    })
}

/// What the histories hold, counted for the report.
struct OperationCounts {
    records_in_order: usize,
    calls: usize,
    calls_completed: usize,
    calls_refused_by_object: usize,
    reads: usize,
    sync_reads: usize,
}

impl OperationCounts {
    fn of(workloads: &[Rc<dyn AnyObjectWorkload>], history: &JointHistory) -> Self {
        let mut counts = OperationCounts {
            records_in_order: 0,
            calls: 0,
            calls_completed: 0,
            calls_refused_by_object: 0,
            reads: 0,
            sync_reads: 0,
        };
        // Every copy of an object follows one order: its longest copy holds all of it.
        for copies in history.replicas.values() {
            counts.records_in_order += copies
                .values()
                .map(|replica| replica.applied.len())
                .max()
                .unwrap_or(0);
        }
        for client in history.clients.values() {
            for operation in &client.operations {
                match operation {
                    Operation::Call(call) => {
                        counts.calls += 1;
                        let Some(completion) = &call.completion else {
                            continue;
                        };
                        counts.calls_completed += 1;
                        let refused = workloads.iter().any(|workload| {
                            workload.holds(&call.object)
                                && workload.is_refusal(&call.call, &completion.outcome)
                        });
                        if refused {
                            counts.calls_refused_by_object += 1;
                        }
                    }
                    Operation::Read(read) => {
                        counts.reads += 1;
                        if read.sync.is_some() {
                            counts.sync_reads += 1;
                        }
                    }
                }
            }
        }
        counts
    }
}

/// How many records of `object_id` in `scope` (sequenced records of a global object, records of
/// a regional one) the longest log of `region`'s members holds.
fn records_in_region(cluster: &GlobalCluster, region: &str, object_id: &str, scope: Scope) -> u64 {
    let Some((_, members)) = cluster.regions().iter().find(|(name, _)| name == region) else {
        return 0;
    };
    members
        .iter()
        .filter_map(|&member| cluster.region_node(member))
        .map(|node| {
            node.region_log()
                .cached_records()
                .filter(|stored| match (&stored.entry, scope) {
                    (LogEntry::SequencedGlobal { record, .. }, Scope::Global)
                    | (LogEntry::Regional(record), Scope::Regional) => {
                        record.object_id.as_str() == object_id
                    }
                    _ => false,
                })
                .count() as u64
        })
        .max()
        .unwrap_or(0)
}

/// Runs without faults until `instances` instances saw every copy show its setup, at most
/// `within`.
fn set_up(
    cluster: &mut GlobalCluster,
    observer: &Rc<RefCell<SdkObserver>>,
    instances: usize,
    within: Duration,
) -> Result<(), String> {
    let deadline = cluster.simulation().now().saturating_add(within);
    loop {
        let set_up = observer.borrow().set_up_at().len();
        if set_up >= instances {
            return Ok(());
        }
        if cluster.simulation().now() >= deadline {
            return Err(format!(
                "only {set_up} of {instances} instances saw the setup within {within:?}: {}",
                cluster.describe()
            ));
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
}

/// Runs until every copy has applied every record of its object its region's log holds, at
/// most `within`.
fn drain(
    cluster: &mut GlobalCluster,
    observer: &Rc<RefCell<SdkObserver>>,
    workloads: &[Rc<dyn AnyObjectWorkload>],
    within: Duration,
) -> Result<(), String> {
    let deadline = cluster.simulation().now().saturating_add(within);
    loop {
        let mut behind = Vec::new();
        {
            let observer = observer.borrow();
            let mut held: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for (object, copies) in &observer.history().replicas {
                let scope = workloads
                    .iter()
                    .find(|workload| workload.holds(object))
                    .map_or(Scope::Global, |workload| workload.scope());
                for (&client, replica) in copies {
                    let region = replica.region.as_str();
                    let in_log = *held
                        .entry((object.as_str(), region))
                        .or_insert_with(|| records_in_region(cluster, region, object, scope));
                    if replica.records_applied != in_log {
                        behind.push(format!(
                            "client {client} ({region}) applied {} of the {in_log} records of \
                             {object}",
                            replica.records_applied
                        ));
                    }
                }
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if cluster.simulation().now() >= deadline {
            return Err(format!(
                "the copies did not catch up within {within:?} after the cluster converged: \
                 {}",
                behind.join(", ")
            ));
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
}
