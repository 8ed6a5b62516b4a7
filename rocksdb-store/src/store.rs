//! [`RocksDbStore`]: the [`DurableStore`] contract on RocksDB, one column family per key space.

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use dsss_raft_group::{
    DurableStore, KeyRange, KeySpace, KeyValuePairs, PinnedViews, StoreError, StoreView,
    WriteBatch, WriteOperation,
};
use rocksdb::{
    Cache, ColumnFamily, ColumnFamilyDescriptor, DB, ErrorKind, ReadOptions, WriteOptions,
};

use crate::options::{BLOCK_CACHE_SIZE_BYTES_MAX, database_options, key_space_options};

/// Key spaces one store may hold, counting those found on disk that the caller did not name.
pub const KEY_SPACES_MAX: usize = 64;

/// Bytes of keys and values in one batch. The raft layer cuts its batches far below this;
/// the bound stops a runaway batch from taking the node's memory down with it.
pub const BATCH_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Operations in one batch.
pub const BATCH_OPERATIONS_MAX: usize = 262_144;

/// The largest `limit` that [`DurableStore::scan`] accepts. A larger limit is an error rather
/// than a silent cut, because a caller that pages through a range reads a short page as the
/// end of the range.
pub const SCAN_LIMIT_MAX: usize = 65_536;

/// RocksDB's column family that every database has. It is opened with the same options as the
/// key spaces but is reachable only if a caller names it as a key space.
const DEFAULT_COLUMN_FAMILY: &str = "default";

/// The file that names a RocksDB database's current manifest. A directory without it holds no
/// database yet.
const CURRENT_FILE: &str = "CURRENT";

/// A [`DurableStore`] on RocksDB: each [`KeySpace`] is one column family, each
/// [`WriteBatch`] one atomic RocksDB write batch, and `sync = true` fsyncs the write-ahead log
/// before [`DurableStore::write`] returns.
///
/// `RocksDbStore` is `Send`, so a driver can own it in a tokio task or a dedicated thread. It
/// is also `Sync`: RocksDB serves concurrent reads, so [`DurableStore::get`] and
/// [`DurableStore::scan`] may run from several threads through shared references, while
/// [`DurableStore::write`] takes `&mut self`, which keeps one owner in charge of the write
/// order the contract depends on.
pub struct RocksDbStore {
    database: DB,
    path: PathBuf,
    /// The key spaces the caller opened the store with; only these are reachable.
    key_spaces: BTreeSet<KeySpace>,
    synced_write: WriteOptions,
    unsynced_write: WriteOptions,
    /// Views pinned since the store was opened: read-only copies of the database made of
    /// hard links (RocksDB checkpoints) in the directory beside it ([`views_directory`]).
    views: PinnedViews,
}

