//! [`RegionLog`]: the region's log of records, the state machine of its raft group.
//!
//! Applying a committed entry (a batch of records) runs each record through the dedup table
//! ([`crate::dedup`]): a retry of an applied (client, sequence) pair gets the first copy's
//! position and appends nothing; a new pair gets the next dense position (1, 2, 3, ...). Every
//! write goes into the batch the raft group persists with its own, so the log, the dedup table
//! and the raft applied index never disagree after a crash.
//!
//! Store layout:
//! - [`REGION_LOG`]: one record per key, the key being its position as 8 big-endian bytes, the
//!   value its protocol buffer encoding;
//! - [`REGION_STATE`]: `meta` (next position, first retained position, the log digest, the
//!   highest timestamp) and one `client/<id>` key per client of the dedup table.
//!
//! Retention keeps the newest records by count and size ([`RegionLogRetention`]), decided in
//! apply, so every member drops the same records at the same point. Snapshots carry the whole
//! state (dedup table, positions, digest and the retained records).
//!
//! The digest chains a 64-bit hash over every record ever applied, with its position: two
//! members with the same next position and the same digest applied the same records, even
//! those no longer retained.

use std::collections::VecDeque;

use dsss_raft_group::{
    DurableStore, KeySpace, RAFT_MESSAGE_BYTES_MAX, SnapshotError, StateMachine, StoreError,
    WriteBatch,
};
use dsss_wire::{ClientId, Record, RequestSequence, Timestamp};

use crate::bytes::{FNV_OFFSET, Reader, corrupt, fnv1a, put_bytes};
use crate::dedup::{
    CLIENT_KEY_PREFIX, DedupLimits, DedupTable, DedupVerdict, decode_client_key,
    decode_stored_window, decode_window, encode_window,
};
use crate::record::{RECORD_BYTES_MAX, decode_batch, decode_record, encode_record};

/// The records of the region log, keyed by big-endian position.
pub const REGION_LOG: KeySpace = KeySpace::new("region_log");

/// The region log's state: positions, digest and the dedup table.
pub const REGION_STATE: KeySpace = KeySpace::new("region_state");

/// The key of the log's counters in [`REGION_STATE`].
pub const META_KEY: &[u8] = b"meta";

/// The most records a retention policy may keep.
pub const RETAINED_RECORDS_MAX: u64 = 10_000_000;

/// The most record bytes a retention policy may keep. With the dedup table at its bounds, a
/// snapshot stays below [`SNAPSHOT_BYTES_MAX`].
pub const RETAINED_SIZE_BYTES_MAX: u64 = 16 * 1024 * 1024;

/// The largest snapshot, in bytes: it travels in one raft message.
pub const SNAPSHOT_BYTES_MAX: usize = RAFT_MESSAGE_BYTES_MAX - 1024 * 1024;

/// How many keys one scan of the store returns while recovering.
const RECOVERY_SCAN_CHUNK_MAX: usize = 1_024;

const META_FORMAT: u8 = 1;
const SNAPSHOT_FORMAT: u8 = 1;

/// A key greater than every 8-byte position key.
const LOG_END_KEY: [u8; 9] = [0xff; 9];

/// The end of the range of client keys: the prefix with its last byte raised by one.
const CLIENT_KEYS_END: &[u8] = b"client0";

/// How many records the region keeps. Every member of a region MUST use the same values (they
/// come from the topology), because retention is decided in apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionLogRetention {
    /// The most records kept (at most [`RETAINED_RECORDS_MAX`]).
    pub records_max: u64,
    /// The most bytes of encoded records kept (at most [`RETAINED_SIZE_BYTES_MAX`]).
    pub size_bytes_max: u64,
}

impl Default for RegionLogRetention {
    fn default() -> Self {
        RegionLogRetention {
            records_max: 100_000,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
        }
    }
}

