//! The coordinator's own binary encodings: raft entries, stored state and snapshots. A record
//! inside them is encoded by [`dsss_wire::encode_record`], as in the region log.
//!
//! Every value is big-endian; byte strings carry a 4-byte length prefix. Bytes read back from
//! the log, the store or a snapshot are untrusted: the [`Reader`] never reads past the end,
//! bounds every length, and names what it was reading when something is cut or too large.

use dsss_wire::{
    RECORD_BYTES_MAX, Record, RegionId, Timestamp, decode_record, encoded_record_len, proto,
};

/// The bytes a length prefix adds to a byte string.
pub(crate) const LENGTH_PREFIX_BYTES: u64 = 4;

pub(crate) use dsss_raft_group::bytes::{Reader, corrupt, put_bytes};

/// The coordinator's own values, read with the shared bounds-checked [`Reader`].
pub(crate) trait ReadValues {
    /// A timestamp: physical microseconds, then the logical counter.
    fn timestamp(&mut self, what: &str) -> Result<Timestamp, String>;
    /// A length-prefixed region id.
    fn region(&mut self, what: &str) -> Result<RegionId, String>;
    /// A length-prefixed record in its own encoding ([`dsss_wire::encode_record`]), returned
    /// with its encoded size (prefix included).
    fn record(&mut self, what: &str) -> Result<(Record, u64), String>;
}

impl ReadValues for Reader<'_> {
    fn timestamp(&mut self, what: &str) -> Result<Timestamp, String> {
        let physical_us = self.u64(what)?;
        let logical = self.u32(what)?;
        let wire = proto::Timestamp {
            physical_us,
            logical,
        };
        Timestamp::try_from(wire).map_err(|error| format!("{what}: {error}"))
    }

    fn region(&mut self, what: &str) -> Result<RegionId, String> {
        let bytes = self.bytes(dsss_wire::ids::REGION_ID_CHARS_MAX, what)?;
        let text = std::str::from_utf8(bytes).map_err(|_| format!("{what}: not UTF-8"))?;
        RegionId::new(text).map_err(|error| format!("{what}: {error}"))
    }

    fn record(&mut self, what: &str) -> Result<(Record, u64), String> {
        let bytes = self.bytes(RECORD_BYTES_MAX, what)?;
        let record = decode_record(bytes).map_err(|error| format!("{what}: {error}"))?;
        // Sizes count a record's own encoding, which every writer of entries, state and
        // snapshots uses. A record encoded otherwise would count its received size here and
        // its own size once re-encoded (in the store, in the next snapshot): a replica that
        // restored it and one that restarted would enforce the size bounds on different sums.
        let encoded_len = encoded_record_len(&record);
        if encoded_len != bytes.len() {
            return Err(format!(
                "{what}: {} bytes that decode to a record whose encoding is {encoded_len} \
                 bytes; records are stored in their own encoding only",
                bytes.len()
            ));
        }
        Ok((record, encoded_len as u64 + LENGTH_PREFIX_BYTES))
    }
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

/// The size a record takes in entries, snapshots and the store: its encoding and its prefix.
pub(crate) fn record_size_bytes(record: &Record) -> u64 {
    encoded_record_len(record) as u64 + LENGTH_PREFIX_BYTES
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
