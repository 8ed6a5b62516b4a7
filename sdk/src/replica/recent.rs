//! [`RecentOutcomes`]: what the object's most recent calls returned, carried in checkpoints.
//!
//! A copy that lags behind the region's truncation point moves to a newer checkpoint and never
//! applies the records in between itself. One of them may be a call its own client still waits
//! on: the call was committed and took effect in every copy, but its return value came out of
//! records this copy skipped. So every copy keeps the outcomes of the object's last records,
//! and a checkpoint carries them: the copy that jumps finds the waiting call's outcome there.
//!
//! The table is a pure function of the object's records in order (the outcomes of its last
//! records, oldest dropped first by count and by bytes), so copies at one position hold equal
//! tables and their checkpoints keep equal hashes. It names each outcome by its caller (session
//! id and request sequence, unique while the session lives), not by log position, so that it
//! depends on the object's records alone and not on where other objects' records fell.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::codec::CodecError;
use crate::object::{MethodError, SharedObject};

/// The most outcomes a copy keeps: those of the object's last this many records.
pub const RECENT_OUTCOMES_MAX: usize = 1_024;

/// The most bytes of results and error messages the kept outcomes hold together; the oldest
/// go first beyond it, and an outcome larger than this alone is not kept.
pub const RECENT_OUTCOME_BYTES_MAX: usize = 1024 * 1024;

/// How one call ended, in a form every copy encodes alike.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum StoredOutcome {
    Returned(Vec<u8>),
    UnknownMethod,
    Arguments(String),
    Result(String),
    Panicked(String),
    IncompatibleSchema(String),
}

impl StoredOutcome {
    fn of(outcome: &Result<Vec<u8>, MethodError>) -> Self {
        match outcome {
            Ok(result) => StoredOutcome::Returned(result.clone()),
            Err(MethodError::UnknownMethod { .. }) => StoredOutcome::UnknownMethod,
            Err(MethodError::Arguments { source, .. }) => {
                StoredOutcome::Arguments(source.reason.clone())
            }
            Err(MethodError::Result { source, .. }) => StoredOutcome::Result(source.reason.clone()),
            Err(MethodError::Panicked { message, .. }) => StoredOutcome::Panicked(message.clone()),
            Err(MethodError::IncompatibleSchema(reason)) => {
                StoredOutcome::IncompatibleSchema(reason.clone())
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            StoredOutcome::Returned(bytes) => bytes.len(),
            StoredOutcome::UnknownMethod => 0,
            StoredOutcome::Arguments(text)
            | StoredOutcome::Result(text)
            | StoredOutcome::Panicked(text)
            | StoredOutcome::IncompatibleSchema(text) => text.len(),
        }
    }

    /// The outcome as the caller gets it; the names come from `T`'s schema, which the object's
    /// log was applied with.
    fn to_outcome<T: SharedObject>(&self, method_id: u32) -> Result<Vec<u8>, MethodError> {
        let schema = T::schema();
        let type_name = schema.type_name.as_str();
        let method = schema
            .method(method_id)
            .map_or("(a method missing from the schema)", |method| {
                method.name.as_str()
            });
        let codec = schema
            .method(method_id)
            .map_or("(unknown codec)", |method| method.codec.as_str());
        match self {
            StoredOutcome::Returned(result) => Ok(result.clone()),
            StoredOutcome::UnknownMethod => Err(MethodError::UnknownMethod {
                type_name,
                method_id,
            }),
            StoredOutcome::Arguments(reason) => Err(MethodError::Arguments {
                type_name,
                method,
                source: CodecError {
                    codec,
                    reason: reason.clone(),
                },
            }),
            StoredOutcome::Result(reason) => Err(MethodError::Result {
                type_name,
                method,
                source: CodecError {
                    codec,
                    reason: reason.clone(),
                },
            }),
            StoredOutcome::Panicked(message) => Err(MethodError::Panicked {
                type_name,
                method,
                message: message.clone(),
            }),
            StoredOutcome::IncompatibleSchema(reason) => {
                Err(MethodError::IncompatibleSchema(reason.clone()))
            }
        }
    }
}

/// The outcome of one record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RecentOutcome {
    client_id: u64,
    request_sequence: u64,
    method_id: u32,
    outcome: StoredOutcome,
}

/// The outcomes of the object's last records, oldest first. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RecentOutcomes {
    entries: VecDeque<RecentOutcome>,
    /// The bytes the entries hold; not encoded, counted again on decode.
    #[serde(skip)]
    bytes: usize,
}

impl RecentOutcomes {
    /// Keeps the outcome of the object's next record, dropping the oldest beyond the bounds.
    pub(super) fn record(
        &mut self,
        client_id: u64,
        request_sequence: u64,
        method_id: u32,
        outcome: &Result<Vec<u8>, MethodError>,
    ) {
        let outcome = StoredOutcome::of(outcome);
        if outcome.bytes() > RECENT_OUTCOME_BYTES_MAX {
            // Too large to carry; every copy skips it alike.
            return;
        }
        self.bytes += outcome.bytes();
        self.entries.push_back(RecentOutcome {
            client_id,
            request_sequence,
            method_id,
            outcome,
        });
        while self.entries.len() > RECENT_OUTCOMES_MAX || self.bytes > RECENT_OUTCOME_BYTES_MAX {
            if let Some(oldest) = self.entries.pop_front() {
                self.bytes -= oldest.outcome.bytes();
            }
        }
    }

    /// The outcome of the call `request_sequence` of session `client_id`, if it is still kept.
    pub(super) fn find<T: SharedObject>(
        &self,
        client_id: u64,
        request_sequence: u64,
    ) -> Option<Result<Vec<u8>, MethodError>> {
        // A session's sequences never repeat while it lives; the newest is the one asked for.
        self.entries
            .iter()
            .rev()
            .find(|entry| {
                entry.client_id == client_id && entry.request_sequence == request_sequence
            })
            .map(|entry| entry.outcome.to_outcome::<T>(entry.method_id))
    }

    /// Counts the bytes again after decoding.
    pub(super) fn recount(&mut self) {
        self.bytes = self.entries.iter().map(|entry| entry.outcome.bytes()).sum();
    }

    /// Checks what a checkpoint carried: within the bounds, and no more outcomes than the
    /// object has records.
    pub(super) fn validate(&self, records_applied: u64) -> Result<(), String> {
        if self.entries.len() > RECENT_OUTCOMES_MAX {
            return Err(format!(
                "it carries {} recent outcomes, more than {RECENT_OUTCOMES_MAX}",
                self.entries.len()
            ));
        }
        if self.bytes > RECENT_OUTCOME_BYTES_MAX {
            return Err(format!(
                "its recent outcomes hold {} bytes, more than {RECENT_OUTCOME_BYTES_MAX}",
                self.bytes
            ));
        }
        if self.entries.len() as u64 > records_applied {
            return Err(format!(
                "it carries {} recent outcomes for an object of {records_applied} records",
                self.entries.len()
            ));
        }
        Ok(())
    }
}
