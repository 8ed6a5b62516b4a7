//! The global tier of DSSS (DESIGN.md section 2): a raft group spread over regions that seals
//! HLC-ordered epochs of cross-region records and tracks which regions are members.
//!
//! The sans-IO epoch sealing and its driver land here; today the crate holds nothing yet, and
//! no command uses it.
#![deny(missing_docs)]
