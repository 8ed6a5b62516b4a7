//! `dsss up`: a whole cluster on this machine from a topology file (the embedded local
//! topology by default), every node a `dsss node --emulate-wan` child process, followed by a
//! small demo of the SDK: one global bank used from every region, and a regional leaderboard.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;
use dsss::region_client::RegionConnections;
use dsss_examples::{Bank, BankError, Leaderboard};
use dsss_topology::{LOCAL_TOPOLOGY_TOML, Topology, load};
use dsss_wire::proto;
use dsss_wire::tls::Security;
use tokio::signal::unix::{SignalKind, signal};

use crate::{up_control, up_live};

/// Exit status when the cluster could not start.
/// How often a cluster without the demo looks for restart requests. `dsss sim compare` and
/// the idle benchmark restart the nodes they killed through them, and a late restart would
/// count as the node's downtime; a check is one `stat` per node.
const RESTART_POLL_INTERVAL: Duration = Duration::from_millis(50);

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

/// The demo's global object.
const DEMO_BANK: &str = "demo/bank";

/// The demo's regional object (one per region).
const DEMO_LEADERBOARD: &str = "demo/leaderboard";

/// What each region's demo account starts with.
const DEMO_OPENING_BALANCE: u64 = 100;

/// What the first region pays the next; the second pays twice as much, and so on, so the
/// balances show which transfers every copy applied.
const DEMO_TRANSFER_AMOUNT: u64 = 10;

/// How long a stopping child may take after SIGTERM before it is killed.
const CHILD_STOP_WAIT_MAX: Duration = Duration::from_secs(10);

/// The arguments of `dsss up`.
#[derive(Debug, Args)]
pub(crate) struct UpArgs {
    /// The topology to run; without it, the embedded local topology (three regions of three
    /// nodes on 127.0.0.1, written to dsss-up/local.toml).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Start the cluster and wait until it is ready, without the demo's writes: its objects
    /// get no checkpoint (they hold a few records, far fewer than a checkpoint's interval), so
    /// they would keep the region logs from ever being truncated (`dsss bench soak` needs a
    /// cluster without them).
    #[arg(long)]
    no_demo: bool,
    /// Run every node with `dsss node --insecure`: plaintext gRPC, no certificates. Without
    /// it the cluster runs mutual TLS with the files the topology's [tls] table names,
    /// generating a development CA and certificates there first when any is missing.
    #[arg(long)]
    insecure: bool,
    /// Start from nothing: remove every node's data directory and the old logs first (the
    /// certificates stay). Refused while a cluster of `dsss up` runs from this directory.
    #[arg(long)]
    fresh: bool,
}

/// How to start a node, again after `dsss restart-node`.
struct Launch {
    binary: PathBuf,
    topology_path: PathBuf,
    directory: PathBuf,
    insecure: bool,
}

