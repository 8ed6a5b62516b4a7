//! One order across several objects, through the SDK, against real processes: three regions of
//! three `dsss node --emulate-wan` processes on loopback, two application instances (two
//! `dsss::Client`s) per region, each holding three global registers and its region's regional
//! register, writing unique values, reading locally and reading after `sync()`, while node
//! processes are killed with SIGKILL and restarted, or frozen with SIGSTOP and resumed, one at
//! a time. Reference: docs/design.md section 1 (one order for every object, reads sequentially
//! consistent, `sync()` then read linearizable), section 2 (one ordered stream of the region
//! log per client) and section 6 (how each guarantee is checked).
//!
//! Nothing the system reports is trusted: a register's write returns the value it replaced, so
//! the results alone fix each register's write order, and the order checker of the simulator's
//! workloads decides whether all histories fit one order. Timings are printed, never asserted.
//!
//! Build the binary first (`cargo build --workspace`, or `cargo test --workspace`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use dsss::{Client, Config};
use dsss_simulations::workloads::order_check::{self, ClientHistory, Operation};
use dsss_tests::processes::{NodeProcesses, local_topology_on_free_ports};
use dsss_topology::Topology;
use tokio::time::sleep;

// A retried call keeps its sequence, so the SDK numbers new calls only within a span the
// region still judges (its dedup window); otherwise a slow retry would be refused as too old.
const _: () =
    assert!(dsss::session::SEQUENCE_SPAN_MAX < dsss_region_node::dedup::DEDUP_WINDOW_MAX as u64);

/// Application instances (clients) per region.
const INSTANCES_PER_REGION: usize = 2;

/// The global registers every instance holds.
const GLOBAL_OBJECTS: [&str; 3] = ["reg/a", "reg/b", "reg/c"];

/// The regional register every instance opens in its own region: one object per region under
/// one name, ordered by that region alone.
const REGIONAL_OBJECT: &str = "reg/regional";

/// How long the instances make calls while faults happen.
const LOAD_TIME: Duration = Duration::from_secs(20);

/// The most operations one instance makes during the load: the run is bounded in count as
/// well as in time.
const OPERATIONS_PER_INSTANCE_MAX: u64 = 4_000;

/// The pause after each operation of an instance, so that runs of local reads (which never
/// wait) do not flood the histories.
const OPERATION_PAUSE: Duration = Duration::from_millis(2);

/// How often a fault starts.
const FAULT_INTERVAL: Duration = Duration::from_secs(3);

/// How long a frozen node stays frozen.
const FROZEN_TIME: Duration = Duration::from_millis(2_500);

/// How long a killed node stays down before it is restarted on its data.
const KILLED_TIME: Duration = Duration::from_secs(1);

/// How long a call, an open or a `sync()` may take over all its retries. Shorter than the
/// load, so that a call stuck behind a fault ends (as a write of unknown outcome) and the
/// instance goes on.
const CALL_TIMEOUT: Duration = Duration::from_secs(8);

/// Bound on getting every instance's objects open on a freshly started cluster.
const OPEN_WAIT_MAX: Duration = Duration::from_secs(45);

/// Bound on the final barriers after the faults heal.
const FINAL_WAIT_MAX: Duration = Duration::from_secs(30);

/// Instance `i` writes values `(i + 1) * VALUE_BLOCK + n`: unique across the run as long as no
/// instance writes `VALUE_BLOCK` values, which [`OPERATIONS_PER_INSTANCE_MAX`] ensures.
const VALUE_BLOCK: u64 = 1_000_000;

use dsss_examples::{Register, RegisterHandle};

fn client_config(topology: &Topology, region: &str) -> Config {
    let mut config = Config::from_parsed_topology(topology, region).expect("the region exists");
    config.call_timeout = CALL_TIMEOUT;
    config
}

/// A small deterministic generator, so that a failing run's choices can be read back.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Microseconds since `origin`: the one clock every instance's history uses.
fn micros_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// One application instance: a client and the registers it holds, each under the name its
/// history uses (the regional register's name carries the region, since each region has its
/// own).
struct Instance {
    name: String,
    region: String,
    index: usize,
    /// Held for as long as the instance runs, so that its connection outlives every handle.
    _client: Client,
    objects: Vec<(String, RegisterHandle)>,
}

