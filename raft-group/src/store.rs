//! The durable store interface: what every DSSS raft group persists through.
//!
//! Protocol code never touches a disk. It describes its writes as a [`WriteBatch`] and hands the
//! batch to a [`DurableStore`], which the driver provides: RocksDB in production (one column
//! family per [`KeySpace`]), and a crash-aware in-memory disk in the simulator. Both honour one
//! contract, so the simulator's crash tests say something about production.
//!
//! Contract of [`DurableStore::write`]:
//! - A batch is ATOMIC: after a crash, either every operation of the batch is there or none is.
//! - With `sync = true`, the batch and EVERY batch written before it are durable when `write`
//!   returns `Ok`: they survive a crash of the process and of the machine.
//! - With `sync = false`, the batch is visible to reads at once, but may be lost in a crash
//!   together with every later batch (never an earlier synced one).
//! - Reads see every batch written before, synced or not.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

/// A named key space: one column family in RocksDB, one key prefix in the simulator. Keys of
/// different spaces never collide, and a range delete stays inside one space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeySpace(&'static str);

impl KeySpace {
    /// A key space called `name`: lowercase ASCII letters, digits and `_`, 1 to 32 bytes.
    ///
    /// # Panics
    ///
    /// If the name breaks that rule. Key spaces are constants of the code, never input.
    pub const fn new(name: &'static str) -> Self {
        let bytes = name.as_bytes();
        assert!(
            !bytes.is_empty() && bytes.len() <= 32,
            "key space names are 1 to 32 bytes"
        );
        let mut index = 0;
        while index < bytes.len() {
            let byte = bytes[index];
            assert!(
                byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_',
                "key space names are lowercase ASCII letters, digits and '_'"
            );
            index += 1;
        }
        KeySpace(name)
    }

    /// The name, used as the RocksDB column family name.
    pub const fn name(self) -> &'static str {
        self.0
    }
}

impl fmt::Display for KeySpace {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.0)
    }
}

/// Raft log entries, keyed by big-endian entry index.
pub const RAFT_LOG: KeySpace = KeySpace::new("raft_log");

/// Raft hard state, conf state and snapshot metadata.
pub const RAFT_STATE: KeySpace = KeySpace::new("raft_state");

/// One write of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOperation {
    /// Sets `key` to `value`.
    Put {
        /// The key space.
        space: KeySpace,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
    },
    /// Removes `key` (nothing happens if it is absent).
    Delete {
        /// The key space.
        space: KeySpace,
        /// The key.
        key: Vec<u8>,
    },
    /// Removes every key `k` with `start <= k < end`.
    DeleteRange {
        /// The key space.
        space: KeySpace,
        /// First key removed.
        start: Vec<u8>,
        /// First key kept after the range.
        end: Vec<u8>,
    },
}

/// Writes that become durable together (see the module contract).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    operations: Vec<WriteOperation>,
    size_bytes: usize,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, space: KeySpace, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        let (key, value) = (key.into(), value.into());
        self.size_bytes += key.len() + value.len();
        self.operations
            .push(WriteOperation::Put { space, key, value });
    }

    /// Adds a delete.
    pub fn delete(&mut self, space: KeySpace, key: impl Into<Vec<u8>>) {
        let key = key.into();
        self.size_bytes += key.len();
        self.operations.push(WriteOperation::Delete { space, key });
    }

    /// Adds a range delete of `start <= key < end`.
    pub fn delete_range(
        &mut self,
        space: KeySpace,
        start: impl Into<Vec<u8>>,
        end: impl Into<Vec<u8>>,
    ) {
        let (start, end) = (start.into(), end.into());
        self.size_bytes += start.len() + end.len();
        self.operations
            .push(WriteOperation::DeleteRange { space, start, end });
    }

    /// Appends every operation of `other`, in order.
    pub fn extend(&mut self, other: WriteBatch) {
        self.size_bytes += other.size_bytes;
        self.operations.extend(other.operations);
    }

    /// The operations, in the order they apply.
    pub fn operations(&self) -> &[WriteOperation] {
        &self.operations
    }

    /// Takes the operations out.
    pub fn into_operations(self) -> Vec<WriteOperation> {
        self.operations
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.operations.is_empty()
    }

    /// How many operations the batch holds.
    pub fn len(&self) -> usize {
        self.operations.len()
    }

    /// Bytes of keys and values in the batch.
    pub fn size_bytes(&self) -> usize {
        self.size_bytes
    }
}

/// A failure of the durable store. A node that cannot persist MUST stop acknowledging: the
/// caller treats this as fatal for the node (it crashes and recovers from what is durable).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The storage engine reported an error.
    #[error("storage engine: {0}")]
    Engine(String),
    /// Stored bytes did not decode: the store is damaged or was written by something else.
    #[error("corrupt data in {space} at key {key_hex}: {reason}")]
    Corrupt {
        /// The key space.
        space: KeySpace,
        /// The key, hex encoded.
        key_hex: String,
        /// What was wrong.
        reason: String,
    },
}

/// Key-value pairs, in key order, as a scan returns them.
pub type KeyValuePairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The most views a store keeps pinned ([`DurableStore::pin_view`]): pinning another drops
/// the oldest. A view holds what the store held when it was pinned (on RocksDB, files that
/// compaction would otherwise delete), so only the newest are kept.
pub const PINNED_VIEWS_MAX: usize = 2;

/// A range of keys of one space, `start <= key < end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// The key space.
    pub space: KeySpace,
    /// The first key of the range.
    pub start: Vec<u8>,
    /// The first key past the range.
    pub end: Vec<u8>,
}

