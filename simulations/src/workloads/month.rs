//! The month workload: a compressed month of a region's life, to show that nothing a region
//! keeps grows without bound when application instances come and go (docs/design.md
//! section 6).
//!
//! On the global workload's cluster of real region nodes and coordinator replicas, slots of
//! application instances ([`instance::MonthSlot`]) run the SDK's own `ClientSession` with
//! checkpoint uploads carried to the region. Instances keep arriving: each opens a few
//! journals (`dsss_examples::Journal`, payloads in the region log, a small summary as state),
//! most of them its own, sometimes a popular one of its region shared with other instances,
//! sometimes a global one, appends payloads, and goes away: closing its objects, abandoning
//! them at once, or lingering idle and then abandoning them. Every global object is never
//! opened in one region ([`global_object_opened_in`]), so that region's copy of its records is
//! followed by nobody. The region log quota is small and the payloads large, so the log
//! crosses the quota many times over; the run lasts long enough in simulated time for the
//! sessions that ended to pass the region's idle timeout. Then arrivals stop, the cluster is
//! quiet for a while, and the instances still running make one append, a `sync()` barrier and
//! a read of every object they hold. The first instance of each region is a keeper that holds
//! one global object to the end (one never opened in the next region); after the final reads
//! each instance still running opens the global object never opened in its region that a
//! keeper read, whose records its region released: the region adopts the keeper region's
//! checkpoint of it (docs/design.md section 2.8), and the instance reads it after a barrier.
//!
//! Checked on every run, with the seed in every failure:
//! - no write is refused because the region log is full (every refusal any member sent an
//!   instance is counted), and no write or open fails for another reason than the region
//!   releasing the records of an object nobody followed (those are counted apart);
//! - every member's retained log stays at or under the region's quota and its cache of
//!   entries under `LOG_CACHE_BYTES_MAX`, sampled through the run;
//! - every copy agrees: the instances holding an object read the same summary after the
//!   final barrier (the late opens' copies included), and the cluster's own checks (the same
//!   logs and epochs) pass;
//! - every late open of an object a holder elsewhere read completes.

pub mod instance;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use dsss_global_coordinator::CoordinatorLimits;
use dsss_region_node::region_log::LOG_CACHE_BYTES_MAX;
use dsss_topology::Topology;

pub use instance::{Ending, MonthSlot};

use super::global::{
    ApplicationFactory, ApplicationPlace, CLIENTS_PER_REGION_MAX, CONVERGENCE_CHECK_INTERVAL,
    FaultsDrawn, GlobalCluster, GlobalFaultPlan, GlobalRunSettings, run_fault_window_observed,
};
use crate::network::NodeId;
use crate::time::SimTime;

/// The most objects of a run, regional and global together.
pub const OBJECTS_MAX: usize = 100_000;

/// The shortest pause of a slot between two instances: longer than a member takes to answer
/// any request of the instance that ended (a proposal's timeout is a few seconds on the
/// simulated topologies), so that no answer meant for one session reaches the next.
pub const GAP_SHORTEST_MIN: Duration = Duration::from_secs(10);

/// The most examples of a kind of failure a report keeps.
const EXAMPLES_KEPT: usize = 1;

/// The most problems a report keeps.
const PROBLEMS_KEPT_MAX: usize = 64;

/// Whether global object `index` is opened in the region at `region_index` of `regions`: each
/// global object is never opened in one region, so that region holds records of it that no
/// copy there follows.
pub fn global_object_opened_in(index: usize, region_index: usize, regions: usize) -> bool {
    regions < 2 || index % regions != region_index
}

