//! The regional tier of DSSS (DESIGN.md section 2): one raft group per region that orders,
//! stores and serves the region's operation records.
//!
//! The sans-IO node logic, its RocksDB storage and its gRPC services land here; today the
//! crate holds nothing yet, and no command uses it.
#![deny(missing_docs)]
