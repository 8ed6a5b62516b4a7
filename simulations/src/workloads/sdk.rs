//! The sdk workload: application instances that hold the SDK's sans-IO [`Replica`] of one
//! shared object (global, or one per region for a regional object), on a cluster of real
//! region nodes and coordinator replicas (the global workload's), under the same faults; and
//! the checkers of the guarantees an application relies on (docs/design.md sections 1, 2 and 6).
//!
//! A run goes like this. Every instance declares the object's schema (as `Client::open`
//! does); the first instance of the first region makes the workload's setup calls (for the
//! bank: it opens the accounts; a regional object is set up by the first instance of every
//! region, for its region's object); this setup runs without faults, until every copy shows it.
//! Then the fault window starts: instances call, read and `sync()`-read at random while the
//! seed's faults happen. Then the faults heal, the cluster converges, and the run drains: it
//! goes on until every replica has applied every record of the object that the final logs
//! hold. The checkers run on every run ([`checker`]); histories
//! of at most [`SdkRunSettings::exhaustive_operations_max`] operations are also searched for
//! an order with no help from the system ([`exhaustive`]).
//!
//! The workload is generic over the object: [`ObjectWorkload`] says which calls and reads to
//! make and what must hold of every read, and whether the object is global or regional;
//! [`bank`], [`counter`] and [`lobby`] are global objects, [`leaderboard`] a regional one.

pub mod application;
pub mod bank;
pub mod checker;
pub mod counter;
pub mod exhaustive;
pub mod history;
pub mod leaderboard;
pub mod lobby;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss::{MethodError, SharedObject};
use dsss_region_node::{LogEntry, RegionLog};
use dsss_topology::Topology;
use dsss_wire::Scope;

pub use application::{ApplicationProcess, ApplicationSettings};
pub use exhaustive::{EXHAUSTIVE_OPERATIONS_MAX, ExhaustiveVerdict, find_sequential_order};
pub use history::{
    ApplicationCounters, CallSpec, ClientHistory, Operation, SdkHistory, SdkObserver,
};

use super::global::{
    ApplicationFactory, ApplicationPlace, CONVERGENCE_CHECK_INTERVAL, FaultsDrawn, GlobalCluster,
    GlobalFaultPlan, GlobalRunSettings, run_fault_window_from,
};
use crate::network::NodeId;
use crate::random::SimRng;
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

/// What an sdk run does.
#[derive(Clone, Debug, PartialEq)]
pub struct SdkRunSettings {
    /// The cluster, its faults and windows; `clients_per_region` counts application instances
    /// (at least one in the first region, which sets the object up). `client` is not used.
    pub cluster: GlobalRunSettings,
    /// How instances behave.
    pub application: ApplicationSettings,
    /// How long the fault-free setup may take: every instance declares the schema, one sets
    /// the object up, and every copy must show the setup. The fault window starts then, and
    /// instances operate until it ends.
    pub setup_max: Duration,
    /// How long the run may drain after the cluster converged.
    pub drain_max: Duration,
    /// Histories of at most this many operations are also checked by the exhaustive search
    /// (0: never; at most [`EXHAUSTIVE_OPERATIONS_MAX`]).
    pub exhaustive_operations_max: usize,
}

