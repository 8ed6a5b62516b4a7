//! `dsss node`: runs one region node of a topology until SIGINT or SIGTERM, with the
//! coordinator replica beside it (same gRPC server and port) when the topology lists the node
//! as one.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use dsss_global_coordinator::driver::{
    self as coordinator, CoordinatorDriverConfig, RunningCoordinator,
};
use dsss_region_node::driver::identity::{self, DataIdentity};
use dsss_region_node::driver::{
    DriverConfig, GlobalSettings, RunningNode, TICK_INTERVAL_US_DEFAULT, start_with_global,
};
use dsss_topology::load;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tonic::service::Routes;

use crate::monitoring;
use crate::monitoring::node_pages::{CoordinatorObservations, NodePages};

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
    /// The raft tick interval in milliseconds; elections take 10 to 20 ticks, heartbeats 4.
    #[arg(long, value_name = "MS", default_value_t = TICK_INTERVAL_US_DEFAULT / 1_000)]
    tick_ms: u64,
    /// How many applied raft entries the node keeps before it compacts its raft log (members
    /// that fall further behind catch up by snapshot). The default suits production; tests
    /// and drills set it low to exercise catch-up by snapshot.
    #[arg(long, value_name = "N")]
    raft_log_entries_max: Option<u64>,
    /// Delay every message to another node, and the answer to every call on its way back,
    /// by the topology's one-way latency (with jitter) between this node's region and the
    /// other node's region, so that a cluster on one machine behaves like one spread over a
    /// WAN (`dsss up` turns it on).
    #[arg(long)]
    emulate_wan: bool,
    /// Serve and connect over plaintext gRPC, without TLS: nothing is encrypted or
    /// authenticated. Without it the node runs mutual TLS with the files the topology's
    /// [tls] table names, and refuses to start when the topology has none.
    #[arg(long)]
    insecure: bool,
    /// Say that the node is new, so that it may start on a data directory that exists but is
    /// empty (a volume prepared for it). Without it such a directory is refused: it is also
    /// what an unmounted volume looks like, and a node that starts on one forgets its votes.
    /// A directory that does not exist yet is always taken as new.
    #[arg(long)]
    initialize: bool,
    /// Run as if this machine's clock were off by this many milliseconds (negative: behind),
    /// for drills of clock fencing: the node should fence itself and say so.
    #[arg(long, value_name = "MS", hide = true, allow_negative_numbers = true)]
    clock_step_ms: Option<i64>,
    /// The node's data directory, instead of the topology's data_dir for it (a volume that
    /// each machine mounts at its own path, with one topology file for all). Its coordinator
    /// replica, if it hosts one, keeps its data under it too.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Serve plain HTTP for monitoring on this host:port, instead of the topology's
    /// metrics_listen for the node: Prometheus metrics on /metrics, 200 on /healthz while the
    /// process serves, and on /readyz 200 once the node is a member of its region's group that
    /// knows a leader (503 with the reason otherwise). Without either, no such endpoint.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_listen: Option<String>,
}

