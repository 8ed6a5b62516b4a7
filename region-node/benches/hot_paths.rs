//! What the region node spends per record on its hot paths, measured through the sans-IO
//! public API only (no `driver` feature, no RocksDB): the time is the node's CPU, not a disk's.
//!
//! - `record/*`: the codecs every record goes through: `encode_record` when the leader takes a
//!   proposal, `encode_batch` when it proposes a raft entry of records and `decode_batch` when
//!   every member applies it, `encode_entry` for each appended entry stored and `decode_entry`
//!   for each entry read back (256-byte arguments, 20-byte object ids; a batch of 64).
//! - `dedup/*`: the session table that makes calls exactly-once, with 10,000 live sessions
//!   whose windows are full: `check` (a new call, a retry), and the whole per-record work of
//!   apply (expire idle sessions, check, record).
//! - `region_global/*`: the region's side of the global tier, as `RegionLog` applies it on
//!   every member: 64 global records joining the open batch, the `CloseBatch` that makes them
//!   an outgoing batch with the message the leader ships to the coordinator, and a sealed
//!   epoch of 192 records (64 of the region's own, 64 from each of two other regions)
//!   appended to the log. `GlobalState`'s methods that gather and close a batch are private
//!   to the crate, so these go through `RegionLog`'s `StateMachine::apply` on the raft
//!   entries, the narrowest public piece the node runs for them (without the raft group).
//!
//! Run with `cargo bench -p dsss-region-node --bench hot_paths` (add `-- --quick` for a short
//! run, or a name filter such as `-- dedup`).

// criterion_group! and criterion_main! generate undocumented functions.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dsss_raft_group::{DurableStore, MemoryStore, StateMachine, StoreIo, WriteBatch};
use dsss_region_node::global::{
    EpochPart, MembershipChange, OutgoingBatch, encode_close_batch, encode_epoch_part,
};
use dsss_region_node::record::{
    decode_batch, decode_entry, encode_batch, encode_entry, encode_record,
};
use dsss_region_node::{
    DEDUP_WINDOW_MAX, DedupLimits, DedupTable, DedupVerdict, EntryOutcome, LogEntry, REGION_STATE,
    RecordOutcome, RegionLog, RegionNode, RegionNodeConfig,
};
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
    proto,
};
use prost::Message as _;

/// The region the benchmarked node serves.
const REGION: &str = "eu-west";

/// The global membership, sorted: a sealed epoch carries records of every one of them.
const ALL_REGIONS: [&str; 3] = ["ap-south", REGION, "us-east"];

/// Records in one raft entry of proposals, and in one outgoing batch of global records.
const BATCH_RECORDS: usize = 64;

/// The encoded arguments of every call: a few fields, larger than the example objects' calls
/// so that copying the payload shows.
const ARGUMENTS_BYTES: usize = 256;

/// Live client sessions in the dedup benchmarks.
const DEDUP_SESSIONS: u64 = 10_000;

/// Rounds of global records, closes and sealed epochs applied before the `region_global`
/// measurements, so that the objects are tracked and an epoch was appended before.
const WARM_UP_ROUNDS: u64 = 2;

/// The log time the benchmarks start at, in microseconds since the UNIX epoch.
const START_US: u64 = 1_700_000_000_000_000;

