//! `dsss bench region`: the commit throughput and latency of a real three-node region.
//!
//! The benchmark starts three `dsss node` child processes (this same binary) on loopback in a
//! temporary directory, each with its own RocksDB store syncing its write-ahead log, waits for
//! a leader, and then, for each concurrency level, runs that many closed-loop gRPC clients
//! over a few shared connections to the leader. Each client proposes a record, waits for its
//! commit, and proposes the next. The table gives records per second, the 50th and 99th
//! percentile commit latency, and the CPU time of the benchmark process itself per record
//! (getrusage), which tells how much of the machine the clients took from the nodes.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use dsss::region_client::{Call, RegionClient, RegionConnections};
use dsss_wire::Scope;
use dsss_wire::proto::NodeRole;

/// Exit status when the benchmark could not run.
const EXIT_BENCH_FAILED: u8 = 1;

/// Exit status for settings that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The nodes of the benchmark region.
const NODE_IDS: [u64; 3] = [1, 2, 3];

/// The most concurrency levels one run measures.
pub const LEVELS_MAX: usize = 16;

/// The most clients one level runs.
pub const CLIENTS_MAX: usize = 1_024;

/// The longest measurement of one level, in seconds.
pub const SECONDS_MAX: u64 = 600;

/// The largest record the benchmark proposes, in bytes (the arguments of one call).
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;

/// The most shared gRPC connections to the leader.
pub const CONNECTIONS_MAX: usize = 64;

/// The most latency samples kept per level; beyond, samples are dropped from the
/// percentiles (but still counted in the throughput).
pub const LATENCY_SAMPLES_MAX: usize = 20_000_000;

/// How long each level runs before it is measured, so that connections and caches are warm.
const WARM_UP: Duration = Duration::from_secs(1);

/// The longest wait for the region to elect a leader.
const LEADER_WAIT_MAX: Duration = Duration::from_secs(60);

/// The `dsss bench` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Measure a three-node region: records/s, p50 and p99 commit latency, the CPU per record of the client and of the nodes.
    ///
    /// Starts three `dsss node` processes on loopback (ports picked free) in a temporary
    /// directory, each with a RocksDB store that syncs its write-ahead log on every commit
    /// round, and runs closed-loop clients against the leader for each concurrency level. The
    /// processes are stopped and the directory removed at the end.
    #[command(after_help = "Examples:\n  \
        dsss bench region\n  \
        dsss bench region --clients 1,16,64 --seconds 10 --record-bytes 256")]
    Region(RegionBenchArgs),
    /// Write a long load (4 GiB by default) through the SDK into a running cluster, watching node memory and region logs.
    ///
    /// Application instances in every region open a mix of journal objects (each instance its
    /// own regional one, regional ones shared by the region's instances, a few global ones
    /// every instance writes) and append payloads of random size until the total is written.
    /// Every few seconds it prints what was written, calls/s, the resident memory of every
    /// node process on this machine, and every region's log against its quota with its
    /// truncation point (the Status RPC). It exits with 1 if a call failed, if a node's
    /// memory rose more than --rss-growth-max-mib above its level after the warm-up, if a
    /// region's log went above its quota, or if the copies of an object disagree with each
    /// other or with the calls acknowledged.
    #[command(
        after_help = "Examples (with `dsss up --no-demo` running in another terminal):\n  \
        dsss bench soak\n  \
        dsss bench soak --total-mib 64 --payload-bytes 1024 --report-seconds 2"
    )]
    Soak(crate::soak_command::SoakArgs),
    /// Measure the CPU an idle cluster uses: `dsss up --no-demo`, every process, over a minute.
    ///
    /// Starts `dsss up --no-demo` in a temporary directory, waits until the cluster is ready
    /// and for --settle-seconds more, then reads the CPU time (user and system) of `dsss up`
    /// and every node process from /proc over --seconds. Prints each process's CPU seconds per
    /// minute, split into the node loop, the tokio runtime and the coordinator loop, and the
    /// total as a share of one core. The cluster is stopped and the directory removed at the
    /// end. Linux only; measure a release build.
    #[command(after_help = "Examples:\n  \
        dsss bench idle\n  \
        dsss bench idle --settle-seconds 10 --seconds 20 --topology my-cluster.toml")]
    Idle(crate::idle_bench_command::IdleBenchArgs),
}

