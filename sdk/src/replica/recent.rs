//! [`RecentOutcomes`]: what the object's most recent calls returned, carried in checkpoints.
//!
//! A copy that lags behind the region's truncation point moves to a newer checkpoint and never
//! applies the records in between itself. One of them may be a call its own client still waits
//! on: the call was committed and took effect in every copy, but its return value came out of
//! records this copy skipped. So every copy keeps the outcomes of the object's last records,
//! and a checkpoint carries them: the copy that jumps finds the waiting call's outcome there.
//!
//! The table is a pure function of the object's log (the outcomes of its last records, oldest
//! dropped first by count and by bytes), so copies at one position hold equal tables and their
//! checkpoints keep equal hashes.

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
    position: u64,
    client_id: u64,
    request_sequence: u64,
    method_id: u32,
    outcome: StoredOutcome,
}

/// What a record's call returned, found in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedOutcome {
    /// The calling client (its session id).
    pub client_id: u64,
    /// The caller's sequence number.
    pub request_sequence: u64,
    /// What the call returned, or why it was skipped in every copy.
    pub outcome: Result<Vec<u8>, MethodError>,
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
    /// Keeps the outcome of the record at `position`, dropping the oldest beyond the bounds.
    pub(super) fn record(
        &mut self,
        position: u64,
        client_id: u64,
        request_sequence: u64,
        method_id: u32,
        outcome: &Result<Vec<u8>, MethodError>,
    ) {
        debug_assert!(
            self.entries
                .back()
                .is_none_or(|last| last.position < position),
            "outcomes are kept in position order"
        );
        let outcome = StoredOutcome::of(outcome);
        if outcome.bytes() > RECENT_OUTCOME_BYTES_MAX {
            // Too large to carry; every copy skips it alike.
            return;
        }
        self.bytes += outcome.bytes();
        self.entries.push_back(RecentOutcome {
            position,
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

    /// The outcome of the record at `position`, if it is still kept.
    pub(super) fn find<T: SharedObject>(&self, position: u64) -> Option<RecordedOutcome> {
        let index = self
            .entries
            .binary_search_by_key(&position, |entry| entry.position)
            .ok()?;
        let entry = &self.entries[index];
        Some(RecordedOutcome {
            client_id: entry.client_id,
            request_sequence: entry.request_sequence,
            outcome: entry.outcome.to_outcome::<T>(entry.method_id),
        })
    }

    /// Counts the bytes again after decoding.
    pub(super) fn recount(&mut self) {
        self.bytes = self.entries.iter().map(|entry| entry.outcome.bytes()).sum();
    }

    /// Checks what a checkpoint carried: positions increasing, within the bounds, none above
    /// the checkpoint's own position.
    pub(super) fn validate(&self, checkpoint_position: u64) -> Result<(), String> {
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
        let mut previous = 0;
        for entry in &self.entries {
            if entry.position <= previous || entry.position > checkpoint_position {
                return Err(format!(
                    "a recent outcome at position {} is out of order or beyond the checkpoint",
                    entry.position
                ));
            }
            previous = entry.position;
        }
        Ok(())
    }
}