impl Launch {
    /// Starts node `node_id`, its output appended to its log, and writes its pid file.
    fn start(&self, node_id: u64) -> Result<Child, String> {
        let log_path = self
            .directory
            .join("logs")
            .join(format!("node-{node_id}.log"));
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let log_error = log
            .try_clone()
            .map_err(|error| format!("cannot open {}: {error}", log_path.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .args(["node", "--emulate-wan", "--topology"])
            .arg(&self.topology_path)
            .args(["--id", &node_id.to_string()]);
        if self.insecure {
            command.arg("--insecure");
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_error)
            .spawn()
            .map_err(|error| format!("cannot start node {node_id}: {error}"))?;
        let pid_file = up_control::node_pid_file(node_id);
        fs::write(&pid_file, child.id().to_string())
            .map_err(|error| format!("cannot write {}: {error}", pid_file.display()))?;
        Ok(child)
    }
}

/// The cluster's child processes; every child still running is killed when this drops, so
/// that no node outlives `dsss up`. A node killed from outside stays in the list, exited, until
/// `dsss restart-node` asks for it again.
struct Children {
    children: Vec<(u64, Child)>,
    launch: Option<Launch>,
}

impl Children {
    /// Which nodes run now, in start order.
    fn running(&mut self) -> Vec<(u64, bool)> {
        self.children
            .iter_mut()
            .map(|(node_id, child)| (*node_id, matches!(child.try_wait(), Ok(None))))
            .collect()
    }

    /// Starts again every node that `dsss restart-node` asked for (stopping it with SIGTERM
    /// first if it still runs), and says so.
    fn serve_restart_requests(&mut self, stdout: &mut dyn Write) {
        let Some(launch) = &self.launch else {
            return;
        };
        for (node_id, child) in &mut self.children {
            let request = up_control::restart_request_file(*node_id);
            if !request.exists() {
                continue;
            }
            if matches!(child.try_wait(), Ok(None)) {
                stop_child(*node_id, child, stdout);
            }
            match launch.start(*node_id) {
                Ok(started) => {
                    *child = started;
                    let _ = writeln!(stdout, "node {node_id} started again");
                }
                Err(error) => {
                    let _ = writeln!(stdout, "node {node_id} could not start again: {error}");
                }
            }
            let _ = fs::remove_file(&request);
        }
    }

    /// Sends SIGTERM to every child and waits for each (killing the ones that do not stop).
    fn stop(&mut self, stdout: &mut dyn Write) {
        for (_, child) in &self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stderr(Stdio::null())
                .status();
        }
        for (node_id, child) in &mut self.children {
            stop_child(*node_id, child, stdout);
            let _ = fs::remove_file(up_control::node_pid_file(*node_id));
        }
        self.children.clear();
    }
}

/// Waits for `child` to stop after SIGTERM (sent here again; a second one changes nothing),
/// killing it after [`CHILD_STOP_WAIT_MAX`].
fn stop_child(node_id: u64, child: &mut Child, stdout: &mut dyn Write) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + CHILD_STOP_WAIT_MAX;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let _ = writeln!(stdout, "node {node_id} stopped ({status})");
                return;
            }
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = writeln!(stdout, "node {node_id} killed: it did not stop in time");
                return;
            }
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for (node_id, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
            let _ = fs::remove_file(up_control::node_pid_file(*node_id));
        }
    }
}

