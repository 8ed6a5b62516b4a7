//! The production DSSS durable store: raft logs, hard state and region logs in RocksDB.
//!
//! [`RocksDbStore`] implements [`DurableStore`](dsss_raft_group::DurableStore) (docs/design.md
//! section 3: the production driver persists through it, the simulator through an in-memory
//! disk with the same contract). Every [`KeySpace`](dsss_raft_group::KeySpace) is one RocksDB
//! column family, so keys of different spaces never collide and a range delete stays in its
//! space. A [`WriteBatch`](dsss_raft_group::WriteBatch) becomes one RocksDB write batch, which
//! RocksDB applies atomically through its write-ahead log; `sync = true` fsyncs that log before
//! the write returns.
//!
//! Memory and disk use are bounded by the named constants of this crate: memtables, block
//! cache, write-ahead log, open files, batch sizes and scan lengths.
//!
//! ```
//! use dsss_raft_group::{DurableStore, RAFT_LOG, RAFT_STATE, WriteBatch};
//! use dsss_rocksdb_store::RocksDbStore;
//!
//! let directory = tempfile::tempdir()?;
//! let mut store = RocksDbStore::open(directory.path(), &[RAFT_LOG, RAFT_STATE])?;
//!
//! let mut batch = WriteBatch::new();
//! batch.put(RAFT_LOG, 7u64.to_be_bytes(), b"entry seven".to_vec());
//! batch.put(RAFT_STATE, b"hard_state".to_vec(), b"term 3".to_vec());
//! store.write(batch, true)?;
//!
//! assert_eq!(
//!     store.get(RAFT_LOG, &7u64.to_be_bytes())?,
//!     Some(b"entry seven".to_vec())
//! );
//! let entries = store.scan(RAFT_LOG, &0u64.to_be_bytes(), &u64::MAX.to_be_bytes(), 10)?;
//! assert_eq!(entries.len(), 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod options;
mod store;

pub use options::{
    BACKGROUND_JOBS_MAX, BLOCK_CACHE_SIZE_BYTES_MAX, INFO_LOG_FILE_SIZE_BYTES_MAX,
    INFO_LOG_FILES_MAX, MEMTABLE_SIZE_BYTES_MAX, MEMTABLES_PER_KEY_SPACE_MAX,
    MEMTABLES_TOTAL_SIZE_BYTES_MAX, OPEN_FILES_MAX, WAL_TOTAL_SIZE_BYTES_MAX,
};
pub use store::{
    BATCH_OPERATIONS_MAX, BATCH_SIZE_BYTES_MAX, KEY_SPACES_MAX, RocksDbStore, SCAN_LIMIT_MAX,
};
