//! `dsss sim`: deterministic simulations on a topology.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use dsss_simulations::NetworkFaults;
use dsss_simulations::NodeCosts;
use dsss_simulations::scenario::files::INSTANCES_PER_REGION_MAX;
use dsss_simulations::scenario::{
    ExampleObject as ScenarioExample, Faults, Scenario, Workload, parse_faults, parse_workload,
};
use dsss_simulations::workloads::global::FAULT_WINDOW_MAX;
use dsss_simulations::workloads::global::script::FaultScript;
use dsss_simulations::workloads::probe::{ProbeRunSettings, run_probe};
use dsss_simulations::workloads::region::{RegionFaultPlan, RegionRunSettings, run_region};
use dsss_simulations::workloads::session::GLOBAL_OBJECTS_MAX;
use dsss_topology::{Topology, load, local_default};

use crate::sim_run_command::{RunOutputs, run_and_report};

/// Exit status when a simulation found a broken guarantee.
pub(crate) const EXIT_CHECK_FAILED: u8 = 1;

/// Exit status for a topology file or setting that cannot be used.
pub(crate) const EXIT_BAD_INPUT: u8 = 2;

/// The `dsss sim` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum SimCommand {
    /// Run a workload file and a fault file on a topology, check it, and measure it.
    ///
    /// Application instances in every region hold global registers and their region's
    /// regional register through the SDK's client session, on real region nodes and
    /// coordinator replicas, and write, read locally and read after `sync()` as the workload
    /// file says, while the fault file's faults happen (at set times, or drawn from the seed
    /// by its swarm). Then everything heals and the run checks one order across objects,
    /// linearizable `sync()` reads, convergence, and that every region holds the same sealed
    /// epochs with no acknowledged call lost or applied twice. Prints the latency per region
    /// and operation class (p50 to max, and as ratios to d_max and the region's
    /// sequential-consistency bound), throughput, availability and the longest stall; --out
    /// writes results.json and latency.csv. The same seed and files give the same JSON.
    /// Exits with 1 and prints the command that replays the run when a check fails.
    #[command(after_help = "Examples:\n  \
        dsss sim run --workload examples/sim/workloads/registers.toml\n  \
        dsss sim run --workload examples/sim/workloads/zipf.toml --faults \
        examples/sim/faults/cut-and-crash.toml --seed 7 --duration 20s --out results/\n  \
        dsss sim run --topology topology/examples/global.toml --workload \
        examples/sim/workloads/registers.toml --faults examples/sim/faults/swarm.toml")]
    Run(crate::sim_run_command::RunArgs),
    /// Run a workload and fault file in the simulator and against real processes, side by
    /// side: how closely the simulator's figures match a real cluster.
    ///
    /// Runs `dsss sim run`'s scenario, then starts `dsss up --no-demo --insecure` (real node
    /// processes on RocksDB, the topology's WAN delays emulated by their transport) in a
    /// temporary directory, runs the same application instances there as `dsss::Client`s
    /// (same registers, mix, popularity, arrivals and payloads) and carries out the fault
    /// script with signals (crash_node: SIGKILL, then a restart after the downtime;
    /// pause_node: SIGSTOP, then SIGCONT). Prints both tables, then per region and operation
    /// class the simulated p50 and p99 over the real ones, and availability and the longest
    /// stall side by side. The real histories get the same order check. Faults that need the
    /// simulator's network (cuts, clock steps, packet faults, the swarm) are refused. Uses the
    /// topology's ports: no other `dsss up` may run on them.
    #[command(after_help = "Examples:\n  \
        dsss sim compare --workload examples/sim/workloads/registers.toml --duration 20s\n  \
        dsss sim compare --workload examples/sim/workloads/registers.toml --faults \
        examples/sim/faults/crash-and-pause.toml --duration 20s")]
    Compare(crate::sim_compare_command::CompareArgs),
    /// Run a workload and fault file across the values of one parameter, several seeds each.
    ///
    /// Varies one of epoch_ms (the epoch length), latency_scale (a factor on every one-way
    /// delay between regions), preferred_leader (the coordinator replica that should lead),
    /// instances_per_region, think_time_max_ms (the longest wait between an instance's
    /// operations, closed loop), rate_per_second (the arrival rate, open loop),
    /// cpu_per_event_us or disk_sync_us (the node costs of --cpu-per-event and --disk-sync),
    /// and runs `dsss sim run`'s scenario for every value and seed, spread over
    /// the cores. Prints one row per value and region (global-write p50 and p99, p50 over
    /// d_max, sync() read p50, availability and throughput, averaged over the seeds); --out
    /// writes sweep.csv. Every run is checked; a failed check exits with 1 and prints the
    /// `dsss sim run --set NAME=VALUE` command that replays that run.
    #[command(after_help = "Examples:\n  \
        dsss sim sweep --workload examples/sim/workloads/registers.toml --param \
        epoch_ms=1,2,5,10,20\n  \
        dsss sim sweep --topology topology/examples/global.toml --workload \
        examples/sim/workloads/registers.toml --param preferred_leader=11,31,51 --seeds 3 \
        --out results/")]
    Sweep(crate::sim_run_command::SweepArgs),
    /// Probe a topology's WAN and the hybrid logical clocks under faults.
    ///
    /// Every node stamps probes with its hybrid logical clock and sends them to random peers
    /// over the simulated WAN of the topology (its one-way delays and jitter). The report gives
    /// the measured one-way delay per region pair beside the configured one, message counts,
    /// and checks that every clock stayed monotonic (across clock steps and crashes), causal
    /// (a receive is later than its send) and skew-bounded (timestamps more than the topology's
    /// max_clock_skew_ms ahead are refused). The run is deterministic: the same seed, settings
    /// and topology print the same report and trace hash. Exits with 1 when a check fails.
    #[command(after_help = "Examples:\n  \
        dsss sim probe\n  \
        dsss sim probe --topology topology/examples/global.toml --seed 7\n  \
        dsss sim probe --loss 0.05 --duplicate 0.05 --reorder 0.1 --crashes 5 --partition \
        --clock-skew-ms 500")]
    Probe(ProbeArgs),
    /// Run one region's raft group (real raft-rs) with clients under faults, on many seeds.
    ///
    /// Each seed runs a region of --members nodes with four clients that call, time out and
    /// retry with the same request sequence; with --faults, members crash and restart, links
    /// are cut, messages are lost, duplicated and reordered, and leadership is transferred, all
    /// drawn from the seed. Then everything heals and the run checks: every acknowledged call is
    /// in every member's log at its acknowledged position, every log is a prefix of the longest,
    /// no call is applied twice, and all members converge. Prints one report per seed; exits
    /// with 1 and names the seed when a check fails.
    #[command(after_help = "Examples:\n  \
        dsss sim region\n  \
        dsss sim region --members 5 --faults --seed 1 --seeds 50")]
    Region(RegionArgs),
    /// A preset of `dsss sim run`: every region and the global coordinator of a topology, with
    /// application instances in every region writing a global register and their region's
    /// regional register, on several seeds.
    ///
    /// Each seed is the run `dsss sim run --workload examples/sim/workloads/writes.toml
    /// --duration 3s --seed S` (with --faults, also `--faults examples/sim/faults/swarm.toml`),
    /// whose files are built into the binary; --clients-per-region and --duration-s set the
    /// workload's instances_per_region and the run's --duration. Region leaders close a batch
    /// every epoch, the coordinator seals epochs at the minimum closed timestamp over the
    /// regions in its membership, and every region appends them. With --faults the seed draws
    /// node crashes, crashes of the coordinator leader, pauses, region cuts (some beyond the
    /// suspicion timeout, so the region is suspected and readmitted), clock skew within the
    /// bound, and loss, duplication and reordering; then everything heals. Every run is checked
    /// as `dsss sim run` checks it (every region holds the same sealed epochs, no acknowledged
    /// call lost or applied twice, one order across objects, convergence) and reports the
    /// write latency per origin region beside d_max, and where each global write's time went.
    /// --out writes each seed's results into DIR/seed-S.
    #[command(after_help = "Examples:\n  \
        dsss sim global\n  \
        dsss sim global --topology topology/examples/global.toml\n  \
        dsss sim global --faults --seed 1 --seeds 20")]
    Global(GlobalArgs),
    /// A preset of `dsss sim run`: the example shared objects through the SDK's own client
    /// session on every region of a topology, on several seeds.
    ///
    /// Each seed is the run `dsss sim run --workload examples/sim/workloads/examples.toml
    /// --duration 3s --seed S` (with --faults, also `--faults examples/sim/faults/swarm.toml`),
    /// whose files are built into the binary. Application instances in every region open
    /// copies of the objects (by default all at once: a global `Bank`, `Counter` and `Lobby`
    /// and their region's regional `Leaderboard`; --object picks one; --small N makes one
    /// instance per region with N operations), call their methods, read them locally and read
    /// them after `sync()`. With --faults, nodes and the coordinator leader crash, members
    /// pause, regions are cut off, clocks skew and messages are lost, duplicated and
    /// reordered, then everything heals. Checks that copies agree on the state hash at equal
    /// positions, each object's own invariant (for the bank: money is never created or
    /// destroyed), that each object's history is sequentially consistent (and `sync()` reads
    /// linearizable), that no acknowledged call is lost or applied twice, and, for small
    /// histories, that one order across all objects explains every result and read; measures
    /// as `dsss sim run` does. --out writes each seed's results into DIR/seed-S.
    #[command(after_help = "Examples:\n  \
        dsss sim sdk\n  \
        dsss sim sdk --object lobby --faults --seeds 5\n  \
        dsss sim sdk --small 6 --faults --seeds 20\n  \
        dsss sim sdk --topology topology/examples/global.toml --faults --seed 3 --seeds 10")]
    Sdk(SdkArgs),
    /// A preset of `dsss sim run`: application instances that each hold several registers at
    /// once through the SDK's own client session, on several seeds.
    ///
    /// Each seed is the run `dsss sim run --workload examples/sim/workloads/registers.toml
    /// --duration 3s --seed S` (with --faults, also `--faults examples/sim/faults/swarm.toml`),
    /// whose files are built into the binary; --objects and --instances-per-region set the
    /// workload's global_registers and instances_per_region. Instances hold --objects global
    /// registers plus their region's regional register, write unique values (a write returns
    /// the value it replaced), read locally and read after `sync()`; with --faults, nodes and
    /// the coordinator leader crash, members pause, regions are cut off, clocks skew and
    /// messages are lost, duplicated and reordered, then everything heals and every instance
    /// reads every register after a final `sync()`. Every run is checked and measured as
    /// `dsss sim run` checks and measures it: one order across objects from the results alone,
    /// linearizable `sync()` reads, convergence, the cluster's own checks; the latency table
    /// per region and operation class. --out writes each seed's results into DIR/seed-S.
    #[command(after_help = "Examples:\n  \
        dsss sim session\n  \
        dsss sim session --faults --seed 1 --seeds 20\n  \
        dsss sim session --topology topology/examples/global.toml --objects 4 --faults \
        --out results/")]
    Session(SessionArgs),
}

