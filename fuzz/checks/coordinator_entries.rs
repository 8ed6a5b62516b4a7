//! The coordinator's decoders never panic, and what they accept round-trips: raft entries
//! (`CoordinatorEntry::decode`), sequences of entries applied to a `CoordinatorState` (its
//! stored state must recover to the same state, its snapshot must restore to it), and
//! snapshots from the network.
//!
//! The first byte of the input picks the decoder ([`DECODERS`]); the rest is its input.
//!
//! Shared by the fuzz target `coordinator_entries` and the corpus replay in
//! `global-coordinator/tests/fuzz_corpus.rs`.

use dsss_global_coordinator::{CoordinatorEntry, CoordinatorLimits, CoordinatorState};
use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, WriteBatch};
use dsss_wire::RegionId;

/// The regions of the coordinators the entries are applied to.
pub const REGIONS: [&str; 3] = ["ap-south", "eu-west", "us-east"];

fn entry(bytes: &[u8]) {
    if let Ok(entry) = CoordinatorEntry::decode(bytes) {
        assert_eq!(CoordinatorEntry::decode(&entry.encode()), Ok(entry));
    }
}

fn new_state() -> CoordinatorState {
    let regions: Vec<RegionId> = REGIONS
        .iter()
        .map(|region| RegionId::new(*region).expect("a valid region id"))
        .collect();
    CoordinatorState::new(&regions, CoordinatorLimits::default())
}

fn write(store: &mut MemoryStore, batch: WriteBatch) {
    if let Err(error) = store.write(batch, true) {
        panic!("the memory store refused a write: {error}");
    }
}

/// The state recovered from the store, and the state restored from its snapshot, are the
/// state itself.
fn check_recovers(state: &CoordinatorState, store: &MemoryStore) {
    let mut recovered = new_state();
    if let Err(error) = recovered.recover(store) {
        panic!("a state written by apply does not recover: {error}");
    }
    assert_eq!(&recovered, state, "the recovered state differs");
    let snapshot = match state.snapshot(store) {
        Ok(snapshot) => snapshot,
        Err(error) => panic!("the state's snapshot could not be built: {error}"),
    };
    let mut restored = new_state();
    if let Err(error) = restored.validate_snapshot(&snapshot) {
        panic!("the state's own snapshot is refused: {error}");
    }
    let mut batch = WriteBatch::new();
    if let Err(error) = restored.restore(&snapshot, &mut batch) {
        panic!("the state's own snapshot does not restore: {error}");
    }
    assert_eq!(
        &restored, state,
        "the state restored from its snapshot differs"
    );
}

/// Raft entries, each with a 2-byte big-endian length, applied in order to a new state.
fn applied_entries(mut bytes: &[u8]) {
    let mut state = new_state();
    let mut store = MemoryStore::new();
    let mut index = 1;
    while !bytes.is_empty() {
        let length = match bytes {
            [high, low, ..] => usize::from(u16::from_be_bytes([*high, *low])),
            _ => bytes.len(),
        };
        bytes = &bytes[bytes.len().min(2)..];
        let (entry, rest) = bytes.split_at(length.min(bytes.len()));
        bytes = rest;
        index += 1;
        let mut batch = WriteBatch::new();
        if let Err(error) = state.apply(index, entry, &store, &mut batch) {
            panic!("applying entry {index} failed: {error}");
        }
        write(&mut store, batch);
        state.batch_written();
    }
    check_recovers(&state, &store);
}

/// A snapshot from the network: validated, and restored when valid.
fn snapshot(bytes: &[u8]) {
    let mut state = new_state();
    if state.validate_snapshot(bytes).is_err() {
        return;
    }
    let mut store = MemoryStore::new();
    let mut batch = WriteBatch::new();
    if let Err(error) = state.restore(bytes, &mut batch) {
        panic!("a validated snapshot does not restore: {error}");
    }
    write(&mut store, batch);
    check_recovers(&state, &store);
}

/// A decoder's name and the function that decodes and checks its input.
pub type Decoder = (&'static str, fn(&[u8]));

/// What the first input byte selects, modulo the length.
pub const DECODERS: &[Decoder] = &[
    ("CoordinatorEntry::decode", entry),
    ("CoordinatorState::apply", applied_entries),
    ("CoordinatorState::validate_snapshot", snapshot),
];

/// Runs the decoder the first byte selects on the rest of the input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (_, decode) = DECODERS[usize::from(selector) % DECODERS.len()];
    decode(bytes);
}