/// What an operation was, for the latency report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Write,
    WriteFailed,
    LocalRead,
    SyncedRead,
    SyncFailed,
}

/// One timed operation of one instance.
#[derive(Clone, Debug)]
struct Sample {
    kind: Kind,
    object: String,
    began_at: u64,
    ended_at: u64,
}

/// What an instance did: its operations in program order, and their timings.
#[derive(Default)]
struct Record {
    operations: Vec<Operation>,
    samples: Vec<Sample>,
}

impl Record {
    fn write(
        &mut self,
        object: &str,
        value: u64,
        replaced: Option<u64>,
        began_at: u64,
        ended_at: u64,
    ) {
        self.operations.push(Operation::Write {
            object: object.to_owned(),
            value,
            replaced,
            began_at,
            ended_at,
        });
        let kind = if replaced.is_some() {
            Kind::Write
        } else {
            Kind::WriteFailed
        };
        self.sample(kind, object, began_at, ended_at);
    }

    fn read(&mut self, object: &str, value: u64, synced: bool, began_at: u64, ended_at: u64) {
        self.operations.push(Operation::Read {
            object: object.to_owned(),
            value,
            synced,
            began_at,
            ended_at,
        });
        let kind = if synced {
            Kind::SyncedRead
        } else {
            Kind::LocalRead
        };
        self.sample(kind, object, began_at, ended_at);
    }

    fn sample(&mut self, kind: Kind, object: &str, began_at: u64, ended_at: u64) {
        self.samples.push(Sample {
            kind,
            object: object.to_owned(),
            began_at,
            ended_at,
        });
    }
}

/// Connects one instance and opens its registers, retrying while the cluster starts.
async fn open_instance(
    topology: &Topology,
    region: &str,
    index: usize,
    ordinal: usize,
) -> Result<Instance, String> {
    let client = Client::connect(client_config(topology, region))
        .await
        .map_err(|error| format!("connect in {region}: {error}"))?;
    let started = Instant::now();
    let mut objects = Vec::new();
    let names = GLOBAL_OBJECTS
        .iter()
        .map(|name| ((*name).to_owned(), true))
        .chain([(REGIONAL_OBJECT.to_owned(), false)]);
    for (name, global) in names {
        let handle = loop {
            let opened = if global {
                client.open::<Register>(&name).await
            } else {
                client.open_regional::<Register>(&name).await
            };
            match opened {
                Ok(handle) => break handle,
                Err(error) if started.elapsed() < OPEN_WAIT_MAX => {
                    eprintln!("{region}/{ordinal}: opening {name} failed, retrying: {error}");
                    sleep(Duration::from_millis(200)).await;
                }
                Err(error) => return Err(format!("open {name} in {region}: {error}")),
            }
        };
        let label = if global {
            name
        } else {
            format!("{name}@{region}")
        };
        objects.push((label, handle));
    }
    Ok(Instance {
        name: format!("{region}/{ordinal}"),
        region: region.to_owned(),
        index,
        _client: client,
        objects,
    })
}

