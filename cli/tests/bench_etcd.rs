//! `dsss bench region --against-etcd` as a user runs it: a short run against a real
//! three-member etcd cluster and a real three-node DSSS region, and the refusal when there is
//! no etcd binary. The run needs the `etcd` binary of Debian's etcd-server package on the PATH
//! (CI installs it); without it the run is skipped with a message. The tests check what the
//! output says, never how fast either system was.

use std::process::{Command, Output};

fn dsss(arguments: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dsss"))
        .args(arguments)
        .output()
        .expect("run dsss")
}

fn etcd_on_path() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|directory| directory.join("etcd").is_file())
}

#[test]
fn a_missing_etcd_binary_is_refused_with_the_package_named_and_status_2() {
    let output = dsss(&[
        "bench",
        "region",
        "--against-etcd",
        "--etcd-binary",
        "/nonexistent",
        "--clients",
        "1",
        "--seconds",
        "1",
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent"), "{stderr}");
    assert!(stderr.contains("etcd-server"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing is measured: {}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn the_etcd_binary_flag_needs_the_side_by_side_flag() {
    let output = dsss(&["bench", "region", "--etcd-binary", "/usr/bin/etcd"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--against-etcd"), "{stderr}");
}

#[test]
fn help_describes_the_side_by_side_run() {
    let output = dsss(&["bench", "region", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("--against-etcd"), "{help}");
    assert!(help.contains("--etcd-binary"), "{help}");
    assert!(help.contains("etcd-server"), "{help}");
    assert!(help.contains("fdatasync"), "{help}");
}

/// The numbers of a table row: the level, then etcd's five columns, DSSS's five, the ratio.
fn row_numbers(line: &str) -> Option<Vec<f64>> {
    line.split_whitespace()
        .map(|field| field.parse::<f64>().ok())
        .collect()
}

#[test]
fn a_side_by_side_run_prints_both_systems_and_their_ratio_per_level() {
    if !etcd_on_path() {
        eprintln!(
            "skipped: no etcd binary on the PATH (install Debian's etcd-server package to run \
             this test)"
        );
        return;
    }
    let output = dsss(&[
        "bench",
        "region",
        "--against-etcd",
        "--clients",
        "1,4",
        "--seconds",
        "1",
        "--connections",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    let fsync = stdout
        .lines()
        .find(|line| line.starts_with("fsync latency"))
        .unwrap_or_else(|| panic!("no fsync line:\n{stdout}"));
    assert!(
        fsync.contains("fdatasync") && fsync.contains("p50") && fsync.contains("p99"),
        "{fsync}"
    );
    assert!(stdout.contains("clients send to the leader"), "{stdout}");
    let header = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("clients"))
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    assert!(header.contains("dsss/etcd"), "{header}");
    let rows: Vec<Vec<f64>> = stdout.lines().filter_map(row_numbers).collect();
    assert_eq!(rows.len(), 2, "one row per level:\n{stdout}");
    for (row, level) in rows.iter().zip([1.0, 4.0]) {
        assert_eq!(row.len(), 12, "{row:?}\n{stdout}");
        assert_eq!(row[0], level, "{stdout}");
        let (etcd_records, dsss_records, ratio) = (row[1], row[6], row[11]);
        assert!(etcd_records > 0.0, "etcd committed nothing:\n{stdout}");
        assert!(dsss_records > 0.0, "dsss committed nothing:\n{stdout}");
        let expected = dsss_records / etcd_records;
        assert!(
            (ratio - expected).abs() <= 0.02 + expected * 0.02,
            "the ratio {ratio} is not dsss/etcd ({expected}):\n{stdout}"
        );
    }
}