impl SdkRunSettings {
    /// A fault-free run on `topology`: two instances per region, three seconds of calls and
    /// reads.
    pub fn new(seed: u64, topology: Topology) -> Self {
        let d_max = Duration::from_micros(topology.latency.d_max_us());
        let cluster = GlobalRunSettings::new(seed, topology);
        let application = ApplicationSettings {
            think_time_min: Duration::from_millis(5),
            think_time_max: Duration::from_millis(40),
            // A global call is answered once sealed: a WAN round trip to the coordinator, its
            // quorum, the watermark and the way back. A retry keeps the sequence, so retrying
            // early costs a message, while waiting long after a lost one costs the run time.
            request_timeout: d_max.saturating_mul(4) + Duration::from_millis(200),
            log_read_timeout: Duration::from_millis(100),
            log_poll_interval: Duration::from_millis(10),
            call_share: 0.6,
            sync_read_share: 0.3,
            duplicate_probability: 0.05,
            operations_max: 10_000,
            checkpoint_every_records: 8,
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
                        the object up"
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
    /// How long instances operated and faults happened.
    pub fault_window: Duration,
    /// The faults the seed drew.
    pub faults: FaultsDrawn,
    /// Total simulated time.
    pub simulated: Duration,
    /// How long the cluster took to converge and every replica to catch up after the heal
    /// (`None` if it did not).
    pub converged_after: Option<Duration>,
    /// The object's records in the total order.
    pub records_in_order: usize,
    /// Calls made (schema declarations and setup included).
    pub calls: usize,
    /// Calls that completed.
    pub calls_completed: usize,
    /// Completed calls the object refused by its own result (overdrafts).
    pub calls_refused_by_object: usize,
    /// Reads made.
    pub reads: usize,
    /// Reads made after a `sync()` barrier.
    pub sync_reads: usize,
    /// What the instances counted.
    pub counters: ApplicationCounters,
    /// Epochs sealed.
    pub epochs: u64,
    /// The exhaustive search's verdict, when the history was small enough.
    pub exhaustive: Option<ExhaustiveVerdict>,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
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
            "sdk run on cluster \"{}\": seed {}, {} regions, {} application instances, {:?} of \
             operations and faults",
            self.cluster_name, self.seed, self.regions, self.instances, self.fault_window
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
            "  {} calls ({} completed, {} refused by the object), {} reads ({} after sync), {} \
             records in the order, {} epochs",
            self.calls,
            self.calls_completed,
            self.calls_refused_by_object,
            self.reads,
            self.sync_reads,
            self.records_in_order,
            self.epochs
        )?;
        writeln!(
            formatter,
            "  {} retries, {} deliberate duplicates, {} log reads, {} checkpoint fetches, {} \
             failovers; simulated {:?}, {}",
            self.counters.retries,
            self.counters.deliberate_duplicates,
            self.counters.log_reads,
            self.counters.checkpoint_fetches,
            self.counters.failovers,
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
                "  exhaustive search: an order of {} operations explains the history ({} \
                 states)",
                order.len(),
                states_explored
            )?,
            Some(ExhaustiveVerdict::Inconsistent {
                states_explored, ..
            }) => writeln!(
                formatter,
                "  exhaustive search: NO order explains the history ({states_explored} states)"
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

/// A run's report, its histories and its trace.
pub struct SdkRun<W: ObjectWorkload> {
    /// The report.
    pub report: SdkReport,
    /// Every client's history and every replica's applied records.
    pub history: SdkHistory<W::Read, W::Value>,
    /// The trace.
    pub trace: Trace,
}

/// Runs `workload` on the cluster of `settings` under the faults its seed draws, heals,
/// converges, drains, and checks. Returns the report, the histories and the trace.
pub fn run_sdk_traced<W: ObjectWorkload>(
    settings: &SdkRunSettings,
    workload: W,
) -> Result<SdkRun<W>, String> {
    settings.validate()?;
    for region in &settings.cluster.topology.regions {
        let object_id = workload.object_id_in(&region.id);
        dsss_wire::ObjectId::new(object_id.as_str())
            .map_err(|error| format!("object id {object_id:?}: {error}"))?;
    }
    let workload = Rc::new(workload);
    let observer: Rc<RefCell<SdkObserver<W::Read, W::Value>>> =
        Rc::new(RefCell::new(SdkObserver::default()));
    // Set once the setup is visible everywhere, to the end of the fault window.
    let operations_until = Rc::new(Cell::new(SimTime::MAX));
    let factory = application_factory(
        &workload,
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
    let faults = run_fault_window_from(&mut cluster, &settings.cluster, start);
    cluster.heal();
    let heal_at = cluster.simulation().now();
    let converged = cluster
        .converge(settings.cluster.convergence_max)
        .and_then(|_| {
            drain(
                &mut cluster,
                &observer,
                workload.as_ref(),
                settings.drain_max,
            )
        });
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
    let logs = final_logs(&cluster);
    problems.extend(checker::check_all(
        workload.as_ref(),
        &history,
        settings.application.checkpoint_every_records,
        &logs,
    ));
    let exhaustive = (history.operation_count() <= settings.exhaustive_operations_max).then(|| {
        find_sequential_order(
            workload.as_ref(),
            &history.clients,
            exhaustive::EXHAUSTIVE_STATES_MAX,
        )
    });
    if let Some(ExhaustiveVerdict::Inconsistent { longest_prefix, .. }) = &exhaustive {
        problems.push(format!(
            "sequential consistency (exhaustive search): no order of the {} operations explains \
             every result and read; the longest explained prefix places {} of them",
            history.operation_count(),
            longest_prefix.len()
        ));
    }
    drop(logs);
    let counts = OperationCounts::of(workload.as_ref(), &history);
    let topology = &settings.cluster.topology;
    let report = SdkReport {
        seed: settings.cluster.seed,
        cluster_name: topology.cluster.name.clone(),
        regions: topology.regions.len(),
        instances: history.clients.len(),
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
        counters: observer.borrow().counters,
        epochs: cluster.newest_sealed_epoch(),
        exhaustive,
        problems,
        trace_hash: cluster.simulation().trace_hash(),
    };
    let trace = cluster.simulation().trace().clone();
    Ok(SdkRun {
        report,
        history,
        trace,
    })
}

/// The entry point of `dsss sim bank`: the bank workload over `dsss_examples::Bank` with
/// [`bank::BANK_ACCOUNT_COUNT`] accounts on the cluster of `settings`, checked.
pub fn run_bank(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, bank::bank_workload(bank::BANK_ACCOUNT_COUNT)?)
}

/// The entry point of a counter run: random adds to one global `dsss_examples::Counter` on
/// the cluster of `settings`, checked.
pub fn run_counter(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, counter::counter_workload())
}

/// The entry point of a lobby run: [`lobby::LOBBY_PLAYER_COUNT`] players joining and leaving
/// one global `dsss_examples::Lobby` of [`lobby::LOBBY_CAPACITY`] seats on the cluster of
/// `settings`, checked.
pub fn run_lobby(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, lobby::lobby_workload())
}

/// The entry point of a leaderboard run: random scores on a regional
/// `dsss_examples::Leaderboard` in every region of the cluster of `settings`, each region's
/// board checked on its own.
pub fn run_leaderboard(settings: &SdkRunSettings) -> Result<SdkReport, String> {
    run_sdk(settings, leaderboard::leaderboard_workload())
}

/// Makes the instances: the first of the first region sets the object up (of every region,
/// for a regional object).
fn application_factory<W: ObjectWorkload>(
    workload: &Rc<W>,
    settings: ApplicationSettings,
    operations_until: &Rc<Cell<SimTime>>,
    observer: &Rc<RefCell<SdkObserver<W::Read, W::Value>>>,
) -> ApplicationFactory {
    let workload = Rc::clone(workload);
    let observer = Rc::clone(observer);
    let operations_until = Rc::clone(operations_until);
    let regional = workload.scope() == Scope::Regional;
    Box::new(move |place: &ApplicationPlace| {
        // Every regional object needs its own setup; a global one is set up once.
        let sets_up = (place.region_index == 0 || regional) && place.index_in_region == 0;
        let instance = ApplicationProcess::new(
            Rc::clone(&workload),
            settings,
            place.region.clone(),
            place.members.clone(),
            sets_up,
            Rc::clone(&operations_until),
            Rc::clone(&observer),
        )
        // The settings and the object id were checked before the cluster was built, and a
        // topology's regions have members.
        .unwrap_or_else(|error| panic!("an instance of a checked run: {error}"));
        Box::new(instance)
    })
}

/// Runs `workload` on the cluster of `settings` and checks it; see [`run_sdk_traced`].
pub fn run_sdk<W: ObjectWorkload>(
    settings: &SdkRunSettings,
    workload: W,
) -> Result<SdkReport, String> {
    run_sdk_traced(settings, workload).map(|run| run.report)
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
    fn of<W: ObjectWorkload>(workload: &W, history: &SdkHistory<W::Read, W::Value>) -> Self {
        let calls: Vec<_> = history.calls().map(|(_, call)| call).collect();
        // Every region's replicas follow one order per object: for a global object the same
        // order everywhere, for a regional object one order per region, counted together.
        let mut longest_by_region: BTreeMap<&str, usize> = BTreeMap::new();
        for replica in history.replicas.values() {
            let longest = longest_by_region
                .entry(replica.region.as_str())
                .or_default();
            *longest = (*longest).max(replica.applied.len());
        }
        let records_in_order = match workload.scope() {
            Scope::Global => longest_by_region.values().copied().max().unwrap_or(0),
            Scope::Regional => longest_by_region.values().sum(),
        };
        OperationCounts {
            records_in_order,
            calls: calls.len(),
            calls_completed: calls
                .iter()
                .filter(|call| call.completion.is_some())
                .count(),
            calls_refused_by_object: calls
                .iter()
                .filter(|call| {
                    call.completion.as_ref().is_some_and(|completion| {
                        workload.is_refusal(&call.call, &completion.outcome)
                    })
                })
                .count(),
            reads: history.reads().count(),
            sync_reads: history
                .reads()
                .filter(|(_, read)| read.sync.is_some())
                .count(),
        }
    }
}

/// The logs of every member that is up, by region.
fn final_logs(cluster: &GlobalCluster) -> BTreeMap<String, BTreeMap<NodeId, &RegionLog>> {
    let mut logs: BTreeMap<String, BTreeMap<NodeId, &RegionLog>> = BTreeMap::new();
    for (region, members) in cluster.regions() {
        let entry = logs.entry(region.clone()).or_default();
        for &member in members {
            if let Some(node) = cluster.region_node(member) {
                entry.insert(member, node.region_log());
            }
        }
    }
    logs
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
                .records()
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

/// Runs without faults until `instances` copies show the setup, at most `within`.
fn set_up<R, V>(
    cluster: &mut GlobalCluster,
    observer: &Rc<RefCell<SdkObserver<R, V>>>,
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
                "only {set_up} of {instances} copies showed the setup within {within:?}: {}",
                cluster.describe()
            ));
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
}

/// Runs until every replica has applied every record of the object its region's log holds,
/// at most `within`.
fn drain<W: ObjectWorkload>(
    cluster: &mut GlobalCluster,
    observer: &Rc<RefCell<SdkObserver<W::Read, W::Value>>>,
    workload: &W,
    within: Duration,
) -> Result<(), String> {
    let deadline = cluster.simulation().now().saturating_add(within);
    loop {
        let mut behind = Vec::new();
        {
            let observer = observer.borrow();
            let mut held: BTreeMap<&str, u64> = BTreeMap::new();
            for (&client, replica) in &observer.history().replicas {
                let region = replica.region.as_str();
                let in_log = *held.entry(region).or_insert_with(|| {
                    let object_id = workload.object_id_in(region);
                    records_in_region(cluster, region, &object_id, workload.scope())
                });
                if replica.records_applied != in_log {
                    behind.push(format!(
                        "client {client} ({region}) applied {} of {in_log}",
                        replica.records_applied
                    ));
                }
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if cluster.simulation().now() >= deadline {
            return Err(format!(
                "the replicas did not catch up within {within:?} after the cluster converged: \
                 {}",
                behind.join(", ")
            ));
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
}
