//! `dsss bench soak`: a long write load through the SDK into a running cluster, watching that
//! every node's resident memory stays flat and that every region's log stays below its quota
//! while its truncation point moves.
//!
//! Application instances (one `dsss::Client` each, several per region) open a mix of
//! [`Journal`] objects the way an application does: each instance its own regional journal
//! (one writer), its region's shared regional journals (every instance of the region writes
//! them) and a few global journals (every instance of every region writes them). Every
//! instance opens every object it has records of in its region, so that the region's
//! checkpoints cover them and the log can be truncated. Closed-loop writers append payloads of
//! random size until the total is written, while a reporter prints, every few seconds, the
//! figures: what was written, calls per second, the resident memory of every node process
//! (found by its listening port, on Linux) and every region's log from the `Status` RPC, as
//! `dsss region status` reads it.
//!
//! The end state is checked: the command exits with 1 if a call failed, if a node's resident
//! memory grew more than the stated bound above what it was after the warm-up, if a region's
//! log was ever above its quota, or if the copies of an object disagree or hold another number
//! of entries than the calls acknowledged.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use dsss::region_client::RegionConnections;
use dsss::{Client, Config};
use dsss_examples::{Journal, JournalHandle};
use dsss_topology::Topology;

/// Exit status when the soak ran and a check failed, or it could not run.
const EXIT_SOAK_FAILED: u8 = 1;

/// Exit status for settings that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The most data one run may write, in MiB (1 TiB).
pub const TOTAL_MIB_MAX: u64 = 1024 * 1024;

/// The largest payload of one call, in bytes: well below the largest record a region takes.
pub const PAYLOAD_BYTES_MAX: usize = 512 * 1024;

/// The most application instances per region.
pub const INSTANCES_PER_REGION_MAX: usize = 64;

/// The most shared regional objects per region, and the most global objects.
pub const OBJECTS_PER_KIND_MAX: usize = 64;

/// The most calls one instance keeps in flight: a node takes at most 16 proposals of one
/// client at once.
pub const CALLS_IN_FLIGHT_MAX: usize = 16;

/// The most samples kept for the summary; beyond, every other sample is dropped (the first
/// and the newest are always kept).
const SAMPLES_KEPT_MAX: usize = 4_096;

/// How long one call may take over all its retries before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The arguments of `dsss bench soak`.
#[derive(Debug, Args)]
pub(crate) struct SoakArgs {
    /// The running cluster's topology (`dsss up` writes dsss-up/local.toml).
    #[arg(long, value_name = "FILE", default_value = "dsss-up/local.toml")]
    topology: PathBuf,
    /// How much payload to write in all, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 4096)]
    total_mib: u64,
    /// The payload size of each call, in bytes: one size, or a range MIN-MAX drawn uniformly.
    #[arg(long, value_name = "BYTES|MIN-MAX", default_value = "256-4096", value_parser = parse_payload_range)]
    payload_bytes: PayloadRange,
    /// Application instances (clients) per region.
    #[arg(long, value_name = "N", default_value_t = 2)]
    instances_per_region: usize,
    /// Regional journals per region that every instance of the region writes.
    #[arg(long, value_name = "N", default_value_t = 2)]
    shared_per_region: usize,
    /// Global journals that every instance of every region writes.
    #[arg(long, value_name = "N", default_value_t = 2)]
    global_objects: usize,
    /// The percentage of calls that go to a global journal; of the rest, half go to the
    /// instance's own journal and half to its region's shared ones.
    #[arg(long, value_name = "PERCENT", default_value_t = 10)]
    global_percent: u32,
    /// Calls each instance keeps in flight (closed-loop writers).
    #[arg(long, value_name = "N", default_value_t = 16)]
    calls_in_flight: usize,
    /// Records of an object between two of its checkpoints (the SDK's default is 10000).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    checkpoint_every: u64,
    /// Seconds between two reports.
    #[arg(long, value_name = "S", default_value_t = 10)]
    report_seconds: u64,
    /// The share of the total written before the memory baseline is taken, in percent.
    #[arg(long, value_name = "PERCENT", default_value_t = 25)]
    warm_up_percent: u32,
    /// How far, in MiB, a node's resident memory may rise above its baseline after warm-up.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    rss_growth_max_mib: u64,
    /// Seeds the payload sizes, contents and the choice of objects.
    #[arg(long, value_name = "S", default_value_t = 1)]
    seed: u64,
}

/// Payload sizes: from `min` to `max` bytes, both included.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PayloadRange {
    min: usize,
    max: usize,
}

fn parse_payload_range(text: &str) -> Result<PayloadRange, String> {
    let parse = |part: &str| {
        part.trim()
            .parse::<usize>()
            .map_err(|error| format!("{part:?} is not a byte count: {error}"))
    };
    let (min, max) = match text.split_once('-') {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => {
            let size = parse(text)?;
            (size, size)
        }
    };
    if min > max {
        return Err(format!(
            "the smallest size {min} is above the largest {max}"
        ));
    }
    if min == 0 || max > PAYLOAD_BYTES_MAX {
        return Err(format!("sizes must lie in 1..={PAYLOAD_BYTES_MAX}"));
    }
    Ok(PayloadRange { min, max })
}

