//! Fuzz target: see `fuzz/checks/raft_group_step.rs` for what it checks.
#![no_main]

#[path = "../checks/raft_group_step.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
