//! `dsss bench idle`: the CPU an idle cluster uses.
//!
//! The benchmark starts `dsss up --no-demo` (this same binary) in a temporary directory,
//! waits until the cluster is ready, lets it settle, and then reads the CPU time (user and
//! system) of the `dsss up` process and of every node process it started, from `/proc`, at
//! the start and at the end of the measured span. It prints each process's share, split by
//! thread (the node loop, the coordinator loop, the tokio runtime), and the total in CPU
//! seconds per minute and in percent of one core. The cluster is stopped with SIGTERM and the
//! directory removed at the end. Linux only: it reads `/proc`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::bench_command::{BenchDirectory, parse_cpu_time};
use crate::up_child::UpChild;

/// Exit status when the benchmark could not run.
const EXIT_BENCH_FAILED: u8 = 1;

/// Exit status for settings that cannot be used.
const EXIT_BAD_INPUT: u8 = 2;

/// The longest measured span, and the longest settling time, in seconds.
pub const IDLE_SECONDS_MAX: u64 = 3_600;

/// The arguments of `dsss bench idle`.
#[derive(Debug, Args)]
pub(crate) struct IdleBenchArgs {
    /// The topology to run (as `dsss up --topology`); without it, the local topology.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// How long the cluster runs after it is ready before the measurement starts, in seconds.
    #[arg(long, value_name = "S", default_value_t = 30)]
    settle_seconds: u64,
    /// How long the measurement runs, in seconds.
    #[arg(long, value_name = "S", default_value_t = 60)]
    seconds: u64,
}

fn check_arguments(arguments: &IdleBenchArgs) -> Result<(), String> {
    if arguments.seconds == 0 || arguments.seconds > IDLE_SECONDS_MAX {
        return Err(format!(
            "--seconds: {} is outside 1..={IDLE_SECONDS_MAX}",
            arguments.seconds
        ));
    }
    if arguments.settle_seconds > IDLE_SECONDS_MAX {
        return Err(format!(
            "--settle-seconds: {} is above {IDLE_SECONDS_MAX}",
            arguments.settle_seconds
        ));
    }
    Ok(())
}

/// Runs `dsss bench idle`.
pub(crate) fn run(
    arguments: IdleBenchArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    if let Err(message) = check_arguments(&arguments) {
        let _ = writeln!(stderr, "{message}");
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    match measure(&arguments, stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(stderr, "dsss bench idle: {error}");
            ExitCode::from(EXIT_BENCH_FAILED)
        }
    }
}

fn measure(arguments: &IdleBenchArgs, stdout: &mut dyn Write) -> Result<(), String> {
    let directory = BenchDirectory::create()?;
    let mut cluster = UpChild::start(arguments.topology.as_deref(), directory.path(), &[])?;
    let outcome = cluster.wait_until_ready(stdout).and_then(|()| {
        let _ = writeln!(
            stdout,
            "settling for {} s, then measuring for {} s",
            arguments.settle_seconds, arguments.seconds
        );
        let _ = stdout.flush();
        std::thread::sleep(Duration::from_secs(arguments.settle_seconds));
        let processes = processes(&cluster)?;
        let before = sample(&processes);
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(arguments.seconds));
        let after = sample(&processes);
        let _ = write!(stdout, "{}", report(&before, &after, started.elapsed()));
        Ok(())
    });
    let stopped = cluster.stop();
    outcome.and(stopped)
}

/// `dsss up` and the node processes it started, each with its name in the report.
fn processes(cluster: &UpChild) -> Result<Vec<(u32, String)>, String> {
    let up_pid = cluster.pid();
    let mut processes = vec![(up_pid, "dsss up".to_owned())];
    let entries = fs::read_dir("/proc").map_err(|error| format!("cannot read /proc: {error}"))?;
    let mut nodes = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parent_pid(&stat) != Some(up_pid) {
            continue;
        }
        let command_line = fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let name = node_id_of(&command_line)
            .map_or_else(|| format!("pid {pid}"), |node_id| format!("node {node_id}"));
        nodes.push((pid, name));
    }
    if nodes.is_empty() {
        return Err("dsss up runs no node process".to_owned());
    }
    nodes.sort();
    processes.extend(nodes);
    Ok(processes)
}

/// What a thread of a node process does, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ThreadKind {
    /// `dsss-node-N`: the region node loop.
    NodeLoop,
    /// `dsss-coordinator-N`: the coordinator replica's loop.
    CoordinatorLoop,
    /// `dsss-node-runtime`: the tokio runtime (gRPC, peer transport, WAN delays).
    Runtime,
    /// Anything else (RocksDB's background threads, the main thread).
    Other,
}

/// The kind of a thread named `name` (as `/proc/PID/task/TID/comm` gives it: at most 15
/// bytes, so `dsss-node-runtime` reads `dsss-node-runti`).
fn thread_kind(name: &str) -> ThreadKind {
    let name = name.trim_end();
    if name.starts_with("dsss-node-runti") {
        ThreadKind::Runtime
    } else if name.starts_with("dsss-coordinato") {
        ThreadKind::CoordinatorLoop
    } else if name
        .strip_prefix("dsss-node-")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|byte| byte.is_ascii_digit()))
    {
        ThreadKind::NodeLoop
    } else {
        ThreadKind::Other
    }
}

/// The parent process id in the text of `/proc/PID/stat` (field 4).
fn parent_pid(stat: &str) -> Option<u32> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(1)?.parse().ok()
}

