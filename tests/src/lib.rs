//! Multi-process tests of DSSS on loopback: helpers that find and run the real `dsss` binary,
//! and ([`processes`]) that run a cluster of `dsss node` processes and wait on it.
//!
//! The tests in `tests/` start the binary built by `cargo build -p dsss-cli` (or by
//! `cargo test --workspace`, which builds it because `dsss-cli` has integration tests of its
//! own), in the same target directory as the test executable.
#![deny(missing_docs)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod processes;

/// The `dsss` binary next to this test executable's profile directory.
///
/// Test executables live in `<target>/<profile>/deps/`, the binary in `<target>/<profile>/`, so
/// the path is derived from [`std::env::current_exe`]; this follows `CARGO_TARGET_DIR` and the
/// profile without reading either.
///
/// # Panics
///
/// When the binary has not been built, with a message that says how to build it.
pub fn dsss_binary() -> PathBuf {
    let test_executable = std::env::current_exe()
        .unwrap_or_else(|error| panic!("cannot locate the running test executable: {error}"));
    let deps_dir = test_executable
        .parent()
        .unwrap_or_else(|| panic!("{} has no parent directory", test_executable.display()));
    // Cargo puts integration test executables in `deps`; the profile directory is above it.
    let profile_dir = if deps_dir.ends_with("deps") {
        deps_dir.parent().unwrap_or(deps_dir)
    } else {
        deps_dir
    };
    let binary = profile_dir.join(format!("dsss{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.is_file(),
        "the dsss binary is not built: {} does not exist. Build it first with \
         `cargo build -p dsss-cli` (same CARGO_TARGET_DIR and profile as the tests), or run \
         `cargo test --workspace`, which builds it.",
        binary.display()
    );
    binary
}

/// The root of the DSSS workspace, for reaching files such as `topology/examples/local.toml`.
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    // This crate lives one level below the workspace root.
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// Runs `dsss` with the given arguments in `working_dir` and waits for it to exit.
///
/// # Panics
///
/// When the binary is missing (see [`dsss_binary`]) or cannot be started.
pub fn run_dsss<I, S>(working_dir: &Path, arguments: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let binary = dsss_binary();
    Command::new(&binary)
        .args(arguments)
        .current_dir(working_dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", binary.display()))
}
