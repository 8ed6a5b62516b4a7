//! `dsss topology check` and `dsss topology show`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use dsss_topology::{Topology, load, local_default, render_report};

/// Exit status when a topology file has problems (usage errors exit with 2, as clap does).
const EXIT_PROBLEMS_FOUND: u8 = 1;

/// The `dsss topology` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum TopologyCommand {
    /// Check topology files and report every problem in each.
    ///
    /// Prints one `ok:` line per valid file on standard output and every problem of the other
    /// files on standard error, each as `file:line:column: field path: message`. Exits with 0
    /// when all files are valid and 1 otherwise.
    #[command(after_help = "Example:\n  \
        dsss topology check topology/examples/local.toml topology/examples/global.toml")]
    Check {
        /// Topology files (TOML) to check.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Show a topology as a readable report: settings, regions and nodes, latency matrix, d_max.
    ///
    /// Without FILE, shows the embedded default topology: three local regions of three nodes
    /// on 127.0.0.1 (the text of topology/examples/local.toml).
    #[command(after_help = "Examples:\n  \
        dsss topology show\n  \
        dsss topology show topology/examples/global.toml")]
    Show {
        /// Topology file (TOML) to show; the embedded local default when omitted.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
}

/// Runs one topology subcommand, writing results to `stdout` and problems to `stderr`.
pub(crate) fn run(
    command: TopologyCommand,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    match command {
        TopologyCommand::Check { files } => check(&files, stdout, stderr),
        TopologyCommand::Show { file } => show(file, stdout, stderr),
    }
}

/// Checks every file, even after a bad one, so that one run lists everything to fix.
fn check(files: &[PathBuf], stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let mut bad_count = 0;
    for file in files {
        // Write errors (a closed pipe) are ignored: the exit status still tells the outcome.
        match load(file) {
            Ok(topology) => {
                let _ = writeln!(stdout, "ok: {}: {}", file.display(), summary(&topology));
            }
            Err(diagnostics) => {
                bad_count += 1;
                let _ = writeln!(stderr, "{diagnostics}");
            }
        }
    }
    if bad_count == 0 {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(
            stderr,
            "dsss topology check: {bad_count} of {} files have problems",
            files.len()
        );
        ExitCode::from(EXIT_PROBLEMS_FOUND)
    }
}

fn show(file: Option<PathBuf>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let (source, topology) = match file {
        None => (
            "embedded default (topology/examples/local.toml)".to_owned(),
            local_default(),
        ),
        Some(file) => match load(&file) {
            Ok(topology) => (file.display().to_string(), topology),
            Err(diagnostics) => {
                let _ = writeln!(stderr, "{diagnostics}");
                return ExitCode::from(EXIT_PROBLEMS_FOUND);
            }
        },
    };
    let _ = writeln!(stdout, "topology: {source}\n");
    let _ = write!(stdout, "{}", render_report(&topology));
    ExitCode::SUCCESS
}

/// `cluster "NAME", R regions, N nodes, coordinator on nodes [..]`.
fn summary(topology: &Topology) -> String {
    format!(
        "cluster {:?}, {} regions, {} nodes, coordinator on nodes {:?}",
        topology.cluster.name,
        topology.regions.len(),
        topology.node_count(),
        topology.coordinator.replicas
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_cluster_regions_nodes_and_coordinator() {
        assert_eq!(
            summary(&local_default()),
            "cluster \"local\", 3 regions, 9 nodes, coordinator on nodes [11, 21, 31]"
        );
    }

    #[test]
    fn check_reports_good_files_on_stdout_and_bad_ones_on_stderr() {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let missing = PathBuf::from("/nonexistent/dsss/topology.toml");
        let status = check(&[missing], &mut stdout, &mut stderr);
        assert_eq!(status, ExitCode::from(EXIT_PROBLEMS_FOUND));
        assert!(stdout.is_empty());
        let stderr = String::from_utf8(stderr).expect("UTF-8");
        assert!(
            stderr.starts_with("/nonexistent/dsss/topology.toml: file: cannot open: "),
            "{stderr}"
        );
        assert!(stderr.ends_with("dsss topology check: 1 of 1 files have problems\n"));
    }

    #[test]
    fn show_without_a_file_renders_the_embedded_default() {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let status = show(None, &mut stdout, &mut stderr);
        assert_eq!(status, ExitCode::SUCCESS);
        let stdout = String::from_utf8(stdout).expect("UTF-8");
        assert!(stdout.starts_with("topology: embedded default"));
        assert!(stdout.contains("d_max = 35 ms (between local-a and local-c)"));
        assert!(stderr.is_empty());
    }
}