/// What a month run does.
#[derive(Clone, Debug, PartialEq)]
pub struct MonthSettings {
    /// Every random choice of the run comes from this seed.
    pub seed: u64,
    /// The cluster; its `region_log_quota_bytes` is the quota the run crosses.
    pub topology: Topology,
    /// Places where instances come and go, per region (1 to `CLIENTS_PER_REGION_MAX`).
    pub slots_per_region: usize,
    /// Objects owned by one instance each, over all regions (split evenly).
    pub own_objects: usize,
    /// Objects of each region that many instances share.
    pub popular_objects_per_region: usize,
    /// Global objects.
    pub global_objects: usize,
    /// How many own objects an instance opens, fewest and most.
    pub own_objects_per_instance: (usize, usize),
    /// The share of instances that also open a popular object.
    pub popular_share: f64,
    /// The share of instances that also open a global object.
    pub global_share: f64,
    /// How many appends an instance makes, fewest and most.
    pub appends_per_instance: (u32, u32),
    /// The size of an append's payload, smallest and largest.
    pub payload_bytes: (usize, usize),
    /// The pause between two appends of an instance, shortest and longest.
    pub think_time: (Duration, Duration),
    /// The longest a lingering instance stays idle before it ends.
    pub linger_max: Duration,
    /// The pause of a slot between two instances, shortest and longest; the shortest is longer
    /// than any request of the instance that ended takes to be answered.
    pub gap: (Duration, Duration),
    /// How long new instances keep arriving.
    pub arrivals_for: Duration,
    /// How long the cluster then stays quiet before the final round.
    pub quiet_for: Duration,
    /// Every copy checkpoints after this many records of its object.
    pub checkpoint_every_records: u64,
    /// A copy whose object had no record for this long checkpoints.
    pub idle_checkpoint_after: Duration,
    /// How often every member's log is measured.
    pub sample_every: Duration,
    /// How long the final round may take.
    pub final_round_max: Duration,
    /// How long one request may go unanswered before the session tries another member.
    pub attempt_timeout: Duration,
    /// How long the log stream may stall while something waits on it.
    pub stream_stall_timeout: Duration,
    /// How long a call, an open or a barrier may take over all attempts.
    pub call_timeout: Duration,
    /// How long the driver waits for a member's answer to a log read.
    pub log_read_timeout: Duration,
    /// How long a member may hold a log read that finds nothing new before it answers empty
    /// (it answers as soon as it applies something, as a production stream pushes).
    pub log_read_wait: Duration,
    /// Whether the first instance of each region is a keeper that holds one global object
    /// to the end (the first never opened in the next region), and each holder, after its
    /// final reads, opens the first global object never opened in its region that a holder
    /// elsewhere read (a keeper's), and reads it: its region released the object's records,
    /// so the open completes by the region adopting another region's checkpoint of it.
    pub late_global_opens: bool,
    /// The faults of the run, drawn over the hour of arrivals (none by default). With a
    /// scripted region cut, that region's failures from the cut until [`CUT_RECOVERY`] after
    /// it count as [`CUT_OFF`], not as failures of the run.
    pub faults: GlobalFaultPlan,
    /// The coordinator's bounds (its retention of sealed epochs among them).
    pub coordinator_limits: CoordinatorLimits,
}

impl MonthSettings {
    /// The standard month on `topology` with a region log quota of 2 MiB: 9 slots per region (one of them a keeper),
    /// 3,000 own objects, 10 popular objects per region, 24 global objects, payloads of 256
    /// to 1,536 bytes, 60 minutes of arrivals and 32 quiet ones (past the region's 30-minute
    /// session idle timeout).
    pub fn new(seed: u64, mut topology: Topology) -> MonthSettings {
        topology.cluster.region_log_quota_bytes = 2 * 1024 * 1024;
        let d_max_us = topology.latency.d_max_us();
        MonthSettings {
            seed,
            topology,
            slots_per_region: 9,
            own_objects: 3_000,
            popular_objects_per_region: 10,
            global_objects: 24,
            own_objects_per_instance: (1, 3),
            popular_share: 0.5,
            global_share: 0.3,
            appends_per_instance: (10, 40),
            payload_bytes: (256, 1_536),
            think_time: (Duration::from_millis(200), Duration::from_millis(1_500)),
            linger_max: Duration::from_secs(30),
            gap: (Duration::from_secs(12), Duration::from_secs(40)),
            arrivals_for: Duration::from_secs(60 * 60),
            quiet_for: Duration::from_secs(32 * 60),
            checkpoint_every_records: 64,
            idle_checkpoint_after: Duration::from_secs(10),
            sample_every: Duration::from_secs(5),
            final_round_max: Duration::from_secs(180),
            attempt_timeout: Duration::from_micros(dsss::session::attempt_timeout_us_for_d_max(
                d_max_us,
            )),
            stream_stall_timeout: Duration::from_millis(1_000),
            call_timeout: Duration::from_secs(10),
            log_read_timeout: Duration::from_millis(300),
            log_read_wait: Duration::from_millis(250),
            late_global_opens: true,
            faults: GlobalFaultPlan::NONE,
            coordinator_limits: CoordinatorLimits::default(),
        }
    }

    /// Own objects per region.
    pub fn own_objects_per_region(&self) -> u64 {
        (self.own_objects / self.topology.regions.len().max(1)) as u64
    }

