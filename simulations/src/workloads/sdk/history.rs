//! What application instances record while a run goes on: every client's history of calls and
//! reads across all the objects it holds (what the client saw), and every copy's list of
//! applied records (what the system did). The checkers read both; the exhaustive checker reads
//! only the histories.
//!
//! A run's [`JointHistory`] holds reads and values of objects of many types as [`DynValue`]s;
//! [`JointHistory::object_history`] gives the typed [`SdkHistory`] of one object workload, which
//! the position checker takes.
//!
//! Histories are plain data, so that a test can build or corrupt one by hand and check that
//! the checkers catch it.

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::rc::Rc;

use dsss::MethodError;
use dsss::session::SessionCounters;

use crate::network::NodeId;
use crate::time::SimTime;

/// The most violations an observer keeps (the count goes on).
pub const VIOLATIONS_KEPT_MAX: usize = 64;

/// The most operations one client's history holds; an instance starts no operation beyond.
pub const OPERATIONS_PER_CLIENT_MAX: usize = 100_000;

/// The most records one replica's list of applied records holds; beyond, the observer reports
/// a violation (the run is larger than the checkers were sized for).
pub const APPLIED_RECORDS_PER_REPLICA_MAX: usize = 1_000_000;

/// The most checkpoint hashes one replica keeps for the one-order check.
pub const CHECKPOINT_HASHES_PER_REPLICA_MAX: usize = 4_096;

/// Where a record stands in the total order of an object's records. For a global object: the
/// sealed epoch and the index in it (docs/design.md section 2), and every region's log holds the
/// object's records in this order. For a regional object: its position in the region's log,
/// and 0.
pub type OrderKey = (u64, u32);

/// One call of a mutating method: which method, and its encoded arguments.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallSpec {
    /// The method id (the schema record of an opener has [`dsss::object::SCHEMA_METHOD_ID`]).
    pub method_id: u32,
    /// The arguments, encoded with the method's codec.
    pub arguments: Vec<u8>,
}

/// How a call ended, as its caller saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallCompletion {
    /// When the caller's replica applied the call.
    pub completed_at: SimTime,
    /// The call's position in the caller's region log.
    pub position: u64,
    /// The object's records the caller's replica had applied once it applied this one: the
    /// call's place, from 1, in the object's total order.
    pub records_applied: u64,
    /// The call's place in the total order as the system names it.
    pub order: OrderKey,
    /// The method's result, or why every copy skipped the call.
    pub outcome: Result<Vec<u8>, MethodError>,
}

/// One call in a client's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEvent {
    /// The object called.
    pub object: String,
    /// The client's request sequence for it (kept by every retry).
    pub sequence: u64,
    /// The call.
    pub call: CallSpec,
    /// When the client first sent it.
    pub invoked_at: SimTime,
    /// When a node first answered that the call is ordered, and the position it named.
    pub acknowledged: Option<(SimTime, u64)>,
    /// How it ended, once the client's replica applied it.
    pub completion: Option<CallCompletion>,
    /// When the client gave up on it (it may or may not have taken effect).
    pub gave_up_at: Option<SimTime>,
}

/// A `sync()` barrier the client gave up on: no read followed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncGivenUp {
    /// The object the read after it was to read.
    pub object: String,
    /// When the client asked for the barrier.
    pub began_at: SimTime,
    /// When it gave up.
    pub ended_at: SimTime,
}

/// A `sync()` barrier that came before a read: what it asked the replica to reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncBarrier {
    /// When the client asked for the barrier.
    pub began_at: SimTime,
    /// The region log position the node said to apply through.
    pub apply_through_position: u64,
}

/// One read of the local copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadEvent<R, V> {
    /// The object read.
    pub object: String,
    /// What was read.
    pub read: R,
    /// The value read.
    pub value: V,
    /// The object's records the replica had applied: the read saw this prefix of the order.
    pub records_applied: u64,
    /// When the read ran.
    pub at: SimTime,
    /// The barrier the read waited for, for a `sync()`-read.
    pub sync: Option<SyncBarrier>,
}

