//! [`RaftStorage`]: the raft log of one node in memory, mirrored to a [`DurableStore`].
//!
//! raft-rs reads its log through the [`raft::Storage`] trait, synchronously and often, so the
//! log lives in memory: the entries since the last compaction, the hard state, the conf state
//! and the compaction point. Every change is made twice, in memory at once and as operations
//! of a [`WriteBatch`] that the caller persists before anything depends on it (see
//! [`RaftGroup::handle_ready`](crate::RaftGroup::handle_ready)). At start the mirror is rebuilt
//! from the store ([`RaftStorage::recover`]). Memory stays bounded because the group compacts
//! the log below its applied index (see [`LogRetention`](crate::LogRetention)).
//!
//! Layout in the store:
//! - [`RAFT_LOG`]: one entry per key, the key being the entry index as 8 big-endian bytes;
//! - [`RAFT_STATE`]: `hard_state`, `conf_state` (protocol buffers), `compacted` (index and
//!   term of the last entry compacted away, 16 bytes) and `applied` (the index the state
//!   machine has applied through, 8 bytes), the last written in the same batch as the state
//!   machine's own writes, so the two never disagree after a crash.
//!
//! Snapshots to send are made lazily: when raft asks for one and none recent enough is cached,
//! [`raft::Storage::snapshot`] answers "temporarily unavailable" and raises a flag; the group
//! then builds one from its state machine before the next `Ready` and raft retries on the next
//! heartbeat response.

use std::cell::Cell;
use std::collections::VecDeque;

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};
use raft::{GetEntriesContext, RaftState, StorageError};

use crate::codec::{
    decode_conf_state, decode_entry, decode_entry_key, decode_hard_state, decode_u64,
    decode_u64_pair, encode_conf_state, encode_entry, encode_hard_state, encode_u64_pair,
    entry_key,
};
use crate::store::{DurableStore, RAFT_LOG, RAFT_STATE, StoreError, WriteBatch};

/// How many keys one scan of the store returns while recovering.
pub const RECOVERY_SCAN_CHUNK_MAX: usize = 1_024;

/// The most raft log entries a node holds. Compaction keeps a healthy log far below this; a
/// store holding more is refused at recovery rather than exhausting memory.
pub const RAFT_LOG_ENTRIES_MAX: usize = 1_000_000;

/// Key of the hard state in [`RAFT_STATE`].
pub const HARD_STATE_KEY: &[u8] = b"hard_state";
/// Key of the conf state in [`RAFT_STATE`].
pub const CONF_STATE_KEY: &[u8] = b"conf_state";
/// Key of the compaction point (index and term) in [`RAFT_STATE`].
pub const COMPACTED_KEY: &[u8] = b"compacted";
/// Key of the applied index in [`RAFT_STATE`].
pub const APPLIED_KEY: &[u8] = b"applied";

/// A key greater than every 8-byte entry key: the end of a range over the whole log.
const LOG_END_KEY: [u8; 9] = [0xff; 9];