    /// Rejects settings the run cannot honour, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=CLIENTS_PER_REGION_MAX).contains(&self.slots_per_region) {
            return Err(format!(
                "slots_per_region: {} is outside 1..={CLIENTS_PER_REGION_MAX}",
                self.slots_per_region
            ));
        }
        let objects = self.own_objects
            + self.popular_objects_per_region * self.topology.regions.len()
            + self.global_objects;
        if objects > OBJECTS_MAX {
            return Err(format!(
                "own_objects + popular objects + global_objects: {objects} is above \
                 {OBJECTS_MAX}"
            ));
        }
        for (name, (low, high)) in [
            ("own_objects_per_instance", self.own_objects_per_instance),
            ("payload_bytes", self.payload_bytes),
        ] {
            if low > high {
                return Err(format!("{name}: {low} is above {high}"));
            }
        }
        if self.payload_bytes.1 > dsss_wire::ARGUMENTS_BYTES_MAX - 16 {
            return Err(format!(
                "payload_bytes: {} does not fit a call's arguments",
                self.payload_bytes.1
            ));
        }
        if self.appends_per_instance.0 > self.appends_per_instance.1 {
            return Err("appends_per_instance: the fewest is above the most".to_owned());
        }
        for (name, share) in [
            ("popular_share", self.popular_share),
            ("global_share", self.global_share),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{name}: {share} is outside 0..=1"));
            }
        }
        if self.think_time.0 > self.think_time.1 || self.gap.0 > self.gap.1 {
            return Err("think_time and gap: the shortest is above the longest".to_owned());
        }
        for (name, duration) in [
            ("arrivals_for", self.arrivals_for),
            ("quiet_for", self.quiet_for),
            ("sample_every", self.sample_every),
            ("final_round_max", self.final_round_max),
            ("attempt_timeout", self.attempt_timeout),
            ("stream_stall_timeout", self.stream_stall_timeout),
            ("call_timeout", self.call_timeout),
            ("log_read_timeout", self.log_read_timeout),
            ("log_read_wait", self.log_read_wait),
            ("think_time.1", self.think_time.1),
        ] {
            if duration.is_zero() || duration > Duration::from_secs(30 * 24 * 3_600) {
                return Err(format!("{name}: {duration:?} is outside 1 ns..=30 days"));
            }
        }
        if self.gap.0 < GAP_SHORTEST_MIN {
            return Err(format!(
                "gap: the shortest pause {:?} is below {GAP_SHORTEST_MIN:?}: answers to an \
                 ended instance could reach the next",
                self.gap.0
            ));
        }
        Ok(())
    }
}

/// Where the final round stands, as the harness tells the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalRound {
    /// Not begun: instances come and go, then hold their objects.
    NotYet,
    /// Every holder opens the shared objects and makes one append.
    Appends,
    /// Every holder's append is done: each makes a `sync()` barrier and reads.
    Reads,
    /// Every holder read: each opens a global object never opened in its region that a
    /// holder elsewhere read, makes a barrier and reads it.
    LateOpens,
}

/// What an instance read of a journal after the final barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectRead {
    /// Entries appended.
    pub entries: u64,
    /// Bytes appended.
    pub bytes: u64,
    /// The digest of every entry in order.
    pub digest: u64,
}

/// A count of failures of one kind, with the first one described.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailureCount {
    /// How many.
    pub count: u64,
    /// The first, described.
    pub examples: Vec<String>,
}

impl FailureCount {
    fn add(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < EXAMPLES_KEPT {
            self.examples.push(example);
        }
    }
}

/// The kind of a failure in a region while it is cut off from the others (a scripted cut,
/// [`MonthSettings::faults`]), until a while after it returns: its global calls cannot be
/// sealed then.
pub const CUT_OFF: &str = "while its region was cut off";

/// How long after a scripted cut ends its region's failures still count as [`CUT_OFF`]: the
/// region catches up (skipping what no log holds any longer) and adopts its global objects'
/// checkpoints, and calls that began before take their timeout.
pub const CUT_RECOVERY: Duration = Duration::from_secs(3 * 60);

/// The kind of a failed open or call, from its message: the region log at its quota, the
/// records of the object released by the region, or anything else.
pub fn failure_kind(message: &str) -> &'static str {
    if message.contains("log is full") || message.contains("quota") {
        "the region log is full"
    } else if message.contains("released") {
        "the object's records were released"
    } else {
        "other"
    }
}

