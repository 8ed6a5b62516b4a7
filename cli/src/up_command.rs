//! `dsss up`: a whole cluster on this machine from a topology file (the embedded local
//! topology by default), every node a `dsss node --emulate-wan` child process, followed by a
//! small demo of global writes from each region.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use dsss_region_node::client::{Call, RegionClient, RegionConnections};
use dsss_topology::{LOCAL_TOPOLOGY_TOML, Topology, load};
use dsss_wire::Scope;
use dsss_wire::proto;
use tokio::signal::unix::{SignalKind, signal};

/// Exit status when the cluster could not start.
const EXIT_CLUSTER_FAILED: u8 = 1;

/// Exit status for a topology file that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// Where `dsss up` writes the embedded topology, and the nodes' logs, under the working
/// directory.
const UP_DIRECTORY: &str = "dsss-up";

/// How long the cluster may take to elect every region's leader and seal a first epoch.
const READY_WAIT_MAX: Duration = Duration::from_secs(60);

/// How often readiness is polled.
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Global writes the demo client makes from each region.
const DEMO_WRITES_PER_REGION: u64 = 3;

/// How long the demo waits for every region to apply the demo writes.
const DEMO_APPLY_WAIT_MAX: Duration = Duration::from_secs(10);

/// How far back from its applied position the demo reads a region's log for its writes.
const DEMO_LOG_READ_ENTRIES_MAX: u64 = 10_000;

/// How long a stopping child may take after SIGTERM before it is killed.
const CHILD_STOP_WAIT_MAX: Duration = Duration::from_secs(10);

/// The arguments of `dsss up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The topology to run; without it, the embedded local topology (three regions of three
    /// nodes on 127.0.0.1, written to dsss-up/local.toml).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
}

/// The cluster's child processes; every child still running is killed when this drops, so
/// that no node outlives `dsss up`.
struct Children {
    children: Vec<(u64, Child)>,
}

impl Children {
    /// Sends SIGTERM to every child and waits for each (killing the ones that do not stop).
    fn stop(&mut self, stdout: &mut dyn Write) {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + CHILD_STOP_WAIT_MAX;
        for (node_id, child) in &mut self.children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        let _ = writeln!(stdout, "node {node_id} stopped ({status})");
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        let _ = writeln!(stdout, "node {node_id} killed: it did not stop in time");
                        break;
                    }
                }
            }
        }
        self.children.clear();
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs the cluster until SIGINT or SIGTERM.
pub(crate) fn run(args: UpArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let directory = Path::new(UP_DIRECTORY);
    if let Err(error) = fs::create_dir_all(directory.join("logs")) {
        let _ = writeln!(stderr, "cannot create {}: {error}", directory.display());
        return ExitCode::from(EXIT_CLUSTER_FAILED);
    }
    let topology_path = match args.topology {
        Some(path) => path,
        None => {
            let path = directory.join("local.toml");
            if let Err(error) = fs::write(&path, LOCAL_TOPOLOGY_TOML) {
                let _ = writeln!(stderr, "cannot write {}: {error}", path.display());
                return ExitCode::from(EXIT_CLUSTER_FAILED);
            }
            path
        }
    };
    let topology = match load(&topology_path) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            let _ = write!(stderr, "{diagnostics}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(stderr, "cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_CLUSTER_FAILED);
        }
    };
    let mut children = Children {
        children: Vec::new(),
    };
    let outcome = runtime.block_on(async {
        // Signal handlers first: a Ctrl-C during the start still stops every child.
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return Err("cannot install the SIGINT and SIGTERM handlers".to_owned());
        };
        start_children(&topology, &topology_path, directory, &mut children, stdout)?;
        tokio::select! {
            ready = run_demo(&topology, stdout) => ready?,
            _ = interrupt.recv() => return Ok("SIGINT received"),
            _ = terminate.recv() => return Ok("SIGTERM received"),
        }
        let _ = writeln!(
            stdout,
            "\nThe cluster runs; node logs are in {}. Ctrl-C stops every node.",
            directory.join("logs").display()
        );
        let _ = stdout.flush();
        Ok(tokio::select! {
            _ = interrupt.recv() => "SIGINT received",
            _ = terminate.recv() => "SIGTERM received",
        })
    });
    match outcome {
        Ok(reason) => {
            let _ = writeln!(stdout, "{reason}; stopping every node");
            children.stop(stdout);
            ExitCode::SUCCESS
        }
        Err(error) => {
            let _ = writeln!(stderr, "dsss up: {error}; stopping every node");
            children.stop(stdout);
            ExitCode::from(EXIT_CLUSTER_FAILED)
        }
    }
}