/// The raft log of one node, in memory and mirrored to the store. See the module
/// documentation.
#[derive(Debug, Default)]
pub struct RaftStorage {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the last entry compacted away (or of the snapshot the log starts
    /// from); entries hold `compacted_index + 1 ..= last_index`.
    compacted_index: u64,
    compacted_term: u64,
    entries: VecDeque<Entry>,
    entries_size_bytes: u64,
    /// The snapshot raft sends to followers behind the compaction point, once built.
    outgoing_snapshot: Option<Snapshot>,
    /// Set when raft asked for a snapshot that is not built yet.
    snapshot_wanted: Cell<bool>,
}

/// What [`RaftStorage::recover`] read back.
#[derive(Debug)]
pub struct RecoveredStorage {
    /// The log.
    pub storage: RaftStorage,
    /// The index the state machine had applied through when it last persisted.
    pub applied_index: u64,
}

/// The size an entry is counted for, in bytes: payload plus a fixed allowance for the rest.
fn entry_size_bytes(entry: &Entry) -> u64 {
    const ENTRY_OVERHEAD_BYTES: u64 = 24;
    (entry.data.len() + entry.context.len()) as u64 + ENTRY_OVERHEAD_BYTES
}

impl RaftStorage {
    /// An empty, uninitialized log: no members, nothing stored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds the log from what `store` holds. Checks every entry it reads (keys match
    /// indexes, indexes are dense, terms never fall, the hard state and applied index are
    /// within the log) and reports the first thing that is wrong with its key.
    pub fn recover(store: &dyn DurableStore) -> Result<RecoveredStorage, StoreError> {
        let hard_state = match store.get(RAFT_STATE, HARD_STATE_KEY)? {
            Some(value) => decode_hard_state(RAFT_STATE, HARD_STATE_KEY, &value)?,
            None => HardState::default(),
        };
        let conf_state = match store.get(RAFT_STATE, CONF_STATE_KEY)? {
            Some(value) => decode_conf_state(RAFT_STATE, CONF_STATE_KEY, &value)?,
            None => ConfState::default(),
        };
        let (compacted_index, compacted_term) = match store.get(RAFT_STATE, COMPACTED_KEY)? {
            Some(value) => decode_u64_pair(RAFT_STATE, COMPACTED_KEY, &value)?,
            None => (0, 0),
        };
        let applied_index = match store.get(RAFT_STATE, APPLIED_KEY)? {
            Some(value) => decode_u64(RAFT_STATE, APPLIED_KEY, &value)?,
            None => 0,
        };
        let mut storage = RaftStorage {
            hard_state,
            conf_state,
            compacted_index,
            compacted_term,
            ..RaftStorage::default()
        };
        storage.recover_entries(store)?;
        storage.check_recovered(applied_index)?;
        Ok(RecoveredStorage {
            storage,
            applied_index,
        })
    }

    fn recover_entries(&mut self, store: &dyn DurableStore) -> Result<(), StoreError> {
        let mut start = entry_key(self.compacted_index.saturating_add(1)).to_vec();
        loop {
            let chunk = store.scan(RAFT_LOG, &start, &LOG_END_KEY, RECOVERY_SCAN_CHUNK_MAX)?;
            let chunk_len = chunk.len();
            for (key, value) in chunk {
                let index = decode_entry_key(RAFT_LOG, &key)?;
                let entry = decode_entry(RAFT_LOG, &key, &value)?;
                self.check_recovered_entry(&key, index, &entry)?;
                self.entries_size_bytes += entry_size_bytes(&entry);
                self.entries.push_back(entry);
                start = entry_key(index.saturating_add(1)).to_vec();
            }
            if chunk_len < RECOVERY_SCAN_CHUNK_MAX {
                return Ok(());
            }
        }
    }

    fn check_recovered_entry(
        &self,
        key: &[u8],
        index: u64,
        entry: &Entry,
    ) -> Result<(), StoreError> {
        let corrupt = |reason: String| crate::codec::corrupt(RAFT_LOG, key, reason);
        if entry.index != index {
            return Err(corrupt(format!(
                "the key says index {index}, the entry says {}",
                entry.index
            )));
        }
        let expected = self.last_index() + 1;
        if index != expected {
            return Err(corrupt(format!(
                "expected entry {expected} next (the log must have no gaps), found {index}"
            )));
        }
        let previous_term = self
            .entries
            .back()
            .map_or(self.compacted_term, |last| last.term);
        if entry.term < previous_term {
            return Err(corrupt(format!(
                "entry {index} has term {}, lower than the term {previous_term} before it",
                entry.term
            )));
        }
        if self.entries.len() >= RAFT_LOG_ENTRIES_MAX {
            return Err(corrupt(format!(
                "the log holds more than {RAFT_LOG_ENTRIES_MAX} entries"
            )));
        }
        Ok(())
    }