/// The arguments of `dsss bench region`.
#[derive(Debug, Args)]
pub(crate) struct RegionBenchArgs {
    /// Concurrency levels: how many closed-loop clients propose at once, comma separated.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_values_t = [1, 16, 64])]
    clients: Vec<usize>,
    /// How long each level is measured, in seconds (after one second of warm-up).
    #[arg(long, value_name = "S", default_value_t = 5)]
    seconds: u64,
    /// The size of each record's arguments, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 256)]
    record_bytes: usize,
    /// How many gRPC connections the clients share.
    #[arg(long, value_name = "N", default_value_t = 4)]
    connections: usize,
}

/// Runs one benchmark subcommand.
pub(crate) fn run(
    command: BenchCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    match command {
        BenchCommand::Region(arguments) => region(arguments, stdout, stderr),
        BenchCommand::Soak(arguments) => crate::soak_command::run(arguments, stdout, stderr),
        BenchCommand::Idle(arguments) => crate::idle_bench_command::run(arguments, stdout, stderr),
    }
}

fn check_arguments(arguments: &RegionBenchArgs) -> Result<(), String> {
    if arguments.clients.is_empty() || arguments.clients.len() > LEVELS_MAX {
        return Err(format!("--clients: give 1 to {LEVELS_MAX} levels"));
    }
    if let Some(level) = arguments
        .clients
        .iter()
        .find(|&&level| level == 0 || level > CLIENTS_MAX)
    {
        return Err(format!("--clients: {level} is outside 1..={CLIENTS_MAX}"));
    }
    if arguments.seconds == 0 || arguments.seconds > SECONDS_MAX {
        return Err(format!(
            "--seconds: {} is outside 1..={SECONDS_MAX}",
            arguments.seconds
        ));
    }
    if arguments.record_bytes > RECORD_BYTES_MAX {
        return Err(format!(
            "--record-bytes: {} is above {RECORD_BYTES_MAX}",
            arguments.record_bytes
        ));
    }
    if arguments.connections == 0 || arguments.connections > CONNECTIONS_MAX {
        return Err(format!(
            "--connections: {} is outside 1..={CONNECTIONS_MAX}",
            arguments.connections
        ));
    }
    Ok(())
}

fn region(arguments: RegionBenchArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    if let Err(message) = check_arguments(&arguments) {
        let _ = writeln!(stderr, "{message}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let runtime = match crate::command_runtime::multi_thread(stderr, EXIT_BENCH_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut region = match BenchRegion::start() {
        Ok(region) => region,
        Err(error) => {
            let _ = writeln!(stderr, "cannot start the region: {error}");
            return ExitCode::from(EXIT_BENCH_FAILED);
        }
    };
    let outcome = runtime.block_on(measure(&region, &arguments, stdout));
    let stopped = region.stop();
    match (outcome, stopped) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(error), _) | (Ok(()), Err(error)) => {
            let _ = writeln!(stderr, "{error}");
            region.print_logs(stderr);
            ExitCode::from(EXIT_BENCH_FAILED)
        }
    }
}

/// The benchmark's region: three child processes, stopped when the value drops.
struct BenchRegion {
    directory: BenchDirectory,
    addresses: BTreeMap<u64, String>,
    children: Vec<Child>,
}