fn start_children(
    topology: &Topology,
    topology_path: &Path,
    directory: &Path,
    children: &mut Children,
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let binary = std::env::current_exe()
        .map_err(|error| format!("cannot locate the dsss binary: {error}"))?;
    let _ = writeln!(
        stdout,
        "Starting {} nodes of cluster {:?} from {} (WAN delays emulated):",
        topology.node_count(),
        topology.cluster.name,
        topology_path.display()
    );
    let _ = writeln!(
        stdout,
        "  {:>6}  {:<16}  {:<22}  {:<12}  data",
        "node", "region", "address", "coordinator"
    );
    for (region, node) in topology.nodes() {
        let log_path = directory.join("logs").join(format!("node-{}.log", node.id));
        let log = File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let log_error = log
            .try_clone()
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let child = Command::new(&binary)
            .args(["node", "--emulate-wan", "--topology"])
            .arg(topology_path)
            .args(["--id", &node.id.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_error)
            .spawn()
            .map_err(|error| format!("cannot start node {}: {error}", node.id))?;
        children.children.push((node.id, child));
        let replica = if topology.is_coordinator_replica(node.id) {
            if topology.coordinator.preferred_leader == node.id {
                "replica*"
            } else {
                "replica"
            }
        } else {
            "-"
        };
        let _ = writeln!(
            stdout,
            "  {:>6}  {:<16}  {:<22}  {:<12}  {}",
            node.id,
            region.id,
            node.address,
            replica,
            node.data_dir.display()
        );
    }
    let _ = writeln!(stdout, "  (* the preferred coordinator leader)");
    let _ = stdout.flush();
    Ok(())
}

/// Connections to every region, in topology order.
fn region_connections(topology: &Topology) -> Result<Vec<(String, RegionConnections)>, String> {
    topology
        .regions
        .iter()
        .map(|region| {
            let members: Vec<(u64, String)> = region
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect();
            RegionConnections::new(&members)
                .map(|connections| (region.id.clone(), connections))
                .map_err(|error| format!("region {}: {error}", region.id))
        })
        .collect()
}

/// The status of a region's leader, when one of its nodes reports itself leader.
async fn leader_status(connections: &RegionConnections) -> Option<proto::StatusReply> {
    for node_id in connections.node_ids() {
        if let Ok(status) = connections.status(node_id).await
            && status.role == proto::NodeRole::Leader as i32
        {
            return Some(status);
        }
    }
    None
}

async fn run_demo(topology: &Topology, stdout: &mut dyn Write) -> Result<(), String> {
    let regions = region_connections(topology)?;
    let started = Instant::now();
    let mut leaders = Vec::new();
    loop {
        leaders.clear();
        for (_, connections) in &regions {
            match leader_status(connections).await {
                Some(status) if status.sealed_epoch_number > 0 => leaders.push(status),
                _ => break,
            }
        }
        if leaders.len() == regions.len() {
            break;
        }
        if started.elapsed() > READY_WAIT_MAX {
            return Err(format!(
                "not every region had a leader with sealed epochs within {READY_WAIT_MAX:?}; \
                 see the node logs"
            ));
        }
        tokio::time::sleep(READY_POLL_INTERVAL).await;
    }
    let _ = writeln!(
        stdout,
        "\nReady after {} ms: every region has a leader and the coordinator seals epochs.",
        started.elapsed().as_millis()
    );
    for ((region, _), status) in regions.iter().zip(&leaders) {
        let _ = writeln!(
            stdout,
            "  region {region}: leader node {}, sealed epoch {}",
            status.node_id, status.sealed_epoch_number
        );
    }
    let _ = writeln!(
        stdout,
        "\nDemo: {DEMO_WRITES_PER_REGION} global writes from each region (object demo/global):"
    );
    // Fresh client ids for every run: a run over reused data with the ids of an earlier run
    // would be answered with the earlier positions (exactly once), and show nothing new.
    let first_client_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |since| since.as_micros() as u64)
        .saturating_mul(8);
    let mut writes = Vec::new();
    for (index, (region, connections)) in regions.iter().enumerate() {
        let client_id = first_client_id + index as u64;
        let mut client = RegionClient::new(connections.clone(), client_id);
        if let Some(leader) = leaders.get(index) {
            let _ = client.prefer(leader.node_id);
        }
        for write in 1..=DEMO_WRITES_PER_REGION {
            let call = Call {
                object_id: "demo/global".to_owned(),
                method_id: 1,
                arguments: format!("write {write} from {region}").into_bytes(),
                scope: Scope::Global,
            };
            let call_started = Instant::now();
            let committed = client
                .propose(&call)
                .await
                .map_err(|error| format!("a global write from {region} failed: {error}"))?;
            let _ = writeln!(
                stdout,
                "  {region:<16} write {write}: position {:>6} in {region}, {:>6.1} ms",
                committed.position,
                call_started.elapsed().as_secs_f64() * 1_000.0
            );
            let _ = stdout.flush();
            writes.push((region.clone(), write, client_id, committed.request_sequence));
        }
    }
    show_writes_in_every_region(&regions, &writes, stdout).await
}