/// One operation of a client, in program order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operation<R, V> {
    /// A call of a mutating method.
    Call(CallEvent),
    /// A read of the local copy.
    Read(ReadEvent<R, V>),
}

/// Everything one client did, in program order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHistory<R, V> {
    /// The client (its node id is its client id).
    pub client: NodeId,
    /// Its region.
    pub region: String,
    /// Its operations, in the order it made them.
    pub operations: Vec<Operation<R, V>>,
}

/// One record a replica applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppliedRecord {
    /// Its position in the replica's region log.
    pub position: u64,
    /// The object's records applied once this one was: its place, from 1, in the order.
    pub records_applied: u64,
    /// Its place in the total order as the log names it.
    pub order: OrderKey,
    /// The caller.
    pub client_id: u64,
    /// The caller's sequence.
    pub request_sequence: u64,
    /// The call.
    pub call: CallSpec,
}

/// What one replica did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaRecord {
    /// The region of the instance that holds it.
    pub region: String,
    /// Every record it applied, in order.
    pub applied: Vec<AppliedRecord>,
    /// The SHA-256 of its checkpoint envelope at some counts of records applied.
    pub checkpoint_hashes: BTreeMap<u64, [u8; 32]>,
    /// The region log position it has handled through.
    pub position: u64,
    /// The object's records it has applied.
    pub records_applied: u64,
}

/// A whole run's histories and replicas, by client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SdkHistory<R, V> {
    /// Every client's history.
    pub clients: BTreeMap<NodeId, ClientHistory<R, V>>,
    /// Every client's replica.
    pub replicas: BTreeMap<NodeId, ReplicaRecord>,
}

impl<R, V> Default for SdkHistory<R, V> {
    fn default() -> Self {
        SdkHistory {
            clients: BTreeMap::new(),
            replicas: BTreeMap::new(),
        }
    }
}

impl<R, V> SdkHistory<R, V> {
    /// The calls of every client.
    pub fn calls(&self) -> impl Iterator<Item = (NodeId, &CallEvent)> {
        self.clients.values().flat_map(|history| {
            history
                .operations
                .iter()
                .filter_map(move |operation| match operation {
                    Operation::Call(call) => Some((history.client, call)),
                    Operation::Read(_) => None,
                })
        })
    }

    /// The reads of every client.
    pub fn reads(&self) -> impl Iterator<Item = (NodeId, &ReadEvent<R, V>)> {
        self.clients.values().flat_map(|history| {
            history
                .operations
                .iter()
                .filter_map(move |operation| match operation {
                    Operation::Read(read) => Some((history.client, read)),
                    Operation::Call(_) => None,
                })
        })
    }

    /// The clients of `region` and their replicas: the history of that region's copy of a
    /// regional object.
    pub fn in_region(&self, region: &str) -> SdkHistory<R, V>
    where
        R: Clone,
        V: Clone,
    {
        SdkHistory {
            clients: self
                .clients
                .iter()
                .filter(|(_, history)| history.region == region)
                .map(|(&client, history)| (client, history.clone()))
                .collect(),
            replicas: self
                .replicas
                .iter()
                .filter(|(_, replica)| replica.region == region)
                .map(|(&client, replica)| (client, replica.clone()))
                .collect(),
        }
    }

    /// The regions of the clients and replicas.
    pub fn regions(&self) -> std::collections::BTreeSet<&str> {
        self.clients
            .values()
            .map(|history| history.region.as_str())
            .chain(
                self.replicas
                    .values()
                    .map(|replica| replica.region.as_str()),
            )
            .collect()
    }

    /// How many operations all clients made.
    pub fn operation_count(&self) -> usize {
        self.clients
            .values()
            .map(|history| history.operations.len())
            .sum()
    }
}

/// A read or a value of any object's workload, its type erased so that one history holds
/// the operations of objects of many types. Two are equal when they hold equal values of one
/// type.
#[derive(Clone)]
pub struct DynValue(Rc<dyn AnyValue>);