    fn check_recovered(&self, applied_index: u64) -> Result<(), StoreError> {
        let commit = self.hard_state.commit;
        if commit > self.last_index() {
            return Err(crate::codec::corrupt(
                RAFT_STATE,
                HARD_STATE_KEY,
                format!(
                    "commit index {commit} is beyond the last stored entry {}",
                    self.last_index()
                ),
            ));
        }
        if applied_index > commit || applied_index < self.compacted_index {
            return Err(crate::codec::corrupt(
                RAFT_STATE,
                APPLIED_KEY,
                format!(
                    "applied index {applied_index} is outside [compacted {}, commit {commit}]",
                    self.compacted_index
                ),
            ));
        }
        Ok(())
    }

    // Getters.

    /// The hard state (term, vote, commit) as last written.
    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    /// The membership as of the applied index.
    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// True once the node knows a membership: it was bootstrapped or received a snapshot.
    pub fn is_initialized(&self) -> bool {
        !self.conf_state.voters.is_empty() || !self.conf_state.learners.is_empty()
    }

    /// Index and term of the last entry compacted away.
    pub fn compacted(&self) -> (u64, u64) {
        (self.compacted_index, self.compacted_term)
    }

    /// The index of the first entry held.
    pub fn first_index(&self) -> u64 {
        self.compacted_index + 1
    }

    /// The index of the last entry held (the compaction point when none is held).
    pub fn last_index(&self) -> u64 {
        self.compacted_index + self.entries.len() as u64
    }

    /// How many entries are held.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The counted size of the entries held, in bytes.
    pub fn entries_size_bytes(&self) -> u64 {
        self.entries_size_bytes
    }

