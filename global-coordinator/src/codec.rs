//! The coordinator's own binary encodings: raft entries, stored state and snapshots.
//!
//! Every value is big-endian; byte strings carry a 4-byte length prefix. Bytes read back from
//! the log, the store or a snapshot are untrusted: the [`Reader`] never reads past the end,
//! bounds every length, and names what it was reading when something is cut or too large.

use dsss_raft_group::{KeySpace, StoreError};
use dsss_wire::{Record, RegionId, Timestamp, proto};
use prost::Message as _;

/// The largest encoded record: the largest arguments plus room for every other field.
pub const RECORD_BYTES_MAX: usize = dsss_wire::ARGUMENTS_BYTES_MAX + 4 * 1024;

/// The bytes a length prefix adds to a byte string.
pub(crate) const LENGTH_PREFIX_BYTES: u64 = 4;

/// Reads big-endian numbers and length-prefixed byte strings from a slice, never past its end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    pub(crate) fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], String> {
        let remaining = self.bytes.len() - self.offset;
        if length > remaining {
            return Err(format!(
                "{what} at byte {}: needs {length} bytes, only {remaining} left",
                self.offset
            ));
        }
        let slice = &self.bytes[self.offset..self.offset + length];
        self.offset += length;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    pub(crate) fn u32(&mut self, what: &str) -> Result<u32, String> {
        let bytes = self.take(4, what)?;
        let mut array = [0; 4];
        array.copy_from_slice(bytes);
        Ok(u32::from_be_bytes(array))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        let bytes = self.take(8, what)?;
        let mut array = [0; 8];
        array.copy_from_slice(bytes);
        Ok(u64::from_be_bytes(array))
    }

    pub(crate) fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{what}: {other} is neither 0 nor 1")),
        }
    }

    /// A byte string with a 4-byte length prefix, at most `size_bytes_max` long.
    pub(crate) fn bytes(&mut self, size_bytes_max: usize, what: &str) -> Result<&'a [u8], String> {
        let length = self.u32(what)? as usize;
        if length > size_bytes_max {
            return Err(format!(
                "{what} at byte {}: {length} bytes, more than the maximum of {size_bytes_max}",
                self.offset
            ));
        }
        self.take(length, what)
    }

    /// A count of items that each take at least `item_bytes_min` bytes, at most `count_max`;
    /// a count the remaining bytes cannot hold is refused before anything is allocated.
    pub(crate) fn count(
        &mut self,
        count_max: usize,
        item_bytes_min: usize,
        what: &str,
    ) -> Result<usize, String> {
        let count = self.u32(what)? as usize;
        if count > count_max {
            return Err(format!(
                "{what}: {count}, more than the maximum of {count_max}"
            ));
        }
        let remaining = self.bytes.len() - self.offset;
        if count.saturating_mul(item_bytes_min) > remaining {
            return Err(format!(
                "{what}: {count} items cannot fit in the {remaining} bytes left"
            ));
        }
        Ok(count)
    }

    pub(crate) fn timestamp(&mut self, what: &str) -> Result<Timestamp, String> {
        let physical_us = self.u64(what)?;
        let logical = self.u32(what)?;
        let wire = proto::Timestamp {
            physical_us,
            logical,
        };
        Timestamp::try_from(wire).map_err(|error| format!("{what}: {error}"))
    }

    pub(crate) fn region(&mut self, what: &str) -> Result<RegionId, String> {
        let bytes = self.bytes(dsss_wire::ids::REGION_ID_CHARS_MAX, what)?;
        let text = std::str::from_utf8(bytes).map_err(|_| format!("{what}: not UTF-8"))?;
        RegionId::new(text).map_err(|error| format!("{what}: {error}"))
    }

    /// A length-prefixed record, returned with its encoded size (prefix included).
    pub(crate) fn record(&mut self, what: &str) -> Result<(Record, u64), String> {
        let bytes = self.bytes(RECORD_BYTES_MAX, what)?;
        let record = decode_record(bytes).map_err(|error| format!("{what}: {error}"))?;
        Ok((record, bytes.len() as u64 + LENGTH_PREFIX_BYTES))
    }

    /// Fails unless every byte was read.
    pub(crate) fn finish(&self) -> Result<(), String> {
        let remaining = self.bytes.len() - self.offset;
        if remaining != 0 {
            return Err(format!(
                "{remaining} unexpected bytes after the end, at byte {}",
                self.offset
            ));
        }
        Ok(())
    }
}

/// Appends a byte string with a 4-byte length prefix.
pub(crate) fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("encoded parts are far below 4 GiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_timestamp(out: &mut Vec<u8>, timestamp: Timestamp) {
    put_u64(out, timestamp.physical_us);
    put_u32(out, timestamp.logical);
}

pub(crate) fn put_region(out: &mut Vec<u8>, region: &RegionId) {
    put_bytes(out, region.as_str().as_bytes());
}

/// A count as 4 bytes.
///
/// # Panics
///
/// If the count does not fit, which the bounds on every collection rule out.
pub(crate) fn put_count(out: &mut Vec<u8>, count: usize) {
    put_u32(
        out,
        u32::try_from(count).expect("bounded collections hold far fewer than 2^32 items"),
    );
}

/// Encodes one record (its protocol buffer form).
pub(crate) fn encode_record(record: &Record) -> Vec<u8> {
    proto::Record::from(record.clone()).encode_to_vec()
}

/// The size a record takes in entries, snapshots and the store: its encoding and its prefix.
pub(crate) fn record_size_bytes(record: &Record) -> u64 {
    proto::Record::from(record.clone()).encoded_len() as u64 + LENGTH_PREFIX_BYTES
}

/// Decodes and validates one record.
pub(crate) fn decode_record(bytes: &[u8]) -> Result<Record, String> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(format!(
            "record of {} bytes is larger than the maximum of {RECORD_BYTES_MAX}",
            bytes.len()
        ));
    }
    let wire = proto::Record::decode(bytes).map_err(|error| format!("record: {error}"))?;
    Record::try_from(wire).map_err(|error| error.to_string())
}

/// A [`StoreError::Corrupt`] naming `key` in `space`.
pub(crate) fn corrupt(space: KeySpace, key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        space,
        key_hex: key.iter().map(|byte| format!("{byte:02x}")).collect(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_and_say_what_was_cut() {
        let mut out = Vec::new();
        put_u64(&mut out, 7);
        put_bytes(&mut out, b"abc");
        put_count(&mut out, 3);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.u64("count").unwrap(), 7);
        assert_eq!(reader.bytes(10, "name").unwrap(), b"abc");
        let error = reader.count(10, 1, "items").unwrap_err();
        assert!(error.contains("cannot fit"), "{error}");
        let error = Reader::new(&out[..7]).u64("count").unwrap_err();
        assert!(error.contains("count"), "{error}");
        let mut reader = Reader::new(&out);
        reader.u64("count").unwrap();
        assert!(reader.bytes(2, "name").unwrap_err().contains("maximum"));
        assert!(Reader::new(&[2]).bool("member").is_err());
    }
}
