//! [`Replica`]: one copy of a shared object, applying the object's records in log order.
//!
//! The replica is sans-IO: it reads no clock, opens no socket and spawns nothing. The client
//! feeds it the object's records as its region streams them and polls it for checkpoints to
//! upload; the simulator does the same with simulated regions. Every copy that is fed the same
//! log reaches the same state, byte for byte, and the same result for every call.
//!
//! # Contract
//! - Records MUST be handed in increasing position order, each once. [`Replica::handle_record`]
//!   panics on a position at or below the applied one: that would be a bug in the caller.
//! - A method that panics is a deterministic failure: the replica restores its last restore
//!   point (an encoded copy of the state it keeps in memory), replays the records applied since,
//!   and skips the failing call; every copy does the same, so all stay identical. The caller of
//!   that call gets [`MethodError::Panicked`].
//! - Records with method id [`SCHEMA_METHOD_ID`] declare the schema of an opener (see
//!   [`crate::schema`]); the replica accepts or refuses them the same way in every copy.
//! - A replica whose type lacks a method that the schema in force declares cannot apply the
//!   object's log any more: it stops ([`ReplicaStopped`]) rather than diverge.
//!
//! Memory per replica, apart from the object itself: the restore point (one encoded state) and
//! the records since it, at most [`ReplicaConfig::restore_point_every_records`] records and
//! [`ReplicaConfig::retained_argument_bytes_max`] bytes of arguments; and the outcomes of the
//! object's last calls (at most [`RECENT_OUTCOMES_MAX`] of them and
//! [`RECENT_OUTCOME_BYTES_MAX`] bytes), which checkpoints carry so that a copy restored from a
//! checkpoint past a call its client waits on can still answer it.

mod recent;
mod shared;

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::codec::{Codec, Postcard};
use crate::object::{MethodError, SCHEMA_METHOD_ID, SharedObject};
use crate::schema::ObjectSchema;

pub use recent::{RECENT_OUTCOME_BYTES_MAX, RECENT_OUTCOMES_MAX};
pub use shared::SharedReplica;

use recent::RecentOutcomes;

/// The most records between two restore points a configuration may ask for.
pub const RESTORE_POINT_EVERY_RECORDS_MAX: u64 = 1_000_000;
/// The most argument bytes a configuration may let a replica keep since its restore point.
pub const RETAINED_ARGUMENT_BYTES_MAX: usize = 256 * 1024 * 1024;
/// The fewest argument bytes between checkpoints a configuration may ask for (besides 0, no
/// byte trigger): each checkpoint encodes and uploads the whole state, and a smaller interval
/// would do so every few records of even modest arguments (`checkpoint_every_records` is the
/// setting for checkpointing every few records).
pub const CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN: u64 = 64 * 1024;
/// The most argument bytes between checkpoints a configuration may ask for: the region's
/// default log quota (1 GiB). Past it, one object's records alone could fill a region with the
/// default quota before their checkpoint.
pub const CHECKPOINT_EVERY_ARGUMENT_BYTES_MAX: u64 = 1024 * 1024 * 1024;

/// How a replica checkpoints and how much it keeps to recover from a panicking method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// A checkpoint to upload is made after every this many records of the object (counted from
    /// the start of the object's log, so every copy checkpoints at the same positions and their
    /// hashes can be compared); 0: no record trigger.
    pub checkpoint_every_records: u64,
    /// A checkpoint to upload is also made after the record with which the object's encoded
    /// arguments, summed from the start of the object's log, reach or pass a multiple of this
    /// many bytes; 0: no byte trigger. It bounds the log an object holds above its checkpoint
    /// when its arguments are large, where `checkpoint_every_records` alone would let it grow
    /// to that many records of them. The sum is a function of the object's log and checkpoints
    /// carry it, so every copy, also one started from another's checkpoint, checkpoints at the
    /// same records. Either trigger makes a checkpoint; with both 0 the copy makes none.
    pub checkpoint_every_argument_bytes: u64,
    /// A restore point is taken after every this many records, from 1.
    pub restore_point_every_records: u64,
    /// A restore point is taken early once the records since the last one hold this many
    /// bytes of arguments.
    pub retained_argument_bytes_max: usize,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        ReplicaConfig {
            checkpoint_every_records: 10_000,
            // 4 MiB: a 256th of the region's default log quota (1 GiB), so hundreds of objects
            // written at once, each up to one interval (plus one record) above its newest
            // checkpoint, still fit below the quota; with 10,000 records of 16 KiB arguments
            // (156 MiB) a handful of objects would fill it before their first checkpoint.
            // 10,000 records of up to about 420 bytes of arguments stay under 4 MiB, so for
            // small calls the record trigger still comes first and nothing changes. A copy
            // encodes and uploads its state at most once more per 4 MiB of arguments it
            // applies, little beside those records for states below a few MiB.
            checkpoint_every_argument_bytes: 4 * 1024 * 1024,
            restore_point_every_records: 1_024,
            retained_argument_bytes_max: 4 * 1024 * 1024,
        }
    }
}

