//! `dsss`: the one command that fronts DSSS (docs/design.md section 4). Each group of subcommands
//! lives in a module of its own; this file only parses the command line and dispatches.
#![deny(missing_docs)]

mod bench_command;
mod bench_etcd;
mod certs_command;
mod command_runtime;
mod idle_bench_command;
mod monitoring;
mod node_command;
mod region_command;
mod sim_command;
mod sim_compare_command;
mod sim_plots;
mod sim_run_command;
mod soak_command;
mod status_command;
mod tls_setup;
mod topology_command;
mod up_child;
mod up_command;
mod up_control;
mod up_live;

use std::io::Write;

/// Every dsss process allocates with mimalloc rather than glibc's malloc. Measured side by
/// side on one machine (the README's `dsss bench region --against-etcd` table;
/// docs/simulator.md, "Speed"): the three nodes of `dsss bench region` spent about 10% less
/// CPU per record (glibc's free lists, `unlink_chunk` and `malloc_consolidate`, were a visible
/// share of every node thread), and `dsss sim run` ran 13 to 27% faster, its allocations
/// being a fifth of its time. mimalloc is C compiled by the `cc` crate: no build tool beyond
/// the C compiler the rocksdb crate already needs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// DSSS: one shared, persistent object for every instance of a geo-distributed application.
#[derive(Debug, Parser)]
#[command(
    name = "dsss",
    version,
    about,
    after_help = "Examples:\n  dsss up\n  dsss topology check topology/examples/local.toml\n  dsss sim probe --topology topology/examples/global.toml\n  dsss node --topology topology/examples/local.toml --id 11\n  dsss bench region --clients 1,16,64"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The groups of subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check topology files or show what one describes.
    #[command(subcommand)]
    Topology(topology_command::TopologyCommand),
    /// Run deterministic simulations on a topology.
    #[command(subcommand)]
    Sim(sim_command::SimCommand),
    /// Run one region node of a topology until SIGINT or SIGTERM.
    ///
    /// The node takes its address and data directory from the topology file (the directory is
    /// created when missing; a node run again reuses its data), forms its region's raft group
    /// with the region's other nodes (or, with --join, waits to be added to a running one), and
    /// serves the RegionClient, RegionPeer, RegionAdmin and RegionEpochs gRPC services over
    /// mutual TLS with the files of the topology's [tls] table (plaintext only with
    /// --insecure; without [tls] and without --insecure it refuses to start); on a
    /// node the topology lists as a coordinator replica, the Coordinator and CoordinatorPeer
    /// services too, on the same port. It logs to standard error (DSSS_LOG sets the levels
    /// as tracing directives, info by default: `DSSS_LOG=info,raft=warn`; raft-rs's own lines
    /// come under the target raft; DSSS_LOG_FORMAT=json writes one JSON object per line) and
    /// prints one line on standard output once it listens. SIGINT or SIGTERM stop it
    /// cleanly; everything it acknowledged is already synced to disk, so even a SIGKILL loses
    /// nothing acknowledged.
    #[command(
        after_help = "Example: a three-node region on one machine, one node per terminal, after writing \
        development certificates where the topology's [tls] table says:\n  \
        dsss certs generate --topology topology/examples/local.toml\n  \
        dsss node --topology topology/examples/local.toml --id 11\n  \
        dsss node --topology topology/examples/local.toml --id 12\n  \
        dsss node --topology topology/examples/local.toml --id 13"
    )]
    Node(node_command::NodeArgs),
    /// Run a whole cluster on this machine, WAN delays emulated, with a demo of global writes.
    ///
    /// Every node of the topology (the embedded local topology when no file is given: three
    /// regions of three nodes on 127.0.0.1) starts as a `dsss node --emulate-wan` child process
    /// on its own data directory from the file (reused when run again), its log in
    /// dsss-up/logs/. The nodes run mutual TLS with the files of the topology's [tls] table,
    /// written first (a development CA and certificates) when any is missing; --insecure runs
    /// them over plaintext gRPC instead. Once every region has a leader and the coordinator seals epochs, a demo
    /// client makes a few global writes from each region and prints the position each got in
    /// its region and the time it took. Then a live view: the demo's instances keep making a
    /// global call per region every 500 ms, and every 2 s a line per region shows calls per
    /// second, p50 and p99 latency, failed calls, how many epochs the region trails and which
    /// nodes run. From another terminal in the same directory: `dsss status`, `dsss kill-node
    /// N`, `dsss restart-node N`, `dsss down`. Ctrl-C (SIGINT), SIGTERM or `dsss down` stops
    /// every node cleanly; --fresh starts from empty data directories.
    #[command(
        after_help = "Example:\n  dsss up\n  dsss up --topology topology/examples/local.toml"
    )]
    Up(up_command::UpArgs),
    /// Stop the cluster that `dsss up` runs from this directory (every node stops cleanly; the
    /// data stays).
    Down,
    /// Kill one node of the cluster that `dsss up` runs from this directory with SIGKILL, as a
    /// crash would, to watch its region fail over (`dsss status`, the live view of `dsss up`).
    #[command(after_help = "Example:\n  dsss kill-node 12\n  dsss status\n  dsss restart-node 12")]
    KillNode(up_control::NodeArgs),
    /// Start one node of the cluster that `dsss up` runs from this directory again (stopping
    /// it first if it runs); it catches up with its region from its own data.
    RestartNode(up_control::NodeArgs),
    /// Show the whole cluster's health at a glance, and exit non-zero when something needs
    /// attention.
    ///
    /// Asks every node of the topology for its status and every coordinator replica for its
    /// own, at once, with an admin certificate (the topology's [tls] files), and prints per
    /// region the leader, term, log fill against its quota, truncation point, checkpoints and
    /// divergence alarms, and per node its role, applied position, lag behind its region,
    /// largest clock offset to a peer, sessions and log streams; then the coordinator (leader,
    /// newest sealed epoch, watermark lag, and per region membership, closed-timestamp lag and
    /// how long it has been silent); then what needs attention: unreachable nodes, a region or
    /// coordinator without a leader, a node behind or fenced for its clock, a log or
    /// checkpoint state past 80% of its bound, divergence alarms, missed epochs, a region out
    /// of the global membership. Exit status 0 when healthy, 1 when something needs attention,
    /// 2 for a topology that cannot be used.
    #[command(after_help = "Examples:
          dsss status                      (the cluster `dsss up` runs in this directory)
          dsss status --topology topology/examples/local.toml --json
          dsss status --watch")]
    Status(status_command::StatusArgs),
    /// Work on one running region: add or remove nodes, show how each node sees it, clear a
    /// divergence alarm.
    #[command(subcommand)]
    Region(region_command::RegionCommand),
    /// Make the TLS certificates of a topology's nodes and clients, and clients' bearer tokens.
    #[command(subcommand)]
    Certs(certs_command::CertsCommand),
    /// Measure DSSS on this machine.
    #[command(subcommand)]
    Bench(bench_command::BenchCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let mut stderr = std::io::stderr().lock();
    let outcome = match cli.command {
        Command::Topology(command) => topology_command::run(command, &mut stdout, &mut stderr),
        Command::Sim(command) => sim_command::run(command, &mut stdout, &mut stderr),
        Command::Region(command) => region_command::run(command, &mut stdout, &mut stderr),
        Command::Certs(command) => certs_command::run(command, &mut stdout, &mut stderr),
        Command::Bench(command) => bench_command::run(command, &mut stdout, &mut stderr),
        Command::Status(arguments) => status_command::run(arguments, &mut stdout, &mut stderr),
        Command::Down => up_control::down(&mut stdout, &mut stderr),
        Command::KillNode(arguments) => up_control::kill_node(&arguments, &mut stdout, &mut stderr),
        Command::RestartNode(arguments) => {
            up_control::restart_node(&arguments, &mut stdout, &mut stderr)
        }
        Command::Up(arguments) => {
            drop(stdout);
            drop(stderr);
            return up_command::run(arguments, &mut std::io::stdout(), &mut std::io::stderr());
        }
        Command::Node(arguments) => {
            // The node logs and prints while it runs; holding the locks would block its
            // logging thread.
            drop(stdout);
            drop(stderr);
            return node_command::run(arguments, &mut std::io::stdout(), &mut std::io::stderr());
        }
    };
    // Output may go to a closed pipe (`dsss topology show | head`); that is not an error of
    // the command, so a failed flush changes nothing.
    let _ = stdout.flush();
    outcome
}

