//! `dsss node` processes of a test cluster on loopback, and the bounded waits of the tests
//! that drive them.
//!
//! [`NodeProcesses`] owns a temporary directory with the cluster's topology file, the nodes'
//! data directories (relative paths in the topology resolve against it) and one log file per
//! start of a node. Every child still running is killed when the value drops, so that no
//! process outlives its test, and a failing test prints the tail of every node's log.
//!
//! A topology with a `[tls]` table runs mutual TLS: its relative paths are made absolute in
//! the temporary directory, `dsss certs generate` writes the certificates there, and
//! [`NodeProcesses::client_security`] and [`NodeProcesses::topology_model`] give test clients
//! what they need to connect. A topology without one runs its nodes with `--insecure`.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dsss_wire::tls::{Security, TlsFiles};
use tokio::time::{Instant, sleep};

use crate::dsss_binary;

/// How often a [`Deadline`] polls its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// The `[tls]` table of a test topology: certificates that [`NodeProcesses::new`] generates in
/// its temporary directory.
pub const TLS_TABLE: &str = "[tls]\nca_cert = \"certs/ca.crt\"\ncert_dir = \"certs\"\n";

/// How many lines of each node log a failing test prints.
pub const LOG_TAIL_LINES_MAX: usize = 40;

/// Set (to anything), a test cluster whose test fails keeps its directory, with the whole log of
/// every start of every node, and prints where it is.
pub const KEEP_FAILED_DIRECTORY_VARIABLE: &str = "DSSS_KEEP_FAILED_DIRECTORY";

/// A topology of one region, "region-a", whose nodes `node_ids` listen on free loopback ports
/// (data in `data/node-N`), with the coordinator on the first node, cluster `name`, and
/// `tables` (a `[tls]` table, grants, or nothing) after the `[cluster]` table.
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn one_region_topology(name: &str, node_ids: &[u64], tables: &str) -> String {
    let nodes: Vec<String> = node_ids
        .iter()
        .zip(free_ports(node_ids.len()))
        .map(|(node_id, port)| {
            format!(
                "  {{ id = {node_id}, address = \"127.0.0.1:{port}\", data_dir = \"data/node-{node_id}\" }},"
            )
        })
        .collect();
    let first = node_ids.first().copied().unwrap_or(1);
    format!(
        "[cluster]\nname = \"{name}\"\nepoch_ms = 10\nsuspicion_timeout_ms = 2000\n\
         max_clock_skew_ms = 250\nintra_region_delay_ms = 0.2\n\n{tables}\n\
         [coordinator]\nreplicas = [{first}]\npreferred_leader = {first}\n\n\
         [[regions]]\nid = \"region-a\"\nnodes = [\n{}\n]\n",
        nodes.join("\n")
    )
}

/// `count` distinct loopback ports that were free a moment ago, none handed out before by this
/// process. Every listener is held until all are picked. They are released before the nodes
/// bind them, so they are taken below the kernel's ephemeral range (where outbound connections
/// get their local ports; 32768 to 60999 by default, read from
/// `/proc/sys/net/ipv4/ip_local_port_range`): a port the kernel offered for binding came from
/// that range, and once a node's client connection took a metrics port handed out that way
/// before the node bound it ("Address already in use"). Each process starts at its own place
/// in the range, so that test processes side by side rarely try the same ports.
///
/// # Panics
///
/// When `count` free ports cannot be found below the ephemeral range.
pub fn free_ports(count: usize) -> Vec<u16> {
    static NEXT: std::sync::Mutex<Option<u16>> = std::sync::Mutex::new(None);
    let (low, high) = (PORTS_LOW, ephemeral_ports_start());
    if high < low.saturating_add(PORTS_SPAN_MIN) {
        // No room below the ephemeral range on this machine: take the kernel's offers.
        let listeners: Vec<TcpListener> = (0..count)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
            .collect();
        return listeners
            .iter()
            .map(|listener| listener.local_addr().expect("bound address").port())
            .collect();
    }
    let span = high - low;
    let mut next = NEXT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut port = next.unwrap_or_else(|| {
        // A different start per process; u32 arithmetic, the span is below 2^16.
        low + u16::try_from(std::process::id().wrapping_mul(7_919) % u32::from(span))
            .expect("below the span")
    });
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..span {
        if listeners.len() == count {
            break;
        }
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            listeners.push(listener);
        }
        port = if port + 1 >= high { low } else { port + 1 };
    }
    *next = Some(port);
    assert_eq!(
        listeners.len(),
        count,
        "only {} free loopback ports between {low} and {high}",
        listeners.len()
    );
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound address").port())
        .collect()
}