impl ReplicaConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        let bytes = self.checkpoint_every_argument_bytes;
        if bytes != 0
            && !(CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN..=CHECKPOINT_EVERY_ARGUMENT_BYTES_MAX)
                .contains(&bytes)
        {
            return Err(format!(
                "checkpoint_every_argument_bytes {bytes} is neither 0 (no byte trigger) nor \
                 within {CHECKPOINT_EVERY_ARGUMENT_BYTES_MIN}..={CHECKPOINT_EVERY_ARGUMENT_BYTES_MAX}"
            ));
        }
        if !(1..=RESTORE_POINT_EVERY_RECORDS_MAX).contains(&self.restore_point_every_records) {
            return Err(format!(
                "restore_point_every_records {} is outside 1..={RESTORE_POINT_EVERY_RECORDS_MAX}",
                self.restore_point_every_records
            ));
        }
        if !(1..=RETAINED_ARGUMENT_BYTES_MAX).contains(&self.retained_argument_bytes_max) {
            return Err(format!(
                "retained_argument_bytes_max {} is outside 1..={RETAINED_ARGUMENT_BYTES_MAX}",
                self.retained_argument_bytes_max
            ));
        }
        Ok(())
    }
}

/// One record of the object, as the replica needs it.
#[derive(Clone, Copy, Debug)]
pub struct RecordRef<'a> {
    /// The calling client.
    pub client_id: u64,
    /// The caller's sequence number for the call.
    pub request_sequence: u64,
    /// The method called, or [`SCHEMA_METHOD_ID`].
    pub method_id: u32,
    /// The encoded arguments.
    pub arguments: &'a [u8],
}

/// The outcome of one applied record: the caller (client id and sequence) gets `outcome`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// The log position of the record.
    pub position: u64,
    /// The calling client.
    pub client_id: u64,
    /// The caller's sequence number.
    pub request_sequence: u64,
    /// The method's encoded result, or why the call was skipped in every copy.
    pub outcome: Result<Vec<u8>, MethodError>,
}

/// A checkpoint to offer to the region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The position the state reflects.
    pub position: u64,
    /// The encoded envelope: records applied, schema in force, object state, the outcomes of
    /// the last calls, argument bytes applied.
    pub state: Vec<u8>,
    /// SHA-256 of `state`.
    pub state_hash: [u8; 32],
}

/// The replica cannot go on applying the object's log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("replica of {object} stopped at position {position}: {reason}")]
pub struct ReplicaStopped {
    /// The object.
    pub object: String,
    /// The last position applied.
    pub position: u64,
    /// Why.
    pub reason: String,
}

/// What a checkpoint's state bytes hold. Encoded with postcard, whose output is deterministic,
/// so equal replicas give equal bytes and equal hashes.
///
/// Postcard is not self-describing: the form is told apart by its fields. This form is the
/// previous one ([`PreviousEnvelope`]) with `argument_bytes_applied` appended, so bytes of the
/// previous form always end before that field and never decode as this form, and bytes of this
/// form leave that field over as trailing bytes in the previous form: [`decode_envelope`] tries
/// this form and then the previous one, and cannot mistake one for the other. A later change
/// must keep the forms apart the same way (or add a tag they cannot be confused with).
#[derive(Serialize, Deserialize)]
struct Envelope {
    records_applied: u64,
    schema: Option<ObjectSchema>,
    state: Vec<u8>,
    /// The outcomes of the object's last calls, for copies that jump over them.
    recent: RecentOutcomes,
    /// The encoded argument bytes of the object's records since the start of its log (or since
    /// the previous-form checkpoint its copies started from), which the byte trigger counts.
    argument_bytes_applied: u64,
}

