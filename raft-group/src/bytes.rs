//! A bounds-checked reader and the matching writers for the binary encodings of the state
//! machines built on raft groups (the region log, the coordinator's state): raft entries,
//! stored state and snapshots. Every value is big-endian; byte strings carry a 4-byte length
//! prefix. Bytes read back from the log, a store or a snapshot are untrusted: the [`Reader`]
//! never reads past the end, bounds every length, and names what it was reading when
//! something is cut or too large.

use crate::store::{KeySpace, StoreError};

/// Reads big-endian numbers and length-prefixed byte strings from a slice, never past its end.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, offset: 0 }
    }

    /// The next `length` bytes.
    pub fn take(&mut self, length: usize, what: &str) -> Result<&'a [u8], String> {
        let remaining = self.remaining();
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

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.offset
    }

    /// One byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        let bytes = self.take(4, what)?;
        Ok(u32::from_be_bytes(bytes.try_into().expect("took 4 bytes")))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        let bytes = self.take(8, what)?;
        Ok(u64::from_be_bytes(bytes.try_into().expect("took 8 bytes")))
    }

    /// A byte that must be 0 (false) or 1 (true).
    pub fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{what}: {other} is neither 0 nor 1")),
        }
    }

    /// A byte string with a 4-byte length prefix, at most `size_bytes_max` long.
    pub fn bytes(&mut self, size_bytes_max: usize, what: &str) -> Result<&'a [u8], String> {
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
    pub fn count(
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
        let remaining = self.remaining();
        if count.saturating_mul(item_bytes_min) > remaining {
            return Err(format!(
                "{what}: {count} items cannot fit in the {remaining} bytes left"
            ));
        }
        Ok(count)
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), String> {
        let remaining = self.remaining();
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
///
/// # Panics
///
/// If `bytes` is 4 GiB or longer, which every bound on encoded parts rules out.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let length = u32::try_from(bytes.len()).expect("encoded parts are far below 4 GiB");
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A [`StoreError::Corrupt`] naming `key` in `space`.
pub fn corrupt(space: KeySpace, key: &[u8], reason: impl Into<String>) -> StoreError {
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
        out.extend_from_slice(&7u64.to_be_bytes());
        put_bytes(&mut out, b"abc");
        out.push(1);
        let mut reader = Reader::new(&out);
        assert_eq!(reader.u64("count").unwrap(), 7);
        assert_eq!(reader.bytes(10, "name").unwrap(), b"abc");
        assert!(reader.bool("flag").unwrap());
        assert!(reader.finish().is_ok());
        let error = Reader::new(&out[..7]).u64("count").unwrap_err();
        assert!(error.contains("count"), "{error}");
        let mut reader = Reader::new(&out);
        reader.u64("count").unwrap();
        assert!(reader.bytes(2, "name").unwrap_err().contains("maximum"));
        let mut reader = Reader::new(&[0, 0, 0, 200]);
        assert!(
            reader
                .count(1_000, 8, "items")
                .unwrap_err()
                .contains("cannot fit")
        );
    }
}
