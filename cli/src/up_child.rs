//! `dsss up --no-demo` as a child process in a directory of its own, for the commands that
//! measure a real cluster (`dsss bench idle`, `dsss sim compare`): started, waited on until
//! the cluster is ready, and stopped with SIGTERM (it stops its nodes); killed if still
//! running when dropped, so that no cluster outlives the command.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The longest wait for `dsss up` to say the cluster is ready.
const READY_WAIT_MAX: Duration = Duration::from_secs(120);

/// How long `dsss up` may take to stop its nodes after SIGTERM before it is killed.
const STOP_WAIT_MAX: Duration = Duration::from_secs(30);

/// The line `dsss up` prints once the cluster is ready.
const READY_LINE_PREFIX: &str = "The cluster runs";

/// The `dsss up` child and where its output goes.
pub(crate) struct UpChild {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl UpChild {
    /// Starts `dsss up --no-demo` (this same binary) in `directory`, with `topology` (the
    /// embedded local topology without one) and `extra` arguments; its standard error goes to
    /// `up.log` there.
    pub(crate) fn start(
        topology: Option<&Path>,
        directory: &Path,
        extra: &[&str],
    ) -> Result<Self, String> {
        let binary = std::env::current_exe()
            .map_err(|error| format!("cannot find the dsss binary: {error}"))?;
        let mut command = Command::new(binary);
        command.args(["up", "--no-demo"]).args(extra);
        if let Some(topology) = topology {
            // `dsss up` runs in `directory`.
            let topology = fs::canonicalize(topology)
                .map_err(|error| format!("--topology {}: {error}", topology.display()))?;
            command.arg("--topology").arg(topology);
        }
        let log_path = directory.join("up.log");
        let log = File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let mut child = command
            .current_dir(directory)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start dsss up: {error}"))?;
        let output = child
            .stdout
            .take()
            .ok_or_else(|| "dsss up has no standard output".to_owned())?;
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(output).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(UpChild { child, lines })
    }

    /// The child's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Echoes what `dsss up` says until the cluster is ready.
    pub(crate) fn wait_until_ready(&mut self, stdout: &mut dyn Write) -> Result<(), String> {
        let deadline = Instant::now() + READY_WAIT_MAX;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(READY_LINE_PREFIX) => return Ok(()),
                Ok(line) => {
                    let _ = writeln!(stdout, "{line}");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "the cluster was not ready within {} s",
                        READY_WAIT_MAX.as_secs()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("dsss up ended before the cluster was ready".to_owned());
                }
            }
        }
    }

    /// Stops the cluster with SIGTERM (`dsss up` stops its nodes) and waits for it.
    pub(crate) fn stop(&mut self) -> Result<(), String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_WAIT_MAX;
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => return Ok(()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("dsss up did not stop within 30 s after SIGTERM".to_owned());
                }
            }
        }
    }
}

impl Drop for UpChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