/// What the slots of a run share with the harness.
#[derive(Debug, Default)]
pub struct MonthObserver {
    /// The next own object of each region.
    pub next_own: BTreeMap<String, u64>,
    /// The regions whose keeper started.
    pub keepers: BTreeSet<String>,
    /// Instances started.
    pub instances_started: u64,
    /// Instances running now.
    pub live: u64,
    /// Instances that ended, by how.
    pub endings: BTreeMap<&'static str, u64>,
    /// Objects opened at least once.
    pub objects_opened: BTreeSet<String>,
    /// Opens that completed.
    pub opens: u64,
    /// Opens that failed, by kind ([`failure_kind`]).
    pub open_failures: BTreeMap<&'static str, FailureCount>,
    /// Appends acknowledged.
    pub appends_acknowledged: u64,
    /// Payload bytes of the appends acknowledged, by the region whose log holds them.
    pub payload_bytes_by_region: BTreeMap<String, u64>,
    /// Calls that failed, by kind.
    pub call_failures: BTreeMap<&'static str, FailureCount>,
    /// Refusals because the region log is full that members sent instances, by region.
    pub log_full_refusals: BTreeMap<String, FailureCount>,
    /// Checkpoints made because an object's writes stopped, summed as instances end.
    pub idle_checkpoints: u64,
    /// Copies moved to a newer checkpoint over a truncated part of the log.
    pub copies_restored: u64,
    /// Holders whose final append is done (or failed).
    pub final_appends_done: u64,
    /// Instances done with the final round's reads.
    pub holders_finished: u64,
    /// Instances done with the late open.
    pub late_finished: u64,
    /// The final reads: object, then instance index.
    pub final_reads: BTreeMap<String, BTreeMap<u64, ObjectRead>>,
    /// Holders that opened a late object (a global object never opened in their region).
    pub late_opens: u64,
    /// Of those, opens that completed, and how many attempts the slowest took.
    pub late_opens_completed: u64,
    /// The most attempts a late open that completed took.
    pub late_open_attempts_max: u32,
    /// Late opens given up: the object and the last error.
    pub late_open_failures: Vec<(String, String)>,
    /// Copies of global objects behind a skip of sealed epochs no log held any longer, which
    /// fetched their state again, summed as instances end or finish.
    pub copies_behind_skipped_epochs: u64,
    /// The region within its scripted cut (or its recovery after it), set by the harness.
    pub cut_off: Option<String>,
    violations: Vec<String>,
}

impl MonthObserver {
    /// Notes a broken expectation.
    pub fn violation(&mut self, problem: String) {
        if self.violations.len() < PROBLEMS_KEPT_MAX {
            self.violations.push(problem);
        }
    }

    fn opened(&mut self, object: &str) {
        self.opens += 1;
        if !self.objects_opened.contains(object) {
            self.objects_opened.insert(object.to_owned());
        }
    }

    /// The kind of a failure in `region`: [`CUT_OFF`] while it is cut off, by its message
    /// otherwise.
    fn kind_in(&self, region: &str, error: &str) -> &'static str {
        match failure_kind(error) {
            "other" if self.cut_off.as_deref() == Some(region) => CUT_OFF,
            kind => kind,
        }
    }

    fn open_failed(&mut self, region: &str, object: &str, error: &str) {
        let kind = self.kind_in(region, error);
        self.open_failures
            .entry(kind)
            .or_default()
            .add(format!("{object} ({region}): {error}"));
    }

    fn late_opened(&mut self, attempt: u32) {
        self.late_opens_completed += 1;
        self.late_open_attempts_max = self.late_open_attempts_max.max(attempt);
    }

    fn late_open_failed(&mut self, object: &str, error: &str) {
        if self.late_open_failures.len() < PROBLEMS_KEPT_MAX {
            self.late_open_failures
                .push((object.to_owned(), error.to_owned()));
        }
    }

    fn call_failed(&mut self, region: &str, object: &str, error: &str) {
        let kind = self.kind_in(region, error);
        self.call_failures
            .entry(kind)
            .or_default()
            .add(format!("{object} ({region}): {error}"));
    }

    fn log_full(&mut self, node: NodeId, region: &str, reason: &str) {
        self.log_full_refusals
            .entry(region.to_owned())
            .or_default()
            .add(format!("node {node}: the region log is full: {reason}"));
    }

    fn appended(&mut self, region: Option<&str>, regions: &[String], payload_bytes: usize) {
        self.appends_acknowledged += 1;
        let payload_bytes = payload_bytes as u64;
        match region {
            Some(region) => {
                *self
                    .payload_bytes_by_region
                    .entry(region.to_owned())
                    .or_default() += payload_bytes;
            }
            // A global record is in every region's log.
            None => {
                for region in regions {
                    *self
                        .payload_bytes_by_region
                        .entry(region.clone())
                        .or_default() += payload_bytes;
                }
            }
        }
    }

    fn final_read(&mut self, object: &str, instance: u64, read: ObjectRead) {
        self.final_reads
            .entry(object.to_owned())
            .or_default()
            .insert(instance, read);
    }
}