/// Checks the settings clap cannot, naming the first that is wrong.
fn check_arguments(arguments: &SoakArgs) -> Result<(), String> {
    let in_range = |name: &str, value: u64, max: u64| {
        if (1..=max).contains(&value) {
            Ok(())
        } else {
            Err(format!("--{name}: {value} is outside 1..={max}"))
        }
    };
    in_range("total-mib", arguments.total_mib, TOTAL_MIB_MAX)?;
    in_range(
        "instances-per-region",
        arguments.instances_per_region as u64,
        INSTANCES_PER_REGION_MAX as u64,
    )?;
    in_range(
        "shared-per-region",
        arguments.shared_per_region as u64,
        OBJECTS_PER_KIND_MAX as u64,
    )?;
    in_range(
        "calls-in-flight",
        arguments.calls_in_flight as u64,
        CALLS_IN_FLIGHT_MAX as u64,
    )?;
    in_range("checkpoint-every", arguments.checkpoint_every, 1_000_000)?;
    in_range("report-seconds", arguments.report_seconds, 3_600)?;
    if arguments.global_objects > OBJECTS_PER_KIND_MAX {
        return Err(format!(
            "--global-objects: {} is above {OBJECTS_PER_KIND_MAX}",
            arguments.global_objects
        ));
    }
    if arguments.global_percent > 100 || arguments.warm_up_percent > 100 {
        return Err("--global-percent and --warm-up-percent are percentages: 0 to 100".to_owned());
    }
    if arguments.global_percent > 0 && arguments.global_objects == 0 {
        return Err("--global-percent is above 0 but --global-objects is 0".to_owned());
    }
    Ok(())
}

