//! A node's simulated disk: an in-memory key-value store that loses unsynced writes on a crash.
//!
//! What this model does: every `put` and `delete` is visible at once to the node's own reads
//! (as a page cache makes it), but is durable only after a later [`SimDisk::sync`]. A crash
//! ([`SimDisk::discard_unsynced`]) throws away every write since the last sync, all of them,
//! and keeps every synced write, deletes included. Sizes are bounded, and a full disk refuses
//! writes with an error the node must handle.
//!
//! What it does not model: torn or partially persisted writes, writes persisted out of order
//! before a sync, bit rot, or misdirected writes. A crash here is the clean case of
//! "everything since the last fsync is gone". The disk itself takes no time: the kernel charges
//! a sync's latency to the node that made it ([`crate::costs`]).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use dsss_raft_group::PinnedViews;

/// The longest key, in bytes.
pub const DISK_KEY_SIZE_BYTES_MAX: usize = 4_096;

/// The longest value, in bytes.
pub const DISK_VALUE_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most bytes (keys plus values) one disk holds unless it is made smaller with
/// [`SimDisk::with_size_bytes_max`].
pub const DISK_SIZE_BYTES_MAX: usize = 512 * 1024 * 1024;

/// A write the disk refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    /// The key is longer than [`DISK_KEY_SIZE_BYTES_MAX`].
    #[error("key of {size_bytes} bytes is longer than the maximum of {DISK_KEY_SIZE_BYTES_MAX}")]
    KeyTooLarge {
        /// The key's length.
        size_bytes: usize,
    },
    /// The value is longer than [`DISK_VALUE_SIZE_BYTES_MAX`].
    #[error(
        "value of {size_bytes} bytes is longer than the maximum of {DISK_VALUE_SIZE_BYTES_MAX}"
    )]
    ValueTooLarge {
        /// The value's length.
        size_bytes: usize,
    },
    /// The write would take the disk past its capacity.
    #[error(
        "disk full: {used_bytes} bytes used, the write needs {needed_bytes} more, the capacity \
         is {size_bytes_max}"
    )]
    Full {
        /// Bytes in use before the write.
        used_bytes: usize,
        /// Extra bytes the write needs.
        needed_bytes: usize,
        /// The disk's capacity.
        size_bytes_max: usize,
    },
}

/// One write of a batch that [`SimDisk::write_synced`] applies and syncs at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskWrite {
    /// Store the value under the key.
    Put(Vec<u8>, Vec<u8>),
    /// Remove the key.
    Delete(Vec<u8>),
}

/// One node's disk. See the module documentation for what it models. Two disks are equal
/// when they hold the same writes, however many syncs made them.
#[derive(Clone, Debug)]
pub struct SimDisk {
    durable: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Writes since the last sync: `Some(value)` for a put, `None` for a delete.
    unsynced: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Bytes of keys and values the node currently sees.
    visible_size_bytes: usize,
    size_bytes_max: usize,
    /// Views of the node's stores pinned since its last crash: copies in memory, as a
    /// process keeps them (see [`dsss_raft_group::DurableStore::pin_view`]).
    views: PinnedViews,
    /// Syncs since the disk was made, for the kernel to charge their latency
    /// ([`crate::costs::NodeCosts`]).
    sync_count: u64,
}

impl PartialEq for SimDisk {
    fn eq(&self, other: &Self) -> bool {
        self.durable == other.durable
            && self.unsynced == other.unsynced
            && self.visible_size_bytes == other.visible_size_bytes
            && self.size_bytes_max == other.size_bytes_max
            && self.views == other.views
    }
}

impl Eq for SimDisk {}

impl Default for SimDisk {
    fn default() -> Self {
        Self::new()
    }
}

fn entry_size_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len()
}

/// Refuses a key or value beyond its size bound.
fn check_sizes(key: &[u8], value: &[u8]) -> Result<(), DiskError> {
    if key.len() > DISK_KEY_SIZE_BYTES_MAX {
        return Err(DiskError::KeyTooLarge {
            size_bytes: key.len(),
        });
    }
    if value.len() > DISK_VALUE_SIZE_BYTES_MAX {
        return Err(DiskError::ValueTooLarge {
            size_bytes: value.len(),
        });
    }
    Ok(())
}

