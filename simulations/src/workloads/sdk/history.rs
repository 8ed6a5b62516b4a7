//! What application instances record while a run goes on: every client's history of calls and
//! reads (what the client saw), and every replica's list of applied records (what the system
//! did). The checkers read both; the exhaustive checker reads only the histories.
//!
//! Histories are plain data, so that a test can build or corrupt one by hand and check that
//! the checkers catch it.

use std::collections::BTreeMap;

use dsss::MethodError;

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

/// Counts of what the instances did, for reports and coverage checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApplicationCounters {
    /// Proposals sent again after a timeout or a refusal.
    pub retries: u64,
    /// Calls sent once more after they completed, to check that they apply once.
    pub deliberate_duplicates: u64,
    /// Times an instance stopped reading the log from one member and went to another.
    pub failovers: u64,
    /// Log reads answered.
    pub log_reads: u64,
    /// Checkpoint fetches answered (after a member said its log starts above the replica).
    pub checkpoint_fetches: u64,
    /// `sync()` barriers that ended in a read.
    pub syncs: u64,
}

/// What the instances of a run report while it goes on: the histories, the counters, and the
/// violations they saw themselves (a record missed or applied twice, a pending record applied).
#[derive(Debug)]
pub struct SdkObserver<R, V> {
    history: SdkHistory<R, V>,
    set_up_at: BTreeMap<NodeId, SimTime>,
    violations: Vec<String>,
    violation_count: u64,
    /// The counters.
    pub counters: ApplicationCounters,
}

impl<R, V> Default for SdkObserver<R, V> {
    fn default() -> Self {
        SdkObserver {
            history: SdkHistory::default(),
            set_up_at: BTreeMap::new(),
            violations: Vec::new(),
            violation_count: 0,
            counters: ApplicationCounters::default(),
        }
    }
}

impl<R, V> SdkObserver<R, V> {
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

    /// The histories and replicas so far.
    pub fn history(&self) -> &SdkHistory<R, V> {
        &self.history
    }

    /// Takes the histories and replicas out, leaving empty ones.
    pub fn take_history(&mut self) -> SdkHistory<R, V> {
        std::mem::take(&mut self.history)
    }

    /// An instance of `region` starts as `client`.
    pub fn register(&mut self, client: NodeId, region: &str) {
        self.history.clients.insert(
            client,
            ClientHistory {
                client,
                region: region.to_string(),
                operations: Vec::new(),
            },
        );
        self.history.replicas.insert(
            client,
            ReplicaRecord {
                region: region.to_string(),
                ..ReplicaRecord::default()
            },
        );
    }

    /// The copy of `client` showed the whole setup at `at`.
    pub fn set_up(&mut self, client: NodeId, at: SimTime) {
        self.set_up_at.entry(client).or_insert(at);
    }

    /// When each client's copy first showed the whole setup.
    pub fn set_up_at(&self) -> &BTreeMap<NodeId, SimTime> {
        &self.set_up_at
    }

    /// How many operations `client` has made.
    pub fn operation_count(&self, client: NodeId) -> usize {
        self.history
            .clients
            .get(&client)
            .map_or(0, |history| history.operations.len())
    }

    /// `client` made an operation.
    pub fn operation(&mut self, client: NodeId, operation: Operation<R, V>) {
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

    /// The replica of `client` applied `record`.
    pub fn applied(&mut self, client: NodeId, record: AppliedRecord) {
        let Some(replica) = self.history.replicas.get_mut(&client) else {
            self.violation(format!("client {client} is not registered"));
            return;
        };
        if replica.applied.len() >= APPLIED_RECORDS_PER_REPLICA_MAX {
            self.violation(format!(
                "the replica of client {client} applied more than \
                 {APPLIED_RECORDS_PER_REPLICA_MAX} records"
            ));
            return;
        }
        replica.applied.push(record);
    }

    /// The replica of `client` made a checkpoint with `state_hash` after `records_applied`
    /// records.
    pub fn checkpoint(&mut self, client: NodeId, records_applied: u64, state_hash: [u8; 32]) {
        if let Some(replica) = self.history.replicas.get_mut(&client)
            && replica.checkpoint_hashes.len() < CHECKPOINT_HASHES_PER_REPLICA_MAX
        {
            replica
                .checkpoint_hashes
                .insert(records_applied, state_hash);
        }
    }

    /// The replica of `client` has handled the log through `position`, with `records_applied`
    /// records of the object applied.
    pub fn progress(&mut self, client: NodeId, position: u64, records_applied: u64) {
        if let Some(replica) = self.history.replicas.get_mut(&client) {
            replica.position = position;
            replica.records_applied = records_applied;
        }
    }
}
