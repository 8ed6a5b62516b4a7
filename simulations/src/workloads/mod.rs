//! Workloads: sans-IO processes and the harness that runs them on a topology with faults.

mod common;
pub mod global;
pub mod month;
pub mod order_check;
pub mod probe;
pub mod region;
pub mod sdk;
pub mod session;