/// The bytes a disk holding `used_bytes` of at most `size_bytes_max` holds after an entry of
/// `old_size_bytes` (0 when absent) becomes one of `new_size_bytes`, or the refusal.
fn size_bytes_after(
    used_bytes: usize,
    size_bytes_max: usize,
    old_size_bytes: usize,
    new_size_bytes: usize,
) -> Result<usize, DiskError> {
    let size_bytes_after = used_bytes - old_size_bytes + new_size_bytes;
    if size_bytes_after > size_bytes_max {
        return Err(DiskError::Full {
            used_bytes,
            needed_bytes: new_size_bytes.saturating_sub(old_size_bytes),
            size_bytes_max,
        });
    }
    Ok(size_bytes_after)
}

impl SimDisk {
    /// An empty disk of [`DISK_SIZE_BYTES_MAX`] bytes.
    pub fn new() -> Self {
        Self::with_size_bytes_max(DISK_SIZE_BYTES_MAX)
    }

    /// An empty disk of `size_bytes_max` bytes (at most [`DISK_SIZE_BYTES_MAX`]), to test
    /// how a node handles a full disk.
    pub fn with_size_bytes_max(size_bytes_max: usize) -> Self {
        SimDisk {
            durable: BTreeMap::new(),
            unsynced: BTreeMap::new(),
            visible_size_bytes: 0,
            size_bytes_max: size_bytes_max.min(DISK_SIZE_BYTES_MAX),
            views: PinnedViews::default(),
            sync_count: 0,
        }
    }

    /// The disk's capacity in bytes.
    pub fn size_bytes_max(&self) -> usize {
        self.size_bytes_max
    }