/// What [`DynValue`] needs of what it holds.
trait AnyValue: Any + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn equals(&self, other: &dyn Any) -> bool;
}

impl<T: Any + fmt::Debug + PartialEq> AnyValue for T {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn equals(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>() == Some(self)
    }
}

impl DynValue {
    /// Holds `value`.
    pub fn new<T: Any + fmt::Debug + PartialEq>(value: T) -> DynValue {
        DynValue(Rc::new(value))
    }

    /// The value held, if it is a `T`.
    pub fn downcast<T: Any>(&self) -> Option<&T> {
        (*self.0).as_any().downcast_ref::<T>()
    }
}

impl fmt::Debug for DynValue {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        (*self.0).fmt(formatter)
    }
}

impl PartialEq for DynValue {
    fn eq(&self, other: &DynValue) -> bool {
        (*self.0).equals((*other.0).as_any())
    }
}

impl Eq for DynValue {}

/// One client's history across every object it holds.
pub type JointClientHistory = ClientHistory<DynValue, DynValue>;

/// A whole run's histories across objects, and every copy's applied records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JointHistory {
    /// Every client's history, its program order spanning its objects.
    pub clients: BTreeMap<NodeId, JointClientHistory>,
    /// Every copy, by object name and client.
    pub replicas: BTreeMap<String, BTreeMap<NodeId, ReplicaRecord>>,
    /// The barriers each client gave up on, in the order it gave up.
    pub syncs_given_up: BTreeMap<NodeId, Vec<SyncGivenUp>>,
}

impl JointHistory {
    /// How many operations all clients made.
    pub fn operation_count(&self) -> usize {
        self.clients
            .values()
            .map(|history| history.operations.len())
            .sum()
    }

    /// The history of the objects whose names `holds` accepts (one object workload: a global
    /// object, or the regional objects of every region), typed: the operations of every client
    /// on them, and their copies. A read or value of another type than `R` or `V` is left out.
    pub fn object_history<R: Any + Clone, V: Any + Clone>(
        &self,
        holds: impl Fn(&str) -> bool,
    ) -> SdkHistory<R, V> {
        let clients = self
            .clients
            .iter()
            .map(|(&client, history)| {
                let operations = history
                    .operations
                    .iter()
                    .filter_map(|operation| match operation {
                        Operation::Call(call) if holds(&call.object) => {
                            Some(Operation::Call(call.clone()))
                        }
                        Operation::Read(read) if holds(&read.object) => {
                            Some(Operation::Read(ReadEvent {
                                object: read.object.clone(),
                                read: read.read.downcast::<R>()?.clone(),
                                value: read.value.downcast::<V>()?.clone(),
                                records_applied: read.records_applied,
                                at: read.at,
                                sync: read.sync,
                            }))
                        }
                        _ => None,
                    })
                    .collect();
                (
                    client,
                    ClientHistory {
                        client,
                        region: history.region.clone(),
                        operations,
                    },
                )
            })
            .collect();
        let mut replicas = BTreeMap::new();
        for (object, copies) in &self.replicas {
            if holds(object) {
                for (&client, replica) in copies {
                    replicas.insert(client, replica.clone());
                }
            }
        }
        SdkHistory { clients, replicas }
    }
}

impl<R: Any + fmt::Debug + PartialEq + Clone, V: Any + fmt::Debug + PartialEq + Clone>
    SdkHistory<R, V>
{
    /// The same history with its reads and values type-erased, its copies named `object_of`
    /// each client's region.
    pub fn to_joint(&self, object_of: impl Fn(&str) -> String) -> JointHistory {
        let clients = self
            .clients
            .iter()
            .map(|(&client, history)| {
                let operations = history
                    .operations
                    .iter()
                    .map(|operation| match operation {
                        Operation::Call(call) => Operation::Call(call.clone()),
                        Operation::Read(read) => Operation::Read(ReadEvent {
                            object: read.object.clone(),
                            read: DynValue::new(read.read.clone()),
                            value: DynValue::new(read.value.clone()),
                            records_applied: read.records_applied,
                            at: read.at,
                            sync: read.sync,
                        }),
                    })
                    .collect();
                (
                    client,
                    ClientHistory {
                        client,
                        region: history.region.clone(),
                        operations,
                    },
                )
            })
            .collect();
        let mut replicas: BTreeMap<String, BTreeMap<NodeId, ReplicaRecord>> = BTreeMap::new();
        for (&client, replica) in &self.replicas {
            replicas
                .entry(object_of(&replica.region))
                .or_default()
                .insert(client, replica.clone());
        }
        JointHistory {
            clients,
            replicas,
            syncs_given_up: BTreeMap::new(),
        }
    }
}