/// A session id as a client draws it (64 random bits): spread over the whole range, so the
/// table's maps are exercised as with real clients rather than with dense small keys.
fn session_id(index: u64) -> u64 {
    // splitmix64: a bijection, so distinct indexes give distinct ids; never 0 in practice.
    let mut z = index.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// A 20-byte object id; `index` picks one of a few objects, as calls of one application do.
fn object_id(index: usize) -> ObjectId {
    ObjectId::new(format!("bench/lobby/room-{:03}", index % 1_000)).expect("a valid object id")
}

fn record(
    region: &str,
    scope: Scope,
    client_id: u64,
    request_sequence: u64,
    timestamp: Timestamp,
    object: usize,
) -> Record {
    let arguments = (0..ARGUMENTS_BYTES)
        .map(|byte| (byte as u64 ^ request_sequence) as u8)
        .collect();
    Record {
        object_id: object_id(object),
        method_id: MethodId(2),
        arguments: Arguments::new(arguments).expect("arguments within bounds"),
        client_id: ClientId(client_id),
        request_sequence: RequestSequence(request_sequence),
        timestamp,
        scope,
        origin_region: RegionId::new(region).expect("a valid region id"),
    }
}

fn record_encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    let regional = record(
        REGION,
        Scope::Regional,
        7,
        1,
        Timestamp::new(START_US, 0),
        0,
    );

    group.throughput(Throughput::Elements(1));
    group.bench_function("encode_record", |b| {
        b.iter(|| encode_record(black_box(&regional)))
    });
    let entry = LogEntry::Regional(regional.clone());
    let position = 1_000_000;
    group.bench_function("encode_entry", |b| {
        b.iter(|| encode_entry(black_box(position), black_box(&entry)))
    });
    let stored = encode_entry(position, &entry);
    assert_eq!(decode_entry(&stored), Ok((position, entry.clone())));
    group.bench_function("decode_entry", |b| {
        b.iter(|| decode_entry(black_box(&stored)).expect("a stored entry decodes"))
    });

    // The leader holds each proposal encoded (it encoded it on arrival), so a raft entry is
    // built from encoded records.
    let encoded: Vec<Vec<u8>> = (0..BATCH_RECORDS)
        .map(|index| {
            let timestamp = Timestamp::new(START_US + index as u64, 0);
            encode_record(&record(
                REGION,
                Scope::Regional,
                index as u64 + 1,
                1,
                timestamp,
                index,
            ))
        })
        .collect();
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    group.bench_function("encode_batch_64", |b| {
        b.iter(|| encode_batch(black_box(&encoded).iter().map(Vec::as_slice)))
    });
    let data = encode_batch(encoded.iter().map(Vec::as_slice));
    assert_eq!(
        decode_batch(&data).expect("the batch decodes").len(),
        BATCH_RECORDS
    );
    group.bench_function("decode_batch_64", |b| {
        b.iter(|| decode_batch(black_box(&data)).expect("the batch decodes"))
    });
    group.finish();
}

/// A table of [`DEDUP_SESSIONS`] sessions, each with a full window of applied sequences
/// `1..=DEDUP_WINDOW_MAX`, and the log time of its last record.
fn dedup_table_with_full_windows(sessions: &[u64]) -> (DedupTable, u64) {
    let mut table = DedupTable::new(DedupLimits::STANDARD);
    let mut now_us = START_US;
    let mut batch = WriteBatch::new();
    for &session in sessions {
        table
            .open(session, now_us, REGION_STATE, &mut batch)
            .expect("the table has room for the benchmark's sessions");
    }
    let mut position = 0;
    for sequence in 1..=DEDUP_WINDOW_MAX as u64 {
        let mut batch = WriteBatch::new();
        for &session in sessions {
            now_us += 1;
            position += 1;
            table.record(
                session,
                sequence,
                position,
                now_us,
                REGION_STATE,
                &mut batch,
            );
        }
    }
    assert_eq!(table.session_count(), sessions.len());
    (table, now_us)
}