/// The load of one instance: until `load_end` (or the operation bound), a random object and a
/// write of a unique value (half the time followed at once by local reads of every object), a
/// local read, or a `sync()` then a read.
async fn run_load(instance: &Instance, origin: Instant, load_end: Instant, record: &mut Record) {
    let mut random = Lcg(0x5EED_0000 + instance.index as u64);
    let mut written = 0u64;
    let mut operations = 0u64;
    while Instant::now() < load_end && operations < OPERATIONS_PER_INSTANCE_MAX {
        operations += 1;
        let (object, handle) =
            &instance.objects[random.next(instance.objects.len() as u64) as usize];
        match random.next(10) {
            0..=4 => {
                written += 1;
                let value = (instance.index as u64 + 1) * VALUE_BLOCK + written;
                let began_at = micros_since(origin);
                let outcome = handle.write(value).await;
                let ended_at = micros_since(origin);
                record.write(object, value, outcome.ok(), began_at, ended_at);
                // Half the writes are followed at once by local reads of every object, as an
                // application that shows what it holds after a change: a read of one object
                // right after a write of another completes is where copies that follow the log
                // apart show two orders.
                if random.next(2) == 0 {
                    for (object, handle) in &instance.objects {
                        let began_at = micros_since(origin);
                        let value = handle.read(|register| register.value());
                        let ended_at = micros_since(origin);
                        record.read(object, value, false, began_at, ended_at);
                    }
                }
            }
            5..=7 => {
                let began_at = micros_since(origin);
                let value = handle.read(|register| register.value());
                let ended_at = micros_since(origin);
                record.read(object, value, false, began_at, ended_at);
            }
            _ => {
                let began_at = micros_since(origin);
                match handle.sync().await {
                    Ok(()) => {
                        let value = handle.read(|register| register.value());
                        let ended_at = micros_since(origin);
                        record.read(object, value, true, began_at, ended_at);
                    }
                    Err(_) => {
                        let ended_at = micros_since(origin);
                        record.sample(Kind::SyncFailed, object, began_at, ended_at);
                    }
                }
            }
        }
        sleep(OPERATION_PAUSE).await;
    }
}

/// For every object `instance` holds: a `sync()` retried until it succeeds (bounded by
/// `deadline`), then a read, recorded as a synced read that began with the successful barrier.
/// Returns the values read, by object.
async fn final_reads(
    instance: &Instance,
    origin: Instant,
    deadline: Instant,
    record: &mut Record,
) -> Result<BTreeMap<String, u64>, String> {
    let mut values = BTreeMap::new();
    for (object, handle) in &instance.objects {
        let began_at = loop {
            let began_at = micros_since(origin);
            match handle.sync().await {
                Ok(()) => break began_at,
                Err(error) if Instant::now() < deadline => {
                    eprintln!(
                        "{}: final sync() of {object} failed, retrying: {error}",
                        instance.name
                    );
                    sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(format!(
                        "{}: final sync() of {object} failed: {error}",
                        instance.name
                    ));
                }
            }
        };
        let value = handle.read(|register| register.value());
        record.read(object, value, true, began_at, micros_since(origin));
        values.insert(object.clone(), value);
    }
    Ok(values)
}

/// The node ids of every region, interleaved across regions (one of the first region, one of
/// the second, ...), so that consecutive faults hit different regions.
fn fault_rotation(topology: &Topology) -> Vec<u64> {
    let per_region: Vec<Vec<u64>> = topology
        .regions
        .iter()
        .map(|region| region.nodes.iter().map(|node| node.id).collect())
        .collect();
    let longest = per_region.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|position| {
            per_region
                .iter()
                .filter_map(move |nodes| nodes.get(position).copied())
        })
        .collect()
}

/// The faults of the run, one at a time, until `load_end`: every [`FAULT_INTERVAL`] the next
/// node of the rotation is either killed and restarted on its data, or frozen and resumed.
/// Returns what happened, for the report.
async fn run_faults(
    processes: &mut NodeProcesses,
    rotation: &[u64],
    origin: Instant,
    load_end: Instant,
) -> Vec<String> {
    let mut happened = Vec::new();
    let mut step = 0usize;
    let mut next_fault = Instant::now() + FAULT_INTERVAL;
    while next_fault + FAULT_INTERVAL <= load_end {
        sleep(next_fault.saturating_duration_since(Instant::now())).await;
        next_fault += FAULT_INTERVAL;
        let node_id = rotation[step % rotation.len()];
        let at_ms = origin.elapsed().as_millis();
        if step.is_multiple_of(2) {
            processes.kill(node_id);
            sleep(KILLED_TIME).await;
            processes.start(node_id, &["--emulate-wan"]);
            happened.push(format!(
                "{at_ms} ms: node {node_id} killed (SIGKILL), restarted after {KILLED_TIME:?}"
            ));
        } else {
            let paused = processes.pause(node_id);
            assert!(paused, "node {node_id} could not be frozen");
            sleep(FROZEN_TIME).await;
            let resumed = processes.resume(node_id);
            assert!(resumed, "node {node_id} could not be resumed");
            happened.push(format!(
                "{at_ms} ms: node {node_id} frozen (SIGSTOP) for {FROZEN_TIME:?}, then resumed"
            ));
        }
        step += 1;
    }
    happened
}