/// Runs `dsss bench soak`.
pub(crate) fn run(arguments: SoakArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    if let Err(message) = check_arguments(&arguments) {
        let _ = writeln!(stderr, "{message}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let topology = match dsss_topology::load(&arguments.topology) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            let _ = write!(stderr, "{diagnostics}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match crate::command_runtime::multi_thread(stderr, EXIT_SOAK_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    match runtime.block_on(soak(&arguments, &topology, stdout)) {
        Ok(problems) if problems.is_empty() => {
            let _ = writeln!(stdout, "soak passed every check");
            ExitCode::SUCCESS
        }
        Ok(problems) => {
            for problem in &problems {
                let _ = writeln!(stderr, "soak check failed: {problem}");
            }
            ExitCode::from(EXIT_SOAK_FAILED)
        }
        Err(error) => {
            let _ = writeln!(stderr, "soak could not run: {error}");
            ExitCode::from(EXIT_SOAK_FAILED)
        }
    }
}

/// One application instance: its client and the journals it opened.
struct Instance {
    region: String,
    client: Client,
    own: JournalHandle,
    shared: Vec<JournalHandle>,
    global: Vec<JournalHandle>,
}

/// What the writers have done so far, shared with the reporter.
#[derive(Default)]
struct Progress {
    payload_bytes_reserved: AtomicU64,
    payload_bytes_written: AtomicU64,
    calls: AtomicU64,
    failed_calls: AtomicU64,
    first_failure: Mutex<Option<String>>,
    /// Acknowledged calls per object.
    acknowledged: Mutex<BTreeMap<String, u64>>,
}

fn shared_name(region: &str, index: usize) -> String {
    format!("soak/{region}/shared-{index}")
}

fn own_name(region: &str, instance: usize) -> String {
    format!("soak/{region}/instance-{instance}")
}

fn global_name(index: usize) -> String {
    format!("soak/global-{index}")
}

async fn soak(
    arguments: &SoakArgs,
    topology: &Topology,
    stdout: &mut dyn Write,
) -> Result<Vec<String>, String> {
    let watcher = ClusterWatcher::new(topology, &arguments.topology)?;
    let total_bytes = arguments.total_mib * 1024 * 1024;
    let _ = writeln!(
        stdout,
        "Soak of cluster {:?} ({}): {} MiB of payloads of {}-{} bytes, {} instances per region, \
         each with its own journal, {} shared regional journals per region, {} global journals \
         ({}% of calls), {} calls in flight per instance, a checkpoint every {} records of an \
         object",
        topology.cluster.name,
        arguments.topology.display(),
        arguments.total_mib,
        arguments.payload_bytes.min,
        arguments.payload_bytes.max,
        arguments.instances_per_region,
        arguments.shared_per_region,
        arguments.global_objects,
        arguments.global_percent,
        arguments.calls_in_flight,
        arguments.checkpoint_every
    );
    let instances = open_instances(arguments, topology).await?;
    let _ = writeln!(
        stdout,
        "{} instances opened {} objects",
        instances.len(),
        topology.regions.len() * (arguments.instances_per_region + arguments.shared_per_region)
            + arguments.global_objects
    );
    // The entries each object holds before the load, to compare with the calls acknowledged.
    let before = journal_summaries(&instances).await?;
    let progress = Arc::new(Progress::default());
    {
        let mut acknowledged = lock(&progress.acknowledged);
        for name in before.keys() {
            acknowledged.insert(name.clone(), 0);
        }
    }

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        for writer in 0..arguments.calls_in_flight {
            let seed = arguments
                .seed
                .wrapping_mul(1_000_003)
                .wrapping_add((index * CALLS_IN_FLIGHT_MAX + writer) as u64);
            writers.push(tokio::spawn(write_load(
                Targets {
                    own: instance.own.clone(),
                    shared: instance.shared.clone(),
                    global: instance.global.clone(),
                },
                Load {
                    total_bytes,
                    payload: arguments.payload_bytes,
                    global_percent: arguments.global_percent,
                },
                Rng(seed),
                Arc::clone(&progress),
                Arc::clone(&stop),
            )));
        }
    }

    let limits = Limits {
        warm_up_bytes: total_bytes * u64::from(arguments.warm_up_percent) / 100,
        rss_growth_max_bytes: arguments.rss_growth_max_mib * 1024 * 1024,
    };
    let mut samples = Samples::default();
    samples.push(watcher.sample(Duration::ZERO, &progress).await);
    let _ = write!(stdout, "{}", report_header());
    let _ = write!(stdout, "{}", report(samples.newest(), None));
    let interval = Duration::from_secs(arguments.report_seconds);
    let mut next_report = interval;
    loop {
        let done = writers.iter().all(tokio::task::JoinHandle::is_finished);
        if done || started.elapsed() >= next_report {
            let sample = watcher.sample(started.elapsed(), &progress).await;
            let _ = write!(stdout, "{}", report(&sample, Some(samples.newest())));
            let _ = stdout.flush();
            samples.push(sample);
            next_report = started.elapsed() + interval;
        }
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for writer in writers {
        writer
            .await
            .map_err(|error| format!("a writer task failed: {error}"))?;
    }
    let elapsed = started.elapsed();

    let mut problems = Vec::new();
    let failed = progress.failed_calls.load(Ordering::Relaxed);
    if failed > 0 {
        problems.push(format!(
            "{failed} calls failed; the first: {}",
            lock(&progress.first_failure)
                .clone()
                .unwrap_or_else(|| "unknown".to_owned())
        ));
    } else {
        // Every copy, after a barrier, holds exactly the acknowledged calls on top of what
        // the object held before.
        let after = journal_summaries(&instances).await?;
        let acknowledged = lock(&progress.acknowledged).clone();
        problems.extend(check_journals(&before, &after, &acknowledged));
    }
    let _ = write!(stdout, "{}", summary(&samples.kept, elapsed, &limits));
    problems.extend(judge(&samples.kept, &limits));
    Ok(problems)
}

/// Connects every instance and opens its objects.
async fn open_instances(
    arguments: &SoakArgs,
    topology: &Topology,
) -> Result<Vec<Instance>, String> {
    let mut instances = Vec::new();
    for region in &topology.regions {
        for index in 0..arguments.instances_per_region {
            let mut config = Config::from_parsed_topology(topology, &region.id)?;
            config.replica.checkpoint_every_records = arguments.checkpoint_every;
            config.calls_in_flight_max = arguments.calls_in_flight;
            config.call_timeout = CALL_TIMEOUT;
            let client = Client::connect(config)
                .await
                .map_err(|error| format!("connecting an instance in {}: {error}", region.id))?;
            let open_regional = |name: String| {
                let client = client.clone();
                async move {
                    client
                        .open_regional::<Journal>(&name)
                        .await
                        .map_err(|error| format!("opening {name}: {error}"))
                }
            };
            let own = open_regional(own_name(&region.id, index)).await?;
            let mut shared = Vec::new();
            for shared_index in 0..arguments.shared_per_region {
                shared.push(open_regional(shared_name(&region.id, shared_index)).await?);
            }
            let mut global = Vec::new();
            for global_index in 0..arguments.global_objects {
                let name = global_name(global_index);
                global.push(
                    client
                        .open::<Journal>(&name)
                        .await
                        .map_err(|error| format!("opening {name}: {error}"))?,
                );
            }
            instances.push(Instance {
                region: region.id.clone(),
                client,
                own,
                shared,
                global,
            });
        }
    }
    Ok(instances)
}

/// (entries, bytes, digest) of a journal copy.
type JournalSummary = (u64, u64, u64);

/// Every copy of every object after a `sync()` of its client: object name to (instance's
/// region and index, summary) per copy.
async fn journal_summaries(
    instances: &[Instance],
) -> Result<BTreeMap<String, Vec<(String, JournalSummary)>>, String> {
    let mut copies: BTreeMap<String, Vec<(String, JournalSummary)>> = BTreeMap::new();
    for (index, instance) in instances.iter().enumerate() {
        instance
            .client
            .sync()
            .await
            .map_err(|error| format!("sync() of instance {index}: {error}"))?;
        let handles = std::iter::once(&instance.own)
            .chain(&instance.shared)
            .chain(&instance.global);
        for handle in handles {
            let summary =
                handle.read(|journal| (journal.entries(), journal.bytes(), journal.digest()));
            copies
                .entry(handle.name().to_owned())
                .or_default()
                .push((format!("{} instance {index}", instance.region), summary));
        }
    }
    Ok(copies)
}

/// What is wrong with the copies after the load: copies that disagree, or an object whose
/// entries grew by another number than its acknowledged calls.
fn check_journals(
    before: &BTreeMap<String, Vec<(String, JournalSummary)>>,
    after: &BTreeMap<String, Vec<(String, JournalSummary)>>,
    acknowledged: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, copies) in after {
        let Some((first_copy, first)) = copies.first() else {
            continue;
        };
        if let Some((copy, summary)) = copies.iter().find(|(_, summary)| summary != first) {
            problems.push(format!(
                "{name}: the copy of {copy} holds (entries, bytes, digest) {summary:?}, the copy \
                 of {first_copy} {first:?}"
            ));
            continue;
        }
        let entries_before = before
            .get(name)
            .and_then(|copies| copies.first())
            .map_or(0, |(_, summary)| summary.0);
        let calls = acknowledged.get(name).copied().unwrap_or(0);
        if first.0 != entries_before + calls {
            problems.push(format!(
                "{name}: {calls} calls acknowledged on top of {entries_before} entries, but \
                 every copy holds {}",
                first.0
            ));
        }
    }
    problems
}

/// The objects one instance writes.
struct Targets {
    own: JournalHandle,
    shared: Vec<JournalHandle>,
    global: Vec<JournalHandle>,
}

/// What the writers write.
#[derive(Clone, Copy)]
struct Load {
    total_bytes: u64,
    payload: PayloadRange,
    global_percent: u32,
}

/// One closed-loop writer: appends payloads until the total is reserved, or a call failed.
async fn write_load(
    targets: Targets,
    load: Load,
    mut rng: Rng,
    progress: Arc<Progress>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        let span = (load.payload.max - load.payload.min) as u64 + 1;
        let size = load.payload.min + (rng.next() % span) as usize;
        let reserved = progress
            .payload_bytes_reserved
            .fetch_add(size as u64, Ordering::Relaxed);
        if reserved >= load.total_bytes {
            return;
        }
        let target = if (rng.next() % 100) < u64::from(load.global_percent) {
            &targets.global[(rng.next() % targets.global.len() as u64) as usize]
        } else if targets.shared.is_empty() || rng.next().is_multiple_of(2) {
            &targets.own
        } else {
            &targets.shared[(rng.next() % targets.shared.len() as u64) as usize]
        };
        let mut payload = Vec::with_capacity(size);
        while payload.len() < size {
            payload.extend_from_slice(&rng.next().to_le_bytes());
        }
        payload.truncate(size);
        match target.append(payload).await {
            Ok(_) => {
                progress.calls.fetch_add(1, Ordering::Relaxed);
                progress
                    .payload_bytes_written
                    .fetch_add(size as u64, Ordering::Relaxed);
                *lock(&progress.acknowledged)
                    .entry(target.name().to_owned())
                    .or_default() += 1;
            }
            Err(error) => {
                progress.failed_calls.fetch_add(1, Ordering::Relaxed);
                lock(&progress.first_failure)
                    .get_or_insert_with(|| format!("append to {}: {error}", target.name()));
                // A failure ends the run: the summary tells what the cluster looked like.
                stop.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// SplitMix64: a small seeded generator, so that a run's load can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Locks a mutex whose holders never panic while holding it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The figures of one node at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct NodeFigures {
    node_id: u64,
    region: String,
    /// Resident memory, when the node's process was found on this machine.
    rss_bytes: Option<u64>,
    /// What its `Status` said, when it answered.
    log: Option<LogFigures>,
}

/// A node's region log, from its `Status`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct LogFigures {
    size_bytes: u64,
    quota_bytes: u64,
    truncated_through: u64,
    applied_position: u64,
    objects_lacking_checkpoint: u64,
}

/// The cluster and the load at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
struct Sample {
    elapsed: Duration,
    payload_bytes_written: u64,
    calls: u64,
    failed_calls: u64,
    nodes: Vec<NodeFigures>,
}

/// The samples of a run, thinned to at most [`SAMPLES_KEPT_MAX`].
#[derive(Default)]
struct Samples {
    kept: Vec<Sample>,
}

impl Samples {
    fn push(&mut self, sample: Sample) {
        if self.kept.len() >= SAMPLES_KEPT_MAX {
            // Keep the first, then every other one.
            let mut index = 0usize;
            self.kept.retain(|_| {
                index += 1;
                index == 1 || index.is_multiple_of(2)
            });
        }
        self.kept.push(sample);
    }

    fn newest(&self) -> &Sample {
        self.kept
            .last()
            .expect("the first sample is taken before any report")
    }
}

/// Reads the figures of every node of a topology.
struct ClusterWatcher {
    regions: Vec<(String, RegionConnections)>,
    /// The process of each node, found by its listening port.
    pids: BTreeMap<u64, u32>,
}

impl ClusterWatcher {
    fn new(topology: &Topology, topology_path: &Path) -> Result<ClusterWatcher, String> {
        let security = crate::tls_setup::caller_security(
            topology,
            topology_path,
            crate::tls_setup::Role::Admin,
        )?;
        let mut regions = Vec::new();
        let mut pids = BTreeMap::new();
        let listeners = listening_sockets();
        for region in &topology.regions {
            let members: Vec<(u64, String)> = region
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect();
            for node in &region.nodes {
                if let Some(pid) = node
                    .address
                    .rsplit_once(':')
                    .and_then(|(_, port)| port.parse::<u16>().ok())
                    .and_then(|port| listeners.get(&port).copied())
                    .and_then(process_of_socket)
                {
                    pids.insert(node.id, pid);
                }
            }
            let connections = RegionConnections::with_security(&members, &security)
                .map_err(|error| format!("region {}: {error}", region.id))?;
            regions.push((region.id.clone(), connections));
        }
        Ok(ClusterWatcher { regions, pids })
    }

    async fn sample(&self, elapsed: Duration, progress: &Progress) -> Sample {
        let mut nodes = Vec::new();
        for (region, connections) in &self.regions {
            for node_id in connections.node_ids() {
                let log = connections
                    .status(node_id)
                    .await
                    .ok()
                    .map(|status| LogFigures {
                        size_bytes: status.log_size_bytes,
                        quota_bytes: status.log_quota_bytes,
                        truncated_through: status.truncated_through_position,
                        applied_position: status.applied_position,
                        objects_lacking_checkpoint: status.objects_lacking_agreed_checkpoint,
                    });
                nodes.push(NodeFigures {
                    node_id,
                    region: region.clone(),
                    rss_bytes: self.pids.get(&node_id).and_then(|pid| resident_bytes(*pid)),
                    log,
                });
            }
        }
        Sample {
            elapsed,
            payload_bytes_written: progress.payload_bytes_written.load(Ordering::Relaxed),
            calls: progress.calls.load(Ordering::Relaxed),
            failed_calls: progress.failed_calls.load(Ordering::Relaxed),
            nodes,
        }
    }
}

/// The inode of every listening TCP socket on this machine, by local port (Linux; empty
/// elsewhere).
fn listening_sockets() -> BTreeMap<u16, u64> {
    let mut sockets = BTreeMap::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        sockets.extend(parse_listening_sockets(&text));
    }
    sockets
}

/// (local port, inode) of each listening socket in a `/proc/net/tcp` table.
fn parse_listening_sockets(table: &str) -> Vec<(u16, u64)> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            if *fields.get(3)? != LISTEN {
                return None;
            }
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            let inode = fields.get(9)?.parse::<u64>().ok()?;
            Some((port, inode))
        })
        .collect()
}