fn dedup(c: &mut Criterion) {
    let mut group = c.benchmark_group("dedup");
    group.throughput(Throughput::Elements(1));
    let sessions: Vec<u64> = (0..DEDUP_SESSIONS).map(session_id).collect();
    let (mut table, mut now_us) = dedup_table_with_full_windows(&sessions);
    let newest = DEDUP_WINDOW_MAX as u64;

    for &session in &sessions {
        assert_eq!(table.check(session, newest + 1), DedupVerdict::New);
        assert!(matches!(
            table.check(session, newest),
            DedupVerdict::Duplicate { .. }
        ));
    }

    // The calls go round the sessions, so each one looks up another session, as the calls of
    // many clients do.
    let mut turn = 0;
    group.bench_function("check_new_10k_sessions", |b| {
        b.iter(|| {
            turn = (turn + 1) % sessions.len();
            table.check(black_box(sessions[turn]), black_box(newest + 1))
        })
    });
    // A client's retry of a call the region applied.
    group.bench_function("check_retry_10k_sessions", |b| {
        b.iter(|| {
            turn = (turn + 1) % sessions.len();
            table.check(black_box(sessions[turn]), black_box(newest))
        })
    });

    // What `RegionLog` does for each new record it applies: expire the sessions idle past the
    // timeout, check the pair, record it (pushing the oldest sequence out of the full window),
    // writing into the raft entry's batch. The table stays the same size: every session keeps
    // a full window, and the log time advances 1 µs per record, far below the idle timeout.
    let mut next_sequence = vec![newest + 1; sessions.len()];
    let mut position = DEDUP_SESSIONS * newest;
    group.bench_function("apply_record_10k_sessions", |b| {
        b.iter(|| {
            turn = (turn + 1) % sessions.len();
            let (session, sequence) = (sessions[turn], next_sequence[turn]);
            next_sequence[turn] += 1;
            now_us += 1;
            position += 1;
            let mut batch = WriteBatch::new();
            table.expire(now_us, REGION_STATE, &mut batch);
            let verdict = table.check(session, sequence);
            assert_eq!(verdict, DedupVerdict::New, "a new call of a live session");
            table.record(
                session,
                sequence,
                position,
                now_us,
                REGION_STATE,
                &mut batch,
            );
            batch
        })
    });
    assert_eq!(table.session_count(), sessions.len(), "no session expired");
    group.finish();
}

/// A region log and the store it was applied to, one raft entry at a time, as every member of
/// the region holds them.
struct RegionFixture {
    log: RegionLog,
    store: MemoryStore,
    /// The sessions of the clients that call global objects, one record each per round.
    sessions: Vec<u64>,
    /// The leader's clock: the log time of the next proposal, in microseconds.
    now_us: u64,
}

/// One tick of a one-member region and the handling of what it made ready.
fn step(node: &mut RegionNode, store: &mut MemoryStore, now_us: &mut u64) {
    *now_us += 10_000;
    node.handle_tick(*now_us);
    node.handle_ready(&mut StoreIo::new(store))
        .expect("the memory store does not fail");
    while node.poll_output().is_some() {}
}

impl RegionFixture {
    /// A region whose clients opened their sessions. Sessions are opened the way clients open
    /// them, through a one-member `RegionNode` over a `MemoryStore` (the entry that opens one
    /// is the node's own); its log and store are then driven directly.
    fn with_sessions(count: usize) -> RegionFixture {
        let mut store = MemoryStore::new();
        let region = RegionId::new(REGION).expect("a valid region id");
        let config = RegionNodeConfig::new(1, vec![1], region);
        let mut node = RegionNode::open(config, &mut store).expect("a one-member region opens");
        let mut now_us = START_US;
        while !node.is_leader() {
            step(&mut node, &mut store, &mut now_us);
        }
        let sessions: Vec<u64> = (0..count as u64).map(session_id).collect();
        for (open_id, &session) in sessions.iter().enumerate() {
            node.handle_open_session(now_us, open_id as u64 + 1, session);
        }
        for _ in 0..100 {
            if node.region_log().dedup().session_count() == count {
                break;
            }
            step(&mut node, &mut store, &mut now_us);
        }
        assert_eq!(node.region_log().dedup().session_count(), count);
        RegionFixture {
            log: node.region_log().clone(),
            store,
            sessions,
            now_us: now_us + 1_000,
        }
    }

