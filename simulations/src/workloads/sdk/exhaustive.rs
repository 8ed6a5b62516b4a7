//! A sequential-consistency checker that takes no help from the system (docs/design.md section 6):
//! it ignores every position, epoch and count the instances recorded, and searches for a total
//! order of all clients' operations that respects each client's program order and in which
//! every call's result and every read's value equal what a fresh replica fed that order gives.
//!
//! The search is a depth-first search over "how many operations of each client are placed",
//! memoised on that vector together with the hash of the object's state, since two prefixes
//! that placed the same operations and reached the same state have the same futures. It is
//! exponential in the worst case, so it runs on small histories only
//! ([`EXHAUSTIVE_OPERATIONS_MAX`], [`EXHAUSTIVE_STATES_MAX`]).
//!
//! A call with no result (its client never saw it complete) may stand anywhere after its
//! client's earlier operations or nowhere, unless a node acknowledged it: then it must stand
//! somewhere.

use std::collections::{BTreeMap, HashSet};

use dsss::replica::{Checkpoint, RecordRef, Replica, ReplicaConfig};
use dsss_wire::Scope;

use super::ObjectWorkload;
use super::history::{ClientHistory, Operation};
use crate::network::NodeId;

/// The most operations (of all clients together) the search takes on.
pub const EXHAUSTIVE_OPERATIONS_MAX: usize = 64;

/// The most search states the search visits before it gives up.
pub const EXHAUSTIVE_STATES_MAX: usize = 1_000_000;

/// What the search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExhaustiveVerdict {
    /// An order exists: each step names a client and the index of its operation.
    Consistent {
        /// The order found.
        order: Vec<(NodeId, usize)>,
        /// Search states visited.
        states_explored: usize,
    },
    /// No order exists.
    Inconsistent {
        /// Search states visited.
        states_explored: usize,
        /// The longest prefix of operations the search could place, for the report.
        longest_prefix: Vec<(NodeId, usize)>,
    },
    /// The history is too large to search, or the search visited too many states.
    TooLarge {
        /// Which bound was passed.
        reason: String,
    },
}

impl ExhaustiveVerdict {
    /// True when an order was found.
    pub fn is_consistent(&self) -> bool {
        matches!(self, ExhaustiveVerdict::Consistent { .. })
    }
}

/// The histories of the clients of one object, by client.
type Clients<W> =
    BTreeMap<NodeId, ClientHistory<<W as ObjectWorkload>::Read, <W as ObjectWorkload>::Value>>;

/// The object's state in the search: none before the first call, else the checkpoint the
/// replica made after the last call placed.
type SearchState = Option<Checkpoint>;

struct Search<'a, W: ObjectWorkload> {
    workload: &'a W,
    clients: Vec<&'a ClientHistory<W::Read, W::Value>>,
    config: ReplicaConfig,
    /// Search states known to lead nowhere: (operations placed per client, state hash).
    dead_ends: HashSet<(Vec<usize>, Option<[u8; 32]>)>,
    states_explored: usize,
    states_max: usize,
    path: Vec<(NodeId, usize)>,
    longest_prefix: Vec<(NodeId, usize)>,
}

/// Searches for a total order of `clients`' operations that explains every result and read.
/// Gives up past `states_max` search states (at most [`EXHAUSTIVE_STATES_MAX`]). For a
/// regional object, whose regions each hold an object of their own, each region's clients are
/// searched on their own (sharing the bound on states) and the orders found are joined.
pub fn find_sequential_order<W: ObjectWorkload>(
    workload: &W,
    clients: &BTreeMap<NodeId, ClientHistory<W::Read, W::Value>>,
    states_max: usize,
) -> ExhaustiveVerdict {
    if workload.scope() == Scope::Global {
        return search_one_object(workload, clients, states_max);
    }
    let mut by_region: BTreeMap<&str, Clients<W>> = BTreeMap::new();
    for (&client, history) in clients {
        by_region
            .entry(history.region.as_str())
            .or_default()
            .insert(client, history.clone());
    }
    let mut joined = Vec::new();
    let mut states_explored = 0;
    for region_clients in by_region.values() {
        let states_left = states_max.saturating_sub(states_explored);
        match search_one_object(workload, region_clients, states_left) {
            ExhaustiveVerdict::Consistent {
                order,
                states_explored: explored,
            } => {
                joined.extend(order);
                states_explored += explored;
            }
            refused => return refused,
        }
    }
    ExhaustiveVerdict::Consistent {
        order: joined,
        states_explored,
    }
}

