//! `dsss sim probe`, run as a user runs it: the real binary in a child process. A run is
//! reproducible from its seed, reports every region pair, and refuses bad settings by name.
//! Reference: docs/design.md sections 3 and 6 (a seed reproduces everything).

use std::process::Output;

use dsss_tests::{run_dsss, workspace_root};

fn stdout_of(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("the report is UTF-8")
}

const FAULTY_RUN: [&str; 16] = [
    "sim",
    "probe",
    "--topology",
    "topology/examples/global.toml",
    "--duration-s",
    "1",
    "--loss",
    "0.05",
    "--duplicate",
    "0.05",
    "--reorder",
    "0.1",
    "--crashes",
    "3",
    "--clock-skew-ms",
    "400",
];

#[test]
fn the_same_seed_prints_the_same_report_and_trace_hash() {
    let root = workspace_root();
    let with_seed = |seed: &str| {
        let mut arguments: Vec<&str> = FAULTY_RUN.to_vec();
        arguments.extend(["--partition", "--seed", seed]);
        run_dsss(root, arguments)
    };
    let first = with_seed("11");
    let second = with_seed("11");
    let other = with_seed("12");
    assert!(first.status.success(), "{first:?}");
    assert_eq!(stdout_of(&first), stdout_of(&second));
    let hash_line = |output: &Output| {
        stdout_of(output)
            .lines()
            .find(|line| line.starts_with("trace: "))
            .expect("a trace line")
            .to_string()
    };
    assert_ne!(hash_line(&first), hash_line(&other));
    let report = stdout_of(&first);
    assert!(
        report.contains("checks: monotonic, causal and skew-bounded clocks: ok"),
        "{report}"
    );
    assert!(report.contains("us-east-1 -> sa-east-1"), "{report}");
}

#[test]
fn the_default_run_on_the_embedded_topology_passes_every_check() {
    let output = run_dsss(workspace_root(), ["sim", "probe", "--duration-s", "1"]);
    assert!(output.status.success(), "{output:?}");
    let report = stdout_of(&output);
    assert!(report.contains("cluster \"local\""), "{report}");
    assert!(
        report.contains("delays within delay +- jitter: ok"),
        "{report}"
    );
    let pair_rows = report
        .lines()
        .filter(|line| line.starts_with("local-"))
        .count();
    assert_eq!(pair_rows, 9, "{report}");
}

#[test]
fn bad_settings_and_files_are_refused_with_what_was_wrong() {
    let root = workspace_root();
    let output = run_dsss(root, ["sim", "probe", "--loss", "1.5"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--loss: 1.5 is not a probability"),
        "{stderr}"
    );

    let output = run_dsss(
        root,
        [
            "sim",
            "probe",
            "--topology",
            "topology/tests/broken/groups.toml",
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("groups.toml:10:12: coordinator.replicas"),
        "{stderr}"
    );
}

#[test]
fn a_simulated_region_under_faults_passes_its_checks_and_names_bad_options() {
    let root = workspace_root();
    let output = run_dsss(
        root,
        [
            "sim",
            "region",
            "--members",
            "3",
            "--faults",
            "--seed",
            "1",
            "--seeds",
            "3",
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let report = stdout_of(&output);
    assert_eq!(report.matches("region run: seed").count(), 3, "{report}");
    assert!(
        report.contains("all 3 seeds passed every check"),
        "{report}"
    );

    let output = run_dsss(root, ["sim", "region", "--members", "4"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("member"), "{stderr}");
}

#[test]
fn every_example_object_runs_in_the_simulator_and_a_wrong_name_is_refused() {
    let root = workspace_root();
    for object in ["all", "bank", "counter", "lobby", "leaderboard"] {
        let output = run_dsss(root, ["sim", "sdk", "--object", object]);
        assert!(output.status.success(), "{object}: {output:?}");
        let report = stdout_of(&output);
        assert!(
            report.contains("all 1 seeds passed every check"),
            "{object}: {report}"
        );
    }
    let output = run_dsss(root, ["sim", "sdk", "--object", "piggy-bank"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("piggy-bank") && stderr.contains("lobby"),
        "{stderr}"
    );
}
