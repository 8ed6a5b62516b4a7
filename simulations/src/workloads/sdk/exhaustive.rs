//! A sequential-consistency checker that takes no help from the system (docs/design.md section 6):
//! it ignores every position, epoch and count the instances recorded, and searches for ONE
//! total order of all clients' operations on ALL objects together that respects each client's
//! program order (which spans the objects the client holds) and in which every call's result
//! and every read's value equal what fresh replicas of the objects, fed that order, give.
//! Histories that each object alone would accept may have no such joint order: a client that
//! writes one object and then reads another stale, while a second client does the opposite.
//!
//! The search is a depth-first search over "how many operations of each client are placed",
//! memoised on that vector together with the hash of every object's state, since two prefixes
//! that placed the same operations and reached the same states have the same futures. It is
//! exponential in the worst case, so it runs on small histories only
//! ([`EXHAUSTIVE_OPERATIONS_MAX`], [`EXHAUSTIVE_STATES_MAX`]).
//!
//! A call with no result (its client never saw it complete) may stand anywhere after its
//! client's earlier operations or nowhere, unless a node acknowledged it: then it must stand
//! somewhere.

use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;

use dsss::replica::{Checkpoint, RecordRef};

use super::ObjectWorkload;
use super::history::{ClientHistory, DynValue, JointClientHistory, Operation};
use super::objects::{AnyObjectWorkload, erase};
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
    /// The search gave up: the history is too large to search, the search visited too many
    /// states, or an operation names an object no workload holds.
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

/// The state of every object in the search, by object index: none before the object's first
/// call, else the checkpoint a replica made after the last call placed.
type SearchStates = Vec<Option<Checkpoint>>;

/// A history operation with its object resolved.
struct Step<'a> {
    object: usize,
    operation: &'a Operation<DynValue, DynValue>,
}

/// A search state: operations placed per client, and every object's state hash.
type SearchKey = (Vec<usize>, Vec<Option<[u8; 32]>>);

struct Search<'a> {
    /// The object names, by object index, and the workload of each.
    objects: Vec<(String, &'a dyn AnyObjectWorkload)>,
    clients: Vec<(NodeId, Vec<Step<'a>>)>,
    /// Search states known to lead nowhere: (operations placed per client, every object's
    /// state hash).
    dead_ends: HashSet<SearchKey>,
    states_explored: usize,
    states_max: usize,
    path: Vec<(NodeId, usize)>,
    longest_prefix: Vec<(NodeId, usize)>,
}

/// Searches for one total order of `clients`' operations across every object they name that
/// explains every result and read; `workloads` say what each object is. Gives up past
/// `states_max` search states (at most [`EXHAUSTIVE_STATES_MAX`]), past
/// [`EXHAUSTIVE_OPERATIONS_MAX`] operations, or on an object no workload holds.
pub fn find_joint_order(
    workloads: &[Rc<dyn AnyObjectWorkload>],
    clients: &BTreeMap<NodeId, JointClientHistory>,
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
    let mut objects: Vec<(String, &dyn AnyObjectWorkload)> = Vec::new();
    let mut searched_clients = Vec::new();
    for (&client, history) in clients {
        let mut steps = Vec::new();
        for operation in &history.operations {
            let name = match operation {
                Operation::Call(call) => &call.object,
                Operation::Read(read) => &read.object,
            };
            let object = match objects.iter().position(|(known, _)| known == name) {
                Some(index) => index,
                None => {
                    let Some(workload) = workloads.iter().find(|workload| workload.holds(name))
                    else {
                        return ExhaustiveVerdict::TooLarge {
                            reason: format!(
                                "client {client} operated on {name:?}, which no workload of \
                                 the run holds"
                            ),
                        };
                    };
                    objects.push((name.clone(), workload.as_ref()));
                    objects.len() - 1
                }
            };
            steps.push(Step { object, operation });
        }
        searched_clients.push((client, steps));
    }
    let object_count = objects.len();
    let mut search = Search {
        objects,
        clients: searched_clients,
        dead_ends: HashSet::new(),
        states_explored: 0,
        states_max: states_max.min(EXHAUSTIVE_STATES_MAX),
        path: Vec::new(),
        longest_prefix: Vec::new(),
    };
    let mut placed = vec![0; search.clients.len()];
    let mut states = vec![None; object_count];
    let found = search.explore(&mut placed, &mut states);
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

/// [`find_joint_order`] for the clients of one object workload (a global object, or the
/// regional objects of every region, each an object of its own).
pub fn find_sequential_order<W: ObjectWorkload + Clone>(
    workload: &W,
    clients: &BTreeMap<NodeId, ClientHistory<W::Read, W::Value>>,
    states_max: usize,
) -> ExhaustiveVerdict {
    let history = super::history::SdkHistory {
        clients: clients.clone(),
        replicas: BTreeMap::new(),
    };
    let joint = history.to_joint(|region| workload.object_id_in(region));
    find_joint_order(&[erase(workload.clone())], &joint.clients, states_max)
}

impl Search<'_> {
    /// True when the operations not yet placed can follow `states` in some order; `path` then
    /// holds the whole order.
    fn explore(&mut self, placed: &mut Vec<usize>, states: &mut SearchStates) -> bool {
        let done = placed
            .iter()
            .zip(&self.clients)
            .all(|(&count, (_, steps))| count == steps.len());
        if done {
            return true;
        }
        let key = (
            placed.clone(),
            states
                .iter()
                .map(|state| state.as_ref().map(|checkpoint| checkpoint.state_hash))
                .collect::<Vec<_>>(),
        );
        if self.dead_ends.contains(&key) {
            return false;
        }
        self.states_explored += 1;
        if self.states_explored > self.states_max {
            return false;
        }
        for client_index in 0..self.clients.len() {
            let (client, steps) = &self.clients[client_index];
            let client = *client;
            let Some(step) = steps.get(placed[client_index]) else {
                continue;
            };
            let object = step.object;
            let (name, workload) = &self.objects[object];
            let state = states[object].as_ref();
            let mut next_states: Vec<Option<Checkpoint>> = Vec::new();
            match step.operation {
                Operation::Read(read) => {
                    if workload.replay_read(name, state, &read.read).as_ref() == Some(&read.value) {
                        next_states.push(states[object].clone());
                    }
                }
                Operation::Call(call) => {
                    let replayed = workload.replay_call(
                        name,
                        state,
                        RecordRef {
                            client_id: client,
                            request_sequence: call.sequence,
                            method_id: call.call.method_id,
                            arguments: &call.call.arguments,
                        },
                    );
                    let matches = match (&replayed, &call.completion) {
                        (Ok(replayed), Some(completion)) => replayed.outcome == completion.outcome,
                        (Ok(_), None) => true,
                        (Err(_), _) => false,
                    };
                    if let (true, Ok(replayed)) = (matches, replayed) {
                        next_states.push(Some(replayed.state));
                    }
                    if call.completion.is_none() && call.acknowledged.is_none() {
                        // Never seen to complete: it may also stand nowhere.
                        next_states.push(states[object].clone());
                    }
                }
            }
            let step = (client, placed[client_index]);
            for next in next_states {
                let before = std::mem::replace(&mut states[object], next);
                placed[client_index] += 1;
                self.path.push(step);
                if self.path.len() > self.longest_prefix.len() {
                    self.longest_prefix = self.path.clone();
                }
                if self.explore(placed, states) {
                    return true;
                }
                self.path.pop();
                placed[client_index] -= 1;
                states[object] = before;
                if self.states_explored > self.states_max {
                    return false;
                }
            }
        }
        self.dead_ends.insert(key);
        false
    }
}
