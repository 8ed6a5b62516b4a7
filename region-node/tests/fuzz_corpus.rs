//! Replays the corpus of fuzz target `region_records` (`fuzz/corpus/region_records/`) through
//! the check the target runs (`fuzz/checks/region_records.rs`): records, stored log entries,
//! record batches, epoch parts, raft entries applied to a region log, and snapshots.

#[path = "../../fuzz/checks/region_records.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, WriteBatch};
use dsss_region_node::global::{EpochPart, encode_close_batch, encode_epoch_part};
use dsss_region_node::record::{encode_batch, encode_entry, encode_record};
use dsss_region_node::{LogEntry, RegionLog, RegionLogRetention};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
};
use prost::Message as _;

const TARGET: &str = "region_records";

#[test]
fn every_corpus_input_decodes_or_is_refused() {
    replay::replay(TARGET, check::check);
}

/// A region log snapshot, found by fuzzing, whose truncation state counts checkpointed,
/// uncovered and released objects that add up past `u64::MAX` (hex, as a peer sent it).
const SNAPSHOT_WITH_OVERFLOWING_OBJECT_COUNTS: &str = concat!(
    "0800000000000000010000000000000001cbf29ce48422232500000000000000000000000000000000000000",
    "3301000000000000000101000000000000000000000000000000000000000000000000000000000000000000",
    "0000000000000000000000000000000000000059030000000000000000000000000000000000000000000000",
    "00006f6262792f6d61696e10011a0663616c6c2032200728023209088280f9c0c1c482000000000000000000",
    "0000000000000000000000000000000000000000000100000000000000000000000000000000",
);

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex digits"))
        .collect()
}

/// The object counts of a snapshot's header were summed to learn whether it keeps anything
/// per object: the sum overflowed (a panic with overflow checks, a wrap to "nothing kept"
/// without them). The snapshot is refused, not a panic: its header counts more state bytes
/// than the checkpoint bytes that include them, which no honest header does.
#[test]
fn a_snapshot_whose_object_counts_overflow_their_sum_is_refused_not_a_panic() {
    let snapshot = from_hex(SNAPSHOT_WITH_OVERFLOWING_OBJECT_COUNTS);
    let log = RegionLog::new(
        RegionLogRetention::default(),
        RegionId::new("eu-west").unwrap(),
    );
    let error = log
        .snapshot_span(&snapshot)
        .map(|_| ())
        .expect_err("counters that do not add up");
    assert!(
        error
            .to_string()
            .contains("more than the 0 checkpoint bytes"),
        "{error}"
    );
    assert!(log.validate_snapshot(&snapshot).is_err());
}

/// A region log snapshot, found by fuzzing, whose global state has applied every epoch
/// through `u64::MAX` and has one in progress (hex, as a peer sent it).
const SNAPSHOT_WITH_THE_LAST_EPOCH_NUMBER_APPLIED: &str = concat!(
    "0800000000000000030000000000000003e1e5c7ae66c7ff8700060a24181e40640000000000000000000000",
    "5f010000000000ffff00000147ff2d000000ffffffffffffffffffffffffffffffffffff0000010100000000",
    "000000010000000000000000000100060a241e40000000000000000000000000000000000000000000000000",
    "00000024181e4064",
);

/// The global state of a snapshot added 1 to the last epoch applied to check the epoch in
/// progress, which overflowed. The snapshot is refused, naming the epoch in progress.
#[test]
fn a_snapshot_whose_global_epoch_counter_is_at_its_maximum_is_refused_not_a_panic() {
    let snapshot = from_hex(SNAPSHOT_WITH_THE_LAST_EPOCH_NUMBER_APPLIED);
    let log = RegionLog::new(
        RegionLogRetention::default(),
        RegionId::new("eu-west").unwrap(),
    );
    let error = log.snapshot_span(&snapshot).unwrap_err();
    assert!(error.contains("epoch in progress"), "{error}");
    assert!(log.validate_snapshot(&snapshot).is_err());
}

fn record(sequence: u64, scope: Scope) -> Record {
    Record {
        object_id: ObjectId::new("lobby/main").unwrap(),
        method_id: MethodId(1),
        arguments: Arguments::new(format!("call {sequence}").into_bytes()).unwrap(),
        client_id: ClientId(7),
        request_sequence: RequestSequence(sequence),
        timestamp: Timestamp::new(1_700_000_000_000_000 + sequence, 0),
        scope,
        origin_region: RegionId::new("eu-west").unwrap(),
    }
}

/// The input that selects `name` and carries `data`.
fn seed(name: &str, variant: &str, data: &[u8]) -> (String, Vec<u8>) {
    replay::selected_seed(
        check::DECODERS.iter().map(|(decoder, _)| *decoder),
        name,
        variant,
        data,
    )
}

