//! `dsss sim run` and `dsss sim sweep`: a researcher's run from a topology, a workload file
//! and a fault file (docs/simulator.md), with a terminal table, and JSON and CSV files with
//! `--out`; a sweep runs it across the values of one parameter.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use dsss_simulations::scenario::results::completed_samples;
use dsss_simulations::scenario::sweep::{
    parse_assignment, rows_csv, rows_table, run_sweep, summarize,
};
use dsss_simulations::scenario::{
    Faults, Scenario, ScenarioError, parse_duration, parse_faults, parse_workload,
};
use dsss_simulations::workloads::global::script::FaultScript;
use dsss_simulations::{NodeCosts, WorkKind};
use dsss_topology::{load, local_default};

use crate::sim_command::{EXIT_BAD_INPUT, EXIT_CHECK_FAILED};

/// Options of `dsss sim run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// The seed of every random choice of the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sets one parameter, as a sweep would: NAME=VALUE with NAME one of epoch_ms,
    /// latency_scale, preferred_leader, instances_per_region, think_time_max_ms,
    /// rate_per_second, cpu_per_event_us, disk_sync_us.
    #[arg(long, value_name = "NAME=VALUE")]
    set: Option<String>,
    /// Writes results.json, latency.csv, stages.csv and the plots into this directory
    /// (created when missing).
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

/// Options of `dsss sim sweep`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// The parameter and its values: NAME=V1,V2,... with NAME one of epoch_ms,
    /// latency_scale, preferred_leader, instances_per_region, think_time_max_ms,
    /// rate_per_second, cpu_per_event_us, disk_sync_us.
    #[arg(long, value_name = "NAME=V1,V2,...")]
    param: String,
    /// The first seed of every value.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds per value: seed, seed + 1, ...
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// Runs at once (default: one per core).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Writes sweep.csv into this directory (created when missing).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// What a run and a sweep share: the cluster, the files and the length.
#[derive(Debug, Args)]
pub(crate) struct ScenarioArgs {
    /// The topology file (default: the embedded local topology).
    #[arg(long, value_name = "FILE")]
    pub(crate) topology: Option<PathBuf>,
    /// The workload file (TOML): instances, registers, operation mix, popularity, arrival.
    #[arg(long, value_name = "FILE")]
    pub(crate) workload: PathBuf,
    /// The fault file (TOML): packet faults, a seeded swarm, faults at set times (default:
    /// none).
    #[arg(long, value_name = "FILE")]
    pub(crate) faults: Option<PathBuf>,
    /// How long the instances operate and faults happen, in simulated time (e.g. 10s, 2min).
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub(crate) duration: String,
    /// How long one disk sync (fsync) of a region node or coordinator replica takes (e.g.
    /// 200us; default 0: the disk syncs at once). `dsss bench region` measures this machine's.
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub(crate) disk_sync: String,
    /// The CPU time a region node or coordinator replica spends on each message or timer it
    /// handles (e.g. 50us; default 0: nodes spend no time).
    #[arg(long, value_name = "DURATION", default_value = "0s")]
    pub(crate) cpu_per_event: String,
    /// CPU times for kinds of events instead of --cpu-per-event, comma separated: client (an
    /// application's calls, reads, barriers and sessions), raft (raft messages and clock
    /// probes within a region or the coordinator), global (batches, sealed epochs and their
    /// acknowledgements between the tiers), timer (a node's own timers), e.g.
    /// client=60us,raft=150us; kinds not named cost --cpu-per-event.
    #[arg(long, value_name = "KIND=DURATION,...")]
    pub(crate) cpu_per_kind: Option<String>,
}

/// The node costs the options name.
pub(crate) fn node_costs_of(args: &ScenarioArgs) -> Result<NodeCosts, String> {
    let mut costs = NodeCosts::uniform(
        parse_duration(&args.disk_sync).map_err(|error| format!("--disk-sync: {error}"))?,
        parse_duration(&args.cpu_per_event).map_err(|error| format!("--cpu-per-event: {error}"))?,
    );
    if let Some(list) = &args.cpu_per_kind {
        let mut named = Vec::new();
        for item in list.split(',').map(str::trim) {
            let Some((name, cost)) = item.split_once('=') else {
                return Err(format!(
                    "--cpu-per-kind: {item:?} is not KIND=DURATION (e.g. client=60us)"
                ));
            };
            let kind =
                WorkKind::parse(name.trim()).map_err(|error| format!("--cpu-per-kind: {error}"))?;
            if named.contains(&kind) {
                return Err(format!("--cpu-per-kind: {kind} is named twice"));
            }
            named.push(kind);
            let cost = parse_duration(cost.trim())
                .map_err(|error| format!("--cpu-per-kind: {kind}: {error}"))?;
            costs = costs.with_kind(kind, cost);
        }
    }
    costs.validate()?;
    Ok(costs)
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
pub(crate) fn scenario_of(args: &ScenarioArgs, seed: u64) -> Result<Scenario, String> {
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
        seed,
        duration,
        node_costs: node_costs_of(args)?,
        planted_seal_without_a_region: false,
    })
}