impl RegionLogRetention {
    /// Checks both bounds, naming the first out of range.
    pub fn validate(&self) -> Result<(), String> {
        if self.records_max == 0 || self.records_max > RETAINED_RECORDS_MAX {
            return Err(format!(
                "retention records_max {} is outside 1..={RETAINED_RECORDS_MAX}",
                self.records_max
            ));
        }
        if self.size_bytes_max == 0 || self.size_bytes_max > RETAINED_SIZE_BYTES_MAX {
            return Err(format!(
                "retention size_bytes_max {} is outside 1..={RETAINED_SIZE_BYTES_MAX}",
                self.size_bytes_max
            ));
        }
        Ok(())
    }
}

/// A record in the log with its position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// Its position, from 1.
    pub position: u64,
    /// The record.
    pub record: Record,
    /// The size of its encoding, in bytes.
    pub size_bytes: u64,
}

/// What happened to one record of an applied entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Appended at `position`.
    Appended {
        /// Its position.
        position: u64,
        /// The record.
        record: Record,
    },
    /// The pair was applied before, at `position`; nothing appended.
    Duplicate {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// The position of the first copy.
        position: u64,
    },
    /// The sequence is below the client's dedup window; nothing appended.
    TooOld {
        /// The client.
        client_id: ClientId,
        /// The client's sequence.
        request_sequence: RequestSequence,
        /// The lowest sequence the window can still judge.
        floor: u64,
    },
}

/// What applying one raft entry did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryOutcome {
    /// The entry's records, in order.
    Records(Vec<RecordOutcome>),
    /// The entry did not decode; every member refuses it alike and nothing changes.
    Refused {
        /// Why.
        reason: String,
    },
}

/// The region log. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionLog {
    retention: RegionLogRetention,
    next_position: u64,
    first_retained_position: u64,
    digest: u64,
    timestamp_max: Timestamp,
    records: VecDeque<LogRecord>,
    retained_size_bytes: u64,
    dedup: DedupTable,
}

/// A decoded snapshot, checked.
struct DecodedSnapshot {
    next_position: u64,
    first_retained_position: u64,
    digest: u64,
    timestamp_max: Timestamp,
    dedup: DedupTable,
    records: VecDeque<LogRecord>,
}

/// The key of `position` in [`REGION_LOG`].
pub fn position_key(position: u64) -> [u8; 8] {
    position.to_be_bytes()
}

impl RegionLog {
    /// An empty log: the first record will be at position 1.
    ///
    /// # Panics
    ///
    /// If `retention` is out of range (the node's configuration checks it first).
    pub fn new(retention: RegionLogRetention) -> Self {
        if let Err(reason) = retention.validate() {
            panic!("invalid region log retention: {reason}");
        }
        RegionLog {
            retention,
            next_position: 1,
            first_retained_position: 1,
            digest: FNV_OFFSET,
            timestamp_max: Timestamp::ZERO,
            records: VecDeque::new(),
            retained_size_bytes: 0,
            dedup: DedupTable::new(DedupLimits::STANDARD),
        }
    }

    // Getters.

    /// The position the next record will take.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The position of the last record applied, 0 before the first.
    pub fn last_position(&self) -> u64 {
        self.next_position - 1
    }

    /// The position of the oldest record still kept.
    pub fn first_retained_position(&self) -> u64 {
        self.first_retained_position
    }

    /// The digest chained over every record applied so far.
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The highest timestamp of any record applied.
    pub fn timestamp_max(&self) -> Timestamp {
        self.timestamp_max
    }

    /// The retained records, oldest first.
    pub fn records(&self) -> impl Iterator<Item = &LogRecord> {
        self.records.iter()
    }

    /// The record at `position`, if it is retained.
    pub fn record(&self, position: u64) -> Option<&LogRecord> {
        let offset = position.checked_sub(self.first_retained_position)?;
        self.records.get(usize::try_from(offset).ok()?)
    }

    /// The bytes of the retained records.
    pub fn retained_size_bytes(&self) -> u64 {
        self.retained_size_bytes
    }

    /// The dedup table.
    pub fn dedup(&self) -> &DedupTable {
        &self.dedup
    }

    /// The retention bounds.
    pub fn retention(&self) -> RegionLogRetention {
        self.retention
    }

    // Applying.