impl RocksDbStore {
    /// Opens the store in directory `path`, creating the directory and the store if they do
    /// not exist, with one column family per key space in `key_spaces`.
    ///
    /// Column families already on disk are kept, whether or not `key_spaces` names them, so a
    /// store can be reopened with more key spaces (or fewer) without losing data; only the key
    /// spaces named here are reachable through the returned store.
    ///
    /// # Errors
    ///
    /// [`StoreError::Engine`] naming `path` if the directory cannot be created, if the store is
    /// already open (by another process or another `RocksDbStore` in this one: RocksDB's
    /// `LOCK` file), if the store's files are damaged or missing, or if the store would hold
    /// more than [`KEY_SPACES_MAX`] key spaces.
    pub fn open(path: &Path, key_spaces: &[KeySpace]) -> Result<RocksDbStore, StoreError> {
        std::fs::create_dir_all(path).map_err(|error| {
            StoreError::Engine(format!(
                "cannot create the store directory {}: {error}",
                path.display()
            ))
        })?;
        let exists = store_exists(path)?;
        let options = database_options(!exists);
        let mut names: BTreeSet<String> = key_spaces
            .iter()
            .map(|space| space.name().to_owned())
            .collect();
        names.insert(DEFAULT_COLUMN_FAMILY.to_owned());
        if exists {
            let on_disk = DB::list_cf(&options, path).map_err(|error| open_error(path, error))?;
            names.extend(on_disk);
        }
        // The default column family is always there and is not a key space of the caller.
        if names.len() > KEY_SPACES_MAX + 1 {
            return Err(StoreError::Engine(format!(
                "the store at {} would hold {} key spaces, more than KEY_SPACES_MAX ({KEY_SPACES_MAX})",
                path.display(),
                names.len() - 1
            )));
        }
        let cache = Cache::new_lru_cache(BLOCK_CACHE_SIZE_BYTES_MAX);
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, key_space_options(&cache)));
        let database = DB::open_cf_descriptors(&options, path, descriptors)
            .map_err(|error| open_error(path, error))?;
        // Views pinned before a restart are gone with the process that pinned them.
        let views_directory = views_directory(path);
        if views_directory.exists() {
            std::fs::remove_dir_all(&views_directory).map_err(|error| {
                StoreError::Engine(format!(
                    "cannot remove the views of an earlier run at {}: {error}",
                    views_directory.display()
                ))
            })?;
        }
        let mut synced_write = WriteOptions::default();
        synced_write.set_sync(true);
        let mut unsynced_write = WriteOptions::default();
        unsynced_write.set_sync(false);
        Ok(RocksDbStore {
            database,
            path: path.to_owned(),
            key_spaces: key_spaces.iter().copied().collect(),
            synced_write,
            unsynced_write,
            views: PinnedViews::default(),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key spaces reachable through this store, in name order.
    pub fn key_spaces(&self) -> impl Iterator<Item = KeySpace> + '_ {
        self.key_spaces.iter().copied()
    }

    /// The column family of `space`, or an error naming it if the store was not opened with
    /// it.
    fn column_family(&self, space: KeySpace) -> Result<&ColumnFamily, StoreError> {
        let handle = if self.key_spaces.contains(&space) {
            self.database.cf_handle(space.name())
        } else {
            None
        };
        handle.ok_or_else(|| {
            let opened: Vec<&str> = self.key_spaces.iter().map(|space| space.name()).collect();
            StoreError::Engine(format!(
                "unknown key space `{space}`: the store at {} was opened with key spaces [{}]",
                self.path.display(),
                opened.join(", ")
            ))
        })
    }

    /// Translates `batch` into one RocksDB batch, checking every key space and bound first so
    /// that a bad batch writes nothing.
    fn engine_batch(&self, batch: &WriteBatch) -> Result<rocksdb::WriteBatch, StoreError> {
        if batch.size_bytes() > BATCH_SIZE_BYTES_MAX {
            return Err(StoreError::Engine(format!(
                "a batch of {} bytes exceeds BATCH_SIZE_BYTES_MAX ({BATCH_SIZE_BYTES_MAX}) for the store at {}",
                batch.size_bytes(),
                self.path.display()
            )));
        }
        if batch.len() > BATCH_OPERATIONS_MAX {
            return Err(StoreError::Engine(format!(
                "a batch of {} operations exceeds BATCH_OPERATIONS_MAX ({BATCH_OPERATIONS_MAX}) for the store at {}",
                batch.len(),
                self.path.display()
            )));
        }
        let mut engine_batch = rocksdb::WriteBatch::default();
        for operation in batch.operations() {
            match operation {
                WriteOperation::Put { space, key, value } => {
                    engine_batch.put_cf(self.column_family(*space)?, key, value);
                }
                WriteOperation::Delete { space, key } => {
                    engine_batch.delete_cf(self.column_family(*space)?, key);
                }
                WriteOperation::DeleteRange { space, start, end } => {
                    let column_family = self.column_family(*space)?;
                    // The contract removes `start <= key < end`, which is nothing when
                    // `start >= end`; RocksDB would instead reject an inverted range.
                    if start < end {
                        engine_batch.delete_range_cf(column_family, start, end);
                    }
                }
            }
        }
        Ok(engine_batch)
    }

    /// The error for a failed read of `key` in `space`.
    fn read_error(&self, space: KeySpace, key: &[u8], error: rocksdb::Error) -> StoreError {
        read_error(&self.path, space, key, error)
    }
}