/// Counts of what the instances did, for reports and coverage checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplicationCounters {
    /// What the instances' sessions counted, summed: stream moves (and stalls among them),
    /// call retries, copies joined.
    pub sessions: SessionCounters,
    /// Proposal attempts passed over without an answer (the session's attempt timeout).
    pub proposals_unanswered: u64,
    /// Log reads answered.
    pub log_reads: u64,
    /// `sync()` barriers that ended in reads.
    pub syncs: u64,
    /// `sync()` barriers that gave up.
    pub syncs_failed: u64,
}

/// What the instances of a run report while it goes on: the histories, the counters, and the
/// violations they saw themselves (a call that completed without its record applied, a copy
/// that stopped).
#[derive(Debug, Default)]
pub struct SdkObserver {
    history: JointHistory,
    set_up_at: BTreeMap<NodeId, SimTime>,
    session_counters: BTreeMap<NodeId, SessionCounters>,
    violations: Vec<String>,
    violation_count: u64,
    /// The counters (the sessions' own are summed by [`SdkObserver::counters`]).
    pub counters: ApplicationCounters,
}

impl SdkObserver {
    /// Records a broken guarantee.
    pub fn violation(&mut self, description: String) {
        self.violation_count += 1;
        if self.violations.len() < VIOLATIONS_KEPT_MAX {
            self.violations.push(description);
        }
    }

    /// The broken guarantees seen (at most [`VIOLATIONS_KEPT_MAX`], then a count).
    pub fn violations(&self) -> Vec<String> {
        let mut violations = self.violations.clone();
        if self.violation_count > self.violations.len() as u64 {
            violations.push(format!("... {} violations in all", self.violation_count));
        }
        violations
    }

    /// Every counter, the sessions' summed.
    pub fn counters(&self) -> ApplicationCounters {
        let mut counters = self.counters;
        for session in self.session_counters.values() {
            counters.sessions.stream_moves += session.stream_moves;
            counters.sessions.stream_stalls += session.stream_stalls;
            counters.sessions.call_retries += session.call_retries;
            counters.sessions.copies_joined += session.copies_joined;
            counters.sessions.copies_restored += session.copies_restored;
        }
        counters
    }

    /// The latest counters of the session of `client`.
    pub fn session_counters(&mut self, client: NodeId, counters: SessionCounters) {
        self.session_counters.insert(client, counters);
    }

    /// The histories and copies so far.
    pub fn history(&self) -> &JointHistory {
        &self.history
    }

    /// Takes the histories and copies out, leaving empty ones.
    pub fn take_history(&mut self) -> JointHistory {
        std::mem::take(&mut self.history)
    }

    /// An instance of `region` holding `objects` starts as `client`.
    pub fn register(&mut self, client: NodeId, region: &str, objects: &[String]) {
        self.history.clients.insert(
            client,
            ClientHistory {
                client,
                region: region.to_string(),
                operations: Vec::new(),
            },
        );
        for object in objects {
            self.history
                .replicas
                .entry(object.clone())
                .or_default()
                .insert(
                    client,
                    ReplicaRecord {
                        region: region.to_string(),
                        ..ReplicaRecord::default()
                    },
                );
        }
    }