/// The command that replays one run: the files, the seed, the one parameter set, and the
/// planted bug when there is one.
fn replay_command(
    args: &ScenarioArgs,
    seed: u64,
    set: Option<String>,
    planted_seal_without_a_region: bool,
) -> String {
    let mut command = String::from("dsss sim run");
    if let Some(topology) = &args.topology {
        command += &format!(" --topology {}", topology.display());
    }
    command += &format!(" --workload {}", args.workload.display());
    if let Some(faults) = &args.faults {
        command += &format!(" --faults {}", faults.display());
    }
    command += &format!(" --seed {seed} --duration {}", args.duration);
    if args.disk_sync != "0s" {
        command += &format!(" --disk-sync {}", args.disk_sync);
    }
    if args.cpu_per_event != "0s" {
        command += &format!(" --cpu-per-event {}", args.cpu_per_event);
    }
    if let Some(kinds) = &args.cpu_per_kind {
        command += &format!(" --cpu-per-kind {kinds}");
    }
    if let Some(set) = set {
        command += &format!(" --set {set}");
    }
    if planted_seal_without_a_region {
        command += " --planted-seal-without-a-region";
    }
    command
}

fn listed(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|file| file.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `dsss sim run`.
pub(crate) fn run(args: &RunArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let scenario = scenario_of(&args.scenario, args.seed).and_then(|mut scenario| {
        scenario.planted_seal_without_a_region = args.planted_seal_without_a_region;
        if let Some(set) = &args.set {
            let (parameter, values) =
                parse_assignment(set).map_err(|error| format!("--set: {error}"))?;
            let [value] = values[..] else {
                return Err(format!("--set {set}: one value; a sweep takes several"));
            };
            parameter
                .apply(&mut scenario, value)
                .map_err(|error| format!("--set: {error}"))?;
        }
        Ok(scenario)
    });
    let scenario = match scenario {
        Ok(scenario) => scenario,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim run: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let replay = replay_command(
        &args.scenario,
        args.seed,
        args.set.clone(),
        args.planted_seal_without_a_region,
    );
    let outputs = RunOutputs {
        out: args.out.as_deref(),
        history: args.history.as_deref(),
    };
    match run_and_report("run", &scenario, replay, outputs, stdout, stderr) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_CHECK_FAILED),
        Err(exit) => exit,
    }
}

/// Where a run writes beside the terminal.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunOutputs<'a> {
    /// results.json, latency.csv, stages.csv and the plots go into this directory.
    pub(crate) out: Option<&'a Path>,
    /// Every operation, one JSON object per line.
    pub(crate) history: Option<&'a Path>,
}