/// Writes the seed corpus: valid encodings of every kind. Run the test binary with
/// `--ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/region_records; run by hand to reseed"]
fn write_seed_corpus() {
    let regional = record(1, Scope::Regional);
    let global = record(2, Scope::Global);
    let regional_bytes = encode_record(&regional);
    let global_bytes = encode_record(&global);
    let batch = encode_batch([regional_bytes.as_slice(), global_bytes.as_slice()].into_iter());
    let watermark = Timestamp::new(1_700_000_000_000_100, 0);
    let part = EpochPart {
        epoch_number: 1,
        watermark,
        previous_watermark: None,
        records: vec![global.clone()],
        part_index: 0,
        part_count: 1,
        member_regions: vec![RegionId::new("eu-west").unwrap()],
    };
    let close = encode_close_batch(watermark, (1, 1));
    let epoch_part = encode_epoch_part(&part);
    let session_open = {
        let mut bytes = vec![5];
        bytes.extend_from_slice(&9u64.to_be_bytes());
        bytes.extend_from_slice(&1_700_000_000_000_050u64.to_be_bytes());
        bytes.extend_from_slice(&0u32.to_be_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes
    };
    let session_close = {
        let mut bytes = vec![6];
        bytes.extend_from_slice(&9u64.to_be_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&2u64.to_be_bytes());
        bytes
    };
    let checkpoint = {
        let state = b"lobby state".to_vec();
        let mut bytes = vec![4];
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&10u32.to_be_bytes());
        bytes.extend_from_slice(b"lobby/main");
        bytes.extend_from_slice(&1u64.to_be_bytes());
        bytes.extend_from_slice(&[0x5a; 32]);
        bytes.extend_from_slice(&7u64.to_be_bytes());
        bytes.extend_from_slice(&(state.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&state);
        bytes
    };
    let entries = [
        session_open.clone(),
        batch.clone(),
        close.clone(),
        epoch_part.clone(),
        checkpoint.clone(),
        session_close.clone(),
    ];

    // A snapshot of a log that applied every kind of entry.
    let mut log = RegionLog::new(
        RegionLogRetention::default(),
        RegionId::new("eu-west").unwrap(),
    );
    let mut store = MemoryStore::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut write = WriteBatch::new();
        log.apply(index as u64 + 2, entry, &store, &mut write)
            .unwrap();
        store.write(write, true).unwrap();
        log.batch_written();
    }
    let snapshot = log.snapshot(&store).unwrap();
    let empty_snapshot = RegionLog::new(
        RegionLogRetention::default(),
        RegionId::new("eu-west").unwrap(),
    )
    .snapshot(&store)
    .unwrap();

    let seeds = vec![
        seed("decode_record", "regional", &regional_bytes),
        seed("decode_record", "global", &global_bytes),
        seed(
            "decode_entry",
            "regional",
            &encode_entry(1, &LogEntry::Regional(regional.clone())),
        ),
        seed(
            "decode_entry",
            "sequenced",
            &encode_entry(
                3,
                &LogEntry::SequencedGlobal {
                    epoch_number: 1,
                    index_in_epoch: 0,
                    record: global.clone(),
                },
            ),
        ),
        seed(
            "decode_entry",
            "epoch_sealed",
            &encode_entry(
                4,
                &LogEntry::EpochSealed {
                    epoch_number: 1,
                    watermark,
                    previous_watermark: Some(Timestamp::new(5, 0)),
                    record_count: 1,
                    member_regions: vec![RegionId::new("eu-west").unwrap()],
                    skipped_from: 0,
                },
            ),
        ),
        seed("decode_batch", "two_records", &batch),
        seed(
            "EpochPart::from_wire",
            "one_record",
            &part.to_wire().encode_to_vec(),
        ),
        seed("RegionLog::apply", "every_kind", &replay::framed(&entries)),
        seed("RegionLog::apply", "batch", &replay::framed(&[batch])),
        seed("RegionLog::apply", "close", &replay::framed(&[close])),
        seed(
            "RegionLog::apply",
            "epoch_part",
            &replay::framed(&[epoch_part]),
        ),
        seed(
            "RegionLog::apply",
            "checkpoint",
            &replay::framed(&[checkpoint]),
        ),
        seed(
            "RegionLog::apply",
            "sessions",
            &replay::framed(&[session_open, session_close]),
        ),
        seed("RegionLog::validate_snapshot", "applied", &snapshot),
        seed("RegionLog::validate_snapshot", "empty", &empty_snapshot),
    ];
    replay::write_seeds(TARGET, &seeds);
}
