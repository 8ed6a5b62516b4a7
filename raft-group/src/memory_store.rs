//! [`MemoryStore`]: a [`DurableStore`] in memory that honours the store contract, crashes
//! included, for unit tests of raft groups and their state machines.
//!
//! What it models: batches apply atomically and are visible at once; a synced write makes it
//! and every earlier batch durable; [`MemoryStore::crash`] drops every batch written since the
//! last sync. What it does not model: torn writes, reordering before a sync, or running out
//! of space (see the simulator's disk for a capacity limit).

use crate::store::{
    Contents, DurableStore, KeySpace, KeyValuePairs, PinnedViews, StoreError, WriteBatch,
    WriteOperation, scan_contents,
};

/// An in-memory store with crash semantics. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    durable: Contents,
    visible: Contents,
    syncs: u64,
    writes: u64,
    /// Views pinned since the last crash (copies of what was pinned).
    views: PinnedViews,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// What a crash does: every write since the last sync is lost.
    pub fn crash(&mut self) {
        self.visible = self.durable.clone();
        // Pinned views live in memory: a crash drops them.
        self.views.clear();
    }

    /// How many synced writes the store has taken.
    pub fn sync_count(&self) -> u64 {
        self.syncs
    }

    /// How many writes (synced or not) the store has taken.
    pub fn write_count(&self) -> u64 {
        self.writes
    }

    /// The value of `key` that would survive a crash now.
    pub fn get_durable(&self, space: KeySpace, key: &[u8]) -> Option<&[u8]> {
        self.durable.get(&(space, key.to_vec())).map(Vec::as_slice)
    }

    /// Every visible key of `space`, in order.
    pub fn keys(&self, space: KeySpace) -> Vec<Vec<u8>> {
        self.visible
            .keys()
            .filter(|(key_space, _)| *key_space == space)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn apply(contents: &mut Contents, operation: WriteOperation) {
        match operation {
            WriteOperation::Put { space, key, value } => {
                contents.insert((space, key), value);
            }
            WriteOperation::Delete { space, key } => {
                contents.remove(&(space, key));
            }
            WriteOperation::DeleteRange { space, start, end } => {
                if start >= end {
                    return;
                }
                let doomed: Vec<(KeySpace, Vec<u8>)> = contents
                    .range((space, start)..(space, end))
                    .map(|(key, _)| key.clone())
                    .collect();
                for key in doomed {
                    contents.remove(&key);
                }
            }
        }
    }
}

impl DurableStore for MemoryStore {
    fn write(&mut self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        self.writes += 1;
        for operation in batch.into_operations() {
            Self::apply(&mut self.visible, operation);
        }
        if sync {
            self.syncs += 1;
            self.durable = self.visible.clone();
        }
        Ok(())
    }

    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.visible.get(&(space, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        Ok(scan_contents(&self.visible, space, start, end, limit))
    }

    fn views(&self) -> Option<&PinnedViews> {
        Some(&self.views)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RAFT_LOG, RAFT_STATE};

    #[test]
    fn a_crash_keeps_synced_batches_and_drops_later_ones_whole() {
        let mut store = MemoryStore::new();
        let mut first = WriteBatch::new();
        first.put(RAFT_LOG, b"a".to_vec(), b"1".to_vec());
        first.put(RAFT_STATE, b"a".to_vec(), b"state".to_vec());
        store.write(first, true).unwrap();
        let mut second = WriteBatch::new();
        second.put(RAFT_LOG, b"b".to_vec(), b"2".to_vec());
        second.delete(RAFT_LOG, b"a".to_vec());
        store.write(second, false).unwrap();
        assert_eq!(store.get(RAFT_LOG, b"a").unwrap(), None);
        assert_eq!(store.get(RAFT_LOG, b"b").unwrap(), Some(b"2".to_vec()));

        store.crash();
        assert_eq!(store.get(RAFT_LOG, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(store.get(RAFT_LOG, b"b").unwrap(), None);
        assert_eq!(
            store.get(RAFT_STATE, b"a").unwrap(),
            Some(b"state".to_vec())
        );
    }

    #[test]
    fn scans_and_range_deletes_stay_inside_their_key_space() {
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        for key in [b"1", b"2", b"3", b"4"] {
            batch.put(RAFT_LOG, key.to_vec(), key.to_vec());
            batch.put(RAFT_STATE, key.to_vec(), key.to_vec());
        }
        batch.delete_range(RAFT_LOG, b"2".to_vec(), b"4".to_vec());
        store.write(batch, true).unwrap();
        let log = store.scan(RAFT_LOG, b"", b"\xff", 10).unwrap();
        assert_eq!(
            log.iter().map(|(key, _)| key.clone()).collect::<Vec<_>>(),
            vec![b"1".to_vec(), b"4".to_vec()]
        );
        assert_eq!(store.scan(RAFT_STATE, b"", b"\xff", 10).unwrap().len(), 4);
        assert_eq!(store.scan(RAFT_STATE, b"2", b"\xff", 2).unwrap().len(), 2);
        assert_eq!(store.sync_count(), 1);
    }
}
