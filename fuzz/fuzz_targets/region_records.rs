//! Fuzz target: see `fuzz/checks/region_records.rs` for what it checks.
#![no_main]

#[path = "../checks/region_records.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