    fn apply_record(
        &mut self,
        record: Record,
        bytes: &[u8],
        batch: &mut WriteBatch,
    ) -> RecordOutcome {
        let position = self.next_position;
        let client_id = record.client_id;
        let request_sequence = record.request_sequence;
        self.dedup.expire(position, REGION_STATE, batch);
        match self.dedup.check(client_id.get(), request_sequence.get()) {
            DedupVerdict::Duplicate { position } => RecordOutcome::Duplicate {
                client_id,
                request_sequence,
                position,
            },
            DedupVerdict::TooOld { floor } => RecordOutcome::TooOld {
                client_id,
                request_sequence,
                floor,
            },
            DedupVerdict::New => {
                self.dedup.record(
                    client_id.get(),
                    request_sequence.get(),
                    position,
                    REGION_STATE,
                    batch,
                );
                self.append(position, record.clone(), bytes, batch);
                RecordOutcome::Appended { position, record }
            }
        }
    }

    fn append(&mut self, position: u64, record: Record, bytes: &[u8], batch: &mut WriteBatch) {
        // Positions are dense and only grow, and a position is written once: an applied
        // record never changes.
        assert_eq!(
            position, self.next_position,
            "positions are assigned in order"
        );
        assert!(
            self.records
                .back()
                .is_none_or(|last| last.position + 1 == position),
            "the retained log has no gap before position {position}"
        );
        batch.put(REGION_LOG, position_key(position).to_vec(), bytes.to_vec());
        self.digest = fnv1a(fnv1a(self.digest, &position.to_be_bytes()), bytes);
        self.timestamp_max = self.timestamp_max.max(record.timestamp);
        self.next_position += 1;
        self.retained_size_bytes += bytes.len() as u64;
        self.records.push_back(LogRecord {
            position,
            record,
            size_bytes: bytes.len() as u64,
        });
    }

    fn enforce_retention(&mut self, batch: &mut WriteBatch) {
        let first_before = self.first_retained_position;
        while self.records.len() as u64 > self.retention.records_max
            || self.retained_size_bytes > self.retention.size_bytes_max
        {
            let Some(dropped) = self.records.pop_front() else {
                break;
            };
            self.retained_size_bytes -= dropped.size_bytes;
            self.first_retained_position = dropped.position + 1;
        }
        if self.first_retained_position > first_before {
            batch.delete_range(
                REGION_LOG,
                position_key(first_before).to_vec(),
                position_key(self.first_retained_position).to_vec(),
            );
        }
        assert_eq!(
            self.first_retained_position + self.records.len() as u64,
            self.next_position,
            "the retained records end just before the next position"
        );
    }

    fn encode_meta(&self) -> Vec<u8> {
        let mut bytes = vec![META_FORMAT];
        bytes.extend_from_slice(&self.next_position.to_be_bytes());
        bytes.extend_from_slice(&self.first_retained_position.to_be_bytes());
        bytes.extend_from_slice(&self.digest.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp_max.physical_us.to_be_bytes());
        bytes.extend_from_slice(&self.timestamp_max.logical.to_be_bytes());
        bytes
    }

    fn write_meta(&self, batch: &mut WriteBatch) {
        batch.put(REGION_STATE, META_KEY, self.encode_meta());
    }

    // Snapshots.

    fn encode_snapshot(&self) -> Vec<u8> {
        let mut bytes = vec![SNAPSHOT_FORMAT];
        bytes.extend_from_slice(&self.encode_meta()[1..]);
        bytes.extend_from_slice(&(self.dedup.client_count() as u32).to_be_bytes());
        for (client_id, window) in self.dedup.clients() {
            bytes.extend_from_slice(&client_id.to_be_bytes());
            bytes.extend_from_slice(&encode_window(window));
        }
        bytes.extend_from_slice(&(self.records.len() as u64).to_be_bytes());
        for log_record in &self.records {
            put_bytes(&mut bytes, &encode_record(&log_record.record));
        }
        bytes
    }

