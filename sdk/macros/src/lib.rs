//! Code generation for DSSS shared objects (`#[dsss::shared_object]`, `#[dsss::methods]`).
//!
//! The macros land with the SDK; today this crate exports nothing.
#![deny(missing_docs)]