/// The lowest port [`free_ports`] hands out.
const PORTS_LOW: u16 = 10_000;

/// The fewest ports below the ephemeral range for [`free_ports`] to pick from there.
const PORTS_SPAN_MIN: u16 = 1_000;

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_ports_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// `topology/examples/local.toml` (three regions of three nodes, one coordinator replica per
/// region, its latency matrix) with every node on free loopback ports (its gRPC address and
/// its metrics address), as text and parsed.
///
/// # Panics
///
/// When the embedded topology no longer names each address once.
pub fn local_topology_on_free_ports() -> (String, dsss_topology::Topology) {
    let local = dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .unwrap_or_else(|diagnostics| panic!("the local topology is valid: {diagnostics}"));
    let mut text = dsss_topology::LOCAL_TOPOLOGY_TOML.to_owned();
    let nodes: Vec<_> = local.nodes().collect();
    // Every address a node binds moves: the gRPC one and the monitoring one, so that tests
    // running at once (or beside `dsss up`) never share a port.
    let addresses: Vec<&String> = nodes
        .iter()
        .flat_map(|(_, node)| std::iter::once(&node.address).chain(&node.metrics_listen))
        .collect();
    for (address, port) in addresses.iter().zip(free_ports(addresses.len())) {
        let quoted = format!("\"{address}\"");
        assert_eq!(
            text.matches(&quoted).count(),
            1,
            "local.toml names address {quoted} once"
        );
        text = text.replace(&quoted, &format!("\"127.0.0.1:{port}\""));
    }
    let topology = dsss_topology::parse("topology.toml", &text)
        .unwrap_or_else(|diagnostics| panic!("the test topology is valid: {diagnostics}"));
    (text, topology)
}

/// How a test client of `topology` connects: mutual TLS with its client certificate when it
/// has `[tls]` (its paths absolute, as [`NodeProcesses::topology_model`] has them), plaintext
/// otherwise.
///
/// # Panics
///
/// When the client certificate cannot be loaded.
pub fn client_security_of(topology: &dsss_topology::Topology) -> Security {
    match &topology.tls {
        Some(tls) => Security::tls(TlsFiles {
            ca_cert: tls.ca_cert.clone(),
            cert: tls.client_cert.clone(),
            key: tls.client_key.clone(),
        })
        .unwrap_or_else(|error| panic!("the client certificate loads: {error}")),
        None => Security::Plaintext,
    }
}

/// The `dsss node` processes of one test cluster, killed when the value drops.
#[derive(Debug)]
pub struct NodeProcesses {
    directory: tempfile::TempDir,
    topology: PathBuf,
    model: dsss_topology::Topology,
    children: HashMap<u64, Child>,
    starts: BTreeMap<u64, u32>,
}

