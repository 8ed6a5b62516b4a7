//! What `dsss node` logs: JSON lines with `DSSS_LOG_FORMAT=json`, per-module levels from
//! `DSSS_LOG` (raft-rs's own lines under the target `raft`), and a named warning for
//! directives that do not parse.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dsss_tests::dsss_binary;
use dsss_tests::processes::one_region_topology;

/// Generous bound on every wait; nothing is asserted about speed.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// A one-node region over plaintext, started with `environment`; its standard error lines
/// arrive on the receiver.
fn start(environment: &[(&str, &str)]) -> (tempfile::TempDir, Child, mpsc::Receiver<String>) {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let topology = directory.path().join("topology.toml");
    std::fs::write(&topology, one_region_topology("logging", &[1], "")).expect("write");
    let mut child = Command::new(dsss_binary())
        .args(["node", "--insecure", "--id", "1", "--topology"])
        .arg(&topology)
        .envs(environment.iter().copied())
        .current_dir(directory.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dsss node");
    let stderr = child.stderr.take().expect("piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if sender.send(line).is_err() {
                return;
            }
        }
    });
    (directory, child, receiver)
}

/// Lines from `receiver` until one satisfies `wanted` (returned with all before it).
fn lines_until(receiver: &mpsc::Receiver<String>, wanted: impl Fn(&str) -> bool) -> Vec<String> {
    let deadline = Instant::now() + WAIT_MAX;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match receiver.recv_timeout(left) {
            Ok(line) => {
                let done = wanted(&line);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(_) => break,
        }
    }
    panic!(
        "the awaited line never came; the node logged:\n{}",
        seen.join("\n")
    );
}

#[test]
fn a_node_logs_json_lines_with_raft_rs_lines_under_their_own_target() {
    let (_directory, mut child, receiver) =
        start(&[("DSSS_LOG_FORMAT", "json"), ("DSSS_LOG", "info,raft=info")]);
    let lines = lines_until(&receiver, |line| line.contains("became leader"));
    let _ = child.kill();
    let _ = child.wait();
    for line in &lines {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON object: {line}"
        );
        assert!(line.contains("\"level\":"), "no level: {line}");
        assert!(line.contains("\"target\":"), "no target: {line}");
    }
    let raft = lines.last().expect("the awaited line");
    assert!(raft.contains("\"target\":\"raft\""), "{raft}");
    assert!(raft.contains("raft_id=1"), "{raft}");
    assert!(
        lines
            .iter()
            .any(|line| line.contains("region node serving")),
        "the node's own lines: {lines:?}"
    );
}

#[test]
fn a_module_set_to_warn_is_quiet_and_bad_directives_are_named() {
    // raft's info lines are filtered out; the node's own info lines still come.
    let (_directory, mut child, receiver) = start(&[("DSSS_LOG", "info,raft=warn")]);
    let lines = lines_until(&receiver, |line| line.contains("region node serving"));
    // Long enough for a one-node region to elect itself, which raft-rs logs at info.
    std::thread::sleep(Duration::from_secs(2));
    let _ = child.kill();
    let _ = child.wait();
    let later: Vec<String> = receiver.try_iter().collect();
    assert!(
        !lines
            .iter()
            .chain(&later)
            .any(|line| line.contains("became leader")),
        "raft's info lines came: {lines:?} {later:?}"
    );

    let (_directory, mut child, receiver) = start(&[("DSSS_LOG", "raft=loud")]);
    let lines = lines_until(&receiver, |line| line.contains("DSSS_LOG"));
    let _ = child.kill();
    let _ = child.wait();
    let warning = lines.last().expect("the awaited line");
    assert!(
        warning.contains("DSSS_LOG=\"raft=loud\" is not a list of log directives"),
        "{warning}"
    );
}