    /// The term of the entry at `index`, if it is held or is the compaction point.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.compacted_index {
            return Some(self.compacted_term);
        }
        self.entry(index).map(|entry| entry.term)
    }

    fn entry(&self, index: u64) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// The snapshot built for followers, if any.
    pub fn outgoing_snapshot(&self) -> Option<&Snapshot> {
        self.outgoing_snapshot.as_ref()
    }

    // Changes. Each updates memory and adds the matching writes to `batch`.

    /// Makes a fresh log start as if from a snapshot at (`index`, `term`) with `conf_state`:
    /// every initial member of a group starts from the same point, and a member added later
    /// must catch up by snapshot, which carries the membership.
    pub fn bootstrap(
        &mut self,
        conf_state: ConfState,
        index: u64,
        term: u64,
        batch: &mut WriteBatch,
    ) {
        assert!(
            !self.is_initialized() && self.entries.is_empty(),
            "only an empty log is bootstrapped"
        );
        self.compacted_index = index;
        self.compacted_term = term;
        self.hard_state.term = term;
        self.hard_state.commit = index;
        self.conf_state = conf_state;
        batch.put(
            RAFT_STATE,
            COMPACTED_KEY,
            encode_u64_pair(index, term).to_vec(),
        );
        batch.put(
            RAFT_STATE,
            CONF_STATE_KEY,
            encode_conf_state(&self.conf_state),
        );
        batch.put(
            RAFT_STATE,
            HARD_STATE_KEY,
            encode_hard_state(&self.hard_state),
        );
        Self::write_applied(index, batch);
    }

    /// Appends `entries`, first removing every held entry they overwrite (a conflicting
    /// suffix from an older term).
    ///
    /// # Panics
    ///
    /// If the entries would overwrite compacted entries or leave a gap: raft never asks for
    /// either, so it is a bug.
    pub fn append(&mut self, entries: &[Entry], batch: &mut WriteBatch) {
        let Some(first) = entries.first() else {
            return;
        };
        assert!(
            first.index > self.compacted_index,
            "append at {} overwrites the compacted log (compacted through {})",
            first.index,
            self.compacted_index
        );
        assert!(
            first.index <= self.last_index() + 1,
            "append at {} leaves a gap after the last entry {}",
            first.index,
            self.last_index()
        );
        if first.index <= self.last_index() {
            batch.delete_range(
                RAFT_LOG,
                entry_key(first.index).to_vec(),
                LOG_END_KEY.to_vec(),
            );
            while self.last_index() >= first.index {
                let removed = self.entries.pop_back().expect("the log is not empty");
                self.entries_size_bytes -= entry_size_bytes(&removed);
            }
        }
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index() + 1,
                "appended entries are dense"
            );
            batch.put(
                RAFT_LOG,
                entry_key(entry.index).to_vec(),
                encode_entry(entry),
            );
            self.entries_size_bytes += entry_size_bytes(entry);
            self.entries.push_back(entry.clone());
        }
    }

    /// Replaces the hard state.
    pub fn set_hard_state(&mut self, hard_state: HardState, batch: &mut WriteBatch) {
        self.hard_state = hard_state;
        self.write_hard_state(batch);
    }

    /// Raises the commit index in memory; it reaches the store with the next hard state write.
    pub fn set_commit(&mut self, commit: u64) {
        assert!(
            commit >= self.hard_state.commit,
            "the commit index never falls"
        );
        self.hard_state.commit = commit;
    }

    /// Writes the hard state as it is in memory.
    pub fn write_hard_state(&self, batch: &mut WriteBatch) {
        batch.put(
            RAFT_STATE,
            HARD_STATE_KEY,
            encode_hard_state(&self.hard_state),
        );
    }

    /// Replaces the membership.
    ///
    /// A snapshot built before the change carries the old membership: a member added since
    /// would refuse it (it is not in the snapshot's configuration) and ask again forever, so
    /// the change drops it and the next request builds one with the new membership.
    pub fn set_conf_state(&mut self, conf_state: ConfState, batch: &mut WriteBatch) {
        self.conf_state = conf_state;
        self.outgoing_snapshot = None;
        batch.put(
            RAFT_STATE,
            CONF_STATE_KEY,
            encode_conf_state(&self.conf_state),
        );
    }

    /// Records that the state machine has applied through `index`.
    pub fn write_applied(index: u64, batch: &mut WriteBatch) {
        batch.put(RAFT_STATE, APPLIED_KEY, index.to_be_bytes().to_vec());
    }

    /// Replaces the whole log with the point a received snapshot describes: every entry is
    /// dropped, the compaction point and membership come from the snapshot, and the commit
    /// index rises to it.
    pub fn apply_snapshot(&mut self, metadata: &SnapshotMetadata, batch: &mut WriteBatch) {
        batch.delete_range(RAFT_LOG, entry_key(0).to_vec(), LOG_END_KEY.to_vec());
        self.entries.clear();
        self.entries_size_bytes = 0;
        self.compacted_index = metadata.index;
        self.compacted_term = metadata.term;
        self.hard_state.term = self.hard_state.term.max(metadata.term);
        self.hard_state.commit = self.hard_state.commit.max(metadata.index);
        self.conf_state = metadata.get_conf_state().clone();
        self.outgoing_snapshot = None;
        batch.put(
            RAFT_STATE,
            COMPACTED_KEY,
            encode_u64_pair(metadata.index, metadata.term).to_vec(),
        );
        batch.put(
            RAFT_STATE,
            CONF_STATE_KEY,
            encode_conf_state(&self.conf_state),
        );
        self.write_hard_state(batch);
        Self::write_applied(metadata.index, batch);
    }

    /// Drops every entry up to and including `index`.
    ///
    /// # Panics
    ///
    /// If `index` is beyond the last entry: the caller compacts only applied entries.
    pub fn compact_through(&mut self, index: u64, batch: &mut WriteBatch) {
        if index <= self.compacted_index {
            return;
        }
        assert!(
            index <= self.last_index(),
            "compaction through {index} is beyond the last entry {}",
            self.last_index()
        );
        let term = self.term_of(index).expect("the entry is held");
        while self.compacted_index < index {
            let removed = self.entries.pop_front().expect("the entry is held");
            self.entries_size_bytes -= entry_size_bytes(&removed);
            self.compacted_index = removed.index;
        }
        self.compacted_term = term;
        batch.delete_range(
            RAFT_LOG,
            entry_key(0).to_vec(),
            entry_key(index.saturating_add(1)).to_vec(),
        );
        batch.put(
            RAFT_STATE,
            COMPACTED_KEY,
            encode_u64_pair(index, term).to_vec(),
        );
        if self
            .outgoing_snapshot
            .as_ref()
            .is_some_and(|snapshot| snapshot.get_metadata().index < index)
        {
            self.outgoing_snapshot = None;
        }
    }

    /// The index through which entries may be compacted so that at most
    /// `retained_entries_max` entries and `retained_size_bytes_max` bytes at or below
    /// `applied_index` stay held. Returns the current compaction point when nothing needs
    /// to go.
    pub fn compaction_point(
        &self,
        applied_index: u64,
        retained_entries_max: u64,
        retained_size_bytes_max: u64,
    ) -> u64 {
        let applied_index = applied_index.min(self.last_index());
        let mut point = self
            .compacted_index
            .max(applied_index.saturating_sub(retained_entries_max));
        // Walk back from the applied index while the retained entries fit in the size bound.
        let mut retained_size_bytes = 0;
        let mut index = applied_index;
        while index > point {
            let entry = self
                .entry(index)
                .expect("entries through the applied index are held");
            retained_size_bytes += entry_size_bytes(entry);
            if retained_size_bytes > retained_size_bytes_max {
                point = index;
                break;
            }
            index -= 1;
        }
        point
    }

    /// Takes the flag raft raised when it asked for a snapshot that was not built.
    pub(crate) fn take_snapshot_wanted(&self) -> bool {
        self.snapshot_wanted.replace(false)
    }

    /// Keeps `snapshot` to send to followers behind the compaction point.
    pub(crate) fn set_outgoing_snapshot(&mut self, snapshot: Snapshot) {
        self.outgoing_snapshot = Some(snapshot);
    }
}