impl DurableStore for RocksDbStore {
    fn write(&mut self, batch: WriteBatch, sync: bool) -> Result<(), StoreError> {
        let engine_batch = self.engine_batch(&batch)?;
        let result = if engine_batch.is_empty() {
            // Nothing to apply, but a synced write still promises that every earlier batch is
            // durable, so the write-ahead log is synced all the same.
            if sync {
                self.database.flush_wal(true)
            } else {
                Ok(())
            }
        } else {
            let options = if sync {
                &self.synced_write
            } else {
                &self.unsynced_write
            };
            self.database.write_opt(engine_batch, options)
        };
        result.map_err(|error| {
            StoreError::Engine(format!(
                "writing a batch of {} operations (sync = {sync}) to the store at {}: {error}",
                batch.len(),
                self.path.display()
            ))
        })
    }

    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let column_family = self.column_family(space)?;
        self.database
            .get_cf(column_family, key)
            .map_err(|error| self.read_error(space, key, error))
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        let column_family = self.column_family(space)?;
        scan_database(
            &self.database,
            &self.path,
            column_family,
            space,
            start,
            end,
            limit,
        )
    }

    fn views(&self) -> Option<&PinnedViews> {
        Some(&self.views)
    }

    /// Pins the whole database, whatever the ranges: a RocksDB checkpoint (hard links to the
    /// table files, after a flush of the memtables) opened read-only. It costs a flush and the
    /// disk space of table files that compaction replaces while the view is kept.
    fn pin_view(&self, id: u64, _ranges: &[KeyRange]) -> Result<(), StoreError> {
        let directory = views_directory(&self.path).join(id.to_string());
        let pin_error = |what: &str, error: &dyn fmt::Display| {
            StoreError::Engine(format!(
                "pinning a view of the store at {} in {}: {what}: {error}",
                self.path.display(),
                directory.display()
            ))
        };
        // The same id again (a snapshot built again at the same index) replaces the view.
        self.views.clear_id(id);
        if directory.exists() {
            std::fs::remove_dir_all(&directory)
                .map_err(|error| pin_error("removing an older view", &error))?;
        }
        if let Some(parent) = directory.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| pin_error("creating the views directory", &error))?;
        }
        rocksdb::checkpoint::Checkpoint::new(&self.database)
            .and_then(|checkpoint| checkpoint.create_checkpoint(&directory))
            .map_err(|error| pin_error("creating the checkpoint", &error))?;
        let cache = Cache::new_lru_cache(VIEW_BLOCK_CACHE_SIZE_BYTES);
        let names = DB::list_cf(&database_options(false), &directory)
            .map_err(|error| pin_error("listing its key spaces", &error))?;
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, key_space_options(&cache)));
        let database = DB::open_cf_descriptors_read_only(
            &database_options(false),
            &directory,
            descriptors,
            false,
        )
        .map_err(|error| pin_error("opening it", &error))?;
        self.views.keep(
            id,
            Arc::new(RocksView {
                database: Some(database),
                directory,
                key_spaces: self.key_spaces.clone(),
            }),
        );
        Ok(())
    }
}

/// The block cache of one pinned view: views are read once, in order, by a follower that
/// fetches a snapshot's state.
const VIEW_BLOCK_CACHE_SIZE_BYTES: usize = 8 * 1024 * 1024;

/// Where the views of the store at `path` live: a directory beside it, on the same file
/// system (a checkpoint is made of hard links).
fn views_directory(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|name| name.to_os_string())
        .unwrap_or_default();
    name.push(".views");
    path.with_file_name(name)
}

/// A read-only view of a [`RocksDbStore`]: a checkpoint of it, opened read-only, removed from
/// disk when the view is dropped.
struct RocksView {
    database: Option<DB>,
    directory: PathBuf,
    key_spaces: BTreeSet<KeySpace>,
}

impl RocksView {
    fn column_family(&self, space: KeySpace) -> Result<(&DB, &ColumnFamily), StoreError> {
        let database = self.database.as_ref().expect("open until dropped");
        let handle = if self.key_spaces.contains(&space) {
            database.cf_handle(space.name())
        } else {
            None
        };
        handle.map(|handle| (database, handle)).ok_or_else(|| {
            StoreError::Engine(format!(
                "unknown key space `{space}` in the view at {}",
                self.directory.display()
            ))
        })
    }
}

impl StoreView for RocksView {
    fn get(&self, space: KeySpace, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let (database, column_family) = self.column_family(space)?;
        database
            .get_cf(column_family, key)
            .map_err(|error| read_error(&self.directory, space, key, error))
    }