    fn decode_snapshot(&self, data: &[u8]) -> Result<DecodedSnapshot, String> {
        if data.len() > SNAPSHOT_BYTES_MAX {
            return Err(format!(
                "{} bytes, more than the maximum of {SNAPSHOT_BYTES_MAX}",
                data.len()
            ));
        }
        let mut reader = Reader::new(data);
        let format = reader.u8("snapshot format")?;
        if format != SNAPSHOT_FORMAT {
            return Err(format!(
                "format {format} is unknown; this release reads format {SNAPSHOT_FORMAT}"
            ));
        }
        let (next_position, first_retained_position, digest, timestamp_max) =
            decode_meta_fields(&mut reader)?;
        let client_count = reader.u32("client count")? as usize;
        let limits = DedupLimits::STANDARD;
        if client_count > limits.clients_max {
            return Err(format!(
                "{client_count} clients, more than the maximum of {}",
                limits.clients_max
            ));
        }
        let mut dedup = DedupTable::new(limits);
        for _ in 0..client_count {
            let client_id = reader.u64("client id")?;
            let window = decode_window(&mut reader, limits.window_max)
                .map_err(|reason| format!("client {client_id}: {reason}"))?;
            if window.last_position >= next_position {
                return Err(format!(
                    "client {client_id}: last position {} is not below the next position \
                     {next_position}",
                    window.last_position
                ));
            }
            dedup.insert_recovered(client_id, window)?;
        }
        let record_count = reader.u64("record count")?;
        if record_count != next_position - first_retained_position {
            return Err(format!(
                "{record_count} records, but positions {first_retained_position} to {} need {}",
                next_position - 1,
                next_position - first_retained_position
            ));
        }
        let mut records = VecDeque::new();
        for offset in 0..record_count {
            let position = first_retained_position + offset;
            let bytes = reader.bytes(RECORD_BYTES_MAX, "record")?;
            let record =
                decode_record(bytes).map_err(|error| format!("record at {position}: {error}"))?;
            records.push_back(LogRecord {
                position,
                record,
                size_bytes: bytes.len() as u64,
            });
        }
        reader.finish()?;
        Ok(DecodedSnapshot {
            next_position,
            first_retained_position,
            digest,
            timestamp_max,
            dedup,
            records,
        })
    }

    // Recovery.

    fn recover_records(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut start = position_key(self.first_retained_position).to_vec();
        loop {
            let chunk = store.scan(REGION_LOG, &start, &LOG_END_KEY, RECOVERY_SCAN_CHUNK_MAX)?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let position = <[u8; 8]>::try_from(key.as_slice())
                    .map(u64::from_be_bytes)
                    .map_err(|_| corrupt(REGION_LOG, &key, "a position key is 8 bytes"))?;
                let expected = self.first_retained_position + self.records.len() as u64;
                if position != expected || position >= self.next_position {
                    return Err(corrupt(
                        REGION_LOG,
                        &key,
                        format!(
                            "expected position {expected} (the log ends before {}), found \
                             {position}",
                            self.next_position
                        ),
                    ));
                }
                let record =
                    decode_record(&value).map_err(|error| corrupt(REGION_LOG, &key, error))?;
                self.retained_size_bytes += value.len() as u64;
                self.records.push_back(LogRecord {
                    position,
                    record,
                    size_bytes: value.len() as u64,
                });
                start = position_key(position + 1).to_vec();
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                break;
            }
        }
        if self.first_retained_position + self.records.len() as u64 != self.next_position {
            return Err(corrupt(
                REGION_STATE,
                META_KEY,
                format!(
                    "the log should hold positions {} to {}, but holds {} records",
                    self.first_retained_position,
                    self.next_position - 1,
                    self.records.len()
                ),
            ));
        }
        Ok(())
    }

    fn recover_clients(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut start = CLIENT_KEY_PREFIX.to_vec();
        loop {
            let chunk = store.scan(
                REGION_STATE,
                &start,
                CLIENT_KEYS_END,
                RECOVERY_SCAN_CHUNK_MAX,
            )?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let client_id = decode_client_key(&key)
                    .ok_or_else(|| corrupt(REGION_STATE, &key, "not a client key"))?;
                let window = decode_stored_window(REGION_STATE, &key, &value)?;
                self.dedup
                    .insert_recovered(client_id, window)
                    .map_err(|reason| corrupt(REGION_STATE, &key, reason))?;
                start = key;
                start.push(0);
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                return Ok(());
            }
        }
    }
}