fn storage_error(error: StorageError) -> raft::Error {
    raft::Error::Store(error)
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.compacted_index {
            return Err(storage_error(StorageError::Compacted));
        }
        if high > self.last_index() + 1 || low > high {
            return Err(storage_error(StorageError::Unavailable));
        }
        let size_bytes_max = max_size.into().unwrap_or(u64::MAX);
        let mut size_bytes = 0u64;
        let mut entries = Vec::new();
        for index in low..high {
            let entry = self.entry(index).expect("the range is within the log");
            size_bytes = size_bytes.saturating_add(u64::from(entry.compute_size()));
            // Always at least one entry, as the trait requires.
            if !entries.is_empty() && size_bytes > size_bytes_max {
                break;
            }
            entries.push(entry.clone());
        }
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.compacted_index {
            return Err(storage_error(StorageError::Compacted));
        }
        self.term_of(index)
            .ok_or_else(|| storage_error(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(RaftStorage::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        if let Some(snapshot) = &self.outgoing_snapshot {
            let index = snapshot.get_metadata().index;
            if index >= request_index && index >= self.compacted_index {
                return Ok(snapshot.clone());
            }
        }
        self.snapshot_wanted.set(true);
        Err(storage_error(StorageError::SnapshotTemporarilyUnavailable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory_store::MemoryStore;
    use raft::Storage as _;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: format!("entry {index}").into_bytes().into(),
            ..Entry::default()
        }
    }

    fn voters(ids: &[u64]) -> ConfState {
        ConfState {
            voters: ids.to_vec(),
            ..ConfState::default()
        }
    }

    fn persist(store: &mut MemoryStore, batch: WriteBatch) {
        store.write(batch, true).unwrap();
    }

    #[test]
    fn a_bootstrapped_log_with_entries_recovers_exactly() {
        let mut store = MemoryStore::new();
        let mut storage = RaftStorage::new();
        let mut batch = WriteBatch::new();
        storage.bootstrap(voters(&[1, 2, 3]), 1, 1, &mut batch);
        storage.append(&[entry(2, 1), entry(3, 2), entry(4, 2)], &mut batch);
        let mut hard_state = storage.hard_state().clone();
        hard_state.commit = 3;
        hard_state.vote = 2;
        hard_state.term = 2;
        storage.set_hard_state(hard_state.clone(), &mut batch);
        RaftStorage::write_applied(3, &mut batch);
        persist(&mut store, batch);

        let recovered = RaftStorage::recover(&store).unwrap();
        assert_eq!(recovered.applied_index, 3);
        let storage = recovered.storage;
        assert_eq!(storage.hard_state(), &hard_state);
        assert_eq!(storage.conf_state().voters, vec![1, 2, 3]);
        assert_eq!((storage.first_index(), storage.last_index()), (2, 4));
        assert_eq!(storage.term(1).unwrap(), 1);
        assert_eq!(storage.term(4).unwrap(), 2);
        let entries = storage
            .entries(2, 5, None, GetEntriesContext::empty(false))
            .unwrap();
        assert_eq!(entries, vec![entry(2, 1), entry(3, 2), entry(4, 2)]);
    }

    #[test]
    fn a_conflicting_append_replaces_the_suffix_in_memory_and_in_the_store() {
        let mut store = MemoryStore::new();
        let mut storage = RaftStorage::new();
        let mut batch = WriteBatch::new();
        storage.bootstrap(voters(&[1]), 1, 1, &mut batch);
        storage.append(&[entry(2, 1), entry(3, 1), entry(4, 1)], &mut batch);
        persist(&mut store, batch);
        let mut batch = WriteBatch::new();
        storage.append(&[entry(3, 2)], &mut batch);
        persist(&mut store, batch);
        assert_eq!(storage.last_index(), 3);
        assert_eq!(storage.term(3).unwrap(), 2);
        let recovered = RaftStorage::recover(&store).unwrap().storage;
        assert_eq!(recovered.last_index(), 3);
        assert_eq!(recovered.term(3).unwrap(), 2);
        assert_eq!(recovered.entries_size_bytes(), storage.entries_size_bytes());
    }

    #[test]
    fn compaction_drops_entries_and_moves_the_first_index() {
        let mut store = MemoryStore::new();
        let mut storage = RaftStorage::new();
        let mut batch = WriteBatch::new();
        storage.bootstrap(voters(&[1]), 1, 1, &mut batch);
        let entries: Vec<Entry> = (2..=11).map(|index| entry(index, 3)).collect();
        storage.append(&entries, &mut batch);
        persist(&mut store, batch);

        // Ten entries through the applied index 11, at most four kept.
        assert_eq!(storage.compaction_point(11, 4, u64::MAX), 7);
        // A size bound of two entries wins over a count of four.
        let two_entries = 2 * entry_size_bytes(&entry(10, 3));
        assert_eq!(storage.compaction_point(11, 4, two_entries), 9);
        let mut batch = WriteBatch::new();
        storage.compact_through(7, &mut batch);
        persist(&mut store, batch);
        assert_eq!(storage.first_index(), 8);
        assert_eq!(storage.term(7).unwrap(), 3);
        assert!(matches!(
            storage.term(6),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            storage.entries(7, 9, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(store.keys(RAFT_LOG).len(), 4);

        let mut hard_state = storage.hard_state().clone();
        hard_state.commit = 11;
        let mut batch = WriteBatch::new();
        storage.set_hard_state(hard_state, &mut batch);
        RaftStorage::write_applied(11, &mut batch);
        persist(&mut store, batch);
        let recovered = RaftStorage::recover(&store).unwrap().storage;
        assert_eq!((recovered.first_index(), recovered.last_index()), (8, 11));
    }

    #[test]
    fn a_received_snapshot_replaces_the_log() {
        let mut store = MemoryStore::new();
        let mut storage = RaftStorage::new();
        let mut batch = WriteBatch::new();
        storage.append(&[entry(1, 1), entry(2, 1)], &mut batch);
        let mut metadata = SnapshotMetadata {
            index: 50,
            term: 4,
            ..SnapshotMetadata::default()
        };
        metadata.set_conf_state(voters(&[1, 2, 3]));
        storage.apply_snapshot(&metadata, &mut batch);
        persist(&mut store, batch);
        assert_eq!((storage.first_index(), storage.last_index()), (51, 50));
        assert!(storage.is_initialized());
        let recovered = RaftStorage::recover(&store).unwrap();
        assert_eq!(recovered.applied_index, 50);
        assert_eq!(recovered.storage.hard_state().commit, 50);
        assert_eq!(recovered.storage.term(50).unwrap(), 4);
        assert!(store.keys(RAFT_LOG).is_empty());
    }

    #[test]
    fn snapshots_are_built_on_demand() {
        let mut storage = RaftStorage::new();
        let mut batch = WriteBatch::new();
        storage.bootstrap(voters(&[1]), 1, 1, &mut batch);
        assert!(matches!(
            storage.snapshot(0, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        assert!(storage.take_snapshot_wanted());
        assert!(!storage.take_snapshot_wanted());
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 1;
        snapshot.mut_metadata().term = 1;
        storage.set_outgoing_snapshot(snapshot.clone());
        assert_eq!(storage.snapshot(0, 2).unwrap(), snapshot);
        // A snapshot older than the request is not good enough.
        assert!(storage.snapshot(5, 2).is_err());
        // A membership change makes the snapshot stale: it names the old members, and a
        // member added since would refuse it.
        storage.set_conf_state(voters(&[1, 2]), &mut batch);
        assert!(storage.snapshot(0, 2).is_err());
        assert!(storage.take_snapshot_wanted());
    }

    #[test]
    fn damaged_stores_are_reported_with_the_key_never_a_panic() {
        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        batch.put(RAFT_LOG, entry_key(1).to_vec(), encode_entry(&entry(1, 1)));
        batch.put(RAFT_LOG, entry_key(3).to_vec(), encode_entry(&entry(3, 1)));
        persist(&mut store, batch);
        let error = RaftStorage::recover(&store).unwrap_err();
        assert!(error.to_string().contains("gaps"), "{error}");

        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        batch.put(RAFT_LOG, entry_key(1).to_vec(), encode_entry(&entry(2, 1)));
        persist(&mut store, batch);
        let error = RaftStorage::recover(&store).unwrap_err();
        assert!(
            error.to_string().contains("the key says index 1"),
            "{error}"
        );

        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        batch.put(RAFT_LOG, entry_key(1).to_vec(), encode_entry(&entry(1, 5)));
        batch.put(RAFT_LOG, entry_key(2).to_vec(), encode_entry(&entry(2, 4)));
        persist(&mut store, batch);
        assert!(RaftStorage::recover(&store).is_err());

        let mut store = MemoryStore::new();
        let mut batch = WriteBatch::new();
        batch.put(RAFT_STATE, HARD_STATE_KEY.to_vec(), vec![0xff, 0x01]);
        persist(&mut store, batch);
        let error = RaftStorage::recover(&store).unwrap_err();
        assert!(error.to_string().contains("raft_state"), "{error}");

        let mut store = MemoryStore::new();
        let hard_state = HardState {
            commit: 9,
            ..HardState::default()
        };
        let mut batch = WriteBatch::new();
        batch.put(
            RAFT_STATE,
            HARD_STATE_KEY.to_vec(),
            encode_hard_state(&hard_state),
        );
        persist(&mut store, batch);
        let error = RaftStorage::recover(&store).unwrap_err();
        assert!(error.to_string().contains("commit index 9"), "{error}");
    }
}
