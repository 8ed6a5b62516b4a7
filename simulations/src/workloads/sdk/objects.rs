//! Object workloads with their types erased, so that one application instance holds objects
//! of many types at once (a global bank, counter and lobby and its region's leaderboard), and
//! the copies the instances' sessions feed, recorded for the checkers.
//!
//! [`erase`] turns an [`ObjectWorkload`] into an [`AnyObjectWorkload`]: reads and values become
//! [`DynValue`]s, and everything that needs the object's type (a copy, a read of it, a replay
//! of a call in the exhaustive search, the position checks) goes through the trait.
//!
//! [`RecordedCopy`] is the copy an instance hands to its `ClientSession`: the SDK's own
//! [`SharedReplica`], which the session feeds exactly as in production, plus a note of every
//! record it applied and of every checkpoint it made, which the instance drains into the
//! history.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};

use dsss::MethodError;
use dsss::SharedObject;
use dsss::replica::{
    Applied, Checkpoint, RecordRef, Replica, ReplicaConfig, ReplicaStopped, SharedReplica,
};
use dsss::session::{FetchedCheckpoint, ObjectCopy};
use dsss_region_node::RegionLog;
use dsss_wire::Scope;

use super::ObjectWorkload;
use super::checker;
use super::history::{CallSpec, DynValue, JointHistory};
use crate::network::NodeId;
use crate::random::SimRng;

/// The most applied records or checkpoints a [`RecordedCopy`] keeps between two drains; an
/// instance drains after every message, so more means a bug in the driver.
pub const NOTES_KEPT_MAX: usize = 1 << 16;

/// One record a copy applied, as the copy saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyApplied {
    /// Its position in the region log.
    pub position: u64,
    /// The object's records the copy had applied once it applied this one.
    pub records_applied: u64,
    /// The caller.
    pub client_id: u64,
    /// The caller's sequence.
    pub request_sequence: u64,
    /// The call.
    pub call: CallSpec,
}

/// What a copy did since the last drain.
#[derive(Debug, Default)]
pub struct CopyNotes {
    /// Records applied, in order.
    pub applied: Vec<CopyApplied>,
    /// Checkpoints made: the count of records applied and the state hash.
    pub checkpoints: Vec<(u64, [u8; 32])>,
    /// Notes dropped past [`NOTES_KEPT_MAX`].
    pub dropped: usize,
}

/// The copy an instance's session feeds: the SDK's [`SharedReplica`], with notes. See the
/// module documentation.
pub struct RecordedCopy<T: SharedObject> {
    copy: SharedReplica<T>,
    notes: Mutex<CopyNotes>,
}

impl<T: SharedObject> RecordedCopy<T> {
    /// A copy of `name` with `config`, before position 1 until restored.
    pub fn new(name: &str, config: ReplicaConfig) -> RecordedCopy<T> {
        RecordedCopy {
            copy: dsss::session::new_copy::<T>(name, config),
            notes: Mutex::new(CopyNotes::default()),
        }
    }

    /// The copy itself, for reads.
    pub fn shared(&self) -> &SharedReplica<T> {
        &self.copy
    }

