//! `dsss node` processes of a test cluster on loopback, and the bounded waits of the tests
//! that drive them.
//!
//! [`NodeProcesses`] owns a temporary directory with the cluster's topology file, the nodes'
//! data directories (relative paths in the topology resolve against it) and one log file per
//! start of a node. Every child still running is killed when the value drops, so that no
//! process outlives its test, and a failing test prints the tail of every node's log.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::dsss_binary;

/// How often a [`Deadline`] polls its condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// How many lines of each node log a failing test prints.
pub const LOG_TAIL_LINES_MAX: usize = 40;

/// `count` distinct loopback ports that were free a moment ago: every listener is held until
/// all are picked, so the system cannot hand out one port twice. They are released before the
/// nodes bind them, so another process may take one first; tests on one machine take that small
/// risk, as every free-port helper does.
///
/// # Panics
///
/// When no loopback port can be bound.
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("bound address").port())
        .collect()
}

/// `topology/examples/local.toml` (three regions of three nodes, one coordinator replica per
/// region, its latency matrix) with every node on a free loopback port, as text and parsed.
///
/// # Panics
///
/// When the embedded topology no longer names each address once.
pub fn local_topology_on_free_ports() -> (String, dsss_topology::Topology) {
    let local = dsss_topology::parse("local.toml", dsss_topology::LOCAL_TOPOLOGY_TOML)
        .unwrap_or_else(|diagnostics| panic!("the local topology is valid: {diagnostics}"));
    let mut text = dsss_topology::LOCAL_TOPOLOGY_TOML.to_owned();
    let nodes: Vec<_> = local.nodes().collect();
    for ((_, node), port) in nodes.iter().zip(free_ports(nodes.len())) {
        let quoted = format!("\"{}\"", node.address);
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

/// The `dsss node` processes of one test cluster, killed when the value drops.
#[derive(Debug)]
pub struct NodeProcesses {
    directory: tempfile::TempDir,
    topology: PathBuf,
    children: HashMap<u64, Child>,
    starts: BTreeMap<u64, u32>,
}

impl NodeProcesses {
    /// Writes `topology_text` to `topology.toml` in a new temporary directory.
    ///
    /// # Panics
    ///
    /// When the directory or the file cannot be created.
    pub fn new(topology_text: &str) -> Self {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        let topology = directory.path().join("topology.toml");
        fs::write(&topology, topology_text).expect("write the topology");
        NodeProcesses {
            directory,
            topology,
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

    fn log_path(&self, node_id: u64, start: u32) -> PathBuf {
        self.directory
            .path()
            .join(format!("node-{node_id}.start-{start}.log"))
    }

    /// Starts `dsss node --topology <file> --id <node_id>` followed by `extra_arguments`, in
    /// the temporary directory, its output in a log file of that directory.
    ///
    /// # Panics
    ///
    /// When the node is already running, or the binary cannot be started.
    pub fn start(&mut self, node_id: u64, extra_arguments: &[&str]) {
        assert!(
            !self.children.contains_key(&node_id),
            "node {node_id} is already running"
        );
        let start = self.starts.entry(node_id).or_insert(0);
        *start += 1;
        let start = *start;
        let log = File::create(self.log_path(node_id, start)).expect("create a node log");
        let child = Command::new(dsss_binary())
            .args(["node", "--topology"])
            .arg(&self.topology)
            .args(["--id", &node_id.to_string()])
            .args(extra_arguments)
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
