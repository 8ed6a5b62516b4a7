//! Skipping sealed epochs that no log holds any longer (docs/global-protocol.md section 7,
//! "When no region holds them"), sans-IO.
//!
//! A region that missed epochs the coordinator released reads them from another region's log
//! ([`crate::global::catch_up`]). Once every other region's checkpoints truncated the first
//! epoch it lacks, no log serves them: the region skips them instead. Its leader proposes a
//! skip entry, and applying it (the same on every member):
//!
//! - moves the region's global sequence to the end of an epoch another region's log still
//!   holds with everything after it ([`HeldEpochEnd`], named in that region's `TRUNCATED`
//!   answer), so that reading goes on from there;
//! - appends an epoch end that says which epochs the log skipped, so that a copy of a global
//!   object that applied records before it knows it missed some, and restarts from a
//!   checkpoint (adopted from another region, [`crate::global::adoption`]);
//! - takes out of the unsealed set every record of the region that the skipped epochs sealed.
//!   The coordinator seals a region's records in the order the region shipped them, and names
//!   the newest it sealed (the sealed mark of its batch answers); while the region is out of
//!   the membership and not readmitted (it cannot be readmitted before catching up), no later
//!   record of it is sealed. So every unsealed record at or before the marked one was sealed,
//!   in an epoch at or before the mark's epoch, and none after it was. The leader only skips
//!   to an epoch at or after the mark's, so the skipped epochs hold every one of them; their
//!   callers are answered with the skip's position, through which their effects are in every
//!   checkpoint adopted after it. The records after the mark were dropped by the coordinator
//!   and go out again in the region's next incarnation.

use dsss_wire::{RegionId, Timestamp};

use crate::bytes::{Reader, put_bytes};
use crate::global::catch_up::HeldEpochEnd;
use crate::global::state::{put_member_regions, read_member_regions, read_timestamp};

/// The format byte of a skip entry.
pub(crate) const SKIP_FORMAT: u8 = 9;

/// A skip the leader proposes: the epochs from `first_skipped` through `end.epoch_number`
/// are skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochsSkip {
    /// The first epoch skipped: the one the region appends next.
    pub first_skipped: u64,
    /// The end of the last epoch skipped, as the region that holds what follows named it.
    pub end: HeldEpochEnd,
    /// The region's newest record the coordinator sealed, as (client id, request sequence),
    /// none when it sealed none.
    pub sealed_through: Option<(u64, u64)>,
    /// The region whose log holds what follows.
    pub source: RegionId,
}

/// Encodes a skip entry, format byte first.
pub(crate) fn encode_skip_entry(skip: &EpochsSkip) -> Vec<u8> {
    let mut data = vec![SKIP_FORMAT];
    data.extend_from_slice(&skip.first_skipped.to_be_bytes());
    data.extend_from_slice(&skip.end.epoch_number.to_be_bytes());
    data.extend_from_slice(&skip.end.watermark.physical_us.to_be_bytes());
    data.extend_from_slice(&skip.end.watermark.logical.to_be_bytes());
    put_member_regions(&mut data, &skip.end.member_regions);
    match skip.sealed_through {
        None => data.push(0),
        Some((client_id, request_sequence)) => {
            data.push(1);
            data.extend_from_slice(&client_id.to_be_bytes());
            data.extend_from_slice(&request_sequence.to_be_bytes());
        }
    }
    put_bytes(&mut data, skip.source.as_str().as_bytes());
    data
}

fn read_region(reader: &mut Reader<'_>, what: &str) -> Result<RegionId, String> {
    let bytes = reader.bytes(256, what)?;
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|name| RegionId::new(name).ok())
        .ok_or_else(|| format!("{what} is not a valid region id"))
}

/// Decodes the payload of a skip entry (after its format byte).
pub(crate) fn decode_skip_entry(payload: &[u8]) -> Result<EpochsSkip, String> {
    let mut reader = Reader::new(payload);
    let first_skipped = reader.u64("first skipped epoch")?;
    let epoch_number = reader.u64("last skipped epoch")?;
    let watermark = read_timestamp(&mut reader, "skip watermark")?;
    let member_regions = read_member_regions(&mut reader, "skip member regions")?;
    if member_regions.is_empty() {
        return Err("a skip names no member region; an epoch has at least one".to_owned());
    }
    if member_regions.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("skip member regions are not sorted and unique".to_owned());
    }
    let sealed_through = match reader.u8("skip sealed mark flag")? {
        0 => None,
        1 => Some((
            reader.u64("skip sealed mark client")?,
            reader.u64("skip sealed mark request sequence")?,
        )),
        other => return Err(format!("skip sealed mark flag {other}; it is 0 or 1")),
    };
    let source = read_region(&mut reader, "skip source region")?;
    reader.finish()?;
    if first_skipped == 0 || epoch_number < first_skipped {
        return Err(format!(
            "a skip of epochs {first_skipped} to {epoch_number}; it skips at least one epoch \
             from epoch 1 on"
        ));
    }
    if watermark == Timestamp::ZERO {
        return Err("a skip to an epoch end without a watermark".to_owned());
    }
    Ok(EpochsSkip {
        first_skipped,
        end: HeldEpochEnd {
            epoch_number,
            watermark,
            member_regions,
        },
        sealed_through,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::global::entry::MEMBER_REGIONS_MAX;

    fn skip() -> EpochsSkip {
        EpochsSkip {
            first_skipped: 12,
            end: HeldEpochEnd {
                epoch_number: 90,
                watermark: Timestamp::new(1_000, 3),
                member_regions: vec![RegionId::new("a").unwrap(), RegionId::new("c").unwrap()],
            },
            sealed_through: Some((7, 41)),
            source: RegionId::new("c").unwrap(),
        }
    }

    #[test]
    fn a_skip_entry_survives_its_encoding_and_damage_is_refused_with_a_reason() {
        for sealed_through in [None, Some((7, 41))] {
            let skip = EpochsSkip {
                sealed_through,
                ..skip()
            };
            let data = encode_skip_entry(&skip);
            assert_eq!(data[0], SKIP_FORMAT);
            assert_eq!(decode_skip_entry(&data[1..]).unwrap(), skip);
            for length in 1..data.len() {
                assert!(
                    decode_skip_entry(&data[1..length]).is_err(),
                    "prefix {length} decoded"
                );
            }
        }
        let backwards = EpochsSkip {
            first_skipped: 91,
            ..skip()
        };
        let error = decode_skip_entry(&encode_skip_entry(&backwards)[1..]).unwrap_err();
        assert!(error.contains("epochs 91 to 90"), "{error}");
        let mut unsorted = skip();
        unsorted.end.member_regions.reverse();
        let error = decode_skip_entry(&encode_skip_entry(&unsorted)[1..]).unwrap_err();
        assert!(error.contains("not sorted"), "{error}");
        let mut none = skip();
        none.end.member_regions.clear();
        let error = decode_skip_entry(&encode_skip_entry(&none)[1..]).unwrap_err();
        assert!(error.contains("no member region"), "{error}");
        let mut too_many = skip();
        too_many.end.member_regions = (0..=MEMBER_REGIONS_MAX)
            .map(|index| RegionId::new(format!("r{index:04}")).unwrap())
            .collect();
        let error = decode_skip_entry(&encode_skip_entry(&too_many)[1..]).unwrap_err();
        assert!(error.contains("more than the maximum"), "{error}");
        let mut trailing = encode_skip_entry(&skip());
        trailing.push(0);
        assert!(decode_skip_entry(&trailing[1..]).is_err());
    }
}
