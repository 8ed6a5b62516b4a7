//! The node's binary encodings use the shared bounds-checked reader of the raft plumbing;
//! this module adds the digest hash of the region log and the chunked scan that recovery
//! reads the store with.

pub(crate) use dsss_raft_group::bytes::{Reader, corrupt, put_bytes};
use dsss_raft_group::{DurableStore, KeySpace, KeyValuePairs, StoreError};

/// How many keys one read of the store returns while recovering.
pub(crate) const RECOVERY_SCAN_CHUNK_MAX: usize = 256;

/// Hands every key-value pair of `space` with `start <= key < end` to `take`, in key order,
/// reading the store a chunk at a time. An error from `take` becomes a corruption error that
/// names the key.
pub(crate) fn scan_range(
    store: &dyn DurableStore,
    space: KeySpace,
    start: &[u8],
    end: &[u8],
    take: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), StoreError> {
    scan_chunks(
        |from| store.scan(space, from, end, RECOVERY_SCAN_CHUNK_MAX),
        space,
        start,
        take,
    )
}

/// As [`scan_range`], over any reader: `scan(from)` returns up to
/// `RECOVERY_SCAN_CHUNK_MAX` pairs from `from` on, in key order, up to the end it stops at.
pub(crate) fn scan_chunks(
    mut scan: impl FnMut(&[u8]) -> Result<KeyValuePairs, StoreError>,
    space: KeySpace,
    start: &[u8],
    mut take: impl FnMut(&[u8], &[u8]) -> Result<(), String>,
) -> Result<(), StoreError> {
    let mut start = start.to_vec();
    loop {
        let chunk = scan(&start)?;
        let chunk_len = chunk.len();
        for (key, value) in chunk {
            take(&key, &value).map_err(|reason| corrupt(space, &key, reason))?;
            start = key;
            start.push(0);
        }
        if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
            return Ok(());
        }
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
    fn the_digest_hash_tells_bytes_apart() {
        assert_ne!(fnv1a(FNV_OFFSET, b"a"), fnv1a(FNV_OFFSET, b"b"));
        assert_eq!(fnv1a(FNV_OFFSET, b""), FNV_OFFSET);
    }
}
