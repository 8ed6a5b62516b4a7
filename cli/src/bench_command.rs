//! `dsss bench region`: the commit throughput and latency of a real three-node region.
//!
//! The benchmark starts three `dsss node` child processes (this same binary) on loopback in a
//! temporary directory, each with its own RocksDB store syncing its write-ahead log, waits for
//! a leader, and then, for each concurrency level, runs that many closed-loop gRPC clients
//! over a few shared connections to the leader. Each client proposes a record, waits for its
//! commit, and proposes the next. The table gives records per second, the 50th and 99th
//! percentile commit latency, and the CPU time of the benchmark process itself per record
//! (getrusage), which tells how much of the machine the clients took from the nodes.
//!
//! Before the levels it measures the fsync latency of the machine in its directory (4 KiB
//! writes, each followed by fdatasync), which bounds the commit latency of every system that
//! syncs its log. With `--against-etcd` it also starts a three-member etcd cluster in the same
//! directory ([`crate::bench_etcd`]) and, for each level, runs the level against etcd and then
//! against the DSSS region with the same clients, connections and record size, and prints one
//! table with both systems, the CPU per record of the client and of the servers, and the ratio
//! of their throughputs.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
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

use crate::bench_etcd::{self, EtcdCluster, EtcdPutter};

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

/// How many synced writes measure the machine's fsync latency.
const FSYNC_SAMPLES: usize = 1_000;

/// The size of each synced write, in bytes.
const FSYNC_BLOCK_BYTES: usize = 4_096;

/// The longest the fsync measurement runs; on a slower disk it stops with fewer samples.
const FSYNC_TIME_MAX: Duration = Duration::from_secs(30);

/// The `dsss bench` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Measure a three-node region: records/s, p50 and p99 commit latency, the CPU per record of the client and of the nodes.
    ///
    /// Starts three `dsss node` processes on loopback (ports picked free) in a temporary
    /// directory, each with a RocksDB store that syncs its write-ahead log on every commit
    /// round, and runs closed-loop clients against the leader for each concurrency level. It
    /// first prints the fsync latency of the disk under that directory (4 KiB writes, each
    /// followed by fdatasync). With --against-etcd it runs a three-member etcd cluster beside
    /// the region and measures both, level by level, in one table. The processes are stopped
    /// and the directory removed at the end.
    #[command(after_help = "Examples:\n  \
        dsss bench region\n  \
        dsss bench region --clients 1,16,64 --seconds 10 --record-bytes 256\n  \
        dsss bench region --against-etcd --clients 1,16,64 --seconds 10")]
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
    /// Measure a three-member etcd cluster side by side: each level runs against etcd, then against DSSS, in one table.
    ///
    /// Starts three `etcd` processes (etcd 3.4, Debian's etcd-server package) on loopback in
    /// the benchmark's directory, with etcd's defaults (its write-ahead log synced on every
    /// commit), and runs every level first against etcd's leader (etcdserverpb.KV/Put of a
    /// --record-bytes value, one key per client) and then against the DSSS region's leader,
    /// with the same closed-loop clients and the same number of shared connections; each
    /// system's calls go out as its own client sends them (etcd: one Put per call; DSSS: the
    /// calls waiting on a connection together, in one ProposeBatch request). The table
    /// gives, per level, both systems' records/s, p50 and p99 latency, the CPU per record of
    /// this benchmark process (client) and of the three server processes (servers), and the
    /// ratio of DSSS's throughput to etcd's. Without an etcd binary it exits with status 2 and
    /// names the package to install.
    #[arg(long)]
    against_etcd: bool,
    /// The etcd binary for --against-etcd; by default the first `etcd` on the PATH.
    #[arg(long, value_name = "PATH", requires = "against_etcd")]
    etcd_binary: Option<PathBuf>,
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

/// The etcd binary of `--against-etcd` and its version.
struct EtcdBinary {
    path: PathBuf,
    version: String,
}

