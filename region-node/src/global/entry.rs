//! The raft entries of the global tier: `CloseBatch` and one part of a sealed epoch.
//!
//! A raft entry of the region starts with a format byte: 1 is a batch of proposed records
//! ([`crate::record`]), 2 a `CloseBatch` with the leader's proposed closed timestamp, 3 one
//! part of a sealed epoch (its [`proto::SealedEpoch`] encoding, without the sender's fields).
//! Entry data comes from the log, which other nodes fed: decoding never panics, and an entry
//! that does not decode is refused by every member alike.

use dsss_raft_group::RAFT_MESSAGE_BYTES_MAX;
use dsss_wire::{Record, RegionId, Timestamp, proto};
use prost::Message as _;

use crate::bytes::Reader;

/// The format byte of a `CloseBatch` entry.
pub(crate) const CLOSE_BATCH_FORMAT: u8 = 2;

/// The format byte of an epoch part entry.
pub(crate) const EPOCH_PART_FORMAT: u8 = 3;

/// The largest part of a sealed epoch, in bytes: it travels in one raft entry, below the raft
/// message bound with room for the entry's framing.
pub const EPOCH_PART_BYTES_MAX: usize = RAFT_MESSAGE_BYTES_MAX / 2;

/// The most records in one part of a sealed epoch.
pub const EPOCH_PART_RECORDS_MAX: usize = 65_536;

/// The most regions an epoch may list as members.
pub const MEMBER_REGIONS_MAX: usize = 256;

/// Encodes a `CloseBatch` entry: the leader's clock when it proposed it, and the newest
/// (incarnation, batch number) the coordinator has acknowledged to that leader. Applying it
/// forgets the acknowledged outgoing batches (see [`crate::global::GlobalState`]): the
/// acknowledgement is the leader's soft state, and this entry is how it becomes replicated.
pub fn encode_close_batch(proposed_closed: Timestamp, acknowledged: (u64, u64)) -> Vec<u8> {
    let mut data = vec![CLOSE_BATCH_FORMAT];
    data.extend_from_slice(&proposed_closed.physical_us.to_be_bytes());
    data.extend_from_slice(&proposed_closed.logical.to_be_bytes());
    data.extend_from_slice(&acknowledged.0.to_be_bytes());
    data.extend_from_slice(&acknowledged.1.to_be_bytes());
    data
}

/// Decodes the payload of a `CloseBatch` entry (after its format byte): the proposed closed
/// timestamp and the acknowledged (incarnation, batch number). An entry written before
/// acknowledgements were carried holds the timestamp alone and acknowledges nothing.
pub(crate) fn decode_close_batch(payload: &[u8]) -> Result<(Timestamp, (u64, u64)), String> {
    let mut reader = Reader::new(payload);
    let physical_us = reader.u64("proposed closed timestamp")?;
    let logical = reader.u32("proposed closed timestamp")?;
    let acknowledged = if payload.len() > 12 {
        (
            reader.u64("acknowledged incarnation")?,
            reader.u64("acknowledged batch number")?,
        )
    } else {
        (0, 0)
    };
    reader.finish()?;
    let proposed_closed = Timestamp::try_from(proto::Timestamp {
        physical_us,
        logical,
    })
    .map_err(|error| format!("proposed closed timestamp: {error}"))?;
    Ok((proposed_closed, acknowledged))
}

/// Encodes an epoch part entry.
pub fn encode_epoch_part(part: &EpochPart) -> Vec<u8> {
    let mut data = vec![EPOCH_PART_FORMAT];
    data.extend_from_slice(&part.to_wire().encode_to_vec());
    data
}

/// Decodes the payload of an epoch part entry (after its format byte).
pub(crate) fn decode_epoch_part(payload: &[u8]) -> Result<EpochPart, String> {
    if payload.len() > EPOCH_PART_BYTES_MAX {
        return Err(format!(
            "epoch part of {} bytes, more than the maximum of {EPOCH_PART_BYTES_MAX}",
            payload.len()
        ));
    }
    let wire =
        proto::SealedEpoch::decode(payload).map_err(|error| format!("epoch part: {error}"))?;
    EpochPart::from_wire(wire)
}

/// One part of a sealed epoch, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochPart {
    /// The epoch's number, from 1.
    pub epoch_number: u64,
    /// The epoch's upper bound.
    pub watermark: Timestamp,
    /// The bound of the epoch before, none for the first epoch.
    pub previous_watermark: Option<Timestamp>,
    /// This part's records, in epoch order.
    pub records: Vec<Record>,
    /// This part's index, from 0.
    pub part_index: u32,
    /// How many parts the epoch has.
    pub part_count: u32,
    /// The regions in the membership when the epoch was sealed, sorted.
    pub member_regions: Vec<RegionId>,
}