/// The process that holds the socket with `inode` open, among the processes this user may
/// look into.
fn process_of_socket(inode: u64) -> Option<u32> {
    let wanted = format!("socket:[{inode}]");
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(descriptors) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for descriptor in descriptors.flatten() {
            if std::fs::read_link(descriptor.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The resident memory of process `pid` (VmRSS), while it runs.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("status")).ok()?;
    parse_vm_rss(&status)
}

/// VmRSS from the text of `/proc/PID/status`, in bytes.
fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib = line.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(kib * 1024)
}

/// The bounds the end state is judged against.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Payload bytes written before the memory baseline is taken.
    warm_up_bytes: u64,
    /// How far a node's resident memory may rise above its baseline.
    rss_growth_max_bytes: u64,
}

const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / MIB
}

fn report_header() -> String {
    "\n    time   written   calls/s     MiB/s  failed  node RSS MiB; per region: log MiB of quota, \
     truncated through, applied through, objects above their checkpoint\n"
        .to_owned()
}

/// The lines of one report: the load since `previous`, every node's memory, every region's
/// log (the largest log and the lowest truncation point over the region's members that
/// answered).
fn report(sample: &Sample, previous: Option<&Sample>) -> String {
    let (rate_calls, rate_bytes) = match previous {
        Some(previous) if sample.elapsed > previous.elapsed => {
            let seconds = (sample.elapsed - previous.elapsed).as_secs_f64();
            (
                (sample.calls - previous.calls) as f64 / seconds,
                mib(sample.payload_bytes_written - previous.payload_bytes_written) / seconds,
            )
        }
        _ => (0.0, 0.0),
    };
    let mut text = format!(
        "{:>7.0}s  {:>5.2} GiB  {:>8.0}  {:>8.1}  {:>6}  ",
        sample.elapsed.as_secs_f64(),
        sample.payload_bytes_written as f64 / GIB,
        rate_calls,
        rate_bytes,
        sample.failed_calls
    );
    let rss: Vec<String> = sample
        .nodes
        .iter()
        .map(|node| match node.rss_bytes {
            Some(bytes) => format!("{}={:.0}", node.node_id, mib(bytes)),
            None => format!("{}=?", node.node_id),
        })
        .collect();
    text.push_str(&rss.join(" "));
    text.push('\n');
    for (region, log) in region_logs(sample) {
        match log {
            Some(log) => {
                let _ = writeln!(
                    text,
                    "{:>12}{region}: log {:.1} of {:.0} MiB, truncated through {}, applied \
                     through {}, {} objects above their checkpoint",
                    "",
                    mib(log.size_bytes),
                    mib(log.quota_bytes),
                    log.truncated_through,
                    log.applied_position,
                    log.objects_lacking_checkpoint
                );
            }
            None => {
                let _ = writeln!(text, "{:>12}{region}: no member answered Status", "");
            }
        }
    }
    text
}