    /// The value of `key` as the node sees it, unsynced writes included.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.unsynced.get(key) {
            Some(pending) => pending.as_deref(),
            None => self.durable.get(key).map(Vec::as_slice),
        }
    }

    /// True when `key` has a value the node can see.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// The value of `key` that would survive a crash right now.
    pub fn get_synced(&self, key: &[u8]) -> Option<&[u8]> {
        self.durable.get(key).map(Vec::as_slice)
    }

    /// Stores `value` under `key`; durable after the next [`SimDisk::sync`].
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), DiskError> {
        check_sizes(key, value)?;
        self.put_owned(key.to_vec(), value.to_vec())
    }

    /// [`SimDisk::put`] of a key and value the caller hands over, so that neither is copied.
    pub fn put_owned(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), DiskError> {
        check_sizes(&key, &value)?;
        let new_size_bytes = entry_size_bytes(&key, &value);
        // One lookup in the unsynced writes serves both the size check and the insert: the
        // maps are keyed by long byte strings, so every lookup costs many comparisons.
        let entry = self.unsynced.entry(key);
        // What the key holds now: its unsynced write, or else its durable value.
        let old_size_bytes = match &entry {
            Entry::Occupied(pending) => pending
                .get()
                .as_deref()
                .map_or(0, |old_value| entry_size_bytes(pending.key(), old_value)),
            Entry::Vacant(vacant) => self
                .durable
                .get(vacant.key())
                .map_or(0, |old_value| entry_size_bytes(vacant.key(), old_value)),
        };
        self.visible_size_bytes = size_bytes_after(
            self.visible_size_bytes,
            self.size_bytes_max,
            old_size_bytes,
            new_size_bytes,
        )?;
        match entry {
            Entry::Occupied(mut pending) => {
                pending.insert(Some(value));
            }
            Entry::Vacant(vacant) => {
                vacant.insert(Some(value));
            }
        }
        Ok(())
    }

    /// Applies `writes` in order, then syncs: the same as [`SimDisk::put_owned`] and
    /// [`SimDisk::delete`] of each followed by [`SimDisk::sync`], when no put can be refused
    /// (the disk has room for every put even if none replaces anything, and no key or value is
    /// too long). Otherwise it applies nothing and gives the writes back, for the caller to
    /// apply one by one and meet the refusal where it happens.
    ///
    /// Nearly every write of a node is synced at once; writing straight into the durable map
    /// spares each key its trip through the unsynced writes (two more lookups).
    pub fn write_synced(&mut self, writes: Vec<DiskWrite>) -> Result<(), Vec<DiskWrite>> {
        let mut size_bytes_bound = self.visible_size_bytes;
        for write in &writes {
            if let DiskWrite::Put(key, value) = write {
                if check_sizes(key, value).is_err() {
                    return Err(writes);
                }
                size_bytes_bound = size_bytes_bound.saturating_add(entry_size_bytes(key, value));
            }
        }
        if size_bytes_bound > self.size_bytes_max {
            return Err(writes);
        }
        // What was written before this batch becomes durable with it, as the sync after
        // the batch would make it; writing it first changes nothing the batch then shadows.
        self.sync();
        for write in writes {
            match write {
                DiskWrite::Put(key, value) => {
                    let new_size_bytes = entry_size_bytes(&key, &value);
                    let old_size_bytes = key.len();
                    if let Some(old_value) = self.durable.insert(key, value) {
                        self.visible_size_bytes -= old_size_bytes + old_value.len();
                    }
                    self.visible_size_bytes += new_size_bytes;
                }
                DiskWrite::Delete(key) => {
                    if let Some(old_value) = self.durable.remove(&key) {
                        self.visible_size_bytes -= entry_size_bytes(&key, &old_value);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `key`; durable after the next [`SimDisk::sync`]. Removing an absent key does
    /// nothing.
    pub fn delete(&mut self, key: &[u8]) {
        let Some(old_value) = self.get(key) else {
            return;
        };
        self.visible_size_bytes -= entry_size_bytes(key, old_value);
        if self.durable.contains_key(key) {
            // A tombstone, so that the delete reaches the durable map at the next sync.
            self.unsynced.insert(key.to_vec(), None);
        } else {
            self.unsynced.remove(key);
        }
    }

    /// Up to `limit` entries the node can see with `start <= key < end`, in key order.
    /// Reads only that range of the disk, so a read near the end of a long log costs what it
    /// returns.
    pub fn scan_range(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        if start >= end {
            return Vec::new();
        }
        let range = start.to_vec()..end.to_vec();
        let mut durable = self.durable.range(range.clone()).peekable();
        let mut pending = self.unsynced.range(range).peekable();
        let mut entries = Vec::new();
        while entries.len() < limit {
            // Merge the two ordered ranges; an unsynced write shadows the durable value.
            let take_pending = match (durable.peek(), pending.peek()) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some((durable_key, _)), Some((pending_key, _))) => pending_key <= durable_key,
            };
            if take_pending {
                let (key, value) = pending.next().expect("peeked");
                if durable
                    .peek()
                    .is_some_and(|(durable_key, _)| *durable_key == key)
                {
                    durable.next();
                }
                if let Some(value) = value {
                    entries.push((key.clone(), value.clone()));
                }
            } else {
                let (key, value) = durable.next().expect("peeked");
                entries.push((key.clone(), value.clone()));
            }
        }
        entries
    }

    /// Every visible entry whose key starts with `prefix`, in key order.
    pub fn scan_prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut merged: BTreeMap<&[u8], Option<&[u8]>> = self
            .durable
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.as_slice(), Some(value.as_slice())))
            .collect();
        let pending = self
            .unsynced
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix));
        for (key, value) in pending {
            merged.insert(key.as_slice(), value.as_deref());
        }
        merged
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key.to_vec(), value.to_vec())))
            .collect()
    }

    /// Makes every earlier write durable (an fsync).
    pub fn sync(&mut self) {
        self.sync_count += 1;
        for (key, value) in std::mem::take(&mut self.unsynced) {
            match value {
                Some(value) => self.durable.insert(key, value),
                None => self.durable.remove(&key),
            };
        }
    }

    /// How many syncs the disk has made since it was made (crashes included).
    pub fn sync_count(&self) -> u64 {
        self.sync_count
    }

    /// The number of keys written or deleted since the last sync.
    pub fn unsynced_write_count(&self) -> usize {
        self.unsynced.len()
    }

    /// Bytes of keys and values the node currently sees.
    pub fn size_bytes(&self) -> usize {
        self.visible_size_bytes
    }

    /// The views pinned on this disk's stores since the last crash.
    pub fn views(&self) -> &PinnedViews {
        &self.views
    }

    /// What a crash does to the disk: drops every write since the last sync, and returns how
    /// many keys were affected.
    pub fn discard_unsynced(&mut self) -> usize {
        // Pinned views live in the crashed process's memory.
        self.views.clear();
        let discarded = std::mem::take(&mut self.unsynced).len();
        self.visible_size_bytes = self
            .durable
            .iter()
            .map(|(key, value)| entry_size_bytes(key, value))
            .sum();
        discarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_unsynced_writes() {
        let mut disk = SimDisk::new();
        disk.put(b"a", b"1").unwrap();
        assert_eq!(disk.get(b"a"), Some(&b"1"[..]));
        assert_eq!(disk.get_synced(b"a"), None);
        disk.sync();
        assert_eq!(disk.get_synced(b"a"), Some(&b"1"[..]));
        disk.delete(b"a");
        assert_eq!(disk.get(b"a"), None);
        assert_eq!(disk.get_synced(b"a"), Some(&b"1"[..]));
    }

    #[test]
    fn a_crash_keeps_synced_writes_and_deletes_and_drops_the_rest() {
        let mut disk = SimDisk::new();
        disk.put(b"kept", b"1").unwrap();
        disk.put(b"deleted", b"2").unwrap();
        disk.put(b"overwritten", b"old").unwrap();
        disk.sync();
        disk.delete(b"deleted");
        disk.sync();
        disk.put(b"lost", b"3").unwrap();
        disk.put(b"overwritten", b"new").unwrap();
        disk.delete(b"kept");
        assert_eq!(disk.unsynced_write_count(), 3);

        assert_eq!(disk.discard_unsynced(), 3);
        assert_eq!(disk.get(b"kept"), Some(&b"1"[..]));
        assert_eq!(disk.get(b"deleted"), None);
        assert_eq!(disk.get(b"lost"), None);
        assert_eq!(disk.get(b"overwritten"), Some(&b"old"[..]));
        assert_eq!(disk.size_bytes(), "kept1overwrittenold".len());
    }

    #[test]
    fn scan_prefix_merges_durable_and_pending_entries() {
        let mut disk = SimDisk::new();
        disk.put(b"log/1", b"a").unwrap();
        disk.put(b"log/2", b"b").unwrap();
        disk.put(b"meta", b"m").unwrap();
        disk.sync();
        disk.put(b"log/3", b"c").unwrap();
        disk.delete(b"log/1");
        disk.put(b"log/2", b"B").unwrap();
        assert_eq!(
            disk.scan_prefix(b"log/"),
            vec![
                (b"log/2".to_vec(), b"B".to_vec()),
                (b"log/3".to_vec(), b"c".to_vec())
            ]
        );
        assert_eq!(disk.scan_prefix(b"").len(), 3);
    }

    #[test]
    fn scan_range_merges_durable_and_pending_entries_within_its_bounds() {
        let mut disk = SimDisk::new();
        for key in [b"log/1", b"log/2", b"log/3", b"log/4"] {
            disk.put(key, b"old").unwrap();
        }
        disk.sync();
        disk.delete(b"log/2");
        disk.put(b"log/3", b"new").unwrap();
        disk.put(b"log/5", b"added").unwrap();
        let all = disk.scan_range(b"log/", b"log0", usize::MAX);
        let expected: Vec<(Vec<u8>, Vec<u8>)> = [
            (&b"log/1"[..], &b"old"[..]),
            (b"log/3", b"new"),
            (b"log/4", b"old"),
            (b"log/5", b"added"),
        ]
        .iter()
        .map(|(key, value)| (key.to_vec(), value.to_vec()))
        .collect();
        assert_eq!(all, expected);
        // The same as the whole-prefix scan, bounded by the range and the limit.
        assert_eq!(all, disk.scan_prefix(b"log/"));
        assert_eq!(
            disk.scan_range(b"log/2", b"log/5", usize::MAX),
            expected[1..3]
        );
        assert_eq!(disk.scan_range(b"log/", b"log0", 2), expected[..2]);
        assert!(disk.scan_range(b"log/5", b"log/1", 10).is_empty());
    }

    #[test]
    fn a_synced_batch_ends_as_its_writes_one_by_one_and_a_sync() {
        let writes = vec![
            DiskWrite::Put(b"a".to_vec(), b"new".to_vec()),
            DiskWrite::Delete(b"b".to_vec()),
            DiskWrite::Put(b"c".to_vec(), b"3".to_vec()),
            DiskWrite::Delete(b"c".to_vec()),
            DiskWrite::Put(b"d".to_vec(), b"4".to_vec()),
            DiskWrite::Delete(b"absent".to_vec()),
        ];
        let mut one_by_one = SimDisk::new();
        one_by_one.put(b"a", b"old").unwrap();
        one_by_one.put(b"b", b"2").unwrap();
        one_by_one.sync();
        one_by_one.put(b"e", b"unsynced").unwrap();
        let mut batched = one_by_one.clone();
        for write in writes.clone() {
            match write {
                DiskWrite::Put(key, value) => one_by_one.put_owned(key, value).unwrap(),
                DiskWrite::Delete(key) => one_by_one.delete(&key),
            }
        }
        one_by_one.sync();
        batched.write_synced(writes).unwrap();
        assert_eq!(batched, one_by_one);
        assert_eq!(
            batched.size_bytes(),
            "anew".len() + "d4".len() + "eunsynced".len()
        );
    }

    #[test]
    fn a_synced_batch_that_might_not_fit_is_given_back_untouched() {
        let mut disk = SimDisk::with_size_bytes_max(10);
        disk.put(b"a", b"1234").unwrap();
        let before = disk.clone();
        // It would fit, since it replaces "a", but the bound counts every put as new.
        let writes = vec![DiskWrite::Put(b"a".to_vec(), b"123456".to_vec())];
        assert_eq!(disk.write_synced(writes.clone()), Err(writes));
        assert_eq!(disk, before);
        let long_key = vec![0u8; DISK_KEY_SIZE_BYTES_MAX + 1];
        let writes = vec![DiskWrite::Put(long_key, Vec::new())];
        assert_eq!(disk.write_synced(writes.clone()), Err(writes));
        assert_eq!(disk, before);
    }

    #[test]
    fn sizes_are_bounded() {
        let mut disk = SimDisk::with_size_bytes_max(10);
        let long_key = vec![0u8; DISK_KEY_SIZE_BYTES_MAX + 1];
        assert_eq!(
            disk.put(&long_key, b""),
            Err(DiskError::KeyTooLarge {
                size_bytes: DISK_KEY_SIZE_BYTES_MAX + 1
            })
        );
        let long_value = vec![0u8; DISK_VALUE_SIZE_BYTES_MAX + 1];
        assert!(matches!(
            disk.put(b"k", &long_value),
            Err(DiskError::ValueTooLarge { .. })
        ));
        disk.put(b"a", b"1234").unwrap();
        disk.put(b"b", b"123").unwrap();
        assert_eq!(
            disk.put(b"c", b"12"),
            Err(DiskError::Full {
                used_bytes: 9,
                needed_bytes: 3,
                size_bytes_max: 10
            })
        );
        // Overwriting an entry with a smaller one frees space; deleting frees it all.
        disk.put(b"a", b"1").unwrap();
        disk.put(b"c", b"12").unwrap();
        disk.delete(b"b");
        assert_eq!(disk.size_bytes(), 5);
        assert_eq!(disk.get(b"c"), Some(&b"12"[..]));
    }
}
