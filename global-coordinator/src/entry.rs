//! The entries of the coordinator's raft log (docs/global-protocol.md: `Batch` section 4,
//! `Suspect` section 6, `EpochsAcknowledged` section 7), and their encoding.
//!
//! Only the coordinator leader proposes entries, but every replica decodes them from its log,
//! and a log may hold entries from older or damaged releases: decoding never panics, and an
//! entry that does not decode is refused by every replica alike. An entry starts with a format
//! byte ([`ENTRY_FORMAT`]) and a kind byte.

use dsss_wire::{Record, RegionId, Timestamp, encode_record};

use crate::codec::{ReadValues, Reader, put_bytes, put_count, put_region, put_timestamp, put_u64};

/// The format byte every entry of this release starts with.
pub const ENTRY_FORMAT: u8 = 1;

/// The most records one region batch may carry.
pub const REGION_BATCH_RECORDS_MAX: usize = 16_384;

/// The most bytes of encoded records one region batch may carry. A region cuts its batches
/// below this (as it cuts them below the gRPC limit); a larger batch is refused, because one
/// batch becomes one raft entry of the coordinator group.
pub const REGION_BATCH_RECORDS_BYTES_MAX: u64 = 4 * 1024 * 1024;

const KIND_BATCH: u8 = 1;
const KIND_SUSPECT: u8 = 2;
const KIND_EPOCHS_ACKNOWLEDGED: u8 = 3;

/// The smallest encoded record with its length prefix, to refuse impossible counts early.
const RECORD_ENCODED_BYTES_MIN: usize = 4;

/// One region batch, as the coordinator leader proposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    /// The region that sent it.
    pub region: RegionId,
    /// The region's incarnation in the membership, from 1.
    pub incarnation: u64,
    /// The batch's number within the incarnation, from 1.
    pub batch_number: u64,
    /// The global records, in the region's log order.
    pub records: Vec<Record>,
    /// The region's closed timestamp.
    pub closed: Timestamp,
}

/// An entry of the coordinator's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorEntry {
    /// A region's batch of records and closed timestamp.
    Batch(BatchEntry),
    /// The leader suspects a region whose closed timestamp stopped advancing.
    Suspect {
        /// The region.
        region: RegionId,
        /// Its incarnation when the leader suspected it.
        incarnation: u64,
    },
    /// A region has appended every epoch through `through`.
    EpochsAcknowledged {
        /// The region.
        region: RegionId,
        /// The highest epoch it has wholly appended.
        through: u64,
    },
}

impl CoordinatorEntry {
    /// Encodes the entry as raft entry data.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENTRY_FORMAT];
        match self {
            CoordinatorEntry::Batch(batch) => {
                out.push(KIND_BATCH);
                put_region(&mut out, &batch.region);
                put_u64(&mut out, batch.incarnation);
                put_u64(&mut out, batch.batch_number);
                put_timestamp(&mut out, batch.closed);
                put_count(&mut out, batch.records.len());
                for record in &batch.records {
                    put_bytes(&mut out, &encode_record(record));
                }
            }
            CoordinatorEntry::Suspect {
                region,
                incarnation,
            } => {
                out.push(KIND_SUSPECT);
                put_region(&mut out, region);
                put_u64(&mut out, *incarnation);
            }
            CoordinatorEntry::EpochsAcknowledged { region, through } => {
                out.push(KIND_EPOCHS_ACKNOWLEDGED);
                put_region(&mut out, region);
                put_u64(&mut out, *through);
            }
        }
        out
    }

    /// Decodes raft entry data, naming what is wrong when it does not decode.
    pub fn decode(data: &[u8]) -> Result<CoordinatorEntry, String> {
        let mut reader = Reader::new(data);
        let format = reader.u8("entry format")?;
        if format != ENTRY_FORMAT {
            return Err(format!(
                "entry format {format} is unknown; this release reads format {ENTRY_FORMAT}"
            ));
        }
        let entry = match reader.u8("entry kind")? {
            KIND_BATCH => CoordinatorEntry::Batch(decode_batch(&mut reader)?),
            KIND_SUSPECT => CoordinatorEntry::Suspect {
                region: reader.region("suspect region")?,
                incarnation: reader.u64("suspect incarnation")?,
            },
            KIND_EPOCHS_ACKNOWLEDGED => CoordinatorEntry::EpochsAcknowledged {
                region: reader.region("acknowledging region")?,
                through: reader.u64("acknowledged epoch")?,
            },
            other => return Err(format!("entry kind {other} is unknown")),
        };
        reader.finish()?;
        Ok(entry)
    }
}

fn decode_batch(reader: &mut Reader<'_>) -> Result<BatchEntry, String> {
    let region = reader.region("batch region")?;
    let incarnation = reader.u64("batch incarnation")?;
    let batch_number = reader.u64("batch number")?;
    let closed = reader.timestamp("batch closed timestamp")?;
    let count = reader.count(
        REGION_BATCH_RECORDS_MAX,
        RECORD_ENCODED_BYTES_MIN,
        "batch record count",
    )?;
    let mut records = Vec::with_capacity(count);
    let mut size_bytes = 0;
    for number in 0..count {
        let (record, record_bytes) = reader.record(&format!("batch record {number}"))?;
        size_bytes += record_bytes;
        records.push(record);
    }
    let batch = BatchEntry {
        region,
        incarnation,
        batch_number,
        records,
        closed,
    };
    check_batch(&batch, size_bytes)?;
    Ok(batch)
}