/// A read-only view of a store as it was when it was pinned: later writes to the store do
/// not show in it.
pub trait StoreView: Send + Sync {
    /// The value of `key` in `space`.
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` key-value pairs with `start <= key < end`, in key order.
    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError>;
}

/// The views a store keeps pinned, newest last, at most [`PINNED_VIEWS_MAX`]. A clone has a
/// list of its own that starts with the same views.
#[derive(Default)]
pub struct PinnedViews {
    views: Arc<Mutex<ViewList>>,
}

/// Views by id, oldest first.
type ViewList = VecDeque<(u64, Arc<dyn StoreView>)>;

impl fmt::Debug for PinnedViews {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_list()
            .entries(self.lock().iter().map(|(id, _)| id))
            .finish()
    }
}

/// Two lists are equal when they keep views under the same ids (what a view holds is a
/// copy of the store, not something of its own).
impl PartialEq for PinnedViews {
    fn eq(&self, other: &Self) -> bool {
        self.ids() == other.ids()
    }
}

impl Eq for PinnedViews {}

impl Clone for PinnedViews {
    fn clone(&self) -> Self {
        PinnedViews {
            views: Arc::new(Mutex::new(self.lock().clone())),
        }
    }
}

impl PinnedViews {
    fn lock(&self) -> std::sync::MutexGuard<'_, ViewList> {
        // A view list is never left half-changed, so a poisoned lock still holds a good one.
        self.views
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps `view` under `id`, replacing a view of the same id and dropping the oldest beyond
    /// [`PINNED_VIEWS_MAX`].
    pub fn keep(&self, id: u64, view: Arc<dyn StoreView>) {
        let mut views = self.lock();
        views.retain(|(kept, _)| *kept != id);
        views.push_back((id, view));
        while views.len() > PINNED_VIEWS_MAX {
            views.pop_front();
        }
    }

    /// Drops the view kept under `id`, if any.
    pub fn clear_id(&self, id: u64) {
        self.lock().retain(|(kept, _)| *kept != id);
    }

    /// The view kept under `id`.
    pub fn get(&self, id: u64) -> Option<Arc<dyn StoreView>> {
        self.lock()
            .iter()
            .find(|(kept, _)| *kept == id)
            .map(|(_, view)| Arc::clone(view))
    }

    /// The ids kept, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.lock().iter().map(|(id, _)| *id).collect()
    }

    /// Drops every view (what a crash or a restart does).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// A view made by copying ranges of a store: for stores in memory, whose copies cost what the
/// ranges hold.
#[derive(Clone, Debug, Default)]
pub struct CopiedView {
    contents: Contents,
}

impl CopiedView {
    /// A copy of `ranges` of `store`, read a chunk at a time.
    pub fn copy_of(
        store: &(impl DurableStore + ?Sized),
        ranges: &[KeyRange],
    ) -> Result<CopiedView, StoreError> {
        const CHUNK: usize = 1_024;
        let mut contents = Contents::new();
        for range in ranges {
            let mut from = range.start.clone();
            loop {
                let chunk = store.scan(range.space, &from, &range.end, CHUNK)?;
                let exhausted = chunk.len() < CHUNK;
                if let Some((last, _)) = chunk.last() {
                    from = last.clone();
                    from.push(0);
                }
                for (key, value) in chunk {
                    contents.insert((range.space, key), value);
                }
                if exhausted {
                    break;
                }
            }
        }
        Ok(CopiedView { contents })
    }
}

impl StoreView for CopiedView {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.contents.get(&(space, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        Ok(scan_contents(&self.contents, space, start, end, limit))
    }
}

/// Keys and values of stores held in memory, by key space and key.
pub(crate) type Contents = std::collections::BTreeMap<(KeySpace, Vec<u8>), Vec<u8>>;

/// Up to `limit` pairs of `space` in `contents` with `start <= key < end`, in key order.
pub(crate) fn scan_contents(
    contents: &Contents,
    space: KeySpace,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> KeyValuePairs {
    if start >= end {
        return Vec::new();
    }
    contents
        .range((space, start.to_vec())..(space, end.to_vec()))
        .take(limit)
        .map(|((_, key), value)| (key.clone(), value.clone()))
        .collect()
}

/// A key-value store with atomic batches and an explicit sync (see the module contract).
pub trait DurableStore {
    /// Applies `batch` atomically; with `sync`, makes it and every earlier batch durable
    /// before returning.
    fn write(&mut self, batch: WriteBatch, sync: bool) -> Result<(), StoreError>;

    /// The value of `key` in `space`.
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Up to `limit` key-value pairs with `start <= key < end`, in key order.
    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError>;

    /// The views this store keeps pinned, when it can keep any.
    fn views(&self) -> Option<&PinnedViews> {
        None
    }

    /// Pins a read-only view of `ranges` as the store holds them now, under `id` (a store
    /// may keep more than the ranges). The default copies the ranges into memory, which suits
    /// stores held in memory; a store on disk pins without copying.
    fn pin_view(&self, id: u64, ranges: &[KeyRange]) -> Result<(), StoreError> {
        let Some(views) = self.views() else {
            return Err(StoreError::Engine(
                "this store keeps no pinned views".to_owned(),
            ));
        };
        let view = CopiedView::copy_of(self, ranges)?;
        views.keep(id, Arc::new(view));
        Ok(())
    }

    /// The view pinned under `id`, while the store keeps it.
    fn pinned_view(&self, id: u64) -> Option<Arc<dyn StoreView>> {
        self.views()?.get(id)
    }
}
