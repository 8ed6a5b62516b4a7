//! Durability and atomicity of `RocksDbStore` across real process crashes.
//!
//! This binary runs in two roles. Run by `cargo test`, it is the parent: for each round it
//! starts itself again as a child writer, lets the child acknowledge some synced batches, kills
//! it with SIGKILL while it is still writing, reopens the store and checks that every batch the
//! child acknowledged is there, and that every batch that is there is whole, in both key spaces
//! it touched. While the child writes, the parent also checks that it cannot open the same
//! store itself. The child role is chosen by an environment variable.
//!
//! A process crash leaves the operating system's page cache intact, so this test shows that
//! acknowledged batches survive the process and that a batch is never half applied; the fsync
//! that makes them survive a machine crash is RocksDB's `sync` write option, which the store
//! sets for every synced write.
//!
//! The binary has its own `main` (no test harness), so a plain `cargo test` runs the parent
//! and the child role never shows up as a test of its own.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use dsss_raft_group::{DurableStore, RAFT_LOG, RAFT_STATE, WriteBatch};
use dsss_rocksdb_store::{RocksDbStore, SCAN_LIMIT_MAX};

/// Tells a child run of this binary which store directory to write to.
const CHILD_DIRECTORY_VARIABLE: &str = "DSSS_ROCKSDB_STORE_CRASH_CHILD_DIRECTORY";

/// Tells a child run which round it is, so every round writes keys of its own.
const CHILD_ROUND_VARIABLE: &str = "DSSS_ROCKSDB_STORE_CRASH_CHILD_ROUND";

/// Crashes per test run; each later round reopens a store that already survived crashes.
const ROUNDS: u64 = 6;

/// How long after the last awaited acknowledgement each round kills the child, cycling.
const KILL_DELAYS_US: [u64; 6] = [0, 120, 350, 800, 1_700, 3_100];

/// Acknowledged batches the parent waits for before it kills the child.
const ACKNOWLEDGEMENTS_BEFORE_KILL: u64 = 100;

/// Batches a child would write if nobody killed it: far more than it reaches before the kill.
const CHILD_BATCHES_MAX: u64 = 10_000_000;

/// Raft log keys in each batch, besides the one raft state key.
const PARTS_PER_BATCH: u64 = 4;

/// Size of each raft log value: large enough that a batch spans several pages of the log.
const PART_SIZE_BYTES: usize = 1_500;

/// SIGKILL's signal number on Linux and the BSDs.
const SIGKILL: i32 = 9;

fn main() -> ExitCode {
    match std::env::var_os(CHILD_DIRECTORY_VARIABLE) {
        Some(directory) => {
            let round = std::env::var(CHILD_ROUND_VARIABLE)
                .expect("the parent sets the round")
                .parse()
                .expect("the round is a number");
            write_until_killed(Path::new(&directory), round)
        }
        None => {
            let directory = tempfile::tempdir().expect("create a temporary directory");
            for round in 0..ROUNDS {
                let acknowledged = crash_a_writer(directory.path(), round);
                let kept = check_store(directory.path(), round, acknowledged);
                println!(
                    "crash round {round}: the child acknowledged batches 0..={acknowledged}, the store kept 0..={kept}, all whole"
                );
            }
            println!("test crash_keeps_every_acknowledged_batch_whole ... ok");
            ExitCode::SUCCESS
        }
    }
}

/// The raft log key of `part` of `batch` in `round`.
fn log_key(round: u64, batch: u64, part: u64) -> Vec<u8> {
    [round, batch, part]
        .iter()
        .flat_map(|number| number.to_be_bytes())
        .collect()
}

/// The raft log value of `part` of `batch` in `round`: every byte depends on all three, so a
/// value from another batch or a torn value does not pass for this one.
fn log_value(round: u64, batch: u64, part: u64) -> Vec<u8> {
    let seed = round
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .wrapping_add(batch.wrapping_mul(0xbf58_476d_1ce4_e5b9))
        .wrapping_add(part);
    (0..PART_SIZE_BYTES as u64)
        .map(|position| (seed.wrapping_add(position.wrapping_mul(0x94d0_49bb)) >> 7) as u8)
        .collect()
}

/// The raft state key holding the last batch of `round`.
fn state_key(round: u64) -> Vec<u8> {
    round.to_be_bytes().to_vec()
}

/// The child role: writes synced batches and reports each one once `write` returns.
fn write_until_killed(directory: &Path, round: u64) -> ExitCode {
    let mut store =
        RocksDbStore::open(directory, &[RAFT_LOG, RAFT_STATE]).expect("the child opens the store");
    let mut stdout = std::io::stdout().lock();
    for batch in 0..CHILD_BATCHES_MAX {
        let mut write_batch = WriteBatch::new();
        for part in 0..PARTS_PER_BATCH {
            write_batch.put(
                RAFT_LOG,
                log_key(round, batch, part),
                log_value(round, batch, part),
            );
        }
        write_batch.put(RAFT_STATE, state_key(round), batch.to_be_bytes());
        store.write(write_batch, true).expect("the child writes");
        writeln!(stdout, "acknowledged {batch}").expect("report to the parent");
        stdout.flush().expect("report to the parent");
    }
    // Reaching the end means the parent never killed this child: its check reports that.
    ExitCode::SUCCESS
}

