//! What the global coordinator spends to order global records, measured through its
//! replicated state machine (`CoordinatorState` applied as `StateMachine::apply`, the code
//! every replica runs for every entry of the coordinator's raft log, over a `MemoryStore`:
//! no driver, no RocksDB).
//!
//! - `coordinator_apply/seal_round_3x64`: one round of the steady state with three member
//!   regions: each region's batch of 64 global records whose closed timestamp advances by
//!   one epoch interval, the third of which raises the watermark and seals an epoch of 192
//!   records (SEAL merges the regions' records in (timestamp, region, sequence) order), then
//!   the three regions' acknowledgements of that epoch, which release the one before. Per
//!   record this is the coordinator's whole apply cost: decoding, pending, sealing, release.
//! - `batch_entry/encode_64`, `batch_entry/decode_64`: the encoding of one region's batch of
//!   64 records as the leader proposes it, and its decoding as every replica applies it.
//!
//! Records carry 256-byte arguments and 20-byte object ids. Run with
//! `cargo bench -p dsss-global-coordinator --bench epochs` (add `-- --quick` for a short run).

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dsss_global_coordinator::{
    BatchEntry, BatchVerdict, CoordinatorEntry, CoordinatorLimits, CoordinatorState, EntryEffect,
    EntryOutcome,
};
use dsss_raft_group::{MemoryStore, StateMachine, WriteBatch};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
};

/// The member regions, sorted.
const REGIONS: [&str; 3] = ["ap-south", "eu-west", "us-east"];

/// Records in each region's batch.
const BATCH_RECORDS: usize = 64;

/// The encoded arguments of every call.
const ARGUMENTS_BYTES: usize = 256;

/// How far the regions' closed timestamps advance per round: one epoch interval.
const EPOCH_INTERVAL_US: u64 = 10_000;

/// Rounds applied and checked before the measurement.
const CHECKED_ROUNDS: u64 = 4;

/// The closed timestamp of round 0, in microseconds since the UNIX epoch.
const START_US: u64 = 1_700_000_000_000_000;

fn region(name: &str) -> RegionId {
    RegionId::new(name).expect("a valid region id")
}

/// Record `index` of `region_index`'s batch in `round`: its timestamp lies in the round's
/// epoch interval, between the previous closed timestamp and this round's, and the regions'
/// records interleave in time, so the seal merges rather than concatenates.
fn record(region_index: usize, index: usize, round: u64) -> Record {
    let offset_us = 1 + index as u64 * 150 + region_index as u64 * 50;
    let arguments = (0..ARGUMENTS_BYTES)
        .map(|byte| (byte as u64 ^ round) as u8)
        .collect();
    Record {
        object_id: ObjectId::new(format!("bench/lobby/room-{index:03}"))
            .expect("a valid object id"),
        method_id: MethodId(2),
        arguments: Arguments::new(arguments).expect("arguments within bounds"),
        client_id: ClientId(((region_index as u64 + 1) << 32) | index as u64),
        request_sequence: RequestSequence(round),
        timestamp: Timestamp::new(START_US + (round - 1) * EPOCH_INTERVAL_US + offset_us, 0),
        scope: Scope::Global,
        origin_region: region(REGIONS[region_index]),
    }
}

/// The batch entry of `region_index` in `round` (its batch number: a region sends one batch
/// per epoch interval), closed at the end of the round's interval.
fn batch_entry(region_index: usize, round: u64) -> CoordinatorEntry {
    CoordinatorEntry::Batch(BatchEntry {
        region: region(REGIONS[region_index]),
        incarnation: 1,
        batch_number: round,
        records: (0..BATCH_RECORDS)
            .map(|index| record(region_index, index, round))
            .collect(),
        closed: Timestamp::new(START_US + round * EPOCH_INTERVAL_US, 0),
    })
}

/// The raft entries of one round, encoded as the leader proposes them: the three batches,
/// then each region's acknowledgement of the epoch the round sealed (epoch `round`).
fn round_entries(round: u64) -> Vec<Vec<u8>> {
    let batches = (0..REGIONS.len()).map(|region_index| batch_entry(region_index, round));
    let acknowledgements = REGIONS
        .iter()
        .map(|name| CoordinatorEntry::EpochsAcknowledged {
            region: region(name),
            through: round,
        });
    batches
        .chain(acknowledgements)
        .map(|entry| entry.encode())
        .collect()
}

/// A coordinator replica's state machine and the raft index of its last entry.
struct Coordinator {
    state: CoordinatorState,
    /// The state machine reads no store in apply; the argument is there for the interface.
    store: MemoryStore,
    index: u64,
}