/// Per region, in the order of the nodes: the largest log size, quota and applied position and the
/// lowest truncation point over the members that answered.
fn region_logs(sample: &Sample) -> Vec<(String, Option<LogFigures>)> {
    let mut regions: Vec<(String, Option<LogFigures>)> = Vec::new();
    for node in &sample.nodes {
        let index = match regions
            .iter()
            .position(|(region, _)| *region == node.region)
        {
            Some(index) => index,
            None => {
                regions.push((node.region.clone(), None));
                regions.len() - 1
            }
        };
        let Some(log) = node.log else {
            continue;
        };
        let merged = &mut regions[index].1;
        *merged = Some(match *merged {
            None => log,
            Some(merged) => LogFigures {
                size_bytes: merged.size_bytes.max(log.size_bytes),
                quota_bytes: merged.quota_bytes.max(log.quota_bytes),
                truncated_through: merged.truncated_through.min(log.truncated_through),
                applied_position: merged.applied_position.max(log.applied_position),
                objects_lacking_checkpoint: merged
                    .objects_lacking_checkpoint
                    .max(log.objects_lacking_checkpoint),
            },
        });
    }
    regions
}

/// The index of the first sample taken after the warm-up, if the run got that far.
fn baseline_index(samples: &[Sample], limits: &Limits) -> Option<usize> {
    samples
        .iter()
        .position(|sample| sample.payload_bytes_written >= limits.warm_up_bytes.max(1))
}

