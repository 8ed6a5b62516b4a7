//! `dsss up` as a newcomer drives it from two terminals: the cluster comes up with its demo and
//! live view; in the other terminal `dsss status` says it is healthy, `dsss kill-node` kills a
//! node (status names it and exits 1, the live view marks it down while calls keep
//! completing), `dsss restart-node` brings it back (status healthy again), and `dsss down`
//! stops the cluster cleanly. The local topology runs on free ports, so the test never takes
//! the ports of a `dsss up` someone runs beside it.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Duration;

use dsss_tests::processes::{Deadline, local_topology_on_free_ports};
use dsss_tests::{dsss_binary, run_dsss};

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(120);

/// The node the test kills.
const KILLED: &str = "12";

/// `dsss up`, stopped with SIGTERM if the test ends before it (so that it stops its nodes).
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            for _ in 0..300 {
                if !matches!(self.0.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_kill_node_restart_node_and_down_work_from_another_terminal() {
    let (text, _) = local_topology_on_free_ports();
    let directory = tempfile::tempdir().expect("a temporary directory");
    let topology = directory.path().join("cluster.toml");
    fs::write(&topology, &text).expect("write the topology");
    let topology = topology.to_str().expect("UTF-8").to_owned();
    let up_output = directory.path().join("up.out");
    let mut up = Up(Command::new(dsss_binary())
        .args(["up", "--topology", &topology])
        .current_dir(directory.path())
        .stdin(Stdio::null())
        .stdout(fs::File::create(&up_output).expect("create the output file"))
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dsss up"));
    let up_says = || fs::read_to_string(&up_output).unwrap_or_default();
    let status = || {
        let output = run_dsss(directory.path(), ["status", "--topology", &topology]);
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };

    let deadline = Deadline::new("the live view starts", WAIT_MAX);
    while !up_says().contains("calls/s") {
        if let Ok(Some(exit)) = up.0.try_wait() {
            panic!("dsss up ended ({exit}):\n{}", up_says());
        }
        deadline.check().await;
    }
    let (code, stdout) = status();
    assert_eq!(code, Some(0), "{stdout}");

    let killed = run_dsss(directory.path(), ["kill-node", KILLED]);
    assert!(
        killed.status.success(),
        "{}",
        String::from_utf8_lossy(&killed.stderr)
    );
    let deadline = Deadline::new("status names the killed node", WAIT_MAX);
    loop {
        let (code, stdout) = status();
        if code == Some(1) && stdout.contains(&format!("node {KILLED} of region local-a at")) {
            break;
        }
        deadline.check().await;
    }
    // The live view marks the node down, and its lines go on counting completed calls.
    let deadline = Deadline::new("the live view marks the node down", WAIT_MAX);
    while !up_says().contains(&format!(" {KILLED}x ")) {
        deadline.check().await;
    }
    let lines_before = up_says().lines().count();
    let deadline = Deadline::new("the live view goes on with the node down", WAIT_MAX);
    while up_says().lines().count() < lines_before + 6 {
        deadline.check().await;
    }
    let view = up_says();
    let last_a = view
        .lines()
        .rev()
        .find(|line| line.contains("local-a") && line.contains(&format!("{KILLED}x")))
        .expect("a line of local-a with the node down");
    let calls_per_second: f64 = last_a
        .split_whitespace()
        .skip_while(|word| *word != "local-a")
        .nth(1)
        .and_then(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("a calls/s figure in {last_a:?}"));
    assert!(
        calls_per_second > 0.0,
        "calls complete in local-a with a node down: {last_a}"
    );

    let restarted = run_dsss(directory.path(), ["restart-node", KILLED]);
    assert!(
        restarted.status.success(),
        "{}",
        String::from_utf8_lossy(&restarted.stderr)
    );
    let deadline = Deadline::new("status is healthy after the restart", WAIT_MAX);
    while status().0 != Some(0) {
        deadline.check().await;
    }

    let down = run_dsss(directory.path(), ["down"]);
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    let exit = up.0.wait().expect("dsss up ends");
    assert!(
        exit.success(),
        "dsss up after dsss down: {exit}\n{}",
        up_says()
    );
    let said = up_says();
    assert!(
        said.contains("SIGTERM received; stopping every node"),
        "{said}"
    );
    assert_eq!(
        said.matches("stopped (exit status: 0)").count(),
        9,
        "{said}"
    );
    // Nothing is left to stop.
    let again = run_dsss(directory.path(), ["down"]);
    assert_eq!(again.status.code(), Some(1));
}