fn decode_meta_fields(reader: &mut Reader<'_>) -> Result<(u64, u64, u64, Timestamp), String> {
    let next_position = reader.u64("next position")?;
    let first_retained_position = reader.u64("first retained position")?;
    let digest = reader.u64("digest")?;
    let physical_us = reader.u64("timestamp")?;
    let logical = reader.u32("timestamp")?;
    if next_position == 0 || first_retained_position == 0 || first_retained_position > next_position
    {
        return Err(format!(
            "positions out of order: first retained {first_retained_position}, next \
             {next_position}"
        ));
    }
    Ok((
        next_position,
        first_retained_position,
        digest,
        Timestamp::new(physical_us, logical),
    ))
}

impl StateMachine for RegionLog {
    type Output = EntryOutcome;

    fn apply(&mut self, _index: u64, data: &[u8], batch: &mut WriteBatch) -> EntryOutcome {
        let records = match decode_batch(data) {
            Ok(records) => records,
            Err(reason) => return EntryOutcome::Refused { reason },
        };
        let outcomes = records
            .into_iter()
            .map(|(record, bytes)| self.apply_record(record, bytes, batch))
            .collect();
        self.enforce_retention(batch);
        self.write_meta(batch);
        EntryOutcome::Records(outcomes)
    }

    fn snapshot(&self) -> Vec<u8> {
        self.encode_snapshot()
    }

    fn validate_snapshot(&self, data: &[u8]) -> Result<(), SnapshotError> {
        self.decode_snapshot(data)
            .map(|_| ())
            .map_err(|reason| SnapshotError::new(format!("region log {reason}")))
    }

    fn restore(&mut self, data: &[u8], batch: &mut WriteBatch) -> Result<(), SnapshotError> {
        let decoded = self
            .decode_snapshot(data)
            .map_err(|reason| SnapshotError::new(format!("region log {reason}")))?;
        batch.delete_range(REGION_LOG, Vec::new(), LOG_END_KEY.to_vec());
        batch.delete_range(REGION_STATE, Vec::new(), LOG_END_KEY.to_vec());
        self.next_position = decoded.next_position;
        self.first_retained_position = decoded.first_retained_position;
        self.digest = decoded.digest;
        self.timestamp_max = decoded.timestamp_max;
        self.dedup = decoded.dedup;
        self.records = decoded.records;
        self.retained_size_bytes = self.records.iter().map(|record| record.size_bytes).sum();
        for log_record in &self.records {
            batch.put(
                REGION_LOG,
                position_key(log_record.position).to_vec(),
                encode_record(&log_record.record),
            );
        }
        self.dedup.write_all(REGION_STATE, batch);
        self.write_meta(batch);
        Ok(())
    }