/// Runs the node until a signal stops it, logging to standard error.
pub(crate) fn run(args: NodeArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let mut topology = match load(&args.topology) {
        Ok(topology) => topology,
        Err(diagnostics) => {
            let _ = write!(stderr, "{diagnostics}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    if let Some(data_dir) = &args.data_dir {
        // One place to change: the region node and the coordinator replica both read it.
        if let Some(node) = topology
            .regions
            .iter_mut()
            .flat_map(|region| region.nodes.iter_mut())
            .find(|node| node.id == args.id)
        {
            node.data_dir = data_dir.clone();
        }
    }
    let metrics_listen = args.metrics_listen.clone().or_else(|| {
        topology
            .regions
            .iter()
            .flat_map(|region| &region.nodes)
            .find(|node| node.id == args.id)
            .and_then(|node| node.metrics_listen.clone())
    });
    let mut config = match DriverConfig::from_topology(&topology, args.id, args.join) {
        Ok(config) => config,
        Err(error) => {
            let _ = writeln!(stderr, "{}: {error}", args.topology.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let security = match crate::tls_setup::security(
        &topology,
        &args.topology,
        crate::tls_setup::Role::Node(args.id),
        args.insecure,
    ) {
        Ok(security) => security,
        Err(error) => {
            let _ = writeln!(stderr, "node {} cannot start: {error}", args.id);
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    config.security = security.clone();
    config.set_tick_interval_us(args.tick_ms.saturating_mul(1_000));
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
    if let Some(step_ms) = args.clock_step_ms {
        dsss_wire::SystemClock::step_process_clock(step_ms.saturating_mul(1_000));
        let _ = writeln!(
            stderr,
            "node {}: this process reads its clock {step_ms} ms off the machine's \
             (--clock-step-ms)",
            args.id
        );
    }
    // The data directory must be this node's, before any store in it opens.
    let identity = DataIdentity {
        cluster: topology.cluster.name.clone(),
        region: config.node.region.as_str().to_owned(),
        node_id: args.id,
    };
    if let Err(error) = identity::check_and_record(&config.data_dir, &identity, args.initialize) {
        let _ = writeln!(stderr, "node {} cannot start: {error}", args.id);
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    // A topology of one region runs no global tier: its log holds only its own records, as
    // the single-region tools and tests expect.
    let global_tier = topology.regions.len() > 1;
    config.node.global_tier = global_tier;
    let global = match GlobalSettings::from_topology(&topology, args.id, args.emulate_wan) {
        Ok(global) if global_tier => global,
        Ok(_) => GlobalSettings::none(),
        Err(error) => {
            let _ = writeln!(stderr, "{}: {error}", args.topology.display());
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let coordinator_config = if global_tier && topology.is_coordinator_replica(args.id) {
        match CoordinatorDriverConfig::from_topology(&topology, args.id, args.emulate_wan) {
            Ok(mut config) => {
                config.security = security.clone();
                Some(config)
            }
            Err(error) => {
                let _ = writeln!(stderr, "{}: {error}", args.topology.display());
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        }
    } else {
        None
    };
    // From here on, what the node says goes through the log (in its format: one JSON object
    // per line with DSSS_LOG_FORMAT=json), not beside it.
    if let Some(warning) = crate::install_logging() {
        tracing::warn!(node_id = args.id, "{warning}");
    }
    if args.insecure {
        let warning = crate::tls_setup::insecure_warning(&format!("node {}", args.id));
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
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
    let wan = if args.emulate_wan {
        "emulated WAN delays"
    } else {
        "no WAN emulation"
    };
    let transport = if security.is_tls() {
        "mutual TLS"
    } else {
        "plaintext (--insecure)"
    };
    runtime.block_on(serve(
        Hosted {
            config,
            global,
            coordinator_config,
            metrics_listen,
            wan,
            transport,
        },
        stdout,
        stderr,
    ))
}

/// What one `dsss node` process runs.
struct Hosted {
    config: DriverConfig,
    global: GlobalSettings,
    coordinator_config: Option<CoordinatorDriverConfig>,
    /// Where to serve the monitoring endpoint, if anywhere.
    metrics_listen: Option<String>,
    wan: &'static str,
    transport: &'static str,
}

async fn serve(hosted: Hosted, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let Hosted {
        config,
        global,
        coordinator_config,
        metrics_listen,
        wan,
        transport,
    } = hosted;
    let node_id = config.node.group.node_id;
    let region = config.node.region.as_str().to_owned();
    let data_dir = config.data_dir.clone();
    let advertised = config.advertised_address.clone();
    let peers: Vec<String> = config
        .peers
        .iter()
        .map(|peer| format!("{} at {}", peer.node_id, peer.address))
        .collect();
    let listener = match TcpListener::bind(&config.listen_address).await {
        Ok(listener) => listener,
        Err(error) => {
            let _ = writeln!(
                stderr,
                "node {node_id} could not start: cannot listen on {}: {error}",
                config.listen_address
            );
            return ExitCode::from(EXIT_NODE_FAILED);
        }
    };
    // The coordinator replica starts first: its services join the region node's server.
    let mut coordinator = match coordinator_config {
        Some(coordinator_config) => match coordinator::start(coordinator_config).await {
            Ok(running) => Some(running),
            Err(error) => {
                let _ = writeln!(
                    stderr,
                    "node {node_id} could not start its coordinator replica: {error}"
                );
                return ExitCode::from(EXIT_NODE_FAILED);
            }
        },
        None => None,
    };
    // Bound before the node starts, so that a taken port stops the node before it joins.
    let metrics_listener = match &metrics_listen {
        Some(address) => match TcpListener::bind(address).await {
            Ok(listener) => Some(listener),
            Err(error) => {
                let _ = writeln!(
                    stderr,
                    "node {node_id} could not start: cannot serve metrics on {address}: {error}"
                );
                return ExitCode::from(EXIT_NODE_FAILED);
            }
        },
        None => None,
    };
    let access = std::sync::Arc::new(config.access.clone());
    let routes = coordinator
        .as_ref()
        .map_or_else(Routes::default, |coordinator| coordinator.routes(&access));
    let (routes, health) = monitoring::health::with_health_service(routes, &access);
    let mut node = match start_with_global(config, listener, global, routes).await {
        Ok(node) => node,
        Err(error) => {
            let _ = writeln!(stderr, "node {node_id} could not start: {error}");
            return ExitCode::from(EXIT_NODE_FAILED);
        }
    };
    let pages = NodePages {
        node: node.observations(),
        coordinator: coordinator
            .as_ref()
            .map(|coordinator| CoordinatorObservations {
                link: coordinator.link().clone(),
                sync_latency: std::sync::Arc::clone(coordinator.sync_latency()),
            }),
        region: region.clone(),
        node_id,
    };
    // Both end with the runtime when the process stops.
    let _health = tokio::spawn(monitoring::health::keep_reporting(pages.clone(), health));
    let metrics_address = metrics_listener.map(|listener| {
        let address = listener.local_addr().ok();
        tokio::spawn(monitoring::endpoint::serve(
            listener,
            std::sync::Arc::new(pages),
        ));
        address
    });
    let metrics = match metrics_address {
        Some(Some(address)) => format!("; metrics on http://{address}/metrics"),
        _ => String::new(),
    };
    let _ = writeln!(
        stdout,
        "node {node_id} of region {region} listening on {}{} (gRPC, {transport}); data in {}; peers: {}; {}; {wan}{metrics}",
        node.local_address(),
        if advertised == node.local_address().to_string() {
            String::new()
        } else {
            format!(", reached at {advertised}")
        },
        data_dir.display(),
        if peers.is_empty() {
            "none".to_owned()
        } else {
            peers.join(", ")
        },
        if coordinator.is_some() {
            "coordinator replica"
        } else {
            "no coordinator replica"
        }
    );
    let _ = stdout.flush();
    let reason = wait_for_stop(&mut node, coordinator.as_mut()).await;
    let _ = writeln!(stderr, "node {node_id}: {reason}; stopping");
    let mut exit = ExitCode::SUCCESS;
    if let Err(error) = node.shutdown().await {
        let _ = writeln!(stderr, "node {node_id} stopped on an error: {error}");
        exit = ExitCode::from(EXIT_NODE_FAILED);
    }
    if let Some(coordinator) = coordinator
        && let Err(error) = coordinator.shutdown().await
    {
        let _ = writeln!(
            stderr,
            "node {node_id}: the coordinator replica stopped on an error: {error}"
        );
        exit = ExitCode::from(EXIT_NODE_FAILED);
    }
    exit
}

/// Waits for SIGINT, SIGTERM or the node (or its coordinator replica) stopping on its own,
/// and says which.
async fn wait_for_stop(
    node: &mut RunningNode,
    coordinator: Option<&mut RunningCoordinator>,
) -> &'static str {
    let coordinator_stopped = async {
        match coordinator {
            Some(coordinator) => coordinator.stopped().await,
            None => std::future::pending().await,
        }
    };
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        // Without signal handlers the process still dies on the default action of a signal,
        // which loses nothing acknowledged: every acknowledgement follows a sync.
        tokio::select! {
            _ = node.stopped() => return "the node stopped on its own",
            _ = coordinator_stopped => return "the coordinator replica stopped on its own",
        }
    };
    tokio::select! {
        _ = interrupt.recv() => "SIGINT received",
        _ = terminate.recv() => "SIGTERM received",
        _ = node.stopped() => "the node stopped on its own",
        _ = coordinator_stopped => "the coordinator replica stopped on its own",
    }
}
