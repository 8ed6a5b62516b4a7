//! Fuzz target: see `fuzz/checks/coordinator_entries.rs` for what it checks.
#![no_main]

#[path = "../checks/coordinator_entries.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