/// The run's figures at start, after warm-up, in the middle and at the end.
fn summary(samples: &[Sample], elapsed: Duration, limits: &Limits) -> String {
    let mut text = String::new();
    let Some(last) = samples.last() else {
        return text;
    };
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let _ = writeln!(
        text,
        "\nWrote {:.2} GiB in {} calls over {:.0} s: {:.1} MiB/s, {:.0} calls/s, {} failed",
        last.payload_bytes_written as f64 / GIB,
        last.calls,
        seconds,
        mib(last.payload_bytes_written) / seconds,
        last.calls as f64 / seconds,
        last.failed_calls
    );
    let baseline = baseline_index(samples, limits);
    let middle = &samples[samples.len() / 2];
    let _ = writeln!(
        text,
        "node RSS MiB      start  warmed-up  middle    end  (warmed up at {}, middle at {:.0} s)",
        baseline.map_or("never".to_owned(), |index| format!(
            "{:.0} s",
            samples[index].elapsed.as_secs_f64()
        )),
        middle.elapsed.as_secs_f64()
    );
    let rss_at = |sample: &Sample, index: usize| {
        sample
            .nodes
            .get(index)
            .and_then(|node| node.rss_bytes)
            .map_or("?".to_owned(), |bytes| format!("{:.0}", mib(bytes)))
    };
    for (index, node) in last.nodes.iter().enumerate() {
        let _ = writeln!(
            text,
            "  {:>4} {:<10} {:>6}  {:>9}  {:>6}  {:>5}",
            node.node_id,
            node.region,
            rss_at(&samples[0], index),
            baseline.map_or("-".to_owned(), |baseline| rss_at(&samples[baseline], index)),
            rss_at(middle, index),
            rss_at(last, index)
        );
    }
    let _ = writeln!(
        text,
        "region log (MiB, truncated through)   start          middle             end"
    );
    let logs: Vec<_> = [&samples[0], middle, last].map(region_logs).into();
    for (index, (region, _)) in logs[0].iter().enumerate() {
        let cell = |logs: &Vec<(String, Option<LogFigures>)>| {
            logs.get(index)
                .and_then(|(_, log)| *log)
                .map_or("?".to_owned(), |log| {
                    format!("{:.1} @ {}", mib(log.size_bytes), log.truncated_through)
                })
        };
        let _ = writeln!(
            text,
            "  {region:<20} {:>18} {:>15} {:>15}",
            cell(&logs[0]),
            cell(&logs[1]),
            cell(&logs[2])
        );
    }
    text
}

