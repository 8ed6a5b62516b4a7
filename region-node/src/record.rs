//! Records as the region node proposes and stores them.
//!
//! A record is [`dsss_wire::Record`], encoded by [`dsss_wire::encode_record`]. The region log
//! stores every entry as a [`proto::LogEntry`] (its position and which of the four kinds it
//! is: regional, pending global, sequenced global, epoch sealed), the form subscribers get.
//!
//! Proposals are
//! batched: one raft entry carries up to [`BATCH_RECORDS_MAX`] records and
//! [`BATCH_BYTES_MAX`] bytes, so that under load one round (one sync) orders many records.
//! An entry is encoded as a format byte, a record count, and each record with a 4-byte length
//! prefix. Entry data comes from the log, which other nodes fed: decoding never panics, and a
//! batch that does not decode is refused whole by every member alike.

use dsss_wire::proto;
use dsss_wire::{
    Arguments, ClientId, MethodId, ObjectId, Record, RegionId, RequestSequence, Scope, Timestamp,
};
use prost::Message as _;

// The record codec is the wire crate's, shared with the coordinator; the node's modules name it
// here, next to the batches and log entries built on it.
pub use dsss_wire::{RECORD_BYTES_MAX, decode_record, encode_record};

use crate::bytes::{Reader, put_bytes};

/// The most records in one raft entry.
pub const BATCH_RECORDS_MAX: usize = 256;

/// The most bytes of encoded records in one raft entry. A single record may exceed it (its
/// arguments may be up to [`dsss_wire::ARGUMENTS_BYTES_MAX`]); it then travels alone.
pub const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The largest stored log entry: a record and its position, kind and place in an epoch.
pub const STORED_ENTRY_BYTES_MAX: usize = RECORD_BYTES_MAX + 256;

/// The format byte of a record batch entry.
pub(crate) const BATCH_FORMAT: u8 = 1;

/// Which of the four kinds a log entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogEntryKind {
    /// A regional record: subscribers apply it.
    Regional,
    /// A global record waiting for its epoch: it applies nothing.
    PendingGlobal,
    /// A global record at its place in a sealed epoch: subscribers apply it.
    SequencedGlobal,
    /// The end of a sealed epoch.
    EpochSealed,
}

/// One entry of the region log (the domain form of [`proto::LogEntry`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// A regional record, applied at its position.
    Regional(Record),
    /// A global record of this region, durable here and waiting for its epoch.
    PendingGlobal(Record),
    /// A global record (of any region) at its place in a sealed epoch.
    SequencedGlobal {
        /// The sealed epoch.
        epoch_number: u64,
        /// The record's index in the epoch, from 0.
        index_in_epoch: u32,
        /// The record.
        record: Record,
    },
    /// The end of a sealed epoch: every record of the epoch sits at a lower position.
    EpochSealed {
        /// The epoch that ends here.
        epoch_number: u64,
        /// The epoch's upper bound.
        watermark: Timestamp,
        /// The watermark of the epoch before, none for the first epoch.
        previous_watermark: Option<Timestamp>,
        /// How many records the epoch holds.
        record_count: u32,
        /// The regions in the membership when the epoch was sealed, sorted; empty in entries
        /// written before epoch ends named them. A region that missed the epoch needs them to
        /// append it from this log (docs/global-protocol.md section 7).
        member_regions: Vec<RegionId>,
        /// Non-zero when the region skipped epochs no log held any longer: the log holds no
        /// record of the epochs from this one through `epoch_number` (`record_count` is 0), so
        /// a copy of a global object from before this entry misses records
        /// (docs/global-protocol.md section 7, "When no region holds them").
        skipped_from: u64,
    },
}

impl LogEntry {
    /// Which kind of entry this is.
    pub fn kind(&self) -> LogEntryKind {
        match self {
            LogEntry::Regional(_) => LogEntryKind::Regional,
            LogEntry::PendingGlobal(_) => LogEntryKind::PendingGlobal,
            LogEntry::SequencedGlobal { .. } => LogEntryKind::SequencedGlobal,
            LogEntry::EpochSealed { .. } => LogEntryKind::EpochSealed,
        }
    }