/// How one region's log fared, over the samples of its members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionFigures {
    /// The region.
    pub region: String,
    /// Its log quota.
    pub quota_bytes: u64,
    /// The largest retained log of any member.
    pub retained_bytes_peak: u64,
    /// The largest cache of entries of any member.
    pub cache_bytes_peak: u64,
    /// The most sessions any member tracked.
    pub sessions_peak: usize,
    /// Sessions tracked at the end (the most over the members).
    pub sessions_at_end: usize,
    /// Times the truncation point moved up, as the first member saw it between samples.
    pub truncation_moves: u64,
    /// The truncation point at the end.
    pub truncated_through: u64,
    /// The last position at the end: records and other entries the log ever held.
    pub last_position: u64,
    /// Objects the region keeps a checkpoint of, at the end.
    pub objects_checkpointed: u64,
    /// Objects with records no checkpoint covers, at the end.
    pub objects_uncovered: u64,
    /// Payload bytes of the appends acknowledged to instances that the region's log holds
    /// (its regional objects', and every global object's): a floor under what the log was
    /// written, entry headers not counted.
    pub payload_bytes_appended: u64,
}

/// The result of a month run.
#[derive(Clone, Debug)]
pub struct MonthReport {
    /// The seed.
    pub seed: u64,
    /// Total simulated time.
    pub simulated: Duration,
    /// Instances started.
    pub instances_started: u64,
    /// Instances that ended, by how.
    pub endings: BTreeMap<&'static str, u64>,
    /// Instances that held objects to the final round.
    pub holders: u64,
    /// Objects opened at least once.
    pub objects_opened: usize,
    /// Of those, global ones.
    pub global_objects_opened: usize,
    /// Opens that completed.
    pub opens: u64,
    /// Opens that failed, by kind.
    pub open_failures: BTreeMap<&'static str, FailureCount>,
    /// Appends acknowledged.
    pub appends_acknowledged: u64,
    /// Calls that failed, by kind.
    pub call_failures: BTreeMap<&'static str, FailureCount>,
    /// Log-full refusals members sent, by region.
    pub log_full_refusals: BTreeMap<String, FailureCount>,
    /// Idle checkpoints the instances' copies made.
    pub idle_checkpoints: u64,
    /// Copies restored from a newer checkpoint.
    pub copies_restored: u64,
    /// Every region's log.
    pub regions: Vec<RegionFigures>,
    /// Objects read by two or more holders at the end, all in agreement unless a problem
    /// says otherwise.
    pub objects_compared: usize,
    /// Late opens (holders opening a global object never opened in their region) started
    /// and completed, and the most attempts one took.
    pub late_opens: (u64, u64, u32),
    /// Checkpoints of global objects the regions adopted from other regions, over every
    /// member (`RegionStatus::adoptions`).
    pub checkpoints_adopted: u64,
    /// Skips of sealed epochs no log held any longer, summed over the regions.
    pub epoch_skips: u64,
    /// Copies of global objects behind such a skip, which fetched their state again.
    pub copies_behind_skipped_epochs: u64,
    /// Late opens given up: the object and the last error.
    pub late_open_failures: Vec<(String, String)>,
    /// The faults drawn over the hour of arrivals, when the run had any.
    pub faults: Option<FaultsDrawn>,
    /// Broken guarantees, described (empty in a correct build).
    pub problems: Vec<String>,
    /// SHA-256 of the run's trace.
    pub trace_hash: String,
}

impl MonthReport {
    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Log-full refusals over every region.
    pub fn log_full_refusal_count(&self) -> u64 {
        self.log_full_refusals
            .values()
            .map(|count| count.count)
            .sum()
    }
}

fn write_failures(
    formatter: &mut fmt::Formatter<'_>,
    what: &str,
    failures: &BTreeMap<&'static str, FailureCount>,
) -> fmt::Result {
    for (kind, count) in failures {
        writeln!(formatter, "  {what} that failed ({kind}): {}", count.count)?;
        for example in &count.examples {
            writeln!(formatter, "    first: {example}")?;
        }
    }
    Ok(())
}

