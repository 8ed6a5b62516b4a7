//! The tokio runtime a command runs its async work on, and the setup the operator's commands
//! share (the topology, and the admin certificate to reach its nodes with).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use dsss_topology::{Topology, load};
use dsss_wire::tls::Security;

/// A multi-threaded runtime for a command, or, when it cannot start, the exit code `failure`
/// after saying why on `stderr`.
pub fn multi_thread(
    stderr: &mut dyn Write,
    failure: u8,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            let _ = writeln!(stderr, "cannot start the async runtime: {error}");
            ExitCode::from(failure)
        })
}

/// A single-threaded runtime for a command that asks nodes and waits, or, when it cannot start,
/// the exit code `failure` after saying why on `stderr`.
pub fn current_thread(
    stderr: &mut dyn Write,
    failure: u8,
) -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| {
            let _ = writeln!(stderr, "cannot start the async runtime: {error}");
            ExitCode::from(failure)
        })
}

/// The topology at `path` and how an operator's command reaches its nodes (mutual TLS with the
/// admin certificate of its `[tls]` table, plaintext without one), or the exit code
/// `bad_input` after saying what is wrong on `stderr`.
pub fn operator_setup(
    path: &Path,
    stderr: &mut dyn Write,
    bad_input: u8,
) -> Result<(Topology, Security), ExitCode> {
    let topology = load(path).map_err(|diagnostics| {
        let _ = write!(stderr, "{diagnostics}");
        ExitCode::from(bad_input)
    })?;
    let security =
        crate::tls_setup::caller_security(&topology, path, crate::tls_setup::Role::Admin).map_err(
            |error| {
                let _ = writeln!(stderr, "{error}");
                ExitCode::from(bad_input)
            },
        )?;
    Ok((topology, security))
}