    /// The record the entry carries, of whatever kind; none for an epoch's end.
    pub fn record(&self) -> Option<&Record> {
        match self {
            LogEntry::Regional(record)
            | LogEntry::PendingGlobal(record)
            | LogEntry::SequencedGlobal { record, .. } => Some(record),
            LogEntry::EpochSealed { .. } => None,
        }
    }

    /// The record a subscriber applies at this entry: a regional record or a sequenced global
    /// record. A pending global record is applied later, at its sequenced copy.
    pub fn applied_record(&self) -> Option<&Record> {
        match self {
            LogEntry::Regional(record) | LogEntry::SequencedGlobal { record, .. } => Some(record),
            LogEntry::PendingGlobal(_) | LogEntry::EpochSealed { .. } => None,
        }
    }

    /// The wire form of the entry at `position`.
    pub fn to_wire(&self, position: u64) -> proto::LogEntry {
        use proto::log_entry::Entry;
        let entry = match self.clone() {
            LogEntry::Regional(record) => Entry::Regional(record.into()),
            LogEntry::PendingGlobal(record) => Entry::PendingGlobal(proto::PendingGlobalRecord {
                record: Some(record.into()),
            }),
            LogEntry::SequencedGlobal {
                epoch_number,
                index_in_epoch,
                record,
            } => Entry::Global(proto::SequencedGlobalRecord {
                epoch_number,
                index_in_epoch,
                record: Some(record.into()),
            }),
            LogEntry::EpochSealed {
                epoch_number,
                watermark,
                previous_watermark,
                record_count,
                member_regions,
                skipped_from,
            } => Entry::EpochSealed(proto::EpochSealed {
                epoch_number,
                watermark: Some(watermark.into()),
                previous_watermark: previous_watermark.map(Into::into),
                record_count,
                member_regions: member_regions
                    .iter()
                    .map(|region| region.as_str().to_owned())
                    .collect(),
                first_skipped_epoch_number: skipped_from,
            }),
        };
        proto::LogEntry {
            position,
            entry: Some(entry),
        }
    }