impl fmt::Display for MonthReport {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            formatter,
            "month seed {}: {:.0} min simulated; {} instances started, {} held objects to the \
             end; ended: {:?}",
            self.seed,
            self.simulated.as_secs_f64() / 60.0,
            self.instances_started,
            self.holders,
            self.endings
        )?;
        writeln!(
            formatter,
            "  {} objects opened ({} global), {} opens, {} appends acknowledged, {} idle \
             checkpoints, {} copies restored from a checkpoint",
            self.objects_opened,
            self.global_objects_opened,
            self.opens,
            self.appends_acknowledged,
            self.idle_checkpoints,
            self.copies_restored
        )?;
        writeln!(
            formatter,
            "  late opens of global objects never opened in their region: {} started, {} \
             completed (at most {} attempts), {} checkpoints adopted from other regions",
            self.late_opens.0, self.late_opens.1, self.late_opens.2, self.checkpoints_adopted
        )?;
        for (object, error) in self.late_open_failures.iter().take(EXAMPLES_KEPT) {
            writeln!(formatter, "    first late open given up: {object}: {error}")?;
        }
        if self.epoch_skips > 0 || self.copies_behind_skipped_epochs > 0 {
            writeln!(
                formatter,
                "  {} skips of sealed epochs no region's log held any longer; {} copies of \
                 global objects behind one fetched their state again",
                self.epoch_skips, self.copies_behind_skipped_epochs
            )?;
        }
        if let Some(faults) = &self.faults {
            writeln!(
                formatter,
                "  faults over the arrivals: {} crashes ({} of the coordinator leader), {} \
                 pauses, clock skew up to {} ms, loss {:.3}, duplication {:.3}, reordering {:.3}",
                faults.crashes,
                faults.coordinator_leader_crashes,
                faults.pauses,
                faults.clock_skew_us_max / 1_000,
                faults.network.loss_probability,
                faults.network.duplication_probability,
                faults.network.reorder_probability
            )?;
        }
        write_failures(formatter, "opens", &self.open_failures)?;
        write_failures(formatter, "calls", &self.call_failures)?;
        for (region, count) in &self.log_full_refusals {
            writeln!(
                formatter,
                "  log-full refusals in {region}: {}",
                count.count
            )?;
            for example in &count.examples {
                writeln!(formatter, "    first: {example}")?;
            }
        }
        for region in &self.regions {
            writeln!(
                formatter,
                "  {}: {} entries, {:.1} MiB of payloads appended = {:.1} x the {} MiB quota; \
                 retained peak {:.2} MiB, cache peak {:.2} MiB, truncation moved {} times \
                 (through {}), sessions peak {} / at end {}, {} objects checkpointed, {} \
                 uncovered",
                region.region,
                region.last_position,
                region.payload_bytes_appended as f64 / (1024.0 * 1024.0),
                region.payload_bytes_appended as f64 / region.quota_bytes.max(1) as f64,
                region.quota_bytes / (1024 * 1024),
                region.retained_bytes_peak as f64 / (1024.0 * 1024.0),
                region.cache_bytes_peak as f64 / (1024.0 * 1024.0),
                region.truncation_moves,
                region.truncated_through,
                region.sessions_peak,
                region.sessions_at_end,
                region.objects_checkpointed,
                region.objects_uncovered
            )?;
        }
        if self.problems.is_empty() {
            write!(
                formatter,
                "  no log-full refusal, logs under quota, {} shared objects agree; trace {}",
                self.objects_compared,
                &self.trace_hash[..16.min(self.trace_hash.len())]
            )
        } else {
            write!(formatter, "  FAILED ({} problems):", self.problems.len())?;
            for problem in self.problems.iter().take(12) {
                write!(formatter, "\n  - {problem}")?;
            }
            write!(formatter, "\n  replay: DSSS_SEED={}", self.seed)
        }
    }
}

/// Samples of every member's log through a run.
struct Sampler {
    quota_bytes: u64,
    regions: Vec<RegionFigures>,
    /// The truncation point each region's first member showed last.
    last_seen: Vec<Option<u64>>,
    problems: Vec<String>,
    over_quota_reported: BTreeSet<NodeId>,
    over_cache_reported: BTreeSet<NodeId>,
}

impl Sampler {
    fn new(cluster: &GlobalCluster, quota_bytes: u64) -> Sampler {
        Sampler {
            quota_bytes,
            regions: cluster
                .regions()
                .iter()
                .map(|(region, _)| RegionFigures {
                    region: region.clone(),
                    quota_bytes,
                    ..RegionFigures::default()
                })
                .collect(),
            last_seen: vec![None; cluster.regions().len()],
            problems: Vec::new(),
            over_quota_reported: BTreeSet::new(),
            over_cache_reported: BTreeSet::new(),
        }
    }