impl NodeProcesses {
    /// Writes `topology_text` to `topology.toml` in a new temporary directory; with a `[tls]`
    /// table, its paths made absolute there and the certificates generated.
    ///
    /// # Panics
    ///
    /// When the directory or the file cannot be created, the topology is invalid, or the
    /// certificates cannot be generated.
    pub fn new(topology_text: &str) -> Self {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        let topology = directory.path().join("topology.toml");
        let parsed = dsss_topology::parse("topology.toml", topology_text)
            .unwrap_or_else(|diagnostics| panic!("the test topology is valid: {diagnostics}"));
        let mut text = topology_text.to_owned();
        if let Some(tls) = &parsed.tls {
            for path in [&tls.ca_cert, &tls.cert_dir] {
                if path.is_relative() {
                    let quoted = format!("\"{}\"", path.display());
                    let absolute = directory.path().join(path);
                    text =
                        text.replacen(&quoted, &format!("{:?}", absolute.display().to_string()), 1);
                }
            }
        }
        fs::write(&topology, &text).expect("write the topology");
        let model = dsss_topology::parse("topology.toml", &text)
            .unwrap_or_else(|diagnostics| panic!("the written topology is valid: {diagnostics}"));
        if let Some(tls) = &model.tls {
            assert!(
                tls.ca_cert.is_absolute() && tls.cert_dir.is_absolute(),
                "the [tls] paths were made absolute: {tls:?}"
            );
            let output = Command::new(dsss_binary())
                .args(["certs", "generate", "--topology"])
                .arg(&topology)
                .current_dir(directory.path())
                .output()
                .expect("run dsss certs generate");
            assert!(
                output.status.success(),
                "dsss certs generate failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        NodeProcesses {
            directory,
            topology,
            model,
            children: HashMap::new(),
            starts: BTreeMap::new(),
        }
    }

    /// The temporary directory: the nodes' working directory.
    pub fn directory(&self) -> &Path {
        self.directory.path()
    }

    /// The topology file.
    pub fn topology(&self) -> &Path {
        &self.topology
    }

    /// Every node of the topology as (id, address), for a client's connections.
    pub fn members(&self) -> Vec<(u64, String)> {
        self.model
            .nodes()
            .map(|(_, node)| (node.id, node.address.clone()))
            .collect()
    }

    /// The topology as written (its `[tls]` paths absolute), for clients in the test.
    pub fn topology_model(&self) -> &dsss_topology::Topology {
        &self.model
    }

    /// How a test client connects: mutual TLS with the generated client certificate when the
    /// topology has `[tls]`, plaintext otherwise.
    ///
    /// # Panics
    ///
    /// When the generated files cannot be loaded.
    pub fn client_security(&self) -> Security {
        client_security_of(&self.model)
    }

    /// How an operator's tool connects: mutual TLS with the generated admin certificate
    /// when the topology has `[tls]`, plaintext otherwise.
    ///
    /// # Panics
    ///
    /// When the generated files cannot be loaded.
    pub fn admin_security(&self) -> Security {
        match &self.model.tls {
            Some(tls) => Security::tls(TlsFiles {
                ca_cert: tls.ca_cert.clone(),
                cert: tls.admin_cert_path(),
                key: tls.admin_key_path(),
            })
            .unwrap_or_else(|error| panic!("the admin certificate loads: {error}")),
            None => Security::Plaintext,
        }
    }

    fn log_path(&self, node_id: u64, start: u32) -> PathBuf {
        self.directory
            .path()
            .join(format!("node-{node_id}.start-{start}.log"))
    }

    /// Starts `dsss node --topology <file> --id <node_id>` followed by `extra_arguments` (and
    /// `--insecure` when the topology has no `[tls]`), in the temporary directory, its output
    /// in a log file of that directory.
    ///
    /// # Panics
    ///
    /// When the node is already running, or the binary cannot be started.
    pub fn start(&mut self, node_id: u64, extra_arguments: &[&str]) {
        self.start_wrapped(node_id, &[], extra_arguments);
    }

    /// As [`NodeProcesses::start`], with `dsss node` run by the command `wrapper` names
    /// (`["ip", "netns", "exec", "host-1"]` runs it in a network namespace); the wrapper
    /// must exec it, so that the child is the node.
    ///
    /// # Panics
    ///
    /// As [`NodeProcesses::start`].
    pub fn start_wrapped(&mut self, node_id: u64, wrapper: &[&str], extra_arguments: &[&str]) {
        assert!(
            !self.children.contains_key(&node_id),
            "node {node_id} is already running"
        );
        let start = self.starts.entry(node_id).or_insert(0);
        *start += 1;
        let start = *start;
        let log = File::create(self.log_path(node_id, start)).expect("create a node log");
        let mut command = match wrapper.split_first() {
            Some((program, arguments)) => {
                let mut command = Command::new(program);
                command.args(arguments).arg(dsss_binary());
                command
            }
            None => Command::new(dsss_binary()),
        };
        command
            .args(["node", "--topology"])
            .arg(&self.topology)
            .args(["--id", &node_id.to_string()])
            .args(extra_arguments);
        if self.model.tls.is_none() {
            command.arg("--insecure");
        }
        let child = command
            .current_dir(self.directory.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .expect("start dsss node");
        self.children.insert(node_id, child);
    }

    /// Kills `node_id` with SIGKILL (what `Child::kill` sends on Unix) and reaps it. Does
    /// nothing when the node is not running.
    pub fn kill(&mut self, node_id: u64) {
        if let Some(mut child) = self.children.remove(&node_id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The running child of `node_id`, for signals other than SIGKILL.
    pub fn child_mut(&mut self, node_id: u64) -> Option<&mut Child> {
        self.children.get_mut(&node_id)
    }

    /// Takes the running child of `node_id` out of the set: the caller waits for it.
    pub fn take_child(&mut self, node_id: u64) -> Option<Child> {
        self.children.remove(&node_id)
    }

    /// Whether `node_id` was started and has not been killed or taken since.
    pub fn is_running(&self, node_id: u64) -> bool {
        self.children.contains_key(&node_id)
    }

    /// Freezes `node_id` with SIGSTOP: the process keeps its sockets, its memory and its data
    /// but answers nothing, like a machine that hangs, until [`NodeProcesses::resume`]. Returns
    /// whether the signal was delivered (false when the node is not running).
    ///
    /// SIGKILL still ends a frozen process, so dropping the set cleans up after a failure
    /// without resuming first.
    pub fn pause(&mut self, node_id: u64) -> bool {
        self.signal(node_id, "-STOP")
    }

    /// Lets `node_id` run again after [`NodeProcesses::pause`] (SIGCONT). Returns whether the
    /// signal was delivered.
    pub fn resume(&mut self, node_id: u64) -> bool {
        self.signal(node_id, "-CONT")
    }

    /// Sends `signal` (as `kill` spells it, e.g. `-STOP`) to the running child of `node_id`.
    /// The `kill` program sends it, so that the tests need no bindings to the C library.
    fn signal(&mut self, node_id: u64, signal: &str) -> bool {
        let Some(child) = self.children.get_mut(&node_id) else {
            return false;
        };
        // A child that already exited must not be signalled: its process id may be reused.
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Prints the last [`LOG_TAIL_LINES_MAX`] lines of every log of every node to standard
    /// error.
    pub fn print_logs(&self) {
        for (&node_id, &starts) in &self.starts {
            for start in 1..=starts {
                let text = fs::read_to_string(self.log_path(node_id, start)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES_MAX)..];
                eprintln!(
                    "--- node {node_id}, start {start} (last {} lines)\n{}",
                    tail.len(),
                    tail.join("\n")
                );
            }
        }
    }
}

impl Drop for NodeProcesses {
    fn drop(&mut self) {
        let node_ids: Vec<u64> = self.children.keys().copied().collect();
        for node_id in node_ids {
            self.kill(node_id);
        }
        if std::thread::panicking() {
            self.print_logs();
            // The tails above are often not enough to see why a wait ran out: with the variable
            // set, the whole directory (every start's log, the nodes' data) stays for a look.
            if std::env::var_os(KEEP_FAILED_DIRECTORY_VARIABLE).is_some() {
                self.directory.disable_cleanup(true);
                eprintln!(
                    "{KEEP_FAILED_DIRECTORY_VARIABLE} is set: the cluster's directory stays at {}",
                    self.directory.path().display()
                );
            }
        }
    }
}

/// A bounded wait: [`Deadline::check`] panics, naming what was awaited, once its time is up.
#[derive(Debug)]
pub struct Deadline {
    what: &'static str,
    wait_max: Duration,
    started: Instant,
}

impl Deadline {
    /// A wait for `what` of at most `wait_max`, starting now.
    pub fn new(what: &'static str, wait_max: Duration) -> Self {
        Deadline {
            what,
            wait_max,
            started: Instant::now(),
        }
    }

    /// Whether the wait is over (for a caller that says more than [`Deadline::check`] when it
    /// gives up).
    pub fn expired(&self) -> bool {
        self.started.elapsed() >= self.wait_max
    }

    /// Panics when the wait is over, else sleeps one [`POLL_INTERVAL`].
    pub async fn check(&self) {
        assert!(
            self.started.elapsed() < self.wait_max,
            "{}: not reached within {:?}",
            self.what,
            self.wait_max
        );
        sleep(POLL_INTERVAL).await;
    }
}

/// How many calls each client has had acknowledged, as its counter holds it now.
pub fn acknowledged_counts(counters: &[Arc<AtomicUsize>]) -> Vec<usize> {
    counters
        .iter()
        .map(|counter| counter.load(Ordering::SeqCst))
        .collect()
}

/// Waits (at most `wait_max`) until every client's acknowledgement count is at least its
/// `baseline` plus `per_client`: every client made progress, not just the fastest.
pub async fn wait_for_acknowledgements(
    what: &'static str,
    counters: &[Arc<AtomicUsize>],
    baseline: &[usize],
    per_client: usize,
    wait_max: Duration,
) {
    let deadline = Deadline::new(what, wait_max);
    while !acknowledged_counts(counters)
        .iter()
        .zip(baseline)
        .all(|(count, before)| *count >= before + per_client)
    {
        deadline.check().await;
    }
}

#[cfg(test)]
mod free_port_tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_below_the_ephemeral_range_and_never_handed_out_twice() {
        let first = free_ports(40);
        let second = free_ports(40);
        let all: std::collections::BTreeSet<u16> = first.iter().chain(&second).copied().collect();
        assert_eq!(all.len(), 80, "{first:?} {second:?}");
        let ephemeral_start = ephemeral_ports_start();
        if ephemeral_start >= PORTS_LOW + PORTS_SPAN_MIN {
            assert!(
                all.iter()
                    .all(|&port| (PORTS_LOW..ephemeral_start).contains(&port)),
                "{all:?} against the ephemeral range from {ephemeral_start}"
            );
        }
        for port in all {
            TcpListener::bind(("127.0.0.1", port)).expect("released for the nodes to bind");
        }
    }
}