    /// Takes the notes since the last drain.
    pub fn drain(&self) -> CopyNotes {
        std::mem::take(&mut *self.notes.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<T: SharedObject> ObjectCopy for RecordedCopy<T> {
    fn position(&self) -> u64 {
        self.copy.position()
    }

    fn handle_record(
        &self,
        position: u64,
        record: RecordRef<'_>,
    ) -> Result<Applied, ReplicaStopped> {
        let applied = self.copy.handle_record(position, record)?;
        let mut replica = self.copy.lock_write();
        let records_applied = replica.records_applied();
        // Taken here, right after the record that made it, so that its count of records is
        // exact; the simulated region takes no uploads, so the session is not handed it.
        let checkpoint = replica.poll_checkpoint();
        drop(replica);
        let mut notes = self.notes.lock().unwrap_or_else(PoisonError::into_inner);
        if notes.applied.len() < NOTES_KEPT_MAX {
            notes.applied.push(CopyApplied {
                position,
                records_applied,
                client_id: record.client_id,
                request_sequence: record.request_sequence,
                call: CallSpec {
                    method_id: record.method_id,
                    arguments: record.arguments.to_vec(),
                },
            });
        } else {
            notes.dropped += 1;
        }
        if let Some(checkpoint) = checkpoint {
            if notes.checkpoints.len() < NOTES_KEPT_MAX {
                notes
                    .checkpoints
                    .push((records_applied, checkpoint.state_hash));
            } else {
                notes.dropped += 1;
            }
        }
        Ok(applied)
    }

    fn handle_gap(&self, through_position: u64) {
        self.copy.handle_gap(through_position);
    }

    fn recent_outcome(
        &self,
        client_id: u64,
        request_sequence: u64,
    ) -> Option<Result<Vec<u8>, MethodError>> {
        self.copy.recent_outcome(client_id, request_sequence)
    }

    fn poll_checkpoint(&self) -> Option<Checkpoint> {
        // Taken in `handle_record` and `checkpoint_now`.
        None
    }

    fn checkpoint_now(&self) -> bool {
        // The simulated region takes no uploads; the checks compare the checkpoints made at
        // the regular record counts (taken in `handle_record`), so one made because writes
        // stopped is made and set aside.
        let mut replica = self.copy.lock_write();
        let made = replica.checkpoint_now();
        let _ = replica.poll_checkpoint();
        made
    }

    fn records_since_checkpoint(&self) -> u64 {
        self.copy.lock_read().records_since_checkpoint()
    }

    fn restore(
        &self,
        checkpoint: Option<&FetchedCheckpoint>,
        truncated_through_position: u64,
    ) -> Result<(), String> {
        self.copy.restore(checkpoint, truncated_through_position)
    }

    fn encoded_schema(&self) -> Vec<u8> {
        T::schema().encode()
    }

    fn stopped(&self) -> Option<ReplicaStopped> {
        ObjectCopy::stopped(&self.copy)
    }
}

/// One object an instance holds, typed inside.
pub trait HeldObject {
    /// The copy, to hand to the session.
    fn copy(&self) -> Arc<dyn ObjectCopy>;
    /// Reads the copy (the caller holds the session's view); `None` if `read` is not a read of
    /// this object's workload.
    fn read(&self, read: &DynValue) -> Option<DynValue>;
    /// Whether the copy shows the workload's whole setup.
    fn is_set_up(&self) -> bool;
    /// The object's records the copy has applied.
    fn records_applied(&self) -> u64;
    /// Takes the copy's notes since the last drain.
    fn drain(&self) -> CopyNotes;
}

struct Held<W: ObjectWorkload> {
    workload: Rc<W>,
    copy: Arc<RecordedCopy<W::Object>>,
}

impl<W: ObjectWorkload> HeldObject for Held<W> {
    fn copy(&self) -> Arc<dyn ObjectCopy> {
        Arc::clone(&self.copy) as Arc<dyn ObjectCopy>
    }

    fn read(&self, read: &DynValue) -> Option<DynValue> {
        let read = read.downcast::<W::Read>()?;
        Some(DynValue::new(
            self.copy
                .shared()
                .read(|object| self.workload.read(object, read)),
        ))
    }

    fn is_set_up(&self) -> bool {
        self.copy
            .shared()
            .read(|object| self.workload.is_set_up(object))
    }

    fn records_applied(&self) -> u64 {
        self.copy.shared().lock_read().records_applied()
    }

    fn drain(&self) -> CopyNotes {
        self.copy.drain()
    }
}

/// What a replay of one call in the exhaustive search gave.
pub struct Replayed {
    /// The object's state after the call.
    pub state: Checkpoint,
    /// The call's outcome.
    pub outcome: Result<Vec<u8>, MethodError>,
}

/// An [`ObjectWorkload`] with its types erased. See the module documentation.
pub trait AnyObjectWorkload {
    /// The object's name (for a regional object, the stem of every region's name).
    fn object_id(&self) -> &str;
    /// Where the object lives.
    fn scope(&self) -> Scope;
    /// The name of the object the instances of `region` hold.
    fn object_id_in(&self, region: &str) -> String;
    /// Whether `name` names this workload's object (of some region, for a regional one).
    fn holds(&self, name: &str) -> bool;
    /// The calls that set the object up, made in order by one instance.
    fn setup_calls(&self) -> Vec<CallSpec>;
    /// A random call.
    fn random_call(&self, rng: &mut SimRng) -> CallSpec;
    /// A random read.
    fn random_read(&self, rng: &mut SimRng) -> DynValue;
    /// A new copy of `name`, to open.
    fn hold(&self, name: &str, config: ReplicaConfig) -> Box<dyn HeldObject>;
    /// Whether the object refused `call` by its own result.
    fn is_refusal(&self, call: &CallSpec, outcome: &Result<Vec<u8>, MethodError>) -> bool;
    /// The name the object's schema gives method `method_id` (`schema` for a session's
    /// schema declaration, `method N` for an id the schema does not hold).
    fn method_name(&self, method_id: u32) -> String;
    /// Replays the call `record` on the object `name` in `state` (`None`: a new object). The
    /// error says why the copy stopped.
    fn replay_call(
        &self,
        name: &str,
        state: Option<&Checkpoint>,
        record: RecordRef<'_>,
    ) -> Result<Replayed, String>;
    /// Runs `read` on the object `name` in `state`; `None` if `read` is not a read of this
    /// workload.
    fn replay_read(
        &self,
        name: &str,
        state: Option<&Checkpoint>,
        read: &DynValue,
    ) -> Option<DynValue>;
    /// The checks of [`checker::check_all`] on this workload's part of `history`, each problem
    /// naming the object.
    fn check(
        &self,
        history: &JointHistory,
        checkpoint_every_records: u64,
        logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
    ) -> Vec<String>;
}

/// `workload`, its types erased.
pub fn erase<W: ObjectWorkload>(workload: W) -> Rc<dyn AnyObjectWorkload> {
    Rc::new(Erased(Rc::new(workload)))
}

struct Erased<W>(Rc<W>);

impl<W: ObjectWorkload> Erased<W> {
    fn replica_at(name: &str, state: Option<&Checkpoint>) -> Result<Replica<W::Object>, String> {
        // A checkpoint after every call: it is the state the search carries.
        let config = ReplicaConfig {
            checkpoint_every_records: 1,
            ..ReplicaConfig::default()
        };
        match state {
            None => Ok(Replica::new(name, config)),
            Some(checkpoint) => Replica::from_checkpoint(
                name,
                config,
                checkpoint.position,
                &checkpoint.state,
                &checkpoint.state_hash,
            ),
        }
    }
}

impl<W: ObjectWorkload> AnyObjectWorkload for Erased<W> {
    fn object_id(&self) -> &str {
        self.0.object_id()
    }

    fn scope(&self) -> Scope {
        self.0.scope()
    }

    fn object_id_in(&self, region: &str) -> String {
        self.0.object_id_in(region)
    }

    fn holds(&self, name: &str) -> bool {
        let stem = self.0.object_id();
        match self.0.scope() {
            Scope::Global => name == stem,
            Scope::Regional => name
                .strip_prefix(stem)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|region| !region.is_empty() && !region.contains('/')),
        }
    }

    fn setup_calls(&self) -> Vec<CallSpec> {
        self.0.setup_calls()
    }

    fn random_call(&self, rng: &mut SimRng) -> CallSpec {
        self.0.random_call(rng)
    }

    fn method_name(&self, method_id: u32) -> String {
        if method_id == dsss::object::SCHEMA_METHOD_ID {
            return "schema".to_owned();
        }
        match <W::Object as SharedObject>::schema().method(method_id) {
            Some(method) => method.name.clone(),
            None => format!("method {method_id}"),
        }
    }

    fn random_read(&self, rng: &mut SimRng) -> DynValue {
        DynValue::new(self.0.random_read(rng))
    }

    fn hold(&self, name: &str, config: ReplicaConfig) -> Box<dyn HeldObject> {
        Box::new(Held {
            workload: Rc::clone(&self.0),
            copy: Arc::new(RecordedCopy::new(name, config)),
        })
    }

    fn is_refusal(&self, call: &CallSpec, outcome: &Result<Vec<u8>, MethodError>) -> bool {
        self.0.is_refusal(call, outcome)
    }

    fn replay_call(
        &self,
        name: &str,
        state: Option<&Checkpoint>,
        record: RecordRef<'_>,
    ) -> Result<Replayed, String> {
        let mut replica = Self::replica_at(name, state)?;
        // One position per record: the search feeds nothing else.
        let position = replica.records_applied() + 1;
        let applied = replica
            .handle_record(position, record)
            .map_err(|stopped| stopped.to_string())?;
        let state = replica
            .poll_checkpoint()
            .ok_or_else(|| format!("the replica of {name} made no checkpoint after a call"))?;
        Ok(Replayed {
            state,
            outcome: applied.outcome,
        })
    }

    fn replay_read(
        &self,
        name: &str,
        state: Option<&Checkpoint>,
        read: &DynValue,
    ) -> Option<DynValue> {
        let read = read.downcast::<W::Read>()?;
        let replica = Self::replica_at(name, state).ok()?;
        Some(DynValue::new(self.0.read(replica.object(), read)))
    }

    fn check(
        &self,
        history: &JointHistory,
        checkpoint_every_records: u64,
        logs: &BTreeMap<String, BTreeMap<NodeId, &RegionLog>>,
    ) -> Vec<String> {
        let typed = history.object_history::<W::Read, W::Value>(|name| self.holds(name));
        checker::check_all(self.0.as_ref(), &typed, checkpoint_every_records, logs)
            .into_iter()
            .map(|problem| format!("{}: {problem}", self.0.object_id()))
            .collect()
    }
}
