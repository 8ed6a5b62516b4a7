//! Monitoring of `dsss node`: the HTTP endpoint for Prometheus and probes ([`endpoint`]), the
//! text format it writes ([`exposition`]), what it shows ([`node_pages`]), and the standard gRPC
//! health service on the node's own port, kept in step with the same readiness ([`health`]).

pub mod endpoint;
pub mod exposition;
pub mod health;
pub mod node_pages;