/// What the samples show is wrong: a node whose memory rose more than the bound above its
/// baseline after warm-up, a region log above its quota.
fn judge(samples: &[Sample], limits: &Limits) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(baseline_index) = baseline_index(samples, limits) {
        let baseline = &samples[baseline_index];
        for (index, node) in baseline.nodes.iter().enumerate() {
            let Some(start) = node.rss_bytes else {
                continue;
            };
            let peak = samples[baseline_index..]
                .iter()
                .filter_map(|sample| {
                    let figures = sample.nodes.get(index)?;
                    Some((figures.rss_bytes?, sample.elapsed))
                })
                .max_by_key(|(bytes, _)| *bytes);
            if let Some((peak_bytes, at)) = peak
                && peak_bytes > start + limits.rss_growth_max_bytes
            {
                problems.push(format!(
                    "node {}: resident memory {:.0} MiB at {:.0} s, more than {:.0} MiB above \
                     its {:.0} MiB after the warm-up (at {:.0} s)",
                    node.node_id,
                    mib(peak_bytes),
                    at.as_secs_f64(),
                    mib(limits.rss_growth_max_bytes),
                    mib(start),
                    baseline.elapsed.as_secs_f64()
                ));
            }
        }
    }
    for sample in samples {
        for node in &sample.nodes {
            if let Some(log) = node.log
                && log.size_bytes > log.quota_bytes
            {
                problems.push(format!(
                    "node {} of {}: the region log held {:.1} MiB at {:.0} s, above its quota of \
                     {:.0} MiB",
                    node.node_id,
                    node.region,
                    mib(log.size_bytes),
                    sample.elapsed.as_secs_f64(),
                    mib(log.quota_bytes)
                ));
                return problems;
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        soak: SoakArgs,
    }

    fn parse(arguments: &[&str]) -> Result<SoakArgs, String> {
        let command =
            Command::try_parse_from(std::iter::once("soak").chain(arguments.iter().copied()))
                .map_err(|error| error.to_string())?;
        check_arguments(&command.soak)?;
        Ok(command.soak)
    }

    #[test]
    fn the_defaults_write_four_gib_of_a_mixed_load() {
        let arguments = parse(&[]).expect("the defaults are valid");
        assert_eq!(arguments.total_mib, 4096);
        assert_eq!(
            arguments.payload_bytes,
            PayloadRange {
                min: 256,
                max: 4096
            }
        );
        assert_eq!(arguments.checkpoint_every, 10_000);
        assert_eq!(arguments.topology, PathBuf::from("dsss-up/local.toml"));
    }

    #[test]
    fn payload_sizes_are_one_size_or_a_range_within_bounds() {
        assert_eq!(
            parse_payload_range("1024"),
            Ok(PayloadRange {
                min: 1024,
                max: 1024
            })
        );
        assert_eq!(
            parse_payload_range("10-20"),
            Ok(PayloadRange { min: 10, max: 20 })
        );
        for wrong in ["0", "20-10", "1-999999999", "ten", "1-"] {
            assert!(parse_payload_range(wrong).is_err(), "{wrong} is refused");
        }
        let error = parse(&["--payload-bytes", "20-10"]).expect_err("refused");
        assert!(error.contains("20 is above the largest 10"), "{error}");
    }

    #[test]
    fn settings_out_of_bounds_are_refused_naming_the_flag() {
        for (arguments, flag) in [
            (&["--total-mib", "0"][..], "--total-mib"),
            (&["--calls-in-flight", "17"], "--calls-in-flight"),
            (&["--instances-per-region", "0"], "--instances-per-region"),
            (&["--global-percent", "101"], "--global-percent"),
            (&["--global-objects", "0"], "--global-objects"),
        ] {
            let error = parse(arguments).expect_err("refused");
            assert!(error.contains(flag), "{arguments:?}: {error}");
        }
        parse(&["--global-objects", "0", "--global-percent", "0"]).expect("no global load");
    }

    fn node(node_id: u64, region: &str, rss_mib: u64, log: LogFigures) -> NodeFigures {
        NodeFigures {
            node_id,
            region: region.to_owned(),
            rss_bytes: Some(rss_mib * 1024 * 1024),
            log: Some(log),
        }
    }

    fn log(size_mib: u64, truncated_through: u64) -> LogFigures {
        LogFigures {
            size_bytes: size_mib * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            truncated_through,
            applied_position: truncated_through + 100,
            objects_lacking_checkpoint: 3,
        }
    }

    fn sample(seconds: u64, written_mib: u64, rss_mib: [u64; 2], log_mib: u64) -> Sample {
        Sample {
            elapsed: Duration::from_secs(seconds),
            payload_bytes_written: written_mib * 1024 * 1024,
            calls: written_mib * 100,
            failed_calls: 0,
            nodes: vec![
                node(11, "a", rss_mib[0], log(log_mib, seconds * 10)),
                node(21, "b", rss_mib[1], log(log_mib / 2, seconds * 20)),
            ],
        }
    }

    const LIMITS: Limits = Limits {
        warm_up_bytes: 100 * 1024 * 1024,
        rss_growth_max_bytes: 64 * 1024 * 1024,
    };

    #[test]
    fn memory_is_judged_against_the_baseline_after_warm_up() {
        // Growth during the warm-up is fine; after it, node 21 grows by 80 MiB, node 11 by 60.
        let samples = vec![
            sample(0, 0, [50, 50], 0),
            sample(10, 100, [300, 300], 10),
            sample(20, 200, [330, 350], 10),
            sample(30, 300, [360, 380], 10),
        ];
        let problems = judge(&samples, &LIMITS);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("node 21: resident memory 380 MiB at 30 s")
                && problems[0].contains("its 300 MiB after the warm-up (at 10 s)"),
            "{}",
            problems[0]
        );
        // Before the warm-up ends nothing is judged.
        assert!(judge(&samples[..1], &LIMITS).is_empty());
    }

    #[test]
    fn a_log_above_its_quota_is_a_failure() {
        let mut samples = vec![sample(0, 0, [50, 50], 0), sample(10, 10, [50, 50], 1025)];
        let problems = judge(&samples, &LIMITS);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains(
                "node 11 of a: the region log held 1025.0 MiB at 10 s, above its quota of 1024 MiB"
            ),
            "{}",
            problems[0]
        );
        samples[1] = sample(10, 10, [50, 50], 1024);
        assert!(judge(&samples, &LIMITS).is_empty());
    }

    #[test]
    fn the_report_shows_rates_memory_and_every_region_log() {
        let first = sample(0, 0, [50, 60], 0);
        let second = sample(10, 20, [70, 80], 40);
        let text = report(&second, Some(&first));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        // 2000 calls and 20 MiB in 10 s.
        assert!(
            lines[0].contains("0.02 GiB") && lines[0].contains("200") && lines[0].contains("2.0"),
            "{}",
            lines[0]
        );
        assert!(lines[0].ends_with("11=70 21=80"), "{}", lines[0]);
        assert!(
            lines[1].contains(
                "a: log 40.0 of 1024 MiB, truncated through 100, applied through 200, 3 objects \
                 above their checkpoint"
            ),
            "{}",
            lines[1]
        );
        assert!(lines[2].contains("b: log 20.0 of 1024 MiB"), "{}", lines[2]);
        let summary = summary(&[first, second], Duration::from_secs(10), &LIMITS);
        assert!(
            summary.contains("Wrote 0.02 GiB in 2000 calls over 10 s"),
            "{summary}"
        );
        assert!(summary.contains("warmed up at never"), "{summary}");
    }

    #[test]
    fn a_region_log_is_its_largest_member_log_and_lowest_truncation_point() {
        let mut sample = sample(10, 10, [50, 50], 40);
        sample.nodes.push(node(12, "a", 50, log(60, 7)));
        sample.nodes[1].log = None;
        let logs = region_logs(&sample);
        assert_eq!(logs.len(), 2);
        let (region, Some(merged)) = logs[0].clone() else {
            panic!("{logs:?}");
        };
        assert_eq!(region, "a");
        assert_eq!(
            (merged.size_bytes, merged.truncated_through),
            (60 * 1024 * 1024, 7)
        );
        assert_eq!(logs[1], ("b".to_owned(), None));
        let _ = region_logs(&Sample::default());
    }

    #[test]
    fn listening_sockets_and_resident_memory_are_read_from_proc() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:1BCF 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n   \
            1: 0100007F:1BD0 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(parse_listening_sockets(table), vec![(7119, 4242)]);
        assert_eq!(
            parse_vm_rss("Name:\tdsss\nVmRSS:\t  123456 kB\n"),
            Some(123_456 * 1024)
        );
        assert_eq!(parse_vm_rss("Name:\tdsss\n"), None);
        // This process listens on a port: it is found by it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        let inode = listening_sockets().get(&port).copied().expect("listed");
        assert_eq!(process_of_socket(inode), Some(std::process::id()));
        assert!(resident_bytes(std::process::id()).is_some_and(|bytes| bytes > 0));
    }
}