/// Sends the log of long-running commands (`dsss node`, `dsss bench`) to standard error, at
/// level INFO, or at the level that the `DSSS_LOG` variable names (`error`, `warn`, `info`,
/// `debug`, `trace`).
pub(crate) fn install_logging() -> Option<String> {
    let (filter, warning) = log_filter(std::env::var(LOG_ENV).ok().as_deref());
    let json = std::env::var(LOG_FORMAT_ENV).is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    // A second installation (never done by the commands) would fail harmlessly.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    warning
}

/// The environment variable that sets what `dsss node` logs: tracing's `EnvFilter`
/// directives, such as `info`, `warn,dsss_region_node=debug` or `info,raft=warn`.
pub(crate) const LOG_ENV: &str = "DSSS_LOG";

/// The environment variable that makes `dsss node` log JSON lines (`DSSS_LOG_FORMAT=json`).
pub(crate) const LOG_FORMAT_ENV: &str = "DSSS_LOG_FORMAT";

/// The filter `directives` (the value of [`LOG_ENV`]) describe, `info` when unset; when they
/// do not parse, `info` and a warning that says what was wrong.
fn log_filter(directives: Option<&str>) -> (tracing_subscriber::EnvFilter, Option<String>) {
    use tracing_subscriber::EnvFilter;
    match directives.map(EnvFilter::try_new) {
        None => (EnvFilter::new("info"), None),
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (
            EnvFilter::new("info"),
            Some(format!(
                "{LOG_ENV}={:?} is not a list of log directives ({error}); logging at info. \
                 Example: {LOG_ENV}=info,dsss_region_node=debug,raft=warn",
                directives.unwrap_or_default()
            )),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn log_directives_that_do_not_parse_are_named_and_info_is_used() {
        let (filter, warning) = log_filter(Some("info,raft=warn,dsss_region_node=debug"));
        assert_eq!(warning, None);
        assert!(filter.to_string().contains("raft=warn"), "{filter}");
        let (filter, warning) = log_filter(Some("raft=loud"));
        let warning = warning.expect("a warning");
        assert!(warning.contains("DSSS_LOG=\"raft=loud\""), "{warning}");
        assert_eq!(filter.to_string(), "info");
        assert_eq!(log_filter(None).0.to_string(), "info");
    }
}
