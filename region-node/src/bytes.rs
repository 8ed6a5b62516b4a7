//! A bounds-checked reader for the node's own binary encodings (record batches, snapshots,
//! stored state). Every read names what it was reading, so an error says what was truncated.

use dsss_raft_group::{KeySpace, StoreError};

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
        Ok(u32::from_be_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    pub(crate) fn u64(&mut self, what: &str) -> Result<u64, String> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("took 8 bytes")))
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

/// A [`StoreError::Corrupt`] naming `key` in `space`.
pub(crate) fn corrupt(space: KeySpace, key: &[u8], reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        space,
        key_hex: key.iter().map(|byte| format!("{byte:02x}")).collect(),
        reason: reason.into(),
    }
}

/// A 64-bit FNV-1a hash, to chain the digest of the region log. Not cryptographic: it
/// detects divergence between members, it does not resist an adversary.
pub(crate) fn fnv1a(state: u64, bytes: &[u8]) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(state, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The FNV-1a starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end_and_say_what_was_cut() {
        let mut out = Vec::new();
        out.extend_from_slice(&7u64.to_be_bytes());
        put_bytes(&mut out, b"abc");
        let mut reader = Reader::new(&out);
        assert_eq!(reader.u64("count").unwrap(), 7);
        assert_eq!(reader.bytes(10, "name").unwrap(), b"abc");
        assert!(reader.finish().is_ok());
        let error = Reader::new(&out[..7]).u64("count").unwrap_err();
        assert!(error.contains("count"), "{error}");
        let mut reader = Reader::new(&out);
        reader.u64("count").unwrap();
        assert!(reader.bytes(2, "name").unwrap_err().contains("maximum"));
        assert_ne!(fnv1a(FNV_OFFSET, b"a"), fnv1a(FNV_OFFSET, b"b"));
    }
}
