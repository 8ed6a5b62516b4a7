//! Fuzz target: see `fuzz/checks/sdk_codecs.rs` for what it checks.
#![no_main]

#[path = "../checks/sdk_codecs.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