/// Runs one child writer for `round`, kills it a little after it has acknowledged enough
/// batches, and returns the highest batch it acknowledged.
fn crash_a_writer(directory: &Path, round: u64) -> u64 {
    let executable: PathBuf = std::env::current_exe().expect("find this test binary");
    let mut child = Command::new(executable)
        .env(CHILD_DIRECTORY_VARIABLE, directory)
        .env(CHILD_ROUND_VARIABLE, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child writer");
    let reports = BufReader::new(child.stdout.take().expect("the child's stdout is piped"));
    // A separate reader keeps draining the pipe, so the child never blocks on a full pipe
    // and keeps writing right up to the kill.
    let (sender, acknowledgements) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in reports.lines() {
            let line = line.expect("read the child's report");
            let batch: u64 = line
                .strip_prefix("acknowledged ")
                .and_then(|number| number.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line from the child: {line:?}"));
            if sender.send(batch).is_err() {
                return;
            }
        }
    });

    let mut highest: Option<u64> = None;
    let mut killed = false;
    // Acknowledgements still in the pipe when the child dies count too: the child printed
    // each one only after `write` returned.
    for batch in acknowledgements {
        assert_eq!(
            batch,
            highest.map_or(0, |previous| previous + 1),
            "acknowledgements arrive in order"
        );
        highest = Some(batch);
        if batch == 0 {
            check_open_elsewhere_is_refused(directory);
        }
        if !killed && batch + 1 >= ACKNOWLEDGEMENTS_BEFORE_KILL {
            // Killing the moment an acknowledgement arrives would always catch the child at
            // the start of its next batch; a different delay each round lands the kill at
            // different points inside a write.
            let delay_us = KILL_DELAYS_US[round as usize % KILL_DELAYS_US.len()];
            std::thread::sleep(Duration::from_micros(delay_us));
            child.kill().expect("kill the child writer");
            killed = true;
        }
    }
    reader
        .join()
        .expect("the report reader ends with the child");
    let status = child.wait().expect("wait for the child writer");
    assert_eq!(
        status.signal(),
        Some(SIGKILL),
        "the child must die by SIGKILL while still writing, but it ended with {status}"
    );
    highest.expect("the child acknowledged batches before the kill")
}

/// Checks that while the child holds the store open, this process cannot open it too, and is
/// told which directory is in use.
fn check_open_elsewhere_is_refused(directory: &Path) {
    let error = RocksDbStore::open(directory, &[RAFT_LOG, RAFT_STATE])
        .expect_err("a store open in the child must not open in the parent");
    let message = error.to_string();
    assert!(
        message.contains(&directory.display().to_string()) && message.contains("already open"),
        "the error must name the directory and say it is open elsewhere: {message}"
    );
}

/// Reopens the store after the crash of `round` and checks every round so far; returns the
/// last batch kept from `round`.
fn check_store(directory: &Path, round: u64, acknowledged: u64) -> u64 {
    let store = RocksDbStore::open(directory, &[RAFT_LOG, RAFT_STATE])
        .expect("reopen the store after the crash");
    let mut kept_in_this_round = 0;
    for checked_round in 0..=round {
        let last = store
            .get(RAFT_STATE, &state_key(checked_round))
            .expect("read the raft state")
            .unwrap_or_else(|| panic!("round {checked_round} left no raft state"));
        let last = u64::from_be_bytes(last.try_into().expect("the raft state is 8 bytes"));
        if checked_round == round {
            assert!(
                last >= acknowledged,
                "batch {acknowledged} was acknowledged but the store ends at batch {last}"
            );
            kept_in_this_round = last;
        }
        check_round_entries(&store, checked_round, last);
    }
    kept_in_this_round
}

/// Checks that the raft log of `round` holds exactly batches `0..=last`, each with all its
/// parts and their exact values: no batch is missing, partial or extra.
fn check_round_entries(store: &RocksDbStore, round: u64, last: u64) {
    let end = log_key(round + 1, 0, 0);
    let mut start = log_key(round, 0, 0);
    let mut expected =
        (0..=last).flat_map(|batch| (0..PARTS_PER_BATCH).map(move |part| (batch, part)));
    loop {
        let page = store
            .scan(RAFT_LOG, &start, &end, SCAN_LIMIT_MAX)
            .expect("scan the raft log");
        for (key, value) in &page {
            let (batch, part) = expected.next().unwrap_or_else(|| {
                panic!("round {round}: entry {key:02x?} lies beyond the last batch {last}")
            });
            assert_eq!(
                key,
                &log_key(round, batch, part),
                "round {round}: batch {batch} part {part} is missing (the raft state says batch {last} is written)"
            );
            assert!(
                value == &log_value(round, batch, part),
                "round {round}: batch {batch} part {part} holds the wrong bytes"
            );
        }
        match page.last() {
            Some((key, _)) if page.len() == SCAN_LIMIT_MAX => {
                start = key.clone();
                start.push(0);
            }
            _ => break,
        }
    }
    if let Some((batch, part)) = expected.next() {
        panic!(
            "round {round}: batch {batch} part {part} is missing, though batch {last} is written"
        );
    }
}
