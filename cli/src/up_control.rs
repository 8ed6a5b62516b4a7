//! How other terminals reach a cluster that `dsss up` runs: `dsss down`, `dsss kill-node N` and
//! `dsss restart-node N`, through files under `dsss-up/run/` in the working directory.
//!
//! `dsss up` writes its own pid (`up.pid`) and each node's (`node-N.pid`) there, and watches
//! for restart requests (`restart-N`). `down` sends SIGTERM to `dsss up`, which stops every node
//! cleanly; `kill-node` sends SIGKILL to one node, as a crash would (the node's data stays, and
//! everything it acknowledged was synced); `restart-node` asks `dsss up` to start the node again
//! (stopping it first with SIGTERM if it still runs), because `dsss up` owns the nodes and stops
//! them all when it stops. A pid is only signalled after its `/proc/PID/cmdline` shows it is
//! the process the file names, so a stale file never hits a process that reused the pid.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Args;

/// Where the files live, under the working directory.
pub const RUN_DIRECTORY: &str = "dsss-up/run";

/// Exit status when the cluster or node was not there or did not do as asked.
const EXIT_FAILED: u8 = 1;

/// How long `down` waits for `dsss up` to stop its nodes and exit.
const DOWN_WAIT_MAX: Duration = Duration::from_secs(60);

/// How long `restart-node` waits for `dsss up` to start the node again.
const RESTART_WAIT_MAX: Duration = Duration::from_secs(30);

/// How often the commands look again while they wait.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The arguments of `dsss kill-node` and `dsss restart-node`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// The node's id, as the topology `dsss up` runs lists it.
    #[arg(value_name = "N")]
    id: u64,
}

/// The file of `dsss up`'s pid.
pub fn up_pid_file() -> PathBuf {
    Path::new(RUN_DIRECTORY).join("up.pid")
}

/// The file of node `node_id`'s pid.
pub fn node_pid_file(node_id: u64) -> PathBuf {
    Path::new(RUN_DIRECTORY).join(format!("node-{node_id}.pid"))
}

/// The file that asks `dsss up` to restart node `node_id`.
pub fn restart_request_file(node_id: u64) -> PathBuf {
    Path::new(RUN_DIRECTORY).join(format!("restart-{node_id}"))
}

/// The pid in `file`, when the file exists, holds a number, and that process runs with every
/// one of `arguments` on its command line.
pub fn live_pid(file: &Path, arguments: &[&str]) -> Option<u32> {
    let pid: u32 = fs::read_to_string(file).ok()?.trim().parse().ok()?;
    let command_line = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let words: Vec<&[u8]> = command_line.split(|byte| *byte == 0).collect();
    let runs = arguments
        .iter()
        .all(|argument| words.contains(&argument.as_bytes()));
    runs.then_some(pid)
}

/// The command-line words that identify node `node_id` started by `dsss up`.
fn node_words(node_id: &str) -> [&str; 3] {
    ["node", "--id", node_id]
}