    /// The raft entry of round `round`'s global records: one call of every session.
    fn records_entry(&self, round: u64) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = self
            .sessions
            .iter()
            .enumerate()
            .map(|(index, &session)| {
                let timestamp = Timestamp::new(self.now_us + index as u64, 0);
                encode_record(&record(
                    REGION,
                    Scope::Global,
                    session,
                    round,
                    timestamp,
                    index,
                ))
            })
            .collect();
        encode_batch(encoded.iter().map(Vec::as_slice))
    }

    /// The leader's `CloseBatch` after the records, on `log`: the coordinator acknowledged
    /// every batch closed before, so the region forgets them and holds one outgoing batch at
    /// a time.
    fn close_entry(&self, log: &RegionLog) -> Vec<u8> {
        let global = log.global();
        let acknowledged = (global.incarnation(), global.last_batch_number());
        let proposed_closed = Timestamp::new(self.now_us + 10_000, 0);
        encode_close_batch(proposed_closed, acknowledged)
    }

    /// Applies one entry and persists its writes, as a member does.
    fn apply_and_write(&mut self, data: &[u8]) -> EntryOutcome {
        let (outcome, batch) = apply(&mut self.log, &self.store, data);
        DurableStore::write(&mut self.store, batch, true).expect("the memory store does not fail");
        outcome
    }

    /// One whole round, persisted: the records, their batch, and their sealed epoch.
    fn round(&mut self, round: u64) {
        let outcome = self.apply_and_write(&self.records_entry(round));
        assert_records_appended(&outcome, self.sessions.len());
        let outcome = self.apply_and_write(&self.close_entry(&self.log));
        let batch = assert_batch_closed(&outcome, &self.log, self.sessions.len());
        let outcome = self.apply_and_write(&epoch_entry(&self.log, &batch));
        assert_epoch_appended(&outcome, self.sessions.len() * ALL_REGIONS.len());
        assert_eq!(
            self.log.global().unsealed().count(),
            0,
            "every record sealed"
        );
        self.now_us += 20_000;
    }
}

/// Applies one raft entry to `log`, reading `store`; returns what it did and its writes.
fn apply(log: &mut RegionLog, store: &MemoryStore, data: &[u8]) -> (EntryOutcome, WriteBatch) {
    let mut batch = WriteBatch::new();
    let outcome = log
        .apply(0, data, store, &mut batch)
        .expect("the memory store does not fail");
    (outcome, batch)
}

/// The sealed epoch that the coordinator makes of `batch` (the outgoing batch of `log`) and
/// as many records of each other region, merged in epoch order: one part.
fn epoch_entry(log: &RegionLog, batch: &OutgoingBatch) -> Vec<u8> {
    let global = log.global();
    let own: Vec<Record> = global.batch_records(batch).cloned().collect();
    let mut records = own.clone();
    for (region_index, region) in ALL_REGIONS
        .iter()
        .filter(|&&region| region != REGION)
        .enumerate()
    {
        for (index, own_record) in own.iter().enumerate() {
            // The same timestamps as the region's own records: ties are broken by region.
            records.push(record(
                region,
                Scope::Global,
                ((region_index as u64 + 1) << 32) | index as u64,
                own_record.request_sequence.get(),
                own_record.timestamp,
                index,
            ));
        }
    }
    records.sort_by(|a, b| {
        (a.timestamp, a.origin_region.as_str(), a.request_sequence).cmp(&(
            b.timestamp,
            b.origin_region.as_str(),
            b.request_sequence,
        ))
    });
    let member_regions = ALL_REGIONS
        .iter()
        .map(|name| RegionId::new(*name).expect("a valid region id"))
        .collect();
    let previous = global.watermark();
    encode_epoch_part(&EpochPart {
        epoch_number: global.epochs_applied_through() + 1,
        watermark: batch.closed,
        previous_watermark: (previous != Timestamp::ZERO).then_some(previous),
        records,
        part_index: 0,
        part_count: 1,
        member_regions,
    })
}

fn assert_records_appended(outcome: &EntryOutcome, count: usize) {
    let EntryOutcome::Records(records) = outcome else {
        panic!("not a batch of records: {outcome:?}");
    };
    assert_eq!(records.len(), count);
    for record in records {
        assert!(
            matches!(
                record,
                RecordOutcome::Appended {
                    entry: LogEntry::PendingGlobal(_),
                    ..
                }
            ),
            "a global record joins the open batch: {record:?}"
        );
    }
}

fn assert_batch_closed(outcome: &EntryOutcome, log: &RegionLog, count: usize) -> OutgoingBatch {
    let EntryOutcome::BatchClosed(Some(batch)) = outcome else {
        panic!("no batch closed: {outcome:?}");
    };
    assert_eq!(log.global().batch_records(batch).count(), count);
    assert_eq!(
        log.global().outgoing().count(),
        1,
        "acknowledged batches forgotten"
    );
    *batch
}