/// The envelope checkpoints had before they carried `argument_bytes_applied`. A copy started
/// from one counts argument bytes from that checkpoint on: the bytes before it are no longer in
/// the log. Copies that all start from it still count alike; the only ones that would not are
/// copies of the previous release and of this one applying the same object at once, whose
/// envelopes differ anyway.
#[derive(Serialize, Deserialize)]
struct PreviousEnvelope {
    records_applied: u64,
    schema: Option<ObjectSchema>,
    state: Vec<u8>,
    recent: RecentOutcomes,
}

/// Decodes a checkpoint's envelope, of this form or of the previous one (see [`Envelope`]). The
/// error is that of this form when neither decodes.
fn decode_envelope(bytes: &[u8]) -> Result<Envelope, crate::codec::CodecError> {
    match Postcard::decode::<Envelope>(bytes) {
        Ok(envelope) => Ok(envelope),
        Err(error) => match Postcard::decode::<PreviousEnvelope>(bytes) {
            Ok(previous) => Ok(Envelope {
                records_applied: previous.records_applied,
                schema: previous.schema,
                state: previous.state,
                recent: previous.recent,
                argument_bytes_applied: 0,
            }),
            Err(_) => Err(error),
        },
    }
}

/// The state at a position, kept to undo a panicking call. The schema in force is not part of
/// it: schema records are never undone.
struct RestorePoint {
    position: u64,
    records_applied: u64,
    argument_bytes_applied: u64,
    state: Vec<u8>,
}

/// A record applied (or skipped) since the restore point, kept to replay it.
struct RetainedRecord {
    method_id: u32,
    arguments: Vec<u8>,
    skipped: bool,
}

/// One copy of a shared object of type `T`. See the module documentation.
pub struct Replica<T: SharedObject> {
    object_id: String,
    config: ReplicaConfig,
    object: T,
    position: u64,
    records_applied: u64,
    /// The encoded argument bytes of the object's records so far (see [`Envelope`]).
    argument_bytes_applied: u64,
    schema: Option<ObjectSchema>,
    restore_point: RestorePoint,
    since_restore_point: Vec<RetainedRecord>,
    since_restore_point_bytes: usize,
    checkpoint_due: Option<Checkpoint>,
    /// Records applied since the last checkpoint this copy made or started from.
    records_since_checkpoint: u64,
    stopped: Option<ReplicaStopped>,
    recent: RecentOutcomes,
}

impl<T: SharedObject> Replica<T> {
    /// A new copy of `object_id` in its default state, before position 1.
    ///
    /// # Panics
    /// If `config` is out of bounds ([`ReplicaConfig::validate`]).
    pub fn new(object_id: impl Into<String>, config: ReplicaConfig) -> Self {
        if let Err(reason) = config.validate() {
            panic!("invalid replica configuration: {reason}");
        }
        let object = T::default();
        let state = encode_state(&object);
        Replica {
            object_id: object_id.into(),
            config,
            object,
            position: 0,
            records_applied: 0,
            argument_bytes_applied: 0,
            schema: None,
            restore_point: RestorePoint {
                position: 0,
                records_applied: 0,
                argument_bytes_applied: 0,
                state,
            },
            since_restore_point: Vec::new(),
            since_restore_point_bytes: 0,
            checkpoint_due: None,
            records_since_checkpoint: 0,
            stopped: None,
            recent: RecentOutcomes::default(),
        }
    }