    fn scan(
        &self,
        space: KeySpace,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<KeyValuePairs, StoreError> {
        let (database, column_family) = self.column_family(space)?;
        scan_database(
            database,
            &self.directory,
            column_family,
            space,
            start,
            end,
            limit,
        )
    }
}

impl Drop for RocksView {
    fn drop(&mut self) {
        // Closed before its files go.
        drop(self.database.take());
        // Left behind on failure, and removed when the store is next opened.
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// The error for a failed read of `key` in `space` of the database at `path`: damage the
/// engine detected becomes [`StoreError::Corrupt`] at that key, anything else
/// [`StoreError::Engine`].
fn read_error(path: &Path, space: KeySpace, key: &[u8], error: rocksdb::Error) -> StoreError {
    if error.kind() == ErrorKind::Corruption {
        StoreError::Corrupt {
            space,
            key_hex: hex(key),
            reason: format!("RocksDB store at {}: {error}", path.display()),
        }
    } else {
        StoreError::Engine(format!(
            "reading key {} of key space `{space}` in the store at {}: {error}",
            hex(key),
            path.display()
        ))
    }
}

/// Up to `limit` pairs of `column_family` with `start <= key < end`, in key order.
fn scan_database(
    database: &DB,
    path: &Path,
    column_family: &ColumnFamily,
    space: KeySpace,
    start: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<KeyValuePairs, StoreError> {
    if limit > SCAN_LIMIT_MAX {
        return Err(StoreError::Engine(format!(
            "scan limit {limit} exceeds SCAN_LIMIT_MAX ({SCAN_LIMIT_MAX}) in key space `{space}` of the store at {}",
            path.display()
        )));
    }
    if limit == 0 || start >= end {
        return Ok(Vec::new());
    }
    let mut read_options = ReadOptions::default();
    // Both bounds let RocksDB stop at `end` instead of stepping over deleted keys beyond
    // it, which matters after a range delete of a compacted log prefix.
    read_options.set_iterate_lower_bound(start);
    read_options.set_iterate_upper_bound(end);
    let mut iterator = database.raw_iterator_cf_opt(column_family, read_options);
    iterator.seek(start);
    let mut pairs = Vec::new();
    while pairs.len() < limit {
        let Some((key, value)) = iterator.item() else {
            break;
        };
        // RocksDB enforces the bounds itself; a key outside them means the engine and
        // its files disagree, which must stop the node rather than feed it wrong entries.
        if key < start || key >= end {
            return Err(StoreError::Corrupt {
                space,
                key_hex: hex(key),
                reason: format!(
                    "RocksDB store at {} returned a key outside the scanned range {}..{}",
                    path.display(),
                    hex(start),
                    hex(end)
                ),
            });
        }
        pairs.push((key.to_vec(), value.to_vec()));
        iterator.next();
    }
    iterator.status().map_err(|error| {
        let position = pairs.last().map_or(start, |(key, _)| key.as_slice());
        read_error(path, space, position, error)
    })?;
    Ok(pairs)
}

impl fmt::Debug for RocksDbStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RocksDbStore")
            .field("path", &self.path)
            .field("key_spaces", &self.key_spaces)
            .finish_non_exhaustive()
    }
}

/// Whether `path` already holds a RocksDB database. A directory with RocksDB's data files but
/// no `CURRENT` file is damaged: opening it as a new store would silently drop its data.
fn store_exists(path: &Path) -> Result<bool, StoreError> {
    if path.join(CURRENT_FILE).exists() {
        return Ok(true);
    }
    let entries = std::fs::read_dir(path).map_err(|error| read_directory_error(path, error))?;
    for entry in entries {
        let entry = entry.map_err(|error| read_directory_error(path, error))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if is_database_file(&name) {
            return Err(StoreError::Engine(format!(
                "the store at {} is damaged: it holds RocksDB file {name} but no {CURRENT_FILE} file",
                path.display()
            )));
        }
    }
    Ok(false)
}

/// Whether a file called `name` belongs to a RocksDB database (as opposed to its diagnostic
/// logs or its lock).
fn is_database_file(name: &str) -> bool {
    name.starts_with("MANIFEST-")
        || name.starts_with("OPTIONS-")
        || name.ends_with(".sst")
        || name.ends_with(".log")
}

fn read_directory_error(path: &Path, error: io::Error) -> StoreError {
    StoreError::Engine(format!(
        "cannot read the store directory {}: {error}",
        path.display()
    ))
}

/// The error for a failed open of the store at `path`, saying which of the usual causes it is.
fn open_error(path: &Path, error: rocksdb::Error) -> StoreError {
    let message = error.as_ref();
    let explanation = if is_lock_error(&error) {
        "is already open: its LOCK file is held by another process or by another open store in this process"
    } else if error.kind() == ErrorKind::Corruption {
        "is damaged"
    } else {
        "cannot be opened"
    };
    StoreError::Engine(format!(
        "the store at {} {explanation}: {message}",
        path.display()
    ))
}

/// Whether RocksDB refused to open because another open database holds the directory's
/// `LOCK` file. RocksDB says so only in its message: "While lock file" across processes,
/// "lock hold by current process" within one.
fn is_lock_error(error: &rocksdb::Error) -> bool {
    let message = error.as_ref();
    error.kind() == ErrorKind::IOError
        && (message.contains("/LOCK") || message.contains("lock hold by current process"))
}

/// Lowercase hex of `bytes`, for error messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_files_are_recognised_and_other_files_are_not() {
        for name in [
            "MANIFEST-000005",
            "OPTIONS-000007",
            "000012.sst",
            "000004.log",
        ] {
            assert!(is_database_file(name), "{name}");
        }
        for name in ["LOCK", "LOG", "LOG.old.1700000000", "IDENTITY", "notes.txt"] {
            assert!(!is_database_file(name), "{name}");
        }
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_per_byte() {
        assert_eq!(hex(&[0x00, 0x0a, 0xff]), "000aff");
        assert_eq!(hex(&[]), "");
    }
}