impl EpochPart {
    /// Checks a part from the coordinator: numbers, bounds, and that its records lie in
    /// (previous watermark, watermark] in epoch order (timestamp, origin region, request
    /// sequence). The sender's fields are not part of it.
    pub fn from_wire(wire: proto::SealedEpoch) -> Result<EpochPart, String> {
        let epoch_number = wire.epoch_number;
        let context = |reason: String| format!("epoch {epoch_number}: {reason}");
        if epoch_number == 0 {
            return Err("epoch number 0; epochs start at 1".to_owned());
        }
        if wire.part_count == 0 || wire.part_index >= wire.part_count {
            return Err(context(format!(
                "part {} of {} parts",
                wire.part_index, wire.part_count
            )));
        }
        let watermark = wire
            .watermark
            .ok_or_else(|| context("no watermark".to_owned()))
            .and_then(|value| Timestamp::try_from(value).map_err(|e| context(e.to_string())))?;
        let previous_watermark = wire
            .previous_watermark
            .map(Timestamp::try_from)
            .transpose()
            .map_err(|error| context(error.to_string()))?;
        if previous_watermark.is_some_and(|previous| previous >= watermark) {
            return Err(context(format!(
                "previous watermark {} is not below the watermark {watermark}",
                previous_watermark.unwrap_or_default()
            )));
        }
        if wire.records.len() > EPOCH_PART_RECORDS_MAX {
            return Err(context(format!(
                "{} records in one part, more than the maximum of {EPOCH_PART_RECORDS_MAX}",
                wire.records.len()
            )));
        }
        if wire.member_regions.len() > MEMBER_REGIONS_MAX {
            return Err(context(format!(
                "{} member regions, more than the maximum of {MEMBER_REGIONS_MAX}",
                wire.member_regions.len()
            )));
        }
        let member_regions = wire
            .member_regions
            .into_iter()
            .map(|name| RegionId::new(name).map_err(|error| context(error.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if member_regions.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(context(
                "member regions are not sorted and unique".to_owned(),
            ));
        }
        let floor = previous_watermark.unwrap_or(Timestamp::ZERO);
        let mut records = Vec::with_capacity(wire.records.len());
        for (index, record) in wire.records.into_iter().enumerate() {
            let record = Record::try_from(record)
                .map_err(|error| context(format!("record {index}: {error}")))?;
            if record.timestamp <= floor || record.timestamp > watermark {
                return Err(context(format!(
                    "record {index} has timestamp {}, outside ({floor}, {watermark}]",
                    record.timestamp
                )));
            }
            if let Some(previous) = records.last()
                && epoch_order(previous) >= epoch_order(&record)
            {
                return Err(context(format!("record {index} is out of epoch order")));
            }
            records.push(record);
        }
        Ok(EpochPart {
            epoch_number,
            watermark,
            previous_watermark,
            records,
            part_index: wire.part_index,
            part_count: wire.part_count,
            member_regions,
        })
    }

    /// The wire form, without the sender's fields.
    pub fn to_wire(&self) -> proto::SealedEpoch {
        proto::SealedEpoch {
            epoch_number: self.epoch_number,
            watermark: Some(self.watermark.into()),
            previous_watermark: self.previous_watermark.map(Into::into),
            records: self.records.iter().cloned().map(Into::into).collect(),
            part_index: self.part_index,
            part_count: self.part_count,
            member_regions: self
                .member_regions
                .iter()
                .map(|region| region.as_str().to_owned())
                .collect(),
            sender_node_id: 0,
            sender_time: None,
        }
    }

    /// The length in bytes of the wire form, without the sender's fields: what a part costs
    /// in a message that carries it.
    pub fn wire_len(&self) -> u64 {
        self.to_wire().encoded_len() as u64
    }

    /// True when this is the epoch's last part.
    pub fn is_last(&self) -> bool {
        self.part_index + 1 == self.part_count
    }
}

/// The order of records in an epoch.
fn epoch_order(record: &Record) -> (Timestamp, &str, u64) {
    (
        record.timestamp,
        record.origin_region.as_str(),
        record.request_sequence.get(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::record;

    fn part() -> EpochPart {
        let mut first = record(1, 1);
        first.timestamp = Timestamp::new(5, 0);
        let mut second = record(2, 1);
        second.timestamp = Timestamp::new(6, 0);
        EpochPart {
            epoch_number: 2,
            watermark: Timestamp::new(10, 0),
            previous_watermark: Some(Timestamp::new(4, 0)),
            records: vec![first, second],
            part_index: 0,
            part_count: 1,
            member_regions: vec![RegionId::new("eu-west").unwrap()],
        }
    }

    #[test]
    fn parts_and_close_batches_survive_their_entries() {
        let data = encode_epoch_part(&part());
        assert_eq!(data[0], EPOCH_PART_FORMAT);
        assert_eq!(decode_epoch_part(&data[1..]).unwrap(), part());
        let data = encode_close_batch(Timestamp::new(77, 3), (2, 9));
        assert_eq!(
            decode_close_batch(&data[1..]).unwrap(),
            (Timestamp::new(77, 3), (2, 9))
        );
        assert_eq!(
            decode_close_batch(&data[1..13]).unwrap(),
            (Timestamp::new(77, 3), (0, 0)),
            "an entry without an acknowledgement acknowledges nothing"
        );
        assert!(decode_close_batch(&data[1..5]).is_err());
        assert!(decode_close_batch(&data[1..20]).is_err());
    }

    #[test]
    fn malformed_parts_are_refused_with_a_reason() {
        type Change = Box<dyn Fn(&mut proto::SealedEpoch)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|wire| wire.epoch_number = 0), "epoch number 0"),
            (Box::new(|wire| wire.part_index = 1), "part 1 of 1"),
            (Box::new(|wire| wire.watermark = None), "no watermark"),
            (
                Box::new(|wire| wire.records.swap(0, 1)),
                "out of epoch order",
            ),
            (
                Box::new(|wire| {
                    wire.records[0].timestamp = Some(Timestamp::new(4, 0).into());
                }),
                "outside",
            ),
            (
                Box::new(|wire| wire.member_regions.push("a-region".to_owned())),
                "sorted",
            ),
        ];
        for (change, expected) in cases {
            let mut wire = part().to_wire();
            change(&mut wire);
            let error = EpochPart::from_wire(wire).unwrap_err();
            assert!(error.contains(expected), "{error} lacks {expected}");
        }
    }
}
