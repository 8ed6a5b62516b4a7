//! RocksDB tuning for a raft log workload, with every memory and disk bound named.
//!
//! A raft log is mostly appends of small records, point reads of recent entries, scans over
//! index ranges, and range deletes of compacted prefixes. The write path is dominated by the
//! write-ahead log fsync, so the options keep the write-ahead log on, keep memtables small and
//! bounded, and share one bounded block cache between all key spaces.

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, DBRecoveryMode, Options};

/// Size of one memtable of one key space. RocksDB switches to a new memtable and flushes the
/// old one when it fills.
pub const MEMTABLE_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Memtables one key space may hold in memory at once (the active one plus those waiting to
/// be flushed). Writes stall rather than exceed it.
pub const MEMTABLES_PER_KEY_SPACE_MAX: i32 = 4;

/// Memtable memory across all key spaces of one store. RocksDB flushes the largest memtable
/// when the total reaches it, so many key spaces cannot multiply the memory use.
pub const MEMTABLES_TOTAL_SIZE_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Block cache shared by all key spaces of one store. Index and filter blocks live in it too,
/// so reading large tables cannot grow memory past this bound.
pub const BLOCK_CACHE_SIZE_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Write-ahead log files kept on disk across all key spaces. A key space that is rarely
/// written would otherwise keep every log file alive until its memtable flushes; past this
/// size RocksDB flushes such key spaces so old log files can go.
pub const WAL_TOTAL_SIZE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Table files RocksDB keeps open at once.
pub const OPEN_FILES_MAX: i32 = 512;

/// Background flush and compaction threads. The raft log is write-light per byte compared to
/// a general key-value workload, and a node runs several stores on few cores.
pub const BACKGROUND_JOBS_MAX: i32 = 2;

/// RocksDB's own diagnostic `LOG` files kept in the store directory.
pub const INFO_LOG_FILES_MAX: usize = 4;

/// Size at which RocksDB starts a new diagnostic `LOG` file.
pub const INFO_LOG_FILE_SIZE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Options of the database as a whole. `create_if_missing` is set only for a directory that
/// holds no store yet, so a store whose files went missing is reported, never silently
/// replaced by an empty one.
pub(crate) fn database_options(create_if_missing: bool) -> Options {
    let mut options = Options::default();
    options.create_if_missing(create_if_missing);
    options.create_missing_column_families(true);
    // Point-in-time recovery replays the write-ahead log up to the first damaged record and
    // stops there: every synced batch precedes any torn tail, so it is kept, and a batch is
    // never replayed in part.
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    options.set_paranoid_checks(true);
    options.set_db_write_buffer_size(MEMTABLES_TOTAL_SIZE_BYTES_MAX);
    options.set_max_total_wal_size(WAL_TOTAL_SIZE_BYTES_MAX);
    options.set_max_open_files(OPEN_FILES_MAX);
    options.set_max_background_jobs(BACKGROUND_JOBS_MAX);
    options.set_keep_log_file_num(INFO_LOG_FILES_MAX);
    options.set_max_log_file_size(INFO_LOG_FILE_SIZE_BYTES_MAX);
    options
}

/// Options of one key space (column family); every key space shares `cache`.
pub(crate) fn key_space_options(cache: &Cache) -> Options {
    let mut table_options = BlockBasedOptions::default();
    table_options.set_block_cache(cache);
    table_options.set_cache_index_and_filter_blocks(true);

    let mut options = Options::default();
    options.set_write_buffer_size(MEMTABLE_SIZE_BYTES_MAX);
    options.set_max_write_buffer_number(MEMTABLES_PER_KEY_SPACE_MAX);
    // The store is built without compression libraries: log entries are already compact
    // encoded records, and each library adds minutes to a cold build.
    options.set_compression_type(DBCompressionType::None);
    options.set_block_based_table_factory(&table_options);
    options
}