/// Options of `dsss sim session`.
#[derive(Debug, Args)]
pub(crate) struct SessionArgs {
    /// The topology file (default: the embedded local topology).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many runs, with seeds seed, seed + 1, ...
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// Draw faults from each seed (otherwise the run is fault-free).
    #[arg(long)]
    faults: bool,
    /// Global registers every instance holds (the workload's global_registers, 1 to 16).
    #[arg(long, value_name = "N", default_value_t = 3)]
    objects: usize,
    /// Instances per region (the workload's instances_per_region, 1 to 16).
    #[arg(long, value_name = "N", default_value_t = 2)]
    instances_per_region: usize,
    /// Writes each seed's results.json, latency.csv, stages.csv and plots into DIR/seed-S.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The workload file of `dsss sim session`, as in the repository.
const SESSION_WORKLOAD: &str = include_str!("../../examples/sim/workloads/registers.toml");

/// The workload file of `dsss sim global`, as in the repository.
const GLOBAL_WORKLOAD: &str = include_str!("../../examples/sim/workloads/writes.toml");

/// The workload file of `dsss sim sdk`, as in the repository.
const SDK_WORKLOAD: &str = include_str!("../../examples/sim/workloads/examples.toml");

/// The fault file of `dsss sim session --faults` and `dsss sim global --faults`, as in the repository.
const SWARM_FAULTS: &str = include_str!("../../examples/sim/faults/swarm.toml");

/// How long the instances of a preset run operate, unless the preset's options say otherwise.
const PRESET_DURATION: Duration = Duration::from_secs(3);

/// The example objects `dsss sim sdk` runs.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum ExampleObject {
    /// All of the below at once in every instance.
    All,
    /// One global bank; transfers between its accounts.
    Bank,
    /// One global counter.
    Counter,
    /// One global game lobby with seats and a capacity.
    Lobby,
    /// One regional leaderboard per region.
    Leaderboard,
}