/// Runs the cluster until SIGINT or SIGTERM.
pub(crate) fn run(args: UpArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let directory = Path::new(UP_DIRECTORY);
    if let Some(pid) = up_control::live_pid(&up_control::up_pid_file(), &["up"]) {
        let _ = writeln!(
            stderr,
            "dsss up: a cluster of `dsss up` already runs from this directory (pid {pid});              `dsss down` stops it"
        );
        return ExitCode::from(EXIT_CLUSTER_FAILED);
    }
    for needed in [
        directory.join("logs"),
        PathBuf::from(up_control::RUN_DIRECTORY),
    ] {
        if let Err(error) = fs::create_dir_all(&needed) {
            let _ = writeln!(stderr, "cannot create {}: {error}", needed.display());
            return ExitCode::from(EXIT_CLUSTER_FAILED);
        }
    }
    // Requests left by a `dsss up` that was killed must not restart nodes of this one.
    if let Ok(entries) = fs::read_dir(up_control::RUN_DIRECTORY) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    let _up_pid = match PidFile::write(up_control::up_pid_file()) {
        Ok(pid_file) => pid_file,
        Err(error) => {
            let _ = writeln!(stderr, "dsss up: {error}");
            return ExitCode::from(EXIT_CLUSTER_FAILED);
        }
    };
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
    if args.fresh {
        match remove_data(&topology, directory) {
            Ok(removed) => {
                let _ = writeln!(
                    stdout,
                    "Removed the data of {removed} nodes and the old logs (--fresh)."
                );
            }
            Err(error) => {
                let _ = writeln!(stderr, "dsss up --fresh: {error}");
                return ExitCode::from(EXIT_CLUSTER_FAILED);
            }
        }
    }
    if args.insecure {
        let _ = writeln!(
            stderr,
            "{}",
            crate::tls_setup::insecure_warning("every node")
        );
    } else {
        match &topology.tls {
            None => {
                let _ = writeln!(
                    stderr,
                    "dsss up: {} has no [tls] table: add one (ca_cert and cert_dir) to run the                      cluster with mutual TLS, or pass --insecure to run it over plaintext gRPC",
                    topology_path.display()
                );
                return ExitCode::from(EXIT_BAD_INPUT);
            }
            Some(tls) if !crate::certs_command::all_present(&topology, tls) => {
                let layout = crate::certs_command::Layout::from_settings(tls);
                match crate::certs_command::generate(&topology, &layout, false, &[]) {
                    Ok(summary) => {
                        let _ = writeln!(stdout, "Generated development TLS certificates:");
                        for line in summary.lines() {
                            let _ = writeln!(stdout, "  {line}");
                        }
                    }
                    Err(error) => {
                        let _ = writeln!(stderr, "dsss up: cannot generate certificates: {error}");
                        return ExitCode::from(EXIT_CLUSTER_FAILED);
                    }
                }
            }
            Some(_) => {}
        }
    }
    let security = match crate::tls_setup::security(
        &topology,
        &topology_path,
        crate::tls_setup::Role::Admin,
        args.insecure,
    ) {
        Ok(security) => security,
        Err(error) => {
            let _ = writeln!(stderr, "dsss up: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let runtime = match crate::command_runtime::multi_thread(stderr, EXIT_CLUSTER_FAILED) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let binary = match std::env::current_exe() {
        Ok(binary) => binary,
        Err(error) => {
            let _ = writeln!(stderr, "dsss up: cannot locate the dsss binary: {error}");
            return ExitCode::from(EXIT_CLUSTER_FAILED);
        }
    };
    let mut children = Children {
        children: Vec::new(),
        launch: Some(Launch {
            binary,
            topology_path: topology_path.clone(),
            directory: directory.to_path_buf(),
            insecure: args.insecure,
        }),
    };
    let outcome = runtime.block_on(async {
        // Signal handlers first: a Ctrl-C during the start still stops every child.
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return Err("cannot install the SIGINT and SIGTERM handlers".to_owned());
        };
        start_children(
            &topology,
            &topology_path,
            args.insecure,
            &mut children,
            stdout,
        )?;
        // The demo's instances stay while the cluster runs (see `DemoInstances`).
        let demo = tokio::select! {
            ready = run_demo(&topology, &security, !args.no_demo, stdout) => ready?,
            _ = interrupt.recv() => return Ok("SIGINT received"),
            _ = terminate.recv() => return Ok("SIGTERM received"),
        };
        let _ = writeln!(
            stdout,
            "\nThe cluster runs; node logs are in {}. Ctrl-C (or `dsss down` in another \
             terminal) stops every node.",
            directory.join("logs").display()
        );
        let _ = stdout.flush();
        let watch = async {
            match &demo {
                Some(demo) => {
                    up_live::run(
                        &topology,
                        &security,
                        &demo.banks,
                        |stdout| {
                            children.serve_restart_requests(stdout);
                            children.running()
                        },
                        stdout,
                    )
                    .await;
                }
                // Without the demo (benchmarks run the cluster so) nothing but restart
                // requests: the cluster stays idle.
                None => loop {
                    tokio::time::sleep(RESTART_POLL_INTERVAL).await;
                    children.serve_restart_requests(stdout);
                },
            }
        };
        Ok(tokio::select! {
            _ = watch => "the live view ended",
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
    insecure: bool,
    children: &mut Children,
    stdout: &mut dyn Write,
) -> Result<(), String> {
    let _ = writeln!(
        stdout,
        "Starting {} nodes of cluster {:?} from {} (WAN delays emulated, {}):",
        topology.node_count(),
        topology.cluster.name,
        topology_path.display(),
        if insecure {
            "plaintext gRPC (--insecure)"
        } else {
            "mutual TLS"
        }
    );
    let _ = writeln!(
        stdout,
        "  {:>6}  {:<16}  {:<22}  {:<12}  {:<22}  data",
        "node", "region", "address", "coordinator", "metrics"
    );
    for (region, node) in topology.nodes() {
        // A fresh log per run of `dsss up`; a restarted node appends to it.
        let log_path = Path::new(UP_DIRECTORY)
            .join("logs")
            .join(format!("node-{}.log", node.id));
        File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let child = children
            .launch
            .as_ref()
            .ok_or("no way to start nodes")?
            .start(node.id)?;
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
            "  {:>6}  {:<16}  {:<22}  {:<12}  {:<22}  {}",
            node.id,
            region.id,
            node.address,
            replica,
            node.metrics_listen.as_deref().unwrap_or("-"),
            node.data_dir.display()
        );
    }
    let _ = writeln!(stdout, "  (* the preferred coordinator leader)");
    let _ = stdout.flush();
    Ok(())
}

/// Removes every node's data directory (and its coordinator replica's, which lives inside it)
/// and the old logs, for `--fresh`; returns how many data directories there were.
fn remove_data(topology: &Topology, directory: &Path) -> Result<usize, String> {
    let mut removed = 0;
    for (_, node) in topology.nodes() {
        match fs::remove_dir_all(&node.data_dir) {
            Ok(()) => removed += 1,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(format!(
                    "cannot remove {}: {error}",
                    node.data_dir.display()
                ));
            }
        }
    }
    let logs = directory.join("logs");
    if let Ok(entries) = fs::read_dir(&logs) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(removed)
}

/// A pid file that names this process while it lives, removed when dropped.
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: PathBuf) -> Result<PidFile, String> {
        fs::write(&path, std::process::id().to_string())
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Connections to every region, in topology order.
fn region_connections(
    topology: &Topology,
    security: &Security,
) -> Result<Vec<(String, RegionConnections)>, String> {
    topology
        .regions
        .iter()
        .map(|region| {
            let members: Vec<(u64, String)> = region
                .nodes
                .iter()
                .map(|node| (node.id, node.address.clone()))
                .collect();
            RegionConnections::with_security(&members, security)
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

/// The demo's application instances, kept while the cluster runs: once the demo's writes stop
/// their copies checkpoint (`idle_checkpoint_after_us`), so the demo's records do not hold the
/// regions' logs below them.
struct DemoInstances {
    _clients: Vec<dsss::Client>,
    /// Each region's bank, by region: the live view keeps calling them.
    banks: Vec<(String, std::sync::Arc<up_live::BankHandle>)>,
    _boards: Vec<<Leaderboard as dsss::SharedObject>::Handle>,
}

async fn run_demo(
    topology: &Topology,
    security: &Security,
    with_demo: bool,
    stdout: &mut dyn Write,
) -> Result<Option<DemoInstances>, String> {
    let regions = region_connections(topology, security)?;
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
    if !with_demo {
        return Ok(None);
    }
    bank_demo(topology, !security.is_tls(), stdout)
        .await
        .map(Some)
}

/// The demo: an application instance in every region opens the same global `Bank` through the
/// SDK, moves money, and shows that every region's copy ends the same, plus a regional
/// leaderboard that stays in its region.
async fn bank_demo(
    topology: &Topology,
    insecure: bool,
    stdout: &mut dyn Write,
) -> Result<DemoInstances, String> {
    let mut banks = Vec::new();
    for region in &topology.regions {
        let config = if insecure {
            // Plaintext, as the nodes run: the [tls] files need not exist.
            let mut plain = topology.clone();
            plain.tls = None;
            dsss::Config::from_parsed_topology(&plain, &region.id)?
        } else {
            dsss::Config::from_parsed_topology(topology, &region.id)?
        };
        let client = dsss::Client::connect(config)
            .await
            .map_err(|error| format!("region {}: {error}", region.id))?;
        let opened = Instant::now();
        let bank = client
            .open::<Bank>(DEMO_BANK)
            .await
            .map_err(|error| format!("opening {DEMO_BANK} in {}: {error}", region.id))?;
        let _ = writeln!(
            stdout,
            "  {:<16} opened {DEMO_BANK} in {:>6.1} ms (local copy at position {})",
            region.id,
            opened.elapsed().as_secs_f64() * 1_000.0,
            bank.position()
        );
        banks.push((region.id.clone(), client, bank));
    }
    let _ = writeln!(
        stdout,
        "\nDemo: every region opens an account, then pays the next region's account:"
    );
    for (region, _, bank) in &banks {
        match bank
            .open_account(region.clone(), DEMO_OPENING_BALANCE)
            .await
        {
            Ok(Ok(())) | Ok(Err(BankError::AccountExists(_))) => {}
            Ok(Err(refused)) => return Err(format!("opening account {region}: {refused}")),
            Err(error) => return Err(format!("opening account {region}: {error}")),
        }
    }
    for (index, (region, _, bank)) in banks.iter().enumerate() {
        let payee = banks[(index + 1) % banks.len()].0.clone();
        let amount = DEMO_TRANSFER_AMOUNT * (index as u64 + 1);
        let started = Instant::now();
        let outcome = bank
            .transfer(region.clone(), payee.clone(), amount)
            .await
            .map_err(|error| format!("a transfer from {region} failed: {error}"))?;
        let _ = writeln!(
            stdout,
            "  {region:<16} transfer {amount:>3} to {payee:<16} {:<10} {:>6.1} ms (global write: ordered by the coordinator, applied in every region)",
            match outcome {
                Ok(()) => "done".to_owned(),
                Err(refused) => format!("refused: {refused}"),
            },
            started.elapsed().as_secs_f64() * 1_000.0
        );
        let _ = stdout.flush();
    }
    let _ = writeln!(
        stdout,
        "\nEvery region's copy after sync() (a linearizable barrier):"
    );
    let mut boards = Vec::new();
    for (region, client, bank) in &banks {
        bank.sync()
            .await
            .map_err(|error| format!("sync in {region}: {error}"))?;
        let (position, hash) = bank.state_hash();
        let accounts = bank.read(|bank| {
            bank.accounts()
                .iter()
                .map(|(name, balance)| format!("{name}={balance}"))
                .collect::<Vec<_>>()
                .join(" ")
        });
        let total = bank.read(|bank| bank.total());
        let _ = writeln!(
            stdout,
            "  {region:<16} position {position:>6}  state hash {}  total {total}  {accounts}",
            hash[..6]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        );
        let board = client
            .open_regional::<Leaderboard>(DEMO_LEADERBOARD)
            .await
            .map_err(|error| format!("opening {DEMO_LEADERBOARD} in {region}: {error}"))?;
        let started = Instant::now();
        board
            .record(
                format!("player-of-{region}"),
                u64::from(region.len() as u32) * 10,
            )
            .await
            .map_err(|error| format!("a leaderboard write in {region} failed: {error}"))?;
        let players = board.read(|board| board.top(3).len());
        let _ = writeln!(
            stdout,
            "  {:<16} regional {DEMO_LEADERBOARD}: score recorded in {:>5.1} ms (one round trip in the region), {players} player(s) ranked here",
            "",
            started.elapsed().as_secs_f64() * 1_000.0
        );
        boards.push(board);
    }
    let _ = stdout.flush();
    let (clients, banks) = banks
        .into_iter()
        .map(|(region, client, bank)| (client, (region, std::sync::Arc::new(bank))))
        .unzip();
    Ok(DemoInstances {
        _clients: clients,
        banks,
        _boards: boards,
    })
}
