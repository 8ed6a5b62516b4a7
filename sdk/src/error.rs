//! [`CallError`]: why an open, a call or a `sync()` failed.

use crate::codec::CodecError;
use crate::object::MethodError;

/// Why a call, an open or a sync failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The method failed in every copy alike (it panicked, or its arguments did not decode);
    /// the call took no effect.
    #[error("{0}")]
    Method(#[from] MethodError),
    /// The arguments or the result could not be encoded or decoded on this side.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// A member refused the request itself (malformed, or out of its bounds): retrying cannot
    /// help.
    #[error("node {node_id} refused the request: {reason}")]
    Refused {
        /// The member.
        node_id: u64,
        /// What it said.
        reason: String,
    },
    /// No member answered within the time bound. A call that gave up may or may not be
    /// applied.
    #[error("gave up after {attempts} attempts over {elapsed_ms} ms; last error: {last_error}")]
    GaveUp {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed_ms: u64,
        /// The last failure seen.
        last_error: String,
    },
    /// The client's session in the region ended (it went unheard for longer than the region's
    /// idle timeout) while this call was still being retried: the call may or may not have
    /// been applied, and the region can no longer tell. New calls go through a new session.
    #[error(
        "client session {session_id} ended in the region while this call was retried; it may \
         or may not have been applied"
    )]
    SessionEnded {
        /// The session that ended.
        session_id: u64,
    },
    /// The call was committed at `position` and took effect in every copy (unless the method
    /// failed in every copy alike), but its return value is gone: this client's copy fell
    /// behind the region's truncation point and moved to a checkpoint made after the call, and
    /// more than [`crate::replica::RECENT_OUTCOMES_MAX`] records of the object (or
    /// [`crate::replica::RECENT_OUTCOME_BYTES_MAX`] bytes of their results) followed it, so the
    /// checkpoint no longer carries its outcome. Do not retry it: that would apply it again.
    #[error(
        "the call was applied at position {position} of {object}, but its result is no longer \
         known: this copy moved to a checkpoint made after more of the object's calls than it \
         keeps results of"
    )]
    ResultLost {
        /// The object's name.
        object: String,
        /// Where the call's record is in the region log.
        position: u64,
    },
    /// The region released records of the object through `position` without a checkpoint
    /// covering them (its retention rule for records that no instance follows: past a share of
    /// its log quota, or a log age), and keeps no checkpoint at or above that position. The
    /// object's state cannot be rebuilt from this region: an instance that still holds a copy
    /// which applied those records can upload a checkpoint that makes it open again.
    #[error(
        "cannot open {object}: the region released its records through position {position} \
         without a checkpoint covering them (no instance followed it to checkpoint it before \
         the region's retention passed them), so its state cannot be rebuilt here"
    )]
    Released {
        /// The object's name.
        object: String,
        /// The position through which its records were released.
        position: u64,
    },
    /// The region acknowledged the call at `position` (it takes effect in every copy, unless
    /// the method fails in every copy alike), but this client's copy did not apply it within
    /// the call timeout: no member delivered the log to it meanwhile. The copy applies it
    /// when the log reaches it again; only its return value is not known here. Do not retry
    /// it: that would apply it twice.
    #[error(
        "the call was committed at position {position} of {object}, but this copy did not          apply it within {waited_ms} ms (no member delivered the log meanwhile); it takes          effect, and its result is not known here"
    )]
    NotApplied {
        /// The object's name.
        object: String,
        /// Where the call's record is in the region log.
        position: u64,
        /// How long the call waited in all.
        waited_ms: u64,
    },
    /// The client already waits on as many calls as its bounds allow.
    #[error("overloaded: {0}")]
    Overloaded(String),
    /// The object cannot be opened with this type's schema.
    #[error("cannot open {object}: {reason}")]
    Schema {
        /// The object's name.
        object: String,
        /// What is incompatible.
        reason: String,
    },
    /// The configuration, or a request of the application, is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// The object's replica stopped (its log could not be followed any more), or the object
    /// or client was closed.
    #[error("the replica of {object} stopped: {reason}")]
    Stopped {
        /// The object's name.
        object: String,
        /// Why it stopped.
        reason: String,
    },
}