impl Coordinator {
    fn new() -> Coordinator {
        let regions: Vec<RegionId> = REGIONS.iter().map(|name| region(name)).collect();
        Coordinator {
            state: CoordinatorState::new(&regions, CoordinatorLimits::default()),
            store: MemoryStore::new(),
            index: 0,
        }
    }

    /// Applies one entry. Its writes are what the driver persists; they are dropped here.
    fn apply(&mut self, data: &[u8]) -> (EntryOutcome, WriteBatch) {
        self.index += 1;
        let mut batch = WriteBatch::new();
        let outcome = self
            .state
            .apply(self.index, data, &self.store, &mut batch)
            .expect("the coordinator's apply reads no store");
        (outcome, batch)
    }

    /// Applies the entries of a round and returns the epoch they sealed.
    fn apply_round(&mut self, entries: &[Vec<u8>]) -> Option<u64> {
        let mut sealed = None;
        for data in entries {
            let (outcome, _) = self.apply(data);
            sealed = sealed.or(outcome.sealed_epoch);
        }
        sealed
    }

    /// Applies round `round` and checks every effect: the batches accepted, the third one
    /// sealing epoch `round` with every record in epoch order, the acknowledgements taken,
    /// and only the newest epoch retained after them.
    fn checked_round(&mut self, round: u64) {
        for (offset, data) in round_entries(round).iter().enumerate() {
            let (outcome, _) = self.apply(data);
            if offset < REGIONS.len() {
                assert!(
                    matches!(
                        &outcome.effect,
                        EntryEffect::Batch {
                            verdict: BatchVerdict::Accepted { readmitted: false },
                            ..
                        }
                    ),
                    "round {round}, batch {offset}: {:?}",
                    outcome.effect
                );
                let sealing = offset == REGIONS.len() - 1;
                assert_eq!(
                    outcome.sealed_epoch,
                    sealing.then_some(round),
                    "round {round}: the last region's close seals the round's epoch"
                );
            } else {
                assert!(
                    matches!(
                        outcome.effect,
                        EntryEffect::EpochsAcknowledged { acknowledged_epoch, .. }
                            if acknowledged_epoch == round
                    ),
                    "round {round}: {:?}",
                    outcome.effect
                );
            }
        }
        let epoch = self
            .state
            .epoch(round)
            .expect("the round's epoch is retained");
        assert_eq!(epoch.records.len(), BATCH_RECORDS * REGIONS.len());
        let order = |record: &Record| {
            (
                record.timestamp,
                record.origin_region.clone(),
                record.request_sequence,
            )
        };
        assert!(
            epoch
                .records
                .windows(2)
                .all(|pair| order(&pair[0]) < order(&pair[1])),
            "the epoch's records are merged in (timestamp, region, sequence) order"
        );
        assert_eq!(self.state.pending_count(), 0, "every record sealed");
        assert_eq!(
            self.state.retained_epoch_count(),
            1,
            "acknowledged epochs are released"
        );
    }
}

fn coordinator_apply(c: &mut Criterion) {
    let mut group = c.benchmark_group("coordinator_apply");
    let mut coordinator = Coordinator::new();
    for round in 1..=CHECKED_ROUNDS {
        coordinator.checked_round(round);
    }
    // The state carries on from round to round, as a replica's does: each round leaves no
    // pending record and one retained epoch, so it stays the same size however many rounds
    // the measurement runs. The entries of the next round are encoded outside the measured
    // time.
    let mut next_round = CHECKED_ROUNDS;
    group.throughput(Throughput::Elements((BATCH_RECORDS * REGIONS.len()) as u64));
    group.bench_function("seal_round_3x64", |b| {
        b.iter_batched(
            || {
                next_round += 1;
                (next_round, round_entries(next_round))
            },
            |(round, entries)| {
                // A cheap check that no round was refused: each seals its own epoch.
                assert_eq!(coordinator.apply_round(&entries), Some(round));
                entries
            },
            BatchSize::SmallInput,
        )
    });
    // The state the measurement left still seals rounds as the first did.
    coordinator.checked_round(next_round + 1);
    group.finish();
}

fn batch_entry_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_entry");
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    let entry = batch_entry(1, 1);
    group.bench_function("encode_64", |b| b.iter(|| black_box(&entry).encode()));
    let data = entry.encode();
    assert_eq!(CoordinatorEntry::decode(&data), Ok(entry.clone()));
    group.bench_function("decode_64", |b| {
        b.iter(|| CoordinatorEntry::decode(black_box(&data)).expect("the entry decodes"))
    });
    group.finish();
}

criterion_group!(benches, coordinator_apply, batch_entry_encoding);
criterion_main!(benches);
