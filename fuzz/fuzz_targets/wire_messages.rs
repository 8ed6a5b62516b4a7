//! Fuzz target: see `fuzz/checks/wire_messages.rs` for what it checks.
#![no_main]

#[path = "../checks/wire_messages.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