    fn recover(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let retention = self.retention;
        *self = RegionLog::new(retention);
        let Some(meta) = store.get(REGION_STATE, META_KEY)? else {
            return Ok(());
        };
        let mut reader = Reader::new(&meta);
        let format = reader
            .u8("meta format")
            .map_err(|reason| corrupt(REGION_STATE, META_KEY, reason))?;
        if format != META_FORMAT {
            return Err(corrupt(
                REGION_STATE,
                META_KEY,
                format!("format {format} is unknown; this release reads format {META_FORMAT}"),
            ));
        }
        let (next_position, first_retained_position, digest, timestamp_max) =
            decode_meta_fields(&mut reader)
                .and_then(|fields| reader.finish().map(|()| fields))
                .map_err(|reason| corrupt(REGION_STATE, META_KEY, reason))?;
        self.next_position = next_position;
        self.first_retained_position = first_retained_position;
        self.digest = digest;
        self.timestamp_max = timestamp_max;
        self.recover_records(store)?;
        self.recover_clients(store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_batch;
    use crate::record::tests::record;
    use dsss_raft_group::MemoryStore;

    fn batch_of(records: &[Record]) -> Vec<u8> {
        let encoded: Vec<Vec<u8>> = records.iter().map(encode_record).collect();
        encode_batch(encoded.iter().map(Vec::as_slice))
    }

    fn apply(log: &mut RegionLog, store: &mut MemoryStore, records: &[Record]) -> EntryOutcome {
        let mut batch = WriteBatch::new();
        let outcome = log.apply(0, &batch_of(records), &mut batch);
        store.write(batch, true).unwrap();
        outcome
    }

    fn positions(outcome: &EntryOutcome) -> Vec<u64> {
        let EntryOutcome::Records(outcomes) = outcome else {
            panic!("refused: {outcome:?}");
        };
        outcomes
            .iter()
            .map(|outcome| match outcome {
                RecordOutcome::Appended { position, .. }
                | RecordOutcome::Duplicate { position, .. } => *position,
                RecordOutcome::TooOld { .. } => 0,
            })
            .collect()
    }

    #[test]
    fn records_get_dense_positions_and_retries_their_first_position() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention::default());
        let outcome = apply(
            &mut log,
            &mut store,
            &[record(1, 1), record(2, 1), record(1, 2)],
        );
        assert_eq!(positions(&outcome), vec![1, 2, 3]);
        // A retry of (2, 1) in a later batch, and a duplicate inside one batch.
        let outcome = apply(
            &mut log,
            &mut store,
            &[record(2, 1), record(3, 1), record(3, 1)],
        );
        assert_eq!(positions(&outcome), vec![2, 4, 4]);
        let EntryOutcome::Records(outcomes) = &outcome else {
            unreachable!()
        };
        assert!(matches!(outcomes[0], RecordOutcome::Duplicate { .. }));
        assert!(matches!(outcomes[2], RecordOutcome::Duplicate { .. }));
        assert_eq!(log.next_position(), 5);
        assert_eq!(log.record(4).unwrap().record, record(3, 1));
    }

