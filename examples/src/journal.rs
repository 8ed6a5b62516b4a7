//! [`Journal`]: an append-only journal that keeps a summary of its entries (how many, how many
//! bytes, a running digest) rather than the entries themselves, the shape of an audit or event
//! trail whose payloads live in the region log and whose state stays small. `dsss bench soak`
//! writes its load through it.

use serde::{Deserialize, Serialize};

/// The summary of every entry appended so far.
#[dsss::shared_object]
#[derive(Default, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    entries: u64,
    bytes: u64,
    digest: u64,
}

#[dsss::methods]
impl Journal {
    /// Appends `entry` and returns how many entries the journal holds now.
    #[mutate(id = 1)]
    pub fn append(&mut self, entry: Vec<u8>) -> u64 {
        self.entries += 1;
        self.bytes += entry.len() as u64;
        self.digest = fnv1a(self.digest.to_le_bytes().iter().chain(&entry));
        self.entries
    }

    /// How many entries were appended.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// How many bytes of entries were appended.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// A digest of every entry in order: equal copies of the journal have equal digests.
    pub fn digest(&self) -> u64 {
        self.digest
    }
}

/// FNV-1a, 64 bits: deterministic on every platform, so every copy computes the same digest.
fn fnv1a<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_depends_on_every_entry_and_their_order() {
        let mut first = Journal::default();
        first.append(b"ab".to_vec());
        first.append(b"c".to_vec());
        let mut second = Journal::default();
        second.append(b"c".to_vec());
        second.append(b"ab".to_vec());
        assert_eq!((first.entries(), first.bytes()), (2, 3));
        assert_eq!((second.entries(), second.bytes()), (2, 3));
        assert_ne!(first.digest(), second.digest());
    }
}