/// The node id of a `dsss node --id N` command line (`/proc/PID/cmdline`: arguments
/// separated by NUL bytes).
fn node_id_of(command_line: &[u8]) -> Option<u64> {
    let arguments: Vec<&[u8]> = command_line.split(|&byte| byte == 0).collect();
    let position = arguments.iter().position(|&argument| argument == b"--id")?;
    std::str::from_utf8(arguments.get(position + 1)?)
        .ok()?
        .parse()
        .ok()
}

/// The CPU time of every named process, by thread kind (threads that ended in between are
/// missing from the later sample, and their time with them).
type Sample = Vec<(String, BTreeMap<ThreadKind, Duration>)>;

fn sample(processes: &[(u32, String)]) -> Sample {
    processes
        .iter()
        .map(|(pid, name)| {
            let mut by_kind = BTreeMap::new();
            let tasks = PathBuf::from(format!("/proc/{pid}/task"));
            for task in fs::read_dir(tasks).into_iter().flatten().flatten() {
                let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                let Some(cpu) = fs::read_to_string(task.path().join("stat"))
                    .ok()
                    .and_then(|stat| parse_cpu_time(&stat))
                else {
                    continue;
                };
                *by_kind.entry(thread_kind(&comm)).or_default() += cpu;
            }
            (name.clone(), by_kind)
        })
        .collect()
}

fn report(before: &Sample, after: &Sample, span: Duration) -> String {
    let seconds = span.as_secs_f64().max(f64::EPSILON);
    let per_minute = |cpu: Duration| cpu.as_secs_f64() * 60.0 / seconds;
    let mut text = format!(
        "CPU of the idle cluster over {seconds:.1} s, in CPU seconds per minute:\n  \
         {:<10} {:>8} {:>10} {:>10} {:>12} {:>8}\n",
        "process", "total", "node loop", "runtime", "coordinator", "other"
    );
    let mut total = Duration::ZERO;
    for ((name, start), (_, end)) in before.iter().zip(after) {
        let used = |kind: ThreadKind| {
            end.get(&kind)
                .copied()
                .unwrap_or_default()
                .saturating_sub(start.get(&kind).copied().unwrap_or_default())
        };
        let kinds = [
            ThreadKind::NodeLoop,
            ThreadKind::Runtime,
            ThreadKind::CoordinatorLoop,
            ThreadKind::Other,
        ];
        let process_total: Duration = kinds.iter().map(|&kind| used(kind)).sum();
        total += process_total;
        text.push_str(&format!(
            "  {name:<10} {:>8.2} {:>10.2} {:>10.2} {:>12.2} {:>8.2}\n",
            per_minute(process_total),
            per_minute(used(ThreadKind::NodeLoop)),
            per_minute(used(ThreadKind::Runtime)),
            per_minute(used(ThreadKind::CoordinatorLoop)),
            per_minute(used(ThreadKind::Other)),
        ));
    }
    text.push_str(&format!(
        "  {:<10} {:>8.2}  ({:.1}% of one core)\n",
        "all",
        per_minute(total),
        per_minute(total) / 60.0 * 100.0
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_are_told_apart_by_their_names() {
        assert_eq!(thread_kind("dsss-node-runti\n"), ThreadKind::Runtime);
        assert_eq!(thread_kind("dsss-coordinato"), ThreadKind::CoordinatorLoop);
        assert_eq!(thread_kind("dsss-node-12\n"), ThreadKind::NodeLoop);
        assert_eq!(thread_kind("dsss-node-"), ThreadKind::Other);
        assert_eq!(thread_kind("rocksdb:low"), ThreadKind::Other);
        assert_eq!(thread_kind("dsss"), ThreadKind::Other);
    }

    #[test]
    fn node_processes_are_found_by_parent_and_named_by_their_id() {
        let stat = "4242 (dsss node (x)) S 4200 4242 4200 0 -1 4194560 100 0 0 0 7 3";
        assert_eq!(parent_pid(stat), Some(4200));
        assert_eq!(
            node_id_of(
                &[
                    b"/bin/dsss\0node\0--topology\0t.toml\0--id\0".as_slice(),
                    b"31\0--emulate-wan\0"
                ]
                .concat()
            ),
            Some(31)
        );
        assert_eq!(node_id_of(b"/bin/dsss\0up\0--no-demo\0"), None);
        assert_eq!(node_id_of(b"/bin/dsss\0node\0--id\0"), None);
    }

    #[test]
    fn the_report_gives_each_process_per_minute_and_the_total_share_of_a_core() {
        let at = |node: u64, runtime: u64| {
            BTreeMap::from([
                (ThreadKind::NodeLoop, Duration::from_millis(node)),
                (ThreadKind::Runtime, Duration::from_millis(runtime)),
            ])
        };
        let before = vec![("node 11".to_owned(), at(1_000, 2_000))];
        let after = vec![("node 11".to_owned(), at(1_300, 2_900))];
        // 1.2 s over 30 s: 2.4 s per minute, 4% of one core.
        let text = report(&before, &after, Duration::from_secs(30));
        assert!(
            text.contains("node 11        2.40       0.60       1.80"),
            "{text}"
        );
        assert!(
            text.contains("all            2.40  (4.0% of one core)"),
            "{text}"
        );
    }

    #[test]
    fn spans_outside_the_bounds_are_refused() {
        let arguments = |seconds, settle_seconds| IdleBenchArgs {
            topology: None,
            settle_seconds,
            seconds,
        };
        assert!(check_arguments(&arguments(60, 30)).is_ok());
        assert!(
            check_arguments(&arguments(0, 30))
                .unwrap_err()
                .contains("--seconds")
        );
        assert!(
            check_arguments(&arguments(60, IDLE_SECONDS_MAX + 1))
                .unwrap_err()
                .contains("--settle-seconds")
        );
    }
}