/// Options of `dsss sim sdk`.
#[derive(Debug, Args)]
pub(crate) struct SdkArgs {
    /// The example objects every instance holds.
    #[arg(long, value_enum, default_value = "all")]
    object: ExampleObject,
    /// The topology file (default: the embedded local topology).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many runs, with seeds seed, seed + 1, ...
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// Draw faults from each seed (otherwise the run is fault-free).
    #[arg(long)]
    faults: bool,
    /// A small run: one instance per region making N operations, so that the exhaustive
    /// search (one order across all objects, found without any position the system reports)
    /// covers the whole history. Every run is searched when its history is small enough;
    /// default runs are far larger.
    #[arg(long, value_name = "N")]
    small: Option<usize>,
    /// Writes each seed's results.json, latency.csv, stages.csv and plots into DIR/seed-S.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// The most operations per instance of `dsss sim sdk --small`: three regions' histories, with
/// the setup calls, stay within the exhaustive search's bound.
const SMALL_OPERATIONS_MAX: usize = 16;

/// Options of `dsss sim global`.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// The topology file (default: the embedded local topology).
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// The seed of the first run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many runs, with seeds seed, seed + 1, ...
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// Draw faults from each seed (otherwise the run is fault-free).
    #[arg(long)]
    faults: bool,
    /// Application instances per region (the workload's instances_per_region, 1 to 16).
    #[arg(long, value_name = "N", default_value_t = 2)]
    clients_per_region: usize,
    /// How long instances write (and faults happen), in simulated seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3.0)]
    duration_s: f64,
    /// Writes each seed's results.json, latency.csv, stages.csv and plots into DIR/seed-S.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Options of `dsss sim region`.
#[derive(Debug, Args)]
pub(crate) struct RegionArgs {
    /// Members of the region's raft group (odd).
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// The first seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// How many consecutive seeds to run, from --seed on.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seeds: u64,
    /// Draw crashes, partitions, loss, duplication, reordering and leader transfers from
    /// each seed.
    #[arg(long)]
    faults: bool,
}

/// The most seeds one `dsss sim region`, `global` or `sdk` runs.
const SEEDS_MAX: u64 = 100_000;

/// Options of `dsss sim probe`.
#[derive(Debug, Args)]
pub(crate) struct ProbeArgs {
    /// Topology file (TOML); the embedded local default (three regions of three nodes) when
    /// omitted.
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// Seed of every random choice in the run.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Simulated seconds of probing.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    duration_s: f64,
    /// Mean time between two probes of one node, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5.0)]
    interval_ms: f64,
    /// Probability that a message is lost.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    loss: f64,
    /// Probability that a message is delivered twice.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    duplicate: f64,
    /// Probability that a message is held back by up to --reorder-ms, so later ones overtake it.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    reorder: f64,
    /// Largest extra delay of a reordered message, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 20.0)]
    reorder_ms: f64,
    /// Number of node crashes (each node restarts after a random downtime).
    #[arg(long, value_name = "N", default_value_t = 0)]
    crashes: u32,
    /// Cut one random region off from the others for part of the run, then heal.
    #[arg(long)]
    partition: bool,
    /// Each node's clock gets a random skew of up to this many milliseconds either way.
    #[arg(long, value_name = "MS", default_value_t = 0.0)]
    clock_skew_ms: f64,
    /// Each node's clock gets a random drift of up to this many parts per million either way.
    #[arg(long, value_name = "PPM", default_value_t = 0)]
    clock_drift_ppm: i64,
}

/// Runs one simulation subcommand.
pub(crate) fn run(command: SimCommand, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    match command {
        SimCommand::Run(args) => crate::sim_run_command::run(&args, stdout, stderr),
        SimCommand::Compare(args) => crate::sim_compare_command::run(&args, stdout, stderr),
        SimCommand::Sweep(args) => crate::sim_run_command::sweep(&args, stdout, stderr),
        SimCommand::Probe(args) => probe(&args, stdout, stderr),
        SimCommand::Region(args) => region(&args, stdout, stderr),
        SimCommand::Global(args) => global(&args, stdout, stderr),
        SimCommand::Sdk(args) => sdk(&args, stdout, stderr),
        SimCommand::Session(args) => session(&args, stdout, stderr),
    }
}

fn session(args: &SessionArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let preset = Preset {
        command: "session",
        workload: SESSION_WORKLOAD,
        topology: args.topology.as_ref(),
        faults: args.faults,
        seed: args.seed,
        seeds: args.seeds,
        duration: Ok(PRESET_DURATION),
        out: args.out.as_deref(),
        options: format!(
            " --objects {} --instances-per-region {}",
            args.objects, args.instances_per_region
        ),
    };
    run_preset(
        preset,
        |workload| {
            if !(1..=GLOBAL_OBJECTS_MAX).contains(&args.objects) {
                return Err(format!(
                    "--objects: {} is outside 1..={GLOBAL_OBJECTS_MAX}",
                    args.objects
                ));
            }
            workload.global_registers = args.objects;
            workload.instances_per_region =
                instances_per_region("--instances-per-region", args.instances_per_region)?;
            Ok(())
        },
        stdout,
        stderr,
    )
}

/// The instances per region a preset's `option` asks for, within the workload file's bound.
fn instances_per_region(option: &str, instances: usize) -> Result<usize, String> {
    if (1..=INSTANCES_PER_REGION_MAX).contains(&instances) {
        Ok(instances)
    } else {
        Err(format!(
            "{option}: {instances} is outside 1..={INSTANCES_PER_REGION_MAX}"
        ))
    }
}

/// One preset of `dsss sim run`: its built-in workload file and the options it was given.
struct Preset<'a> {
    /// The subcommand, as `dsss sim {command}`.
    command: &'static str,
    /// The text of the preset's workload file.
    workload: &'static str,
    /// The topology file, or the embedded local topology.
    topology: Option<&'a PathBuf>,
    /// Whether the built-in swarm fault file applies.
    faults: bool,
    /// The first seed.
    seed: u64,
    /// How many seeds from it.
    seeds: u64,
    /// How long the instances operate, or what is wrong with the option that set it.
    duration: Result<Duration, String>,
    /// Each seed's results go into `out`/seed-S.
    out: Option<&'a Path>,
    /// The preset's own options, as the command that replays a seed repeats them.
    options: String,
}

