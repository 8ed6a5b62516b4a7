//! `dsss sim run`: one researcher's run from a topology, a workload file and a fault file
//! (docs/simulator.md), with a terminal table, and JSON and CSV files with `--out`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use dsss_simulations::scenario::{
    Faults, Scenario, ScenarioError, parse_duration, parse_faults, parse_workload,
};
use dsss_simulations::workloads::global::script::FaultScript;
use dsss_topology::{load, local_default};

use crate::sim_command::{EXIT_BAD_INPUT, EXIT_CHECK_FAILED};

/// Options of `dsss sim run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The topology file (default: the embedded local topology).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The workload file (TOML): instances, registers, operation mix, popularity, arrival.
    #[arg(long, value_name = "FILE")]
    workload: PathBuf,
    /// The fault file (TOML): packet faults, a seeded swarm, faults at set times (default:
    /// none).
    #[arg(long, value_name = "FILE")]
    faults: Option<PathBuf>,
    /// The seed of every random choice of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How long the instances operate and faults happen, in simulated time (e.g. 10s, 2min).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    duration: String,
    /// Writes results.json and latency.csv into this directory (created when missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Writes every operation of the run to this file, one JSON object per line (the format
    /// is in docs/simulator.md), for checkers outside DSSS.
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Runs the coordinator with a planted bug for the checks to catch (SEAL leaves out one
    /// region's closed timestamp).
    #[arg(long, hide = true)]
    planted_seal_without_a_region: bool,
}

/// Reads a file of at most the scenario bound, naming it on failure.
fn read_text(path: &Path, what: &str) -> Result<String, String> {
    let bytes_max = dsss_simulations::scenario::files::SCENARIO_FILE_BYTES_MAX;
    let metadata = std::fs::metadata(path)
        .map_err(|error| format!("the {what} file {}: {error}", path.display()))?;
    if metadata.len() > bytes_max as u64 {
        return Err(format!(
            "the {what} file {} holds {} bytes; at most {bytes_max} are read",
            path.display(),
            metadata.len()
        ));
    }
    std::fs::read_to_string(path)
        .map_err(|error| format!("the {what} file {}: {error}", path.display()))
}

/// The scenario the options name, or what is wrong with them.
fn scenario_of(args: &RunArgs) -> Result<Scenario, String> {
    let topology = match &args.topology {
        Some(path) => load(path).map_err(|diagnostics| diagnostics.to_string())?,
        None => local_default(),
    };
    let workload_text = read_text(&args.workload, "workload")?;
    let workload = parse_workload(&workload_text)
        .map_err(|error| format!("{}: {error}", args.workload.display()))?;
    let faults = match &args.faults {
        Some(path) => {
            let text = read_text(path, "fault")?;
            parse_faults(&text).map_err(|error| format!("{}: {error}", path.display()))?
        }
        None => Faults {
            script: FaultScript::none(),
            standard_swarm: false,
        },
    };
    let duration =
        parse_duration(&args.duration).map_err(|error| format!("--duration: {error}"))?;
    Ok(Scenario {
        topology,
        workload,
        faults,
        seed: args.seed,
        duration,
        planted_seal_without_a_region: args.planted_seal_without_a_region,
    })
}

/// The command that replays this run.
fn replay_command(args: &RunArgs) -> String {
    let mut command = String::from("dsss sim run");
    if let Some(topology) = &args.topology {
        command += &format!(" --topology {}", topology.display());
    }
    command += &format!(" --workload {}", args.workload.display());
    if let Some(faults) = &args.faults {
        command += &format!(" --faults {}", faults.display());
    }
    command += &format!(" --seed {} --duration {}", args.seed, args.duration);
    if args.planted_seal_without_a_region {
        command += " --planted-seal-without-a-region";
    }
    command
}

pub(crate) fn run(args: &RunArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let scenario = match scenario_of(args) {
        Ok(scenario) => scenario,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim run: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let started = Instant::now();
    let report = match scenario.run() {
        Ok(mut report) => {
            report.session.replay = replay_command(args);
            report
        }
        Err(ScenarioError::BadInput(message)) => {
            let _ = writeln!(stderr, "dsss sim run: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        Err(broken @ ScenarioError::InvariantBroken(_)) => {
            let _ = writeln!(
                stderr,
                "dsss sim run: seed {}: {broken}\nreplay: {}",
                args.seed,
                replay_command(args)
            );
            return ExitCode::from(EXIT_CHECK_FAILED);
        }
    };
    let wall = started.elapsed();
    let _ = writeln!(stdout, "{}", report.session);
    let _ = writeln!(stdout, "{}", report.results.table());
    let _ = writeln!(
        stdout,
        "speed: {:.1} s simulated in {:.1} s of wall time ({:.1}x)",
        report.session.simulated.as_secs_f64(),
        wall.as_secs_f64(),
        report.session.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9)
    );
    if let Some(directory) = &args.out {
        let written = std::fs::create_dir_all(directory)
            .and_then(|()| std::fs::write(directory.join("results.json"), report.to_json()))
            .and_then(|()| std::fs::write(directory.join("latency.csv"), report.results.to_csv()));
        if let Err(error) = written {
            let _ = writeln!(
                stderr,
                "dsss sim run: writing the results into {}: {error}",
                directory.display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        let _ = writeln!(
            stdout,
            "wrote {} and {}",
            directory.join("results.json").display(),
            directory.join("latency.csv").display()
        );
    }
    if let Some(path) = &args.history {
        if let Err(error) = std::fs::write(path, report.history_lines()) {
            let _ = writeln!(
                stderr,
                "dsss sim run: writing the history to {}: {error}",
                path.display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        let _ = writeln!(
            stdout,
            "wrote {} operations to {}",
            report
                .histories
                .instances
                .values()
                .map(|history| history.operations.len())
                .sum::<usize>(),
            path.display()
        );
    }
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(
            stderr,
            "dsss sim run: checks failed with seed {}; replay: {}",
            args.seed, report.session.replay
        );
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}