    fn sample(&mut self, cluster: &mut GlobalCluster) {
        let now = cluster.simulation().now().since_start();
        let regions: Vec<(String, Vec<NodeId>)> = cluster.regions().to_vec();
        for (index, (region, members)) in regions.iter().enumerate() {
            let figures = &mut self.regions[index];
            let mut sessions_now = 0;
            for (position, &member) in members.iter().enumerate() {
                let Some(node) = cluster.region_node(member) else {
                    continue;
                };
                let log = node.region_log();
                let retained = log.retained_size_bytes();
                let cache = log.cache_size_bytes();
                let sessions = log.dedup().session_count();
                figures.retained_bytes_peak = figures.retained_bytes_peak.max(retained);
                figures.cache_bytes_peak = figures.cache_bytes_peak.max(cache);
                figures.sessions_peak = figures.sessions_peak.max(sessions);
                sessions_now = sessions_now.max(sessions);
                if retained > self.quota_bytes && self.over_quota_reported.insert(member) {
                    self.problems.push(format!(
                        "{region} node {member} retains {retained} bytes of log at {:.0} s, \
                         above the quota of {} bytes",
                        now.as_secs_f64(),
                        self.quota_bytes
                    ));
                }
                if cache > LOG_CACHE_BYTES_MAX && self.over_cache_reported.insert(member) {
                    self.problems.push(format!(
                        "{region} node {member} caches {cache} bytes of log at {:.0} s, above \
                         LOG_CACHE_BYTES_MAX = {LOG_CACHE_BYTES_MAX}",
                        now.as_secs_f64()
                    ));
                }
                if position == 0 {
                    let truncated = log.truncated_through();
                    if self.last_seen[index].is_some_and(|before| truncated > before) {
                        figures.truncation_moves += 1;
                    }
                    self.last_seen[index] = Some(truncated);
                    figures.truncated_through = truncated;
                    figures.last_position = log.last_position();
                    figures.objects_checkpointed = log.checkpoints().object_count();
                    figures.objects_uncovered = log.checkpoints().uncovered_count();
                }
            }
            figures.sessions_at_end = sessions_now;
        }
    }

    fn finish(self) -> (Vec<RegionFigures>, Vec<String>) {
        (self.regions, self.problems)
    }
}

