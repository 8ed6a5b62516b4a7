//! Errors of the client.

use crate::codec::CodecError;
use crate::object::MethodError;
use crate::region_client::ClientError;

/// Why a call, an open or a sync failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The method failed in every copy alike (it panicked, or its arguments did not decode);
    /// the call took no effect.
    #[error("{0}")]
    Method(#[from] MethodError),
    /// The arguments or the result could not be encoded or decoded on this side.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// The region could not be reached or refused the request.
    #[error("region: {0}")]
    Region(#[from] ClientError),
    /// The object cannot be opened with this type's schema.
    #[error("cannot open {object}: {reason}")]
    Schema {
        /// The object's name.
        object: String,
        /// What is incompatible.
        reason: String,
    },
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The object's replica stopped (its log could not be followed any more).
    #[error("the replica of {object} stopped: {reason}")]
    Stopped {
        /// The object's name.
        object: String,
        /// Why it stopped.
        reason: String,
    },
}