    /// A copy of `object_id` from a checkpoint the region kept: checks the hash, decodes the
    /// envelope and the state, and checks that `T` can apply the log from there (it must have
    /// every method of the schema in force). The error says what is wrong.
    pub fn from_checkpoint(
        object_id: impl Into<String>,
        config: ReplicaConfig,
        position: u64,
        state: &[u8],
        state_hash: &[u8],
    ) -> Result<Self, String> {
        let object_id = object_id.into();
        let digest = Sha256::digest(state);
        if digest.as_slice() != state_hash {
            return Err(format!(
                "checkpoint of {object_id} at position {position}: the state does not match its hash"
            ));
        }
        let mut envelope = decode_envelope(state).map_err(|error| {
            format!("checkpoint of {object_id} at position {position}: {error}")
        })?;
        envelope.recent.recount();
        envelope
            .recent
            .validate(envelope.records_applied)
            .map_err(|error| {
                format!("checkpoint of {object_id} at position {position}: {error}")
            })?;
        if let Some(in_force) = &envelope.schema {
            T::schema().check_compatible(in_force)?;
        }
        let object = T::decode_state(&envelope.state).map_err(|error| {
            format!("checkpoint of {object_id} at position {position}: state: {error}")
        })?;
        let mut replica = Replica::new(object_id, config);
        replica.object = object;
        replica.position = position;
        replica.records_applied = envelope.records_applied;
        replica.argument_bytes_applied = envelope.argument_bytes_applied;
        replica.schema = envelope.schema.clone();
        replica.recent = envelope.recent;
        replica.restore_point = RestorePoint {
            position,
            records_applied: envelope.records_applied,
            argument_bytes_applied: envelope.argument_bytes_applied,
            state: envelope.state,
        };
        Ok(replica)
    }

    /// The object's name.
    pub fn object_id(&self) -> &str {
        &self.object_id
    }

    /// How the copy checkpoints and keeps restore points.
    pub fn config(&self) -> ReplicaConfig {
        self.config
    }

    /// The local copy.
    pub fn object(&self) -> &T {
        &self.object
    }

    /// The log position applied through.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many records of the object the copy has handled since the object's log began.
    pub fn records_applied(&self) -> u64 {
        self.records_applied
    }

    /// The encoded argument bytes of the object's records the copy has handled since the
    /// object's log began (or since the previous-form checkpoint it started from), which
    /// [`ReplicaConfig::checkpoint_every_argument_bytes`] counts.
    pub fn argument_bytes_applied(&self) -> u64 {
        self.argument_bytes_applied
    }

    /// The schema in force in the object's log, once a schema record was applied.
    pub fn schema_in_force(&self) -> Option<&ObjectSchema> {
        self.schema.as_ref()
    }

    /// Why the replica stopped, if it did.
    pub fn stopped(&self) -> Option<&ReplicaStopped> {
        self.stopped.as_ref()
    }

    /// The SHA-256 of the copy's checkpoint envelope now: equal for copies at equal positions.
    pub fn state_hash(&self) -> [u8; 32] {
        self.make_checkpoint().state_hash
    }