/// Runs a month with `settings` and checks it.
pub fn run_month(settings: &MonthSettings) -> Result<MonthReport, String> {
    settings.validate()?;
    let shared = Rc::new(settings.clone());
    let observer = Rc::new(RefCell::new(MonthObserver::default()));
    let final_round = Rc::new(Cell::new(FinalRound::NotYet));
    let factory: ApplicationFactory = {
        let shared = Rc::clone(&shared);
        let observer = Rc::clone(&observer);
        let final_round = Rc::clone(&final_round);
        Box::new(move |place: &ApplicationPlace| {
            Box::new(MonthSlot::new(
                Rc::clone(&shared),
                place.node,
                place.region.clone(),
                place.region_index,
                place.members.clone(),
                Rc::clone(&final_round),
                Rc::clone(&observer),
            ))
        })
    };
    let mut cluster_settings = GlobalRunSettings::new(settings.seed, settings.topology.clone());
    cluster_settings.clients_per_region = settings.slots_per_region;
    cluster_settings.faults = settings.faults;
    cluster_settings.fault_window = settings.arrivals_for;
    cluster_settings.coordinator_limits = settings.coordinator_limits;
    // The scripted cut's region, and the stretch its failures count as `CUT_OFF`.
    let cut_window = settings.faults.scripted_region_cut.and_then(|cut| {
        let region = settings.topology.regions.get(cut.region_index)?.id.clone();
        let from = SimTime::ZERO.saturating_add(cut.after);
        let until = from.saturating_add(cut.length).saturating_add(CUT_RECOVERY);
        Some((region, from, until))
    });
    let mark_cut = |now: SimTime| {
        observer.borrow_mut().cut_off = cut_window
            .as_ref()
            .filter(|(_, from, until)| (*from..*until).contains(&now))
            .map(|(region, ..)| region.clone());
    };
    let mut cluster = GlobalCluster::with_applications(&cluster_settings, factory)?;
    let quota_bytes = settings.topology.cluster.region_log_quota_bytes;
    let mut sampler = Sampler::new(&cluster, quota_bytes);
    let mut problems = Vec::new();
    let quiet_from = SimTime::ZERO.saturating_add(settings.arrivals_for);
    let final_from = quiet_from.saturating_add(settings.quiet_for);
    // Under faults, the hour of arrivals runs through the fault window (sampled as ever), and
    // the faults still in force at its end are healed before the quiet spell.
    let faults = (settings.faults != GlobalFaultPlan::NONE).then(|| {
        let drawn = run_fault_window_observed(
            &mut cluster,
            &cluster_settings,
            SimTime::ZERO,
            settings.sample_every,
            &mut |cluster| {
                sampler.sample(cluster);
                mark_cut(cluster.simulation().now());
            },
        );
        cluster.heal();
        drawn
    });
    while cluster.simulation().now() < final_from {
        cluster.simulation().run_for(settings.sample_every);
        sampler.sample(&mut cluster);
        mark_cut(cluster.simulation().now());
    }
    let holders = observer.borrow().live;
    final_round.set(FinalRound::Appends);
    let deadline = cluster
        .simulation()
        .now()
        .saturating_add(settings.final_round_max);
    loop {
        let (finished, late_finished, appends_done) = {
            let observer = observer.borrow();
            (
                observer.holders_finished,
                observer.late_finished,
                observer.final_appends_done,
            )
        };
        match final_round.get() {
            FinalRound::Appends if appends_done >= holders => final_round.set(FinalRound::Reads),
            FinalRound::Reads if finished >= holders => final_round.set(FinalRound::LateOpens),
            FinalRound::LateOpens if late_finished >= holders => break,
            _ => {}
        }
        if cluster.simulation().now() >= deadline {
            problems.push(format!(
                "not within {:?}: every instance holding objects finished its final round \
                 ({finished} of {holders} read, {late_finished} done with the late open); {}",
                settings.final_round_max,
                cluster.describe()
            ));
            break;
        }
        cluster.simulation().run_for(CONVERGENCE_CHECK_INTERVAL);
    }
    if let Err(problem) = cluster.converge(cluster_settings.convergence_max) {
        problems.push(problem);
    }
    sampler.sample(&mut cluster);
    problems.extend(cluster.check());
    let (mut regions, sample_problems) = sampler.finish();
    problems.extend(sample_problems);
    let observer = observer.borrow();
    for figures in &mut regions {
        figures.payload_bytes_appended = observer
            .payload_bytes_by_region
            .get(&figures.region)
            .copied()
            .unwrap_or(0);
    }
    problems.extend(observer.violations.iter().cloned());
    for (region, refusals) in &observer.log_full_refusals {
        problems.push(format!(
            "{} writes in {region} were refused because the region log was full; the first: {}",
            refusals.count,
            refusals.examples.first().map_or("", String::as_str)
        ));
    }
    for (what, failures) in [
        ("opens", &observer.open_failures),
        ("calls", &observer.call_failures),
    ] {
        for (kind, count) in failures {
            if *kind != "the object's records were released" && *kind != CUT_OFF {
                problems.push(format!(
                    "{} {what} failed ({kind}); the first: {}",
                    count.count,
                    count.examples.first().map_or("", String::as_str)
                ));
            }
        }
    }
    // A late object read by a holder elsewhere had a copy whose checkpoint the region could
    // adopt: its open must not fail, and no late open may fail for another reason.
    for (object, error) in &observer.late_open_failures {
        if failure_kind(error) != "the object's records were released"
            || observer.final_reads.contains_key(object)
        {
            problems.push(format!(
                "the late open of {object} failed although other regions hold copies of it: \
                 {error}"
            ));
        }
    }
    let checkpoints_adopted = cluster
        .regions()
        .to_vec()
        .iter()
        .flat_map(|(_, members)| members.clone())
        .filter_map(|member| cluster.region_node(member))
        .map(|node| node.status().adoptions.counters.adopted)
        .sum();
    let epoch_skips = cluster.epoch_skips();
    let mut objects_compared = 0;
    for (object, reads) in &observer.final_reads {
        let distinct: BTreeSet<&ObjectRead> = reads.values().collect();
        if reads.len() > 1 {
            objects_compared += 1;
        }
        if distinct.len() > 1 {
            problems.push(format!(
                "the copies of {object} differ after the final barrier: {reads:?}"
            ));
        }
    }
    problems.truncate(PROBLEMS_KEPT_MAX);
    Ok(MonthReport {
        seed: settings.seed,
        simulated: cluster.simulation().now().since_start(),
        instances_started: observer.instances_started,
        endings: observer.endings.clone(),
        holders,
        objects_opened: observer.objects_opened.len(),
        global_objects_opened: observer
            .objects_opened
            .iter()
            .filter(|name| name.starts_with("journal/global-"))
            .count(),
        opens: observer.opens,
        open_failures: observer.open_failures.clone(),
        appends_acknowledged: observer.appends_acknowledged,
        call_failures: observer.call_failures.clone(),
        log_full_refusals: observer.log_full_refusals.clone(),
        idle_checkpoints: observer.idle_checkpoints,
        copies_restored: observer.copies_restored,
        regions,
        objects_compared,
        late_opens: (
            observer.late_opens,
            observer.late_opens_completed,
            observer.late_open_attempts_max,
        ),
        checkpoints_adopted,
        epoch_skips,
        copies_behind_skipped_epochs: observer.copies_behind_skipped_epochs,
        late_open_failures: observer.late_open_failures.clone(),
        faults,
        problems,
        trace_hash: cluster.simulation().trace_hash(),
    })
}