/// The search over the clients of one object.
fn search_one_object<W: ObjectWorkload>(
    workload: &W,
    clients: &BTreeMap<NodeId, ClientHistory<W::Read, W::Value>>,
    states_max: usize,
) -> ExhaustiveVerdict {
    let operations: usize = clients
        .values()
        .map(|history| history.operations.len())
        .sum();
    if operations > EXHAUSTIVE_OPERATIONS_MAX {
        return ExhaustiveVerdict::TooLarge {
            reason: format!(
                "{operations} operations, more than the {EXHAUSTIVE_OPERATIONS_MAX} the search \
                 takes on"
            ),
        };
    }
    let mut search = Search {
        workload,
        clients: clients.values().collect(),
        config: ReplicaConfig {
            // A checkpoint after every call: it is the state the search carries.
            checkpoint_every_records: 1,
            ..ReplicaConfig::default()
        },
        dead_ends: HashSet::new(),
        states_explored: 0,
        states_max: states_max.min(EXHAUSTIVE_STATES_MAX),
        path: Vec::new(),
        longest_prefix: Vec::new(),
    };
    let mut placed = vec![0; search.clients.len()];
    let found = search.explore(&mut placed, &None);
    if search.states_explored > search.states_max {
        return ExhaustiveVerdict::TooLarge {
            reason: format!("the search visited more than {} states", search.states_max),
        };
    }
    if found {
        ExhaustiveVerdict::Consistent {
            order: search.path,
            states_explored: search.states_explored,
        }
    } else {
        ExhaustiveVerdict::Inconsistent {
            states_explored: search.states_explored,
            longest_prefix: search.longest_prefix,
        }
    }
}

impl<W: ObjectWorkload> Search<'_, W> {
    /// True when the operations not yet placed can follow `state` in some order; `path` then
    /// holds the whole order.
    fn explore(&mut self, placed: &mut Vec<usize>, state: &SearchState) -> bool {
        let done = placed
            .iter()
            .zip(&self.clients)
            .all(|(&count, history)| count == history.operations.len());
        if done {
            return true;
        }
        let key = (
            placed.clone(),
            state.as_ref().map(|checkpoint| checkpoint.state_hash),
        );
        if self.dead_ends.contains(&key) {
            return false;
        }
        self.states_explored += 1;
        if self.states_explored > self.states_max {
            return false;
        }
        for client_index in 0..self.clients.len() {
            let history = self.clients[client_index];
            let Some(operation) = history.operations.get(placed[client_index]) else {
                continue;
            };
            let step = (history.client, placed[client_index]);
            let mut next_states: Vec<SearchState> = Vec::new();
            match operation {
                Operation::Read(read) => {
                    let replica = self.replica_at(state);
                    if self.workload.read(replica.object(), &read.read) == read.value {
                        next_states.push(state.clone());
                    }
                }
                Operation::Call(call) => {
                    let mut replica = self.replica_at(state);
                    let records = replica.records_applied();
                    let applied = replica.handle_record(
                        records + 1,
                        RecordRef {
                            client_id: history.client,
                            request_sequence: call.sequence,
                            method_id: call.call.method_id,
                            arguments: &call.call.arguments,
                        },
                    );
                    let matches = match (&applied, &call.completion) {
                        (Ok(applied), Some(completion)) => applied.outcome == completion.outcome,
                        (Ok(_), None) => true,
                        (Err(_), _) => false,
                    };
                    if matches {
                        next_states.push(replica.poll_checkpoint());
                    }
                    if call.completion.is_none() && call.acknowledged.is_none() {
                        // Never seen to complete: it may also stand nowhere.
                        next_states.push(state.clone());
                    }
                }
            }
            for next in next_states {
                placed[client_index] += 1;
                self.path.push(step);
                if self.path.len() > self.longest_prefix.len() {
                    self.longest_prefix = self.path.clone();
                }
                if self.explore(placed, &next) {
                    return true;
                }
                self.path.pop();
                placed[client_index] -= 1;
                if self.states_explored > self.states_max {
                    return false;
                }
            }
        }
        self.dead_ends.insert(key);
        false
    }

    fn replica_at(&self, state: &SearchState) -> Replica<W::Object> {
        let object_id = self.workload.object_id();
        match state {
            None => Replica::new(object_id, self.config),
            Some(checkpoint) => Replica::from_checkpoint(
                object_id,
                self.config,
                checkpoint.position,
                &checkpoint.state,
                &checkpoint.state_hash,
            )
            .unwrap_or_else(|error| {
                panic!("a checkpoint the search made does not restore: {error}")
            }),
        }
    }
}