    /// Checks a wire entry, returning its position and domain form.
    pub fn from_wire(wire: proto::LogEntry) -> Result<(u64, LogEntry), String> {
        use proto::log_entry::Entry;
        let position = wire.position;
        if position == 0 {
            return Err("log entry position 0; positions start at 1".to_owned());
        }
        let record = |record: Option<proto::Record>, what: &str| {
            let record = record.ok_or_else(|| format!("{what} at {position} has no record"))?;
            Record::try_from(record).map_err(|error| format!("{what} at {position}: {error}"))
        };
        let entry = match wire.entry {
            None => return Err(format!("log entry at {position} holds nothing")),
            Some(Entry::Regional(wire)) => LogEntry::Regional(record(Some(wire), "regional")?),
            Some(Entry::PendingGlobal(pending)) => {
                LogEntry::PendingGlobal(record(pending.record, "pending global record")?)
            }
            Some(Entry::Global(sequenced)) => LogEntry::SequencedGlobal {
                epoch_number: sequenced.epoch_number,
                index_in_epoch: sequenced.index_in_epoch,
                record: record(sequenced.record, "sequenced global record")?,
            },
            Some(Entry::EpochSealed(sealed)) => {
                let timestamp = |value: Option<proto::Timestamp>| {
                    value
                        .map(Timestamp::try_from)
                        .transpose()
                        .map_err(|error| format!("epoch end at {position}: {error}"))
                };
                if sealed.member_regions.len() > crate::global::MEMBER_REGIONS_MAX {
                    return Err(format!(
                        "epoch end at {position} names {} member regions, more than the \
                         maximum of {}",
                        sealed.member_regions.len(),
                        crate::global::MEMBER_REGIONS_MAX
                    ));
                }
                let member_regions = sealed
                    .member_regions
                    .into_iter()
                    .map(|name| {
                        RegionId::new(name)
                            .map_err(|error| format!("epoch end at {position}: {error}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if sealed.first_skipped_epoch_number > sealed.epoch_number
                    || (sealed.first_skipped_epoch_number > 0 && sealed.record_count > 0)
                {
                    return Err(format!(
                        "epoch end at {position} skips epochs {} to {} but counts {} records",
                        sealed.first_skipped_epoch_number, sealed.epoch_number, sealed.record_count
                    ));
                }
                LogEntry::EpochSealed {
                    epoch_number: sealed.epoch_number,
                    watermark: timestamp(sealed.watermark)?
                        .ok_or_else(|| format!("epoch end at {position} has no watermark"))?,
                    previous_watermark: timestamp(sealed.previous_watermark)?,
                    record_count: sealed.record_count,
                    member_regions,
                    skipped_from: sealed.first_skipped_epoch_number,
                }
            }
        };
        Ok((position, entry))
    }
}

/// Encodes a log entry at `position` in its stored form (its [`proto::LogEntry`] encoding).
pub fn encode_entry(position: u64, entry: &LogEntry) -> Vec<u8> {
    entry.to_wire(position).encode_to_vec()
}

/// Decodes and validates a stored log entry, returning its position.
pub fn decode_entry(bytes: &[u8]) -> Result<(u64, LogEntry), String> {
    if bytes.len() > STORED_ENTRY_BYTES_MAX {
        return Err(format!(
            "log entry of {} bytes is larger than the maximum of {STORED_ENTRY_BYTES_MAX}",
            bytes.len()
        ));
    }
    let wire = proto::LogEntry::decode(bytes).map_err(|error| format!("log entry: {error}"))?;
    LogEntry::from_wire(wire)
}

/// A call a client asks the region to order. The node stamps it with its hybrid logical
/// clock and its region to make the [`Record`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProposeRequest {
    /// The calling client.
    pub client_id: ClientId,
    /// The client's sequence number of this call; a retry reuses it.
    pub request_sequence: RequestSequence,
    /// The object called.
    pub object_id: ObjectId,
    /// The mutating method.
    pub method_id: MethodId,
    /// The encoded arguments.
    pub arguments: Arguments,
    /// The object's scope.
    pub scope: Scope,
}

impl ProposeRequest {
    /// The record for this call, stamped at `timestamp` in `region`.
    pub fn into_record(self, timestamp: Timestamp, region: RegionId) -> Record {
        Record {
            object_id: self.object_id,
            method_id: self.method_id,
            arguments: self.arguments,
            client_id: self.client_id,
            request_sequence: self.request_sequence,
            timestamp,
            scope: self.scope,
            origin_region: region,
        }
    }
}

/// Encodes already encoded records as the data of one raft entry.
///
/// # Panics
///
/// If there are more than [`BATCH_RECORDS_MAX`] records: the proposer cuts batches first.
pub fn encode_batch<'a>(records: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    assert!(
        records.len() <= BATCH_RECORDS_MAX,
        "a batch holds at most {BATCH_RECORDS_MAX} records"
    );
    let mut data = vec![BATCH_FORMAT];
    data.extend_from_slice(&(records.len() as u32).to_be_bytes());
    for record in records {
        put_bytes(&mut data, record);
    }
    data
}

/// Decodes the data of one raft entry into its records, each with its encoded bytes.
pub fn decode_batch(data: &[u8]) -> Result<Vec<(Record, &[u8])>, String> {
    let mut reader = Reader::new(data);
    let format = reader.u8("batch format")?;
    if format != BATCH_FORMAT {
        return Err(format!(
            "batch format {format} is unknown; this release reads format {BATCH_FORMAT}"
        ));
    }
    let count = reader.u32("record count")? as usize;
    if count == 0 || count > BATCH_RECORDS_MAX {
        return Err(format!(
            "a batch of {count} records; a batch holds 1 to {BATCH_RECORDS_MAX}"
        ));
    }
    let mut records = Vec::with_capacity(count);
    for number in 0..count {
        let bytes = reader.bytes(RECORD_BYTES_MAX, "record")?;
        let record = decode_record(bytes)
            .map_err(|error| format!("record {number} of the batch: {error}"))?;
        records.push((record, bytes));
    }
    reader.finish()?;
    Ok(records)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record(client: u64, sequence: u64) -> Record {
        Record {
            object_id: ObjectId::new("lobby/main").unwrap(),
            method_id: MethodId(1),
            arguments: Arguments::new(format!("call {client}/{sequence}").into_bytes()).unwrap(),
            client_id: ClientId(client),
            request_sequence: RequestSequence(sequence),
            timestamp: Timestamp::new(1_700_000_000_000_000 + sequence, 0),
            scope: Scope::Regional,
            origin_region: RegionId::new("eu-west").unwrap(),
        }
    }

    #[test]
    fn every_kind_of_entry_survives_the_stored_form() {
        let entries = [
            LogEntry::Regional(record(1, 1)),
            LogEntry::PendingGlobal(record(1, 2)),
            LogEntry::SequencedGlobal {
                epoch_number: 4,
                index_in_epoch: 2,
                record: record(2, 9),
            },
            LogEntry::EpochSealed {
                epoch_number: 4,
                watermark: Timestamp::new(10, 1),
                previous_watermark: None,
                record_count: 3,
                member_regions: vec![RegionId::new("eu-west").unwrap()],
                skipped_from: 0,
            },
            LogEntry::EpochSealed {
                epoch_number: 90,
                watermark: Timestamp::new(20, 0),
                previous_watermark: None,
                record_count: 0,
                member_regions: vec![RegionId::new("eu-west").unwrap()],
                skipped_from: 5,
            },
        ];
        for (offset, entry) in entries.iter().enumerate() {
            let position = 7 + offset as u64;
            let bytes = encode_entry(position, entry);
            assert_eq!(decode_entry(&bytes).unwrap(), (position, entry.clone()));
        }
        assert!(entries[1].applied_record().is_none());
        assert!(entries[2].applied_record().is_some());
        assert!(decode_entry(&proto::LogEntry::default().encode_to_vec()).is_err());
    }

    #[test]
    fn a_batch_survives_the_round_trip() {
        let records: Vec<Record> = (1..=5).map(|sequence| record(3, sequence)).collect();
        let encoded: Vec<Vec<u8>> = records.iter().map(encode_record).collect();
        let data = encode_batch(encoded.iter().map(Vec::as_slice));
        let decoded = decode_batch(&data).unwrap();
        assert_eq!(
            decoded
                .iter()
                .map(|(record, _)| record.clone())
                .collect::<Vec<_>>(),
            records
        );
        assert_eq!(decoded[2].1, encoded[2].as_slice());
    }

    #[test]
    fn damaged_batches_are_refused_with_a_reason_never_a_panic() {
        let encoded = [encode_record(&record(1, 1)), encode_record(&record(1, 2))];
        let data = encode_batch(encoded.iter().map(Vec::as_slice));
        for length in 0..data.len() {
            assert!(
                decode_batch(&data[..length]).is_err(),
                "prefix {length} decoded"
            );
        }
        let mut unknown_format = data.clone();
        unknown_format[0] = 9;
        assert!(
            decode_batch(&unknown_format)
                .unwrap_err()
                .contains("format 9")
        );
        let mut trailing = data.clone();
        trailing.push(1);
        assert!(
            decode_batch(&trailing)
                .unwrap_err()
                .contains("unexpected bytes")
        );
        let empty = encode_batch(std::iter::empty());
        assert!(decode_batch(&empty).is_err());
        // A record whose scope is unset does not validate.
        let mut wire = proto::Record::from(record(1, 1));
        wire.scope = 0;
        let bad = wire.encode_to_vec();
        let data = encode_batch([bad.as_slice()].into_iter());
        let error = decode_batch(&data).unwrap_err();
        assert!(
            error.contains("record 0") && error.contains("scope"),
            "{error}"
        );
        // Garbage of every length.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..500 {
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            let _ = decode_batch(&bytes);
            let _ = decode_record(&bytes);
        }
    }
}
