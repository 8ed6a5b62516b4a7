//! The `dsss` command line as a user meets it: help texts and usage errors. Running these
//! also makes `cargo test --workspace` build the binary that the process tests in `dsss-tests`
//! start.

use std::process::Command;

fn dsss(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dsss"))
        .args(arguments)
        .output()
        .expect("run dsss")
}

#[test]
fn help_lists_the_topology_commands_with_examples() {
    let output = dsss(&["topology", "--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("check"), "{help}");
    assert!(help.contains("show"), "{help}");

    let output = dsss(&["topology", "show", "--help"]);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(help.contains("embedded default topology"), "{help}");
    assert!(help.contains("Examples:"), "{help}");
}

#[test]
fn usage_errors_exit_with_status_2() {
    for arguments in [&["topology", "check"][..], &["topology", "frobnicate"], &[]] {
        let output = dsss(arguments);
        assert_eq!(output.status.code(), Some(2), "dsss {arguments:?}");
    }
}
