//! Fuzz target: see `fuzz/checks/topology_parse.rs` for what it checks.
#![no_main]

#[path = "../checks/topology_parse.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