    /// Every copy of `client` showed the whole setup at `at`.
    pub fn set_up(&mut self, client: NodeId, at: SimTime) {
        self.set_up_at.entry(client).or_insert(at);
    }

    /// When each client's copies first showed the whole setup.
    pub fn set_up_at(&self) -> &BTreeMap<NodeId, SimTime> {
        &self.set_up_at
    }

    /// `client` made an operation.
    pub fn operation(&mut self, client: NodeId, operation: Operation<DynValue, DynValue>) {
        let Some(history) = self.history.clients.get_mut(&client) else {
            self.violation(format!("client {client} is not registered"));
            return;
        };
        if history.operations.len() >= OPERATIONS_PER_CLIENT_MAX {
            self.violation(format!(
                "client {client} made more than {OPERATIONS_PER_CLIENT_MAX} operations"
            ));
            return;
        }
        history.operations.push(operation);
    }

    /// The latest call of `client`, to record how it went.
    pub fn last_call_mut(&mut self, client: NodeId) -> Option<&mut CallEvent> {
        self.history
            .clients
            .get_mut(&client)?
            .operations
            .iter_mut()
            .rev()
            .find_map(|operation| match operation {
                Operation::Call(call) => Some(call),
                Operation::Read(_) => None,
            })
    }

    /// `client` gave up on its latest call at `at`.
    pub fn call_given_up(&mut self, client: NodeId, at: SimTime) {
        if let Some(call) = self.last_call_mut(client) {
            call.gave_up_at = Some(at);
        }
    }

    /// `client` gave up at `at` on a barrier it asked for at `began_at`, before a read of
    /// `object`.
    pub fn sync_given_up(&mut self, client: NodeId, object: &str, began_at: SimTime, at: SimTime) {
        let given_up = self.history.syncs_given_up.entry(client).or_default();
        // A client gives up on a barrier at most once per operation it makes.
        if given_up.len() < OPERATIONS_PER_CLIENT_MAX {
            given_up.push(SyncGivenUp {
                object: object.to_owned(),
                began_at,
                ended_at: at,
            });
        }
    }

    /// The call of `client` with `sequence`, to record how it went.
    pub fn call_mut(&mut self, client: NodeId, sequence: u64) -> Option<&mut CallEvent> {
        self.history
            .clients
            .get_mut(&client)?
            .operations
            .iter_mut()
            .rev()
            .find_map(|operation| match operation {
                Operation::Call(call) if call.sequence == sequence => Some(call),
                _ => None,
            })
    }

    /// The copy of `object` held by `client`.
    pub fn replica(&self, object: &str, client: NodeId) -> Option<&ReplicaRecord> {
        self.history.replicas.get(object)?.get(&client)
    }

    /// The copy of `object` held by `client` applied `record`.
    pub fn applied(&mut self, object: &str, client: NodeId, record: AppliedRecord) {
        let Some(replica) = self
            .history
            .replicas
            .get_mut(object)
            .and_then(|copies| copies.get_mut(&client))
        else {
            self.violation(format!("client {client} holds no copy of {object}"));
            return;
        };
        if replica.applied.len() >= APPLIED_RECORDS_PER_REPLICA_MAX {
            self.violation(format!(
                "the copy of {object} of client {client} applied more than \
                 {APPLIED_RECORDS_PER_REPLICA_MAX} records"
            ));
            return;
        }
        replica.position = record.position;
        replica.records_applied = record.records_applied;
        replica.applied.push(record);
    }

    /// The copy of `object` held by `client` made a checkpoint with `state_hash` after
    /// `records_applied` records.
    pub fn checkpoint(
        &mut self,
        object: &str,
        client: NodeId,
        records_applied: u64,
        state_hash: [u8; 32],
    ) {
        if let Some(replica) = self
            .history
            .replicas
            .get_mut(object)
            .and_then(|copies| copies.get_mut(&client))
            && replica.checkpoint_hashes.len() < CHECKPOINT_HASHES_PER_REPLICA_MAX
        {
            replica
                .checkpoint_hashes
                .insert(records_applied, state_hash);
        }
    }
}