fn region(arguments: RegionBenchArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    if let Err(message) = check_arguments(&arguments) {
        let _ = writeln!(stderr, "{message}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let etcd_binary = if arguments.against_etcd {
        let found = bench_etcd::find_binary(arguments.etcd_binary.as_deref()).and_then(|path| {
            let version = bench_etcd::version(&path)?;
            Ok(EtcdBinary { path, version })
        });
        match found {
            Ok(binary) => Some(binary),
            Err(message) => {
                let _ = writeln!(stderr, "--against-etcd: {message}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    } else {
        None
    };
    let runtime = match crate::command_runtime::multi_thread(stderr, EXIT_BENCH_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let directory = match BenchDirectory::create() {
        Ok(directory) => directory,
        Err(error) => {
            let _ = writeln!(stderr, "{error}");
            return ExitCode::from(EXIT_BENCH_FAILED);
        }
    };
    match measure_fsync(directory.path()) {
        Ok(latency) => {
            let _ = writeln!(stdout, "{}", latency.line(directory.path()));
        }
        Err(error) => {
            let _ = writeln!(stderr, "cannot measure the fsync latency: {error}");
            return ExitCode::from(EXIT_BENCH_FAILED);
        }
    }
    let mut region = match BenchRegion::start(directory) {
        Ok(region) => region,
        Err(error) => {
            let _ = writeln!(stderr, "cannot start the region: {error}");
            return ExitCode::from(EXIT_BENCH_FAILED);
        }
    };
    let mut etcd = None;
    if let Some(binary) = &etcd_binary {
        match EtcdCluster::start(&binary.path, region.directory.path(), free_port) {
            Ok(cluster) => etcd = Some(cluster),
            Err(error) => {
                let _ = writeln!(stderr, "cannot start the etcd cluster: {error}");
                let _ = region.stop();
                return ExitCode::from(EXIT_BENCH_FAILED);
            }
        }
    }
    let outcome = runtime.block_on(async {
        match (etcd.as_mut(), &etcd_binary) {
            (Some(cluster), Some(binary)) => {
                measure_side_by_side(&region, cluster, binary, &arguments, stdout).await
            }
            _ => measure(&region, &arguments, stdout).await,
        }
    });
    let etcd_stopped = etcd.as_mut().map_or(Ok(()), EtcdCluster::stop);
    let stopped = region.stop().and(etcd_stopped);
    match (outcome, stopped) {
        (Ok(()), Ok(())) => ExitCode::SUCCESS,
        (Err(error), _) | (Ok(()), Err(error)) => {
            let _ = writeln!(stderr, "{error}");
            region.print_logs(stderr);
            if let Some(cluster) = &etcd {
                let _ = write!(stderr, "{}", cluster.log_tails());
            }
            ExitCode::from(EXIT_BENCH_FAILED)
        }
    }
}

/// The machine's fsync latency, measured in the benchmark's directory.
struct FsyncLatency {
    /// The latency of each write and sync, sorted, in microseconds.
    sorted_us: Vec<u32>,
}

impl FsyncLatency {
    fn line(&self, directory: &Path) -> String {
        format!(
            "fsync latency of this machine in {}: {} x (4 KiB write + fdatasync): p50 {} us, \
             p99 {} us",
            directory.display(),
            self.sorted_us.len(),
            percentile_us(&self.sorted_us, 0.50),
            percentile_us(&self.sorted_us, 0.99)
        )
    }
}

/// Writes 4 KiB blocks one after the other into a file laid out beforehand, each followed by
/// fdatasync (as a log writes into a preallocated segment), and times each write and sync:
/// [`FSYNC_SAMPLES`] of them, or fewer if they take more than [`FSYNC_TIME_MAX`] together.
fn measure_fsync(directory: &Path) -> Result<FsyncLatency, String> {
    let path = directory.join("fsync-probe");
    let failed = |error: std::io::Error| format!("{}: {error}", path.display());
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(failed)?;
    file.write_all(&vec![0; FSYNC_SAMPLES * FSYNC_BLOCK_BYTES])
        .map_err(failed)?;
    file.sync_all().map_err(failed)?;
    file.seek(SeekFrom::Start(0)).map_err(failed)?;
    let block = vec![0xa5; FSYNC_BLOCK_BYTES];
    let started = Instant::now();
    let mut sorted_us = Vec::with_capacity(FSYNC_SAMPLES);
    while sorted_us.len() < FSYNC_SAMPLES && started.elapsed() < FSYNC_TIME_MAX {
        let write_started = Instant::now();
        file.write_all(&block).map_err(failed)?;
        file.sync_data().map_err(failed)?;
        let micros = write_started.elapsed().as_micros();
        sorted_us.push(u32::try_from(micros).unwrap_or(u32::MAX));
    }
    drop(file);
    fs::remove_file(&path).map_err(failed)?;
    sorted_us.sort_unstable();
    Ok(FsyncLatency { sorted_us })
}

/// The benchmark's region: three child processes, stopped when the value drops.
struct BenchRegion {
    directory: BenchDirectory,
    addresses: BTreeMap<u64, String>,
    children: Vec<Child>,
}

impl BenchRegion {
    fn start(directory: BenchDirectory) -> Result<BenchRegion, String> {
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

/// How many ports [`free_port`] tries before it gives up.
const FREE_PORT_ATTEMPTS_MAX: usize = 64;

/// A free loopback port that this process has not handed out before. A port handed to a
/// child process that has not bound it yet still looks free to the kernel, which may offer
/// it again: the region's nodes and the etcd members are started one after the other, and
/// once an etcd member was given a node's port and could not bind it.
fn free_port() -> Result<u16, String> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    port_not_handed_out(&mut handed_out, || {
        let listener = TcpListener::bind("127.0.0.1:0")
            .map_err(|error| format!("cannot find a free loopback port: {error}"))?;
        listener
            .local_addr()
            .map(|address| address.port())
            .map_err(|error| format!("cannot read a bound port: {error}"))
    })
}

/// The first port `offer` gives that is not in `handed_out`, which it joins; an error once
/// [`FREE_PORT_ATTEMPTS_MAX`] offers were all handed out before.
fn port_not_handed_out(
    handed_out: &mut std::collections::BTreeSet<u16>,
    mut offer: impl FnMut() -> Result<u16, String>,
) -> Result<u16, String> {
    for _ in 0..FREE_PORT_ATTEMPTS_MAX {
        let port = offer()?;
        if handed_out.insert(port) {
            return Ok(port);
        }
    }
    Err(format!(
        "cannot find a free loopback port: the kernel offered only ports already handed out, \
         {FREE_PORT_ATTEMPTS_MAX} times"
    ))
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
    /// The three server processes' CPU time over the level.
    servers_cpu: Option<Duration>,
}

/// One closed-loop client of a level: it writes a record, waits until it is committed, and
/// writes the next.
enum LevelClient {
    /// A DSSS region client proposing a call to the region's leader.
    Dsss { client: RegionClient, call: Call },
    /// An etcd client putting a key to the cluster's leader.
    Etcd(EtcdPutter),
}

impl LevelClient {
    async fn commit(&mut self) -> Result<(), String> {
        match self {
            LevelClient::Dsss { client, call } => client
                .propose(call)
                .await
                .map(|_| ())
                .map_err(|error| format!("client {}: {error}", client.client_id())),
            LevelClient::Etcd(putter) => putter.put().await,
        }
    }
}

/// The shared connections to the region's members, and the region's leader.
async fn connect_region(
    region: &BenchRegion,
    arguments: &RegionBenchArgs,
) -> Result<(Vec<RegionConnections>, u64), String> {
    let members = region.members();
    let mut connections = Vec::new();
    for _ in 0..arguments.connections {
        connections.push(RegionConnections::new(&members).map_err(|error| error.to_string())?);
    }
    let leader = wait_for_leader(&connections[0]).await?;
    Ok((connections, leader))
}

/// `clients` DSSS clients with ids from `client_id_base + 1`, spread over `connections`,
/// each proposing to `leader` a call of `record_bytes` arguments on an object of its own.
fn dsss_clients(
    connections: &[RegionConnections],
    leader: u64,
    clients: usize,
    client_id_base: u64,
    record_bytes: usize,
) -> Result<Vec<LevelClient>, String> {
    (0..clients)
        .map(|index| {
            let mut client = RegionClient::new(
                connections[index % connections.len()].clone(),
                client_id_base + index as u64 + 1,
            );
            client.prefer(leader).map_err(|error| error.to_string())?;
            let call = Call {
                object_id: format!("bench/{index}"),
                method_id: 1,
                arguments: vec![0x5a; record_bytes],
                scope: Scope::Regional,
            };
            Ok(LevelClient::Dsss { client, call })
        })
        .collect()
}

/// `clients` etcd clients spread over `channels`, each putting a value of `record_bytes` under
/// a key of its own (the same keys as the DSSS clients' objects).
fn etcd_clients(
    channels: &[tonic::transport::Channel],
    clients: usize,
    record_bytes: usize,
) -> Vec<LevelClient> {
    (0..clients)
        .map(|index| {
            LevelClient::Etcd(EtcdPutter::new(
                channels[index % channels.len()].clone(),
                format!("bench/{index}"),
                vec![0x5a; record_bytes],
            ))
        })
        .collect()
}

async fn measure(
    region: &BenchRegion,
    arguments: &RegionBenchArgs,
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let (connections, leader) = connect_region(region, arguments).await?;
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
        let result = run_dsss_level(
            region,
            &connections,
            leader,
            clients,
            &mut client_id_base,
            arguments,
        )
        .await?;
        let _ = writeln!(stdout, "{}", format_row(&result));
        let _ = stdout.flush();
    }
    Ok(())
}

async fn measure_side_by_side(
    region: &BenchRegion,
    etcd: &mut EtcdCluster,
    etcd_binary: &EtcdBinary,
    arguments: &RegionBenchArgs,
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let (connections, leader) = connect_region(region, arguments).await?;
    let etcd_leader = etcd.wait_for_leader().await?;
    let (etcd_leader_name, etcd_leader_url) = etcd.member(etcd_leader);
    let etcd_channels = bench_etcd::connect(etcd_leader_url, arguments.connections).await?;
    let _ = writeln!(
        stdout,
        "etcd {} ({}): 3 member processes on loopback with etcd's defaults (write-ahead log \
         synced on every commit); clients send to the leader, {etcd_leader_name} (a follower \
         would forward each put to it, one more hop)",
        etcd_binary.version,
        etcd_binary.path.display()
    );
    let _ = writeln!(
        stdout,
        "dsss: 3 dsss node processes on loopback (RocksDB syncing its write-ahead log); clients \
         send to the leader, node {leader}"
    );
    let _ = writeln!(
        stdout,
        "each level runs against etcd, then against dsss, {} s each after {} s of warm-up, with \
         the same closed-loop clients over {} shared connections per system; {}-byte records \
         (etcd: the value of a put; dsss: the arguments of a call), one key or object per client",
        arguments.seconds,
        WARM_UP.as_secs(),
        arguments.connections,
        arguments.record_bytes
    );
    let _ = writeln!(
        stdout,
        "client, servers: CPU time per record in us of this benchmark process and of the system's \
         3 server processes together; the other system idles meanwhile"
    );
    for line in side_by_side_header() {
        let _ = writeln!(stdout, "{line}");
    }
    let mut client_id_base = 0;
    for &clients in &arguments.clients {
        let level_clients = etcd_clients(&etcd_channels, clients, arguments.record_bytes);
        let etcd_result = run_level(level_clients, &etcd.pids(), arguments.seconds).await?;
        let dsss_result = run_dsss_level(
            region,
            &connections,
            leader,
            clients,
            &mut client_id_base,
            arguments,
        )
        .await?;
        let _ = writeln!(
            stdout,
            "{}",
            format_side_by_side_row(&etcd_result, &dsss_result)
        );
        let _ = stdout.flush();
    }
    Ok(())
}

/// Runs `clients` closed loop for [`WARM_UP`], then measures them for `seconds`, with the CPU
/// time of this process and of the server processes `server_pids`.
/// Runs one level of `clients` closed-loop clients against the region's leader, with client
/// ids from `client_id_base` on (moved past them: every level's clients are new sessions).
async fn run_dsss_level(
    region: &BenchRegion,
    connections: &[RegionConnections],
    leader: u64,
    clients: usize,
    client_id_base: &mut u64,
    arguments: &RegionBenchArgs,
) -> Result<LevelResult, String> {
    let level_clients = dsss_clients(
        connections,
        leader,
        clients,
        *client_id_base,
        arguments.record_bytes,
    )?;
    *client_id_base += clients as u64;
    run_level(level_clients, &region.pids(), arguments.seconds).await
}

async fn run_level(
    clients: Vec<LevelClient>,
    server_pids: &[u32],
    seconds: u64,
) -> Result<LevelResult, String> {
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let count = clients.len();
    let samples_per_client = LATENCY_SAMPLES_MAX / count.max(1);
    let mut tasks = Vec::new();
    for mut client in clients {
        let measuring = measuring.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies_us = Vec::new();
            let mut records = 0_u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                client.commit().await?;
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
    let servers_cpu_before = nodes_cpu_time(server_pids);
    let started = Instant::now();
    measuring.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after.saturating_sub(before));
    let servers_cpu = nodes_cpu_time(server_pids)
        .zip(servers_cpu_before)
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
        clients: count,
        records,
        elapsed,
        latencies_us,
        cpu,
        servers_cpu,
    })
}

/// The nearest-rank percentile of `sorted_us`, in microseconds (0 when there is no sample).
fn percentile_us(sorted_us: &[u32], fraction: f64) -> u32 {
    if sorted_us.is_empty() {
        return 0;
    }
    let rank = ((sorted_us.len() as f64 * fraction).ceil() as usize).clamp(1, sorted_us.len());
    sorted_us[rank - 1]
}

fn percentile_ms(sorted_us: &[u32], fraction: f64) -> f64 {
    f64::from(percentile_us(sorted_us, fraction)) / 1_000.0
}

impl LevelResult {
    fn records_per_second(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }

    /// `cpu` per record in microseconds, with one decimal; "unknown" without a figure.
    fn per_record(&self, cpu: Option<Duration>) -> String {
        match cpu {
            Some(cpu) if self.records > 0 => {
                format!("{:.1}", cpu.as_secs_f64() * 1e6 / self.records as f64)
            }
            _ => "unknown".to_owned(),
        }
    }
}

fn format_row(result: &LevelResult) -> String {
    let with_unit = |figure: String| {
        if figure == "unknown" {
            figure
        } else {
            format!("{figure} us")
        }
    };
    format!(
        "{:>8} {:>12.0} {:>9.2} {:>9.2} {:>16} {:>15}",
        result.clients,
        result.records_per_second(),
        percentile_ms(&result.latencies_us, 0.50),
        percentile_ms(&result.latencies_us, 0.99),
        with_unit(result.per_record(result.cpu)),
        with_unit(result.per_record(result.servers_cpu))
    )
}

/// The columns of one system in the side-by-side table.
fn system_columns(result: &LevelResult) -> String {
    format!(
        "{:>10.0} {:>7.2} {:>7.2} {:>7} {:>8}",
        result.records_per_second(),
        percentile_ms(&result.latencies_us, 0.50),
        percentile_ms(&result.latencies_us, 0.99),
        result.per_record(result.cpu),
        result.per_record(result.servers_cpu)
    )
}

/// The two header lines of the side-by-side table.
fn side_by_side_header() -> [String; 2] {
    let columns = format!(
        "{:>10} {:>7} {:>7} {:>7} {:>8}",
        "records/s", "p50 ms", "p99 ms", "client", "servers"
    );
    let width = columns.len();
    [
        format!("{:>8}  {:-^width$}  {:-^width$}", "", " etcd ", " dsss "),
        format!("{:>8}  {columns}  {columns}  {:>9}", "clients", "dsss/etcd"),
    ]
}

/// One level of the side-by-side table: etcd's figures, DSSS's, and the ratio of their
/// throughputs.
fn format_side_by_side_row(etcd: &LevelResult, dsss: &LevelResult) -> String {
    let ratio = if etcd.records > 0 {
        format!(
            "{:.2}",
            dsss.records_per_second() / etcd.records_per_second()
        )
    } else {
        "none".to_owned()
    };
    format!(
        "{:>8}  {}  {}  {ratio:>9}",
        dsss.clients,
        system_columns(etcd),
        system_columns(dsss)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_is_handed_out_once_even_when_nothing_bound_it() {
        let ports: Vec<u16> = (0..500).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::BTreeSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_kernel_that_offers_only_handed_out_ports_gets_a_clear_error_after_the_bound() {
        let mut handed_out = std::collections::BTreeSet::from([40_000]);
        let mut offers = 0;
        let error = port_not_handed_out(&mut handed_out, || {
            offers += 1;
            Ok(40_000)
        })
        .unwrap_err();
        assert_eq!(offers, FREE_PORT_ATTEMPTS_MAX);
        assert!(error.contains("already handed out, 64 times"), "{error}");
        // A new port on the last attempt is still taken.
        let mut offers = 0;
        let port = port_not_handed_out(&mut handed_out, || {
            offers += 1;
            Ok(if offers == FREE_PORT_ATTEMPTS_MAX {
                40_001
            } else {
                40_000
            })
        });
        assert_eq!(port, Ok(40_001));
        assert!(handed_out.contains(&40_001));
    }

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

    fn level(clients: usize, records: u64, cpu_ms: u64) -> LevelResult {
        LevelResult {
            clients,
            records,
            elapsed: Duration::from_secs(2),
            latencies_us: vec![500, 1_000, 2_000],
            cpu: Some(Duration::from_millis(cpu_ms)),
            servers_cpu: None,
        }
    }

    #[test]
    fn the_side_by_side_row_has_both_systems_and_the_ratio_under_the_header() {
        let row = format_side_by_side_row(&level(16, 2_000, 100), &level(16, 3_000, 60));
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            fields,
            [
                "16", "1000", "1.00", "2.00", "50.0", "unknown", "1500", "1.00", "2.00", "20.0",
                "unknown", "1.50"
            ]
        );
        let [groups, columns] = side_by_side_header();
        assert_eq!(columns.len(), row.len(), "{columns}\n{row}");
        assert!(columns.ends_with("dsss/etcd"), "{columns}");
        assert!(
            groups.contains(" etcd ") && groups.contains(" dsss "),
            "{groups}"
        );
        let nothing = format_side_by_side_row(&level(1, 0, 0), &level(1, 10, 0));
        assert!(nothing.ends_with("none"), "{nothing}");
    }

    #[test]
    fn the_fsync_latency_is_measured_in_the_directory() {
        let directory = BenchDirectory::create().expect("directory");
        let latency = measure_fsync(directory.path()).expect("measured");
        assert!(!latency.sorted_us.is_empty());
        assert!(latency.sorted_us.is_sorted());
        assert!(!directory.path().join("fsync-probe").exists());
        let line = latency.line(directory.path());
        assert!(line.contains("fdatasync") && line.contains("p99"), "{line}");
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
            against_etcd: false,
            etcd_binary: None,
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