/// The value at `fraction` of the sorted `values` (nearest rank).
fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Latency per kind of operation, the longest single operation, and the longest time in which
/// no instance completed a write: printed for whoever reads the run, never asserted.
fn latency_report(instances: &[Instance], records: &[Record]) -> String {
    let mut by_kind: BTreeMap<Kind, Vec<u64>> = BTreeMap::new();
    let mut longest: Option<(u64, &str, &Sample)> = None;
    let mut write_completions = Vec::new();
    for (instance, record) in instances.iter().zip(records) {
        for sample in &record.samples {
            let took = sample.ended_at.saturating_sub(sample.began_at);
            by_kind.entry(sample.kind).or_default().push(took);
            if longest.is_none_or(|(most, _, _)| took > most) {
                longest = Some((took, &instance.name, sample));
            }
            if sample.kind == Kind::Write {
                write_completions.push(sample.ended_at);
            }
        }
    }
    let mut report = String::from("latency per kind of operation (microseconds):\n");
    for (kind, mut durations) in by_kind {
        durations.sort_unstable();
        let _ = writeln!(
            report,
            "  {:<12} count {:>6}  p50 {:>9}  p99 {:>9}  max {:>9}",
            format!("{kind:?}"),
            durations.len(),
            percentile(&durations, 0.50),
            percentile(&durations, 0.99),
            durations.last().copied().unwrap_or(0)
        );
    }
    if let Some((took, instance, sample)) = longest {
        let _ = writeln!(
            report,
            "longest single operation: {took} us, {instance} {:?} of {} from {} us",
            sample.kind, sample.object, sample.began_at
        );
    }
    write_completions.sort_unstable();
    let stall = write_completions
        .windows(2)
        .map(|pair| (pair[1] - pair[0], pair[0]))
        .max();
    if let Some((gap, from)) = stall {
        let _ = writeln!(
            report,
            "longest stall (no instance completed a write): {gap} us, from {from} us"
        );
    }
    report
}

