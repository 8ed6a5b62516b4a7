//! `dsss topology check` and `dsss topology show`, run as a user runs them: the real binary in
//! a child process, judged by its exit status and output. Build the binary first with
//! `cargo build -p dsss-cli`. Reference: docs/design.md section 5.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use dsss_tests::{run_dsss, workspace_root};

/// The topology crate's directory; the broken files' expected diagnostics name them by paths
/// relative to it.
fn topology_dir() -> PathBuf {
    workspace_root().join("topology")
}

fn broken_files() -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(topology_dir().join("tests/broken"))
        .expect("list topology/tests/broken")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .map(|path| {
            let name = path.file_name().expect("file name").to_string_lossy();
            format!("tests/broken/{name}")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "broken files missing: {files:?}");
    files
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

#[test]
fn check_accepts_both_example_files() {
    let output = run_dsss(
        &topology_dir(),
        [
            "topology",
            "check",
            "examples/local.toml",
            "examples/global.toml",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(
        text(&output.stdout),
        "ok: examples/local.toml: cluster \"local\", 3 regions, 9 nodes, coordinator on nodes [11, 21, 31]\n\
         ok: examples/global.toml: cluster \"global\", 6 regions, 18 nodes, coordinator on nodes [11, 21, 51]\n"
    );
    assert!(output.stderr.is_empty(), "{}", describe(&output));
}

#[test]
fn check_reports_each_broken_file_with_line_and_field() {
    for file in broken_files() {
        let output = run_dsss(&topology_dir(), ["topology", "check", file.as_str()]);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{file}: {}",
            describe(&output)
        );
        assert!(output.stdout.is_empty(), "{file}: {}", describe(&output));
        // The command prints exactly the diagnostics the library gives (kept as golden files
        // beside the broken files), then a one-line summary.
        let expected_path = topology_dir().join(Path::new(&file).with_extension("expected"));
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|error| panic!("{}: {error}", expected_path.display()));
        let stderr = text(&output.stderr);
        assert_eq!(
            stderr,
            format!("{expected}dsss topology check: 1 of 1 files have problems\n"),
            "{file}"
        );
        // Every diagnostic names the file, a line and column, and a field.
        for line in expected.lines() {
            let rest = line
                .strip_prefix(&format!("{file}:"))
                .unwrap_or_else(|| panic!("{file}: diagnostic without the file name: {line}"));
            let mut parts = rest.splitn(4, ": ");
            let position = parts.next().unwrap_or_default();
            let field = parts.next().unwrap_or_default();
            let located = position
                .split(':')
                .all(|number| number.parse::<usize>().is_ok_and(|number| number >= 1))
                && position.split(':').count() == 2;
            assert!(located, "{file}: no line:column in {line}");
            assert!(!field.is_empty(), "{file}: no field in {line}");
        }
    }
}

#[test]
fn check_of_several_files_reports_all_of_them() {
    let output = run_dsss(
        &topology_dir(),
        [
            "topology",
            "check",
            "tests/broken/groups.toml",
            "examples/local.toml",
            "tests/broken/bad-numbers.toml",
            "tests/broken/missing-file.toml",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert_eq!(
        stdout,
        "ok: examples/local.toml: cluster \"local\", 3 regions, 9 nodes, coordinator on nodes [11, 21, 31]\n"
    );
    let stderr = text(&output.stderr);
    for expected in [
        "tests/broken/groups.toml:10:12: coordinator.replicas: 4 replicas given",
        "tests/broken/groups.toml:22:9: regions[1].nodes: 0 nodes given",
        "tests/broken/bad-numbers.toml:4:12: cluster.epoch_ms: 0 is out of range",
        "tests/broken/bad-numbers.toml:31:14: latency[0].one_way_ms: 1e12 is out of range",
        "tests/broken/missing-file.toml: file: cannot open: ",
        "dsss topology check: 3 of 4 files have problems",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn show_prints_the_region_table_and_d_max() {
    let output = run_dsss(
        &topology_dir(),
        ["topology", "show", "examples/global.toml"],
    );
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    for expected in [
        "cluster \"global\"",
        "  region          node  address         data dir                     coordinator",
        "  us-east-1       11    127.0.0.1:7111  data/us-east-1/node-11       replica",
        "  us-west-2       21    127.0.0.1:7121  data/us-west-2/node-21       replica, preferred leader",
        "  eu-west-1       31    127.0.0.1:7131  data/eu-west-1/node-31",
        "  sa-east-1       57 +- 1.14   87.5 +- 1.75  89 +- 1.78    162 +- 3.24     128.5 +- 2.57   0.5 +- 0.05",
        "d_max = 162 ms (between ap-southeast-1 and sa-east-1)",
    ] {
        assert!(
            stdout.lines().any(|line| line == expected),
            "missing line {expected:?} in:\n{stdout}"
        );
    }
}

#[test]
fn show_without_a_file_uses_the_embedded_local_topology() {
    // Run from an empty directory: the default must not depend on any file.
    let empty_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dsss-tests-show-default");
    fs::create_dir_all(&empty_dir).expect("create directory");
    let output = run_dsss(&empty_dir, ["topology", "show"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = text(&output.stdout);
    assert!(stdout.starts_with("topology: embedded default"), "{stdout}");
    assert!(
        stdout.lines().any(|line| line
            == "  local-a  11    127.0.0.1:7111, metrics on 127.0.0.1:9111  data/local-a/node-11  replica, preferred leader"),
        "{stdout}"
    );
    assert!(
        stdout.ends_with("d_max = 35 ms (between local-a and local-c)\n"),
        "{stdout}"
    );
}

#[test]
fn show_of_a_broken_file_prints_its_problems_and_fails() {
    let output = run_dsss(
        &topology_dir(),
        ["topology", "show", "tests/broken/latency-matrix.toml"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert!(output.stdout.is_empty(), "{}", describe(&output));
    assert!(
        text(&output.stderr).contains("latency[1]: asymmetric latency matrix"),
        "{}",
        describe(&output)
    );
}