pub(crate) fn signal(pid: u32, name: &str) -> bool {
    Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn no_cluster(stderr: &mut dyn Write) -> ExitCode {
    let _ = writeln!(
        stderr,
        "no cluster of `dsss up` runs from this directory ({} names no live `dsss up`); start \
         one with `dsss up`",
        up_pid_file().display()
    );
    ExitCode::from(EXIT_FAILED)
}

/// `dsss down`: stops the cluster `dsss up` runs from this directory, and waits until it has.
pub(crate) fn down(stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let Some(pid) = live_pid(&up_pid_file(), &["up"]) else {
        return no_cluster(stderr);
    };
    if !signal(pid, "TERM") {
        let _ = writeln!(stderr, "cannot signal `dsss up` (pid {pid})");
        return ExitCode::from(EXIT_FAILED);
    }
    let _ = writeln!(
        stdout,
        "asked `dsss up` (pid {pid}) to stop every node; waiting"
    );
    let _ = stdout.flush();
    let started = Instant::now();
    while live_pid(&up_pid_file(), &["up"]).is_some() {
        if started.elapsed() > DOWN_WAIT_MAX {
            let _ = writeln!(
                stderr,
                "`dsss up` (pid {pid}) still runs after {DOWN_WAIT_MAX:?}; see its terminal"
            );
            return ExitCode::from(EXIT_FAILED);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
    let _ = writeln!(
        stdout,
        "stopped after {:.1} s; the data stays (dsss up runs it again, dsss up --fresh starts anew)",
        started.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}

/// `dsss kill-node N`: SIGKILL to one node of the cluster `dsss up` runs.
pub(crate) fn kill_node(
    args: &NodeArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    if live_pid(&up_pid_file(), &["up"]).is_none() {
        return no_cluster(stderr);
    }
    let id = args.id.to_string();
    let Some(pid) = live_pid(&node_pid_file(args.id), &node_words(&id)) else {
        let _ = writeln!(
            stderr,
            "node {id} does not run (already killed, or not a node of this cluster); \
             `dsss restart-node {id}` starts it again"
        );
        return ExitCode::from(EXIT_FAILED);
    };
    if !signal(pid, "KILL") {
        let _ = writeln!(stderr, "cannot signal node {id} (pid {pid})");
        return ExitCode::from(EXIT_FAILED);
    }
    let _ = writeln!(
        stdout,
        "killed node {id} (pid {pid}) with SIGKILL, as a crash would; its region goes on with \
         the others (watch `dsss status`), and `dsss restart-node {id}` brings it back"
    );
    ExitCode::SUCCESS
}

/// `dsss restart-node N`: asks `dsss up` to start node N again, and waits until it runs.
pub(crate) fn restart_node(
    args: &NodeArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    if live_pid(&up_pid_file(), &["up"]).is_none() {
        return no_cluster(stderr);
    }
    let id = args.id.to_string();
    let before = live_pid(&node_pid_file(args.id), &node_words(&id));
    if let Err(error) = fs::write(restart_request_file(args.id), b"") {
        let _ = writeln!(
            stderr,
            "cannot ask `dsss up` to restart node {id}: {}: {error}",
            restart_request_file(args.id).display()
        );
        return ExitCode::from(EXIT_FAILED);
    }
    let started = Instant::now();
    loop {
        let now = live_pid(&node_pid_file(args.id), &node_words(&id));
        if now.is_some() && now != before && !restart_request_file(args.id).exists() {
            let _ = writeln!(
                stdout,
                "node {id} runs again (pid {}); it catches up with its region from its own data",
                now.unwrap_or(0)
            );
            return ExitCode::SUCCESS;
        }
        if started.elapsed() > RESTART_WAIT_MAX {
            let _ = fs::remove_file(restart_request_file(args.id));
            let _ = writeln!(
                stderr,
                "node {id} did not start again within {RESTART_WAIT_MAX:?} (is it a node of the \
                 cluster `dsss up` runs? see dsss-up/logs/node-{id}.log)"
            );
            return ExitCode::from(EXIT_FAILED);
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_counts_only_when_its_process_runs_the_named_command() {
        let directory =
            std::env::temp_dir().join(format!("dsss-up-control-{}", std::process::id()));
        fs::create_dir_all(&directory).unwrap();
        let file = directory.join("pid");
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        fs::write(&file, child.id().to_string()).unwrap();
        // Until the child has exec'd, its command line is still this test's.
        let started = Instant::now();
        while live_pid(&file, &["sleep", "30"]).is_none()
            && started.elapsed() < Duration::from_secs(5)
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(live_pid(&file, &["sleep", "30"]), Some(child.id()));
        // The same pid running something else is not the process the file names.
        assert_eq!(live_pid(&file, &["node", "--id", "12"]), None);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(live_pid(&file, &["sleep", "30"]), None);
        fs::write(&file, "not a pid").unwrap();
        assert_eq!(live_pid(&file, &["sleep"]), None);
        assert_eq!(live_pid(&directory.join("absent"), &["sleep"]), None);
        let _ = fs::remove_dir_all(&directory);
    }
}