    #[test]
    fn a_sequence_below_the_window_is_refused_as_too_old() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention::default());
        let window = crate::dedup::DEDUP_WINDOW_MAX as u64;
        for sequence in 1..=window + 1 {
            apply(&mut log, &mut store, &[record(5, sequence)]);
        }
        let outcome = apply(&mut log, &mut store, &[record(5, 1)]);
        assert_eq!(
            outcome,
            EntryOutcome::Records(vec![RecordOutcome::TooOld {
                client_id: ClientId(5),
                request_sequence: RequestSequence(1),
                floor: 2,
            }])
        );
        assert_eq!(log.next_position(), window + 2, "nothing appended");
    }

    #[test]
    fn a_batch_that_does_not_decode_changes_nothing() {
        let mut log = RegionLog::new(RegionLogRetention::default());
        let before = log.clone();
        let mut batch = WriteBatch::new();
        let outcome = log.apply(0, &[1, 0, 0, 0, 1, 0xff], &mut batch);
        assert!(matches!(outcome, EntryOutcome::Refused { .. }));
        assert!(batch.is_empty());
        assert_eq!(log, before);
    }

    #[test]
    fn retention_keeps_the_newest_records_by_count_and_size() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention {
            records_max: 5,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
        });
        for sequence in 1..=12 {
            apply(&mut log, &mut store, &[record(1, sequence)]);
        }
        assert_eq!(log.first_retained_position(), 8);
        assert_eq!(log.records().count(), 5);
        assert_eq!(store.keys(REGION_LOG).len(), 5);
        assert!(log.record(7).is_none() && log.record(8).is_some());

        let record_size = encode_record(&record(1, 10)).len() as u64;
        let mut log = RegionLog::new(RegionLogRetention {
            records_max: 100,
            size_bytes_max: record_size * 3,
        });
        let mut store = MemoryStore::new();
        for sequence in 1..=10 {
            apply(&mut log, &mut store, &[record(1, sequence)]);
        }
        assert!(log.retained_size_bytes() <= record_size * 3);
        assert_eq!(log.records().count(), 3);
    }

    #[test]
    fn recovery_restores_the_log_and_the_dedup_table() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention {
            records_max: 4,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
        });
        for sequence in 1..=9 {
            apply(&mut log, &mut store, &[record(sequence % 3, sequence)]);
        }
        let mut recovered = RegionLog::new(log.retention());
        recovered.recover(&store).unwrap();
        assert_eq!(recovered, log);
        // A retry after the restart still finds its first position.
        assert_eq!(
            recovered.dedup().check(1, 7),
            DedupVerdict::Duplicate { position: 7 }
        );
    }

    #[test]
    fn a_snapshot_carries_the_whole_state_and_restores_it_alone() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention {
            records_max: 6,
            size_bytes_max: RETAINED_SIZE_BYTES_MAX,
        });
        for sequence in 1..=10 {
            apply(&mut log, &mut store, &[record(sequence % 2, sequence)]);
        }
        let snapshot = log.snapshot();
        let mut other_store = MemoryStore::new();
        let mut other = RegionLog::new(log.retention());
        apply(
            &mut other,
            &mut other_store,
            &[record(99, 1), record(98, 1)],
        );
        other.validate_snapshot(&snapshot).unwrap();
        let mut batch = WriteBatch::new();
        other.restore(&snapshot, &mut batch).unwrap();
        other_store.write(batch, true).unwrap();
        assert_eq!(other, log);
        let mut recovered = RegionLog::new(log.retention());
        recovered.recover(&other_store).unwrap();
        assert_eq!(recovered, log, "the restored state was fully written");
        assert_eq!(other.dedup().check(99, 1), DedupVerdict::New);
    }

    #[test]
    fn damaged_snapshots_and_stores_are_errors_never_panics() {
        let mut store = MemoryStore::new();
        let mut log = RegionLog::new(RegionLogRetention::default());
        for sequence in 1..=3 {
            apply(&mut log, &mut store, &[record(1, sequence)]);
        }
        let snapshot = log.snapshot();
        for length in 0..snapshot.len() {
            assert!(log.validate_snapshot(&snapshot[..length]).is_err());
        }
        let mut wrong_count = snapshot.clone();
        let count_offset = snapshot.len() - 3 * (4 + encode_record(&record(1, 1)).len()) - 8;
        wrong_count[count_offset + 7] = 9;
        let error = log.validate_snapshot(&wrong_count).unwrap_err();
        assert!(error.to_string().contains("records"), "{error}");

        let mut damaged = store.clone();
        let mut batch = WriteBatch::new();
        batch.delete(REGION_LOG, position_key(2).to_vec());
        damaged.write(batch, true).unwrap();
        let mut recovered = RegionLog::new(log.retention());
        let error = recovered.recover(&damaged).unwrap_err();
        assert!(error.to_string().contains("expected position 2"), "{error}");

        let mut damaged = store.clone();
        let mut batch = WriteBatch::new();
        batch.put(REGION_STATE, META_KEY, vec![1, 2, 3]);
        damaged.write(batch, true).unwrap();
        let error = RegionLog::new(log.retention())
            .recover(&damaged)
            .unwrap_err();
        assert!(error.to_string().contains("region_state"), "{error}");
    }

    #[test]
    fn the_digest_tells_equal_histories_from_different_ones() {
        let (mut store_a, mut store_b) = (MemoryStore::new(), MemoryStore::new());
        let mut a = RegionLog::new(RegionLogRetention::default());
        let mut b = RegionLog::new(RegionLogRetention::default());
        apply(&mut a, &mut store_a, &[record(1, 1), record(2, 1)]);
        apply(&mut b, &mut store_b, &[record(1, 1)]);
        apply(&mut b, &mut store_b, &[record(2, 1)]);
        assert_eq!(
            a.digest(),
            b.digest(),
            "batching does not change the history"
        );
        let mut c = RegionLog::new(RegionLogRetention::default());
        let mut store_c = MemoryStore::new();
        apply(&mut c, &mut store_c, &[record(2, 1), record(1, 1)]);
        assert_ne!(a.digest(), c.digest());
    }
}