/// Reads every region's log and prints where each demo write sits in it: every region applies
/// every global write, in the same order, at its place in the sealed sequence.
async fn show_writes_in_every_region(
    regions: &[(String, RegionConnections)],
    writes: &[(String, u64, u64, u64)],
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let mut positions: Vec<Vec<u64>> = Vec::new();
    for (region, connections) in regions {
        let started = Instant::now();
        let found = loop {
            if let Some(found) = sequenced_positions(connections, writes).await {
                break found;
            }
            if started.elapsed() > DEMO_APPLY_WAIT_MAX {
                return Err(format!(
                    "region {region} did not apply every demo write within \
                     {DEMO_APPLY_WAIT_MAX:?}; see the node logs"
                ));
            }
            tokio::time::sleep(READY_POLL_INTERVAL).await;
        };
        positions.push(found);
    }
    let _ = write!(
        stdout,
        "\nWhere every region applied them:\n  {:<24}",
        "write"
    );
    for (region, _) in regions {
        let _ = write!(stdout, " {region:>10}");
    }
    let _ = writeln!(stdout);
    for (index, (origin, write, _, _)) in writes.iter().enumerate() {
        let _ = write!(stdout, "  {:<24}", format!("{origin} write {write}"));
        for region_positions in &positions {
            let _ = write!(stdout, " {:>10}", region_positions[index]);
        }
        let _ = writeln!(stdout);
    }
    let _ = stdout.flush();
    Ok(())
}

/// The positions at which a region's leader applied each write (its sequenced copy), or none
/// while one is missing.
async fn sequenced_positions(
    connections: &RegionConnections,
    writes: &[(String, u64, u64, u64)],
) -> Option<Vec<u64>> {
    let leader = leader_status(connections).await?;
    let through = leader.applied_position;
    let from = through.saturating_sub(DEMO_LOG_READ_ENTRIES_MAX).max(1);
    let entries = connections
        .read_log(leader.node_id, from, through, DEMO_APPLY_WAIT_MAX)
        .await
        .ok()?;
    let mut sequenced = std::collections::HashMap::new();
    for entry in entries {
        if let Some(proto::log_entry::Entry::Global(global)) = entry.entry
            && let Some(record) = global.record
        {
            sequenced.insert((record.client_id, record.request_sequence), entry.position);
        }
    }
    writes
        .iter()
        .map(|(_, _, client_id, sequence)| sequenced.get(&(*client_id, *sequence)).copied())
        .collect()
}