/// The histories of `instances` restricted to the objects `keep` selects, in the checker's
/// form.
fn checker_input(
    instances: &[Instance],
    records: &[Record],
    keep: impl Fn(&Instance, &str) -> bool,
) -> Vec<ClientHistory> {
    instances
        .iter()
        .zip(records)
        .filter_map(|(instance, record)| {
            let operations: Vec<Operation> = record
                .operations
                .iter()
                .filter(|operation| {
                    let (Operation::Write { object, .. } | Operation::Read { object, .. }) =
                        operation;
                    keep(instance, object)
                })
                .cloned()
                .collect();
            (!operations.is_empty()).then(|| ClientHistory {
                client: instance.name.clone(),
                operations,
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_keep_one_order_across_objects_through_kills_and_freezes() {
    let origin = Instant::now();
    let (text, _) = local_topology_on_free_ports();
    let mut processes = NodeProcesses::new(&text);
    // The model's [tls] paths are absolute, for the test's own clients.
    let topology = processes.topology_model().clone();
    for (_, node) in topology.nodes() {
        processes.start(node.id, &["--emulate-wan"]);
    }
    let regions: Vec<String> = topology
        .regions
        .iter()
        .map(|region| region.id.clone())
        .collect();

    // Every instance connects and opens its registers at once; the cluster is still electing
    // leaders, so opens retry.
    let mut opening = Vec::new();
    for (region_index, region) in regions.iter().enumerate() {
        for ordinal in 0..INSTANCES_PER_REGION {
            let topology = topology.clone();
            let region = region.clone();
            let index = region_index * INSTANCES_PER_REGION + ordinal;
            opening.push(tokio::spawn(async move {
                open_instance(&topology, &region, index, ordinal).await
            }));
        }
    }
    let mut instances = Vec::new();
    for task in opening {
        match task.await.expect("an opening task completes") {
            Ok(instance) => instances.push(instance),
            Err(error) => panic!("{error}"),
        }
    }
    eprintln!(
        "{} instances opened their registers after {} ms",
        instances.len(),
        origin.elapsed().as_millis()
    );

    // The load, with faults one at a time from the main task.
    let load_end = Instant::now() + LOAD_TIME;
    let mut load = Vec::new();
    for instance in instances {
        load.push(tokio::spawn(async move {
            let mut record = Record::default();
            run_load(&instance, origin, load_end, &mut record).await;
            (instance, record)
        }));
    }
    // The rotation starts at a node drawn from the clock, so that repeated runs freeze and
    // kill different nodes (leaders and coordinator replicas among them); printed to read a
    // failing run back.
    let mut rotation = fault_rotation(&topology);
    let first_fault = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as usize)
        % rotation.len();
    rotation.rotate_left(first_fault);
    eprintln!("fault rotation: {rotation:?}");
    let faults = run_faults(&mut processes, &rotation, origin, load_end).await;
    // Heal: every node runs (a fault in progress ended inside run_faults).
    for &node_id in &rotation {
        if !processes.is_running(node_id) {
            processes.start(node_id, &["--emulate-wan"]);
        }
    }
    let mut instances = Vec::new();
    let mut records = Vec::new();
    for task in load {
        let (instance, record) = task.await.expect("an instance's load completes");
        instances.push(instance);
        records.push(record);
    }
    eprintln!("faults:\n  {}", faults.join("\n  "));
    for (instance, record) in instances.iter().zip(&records) {
        eprintln!(
            "{}: {} operations during the load",
            instance.name,
            record.operations.len()
        );
    }

    // After the faults: every instance makes a barrier and reads every register, in rounds,
    // until the values agree (a write whose call failed may still be applied late).
    let mut problems = Vec::new();
    let final_deadline = Instant::now() + FINAL_WAIT_MAX;
    let mut last_values: Vec<BTreeMap<String, u64>> = Vec::new();
    loop {
        last_values.clear();
        for (instance, record) in instances.iter().zip(records.iter_mut()) {
            match final_reads(instance, origin, final_deadline, record).await {
                Ok(values) => last_values.push(values),
                Err(error) => {
                    processes.print_logs();
                    panic!("{error}");
                }
            }
        }
        let disagreements = disagreements(&instances, &last_values);
        if disagreements.is_empty() {
            break;
        }
        if Instant::now() >= final_deadline {
            problems.extend(disagreements);
            break;
        }
        sleep(Duration::from_millis(500)).await;
    }
    eprintln!("final values: {:?}", last_values.first());

    eprint!("{}", latency_report(&instances, &records));

    // One order across the global registers of every instance together.
    let global = checker_input(&instances, &records, |_, object| {
        GLOBAL_OBJECTS.contains(&object)
    });
    if let Err(violation) = order_check::check(&global) {
        problems.push(format!("the global registers: {violation}"));
    }
    // Each region's regional register, with the instances of that region.
    for region in &regions {
        let regional = checker_input(&instances, &records, |instance, object| {
            instance.region == *region && object == format!("{REGIONAL_OBJECT}@{region}")
        });
        if let Err(violation) = order_check::check(&regional) {
            problems.push(format!("the regional register of {region}: {violation}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    eprintln!(
        "one order across objects held; the test took {} ms",
        origin.elapsed().as_millis()
    );
}

/// The objects whose final values differ between instances that hold them, as readable text.
fn disagreements(instances: &[Instance], values: &[BTreeMap<String, u64>]) -> Vec<String> {
    let mut seen: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for (instance, values) in instances.iter().zip(values) {
        for (object, value) in values {
            seen.entry(object.as_str())
                .or_default()
                .insert(instance.name.as_str(), *value);
        }
    }
    seen.into_iter()
        .filter(|(_, by_instance)| {
            let mut distinct: Vec<u64> = by_instance.values().copied().collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.len() > 1
        })
        .map(|(object, by_instance)| format!("final values of {object} differ: {by_instance:?}"))
        .collect()
}