/// Runs `scenario`, prints its report, its tables and its speed, and writes `outputs`, as
/// `dsss sim {command}`: `Ok(true)` when every check passed, `Ok(false)` when one failed (the
/// seed and `replay`, the command that replays the run, are printed), the exit status when a
/// setting or an output cannot be used.
pub(crate) fn run_and_report(
    command: &str,
    scenario: &Scenario,
    replay: String,
    outputs: RunOutputs<'_>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Result<bool, ExitCode> {
    let started = Instant::now();
    // On a terminal only (indicatif hides the bar otherwise): simulated time through the
    // operation window.
    let bar = indicatif::ProgressBar::new(scenario.duration.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} simulated {pos}/{len} ms [{bar:40}] {elapsed} of wall time",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let outcome = scenario.run_with_progress(&mut |into| bar.set_position(into.as_millis() as u64));
    bar.finish_and_clear();
    let report = match outcome {
        Ok(mut report) => {
            report.session.replay = replay.clone();
            report
        }
        Err(ScenarioError::BadInput(message)) => {
            let _ = writeln!(stderr, "dsss sim {command}: {message}");
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
        Err(broken @ ScenarioError::InvariantBroken(_)) => {
            let _ = writeln!(
                stderr,
                "dsss sim {command}: seed {}: {broken}\nreplay: {replay}",
                scenario.seed
            );
            return Ok(false);
        }
    };
    let wall = started.elapsed();
    let _ = writeln!(stdout, "{}", report.session);
    let _ = writeln!(stdout, "{}", report.results.table());
    let _ = writeln!(stdout, "{}", report.results.stages_table());
    let rate: f64 = report
        .results
        .regions
        .values()
        .map(|region| region.throughput_per_s)
        .sum();
    let simulated_s = report.session.simulated.as_secs_f64().max(1e-9);
    let _ = writeln!(
        stdout,
        "speed: {:.1} s simulated in {:.1} s of wall time ({:.1}x), at {rate:.0} completed \
         operations, {:.0} events and {:.0} messages per simulated second",
        report.session.simulated.as_secs_f64(),
        wall.as_secs_f64(),
        report.session.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9),
        report.session.work.events as f64 / simulated_s,
        report.session.work.messages_sent as f64 / simulated_s,
    );
    if let Some(directory) = outputs.out {
        let written = std::fs::create_dir_all(directory)
            .and_then(|()| std::fs::write(directory.join("results.json"), report.to_json()))
            .and_then(|()| std::fs::write(directory.join("latency.csv"), report.results.to_csv()))
            .and_then(|()| {
                std::fs::write(directory.join("stages.csv"), report.results.stages_csv())
            });
        if let Err(error) = written {
            let _ = writeln!(
                stderr,
                "dsss sim {command}: writing the results into {}: {error}",
                directory.display()
            );
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
        let _ = writeln!(
            stdout,
            "wrote {}, {} and {}",
            directory.join("results.json").display(),
            directory.join("latency.csv").display(),
            directory.join("stages.csv").display()
        );
        let samples = completed_samples(&report.histories, "global_write");
        match crate::sim_plots::run_plots(
            directory,
            &samples,
            &scenario.faults.script,
            scenario.duration,
        ) {
            Ok(files) => {
                let _ = writeln!(stdout, "wrote {}", listed(&files));
            }
            Err(reason) => {
                let _ = writeln!(
                    stderr,
                    "dsss sim {command}: the plots were not drawn: {reason}"
                );
            }
        }
    }
    if let Some(path) = outputs.history {
        if let Err(error) = std::fs::write(path, report.history_lines()) {
            let _ = writeln!(
                stderr,
                "dsss sim {command}: writing the history to {}: {error}",
                path.display()
            );
            return Err(ExitCode::from(EXIT_BAD_INPUT));
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
    if !report.passed() {
        let _ = writeln!(
            stderr,
            "dsss sim {command}: checks failed with seed {}; replay: {}",
            scenario.seed, report.session.replay
        );
    }
    Ok(report.passed())
}

/// `dsss sim sweep`.
pub(crate) fn sweep(args: &SweepArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let prepared = scenario_of(&args.scenario, args.seed).and_then(|scenario| {
        let (parameter, values) =
            parse_assignment(&args.param).map_err(|error| format!("--param: {error}"))?;
        Ok((scenario, parameter, values))
    });
    let (scenario, parameter, values) = match prepared {
        Ok(prepared) => prepared,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim sweep: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let threads = args.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let started = Instant::now();
    let runs = match run_sweep(
        &scenario, parameter, &values, args.seed, args.seeds, threads,
    ) {
        Ok(runs) => runs,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim sweep: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let rows = summarize(&runs);
    let _ = write!(stdout, "{}", rows_table(parameter, &rows));
    let simulated: f64 = runs
        .iter()
        .filter_map(|run| run.outcome.as_ref().ok())
        .map(|report| report.session.simulated.as_secs_f64())
        .sum();
    let _ = writeln!(
        stdout,
        "{} runs ({} values x {} seeds) on {threads} threads: {simulated:.1} s simulated in \
         {:.1} s of wall time",
        runs.len(),
        values.len(),
        args.seeds,
        started.elapsed().as_secs_f64()
    );
    if let Some(directory) = &args.out {
        let path = directory.join("sweep.csv");
        if let Err(error) = std::fs::create_dir_all(directory)
            .and_then(|()| std::fs::write(&path, rows_csv(parameter, &rows)))
        {
            let _ = writeln!(
                stderr,
                "dsss sim sweep: writing {}: {error}",
                path.display()
            );
            return ExitCode::from(EXIT_BAD_INPUT);
        }
        let _ = writeln!(stdout, "wrote {}", path.display());
        match crate::sim_plots::sweep_plot(directory, parameter.name(), &rows) {
            Ok(files) => {
                let _ = writeln!(stdout, "wrote {}", listed(&files));
            }
            Err(reason) => {
                let _ = writeln!(stderr, "dsss sim sweep: the plot was not drawn: {reason}");
            }
        }
    }
    let mut failed = false;
    for run in &runs {
        let problem = match &run.outcome {
            Ok(report) if report.passed() => continue,
            Ok(report) => report.session.problems.join("; "),
            Err(error) => error.to_string(),
        };
        failed = true;
        let set = format!("{}={}", parameter.name(), run.value);
        let _ = writeln!(
            stderr,
            "dsss sim sweep: {set}, seed {}: {problem}\nreplay: {}",
            run.seed,
            replay_command(&args.scenario, run.seed, Some(set.clone()), false)
        );
    }
    if failed {
        ExitCode::from(EXIT_CHECK_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}