/// Checks the rules every batch entry obeys, whoever built it: numbers from 1, bounded size,
/// and global records of the batch's own region only.
pub(crate) fn check_batch(batch: &BatchEntry, records_size_bytes: u64) -> Result<(), String> {
    if batch.incarnation == 0 {
        return Err("batch incarnation 0: incarnations count from 1".to_owned());
    }
    if batch.batch_number == 0 {
        return Err("batch number 0: batch numbers count from 1".to_owned());
    }
    if batch.records.len() > REGION_BATCH_RECORDS_MAX {
        return Err(format!(
            "{} records in one batch, more than the maximum of {REGION_BATCH_RECORDS_MAX}",
            batch.records.len()
        ));
    }
    if records_size_bytes > REGION_BATCH_RECORDS_BYTES_MAX {
        return Err(format!(
            "{records_size_bytes} bytes of records in one batch, more than the maximum of \
             {REGION_BATCH_RECORDS_BYTES_MAX}; the region must cut smaller batches"
        ));
    }
    for (number, record) in batch.records.iter().enumerate() {
        if record.scope != dsss_wire::Scope::Global {
            return Err(format!(
                "batch record {number}: scope {:?}; a region batch carries global records only",
                record.scope
            ));
        }
        if record.origin_region != batch.region {
            return Err(format!(
                "batch record {number}: origin region {} differs from the batch's region {}",
                record.origin_region, batch.region
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use dsss_wire::{Arguments, ClientId, MethodId, ObjectId, RequestSequence, Scope};

    pub(crate) fn global_record(region: &str, sequence: u64, timestamp: Timestamp) -> Record {
        Record {
            object_id: ObjectId::new("lobby/main").unwrap(),
            method_id: MethodId(1),
            arguments: Arguments::new(format!("{region}/{sequence}").into_bytes()).unwrap(),
            client_id: ClientId(7),
            request_sequence: RequestSequence(sequence),
            timestamp,
            scope: Scope::Global,
            origin_region: RegionId::new(region).unwrap(),
        }
    }

    fn batch() -> CoordinatorEntry {
        CoordinatorEntry::Batch(BatchEntry {
            region: RegionId::new("eu-west").unwrap(),
            incarnation: 2,
            batch_number: 5,
            records: vec![
                global_record("eu-west", 1, Timestamp::new(10, 0)),
                global_record("eu-west", 2, Timestamp::new(10, 1)),
            ],
            closed: Timestamp::new(20, 3),
        })
    }

    #[test]
    fn every_kind_of_entry_survives_the_round_trip() {
        let entries = [
            batch(),
            CoordinatorEntry::Suspect {
                region: RegionId::new("us-east").unwrap(),
                incarnation: 3,
            },
            CoordinatorEntry::EpochsAcknowledged {
                region: RegionId::new("ap-south").unwrap(),
                through: 99,
            },
        ];
        for entry in entries {
            assert_eq!(CoordinatorEntry::decode(&entry.encode()), Ok(entry));
        }
    }

    #[test]
    fn damaged_entries_are_refused_with_a_reason_never_a_panic() {
        let data = batch().encode();
        for length in 0..data.len() {
            assert!(CoordinatorEntry::decode(&data[..length]).is_err());
        }
        let mut unknown_format = data.clone();
        unknown_format[0] = 9;
        let error = CoordinatorEntry::decode(&unknown_format).unwrap_err();
        assert!(error.contains("format 9"), "{error}");
        let mut unknown_kind = data.clone();
        unknown_kind[1] = 77;
        let error = CoordinatorEntry::decode(&unknown_kind).unwrap_err();
        assert!(error.contains("kind 77"), "{error}");
        let mut trailing = data.clone();
        trailing.push(0);
        assert!(CoordinatorEntry::decode(&trailing).is_err());

        let mut foreign = batch();
        if let CoordinatorEntry::Batch(batch) = &mut foreign {
            batch.records[1].origin_region = RegionId::new("us-east").unwrap();
        }
        let error = CoordinatorEntry::decode(&foreign.encode()).unwrap_err();
        assert!(
            error.contains("record 1") && error.contains("origin"),
            "{error}"
        );
        let mut regional = batch();
        if let CoordinatorEntry::Batch(batch) = &mut regional {
            batch.records[0].scope = Scope::Regional;
            batch.batch_number = 1;
        }
        let error = CoordinatorEntry::decode(&regional.encode()).unwrap_err();
        assert!(error.contains("global records only"), "{error}");

        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for length in 0..600 {
            let mut bytes: Vec<u8> = (0..length)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            if length > 2 {
                bytes[0] = ENTRY_FORMAT;
                bytes[1] = (length % 3) as u8 + 1;
            }
            let _ = CoordinatorEntry::decode(&bytes);
        }
    }
}