    /// Applies the object's record at `position`. Returns what the caller of the call gets.
    ///
    /// # Panics
    /// If `position` is not above the applied position (a caller bug).
    pub fn handle_record(
        &mut self,
        position: u64,
        record: RecordRef<'_>,
    ) -> Result<Applied, ReplicaStopped> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        assert!(
            position > self.position,
            "record of {} at position {position} handed after position {}",
            self.object_id,
            self.position
        );
        self.position = position;
        let outcome = if record.method_id == SCHEMA_METHOD_ID {
            self.apply_schema(record.arguments)
        } else {
            self.apply_call(record.method_id, record.arguments)
        };
        let skipped = outcome.is_err();
        self.recent.record(
            record.client_id,
            record.request_sequence,
            record.method_id,
            &outcome,
        );
        self.records_applied += 1;
        let bytes_before = self.argument_bytes_applied;
        self.argument_bytes_applied = bytes_before.saturating_add(record.arguments.len() as u64);
        self.retain(record.method_id, record.arguments, skipped);
        if let Some(stopped) = &self.stopped {
            return Err(stopped.clone());
        }
        self.after_record(bytes_before);
        Ok(Applied {
            position,
            client_id: record.client_id,
            request_sequence: record.request_sequence,
            outcome,
        })
    }

    /// What the call `request_sequence` of session `client_id` returned, if the copy still
    /// keeps it (the outcomes of the object's last [`RECENT_OUTCOMES_MAX`] records, at most
    /// [`RECENT_OUTCOME_BYTES_MAX`] bytes of them), also when the copy was restored from a
    /// checkpoint made after the call's record.
    pub fn recent_outcome(
        &self,
        client_id: u64,
        request_sequence: u64,
    ) -> Option<Result<Vec<u8>, MethodError>> {
        self.recent.find::<T>(client_id, request_sequence)
    }

    /// Notes that the log holds nothing for this object through `through_position`.
    pub fn handle_gap(&mut self, through_position: u64) {
        if through_position > self.position {
            self.position = through_position;
        }
    }

    /// Records applied since the last checkpoint this copy made or started from.
    pub fn records_since_checkpoint(&self) -> u64 {
        self.records_since_checkpoint
    }

    /// Makes a checkpoint now, when records were applied since the last one: for an object
    /// whose writes stopped, whose records would otherwise hold the region's log until
    /// `checkpoint_every_records` more came (or their arguments reached
    /// `checkpoint_every_argument_bytes`). Never for a copy configured without checkpoints
    /// (both 0). It moves neither trigger: the next regular checkpoint falls on the same record
    /// as in a copy that made none now. Returns whether one was made.
    pub fn checkpoint_now(&mut self) -> bool {
        // A copy configured without checkpoints makes none now either.
        if (self.config.checkpoint_every_records == 0
            && self.config.checkpoint_every_argument_bytes == 0)
            || self.records_since_checkpoint == 0
            || self.stopped.is_some()
        {
            return false;
        }
        self.checkpoint_due = Some(self.make_checkpoint());
        self.records_since_checkpoint = 0;
        true
    }

    /// The checkpoint made since the last poll, if one is due.
    pub fn poll_checkpoint(&mut self) -> Option<Checkpoint> {
        self.checkpoint_due.take()
    }

    fn apply_schema(&mut self, arguments: &[u8]) -> Result<Vec<u8>, MethodError> {
        let declared = ObjectSchema::decode(arguments)
            .map_err(|error| MethodError::IncompatibleSchema(error.to_string()))?;
        let merged = match &self.schema {
            None => declared,
            Some(in_force) => {
                declared
                    .check_compatible(in_force)
                    .map_err(MethodError::IncompatibleSchema)?;
                declared.merged_over(in_force)
            }
        };
        if let Err(reason) = T::schema().check_compatible(&merged) {
            // Another opener's newer type added a method this build lacks: its records would
            // fail here and apply elsewhere, so this copy must stop instead of diverging.
            self.stopped = Some(ReplicaStopped {
                object: self.object_id.clone(),
                position: self.position,
                reason: format!("this build cannot apply the object's log: {reason}"),
            });
        }
        self.schema = Some(merged);
        Ok(Vec::new())
    }

    fn apply_call(&mut self, method_id: u32, arguments: &[u8]) -> Result<Vec<u8>, MethodError> {
        let object = &mut self.object;
        match catch_unwind(AssertUnwindSafe(|| object.apply(method_id, arguments))) {
            Ok(outcome) => outcome,
            Err(payload) => {
                let message = panic_message(payload.as_ref());
                self.restore_and_replay();
                let method = T::schema()
                    .method(method_id)
                    .map_or("(a method missing from the schema)", |method| {
                        method.name.as_str()
                    });
                Err(MethodError::Panicked {
                    type_name: type_name_of::<T>(),
                    method,
                    message,
                })
            }
        }
    }

    /// Puts the state back to just before the current record: the restore point, then every
    /// record since that was not skipped.
    fn restore_and_replay(&mut self) {
        let restored = match T::decode_state(&self.restore_point.state) {
            Ok(object) => object,
            Err(error) => {
                self.stop(format!("the restore point does not decode: {error}"));
                return;
            }
        };
        self.object = restored;
        for record in &self.since_restore_point {
            if record.skipped || record.method_id == SCHEMA_METHOD_ID {
                continue;
            }
            let object = &mut self.object;
            let replayed = catch_unwind(AssertUnwindSafe(|| {
                object.apply(record.method_id, &record.arguments)
            }));
            if !matches!(replayed, Ok(Ok(_))) {
                // It applied before and fails now: the method is not deterministic.
                self.stopped = Some(ReplicaStopped {
                    object: self.object_id.clone(),
                    position: self.position,
                    reason: format!(
                        "method {} failed on replay after succeeding: it is not deterministic",
                        record.method_id
                    ),
                });
                return;
            }
        }
    }

    fn stop(&mut self, reason: String) {
        self.stopped = Some(ReplicaStopped {
            object: self.object_id.clone(),
            position: self.position,
            reason,
        });
    }

    fn retain(&mut self, method_id: u32, arguments: &[u8], skipped: bool) {
        self.since_restore_point_bytes += arguments.len();
        self.since_restore_point.push(RetainedRecord {
            method_id,
            arguments: arguments.to_vec(),
            skipped,
        });
    }

    /// After a record whose arguments took the byte count from `bytes_before` to
    /// `argument_bytes_applied`: both triggers are functions of the object's log alone (its
    /// record count, and its argument bytes summed from its start), so every copy checkpoints
    /// after the same records whatever checkpoint it started from and whatever it made now.
    fn after_record(&mut self, bytes_before: u64) {
        self.records_since_checkpoint += 1;
        let every = self.config.checkpoint_every_records;
        let every_bytes = self.config.checkpoint_every_argument_bytes;
        let records_due = every > 0 && self.records_applied.is_multiple_of(every);
        // The sum reached or passed a multiple of the interval with this record.
        let bytes_due = every_bytes > 0
            && bytes_before / every_bytes < self.argument_bytes_applied / every_bytes;
        if records_due || bytes_due {
            self.checkpoint_due = Some(self.make_checkpoint());
            self.records_since_checkpoint = 0;
        }
        if self.since_restore_point.len() as u64 >= self.config.restore_point_every_records
            || self.since_restore_point_bytes >= self.config.retained_argument_bytes_max
        {
            self.take_restore_point();
        }
    }

    fn take_restore_point(&mut self) {
        self.restore_point = RestorePoint {
            position: self.position,
            records_applied: self.records_applied,
            argument_bytes_applied: self.argument_bytes_applied,
            state: encode_state(&self.object),
        };
        self.since_restore_point.clear();
        self.since_restore_point_bytes = 0;
    }

    fn make_checkpoint(&self) -> Checkpoint {
        let envelope = Envelope {
            records_applied: self.records_applied,
            schema: self.schema.clone(),
            state: encode_state(&self.object),
            recent: self.recent.clone(),
            argument_bytes_applied: self.argument_bytes_applied,
        };
        let state = Postcard::encode(&envelope).expect("an envelope of bytes always encodes");
        let state_hash: [u8; 32] = Sha256::digest(&state).into();
        Checkpoint {
            position: self.position,
            state,
            state_hash,
        }
    }
}

impl<T: SharedObject> Replica<T> {
    /// The position of the restore point (for tests and status).
    pub fn restore_point_position(&self) -> u64 {
        self.restore_point.position
    }

    /// The records counted at the restore point (for tests and status).
    pub fn restore_point_records_applied(&self) -> u64 {
        self.restore_point.records_applied
    }

    /// The argument bytes counted at the restore point (for tests and status).
    pub fn restore_point_argument_bytes_applied(&self) -> u64 {
        self.restore_point.argument_bytes_applied
    }
}

/// Encodes the state of a shared object. A state that does not encode is a defect of the
/// type (a serde implementation that fails), found at the first checkpoint of any copy.
fn encode_state<T: SharedObject>(object: &T) -> Vec<u8> {
    match object.encode_state() {
        Ok(state) => state,
        Err(error) => panic!(
            "the state of a {} does not encode: {error}",
            type_name_of::<T>()
        ),
    }
}

fn type_name_of<T: SharedObject>() -> &'static str {
    // `schema()` is a `&'static ObjectSchema`, so its texts live as long as the program.
    T::schema().type_name.as_str()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

#[cfg(test)]
mod tests;
