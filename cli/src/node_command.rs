//! `dsss node`: runs one region node of a topology until SIGINT or SIGTERM.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use dsss_region_node::driver::{DriverConfig, RunningNode, TICK_INTERVAL_US_DEFAULT, start};
use dsss_topology::load;
use tokio::signal::unix::{SignalKind, signal};

/// Exit status when the node could not start or stopped on an error.
const EXIT_NODE_FAILED: u8 = 1;

/// Exit status for a topology file or setting that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The arguments of `dsss node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// The topology file that lists the node, its region and its peers.
    #[arg(long, value_name = "FILE")]
    topology: PathBuf,
    /// The id of the node to run, as the topology lists it.
    #[arg(long, value_name = "N")]
    id: u64,
    /// Start with no initial members and wait to be added to the region's running group
    /// (`dsss region add-node`), instead of forming the group with the region's listed nodes.
    #[arg(long)]
    join: bool,
    /// The raft tick interval in milliseconds; elections take 10 to 20 ticks, heartbeats 2.
    #[arg(long, value_name = "MS", default_value_t = TICK_INTERVAL_US_DEFAULT / 1_000)]
    tick_ms: u64,
    /// How many applied raft entries the node keeps before it compacts its raft log (members
    /// that fall further behind catch up by snapshot). The default suits production; tests
    /// and drills set it low to exercise catch-up by snapshot.
    #[arg(long, value_name = "N")]
    raft_log_entries_max: Option<u64>,
}

/// Runs the node until a signal stops it, logging to standard error.
pub(crate) fn run(args: NodeArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let topology = match load(&args.topology) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            let _ = write!(stderr, "{diagnostics}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let mut config = match DriverConfig::from_topology(&topology, args.id, args.join) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(stderr, "{}: {error}", args.topology.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    config.tick_interval_us = args.tick_ms.saturating_mul(1_000);
    if let Some(entries_max) = args.raft_log_entries_max {
        config.node.group.log_retention.entries_max = entries_max;
    }
    if let Err(error) = config.validate() {
        let _ = writeln!(
            stderr,
            "--tick-ms {} --raft-log-entries-max {}: {error}",
            args.tick_ms, config.node.group.log_retention.entries_max
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    crate::install_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("dsss-node-runtime")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(stderr, "cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_NODE_FAILED);
        }
    };
    runtime.block_on(serve(config, stdout, stderr))
}

async fn serve(config: DriverConfig, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let node_id = config.node.group.node_id;
    let region = config.node.region.as_str().to_owned();
    let data_dir = config.data_dir.clone();
    let peers: Vec<String> = config
        .peers
        .iter()
        .map(|peer| format!("{} at {}", peer.node_id, peer.address))
        .collect();
    let mut node = match start(config).await {
        Ok(node) => node,
        Err(error) => {
            let _ = writeln!(stderr, "node {node_id} could not start: {error}");
            return ExitCode::from(EXIT_NODE_FAILED);
        }
    };
    let _ = writeln!(
        stdout,
        "node {node_id} of region {region} listening on {} (gRPC); data in {}; peers: {}",
        node.local_address(),
        data_dir.display(),
        if peers.is_empty() {
            "none".to_owned()
        } else {
            peers.join(", ")
        }
    );
    let _ = stdout.flush();
    let reason = wait_for_stop(&mut node).await;
    let _ = writeln!(stderr, "node {node_id}: {reason}; stopping");
    match node.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(stderr, "node {node_id} stopped on an error: {error}");
            ExitCode::from(EXIT_NODE_FAILED)
        }
    }
}

/// Waits for SIGINT, SIGTERM or the node stopping on its own, and says which.
async fn wait_for_stop(node: &mut RunningNode) -> &'static str {
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process still dies on the default action of a signal,
        // which loses nothing acknowledged: every acknowledgement follows a sync.
        node.stopped().await;
        return "the node stopped on its own";
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT received",
        _ = terminate.recv() => "SIGTERM received",
        _ = node.stopped() => "the node stopped on its own",
    }
}
