//! [`ObjectCopy`]: what the session needs of one object's local copy, whatever the object's
//! type, so that one session can feed copies of many types from one log stream.

use crate::object::MethodError;
use crate::object::SharedObject;
use crate::replica::{
    Applied, Checkpoint, RecordRef, Replica, ReplicaConfig, ReplicaStopped, SharedReplica,
};

use super::messages::FetchedCheckpoint;

/// One object's local copy, behind its own lock (readers may be on other threads).
pub trait ObjectCopy: Send + Sync {
    /// The position the copy has applied through.
    fn position(&self) -> u64;
    /// Applies the object's record at `position`; `position` MUST be above [`Self::position`].
    fn handle_record(
        &self,
        position: u64,
        record: RecordRef<'_>,
    ) -> Result<Applied, ReplicaStopped>;
    /// Notes that the log holds nothing for this object through `through_position`.
    fn handle_gap(&self, through_position: u64);
    /// What the call `request_sequence` of session `client_id` returned, if the copy still
    /// keeps it ([`Replica::recent_outcome`]).
    fn recent_outcome(
        &self,
        client_id: u64,
        request_sequence: u64,
    ) -> Option<Result<Vec<u8>, MethodError>>;
    /// A checkpoint due for upload, if one is.
    fn poll_checkpoint(&self) -> Option<Checkpoint>;
    /// Makes a checkpoint now if records were applied since the last one
    /// ([`Replica::checkpoint_now`]); whether one was made.
    fn checkpoint_now(&self) -> bool;
    /// Records applied since the last checkpoint.
    fn records_since_checkpoint(&self) -> u64;
    /// Replaces the copy by one built from `checkpoint`, or by the default state at
    /// `truncated_through_position` when the region keeps no checkpoint (the object has no
    /// record at or below it), or at the checkpoint's position when its state is empty (no
    /// encoding of a state is). The error says what is wrong with the checkpoint.
    fn restore(
        &self,
        checkpoint: Option<&FetchedCheckpoint>,
        truncated_through_position: u64,
    ) -> Result<(), String>;
    /// The encoded schema of the copy's type, declared in the object's log at open.
    fn encoded_schema(&self) -> Vec<u8>;
    /// Why the copy stopped, if it did.
    fn stopped(&self) -> Option<ReplicaStopped>;
}

/// A copy of a `T` with `config`, before position 1 until restored.
pub fn new_copy<T: SharedObject>(name: &str, config: ReplicaConfig) -> SharedReplica<T> {
    SharedReplica::new(Replica::new(name, config))
}

impl<T: SharedObject> ObjectCopy for SharedReplica<T> {
    fn position(&self) -> u64 {
        self.lock_read().position()
    }

    fn handle_record(
        &self,
        position: u64,
        record: RecordRef<'_>,
    ) -> Result<Applied, ReplicaStopped> {
        self.lock_write().handle_record(position, record)
    }

    fn handle_gap(&self, through_position: u64) {
        self.lock_write().handle_gap(through_position);
    }

    fn recent_outcome(
        &self,
        client_id: u64,
        request_sequence: u64,
    ) -> Option<Result<Vec<u8>, MethodError>> {
        self.lock_read().recent_outcome(client_id, request_sequence)
    }

    fn poll_checkpoint(&self) -> Option<Checkpoint> {
        self.lock_write().poll_checkpoint()
    }

    fn checkpoint_now(&self) -> bool {
        self.lock_write().checkpoint_now()
    }

    fn records_since_checkpoint(&self) -> u64 {
        self.lock_read().records_since_checkpoint()
    }

    fn restore(
        &self,
        checkpoint: Option<&FetchedCheckpoint>,
        truncated_through_position: u64,
    ) -> Result<(), String> {
        let mut replica = self.lock_write();
        let name = replica.object_id().to_owned();
        let config = replica.config();
        let restored = match checkpoint {
            // A global object that never had a record, adopted by the region from another one
            // that kept no checkpoint of it: the default state at that position.
            Some(checkpoint) if checkpoint.state.is_empty() => {
                let mut fresh = Replica::new(name, config);
                fresh.handle_gap(checkpoint.position);
                fresh
            }
            Some(checkpoint) => Replica::from_checkpoint(
                name,
                config,
                checkpoint.position,
                &checkpoint.state,
                &checkpoint.state_hash,
            )?,
            None => {
                let mut fresh = Replica::new(name, config);
                fresh.handle_gap(truncated_through_position);
                fresh
            }
        };
        *replica = restored;
        Ok(())
    }

    fn encoded_schema(&self) -> Vec<u8> {
        T::schema().encode()
    }

    fn stopped(&self) -> Option<ReplicaStopped> {
        self.lock_read().stopped().cloned()
    }
}
