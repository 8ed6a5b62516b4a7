//! The region node's decoders never panic, and what they accept round-trips: records, stored
//! log entries, record batches (raft entry data), parts of sealed epochs, whole raft entries
//! applied to a `RegionLog` (every entry format: batches, `CloseBatch`, epoch parts,
//! checkpoints, session opens and closes), and region log snapshots.
//!
//! The first byte of the input picks the decoder ([`DECODERS`]); the rest is its input.
//!
//! Shared by the fuzz target `region_records` and the corpus replay in
//! `region-node/tests/fuzz_corpus.rs`.

use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, WriteBatch};
use dsss_region_node::global::EpochPart;
use dsss_region_node::record::{
    decode_batch, decode_entry, decode_record, encode_batch, encode_entry, encode_record,
};
use dsss_region_node::{RegionLog, RegionLogRetention};
use dsss_wire::{RegionId, proto};
use prost::Message as _;

/// The region of the logs the entries are applied to.
const REGION: &str = "eu-west";

fn record(bytes: &[u8]) {
    if let Ok(record) = decode_record(bytes) {
        assert_eq!(decode_record(&encode_record(&record)), Ok(record));
    }
}

fn log_entry(bytes: &[u8]) {
    if let Ok((position, entry)) = decode_entry(bytes) {
        let encoded = encode_entry(position, &entry);
        assert_eq!(decode_entry(&encoded), Ok((position, entry)));
    }
}

fn batch(bytes: &[u8]) {
    if let Ok(records) = decode_batch(bytes) {
        // The batch encoding has one form: the records' own bytes, re-framed, are the input.
        let encoded = encode_batch(records.iter().map(|(_, record_bytes)| *record_bytes));
        assert_eq!(encoded, bytes, "a decoded batch re-encodes differently");
        for (record, record_bytes) in &records {
            assert_eq!(decode_record(record_bytes).as_ref(), Ok(record));
        }
    }
}

fn epoch_part(bytes: &[u8]) {
    let Ok(wire) = proto::SealedEpoch::decode(bytes) else {
        return;
    };
    if let Ok(part) = EpochPart::from_wire(wire) {
        let again = EpochPart::from_wire(part.to_wire());
        assert_eq!(again.as_ref(), Ok(&part));
        assert_eq!(part.wire_len(), part.to_wire().encoded_len() as u64);
    }
}

fn new_log() -> RegionLog {
    let region = RegionId::new(REGION).expect("a valid region id");
    RegionLog::new(RegionLogRetention::default(), region)
}

/// Persists a round's batch the way a ready round does.
fn write(log: &mut RegionLog, store: &mut MemoryStore, batch: WriteBatch) {
    if let Err(error) = store.write(batch, true) {
        panic!("the memory store refused a write: {error}");
    }
    log.batch_written();
}

/// A log recovered from the store holds the same state as the one that wrote it.
fn check_recovers(log: &RegionLog, store: &MemoryStore) {
    let mut recovered = new_log();
    if let Err(error) = recovered.recover(store) {
        panic!("a log written by apply does not recover: {error}");
    }
    assert_eq!(recovered.next_position(), log.next_position());
    assert_eq!(recovered.digest(), log.digest());
    assert_eq!(recovered.last_assigned(), log.last_assigned());
}

/// Raft entries, each with a 2-byte big-endian length, applied in order to a new log.
fn applied_entries(mut bytes: &[u8]) {
    let mut log = new_log();
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
        // Entry data that does not decode is refused in the outcome; an error is a store
        // failure, which the memory store never has.
        if let Err(error) = log.apply(index, entry, &store, &mut batch) {
            panic!("applying entry {index} failed: {error}");
        }
        write(&mut log, &mut store, batch);
    }
    check_recovers(&log, &store);
    // The log's own snapshot decodes.
    let snapshot = match log.snapshot(&store) {
        Ok(snapshot) => snapshot,
        Err(error) => panic!("the log's snapshot could not be built: {error}"),
    };
    if let Err(error) = new_log().snapshot_span(&snapshot) {
        panic!("the log's own snapshot does not decode: {error}");
    }
}

/// A snapshot from the network: validated, and restored when valid. The restored log recovers
/// from the store when the snapshot stands on no entries; otherwise the entries it keeps
/// (above its truncation point, below its next position) are the ones a member fetches before
/// it takes the snapshot (`snapshot_catch_up`), which this empty store lacks.
fn snapshot(bytes: &[u8]) {
    let mut log = new_log();
    let span = log.snapshot_span(bytes);
    if log.validate_snapshot(bytes).is_err() {
        return;
    }
    let span = match span {
        Ok(span) => span,
        Err(error) => panic!("a validated snapshot has no span: {error}"),
    };
    let mut store = MemoryStore::new();
    let mut batch = WriteBatch::new();
    if let Err(error) = log.restore(bytes, &mut batch) {
        panic!("a validated snapshot does not restore: {error}");
    }
    write(&mut log, &mut store, batch);
    if span.truncated_through.checked_add(1) == Some(span.next_position) {
        check_recovers(&log, &store);
    }
}

/// A decoder's name and the function that decodes and checks its input.
pub type Decoder = (&'static str, fn(&[u8]));

/// What the first input byte selects, modulo the length.
pub const DECODERS: &[Decoder] = &[
    ("decode_record", record),
    ("decode_entry", log_entry),
    ("decode_batch", batch),
    ("EpochPart::from_wire", epoch_part),
    ("RegionLog::apply", applied_entries),
    ("RegionLog::validate_snapshot", snapshot),
];

/// Runs the decoder the first byte selects on the rest of the input.
pub fn check(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (_, decode) = DECODERS[usize::from(selector) % DECODERS.len()];
    decode(bytes);
}