fn assert_epoch_appended(outcome: &EntryOutcome, count: usize) {
    let EntryOutcome::EpochPart {
        ignored,
        appended,
        membership,
        ..
    } = outcome
    else {
        panic!("not an epoch part: {outcome:?}");
    };
    assert_eq!(ignored, &None, "the part is the next expected");
    assert_eq!(
        appended.len(),
        count + 1,
        "every record and the epoch's end"
    );
    assert_eq!(membership, &MembershipChange::Unchanged);
}

/// The message the leader sends the coordinator for an outgoing batch: the same fields as
/// `RegionNode`'s own (private) builder fills, encoded as gRPC sends it.
fn region_batch_message(log: &RegionLog, batch: &OutgoingBatch) -> Vec<u8> {
    proto::RegionBatch {
        region: REGION.to_owned(),
        batch_number: batch.batch_number,
        records: log
            .global()
            .batch_records(batch)
            .cloned()
            .map(proto::Record::from)
            .collect(),
        closed_timestamp: Some(batch.closed.into()),
        sender_node_id: 1,
        sender_time: Some(batch.closed.into()),
        incarnation: batch.incarnation,
    }
    .encode_to_vec()
}

fn region_global(c: &mut Criterion) {
    let mut group = c.benchmark_group("region_global");
    let mut fixture = RegionFixture::with_sessions(BATCH_RECORDS);
    for round in 1..=WARM_UP_ROUNDS {
        fixture.round(round);
    }
    // Every measurement starts from a copy of one state and discards its writes, so the log,
    // the store and the bounds on unsealed records stay where the warm-up left them; the
    // copy is made outside the measured time.
    let store = &fixture.store;
    let records = fixture.records_entry(WARM_UP_ROUNDS + 1);
    let mut with_open_batch = fixture.log.clone();
    let (outcome, _) = apply(&mut with_open_batch, store, &records);
    assert_records_appended(&outcome, BATCH_RECORDS);

    // Every member applies the raft entry of proposals: per record the dedup table, the
    // bounds on unsealed records, the open batch, the stored entry.
    group.throughput(Throughput::Elements(BATCH_RECORDS as u64));
    group.bench_function("apply_global_records_64", |b| {
        b.iter_batched(
            || fixture.log.clone(),
            |mut log| {
                let applied = apply(&mut log, store, &records);
                (log, applied)
            },
            BatchSize::SmallInput,
        )
    });

    // A `CloseBatch` is one raft entry per epoch interval however many records wait, so its
    // cost per record is this divided by the records the batch holds; then the leader builds
    // and encodes the batch's message to the coordinator.
    let close = fixture.close_entry(&with_open_batch);
    let mut with_outgoing_batch = with_open_batch.clone();
    let (outcome, _) = apply(&mut with_outgoing_batch, store, &close);
    let outgoing = assert_batch_closed(&outcome, &with_outgoing_batch, BATCH_RECORDS);
    group.bench_function("close_and_ship_batch_64", |b| {
        b.iter_batched(
            || with_open_batch.clone(),
            |mut log| {
                let (outcome, batch) = apply(&mut log, store, &close);
                let EntryOutcome::BatchClosed(Some(closed)) = &outcome else {
                    unreachable!("checked before the measurement");
                };
                let message = region_batch_message(&log, closed);
                (log, outcome, batch, message)
            },
            BatchSize::SmallInput,
        )
    });

    // The region's side of an epoch merge: the coordinator merged the regions' records; the
    // region decodes the part, appends each record as a sequenced entry (its own records
    // leave the unsealed set, and their sessions learn their final position), then the
    // epoch's end.
    let epoch = epoch_entry(&with_outgoing_batch, &outgoing);
    let epoch_records = BATCH_RECORDS * ALL_REGIONS.len();
    let (outcome, _) = apply(&mut with_outgoing_batch.clone(), store, &epoch);
    assert_epoch_appended(&outcome, epoch_records);
    group.throughput(Throughput::Elements(epoch_records as u64));
    group.bench_function("append_sealed_epoch_192", |b| {
        b.iter_batched(
            || with_outgoing_batch.clone(),
            |mut log| {
                let applied = apply(&mut log, store, &epoch);
                (log, applied)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, record_encoding, dedup, region_global);
criterion_main!(benches);