/// Runs `preset` with its workload as `shape` changes it, for every seed, as `dsss sim run`
/// runs it (each seed's results into `out`/seed-S), and exits 1 naming the seeds whose checks
/// failed, each with the preset's command that replays it; 2 for options it cannot use.
fn run_preset(
    preset: Preset<'_>,
    shape: impl FnOnce(&mut Workload) -> Result<(), String>,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> ExitCode {
    let command = preset.command;
    let scenario = topology_of(preset.topology).and_then(|topology| {
        let mut workload = parse_workload(preset.workload)
            .map_err(|error| format!("the built-in workload: {error}"))?;
        shape(&mut workload)?;
        Ok(Scenario {
            topology,
            workload,
            faults: preset_faults(preset.faults)?,
            seed: preset.seed,
            duration: preset.duration?,
            node_costs: NodeCosts::FREE,
            planted_seal_without_a_region: false,
        })
    });
    let scenario = match scenario {
        Ok(scenario) => scenario,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim {command}: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let seeds = preset.seeds;
    if seeds == 0 || seeds > SEEDS_MAX {
        let _ = writeln!(
            stderr,
            "dsss sim {command}: --seeds: {seeds} is outside 1..={SEEDS_MAX}"
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let mut options = String::new();
    if let Some(topology) = preset.topology {
        options += &format!(" --topology {}", topology.display());
    }
    if preset.faults {
        options += " --faults";
    }
    options += &preset.options;
    let mut failed_seeds = Vec::new();
    for seed in scenario.seed..scenario.seed.saturating_add(seeds) {
        let mut run = scenario.clone();
        run.seed = seed;
        let replay = format!("dsss sim {command} --seed {seed} --seeds 1{options}");
        let directory = preset.out.map(|out| out.join(format!("seed-{seed}")));
        let outputs = RunOutputs {
            out: directory.as_deref(),
            history: None,
        };
        match run_and_report(command, &run, replay, outputs, stdout, stderr) {
            Ok(true) => {}
            Ok(false) => failed_seeds.push(seed),
            Err(exit) => return exit,
        }
    }
    if failed_seeds.is_empty() {
        let _ = writeln!(stdout, "all {seeds} seeds passed every check");
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(
            stderr,
            "dsss sim {command}: checks failed with seeds {failed_seeds:?}"
        );
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

/// The faults of a preset: the standard swarm with `--faults`, none without.
fn preset_faults(faults: bool) -> Result<Faults, String> {
    if faults {
        parse_faults(SWARM_FAULTS).map_err(|error| format!("the built-in fault file: {error}"))
    } else {
        Ok(Faults {
            script: FaultScript::none(),
            standard_swarm: false,
        })
    }
}

/// Runs `run_one` for every seed from `first_seed` on, prints each report, and exits 1 naming
/// the seeds whose checks failed (2 when a run could not start).
fn run_seeds(
    command: &str,
    first_seed: u64,
    seeds: u64,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    mut run_one: impl FnMut(u64) -> Result<(String, bool), String>,
) -> ExitCode {
    if seeds == 0 || seeds > SEEDS_MAX {
        let _ = writeln!(
            stderr,
            "dsss sim {command}: --seeds: {seeds} is outside 1..={SEEDS_MAX}"
        );
        return ExitCode::from(EXIT_BAD_INPUT);
    }
    let mut failed_seeds = Vec::new();
    for seed in first_seed..first_seed.saturating_add(seeds) {
        let (report, passed) = match run_one(seed) {
            Ok(outcome) => outcome,
            Err(message) => {
                let _ = writeln!(stderr, "dsss sim {command}: {message}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        };
        let _ = writeln!(stdout, "{report}");
        if !passed {
            failed_seeds.push(seed);
        }
    }
    if failed_seeds.is_empty() {
        let _ = writeln!(stdout, "all {seeds} seeds passed every check");
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(
            stderr,
            "dsss sim {command}: checks failed with seeds {failed_seeds:?}; replay one with \
             --seed S --seeds 1 and the same options"
        );
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

fn sdk(args: &SdkArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    // One example object, or every one the built-in file names.
    let chosen = match args.object {
        ExampleObject::All => None,
        ExampleObject::Bank => Some(ScenarioExample::Bank),
        ExampleObject::Counter => Some(ScenarioExample::Counter),
        ExampleObject::Lobby => Some(ScenarioExample::Lobby),
        ExampleObject::Leaderboard => Some(ScenarioExample::Leaderboard),
    };
    let mut options = format!(
        " --object {}",
        chosen.map_or("all", |example| example.name())
    );
    if let Some(operations) = args.small {
        options += &format!(" --small {operations}");
    }
    let preset = Preset {
        command: "sdk",
        workload: SDK_WORKLOAD,
        topology: args.topology.as_ref(),
        faults: args.faults,
        seed: args.seed,
        seeds: args.seeds,
        duration: Ok(PRESET_DURATION),
        out: args.out.as_deref(),
        options,
    };
    run_preset(
        preset,
        |workload| {
            if let Some(example) = chosen {
                workload.examples = vec![example];
            }
            if let Some(operations) = args.small {
                if !(1..=SMALL_OPERATIONS_MAX).contains(&operations) {
                    return Err(format!(
                        "--small {operations} is outside 1..={SMALL_OPERATIONS_MAX}"
                    ));
                }
                workload.instances_per_region = 1;
                workload.operations_per_instance_max = operations;
            }
            Ok(())
        },
        stdout,
        stderr,
    )
}

fn global(args: &GlobalArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let duration = seconds("--duration-s", args.duration_s).and_then(|duration| {
        if duration.is_zero() || duration > FAULT_WINDOW_MAX {
            return Err(format!(
                "--duration-s: {}; give more than 0 and at most {} seconds",
                args.duration_s,
                FAULT_WINDOW_MAX.as_secs()
            ));
        }
        Ok(duration)
    });
    let preset = Preset {
        command: "global",
        workload: GLOBAL_WORKLOAD,
        topology: args.topology.as_ref(),
        faults: args.faults,
        seed: args.seed,
        seeds: args.seeds,
        duration,
        out: args.out.as_deref(),
        options: format!(
            " --clients-per-region {} --duration-s {}",
            args.clients_per_region, args.duration_s
        ),
    };
    run_preset(
        preset,
        |workload| {
            workload.instances_per_region =
                instances_per_region("--clients-per-region", args.clients_per_region)?;
            Ok(())
        },
        stdout,
        stderr,
    )
}

fn region(args: &RegionArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    run_seeds("region", args.seed, args.seeds, stdout, stderr, |seed| {
        let mut settings = RegionRunSettings::new(seed, args.members);
        if args.faults {
            settings.faults = RegionFaultPlan::standard();
        }
        run_region(&settings).map(|report| (report.to_string(), report.passed()))
    })
}

fn probe(args: &ProbeArgs, stdout: &mut dyn Write, stderr: &mut dyn Write) -> ExitCode {
    let topology = match topology_of(args.topology.as_ref()) {
        Ok(topology) => topology,
        Err(message) => {
            let _ = writeln!(stderr, "{message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let settings = match probe_settings(args) {
        Ok(settings) => settings,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim probe: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let report = match run_probe(&topology, &settings) {
        Ok(report) => report,
        Err(message) => {
            let _ = writeln!(stderr, "dsss sim probe: {message}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let _ = writeln!(stdout, "{report}");
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        let _ = writeln!(
            stderr,
            "dsss sim probe: a check failed with seed {}; replay it with the same options and \
             --seed {}",
            settings.seed, settings.seed
        );
        ExitCode::from(EXIT_CHECK_FAILED)
    }
}

fn topology_of(file: Option<&PathBuf>) -> Result<Topology, String> {
    match file {
        Some(path) => load(path).map_err(|diagnostics| diagnostics.to_string()),
        None => Ok(local_default()),
    }
}

/// Converts command-line values to settings, naming the option of any value out of range.
fn probe_settings(args: &ProbeArgs) -> Result<ProbeRunSettings, String> {
    let duration = seconds("--duration-s", args.duration_s)?;
    let mut settings = ProbeRunSettings::new(args.seed, duration);
    settings.probe_interval = seconds("--interval-ms", args.interval_ms / 1_000.0)?;
    settings.faults = NetworkFaults {
        loss_probability: probability("--loss", args.loss)?,
        duplication_probability: probability("--duplicate", args.duplicate)?,
        reorder_probability: probability("--reorder", args.reorder)?,
        reorder_delay_max: seconds("--reorder-ms", args.reorder_ms / 1_000.0)?,
    };
    settings.crash_count = args.crashes;
    settings.region_partition = args.partition;
    let skew = seconds("--clock-skew-ms", args.clock_skew_ms / 1_000.0)?;
    settings.clock_skew_us_max = i64::try_from(skew.as_micros())
        .map_err(|_| format!("--clock-skew-ms: {} is too large", args.clock_skew_ms))?;
    settings.clock_drift_ppm_max = args.clock_drift_ppm;
    settings.validate()?;
    Ok(settings)
}

fn seconds(option: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("{option}: {value} is not a usable length of time"))
}

fn probability(option: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!(
            "{option}: {value} is not a probability between 0 and 1"
        ))
    }
}
