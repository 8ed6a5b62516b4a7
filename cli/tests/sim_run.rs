//! `dsss sim run` as a researcher meets it: the example files in the repository run, the same
//! seed and files give byte-identical JSON, other seeds differ, and wrong input is refused
//! naming what is wrong.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn dsss(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsss"))
        .args(arguments)
        .output()
        .expect("run dsss")
}

fn example(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/sim")
        .join(path)
        .display()
        .to_string()
}

/// A fresh directory for one test's files.
fn scratch(name: &str) -> PathBuf {
    let directory =
        std::env::temp_dir().join(format!("dsss-sim-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("a scratch directory");
    directory
}

/// Runs the example workload and fault script with `seed`, writing into `out`.
fn run_example(seed: u64, out: &Path) -> Output {
    dsss(&[
        "sim",
        "run",
        "--workload",
        &example("workloads/zipf.toml"),
        "--faults",
        &example("faults/cut-and-crash.toml"),
        "--seed",
        &seed.to_string(),
        "--duration",
        "10s",
        "--out",
        &out.display().to_string(),
    ])
}

#[test]
fn the_same_seed_and_files_give_the_same_json_and_other_seeds_differ() {
    let directory = scratch("determinism");
    let mut results = Vec::new();
    for (seed, name) in [(3, "first"), (3, "again"), (4, "other")] {
        let out = directory.join(name);
        let output = run_example(seed, &out);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "seed {seed}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("one order across objects"), "{stdout}");
        assert!(stdout.contains("global_write"), "{stdout}");
        let json = std::fs::read_to_string(out.join("results.json")).expect("results.json");
        let csv = std::fs::read_to_string(out.join("latency.csv")).expect("latency.csv");
        assert!(json.contains("\"passed\": true"), "{json}");
        assert!(
            json.contains("\"region_cuts_beyond_suspicion\": 1"),
            "the script's isolation of local-c for 3 s: {json}"
        );
        // A header, then a row per region and class that had operations: every region made
        // global writes (a Zipf law may leave a region's regional register unpicked).
        let header_columns = csv.lines().next().expect("a header").split(',').count();
        assert!(
            csv.lines()
                .all(|line| line.split(',').count() == header_columns),
            "{csv}"
        );
        assert_eq!(
            csv.lines()
                .filter(|line| line.contains(",global_write,"))
                .count(),
            3,
            "{csv}"
        );
        // The plots, with labelled axes and one curve per region.
        for plot in ["latency-cdf", "latency-over-time"] {
            let svg = std::fs::read_to_string(out.join(format!("{plot}.svg"))).expect("an SVG");
            for text in ["latency (ms)", "local-a", "local-b", "local-c"] {
                assert!(svg.contains(text), "{plot}.svg lacks {text:?}");
            }
            let png = std::fs::read(out.join(format!("{plot}.png"))).expect("a PNG");
            assert!(png.starts_with(b"\x89PNG"), "{plot}.png is no PNG");
        }
        results.push(json);
    }
    assert_eq!(results[0], results[1], "one seed and the same files, twice");
    assert_ne!(results[0], results[2], "seeds 3 and 4");
    let _ = std::fs::remove_dir_all(&directory);
}

#[test]
fn wrong_files_and_options_are_refused_naming_what_is_wrong() {
    let directory = scratch("refusals");
    let unknown_region = directory.join("mars.toml");
    std::fs::write(
        &unknown_region,
        "[[fault]]\nat = \"1s\"\nkind = \"isolate_region\"\nregion = \"mars\"\nfor = \"1s\"\n",
    )
    .expect("writes");
    let bad_mix = directory.join("mix.toml");
    let workload = std::fs::read_to_string(example("workloads/registers.toml")).expect("reads");
    std::fs::write(&bad_mix, workload.replace("write = 0.5", "write = 0.9")).expect("writes");
    let missing = directory.join("missing.toml").display().to_string();
    let registers = example("workloads/registers.toml");
    let cases: [(Vec<&str>, &str); 8] = [
        (vec!["--workload", &missing], "missing.toml"),
        (
            vec![
                "--workload",
                &registers,
                "--faults",
                unknown_region.to_str().expect("a path"),
            ],
            "region \"mars\" is not in the topology",
        ),
        (
            vec!["--workload", bad_mix.to_str().expect("a path")],
            "the shares sum to 1",
        ),
        (
            vec!["--workload", &registers, "--duration", "ten seconds"],
            "--duration",
        ),
        (
            vec!["--workload", &registers, "--cpu-per-kind", "disk=1ms"],
            "no kind of work is called \"disk\"; the kinds are client, raft, global, timer",
        ),
        (
            vec!["--workload", &registers, "--cpu-per-kind", "raft"],
            "\"raft\" is not KIND=DURATION",
        ),
        (
            vec![
                "--workload",
                &registers,
                "--cpu-per-kind",
                "raft=1ms,raft=2ms",
            ],
            "raft is named twice",
        ),
        (
            vec!["--workload", &registers, "--cpu-per-kind", "global=2s"],
            "the CPU per global event cost of 2s is beyond the bound",
        ),
    ];
    for (arguments, expected) in cases {
        let mut all = vec!["sim", "run"];
        all.extend(arguments.iter().copied());
        let output = dsss(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}: {stderr}");
        assert!(stderr.contains(expected), "{expected:?} not in {stderr}");
    }
    let _ = std::fs::remove_dir_all(&directory);
}

/// A run that breaks a guarantee (here a planted bug in the coordinator, behind a hidden
/// option) exits with 1 and prints the command that replays it.
#[test]
fn a_broken_guarantee_exits_with_1_and_prints_the_command_that_replays_it() {
    let workload = example("workloads/registers.toml");
    let output = dsss(&[
        "sim",
        "run",
        "--workload",
        &workload,
        "--seed",
        "1",
        "--duration",
        "4s",
        "--planted-seal-without-a-region",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let replay = format!(
        "replay: dsss sim run --workload {workload} --seed 1 --duration 4s \
         --planted-seal-without-a-region"
    );
    assert!(stderr.contains(&replay), "{replay:?} not in {stderr}");
    assert!(stderr.contains("seed 1"), "{stderr}");
}

/// `dsss sim sweep` prints one row per value and region and writes sweep.csv; any run of it
/// can be replayed alone with `dsss sim run --set`.
#[test]
fn a_sweep_prints_a_row_per_value_and_region_and_a_run_replays_with_set() {
    let directory = scratch("sweep");
    let workload = example("workloads/registers.toml");
    let output = dsss(&[
        "sim",
        "sweep",
        "--workload",
        &workload,
        "--param",
        "latency_scale=0.5,2",
        "--duration",
        "3s",
        "--out",
        &directory.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = std::fs::read_to_string(directory.join("sweep.csv")).expect("sweep.csv");
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    assert!(csv.starts_with("latency_scale,region,"), "{csv}");
    let svg = std::fs::read_to_string(directory.join("sweep.svg")).expect("sweep.svg");
    assert!(
        svg.contains("latency_scale") && svg.contains("local-c"),
        "{svg}"
    );
    let png = std::fs::read(directory.join("sweep.png")).expect("sweep.png");
    assert!(png.starts_with(b"\x89PNG"));
    assert!(stdout.contains("2 runs (2 values x 1 seeds)"), "{stdout}");
    let output = dsss(&[
        "sim",
        "run",
        "--workload",
        &workload,
        "--duration",
        "3s",
        "--set",
        "latency_scale=2",
    ]);
    assert!(output.status.success());
    let output = dsss(&[
        "sim",
        "run",
        "--workload",
        &workload,
        "--set",
        "epoch_ms=1,2",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("one value"));
    let _ = std::fs::remove_dir_all(&directory);
}

/// Without a font the plots are not drawn, the run says why and how to mend it, and the
/// results are written all the same.
#[test]
fn without_a_font_the_plots_are_skipped_saying_why() {
    let directory = scratch("no-font");
    let output = Command::new(env!("CARGO_BIN_EXE_dsss"))
        .args([
            "sim",
            "run",
            "--workload",
            &example("workloads/registers.toml"),
            "--duration",
            "2s",
            "--out",
            &directory.display().to_string(),
        ])
        .env("DSSS_PLOT_FONT", directory.join("no-such-font.ttf"))
        .output()
        .expect("run dsss");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("the plots were not drawn") && stderr.contains("DSSS_PLOT_FONT"),
        "{stderr}"
    );
    assert!(directory.join("results.json").is_file());
    assert!(!directory.join("latency-cdf.png").exists());
    let _ = std::fs::remove_dir_all(&directory);
}

/// `dsss sim sdk` searches every history small enough for one order across all objects
/// without positions, says so, and says when a history is too large to search.
#[test]
fn sim_sdk_searches_small_histories_exhaustively_and_says_when_one_is_too_large() {
    let small = dsss(&["sim", "sdk", "--small", "4", "--faults", "--seed", "2"]);
    let stdout = String::from_utf8_lossy(&small.stdout);
    assert!(small.status.success(), "{stdout}");
    assert!(
        stdout.contains("exhaustive search: one order of"),
        "{stdout}"
    );
    let default = dsss(&["sim", "sdk", "--object", "counter"]);
    let stdout = String::from_utf8_lossy(&default.stdout);
    assert!(default.status.success(), "{stdout}");
    assert!(stdout.contains("more than the 64 it searches"), "{stdout}");
    let refused = dsss(&["sim", "sdk", "--small", "17"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--small 17 is outside 1..=16"));
}

/// An open-loop workload file runs from the command line, and its results name the arrivals.
#[test]
fn an_open_loop_workload_runs_and_reports_its_arrivals() {
    let directory = scratch("open-loop");
    let output = dsss(&[
        "sim",
        "run",
        "--workload",
        &example("workloads/open-loop.toml"),
        "--duration",
        "3s",
        "--out",
        &directory.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let json = std::fs::read_to_string(directory.join("results.json")).expect("results.json");
    let results: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    for region in ["local-a", "local-b", "local-c"] {
        let arrivals = results["results"]["regions"][region]["arrivals"]
            .as_u64()
            .unwrap_or_else(|| panic!("{region} has arrivals: {json}"));
        assert!(arrivals > 0, "{region}: {json}");
    }
    let csv = std::fs::read_to_string(directory.join("latency.csv")).expect("latency.csv");
    assert!(
        csv.lines()
            .next()
            .unwrap()
            .ends_with("region_arrivals_shed")
    );
    // Where the global writes' time went, per region and stage.
    let stages = std::fs::read_to_string(directory.join("stages.csv")).expect("stages.csv");
    assert!(stages.contains("local-c,coordinator_round,"), "{stages}");
    assert!(stdout.contains("watermark_wait"), "{stdout}");
}

/// `dsss sim compare` runs the same files in the simulator and against real processes
/// (`dsss up`), crashing a node with SIGKILL on both sides, and prints the ratios per region;
/// faults that signals cannot give are refused by name.
#[test]
fn compare_runs_the_files_in_the_simulator_and_on_real_processes_side_by_side() {
    let directory = scratch("compare");
    let faults = directory.join("crash.toml");
    std::fs::write(
        &faults,
        "[[fault]]\nat = \"1s\"\nkind = \"crash_node\"\nnode = 12\nfor = \"1s\"\n",
    )
    .expect("a fault file");
    let output = Command::new(env!("CARGO_BIN_EXE_dsss"))
        .args([
            "sim",
            "compare",
            "--workload",
            &example("workloads/registers.toml"),
            "--faults",
            &faults.display().to_string(),
            "--duration",
            "4s",
        ])
        .current_dir(&directory)
        .output()
        .expect("run dsss");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("real processes (dsss up"), "{stdout}");
    for region in ["local-a", "local-b", "local-c"] {
        let ratios = stdout
            .lines()
            .filter(|line| line.starts_with(region) && line.contains("global_write"))
            .count();
        // The simulated table, the real one, and the comparison.
        assert_eq!(ratios, 3, "{region}: {stdout}");
    }
    assert!(stdout.contains("sim/real"), "{stdout}");
    assert!(
        stdout.contains("real histories: one order across objects"),
        "{stdout}"
    );
    let refused = dsss(&[
        "sim",
        "compare",
        "--workload",
        &example("workloads/registers.toml"),
        "--faults",
        &example("faults/cut-and-crash.toml"),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("need the simulator's network"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}

/// The trace hash a run prints, one per seed.
fn trace_hashes(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|line| line.split("; trace ").nth(1))
        .map(str::to_owned)
        .collect()
}

/// `dsss sim session`, `global` and `sdk` are presets of `dsss sim run`: each seed is the
/// same run, event for event, as `dsss sim run` with the preset's files from the repository,
/// and each prints the run's latency table; their options are refused naming the option.
#[test]
fn session_global_and_sdk_are_presets_of_run_with_the_repositorys_files() {
    let presets = [
        (
            vec!["sim", "session", "--faults", "--seed", "2", "--seeds", "2"],
            "workloads/registers.toml",
            "3s",
        ),
        (
            vec![
                "sim",
                "global",
                "--faults",
                "--seed",
                "2",
                "--seeds",
                "2",
                "--duration-s",
                "2",
            ],
            "workloads/writes.toml",
            "2s",
        ),
        (
            vec!["sim", "sdk", "--faults", "--seed", "2", "--seeds", "2"],
            "workloads/examples.toml",
            "3s",
        ),
    ];
    for (preset, workload, duration) in presets {
        let output = dsss(&preset);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{preset:?}: {stdout}");
        assert!(
            stdout.contains("all 2 seeds passed every check"),
            "{stdout}"
        );
        assert!(stdout.contains("global_write"), "{stdout}");
        let preset_hashes = trace_hashes(&stdout);
        assert_eq!(preset_hashes.len(), 2, "{stdout}");
        assert_ne!(preset_hashes[0], preset_hashes[1], "seeds differ");
        for (seed, preset_hash) in [2, 3].into_iter().zip(&preset_hashes) {
            let run = dsss(&[
                "sim",
                "run",
                "--workload",
                &example(workload),
                "--faults",
                &example("faults/swarm.toml"),
                "--duration",
                duration,
                "--seed",
                &seed.to_string(),
            ]);
            let run_stdout = String::from_utf8_lossy(&run.stdout);
            assert!(run.status.success(), "{run_stdout}");
            assert_eq!(
                trace_hashes(&run_stdout),
                vec![preset_hash.clone()],
                "{preset:?}, seed {seed}: the preset and the run went apart"
            );
        }
    }
    let refused = dsss(&["sim", "session", "--objects", "17"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--objects: 17 is outside 1..=16"));
    let refused = dsss(&["sim", "global", "--clients-per-region", "0"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("--clients-per-region: 0 is outside 1..=16")
    );
}

/// A workload file that names the example objects runs from the command line under the
/// scripted faults, with the example objects' checks; its exported history names each call's
/// method; `dsss sim compare` refuses it, saying why.
#[test]
fn a_workload_of_example_objects_runs_exports_its_history_and_is_refused_by_compare() {
    let directory = scratch("examples");
    let history = directory.join("history.jsonl");
    let output = dsss(&[
        "sim",
        "run",
        "--workload",
        &example("workloads/examples.toml"),
        "--faults",
        &example("faults/crash-and-pause.toml"),
        "--duration",
        "10s",
        "--history",
        &history.display().to_string(),
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("each object's invariant") && stdout.contains(": ok; trace"),
        "{stdout}"
    );
    let lines = std::fs::read_to_string(&history).expect("the history file");
    assert!(
        lines.contains(r#""object":"sim/bank","op":"call","method":"transfer""#),
        "{lines}"
    );
    let refused = dsss(&[
        "sim",
        "compare",
        "--workload",
        &example("workloads/examples.toml"),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("example objects") && stderr.contains("registers"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&directory);
}