impl BenchRegion {
    fn start() -> Result<BenchRegion, String> {
        let directory = BenchDirectory::create()?;
        let mut addresses = BTreeMap::new();
        for node_id in NODE_IDS {
            addresses.insert(node_id, format!("127.0.0.1:{}", free_port()?));
        }
        let topology = directory.path().join("topology.toml");
        fs::write(&topology, topology_text(&addresses))
            .map_err(|error| format!("cannot write {}: {error}", topology.display()))?;
        let binary = std::env::current_exe()
            .map_err(|error| format!("cannot find the dsss binary: {error}"))?;
        let mut region = BenchRegion {
            directory,
            addresses,
            children: Vec::new(),
        };
        for node_id in NODE_IDS {
            let child = spawn_node(&binary, region.directory.path(), &topology, node_id)?;
            region.children.push(child);
        }
        Ok(region)
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    fn members(&self) -> Vec<(u64, String)> {
        self.addresses
            .iter()
            .map(|(node_id, address)| (*node_id, address.clone()))
            .collect()
    }

    /// Stops every node with SIGTERM and waits for it.
    fn stop(&mut self) -> Result<(), String> {
        let mut problems = Vec::new();
        for mut child in self.children.drain(..) {
            let terminated = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|status| status.success());
            if !terminated {
                let _ = child.kill();
            }
            match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => problems.push(format!("a node exited with {status}")),
                Err(error) => problems.push(format!("waiting for a node: {error}")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    fn print_logs(&self, stderr: &mut dyn Write) {
        for node_id in NODE_IDS {
            let path = log_path(self.directory.path(), node_id);
            let text = fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            let _ = writeln!(
                stderr,
                "--- node {node_id} ({})\n{}",
                path.display(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for BenchRegion {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The benchmark's temporary directory, removed when the value drops.
pub(crate) struct BenchDirectory {
    path: PathBuf,
}

impl BenchDirectory {
    pub(crate) fn create() -> Result<BenchDirectory, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("dsss-bench-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        Ok(BenchDirectory { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for BenchDirectory {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn log_path(directory: &Path, node_id: u64) -> PathBuf {
    directory.join(format!("node-{node_id}.log"))
}

fn spawn_node(
    binary: &Path,
    directory: &Path,
    topology: &Path,
    node_id: u64,
) -> Result<Child, String> {
    let log = File::create(log_path(directory, node_id))
        .map_err(|error| format!("cannot create the log of node {node_id}: {error}"))?;
    let log_copy = log
        .try_clone()
        .map_err(|error| format!("cannot share the log of node {node_id}: {error}"))?;
    Command::new(binary)
        .arg("node")
        .arg("--topology")
        .arg(topology)
        .args(["--id", &node_id.to_string()])
        // The benchmark's own loopback cluster measures the protocol over plaintext gRPC.
        .arg("--insecure")
        .current_dir(directory)
        .stdin(Stdio::null())
        .stdout(log_copy)
        .stderr(log)
        .spawn()
        .map_err(|error| format!("cannot start node {node_id}: {error}"))
}

fn topology_text(addresses: &BTreeMap<u64, String>) -> String {
    let nodes: Vec<String> = addresses
        .iter()
        .map(|(node_id, address)| {
            format!("  {{ id = {node_id}, address = \"{address}\", data_dir = \"data/node-{node_id}\" }},")
        })
        .collect();
    format!(
        "[cluster]\nname = \"bench\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
         max_clock_skew_ms = 250\nintra_region_delay_ms = 0.1\n\n\
         [coordinator]\nreplicas = [1]\npreferred_leader = 1\n\n\
         [[regions]]\nid = \"bench\"\nnodes = [\n{}\n]\n",
        nodes.join("\n")
    )
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|error| format!("cannot find a free loopback port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("cannot read a bound port: {error}"))
}

/// The CPU time (user and system, every thread) this process used so far: what
/// `getrusage(RUSAGE_SELF)` reports, read from `/proc/self/stat` (fields 14 and 15, in the
/// kernel's fixed 100 ticks per second), because calling getrusage needs `unsafe`, which this
/// workspace forbids. None when the file cannot be read (not Linux).
fn process_cpu_time() -> Option<Duration> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_time(&stat)
}

/// The CPU time the node processes `pids` used so far, all together (as
/// [`process_cpu_time`] reads it for this process).
fn nodes_cpu_time(pids: &[u32]) -> Option<Duration> {
    pids.iter()
        .map(|pid| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            parse_cpu_time(&stat)
        })
        .sum()
}

/// The kernel reports process times in USER_HZ, which is 100 on every Linux platform.
const PROC_TICKS_PER_SECOND: u64 = 100;

/// The CPU time (user and system) in the text of a `/proc/PID/stat` or
/// `/proc/PID/task/TID/stat` file.
pub(crate) fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) is in parentheses and may hold spaces: count fields after
    // its closing parenthesis, where field 3 is the first.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let user_ticks: u64 = fields.get(14 - 3)?.parse().ok()?;
    let system_ticks: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(Duration::from_millis(
        (user_ticks + system_ticks) * 1_000 / PROC_TICKS_PER_SECOND,
    ))
}

async fn wait_for_leader(connections: &RegionConnections) -> Result<u64, String> {
    let started = Instant::now();
    while started.elapsed() < LEADER_WAIT_MAX {
        for node_id in connections.node_ids() {
            if let Ok(status) = connections.status(node_id).await
                && status.role == NodeRole::Leader as i32
            {
                return Ok(node_id);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "no leader elected within {} s",
        LEADER_WAIT_MAX.as_secs()
    ))
}

/// One level's measurement.
struct LevelResult {
    clients: usize,
    records: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
    /// The benchmark client's CPU time over the level.
    cpu: Option<Duration>,
    /// The three node processes' CPU time over the level.
    nodes_cpu: Option<Duration>,
}

async fn measure(
    region: &BenchRegion,
    arguments: &RegionBenchArgs,
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let members = region.members();
    let mut connections = Vec::new();
    for _ in 0..arguments.connections {
        connections.push(RegionConnections::new(&members).map_err(|error| error.to_string())?);
    }
    let leader = wait_for_leader(&connections[0]).await?;
    let _ = writeln!(
        stdout,
        "region of 3 dsss node processes on loopback, leader node {leader}; {} s per level after \
         {} s warm-up; {}-byte records; {} shared connections",
        arguments.seconds,
        WARM_UP.as_secs(),
        arguments.record_bytes,
        arguments.connections
    );
    let _ = writeln!(
        stdout,
        "{:>8} {:>12} {:>9} {:>9} {:>16} {:>15}",
        "clients", "records/s", "p50 ms", "p99 ms", "client CPU/rec", "nodes CPU/rec"
    );
    let mut client_id_base = 0;
    for &clients in &arguments.clients {
        let result = run_level(
            &connections,
            &region.pids(),
            leader,
            clients,
            client_id_base,
            arguments,
        )
        .await?;
        client_id_base += clients as u64;
        let _ = writeln!(stdout, "{}", format_row(&result));
        let _ = stdout.flush();
    }
    Ok(())
}

async fn run_level(
    connections: &[RegionConnections],
    node_pids: &[u32],
    leader: u64,
    clients: usize,
    client_id_base: u64,
    arguments: &RegionBenchArgs,
) -> Result<LevelResult, String> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let samples_per_client = LATENCY_SAMPLES_MAX / clients;
    let mut tasks = Vec::new();
    for index in 0..clients {
        let mut client = RegionClient::new(
            connections[index % connections.len()].clone(),
            client_id_base + index as u64 + 1,
        );
        client.prefer(leader).map_err(|error| error.to_string())?;
        let call = Call {
            object_id: format!("bench/{index}"),
            method_id: 1,
            arguments: vec![0x5a; arguments.record_bytes],
            scope: Scope::Regional,
        };
        let measuring = measuring.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut records = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                client
                    .propose(&call)
                    .await
                    .map_err(|error| format!("client {}: {error}", client.client_id()))?;
                if measuring.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                    records += 1;
                    if latencies_us.len() < samples_per_client {
                        let micros = started.elapsed().as_micros();
                        latencies_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
                    }
                }
            }
            Ok::<_, String>((records, latencies_us))
        }));
    }
    tokio::time::sleep(WARM_UP).await;
    let cpu_before = process_cpu_time();
    let nodes_cpu_before = nodes_cpu_time(node_pids);
    let started = Instant::now();
    measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(arguments.seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let nodes_cpu = nodes_cpu_time(node_pids)
        .zip(nodes_cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let mut records = 0;
    let mut latencies_us = Vec::new();
    for task in tasks {
        let (task_records, task_latencies) = task
            .await
            .map_err(|error| format!("a client task failed: {error}"))??;
        records += task_records;
        latencies_us.extend(task_latencies);
    }
    latencies_us.sort_unstable();
    Ok(LevelResult {
        clients,
        records,
        elapsed,
        latencies_us,
        cpu,
        nodes_cpu,
    })
}

fn percentile_ms(sorted_us: &[u32], fraction: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((sorted_us.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_us.len());
    f64::from(sorted_us[rank - 1]) / 1_000.0
}

fn format_row(result: &LevelResult) -> String {
    let records_per_second = result.records as f64 / result.elapsed.as_secs_f64();
    let per_record = |cpu: Option<Duration>| match cpu {
        Some(cpu) if result.records > 0 => {
            format!("{:.1} us", cpu.as_secs_f64() * 1e6 / result.records as f64)
        }
        _ => "unknown".to_owned(),
    };
    format!(
        "{:>8} {:>12.0} {:>9.2} {:>9.2} {:>16} {:>15}",
        result.clients,
        records_per_second,
        percentile_ms(&result.latencies_us, 0.50),
        percentile_ms(&result.latencies_us, 0.99),
        per_record(result.cpu),
        per_record(result.nodes_cpu)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<u32> = (1..=100).map(|value| value * 1_000).collect();
        assert_eq!(percentile_ms(&samples, 0.50), 50.0);
        assert_eq!(percentile_ms(&samples, 0.99), 99.0);
        assert_eq!(percentile_ms(&[], 0.99), 0.0);
        assert_eq!(percentile_ms(&[7_000], 0.01), 7.0);
    }

    #[test]
    fn cpu_time_is_read_from_the_proc_stat_fields() {
        let stat = "4242 (dsss (bench) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 0";
        assert_eq!(parse_cpu_time(stat), Some(Duration::from_millis(3_000)));
        assert_eq!(parse_cpu_time("4242 (truncated"), None);
        assert_eq!(parse_cpu_time("4242 (dsss) S 1 2"), None);
    }

    #[test]
    fn topology_text_is_a_valid_topology() {
        let addresses: BTreeMap<u64, String> = NODE_IDS
            .iter()
            .map(|&node_id| (node_id, format!("127.0.0.1:{}", 7_000 + node_id)))
            .collect();
        let topology = dsss_topology::parse("bench.toml", &topology_text(&addresses))
            .expect("the benchmark topology is valid");
        assert_eq!(topology.regions.len(), 1);
        assert_eq!(topology.regions[0].nodes.len(), 3);
    }

    #[test]
    fn arguments_out_of_range_are_refused_with_the_flag_named() {
        let good = RegionBenchArgs {
            clients: vec![1, 16, 64],
            seconds: 5,
            record_bytes: 256,
            connections: 4,
        };
        assert_eq!(check_arguments(&good), Ok(()));
        let zero_clients = RegionBenchArgs {
            clients: vec![0],
            ..good
        };
        assert!(
            check_arguments(&zero_clients)
                .expect_err("refused")
                .starts_with("--clients")
        );
    }
}
