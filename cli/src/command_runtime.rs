//! The tokio runtime a command runs its async work on.

use std::io::Write;
use std::process::ExitCode;

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
