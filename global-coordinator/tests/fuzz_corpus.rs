//! Replays the corpus of fuzz target `coordinator_entries` (`fuzz/corpus/coordinator_entries/`)
//! through the check the target runs (`fuzz/checks/coordinator_entries.rs`): raft entries of
//! the coordinator decoded and applied, and snapshots validated and restored.

#[path = "../../fuzz/checks/coordinator_entries.rs"]
mod check;
#[path = "../../fuzz/checks/replay.rs"]
mod replay;

use dsss_global_coordinator::{BatchEntry, CoordinatorEntry, CoordinatorLimits, CoordinatorState};
use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, WriteBatch};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
    decode_record, encode_record,
};

const TARGET: &str = "coordinator_entries";

#[test]
fn every_corpus_input_decodes_or_is_refused() {
    replay::replay(TARGET, check::check);
}

fn region(name: &str) -> RegionId {
    RegionId::new(name).unwrap()
}

fn record(region_name: &str, sequence: u64) -> Record {
    Record {
        object_id: ObjectId::new("lobby/main").unwrap(),
        method_id: MethodId(1),
        arguments: Arguments::new(vec![1, 2, 3]).unwrap(),
        client_id: ClientId(7),
        request_sequence: RequestSequence(sequence),
        timestamp: Timestamp::new(1_000 + sequence, 0),
        scope: Scope::Global,
        origin_region: region(region_name),
    }
}

/// A coordinator snapshot, found by fuzzing, whose sealed epoch holds a record encoded with
/// more bytes than the record's own encoding (hex, as a peer sent it).
const SNAPSHOT_WITH_A_RECORD_IN_ANOTHER_ENCODING: &str = concat!(
    "0200000000000007d0000000000000000000000002000000030000000861702d736f75746800000000000000",
    "0101000000000000000200000000000007d00000000000000000000003e90000000000000000000000000000",
    "000765752d77657374000000000000000101000000000000000200000000000007d000000000000000000000",
    "03ea0000000000000000000000010000000775732d6561737400000000000000010000000000000000020000",
    "0000000007d00000000000000000000003eb000000000000000000000000010000000000000001000000cc00",
    "0000000000000100000000000000000000000000000000000007d000000000000000030000000861702d736f",
    "7574680000000765752d776573740000000775732d6561737400000003000000280a0a6c6f6262792f6d6169",
    "6e61702d736f756f20072801320308e9073801420861702d736f757468000000270a0a6c6f6262792f6d6169",
    "6e10011a0301020320072802320308ea073801420765752d77657374000000270a0a6c6f6262792f6d61696e",
    "10011a0301020320072803320308eb073801420775732d65617374",
);

fn from_hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex digits"))
        .collect()
}

fn new_state() -> CoordinatorState {
    let regions: Vec<RegionId> = check::REGIONS.iter().copied().map(region).collect();
    CoordinatorState::new(&regions, CoordinatorLimits::default())
}

/// The snapshot's epoch counted the record at its received size, the store and later
/// snapshots at its own: a replica restored from it and one restarted from its store held
/// different sizes. Such a record is refused, naming it.
#[test]
fn a_snapshot_with_a_record_in_another_encoding_is_refused() {
    let snapshot = from_hex(SNAPSHOT_WITH_A_RECORD_IN_ANOTHER_ENCODING);
    let error = new_state().validate_snapshot(&snapshot).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("epoch record 0"), "{text}");
    assert!(text.contains("own encoding"), "{text}");
}

/// The same rule for a batch entry: a record whose bytes repeat a field (so they decode to
/// the record, two bytes longer than its own encoding) is refused, naming the record.
#[test]
fn a_batch_entry_with_a_record_in_another_encoding_is_refused() {
    let sent = record("eu-west", 1);
    let entry = CoordinatorEntry::Batch(BatchEntry {
        region: region("eu-west"),
        incarnation: 1,
        batch_number: 1,
        records: vec![sent.clone()],
        closed: Timestamp::new(2_000, 0),
    });
    let own = encode_record(&sent);
    let mut longer = own.clone();
    // Field 4 (client_id) again, with the same value.
    longer.extend_from_slice(&[0x20, 0x07]);
    assert_eq!(decode_record(&longer), Ok(sent));
    let mut data = entry.encode();
    data.truncate(data.len() - own.len() - 4);
    data.extend_from_slice(&(longer.len() as u32).to_be_bytes());
    data.extend_from_slice(&longer);
    let error = CoordinatorEntry::decode(&data).unwrap_err();
    assert!(error.contains("batch record 0"), "{error}");
    assert!(error.contains("own encoding"), "{error}");
    assert_eq!(CoordinatorEntry::decode(&entry.encode()), Ok(entry));
}

fn seed(name: &str, variant: &str, data: &[u8]) -> (String, Vec<u8>) {
    replay::selected_seed(
        check::DECODERS.iter().map(|(decoder, _)| *decoder),
        name,
        variant,
        data,
    )
}

/// Writes the seed corpus: every kind of entry, a run of batches from every region that seals
/// an epoch, and snapshots. Run the test binary with `--ignored write_seed_corpus`.
#[test]
#[ignore = "writes fuzz/corpus/coordinator_entries; run by hand to reseed"]
fn write_seed_corpus() {
    let batches: Vec<Vec<u8>> = check::REGIONS
        .iter()
        .enumerate()
        .map(|(offset, name)| {
            CoordinatorEntry::Batch(BatchEntry {
                region: region(name),
                incarnation: 1,
                batch_number: 1,
                records: vec![record(name, offset as u64 + 1)],
                closed: Timestamp::new(2_000, 0),
            })
            .encode()
        })
        .collect();
    let suspect = CoordinatorEntry::Suspect {
        region: region("us-east"),
        incarnation: 1,
    }
    .encode();
    let acknowledged = CoordinatorEntry::EpochsAcknowledged {
        region: region("eu-west"),
        through: 1,
    }
    .encode();
    let mut entries = batches.clone();
    entries.push(acknowledged.clone());
    entries.push(suspect.clone());

    let mut state = new_state();
    let mut store = MemoryStore::new();
    for (index, entry) in entries.iter().enumerate() {
        let mut batch = WriteBatch::new();
        state
            .apply(index as u64 + 2, entry, &store, &mut batch)
            .unwrap();
        store.write(batch, true).unwrap();
    }
    let snapshot = state.snapshot(&store).unwrap();

    let seeds = vec![
        seed("CoordinatorEntry::decode", "batch", &batches[0]),
        seed("CoordinatorEntry::decode", "suspect", &suspect),
        seed("CoordinatorEntry::decode", "acknowledged", &acknowledged),
        seed(
            "CoordinatorState::apply",
            "epoch",
            &replay::framed(&entries),
        ),
        seed(
            "CoordinatorState::apply",
            "batch",
            &replay::framed(&batches[..1]),
        ),
        seed("CoordinatorState::validate_snapshot", "sealed", &snapshot),
    ];
    replay::write_seeds(TARGET, &seeds);
}
