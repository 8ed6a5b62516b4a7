//! The node's binary encodings use the shared bounds-checked reader of the raft plumbing;
//! this module adds the digest hash of the region log.

pub(crate) use dsss_raft_group::bytes::{Reader, corrupt, put_bytes};

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
